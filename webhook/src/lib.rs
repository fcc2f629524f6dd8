#![forbid(unsafe_code)]
//! `tls-steal-webhook`: the admission webhook that injects `tls-steal-init` and
//! `tls-steal-proxy` into pods matched by `MirrordTlsStealConfig` /
//! `MirrordClusterTlsStealConfig`, the rollout controller, the config caches, the serving
//! certificate, the metrics, and the offline `inject` command.
//!
//! Layout: `mutate` is the pure pod → pod mutation (`probes`: the probe rewrite); `admission`
//! turns an AdmissionReview into an answer using it, reading pods through `sparse_pod`;
//! `server` is the thin HTTPS wrapper; `configs` holds the config caches; `certs` the serving
//! certificate; `metrics` admission's metrics (`openmetrics`: what they share with the
//! controller's); [`controller`] the rollout controller; `inject` the offline command; `serve`
//! wires admission (and the controller) together against a cluster; `watch_backoff` is how soon
//! every watch is retried.

mod admission;
mod certs;
mod configs;
pub mod controller;
mod inject;
mod metrics;
mod mutate;
// Shared with the sidecar: the exposition, a lock-free histogram, label families.
use tls_steal_http::openmetrics;
mod probes;
mod serve;
mod server;
mod settings;
mod signals;
mod sparse_pod;
pub mod tickets;
mod watch_backoff;

pub use admission::{Admission, Answer, Cluster};
pub use certs::generate as generate_cert_bundle;
pub use certs::{CertBundle, CertError, dns_names, server_config, to_secret_data};
pub use configs::ConfigCache;
pub use inject::run as run_inject;
pub use inject::{DocError, DocResult, InjectArgs, InjectError, inject_document, load_configs};
pub use metrics::{Metrics, ReviewResult};
pub use mutate::{Injection, InjectionStatus, Outcome, SkipReason, mutate, mutation};
pub use openmetrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use serve::run as run_serve;
pub use serve::{ServeArgs, ServeError, SidecarArgs};
pub use server::{AppState, drain, router, serve_tls};
pub use settings::{SessionAuthorization, Settings, SidecarMode, proxy_workers};
