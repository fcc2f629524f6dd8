//! The proxy's settings: command-line arguments and the steal plan they point to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tls_steal_crds::StealPlan;
use tls_steal_crds::contract::{
    ADMIN_PORT, APP_PROBES_ENV, CAPTURE_PORT, PLAN_ENV, POD_IP_ENV, POD_NAMESPACE_ENV,
    SESSION_API_PORT, SESSION_AUTHORIZATION_ENV, SESSION_KEYS_ENV,
};
use tls_steal_crds::probe::{AppProbes, parse_app_probes};
use tls_steal_crds::ticket::{KeyError, VerifyingKey};

use super::body::BodyLimits;
use super::files::{DirectLookup, FileResolver};

/// The plan could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no steal plan: pass --plan FILE or set {PLAN_ENV}")]
    NoPlan,
    #[error("cannot read the steal plan file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid steal plan: {0}")]
    Plan(#[from] tls_steal_crds::plan::PlanError),
    #[error("invalid session key in {SESSION_KEYS_ENV} (--session-keys): {source}")]
    SessionKeys {
        #[source]
        source: KeyError,
    },
    #[error(
        "--session-authorization required needs {POD_NAMESPACE_ENV} (--pod-namespace), which the webhook injects (use `disabled` outside a cluster)"
    )]
    SessionAuthorizationIncomplete,
    #[error("invalid app probes in {APP_PROBES_ENV} (--app-probes-json): {source}")]
    AppProbes {
        #[source]
        source: serde_json::Error,
    },
}

