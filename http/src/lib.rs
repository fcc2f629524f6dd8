#![forbid(unsafe_code)]
//! HTTP semantics shared by the sidecar (forwarding to the app, stealing and mirroring to a
//! session) and `kubectl-steal` (delivering to the local app), so a request keeps or loses the
//! same headers whichever way it goes:
//!
//! * [`strip_hop_by_hop`]: the connection-specific headers of RFC 9110 §7.6.1;
//! * [`upgrade_protocol`] / [`extended_connect_protocol`]: an HTTP/1.1 upgrade request
//!   (`Upgrade` + `Connection: upgrade`), an HTTP/2 extended CONNECT (RFC 8441);
//! * [`classify`]: HTTP/1, HTTP/2 prior knowledge or something else, from the first bytes;
//! * [`Hooked`]: the one IO wrapper that forwards to an inner stream, with a hook on reads
//!   ([`Prefixed`]: replaying sniffed bytes first);
//! * [`openmetrics`]: `/metrics` as prometheus-client encodes it (webhook, controller, sidecar),
//!   a lock-free duration histogram, label families resolved once. A public module because its
//!   names (`encode`, `Label`, `CONTENT_TYPE`) read well only qualified.

mod hop;
mod io;
pub mod openmetrics;
mod sniff;
mod upgrade;

pub use hop::strip_hop_by_hop;
pub use io::{Hooked, Prefix, Prefixed, ReadHook, negotiated};
pub use sniff::{Sniffed, classify};
pub use upgrade::{extended_connect_protocol, is_upgrade, upgrade_protocol};

use hop::connection_has_token;
