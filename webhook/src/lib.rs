#![forbid(unsafe_code)]
//! `tls-steal-webhook`: the admission webhook that injects `tls-steal-init` and
//! `tls-steal-proxy` into pods matched by `MirrordTlsStealConfig` /
//! `MirrordClusterTlsStealConfig`, its config caches, its serving certificate, its metrics, and the
//! offline `inject` command.
//!
//! Layout: [`mutate`] is the pure pod → pod mutation; [`admission`] turns an AdmissionReview into
//! an answer using it, reading pods through [`sparse_pod`] and remembering decisions per pod
//! shape in [`memo`]; [`server`] is the thin HTTPS wrapper; [`configs`] holds the config caches;
//! [`certs`] the serving certificate; [`inject`] the offline command; [`serve`] wires it together
//! against a cluster.

pub mod admission;
pub mod certs;
pub mod configs;
pub mod controller;
pub mod inject;
pub mod memo;
pub mod metrics;
pub mod mutate;
pub mod probes;
pub mod replay;
pub mod serve;
pub mod server;
pub mod settings;
pub mod signals;
pub mod sparse_pod;

pub use tls_steal_crds::contract::{
    ADMIN_PORT, APP_PROBES_ENV, CAPTURE_PORT, INIT_CONTAINER, NAMESPACE_OPT_IN_LABEL, PLAN_ENV,
    POD_IP_ENV, POD_OPT_OUT_KEY, PROXY_CONTAINER, PROXY_UID, STATUS_ANNOTATION,
};