/// `tls-steal-sidecar proxy` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// The resolved steal plan as a JSON file (takes precedence over `TLS_STEAL_PLAN`).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The resolved steal plan as JSON (set by the webhook).
    #[arg(long = "plan-json", env = PLAN_ENV, hide_env_values = true)]
    pub plan_json: Option<String>,
    /// Where redirected connections arrive (repeatable). IPv6 listeners are v6-only; one that
    /// cannot be bound (no IPv6 in the pod) is skipped with a warning.
    #[arg(long, default_values_t = default_listen())]
    pub listen: Vec<SocketAddr>,
    /// `/healthz`, `/readyz`, `/metrics`.
    #[arg(long, default_value_t = SocketAddr::from((Ipv4Addr::UNSPECIFIED, ADMIN_PORT)))]
    pub admin: SocketAddr,
    /// The session API (`kubectl-steal` reaches it through port-forward; keep it on loopback).
    #[arg(long, default_value_t = SocketAddr::from((Ipv4Addr::LOCALHOST, SESSION_API_PORT)))]
    pub session_api: SocketAddr,
    /// Use this original destination instead of `SO_ORIGINAL_DST` (tests, setups without
    /// iptables). Every connection is then treated as sent to this address.
    #[arg(long)]
    pub orig_dst_override: Option<SocketAddr>,
    /// Like `--orig-dst-override`, for connections accepted on one listener only:
    /// `LISTEN=DST` (repeatable), e.g. `127.0.0.1:15443=127.0.0.1:8443`. Tests of several
    /// ports, setups without iptables.
    #[arg(long = "orig-dst-for", value_name = "LISTEN=DST", value_parser = parse_dst_pair)]
    pub orig_dst_for: Vec<(SocketAddr, SocketAddr)>,
    /// A process of the target container, whose `/proc/<pid>/root` is searched for PEM files not
    /// mounted into the sidecar (default: the processes whose mount table names the plan's
    /// container).
    #[arg(long)]
    pub target_pid: Option<u32>,
    /// Which PEM paths may be opened in the proxy's own filesystem: `volumes` (only paths on a
    /// volume mounted into the proxy that the target container has mounted there too: what the
    /// webhook mirrored) or `any` (also the proxy's image; a proxy run outside Kubernetes).
    /// Default: `volumes` in a pod (`KUBERNETES_SERVICE_HOST` is set), else `any`.
    #[arg(long, value_enum)]
    pub direct_files: Option<DirectLookup>,
    /// Request body size, in bytes, at which reading for a session's body filter stops; a body
    /// this long or longer does not match body filters, as in mirrord (and is passed on
    /// unchanged).
    #[arg(long, default_value_t = 64 * 1024)]
    pub body_filter_max_bytes: usize,
    /// Milliseconds allowed to read a request body for a session's body filter; a slower body
    /// does not match body filters (and is passed on unchanged).
    #[arg(long, default_value_t = 1000)]
    pub body_filter_timeout_ms: u64,
    /// Seconds a client may take to send its first complete request head (slowloris).
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a client connection (HTTP/1.1 keep-alive or HTTP/2) may stay without a request in
    /// flight before it is closed. Long, as Envoy's and Istio's: closing before the app would
    /// breaks clients that pool connections (load balancers keep theirs 60-620 s).
    #[arg(long, default_value_t = 3600)]
    pub idle_timeout: u64,
    /// Seconds allowed for the client TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
    /// Seconds allowed to connect (TCP + TLS) to the application.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds an unused pooled connection to the application is kept open.
    #[arg(long, default_value_t = 60)]
    pub upstream_idle_timeout: u64,
    /// Milliseconds to wait for the first bytes of a TLS connection without ALPN before relaying
    /// it as a non-HTTP stream.
    #[arg(long, default_value_t = 2000)]
    pub sniff_timeout_ms: u64,
    /// Milliseconds between checks of the certificate files.
    #[arg(long, default_value_t = 1000)]
    pub reload_interval_ms: u64,
    /// After SIGTERM (with `/readyz` already 503) the proxy keeps accepting and serving while
    /// the app still listens on one of its ports, as the app alone would, for at most this many
    /// seconds; then it stops accepting. Injected pods get the chart's
    /// `sidecar.drainDelaySeconds` (3600: the kubelet's grace period ends it first).
    #[arg(long, default_value_t = DEFAULT_DRAIN_DELAY_SECS)]
    pub drain_delay: u64,
    /// Seconds to let in-flight requests finish once the proxy stops accepting. Injected pods
    /// get their `terminationGracePeriodSeconds` (the kubelet ends the app then anyway).
    #[arg(long, default_value_t = 25)]
    pub drain_timeout: u64,
    /// Client connections open at once per captured port; one above it is closed right after
    /// accept and counted in `tls_steal_connections_refused_total`.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// The app probes the webhook rewrote to `/app-health/<container>/<kind>` (JSON).
    #[arg(long = "app-probes-json", env = APP_PROBES_ENV, hide_env_values = true)]
    pub app_probes_json: Option<String>,
    /// The pod's IP: where app probes are sent, as the kubelet would (default 127.0.0.1).
    #[arg(long, env = POD_IP_ENV)]
    pub pod_ip: Option<IpAddr>,
    /// Largest HTTP/1 request head / HTTP/2 header list accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Worker threads: `auto` follows the container's CPU limit (rounded up), else 2; never
    /// the node's CPU count (see `workers`).
    #[arg(long, default_value = "auto")]
    pub workers: crate::workers::Workers,
    /// `required`: a session registration needs a ticket of its `StealSession` object, signed
    /// by one of `--session-keys`, for `--pod-namespace`; `disabled`: whoever reaches the
    /// session API may steal (clusters without the `StealSession` CRD, local tests).
    #[arg(long, env = SESSION_AUTHORIZATION_ENV, value_enum, default_value_t = AuthorizationMode::Required)]
    pub session_authorization: AuthorizationMode,
    /// Public keys (base64url, comma-separated) whose session tickets are accepted.
    #[arg(long, env = SESSION_KEYS_ENV, default_value = "")]
    pub session_keys: String,
    /// The pod's namespace (downward API): tickets must be for it.
    #[arg(long, env = POD_NAMESPACE_ENV)]
    pub pod_namespace: Option<String>,
}

/// `--session-authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizationMode {
    Required,
    Disabled,
}

/// Whether session registrations need a ticket (checked by the session layer).
#[derive(Clone, Debug, Default)]
pub enum Authorization {
    /// Anyone who reaches the session API may register (clusters without the `StealSession`
    /// CRD; tests and benchmarks of the data path). [`ProxyConfig::new`]'s default; the
    /// binary's default is `Required`.
    #[default]
    Disabled,
    /// A registration needs a ticket signed by one of `keys`, for `namespace`.
    Required {
        keys: Vec<VerifyingKey>,
        namespace: String,
    },
}

