//! Session tickets on the control plane: the signing key and its published public half
//! ([`keys`]) and the signer (run by the `controller` command) that writes a short-lived ticket into each admitted `StealSession`'s status and renews it while its client's
//! heartbeat is fresh ([`signer`]), with an Event on each pod a session starts and ends on
//! ([`pod_events`]). The sidecar checks the tickets offline
//! (`tls_steal_crds::ticket`); the webhook injects the public keys.

mod args;
pub mod keys;
mod metrics;
pub mod pod_events;
pub mod signer;
mod summary;

pub use args::{PUBLIC_KEYS_CONFIGMAP, SessionArgs, SignerArgs};
pub use keys::{KeysError, SessionKeys, load_or_create, publish, published, split_keys};
pub use metrics::TicketMetrics;
pub use signer::{Signer, SignerSettings, Step, step};
