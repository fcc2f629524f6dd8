//! What the reconcilers share: the caches they read, the client, the events they publish, and
//! what they remember between reconciliations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Api, Client, Resource, ResourceExt};
use tls_steal_crds::status::TlsStealConfigStatus;
use tls_steal_crds::{ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig};
use tokio::sync::Notify;

use super::args::ControllerSettings;
use super::backoff::Backoff;
use super::desired::{Workload, WorkloadState};
use super::lean::Cached;
use super::metrics::ControllerMetrics;

/// Whether a namespace carries `tls-steal-injection=enabled`.
pub fn namespace_opted_in(ns: &Namespace) -> bool {
    let (k, v) = tls_steal_crds::contract::NAMESPACE_OPT_IN_LABEL;
    ns.labels().get(k).is_some_and(|x| x == v)
}

/// The reflector stores the controller reads (workloads in their cached form: `lean.rs`).
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub namespaced_configs: Store<MirrordTlsStealConfig>,
    pub cluster_configs: Store<MirrordClusterTlsStealConfig>,
    pub deployments: Store<Cached<Deployment>>,
    pub statefulsets: Store<Cached<StatefulSet>>,
    pub daemonsets: Store<Cached<DaemonSet>>,
}

/// The writing halves of [`Caches`] (fed by watchers, or by tests).
pub struct CacheWriters {
    pub namespaces: Writer<Namespace>,
    pub namespaced_configs: Writer<MirrordTlsStealConfig>,
    pub cluster_configs: Writer<MirrordClusterTlsStealConfig>,
    pub deployments: Writer<Cached<Deployment>>,
    pub statefulsets: Writer<Cached<StatefulSet>>,
    pub daemonsets: Writer<Cached<DaemonSet>>,
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
    /// Consecutive failures per workload, and the delay they give.
    pub(super) backoff: Backoff,
    /// Workload id → desired hash already reported as blocked by the opt-out annotation.
    reported: Mutex<HashMap<String, String>>,
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
            backoff: Backoff::default(),
            reported: Mutex::default(),
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
        let c = &self.caches;
        let mut v: Vec<WorkloadState> = Vec::new();
        v.extend(c.deployments.state().iter().map(|w| self.state_of(&**w)));
        v.extend(c.statefulsets.state().iter().map(|w| self.state_of(&**w)));
        v.extend(c.daemonsets.state().iter().map(|w| self.state_of(&**w)));
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

    /// `id` is settled: in sync, rolled out or recorded.
    pub(super) fn forget(&self, id: &str) {
        lock(&self.reported).remove(id);
        self.backoff.forget(id);
    }

    /// True the first time `desired` is reported as blocked for `id`.
    pub(super) fn first_report(&self, id: &str, desired: &str) -> bool {
        lock(&self.reported)
            .insert(id.to_owned(), desired.to_owned())
            .as_deref()
            != Some(desired)
    }

    pub(super) fn already_written(&self, uid: &str, status: &TlsStealConfigStatus) -> bool {
        lock(&self.written).get(uid) == Some(status)
    }

    pub(super) fn remember_written(&self, uid: &str, status: TlsStealConfigStatus) {
        lock(&self.written).insert(uid.to_owned(), status);
    }
}
