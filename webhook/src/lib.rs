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
pub mod replay;
pub mod serve;
pub mod server;
pub mod settings;
pub mod sparse_pod;

/// Namespace label that opts a namespace in (used by the MutatingWebhookConfiguration's
/// `namespaceSelector`).
pub const NAMESPACE_OPT_IN_LABEL: (&str, &str) = ("tls-steal-injection", "enabled");
/// Pod label (or annotation) that opts a pod out when set to `"false"`.
pub const POD_OPT_OUT_KEY: &str = "tls-steal.io/inject";
/// Pod annotation written at injection.
pub const STATUS_ANNOTATION: &str = "tls-steal.io/status";
/// Name of the init container installing the iptables rules.
pub const INIT_CONTAINER: &str = "tls-steal-init";
/// Name of the proxy sidecar.
pub const PROXY_CONTAINER: &str = "tls-steal-proxy";
/// Inbound capture port inside the pod.
pub const CAPTURE_PORT: u16 = 15443;
/// Session API port (127.0.0.1 only, reached through port-forward).
pub const SESSION_PORT: u16 = 15400;
/// Admin port of the proxy (`/healthz`, `/readyz`, `/metrics`).
pub const ADMIN_PORT: u16 = 15401;
/// Env var carrying the resolved plan to the proxy.
pub const PLAN_ENV: &str = "TLS_STEAL_PLAN";
