//! The public names every part of tls-steal agrees on: ports, environment variables, container
//! names, labels and annotations. Users, dashboards and tests rely on them, so they live here once
//! and every crate imports them.

/// Inbound capture port inside the pod: `tls-steal-init` redirects the plan's ports here.
pub const CAPTURE_PORT: u16 = 15443;
/// Session API (127.0.0.1 only, reached through port-forward).
pub const SESSION_API_PORT: u16 = 15400;
/// Admin port of the proxy: `/healthz`, `/readyz`, `/metrics` and the rewritten app probes.
pub const ADMIN_PORT: u16 = 15401;
/// Name of the capture port in the proxy container's `ports`.
pub const CAPTURE_PORT_NAME: &str = "tls-steal";
/// Name of the admin port in the proxy container's `ports`.
pub const ADMIN_PORT_NAME: &str = "tls-steal-admin";
/// The proxy's own ports. A config may not capture them: redirecting them would loop or hide
/// the proxy's health and session endpoints.
pub const RESERVED_PORTS: [u16; 3] = [SESSION_API_PORT, ADMIN_PORT, CAPTURE_PORT];

/// Env var carrying the resolved plan (JSON of [`crate::StealPlan`]) to the proxy.
pub const PLAN_ENV: &str = "TLS_STEAL_PLAN";
/// Env var carrying the app probes the webhook rewrote (JSON of [`crate::probe::AppProbes`]).
pub const APP_PROBES_ENV: &str = "TLS_STEAL_APP_PROBES";
/// Env var with the pod's IP (downward API), the address app probes are sent to, as the
/// kubelet would.
pub const POD_IP_ENV: &str = "TLS_STEAL_POD_IP";
/// Env var of the proxy: the pod's namespace (downward API); a session ticket must name it.
pub const POD_NAMESPACE_ENV: &str = "TLS_STEAL_POD_NAMESPACE";
/// Env var of the proxy: `required` (a registration needs a ticket) or `disabled`.
pub const SESSION_AUTHORIZATION_ENV: &str = "TLS_STEAL_SESSION_AUTHORIZATION";
/// Annotation admission puts on each `StealSession`: `required` when the cluster's proxies
/// require tickets (so `kubectl steal` waits for one), else `disabled`.
pub const SESSION_AUTHORIZATION_ANNOTATION: &str = "tls-steal.io/authorization";
/// Env var of the proxy: the public keys (base64url, comma-separated) whose tickets it accepts.
pub const SESSION_KEYS_ENV: &str = "TLS_STEAL_SESSION_KEYS";

/// Pod annotation setting the proxy's worker threads (`auto` or a positive number), over the
/// chart's `sidecar.workers`; any other value is ignored.
pub const PROXY_WORKERS_ANNOTATION: &str = "tls-steal.io/proxy-workers";

/// Init container installing the iptables capture.
pub const INIT_CONTAINER: &str = "tls-steal-init";
/// The proxy sidecar.
pub const PROXY_CONTAINER: &str = "tls-steal-proxy";
/// Fixed uid (and gid) of `tls-steal-proxy` when it needs no `/proc` fallback: non-root, and
/// distinct from common app uids so file permissions say plainly what it may read.
pub const PROXY_UID: i64 = 15400;

/// Namespace label that opts a namespace in (the webhook's `namespaceSelector`).
pub const NAMESPACE_OPT_IN_LABEL: (&str, &str) = ("tls-steal-injection", "enabled");
/// Pod label (or annotation) that opts a pod out when set to `"false"`.
pub const POD_OPT_OUT_KEY: &str = "tls-steal.io/inject";
/// Pod annotation written at injection (JSON: configs, ports, plan hash).
pub const STATUS_ANNOTATION: &str = "tls-steal.io/status";
/// kubectl's pod annotation naming the container `logs`, `exec`, `cp` and `attach` use when
/// `-c` is not given (kubectl 1.21+). Without it they take the first container.
pub const KUBECTL_DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// Pod-template annotation the rollout controller writes: the plan hash its pods get.
pub const CONFIG_HASH_ANNOTATION: &str = "tls-steal.io/config-hash";
/// Workload (not template) annotation recording the plan hash of a workload adopted without a
/// rollout: its pods already carried that plan. Read only while the template has no
/// [`CONFIG_HASH_ANNOTATION`]; removed by the next template patch.
pub const ADOPTED_HASH_ANNOTATION: &str = "tls-steal.io/adopted-hash";
/// Workload annotation that, set to `"false"`, keeps the rollout controller from rolling it out.
pub const ROLLOUT_ANNOTATION: &str = "tls-steal.io/rollout";
/// The rollout controller: field manager of its patches, reporter of its events, default name
/// of its Lease.
pub const CONTROLLER_NAME: &str = "tls-steal-controller";

/// Path prefix of the rewritten app probes on the admin port: `/app-health/<container>/<kind>`.
pub const APP_HEALTH_PREFIX: &str = "/app-health/";
