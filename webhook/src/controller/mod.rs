//! The rollout controller: pods get their plan when they are created, so when the configs change
//! the workloads whose pods would get a different plan are rolled out.
//!
//! For every Deployment, StatefulSet and DaemonSet the controller computes the plan hash its
//! pods would get ([`desired::WorkloadState::desired_plan`]: `build_plan` on the pod template
//! with the workload as owner, the same merge the webhook runs) and compares it with the
//! template's `tls-steal.io/config-hash` annotation (absent = empty). When they differ it sends
//! one JSON patch (`test` of the resourceVersion + `add` of the annotation), which makes
//! Kubernetes roll the workload out. A workload whose namespace is not opted in, or whose pods the
//! webhook would skip, wants the empty hash, so losing a config or the namespace label rolls it
//! back to pods without the sidecar.
//!
//! Decisions:
//! * Level-triggered: the decision depends only on current state, so a restart re-derives
//!   everything and patches nothing that is in sync. Workloads are judged only once the
//!   namespace and config caches have completed their first list.
//! * Triggers: workload changes (generation or annotations), config changes (generation, or
//!   deletion, see [`triggers`]) mapped to the workloads of the config's namespace (every
//!   workload for cluster-scoped configs), and flips of a namespace's opt-in label. Bursts are
//!   coalesced by kube-runtime's per-object debounce (`--controller-debounce-ms`), and a periodic
//!   resync (`--controller-resync-seconds`) catches anything missed.
//! * `tls-steal.io/rollout: "false"` on the workload's own metadata blocks the patch; the
//!   workload gets a `RolloutDisabled` warning event and every config matching it says so in
//!   its `RolledOut` condition.
//! * Config status ([`status`], written by [`sweep`]) is recomputed from the caches after any
//!   change (debounced) and only patched when it differs.
//! * Leader election on a Lease ([`leader`]); everything above runs only while leading.
//! * Adoption: a workload recording no hash (no template annotation and no
//!   `tls-steal.io/adopted-hash`, typically one created after its configs) is not rolled out on
//!   sight, since the webhook already gave its pods their plan. Before patching, its pods are
//!   listed once by the workload's `spec.selector` and the `hash` of each one's
//!   `tls-steal.io/status` annotation (absent = empty) compared with the desired hash, leaving
//!   out pods being deleted or finished ([`desired::adoption`]): at least one pod and all
//!   carrying it → one JSON patch of the WORKLOAD's own `metadata.annotations` (resourceVersion
//!   `test` + `add` of [`ADOPTED_HASH_ANNOTATION`], the whole map when absent;
//!   [`desired::adoption_patch`]), which rolls nothing out but records the hash; no pod yet → no
//!   patch, looked at again in [`reconcile::ADOPTION_RECHECK`] (not at all, and nothing
//!   recorded, if it wants no pods: `replicas: 0`, or a DaemonSet scheduled on no node: its
//!   future pods get their plan from the webhook); some pod differs (e.g. it predates the
//!   config and has no sidecar) → the template is patched. The adoption record is not a
//!   rollout, so `tls-steal.io/rollout: "false"` does not block it. Only a workload recording
//!   no hash is judged by its pods: a present template annotation, even `""`, or a present
//!   record is compared as is without listing pods. Still level-triggered: the pods are
//!   current state too. Without a usable selector, or without permission to list pods, the
//!   template alone decides (it is patched).
//! * The current hash of a workload ([`desired::workload_current_hash`]) is its template's
//!   `tls-steal.io/config-hash` when present, else its `tls-steal.io/adopted-hash`, else `""`.
//!   Reconcile, the trigger filter for namespaces that lost their label, config status and the
//!   sync gauges all use it, so an adopted workload counts as in sync, and when its plan is
//!   removed later (config deleted or no longer matching, namespace label removed) the desired
//!   `""` differs from the record and the template is patched to `""` as usual: rolled out, its
//!   pods lose the sidecar. Any template patch also removes the record
//!   ([`desired::rollout_patch`]), since the template annotation then supersedes it.
//! * Known consequences of comparing with the recorded hash: a StatefulSet or DaemonSet with
//!   `updateStrategy: OnDelete` gets the patched template but keeps its pods until they are
//!   deleted by hand. An adopted workload whose recording patch has not happened yet (no pods,
//!   or the patch failed and is retried) is counted as out of sync (`RolloutPending`) by the
//!   status until it is recorded. The desired hash is computed with the workload as the only
//!   owner, so a `targetPath` naming a ReplicaSet (`rs/...`) or a pod is seen by the webhook
//!   but not here.