/// Everything the proxy runs with.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub plan: StealPlan,
    pub listen: Vec<SocketAddr>,
    /// `None`: no admin listener.
    pub admin: Option<SocketAddr>,
    /// The session API listener; `None`: no session can register (the CLI sets 127.0.0.1:15400).
    pub session_api: Option<SocketAddr>,
    pub orig_dst_override: Option<SocketAddr>,
    /// Per-listener overrides: (listener, original destination).
    pub orig_dst_for: Vec<(SocketAddr, SocketAddr)>,
    pub files: FileResolver,
    /// Bounds of body reads for body filters.
    pub body_limits: BodyLimits,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// An HTTP/1.1 client connection without a request in flight for this long is parked: it
    /// gives back hyper's buffers until its next byte (`conn::h1`). [`PARK_AFTER`] by default.
    pub park_after: Duration,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub sniff_timeout: Duration,
    pub reload_interval: Duration,
    pub drain_delay: Duration,
    pub drain_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// Worker lanes (see `lanes`); `1` serves everything on the caller's runtime. The binary
    /// sets it from `--workers` (`crate::workers::choose`).
    pub workers: usize,
    /// Probes served on the admin port (see [`super::app_probe`]).
    pub app_probes: AppProbes,
    pub pod_ip: IpAddr,
    /// Who may register a session.
    pub session_authorization: Authorization,
}

/// The longest a drain keeps accepting while the app listens, when nothing says otherwise: a
/// proxy run by hand (a benchmark, a developer's terminal) still stops soon after Ctrl-C
/// although its app keeps listening. The webhook passes the chart's value to injected pods.
pub const DEFAULT_DRAIN_DELAY_SECS: u64 = 5;

/// Not a flag: 2 s keeps a client that sends every second on the fast path (no new hyper
/// connection per request) and parks a pooled connection soon after its last request.
pub const PARK_AFTER: Duration = Duration::from_secs(2);

impl ProxyConfig {
    /// Defaults for `plan`, listening on the standard ports.
    pub fn new(plan: StealPlan) -> Self {
        ProxyConfig {
            plan,
            listen: default_listen(),
            admin: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ADMIN_PORT))),
            session_api: None,
            orig_dst_override: None,
            orig_dst_for: Vec::new(),
            files: FileResolver::default(),
            body_limits: BodyLimits::default(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            park_after: PARK_AFTER,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            upstream_idle_timeout: Duration::from_secs(60),
            sniff_timeout: Duration::from_secs(2),
            reload_interval: Duration::from_secs(1),
            drain_delay: Duration::from_secs(DEFAULT_DRAIN_DELAY_SECS),
            drain_timeout: Duration::from_secs(25),
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
            workers: 1,
            app_probes: AppProbes::new(),
            pod_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            session_authorization: Authorization::Disabled,
        }
    }
}

/// The capture port on every IPv4 and IPv6 address.
fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, CAPTURE_PORT)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, CAPTURE_PORT)),
    ]
}

/// An `--orig-dst-for` value that is not `LISTEN=DST`.
#[derive(Debug, thiserror::Error)]
pub enum DstPairError {
    #[error("{0:?}: expected LISTEN=DST")]
    NoEquals(String),
    #[error("{text:?} is not an address:port")]
    Addr {
        text: String,
        #[source]
        source: std::net::AddrParseError,
    },
}

/// `LISTEN=DST`.
fn parse_dst_pair(s: &str) -> Result<(SocketAddr, SocketAddr), DstPairError> {
    let (l, d) = s
        .split_once('=')
        .ok_or_else(|| DstPairError::NoEquals(s.to_owned()))?;
    let addr = |a: &str| {
        a.trim()
            .parse::<SocketAddr>()
            .map_err(|source| DstPairError::Addr {
                text: a.to_owned(),
                source,
            })
    };
    Ok((addr(l)?, addr(d)?))
}

