//! The run loop: leader election, then (while leading) the watches that feed the caches, the
//! three workload controllers and the status writer.

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tls_steal_crds::{MirrordClusterTlsStealConfig, MirrordTlsStealConfig};
use tokio::sync::mpsc;

use super::args::{ControllerArgs, ControllerSettings};
use super::changed::Changed;
use super::context::{CacheWriters, Caches, Context};
use super::lean::{Cached, CachedKind};
use super::metrics::ControllerMetrics;
use super::triggers::{ConfigTracker, NamespaceTracker, Trigger};
use super::{FIELD_MANAGER, leader, reconcile, sweep};
use crate::watch_backoff::{self, WatchBackoff};

/// Runs the controller until `shutdown` resolves: leader election, then (while leading) the
/// watches, the three workload controllers and the status writer.
/// Counts into `metrics`, which the caller exposes.
pub async fn run(
    client: Client,
    args: ControllerArgs,
    metrics: Arc<ControllerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = ControllerSettings::from(&args);
    let identity = args.identity();
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
    metrics: Arc<ControllerMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(client, args, metrics, shutdown))
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
        .backoff(WatchBackoff::new(watch_backoff::SMALL))
        .reflect(ns_writer)
        .map(Change::Namespace);
    let namespaced = watcher(ctx.api::<MirrordTlsStealConfig>(), wc.clone())
        .backoff(WatchBackoff::new(watch_backoff::SMALL))
        .reflect(nc_writer)
        .map(Change::Namespaced);
    let cluster = watcher(Api::<MirrordClusterTlsStealConfig>::all(client.clone()), wc)
        .backoff(WatchBackoff::new(watch_backoff::SMALL))
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
async fn workload_controller<K: CachedKind>(
    ctx: Arc<Context>,
    writer: Writer<Cached<K>>,
    reader: Store<Cached<K>>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
) {
    let dirty = ctx.clone();
    let cache = reader.clone();
    let workloads = watcher(ctx.api::<Cached<K>>(), watcher::Config::default())
        .backoff(WatchBackoff::new(watch_backoff::LARGE))
        .reflect(writer)
        .inspect(move |ev| {
            dirty.status_dirty.notify_one();
            match ev {
                Ok(_) => dirty.metrics.watch_event(K::KIND, cache.len()),
                Err(_) => dirty.metrics.watch_error(K::KIND),
            }
        })
        .applied_objects()
        // Status updates (replica counts) do not matter; spec and annotations do.
        .try_filter({
            let mut changed = Changed::default();
            move |w| futures::future::ready(changed.passes(w))
        });
    let store = reader.clone();
    let scope = ctx.clone();
    let triggers = futures::stream::unfold(triggers, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    });
    // The periodic resync reaches every workload through the same path as a trigger, so a
    // workload in sync leaves nothing queued (a requeue per workload would keep its key in the
    // scheduler: issue 19, memory per workload).
    let period = ctx.settings.resync;
    let resyncs = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some((Trigger::All, ()))
    });
    let refs = futures::stream::select(triggers, resyncs).flat_map(move |t| {
        let refs: Vec<ObjectRef<Cached<K>>> = store
            .state()
            .iter()
            .filter(|w| t.reaches(w.as_ref(), |ns| scope.namespace_opted_in(ns)))
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
        .run(
            reconcile::reconcile::<Cached<K>>,
            reconcile::error_policy::<Cached<K>>,
            ctx,
        )
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(kind = K::KIND.as_str(), error = %e, "controller");
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