pub mod desired;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod sweep;
pub mod triggers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tls_steal_crds::status::TlsStealConfigStatus;
use tls_steal_crds::{ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig};
use tokio::sync::{Notify, mpsc};

use crate::settings::Settings;
use desired::{Workload, WorkloadState};
use metrics::ControllerMetrics;
use triggers::{ConfigTracker, NamespaceTracker, Trigger};

pub use metrics::render_global as render_metrics;

pub use tls_steal_crds::contract::CONFIG_HASH_ANNOTATION;
/// Workload (not template) annotation recording the plan hash of a workload adopted without a
/// rollout: its pods already carried that plan. Read only while the template has no
/// [`CONFIG_HASH_ANNOTATION`]; removed by the next template patch.
pub const ADOPTED_HASH_ANNOTATION: &str = "tls-steal.io/adopted-hash";
/// Workload annotation that, set to `"false"`, keeps the controller from rolling it out.
pub const ROLLOUT_ANNOTATION: &str = "tls-steal.io/rollout";
/// Field manager of the controller's patches, and its event reporter name.
pub const FIELD_MANAGER: &str = "tls-steal-controller";
/// Default name of the leader-election Lease.
pub const DEFAULT_LEASE_NAME: &str = "tls-steal-controller";

/// Whether a namespace carries `tls-steal-injection=enabled`.
pub fn namespace_opted_in(ns: &Namespace) -> bool {
    let (k, v) = crate::NAMESPACE_OPT_IN_LABEL;
    ns.labels().get(k).is_some_and(|x| x == v)
}

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
    /// Patch attempts before a conflict is reported as an error.
    pub conflict_retries: u32,
    /// First wait after a conflict (doubling).
    pub conflict_backoff: Duration,
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
            conflict_backoff: Duration::from_millis(200),
            webhook: Settings::default(),
            namespace: a.watch_namespace.clone().filter(|n| !n.is_empty()),
        }
    }
}

/// The reflector stores the controller reads.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub namespaced_configs: Store<MirrordTlsStealConfig>,
    pub cluster_configs: Store<MirrordClusterTlsStealConfig>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub daemonsets: Store<DaemonSet>,
}

/// The writing halves of [`Caches`] (fed by watchers, or by tests).
pub struct CacheWriters {
    pub namespaces: Writer<Namespace>,
    pub namespaced_configs: Writer<MirrordTlsStealConfig>,
    pub cluster_configs: Writer<MirrordClusterTlsStealConfig>,
    pub deployments: Writer<Deployment>,
    pub statefulsets: Writer<StatefulSet>,
    pub daemonsets: Writer<DaemonSet>,
}

impl Caches {
    /// Empty stores and their writers.
    pub fn new() -> (Caches, CacheWriters) {
        let (namespaces, ns_w) = reflector::store();
        let (namespaced_configs, nc_w) = reflector::store();
        let (cluster_configs, cc_w) = reflector::store();
        let (deployments, d_w) = reflector::store();
        let (statefulsets, s_w) = reflector::store();
        let (daemonsets, ds_w) = reflector::store();
        (
            Caches {
                namespaces,
                namespaced_configs,
                cluster_configs,
                deployments,
                statefulsets,
                daemonsets,
            },
            CacheWriters {
                namespaces: ns_w,
                namespaced_configs: nc_w,
                cluster_configs: cc_w,
                deployments: d_w,
                statefulsets: s_w,
                daemonsets: ds_w,
            },
        )
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub caches: Caches,
    pub settings: ControllerSettings,
    pub metrics: Arc<ControllerMetrics>,
    /// Signalled when config statuses may need rewriting.
    pub status_dirty: Notify,
    /// Workload id → desired hash already reported as blocked by the opt-out annotation.
    reported: Mutex<HashMap<String, String>>,
    /// Workload id → consecutive failed reconciliations.
    failures: Mutex<HashMap<String, u32>>,
    /// Config uid → status last written (the cache may lag behind our own writes).
    written: Mutex<HashMap<String, TlsStealConfigStatus>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Context {
    pub fn new(
        client: Client,
        caches: Caches,
        settings: ControllerSettings,
        metrics: Arc<ControllerMetrics>,
        reporter: Reporter,
    ) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches,
            settings,
            metrics,
            status_dirty: Notify::new(),
            reported: Mutex::default(),
            failures: Mutex::default(),
            written: Mutex::default(),
        }
    }