impl ProxyConfig {
    /// The ports the app serves the captured connections on: the plan's, or those of the fixed
    /// destinations when there are any.
    pub fn app_ports(&self) -> Vec<u16> {
        let fixed: Vec<u16> = self
            .orig_dst_for
            .iter()
            .map(|(_, dst)| dst.port())
            .chain(self.orig_dst_override.map(|d| d.port()))
            .collect();
        match fixed.is_empty() {
            true => self.plan.port_numbers(),
            false => fixed,
        }
    }

    /// The fixed original destination of connections accepted on `local`, if any.
    pub fn dst_override(&self, local: Option<SocketAddr>) -> Option<SocketAddr> {
        local
            .and_then(|l| {
                self.orig_dst_for
                    .iter()
                    .find(|(listen, _)| *listen == l)
                    .map(|(_, dst)| *dst)
            })
            .or(self.orig_dst_override)
    }
}

impl ProxyArgs {
    /// Reads and checks the plan (version and hash), and builds the configuration.
    pub fn into_config(self) -> Result<ProxyConfig, ConfigError> {
        let json = match (&self.plan, self.plan_json) {
            (Some(path), _) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?
            }
            (None, Some(json)) => json,
            (None, None) => return Err(ConfigError::NoPlan),
        };
        let plan = StealPlan::from_json(&json)?;
        let app_probes = match self.app_probes_json.as_deref().map(str::trim) {
            None | Some("") => AppProbes::new(),
            Some(json) => {
                parse_app_probes(json).map_err(|source| ConfigError::AppProbes { source })?
            }
        };
        let session_authorization = match self.session_authorization {
            AuthorizationMode::Disabled => Authorization::Disabled,
            AuthorizationMode::Required => {
                let keys = VerifyingKey::parse_list(&self.session_keys)
                    .map_err(|source| ConfigError::SessionKeys { source })?;
                match self.pod_namespace.filter(|n| !n.is_empty()) {
                    // No keys (yet): every registration is refused, naming the key its ticket
                    // was signed with; the app's traffic is unaffected.
                    Some(namespace) => Authorization::Required { keys, namespace },
                    None => return Err(ConfigError::SessionAuthorizationIncomplete),
                }
            }
        };
        Ok(ProxyConfig {
            plan,
            listen: self.listen,
            admin: Some(self.admin),
            session_api: Some(self.session_api),
            orig_dst_override: self.orig_dst_override,
            orig_dst_for: self.orig_dst_for,
            files: FileResolver {
                target_pid: self.target_pid,
                direct: self.direct_files.unwrap_or_else(|| {
                    match std::env::var_os("KUBERNETES_SERVICE_HOST") {
                        Some(_) => DirectLookup::Volumes,
                        None => DirectLookup::Any,
                    }
                }),
                ..FileResolver::default()
            },
            body_limits: BodyLimits {
                max_bytes: self.body_filter_max_bytes,
                timeout: Duration::from_millis(self.body_filter_timeout_ms),
            },
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            park_after: PARK_AFTER,
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            upstream_idle_timeout: Duration::from_secs(self.upstream_idle_timeout),
            sniff_timeout: Duration::from_millis(self.sniff_timeout_ms),
            reload_interval: Duration::from_millis(self.reload_interval_ms),
            drain_delay: Duration::from_secs(self.drain_delay),
            drain_timeout: Duration::from_secs(self.drain_timeout),
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections.max(1),
            workers: 1,
            app_probes,
            pod_ip: self.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            session_authorization,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn config(extra: &[&str]) -> Result<ProxyConfig, ConfigError> {
        let plan = StealPlan::from_ports(vec![]).to_json();
        let mut argv = vec!["proxy", "--plan-json", &plan];
        if !extra.contains(&"--session-authorization") {
            argv.extend_from_slice(&["--session-authorization", "disabled"]);
        }
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args.into_config()
    }

    #[test]
    fn session_authorization_needs_keys_and_namespace() {
        let key = tls_steal_crds::ticket::SigningKey::from_pkcs8(
            &tls_steal_crds::ticket::SigningKey::generate_pkcs8().unwrap(),
        )
        .unwrap()
        .public_key();
        let required = ["--session-authorization", "required"];
        let e = config(&required).unwrap_err();
        assert!(e.to_string().contains(POD_NAMESPACE_ENV), "{e}");
        let mut args = required.to_vec();
        args.extend(["--session-keys", "nope"]);
        let e = config(&args).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let mut args = required.to_vec();
        args.extend(["--session-keys", &key, "--pod-namespace", "shop"]);
        match config(&args).unwrap().session_authorization {
            Authorization::Required { keys, namespace } => {
                assert_eq!((keys.len(), namespace.as_str()), (1, "shop"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            config(&[]).unwrap().session_authorization,
            Authorization::Disabled
        ));
    }

    #[test]
    fn app_probes_pod_ip_and_drain_settings() {
        let c = config(&[]).unwrap();
        assert!(c.app_probes.is_empty());
        assert_eq!(c.pod_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.drain_delay, Duration::from_secs(DEFAULT_DRAIN_DELAY_SECS));
        assert_eq!(c.max_connections, 4096);
        // The app's ports: the plan's, unless the destination is fixed.
        assert_eq!(c.app_ports(), c.plan.port_numbers());
        let c = config(&["--orig-dst-override", "127.0.0.1:9443"]).unwrap();
        assert_eq!(c.app_ports(), vec![9443]);

        let probes = r#"{"app/liveness":{"action":{"tcpSocket":{"port":443}},"timeoutSeconds":2}}"#;
        let c = config(&["--app-probes-json", probes, "--pod-ip", "fd00::7"]).unwrap();
        assert_eq!(c.app_probes.len(), 1);
        assert_eq!(c.pod_ip, "fd00::7".parse::<IpAddr>().unwrap());
        assert!(
            config(&["--app-probes-json", " "])
                .unwrap()
                .app_probes
                .is_empty()
        );

        let e = config(&["--app-probes-json", r#"{"app/liveness":{}}"#]).unwrap_err();
        assert!(
            matches!(e, ConfigError::AppProbes { .. }) && e.to_string().contains(APP_PROBES_ENV),
            "{e}"
        );
    }

    fn parse(args: &[&str]) -> Result<ProxyConfig, String> {
        let mut v = vec![
            "proxy",
            "--plan-json",
            r#"{"version":1,"ports":[],"configs":[],"hash":""}"#,
            "--session-authorization",
            "disabled",
        ];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        cli.args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn body_filter_limits_and_their_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.body_limits, BodyLimits::default());
        assert_eq!(c.body_limits.max_bytes, 65536);
        assert_eq!(c.body_limits.timeout, Duration::from_secs(1));
        let c = parse(&[
            "--body-filter-max-bytes",
            "10",
            "--body-filter-timeout-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(c.body_limits.max_bytes, 10);
        assert_eq!(c.body_limits.timeout, Duration::from_millis(5));
        assert!(parse(&["--body-filter-max-bytes", "-1"]).is_err());
    }

    #[test]
    fn per_listener_destinations() {
        let c = parse(&[
            "--orig-dst-for",
            "127.0.0.1:15443=10.0.0.1:443",
            "--orig-dst-override",
            "10.0.0.9:9",
        ])
        .unwrap();
        let l = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(c.dst_override(l("127.0.0.1:15443")), l("10.0.0.1:443"));
        assert_eq!(c.dst_override(l("127.0.0.1:15444")), l("10.0.0.9:9"));
        for bad in ["127.0.0.1:1", "a=b", "127.0.0.1:1=nope"] {
            let e = parse(&["--orig-dst-for", bad]).unwrap_err();
            assert!(e.contains("--orig-dst-for"), "{bad}: {e}");
        }
    }

    #[test]
    fn direct_files_choice() {
        let c = parse(&["--direct-files", "volumes"]).unwrap();
        assert_eq!(c.files.direct, DirectLookup::Volumes);
        let c = parse(&["--direct-files", "any"]).unwrap();
        assert_eq!(c.files.direct, DirectLookup::Any);
        assert!(parse(&["--direct-files", "sometimes"]).is_err());
    }
}
