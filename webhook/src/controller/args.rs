//! The controller's flags and the settings they give.

use std::time::Duration;

use crate::settings::Settings;

/// Default name of the leader-election Lease.
pub const DEFAULT_LEASE_NAME: &str = tls_steal_crds::contract::CONTROLLER_NAME;

/// Flags of the controller (shared by `serve --controller` and the `controller` subcommand).
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Quiet period per workload before it is reconciled: bursts of edits become one rollout.
    #[arg(
        long = "controller-debounce-ms",
        env = "TLS_STEAL_CONTROLLER_DEBOUNCE_MS",
        default_value_t = 1000
    )]
    pub debounce_ms: u64,
    /// Quiet period before config statuses are recomputed after a change.
    #[arg(long = "controller-status-debounce-ms", default_value_t = 2000)]
    pub status_debounce_ms: u64,
    /// Every workload and status is re-checked this often even without a change.
    #[arg(long = "controller-resync-seconds", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Workloads reconciled in parallel.
    #[arg(long = "controller-concurrency", default_value_t = 4)]
    pub concurrency: u16,
    /// Name of the leader-election Lease.
    #[arg(long = "controller-lease-name", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own).
    #[arg(
        long = "controller-lease-namespace",
        env = "POD_NAMESPACE",
        default_value = "tls-steal"
    )]
    pub lease_namespace: String,
    /// Identity written into the Lease and events (default: $POD_NAME, else host name + pid).
    #[arg(long = "controller-identity", env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run without leader election. Only safe with a single replica.
    #[arg(long = "controller-no-leader-election")]
    pub no_leader_election: bool,
    /// Only watch and roll out workloads (and namespaced configs) of this namespace; cluster
    /// configs still apply. Default: every namespace.
    #[arg(long = "controller-namespace")]
    pub watch_namespace: Option<String>,
}

impl Default for ControllerArgs {
    fn default() -> Self {
        ControllerArgs {
            debounce_ms: 1000,
            status_debounce_ms: 2000,
            resync_seconds: 600,
            concurrency: 4,
            lease_name: DEFAULT_LEASE_NAME.into(),
            lease_namespace: "tls-steal".into(),
            identity: None,
            no_leader_election: false,
            watch_namespace: None,
        }
    }
}

impl ControllerArgs {
    /// This replica's identity: `--controller-identity` ($POD_NAME), else the host name and pid.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(default_identity)
    }
}

/// `serve` flags: whether the controller runs inside the webhook process.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeControllerArgs {
    /// Also run the rollout controller (leader-elected) in this process.
    #[arg(
        id = "controller_enabled",
        long = "controller",
        env = "TLS_STEAL_CONTROLLER"
    )]
    pub enabled: bool,
    #[command(flatten)]
    pub args: ControllerArgs,
}

/// `controller` subcommand flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerCommandArgs {
    #[command(flatten)]
    pub args: ControllerArgs,
    /// Roll out workloads whose plan changes (leader-elected). `false`: only the session signer
    /// runs (chart `controller.enabled: false` with `sessions.authorization: required`).
    #[arg(long, env = "TLS_STEAL_CONTROLLER_ROLLOUTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub rollouts: bool,
    #[command(flatten)]
    pub sessions: crate::tickets::SignerArgs,
    /// Keep the webhook's serving certificate (chart `certificate.mode: selfManaged`): the CA
    /// and certificate in `--secret-name` (made and renewed) and the `caBundle` of
    /// `--webhook-config-name`. The webhook serves the Secret's files (mounted), so its own
    /// account needs no access to Secrets.
    #[arg(long, env = "TLS_STEAL_MANAGE_CERTIFICATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub manage_certificate: bool,
    #[command(flatten)]
    pub cert: crate::certs::CertArgs,
    /// Plain-HTTP address of `/healthz` and `/metrics` ("" disables it).
    #[arg(
        long,
        env = "TLS_STEAL_CONTROLLER_ADMIN_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub admin_listen: String,
}

/// Tunables of a running controller.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    pub debounce: Duration,
    pub status_debounce: Duration,
    pub resync: Duration,
    pub concurrency: u16,
    /// Patch attempts (each on a fresh read of the workload) before a conflict is an error.
    pub conflict_retries: u32,
    /// The webhook settings whose pre-checks (own pods) decide which templates get no plan.
    pub webhook: Settings,
    /// Restrict the watches to this namespace (`None`: all).
    pub namespace: Option<String>,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings::from(&ControllerArgs::default())
    }
}

impl From<&ControllerArgs> for ControllerSettings {
    fn from(a: &ControllerArgs) -> Self {
        ControllerSettings {
            debounce: Duration::from_millis(a.debounce_ms),
            status_debounce: Duration::from_millis(a.status_debounce_ms),
            resync: Duration::from_secs(a.resync_seconds.max(10)),
            concurrency: a.concurrency,
            conflict_retries: 5,
            // kube-system and control-plane pods are never planned; the chart's own namespace is
            // refused at admission (the controller may run with its Lease anywhere).
            webhook: Settings::default(),
            namespace: a.watch_namespace.clone().filter(|n| !n.is_empty()),
        }
    }
}

/// The host name and pid.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tls-steal".into());
    format!("{host}-{}", std::process::id())
}