    /// An API over every namespace, or the one the controller is restricted to.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.settings.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// The namespace is cached and labelled `tls-steal-injection=enabled`.
    pub fn namespace_opted_in(&self, namespace: &str) -> bool {
        self.caches
            .namespaces
            .get(&ObjectRef::new(namespace))
            .is_some_and(|ns| namespace_opted_in(&ns))
    }

    /// The configs of `namespace` and the cluster-scoped ones.
    pub fn configs_for(&self, namespace: &str) -> Vec<ConfigSource> {
        let mut v: Vec<ConfigSource> = self
            .caches
            .namespaced_configs
            .state()
            .iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(namespace))
            .map(|c| ConfigSource::from(c.as_ref()))
            .collect();
        v.extend(
            self.caches
                .cluster_configs
                .state()
                .iter()
                .map(|c| ConfigSource::from(c.as_ref())),
        );
        v
    }

    pub fn state_of<W: Workload>(&self, w: &W) -> WorkloadState {
        let ns = w.meta().namespace.as_deref().unwrap_or_default();
        WorkloadState::of(w, self.namespace_opted_in(ns), &self.settings.webhook)
    }

    /// Every cached workload.
    pub fn workload_states(&self) -> Vec<WorkloadState> {
        let mut v: Vec<WorkloadState> = Vec::new();
        v.extend(
            self.caches
                .deployments
                .state()
                .iter()
                .map(|w| self.state_of(w.as_ref())),
        );
        v.extend(
            self.caches
                .statefulsets
                .state()
                .iter()
                .map(|w| self.state_of(w.as_ref())),
        );
        v.extend(
            self.caches
                .daemonsets
                .state()
                .iter()
                .map(|w| self.state_of(w.as_ref())),
        );
        v
    }

    /// The object reference of a config given its id (`MirrordTlsStealConfig/<ns>/<name>`,
    /// `MirrordClusterTlsStealConfig/<name>`), when cached.
    pub fn config_reference(&self, id: &str) -> Option<ObjectReference> {
        if let Some(rest) = id.strip_prefix("MirrordTlsStealConfig/") {
            let (ns, name) = rest.split_once('/')?;
            let c = self
                .caches
                .namespaced_configs
                .get(&ObjectRef::new(name).within(ns))?;
            Some(c.object_ref(&()))
        } else {
            let name = id.strip_prefix("MirrordClusterTlsStealConfig/")?;
            let c = self.caches.cluster_configs.get(&ObjectRef::new(name))?;
            Some(c.object_ref(&()))
        }
    }

    /// Publishes an event; failures are logged, never fatal.
    pub async fn publish(&self, event: &Event, reference: &ObjectReference) {
        if let Err(e) = self.recorder.publish(event, reference).await {
            tracing::warn!(error = %e, reason = %event.reason, object = ?reference.name, "publishing an event");
        }
    }

    fn forget(&self, id: &str) {
        lock(&self.reported).remove(id);
        self.forget_failures(id);
    }

    fn forget_failures(&self, id: &str) {
        lock(&self.failures).remove(id);
    }

    fn note_failure(&self, id: &str) -> u32 {
        let mut f = lock(&self.failures);
        let n = f.entry(id.to_owned()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// True the first time `desired` is reported as blocked for `id`.
    fn first_report(&self, id: &str, desired: &str) -> bool {
        lock(&self.reported)
            .insert(id.to_owned(), desired.to_owned())
            .as_deref()
            != Some(desired)
    }

    fn already_written(&self, uid: &str, status: &TlsStealConfigStatus) -> bool {
        lock(&self.written).get(uid) == Some(status)
    }

    fn remember_written(&self, uid: &str, status: TlsStealConfigStatus) {
        lock(&self.written).insert(uid.to_owned(), status);
    }
}

/// This replica's identity: `$POD_NAME`, else the host name and pid.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tls-steal".into());
    format!("{host}-{}", std::process::id())
}

/// Runs the controller until `shutdown` resolves: leader election, then (while leading) the
/// watches, the three workload controllers and the status writer.
pub async fn run(client: Client, args: ControllerArgs, shutdown: impl Future<Output = ()>) {
    let metrics = metrics::global();
    let settings = ControllerSettings::from(&args);
    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(default_identity);
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: Some(identity.clone()),
    };
    let term = || {
        run_leading(
            client.clone(),
            settings.clone(),
            metrics.clone(),
            reporter.clone(),
        )
    };
    if args.no_leader_election {
        metrics.set_leader(true);
        tokio::select! {
            _ = term() => {}
            _ = shutdown => {}
        }
        metrics.set_leader(false);
        return;
    }
    let lease = leader::LeaseSettings::new(&args.lease_name, &args.lease_namespace, &identity);
    let api = Api::namespaced(client.clone(), &args.lease_namespace);
    leader::run_with_leadership(api, lease, &metrics, term, shutdown).await;
}

/// Starts the controller in the background of another command (`serve --controller`), until
/// `shutdown` resolves (then it stops and releases its Lease, so the other replica takes over
/// at once).
pub fn spawn(
    client: Client,
    args: ControllerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(client, args, shutdown))
}

/// The `controller` subcommand: the controller alone, with a plain-HTTP `/healthz` + `/metrics`,
/// releasing its Lease on SIGINT/SIGTERM.
pub async fn run_command(args: ControllerCommandArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    if !args.admin_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&args.admin_listen).await?;
        tracing::info!(addr = %args.admin_listen, "serving /healthz and /metrics");
        let router = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route("/readyz", axum::routing::get(|| async { "ok" }))
            .route(
                "/metrics",
                axum::routing::get(|| async {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        render_metrics(),
                    )
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "admin server");
            }
        });
    }
    run(client, args.args, crate::signals::terminated()).await;
    Ok(())
}

/// One leadership term: watches, caches, controllers, status writer. Never returns on its own.
async fn run_leading(
    client: Client,
    settings: ControllerSettings,
    metrics: Arc<ControllerMetrics>,
    reporter: Reporter,
) {
    let (caches, writers) = Caches::new();
    let ctx = Arc::new(Context::new(
        client.clone(),
        caches.clone(),
        settings,
        metrics,
        reporter,
    ));
    let (d_tx, d_rx) = mpsc::unbounded_channel();
    let (s_tx, s_rx) = mpsc::unbounded_channel();
    let (ds_tx, ds_rx) = mpsc::unbounded_channel();
    let CacheWriters {
        namespaces,
        namespaced_configs,
        cluster_configs,
        deployments,
        statefulsets,
        daemonsets,
    } = writers;
    let driver = drive_triggers(
        ctx.clone(),
        namespaces,
        namespaced_configs,
        cluster_configs,
        vec![d_tx, s_tx, ds_tx],
    );
    let controllers = async {
        // Judging a workload before every config is known would roll it back to "no plan".
        let synced = async {
            let _ = caches.namespaces.wait_until_ready().await;
            let _ = caches.namespaced_configs.wait_until_ready().await;
            let _ = caches.cluster_configs.wait_until_ready().await;
        };
        synced.await;
        tracing::info!("namespace and config caches synced; reconciling workloads");
        tokio::join!(
            workload_controller::<Deployment>(
                ctx.clone(),
                deployments,
                caches.deployments.clone(),
                d_rx
            ),
            workload_controller::<StatefulSet>(
                ctx.clone(),
                statefulsets,
                caches.statefulsets.clone(),
                s_rx
            ),
            workload_controller::<DaemonSet>(
                ctx.clone(),
                daemonsets,
                caches.daemonsets.clone(),
                ds_rx
            ),
            status_loop(ctx.clone()),
        );
    };
    tokio::join!(driver, controllers);
}

enum Change {
    Namespace(Result<watcher::Event<Namespace>, watcher::Error>),
    Namespaced(Result<watcher::Event<MirrordTlsStealConfig>, watcher::Error>),
    Cluster(Result<watcher::Event<MirrordClusterTlsStealConfig>, watcher::Error>),
}

/// Keeps the namespace and config caches and turns their changes into workload triggers.
async fn drive_triggers(
    ctx: Arc<Context>,
    ns_writer: Writer<Namespace>,
    nc_writer: Writer<MirrordTlsStealConfig>,
    cc_writer: Writer<MirrordClusterTlsStealConfig>,
    senders: Vec<mpsc::UnboundedSender<Trigger>>,
) {
    let client = &ctx.client;
    let wc = watcher::Config::default();
    let ns_wc = match &ctx.settings.namespace {
        Some(ns) => wc.clone().fields(&format!("metadata.name={ns}")),
        None => wc.clone(),
    };
    let namespaces = watcher(Api::<Namespace>::all(client.clone()), ns_wc)
        .default_backoff()
        .reflect(ns_writer)
        .map(Change::Namespace);
    let namespaced = watcher(ctx.api::<MirrordTlsStealConfig>(), wc.clone())
        .default_backoff()
        .reflect(nc_writer)
        .map(Change::Namespaced);
    let cluster = watcher(Api::<MirrordClusterTlsStealConfig>::all(client.clone()), wc)
        .default_backoff()
        .reflect(cc_writer)
        .map(Change::Cluster);
    let mut all = std::pin::pin!(futures::stream::select(
        namespaces,
        futures::stream::select(namespaced, cluster)
    ));
    let mut ns_tracker = NamespaceTracker::default();
    let mut nc_tracker = ConfigTracker::default();
    let mut cc_tracker = ConfigTracker::default();
    while let Some(change) = all.next().await {
        let triggers = match change {
            Change::Namespace(Ok(ev)) => ns_tracker.on_event(&ev),
            Change::Namespaced(Ok(ev)) => nc_tracker.on_event(&ev),
            Change::Cluster(Ok(ev)) => cc_tracker.on_event(&ev),
            Change::Namespace(Err(e)) | Change::Namespaced(Err(e)) | Change::Cluster(Err(e)) => {
                tracing::warn!(error = %e, "watch failed; retrying with backoff");
                continue;
            }
        };
        if triggers.is_empty() {
            continue;
        }
        tracing::debug!(?triggers, "config or namespace change");
        ctx.status_dirty.notify_one();
        for t in triggers {
            for tx in &senders {
                let _ = tx.send(t.clone());
            }
        }
    }
}

/// The controller of one workload kind.
async fn workload_controller<W: Workload>(
    ctx: Arc<Context>,
    writer: Writer<W>,
    reader: Store<W>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
) {
    let dirty = ctx.clone();
    let workloads = watcher(ctx.api::<W>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |_| dirty.status_dirty.notify_one())
        .applied_objects()
        // Status updates (replica counts) do not matter; spec and annotations do.
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let store = reader.clone();
    let scope = ctx.clone();
    let refs = futures::stream::unfold(triggers, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    })
    .flat_map(move |t| {
        let refs: Vec<ObjectRef<W>> = store
            .state()
            .iter()
            .filter(|w| {
                let ns = w.meta().namespace.as_deref().unwrap_or_default();
                t.covers(ns)
                    && (scope.namespace_opted_in(ns)
                        || !desired::workload_current_hash(w.meta(), w.template()).is_empty())
            })
            .map(|w| ObjectRef::from_obj(w.as_ref()))
            .collect();
        futures::stream::iter(refs)
    });
    let config = ControllerConfig::default()
        .debounce(ctx.settings.debounce)
        .concurrency(ctx.settings.concurrency);
    Controller::for_stream(workloads, reader)
        .with_config(config)
        .reconcile_on(refs)
        .run(reconcile::reconcile::<W>, reconcile::error_policy::<W>, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(kind = W::KIND.as_str(), error = %e, "controller");
            }
            futures::future::ready(())
        })
        .await;
}

/// Rewrites config statuses after changes (debounced) and on every resync.
async fn status_loop(ctx: Arc<Context>) {
    let _ = ctx.caches.deployments.wait_until_ready().await;
    let _ = ctx.caches.statefulsets.wait_until_ready().await;
    let _ = ctx.caches.daemonsets.wait_until_ready().await;
    loop {
        if let Err(e) = sweep::sync_statuses(&ctx).await {
            ctx.metrics.error(e.kind());
        }
        let _ = tokio::time::timeout(ctx.settings.resync, ctx.status_dirty.notified()).await;
        tokio::time::sleep(ctx.settings.status_debounce).await;
    }
}
