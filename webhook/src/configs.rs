//! In-memory caches of both config kinds, so admission never waits on the API server for them.
//!
//! Against a cluster, two kube-runtime reflectors keep `Store`s of `MirrordTlsStealConfig` and
//! `MirrordClusterTlsStealConfig` (RBAC: list + watch on both). Every watch event bumps a
//! generation counter; the first admission after a change rebuilds an [`Index`] of
//! [`ConfigSource`]s (namespaced ones grouped by namespace) and per-namespace slices "this
//! namespace's configs + the cluster ones" are built lazily and reused until the next change, so
//! the hot path clones one `Arc` and matches only the configs that can apply.
//!
//! Over 400 lines because of its tests (a third of the file): they check the index against the
//! plain filter it replaces.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::openmetrics::{self, Label};
use crate::watch_backoff::{self, WatchBackoff};
use futures::StreamExt;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tls_steal_crds::{
    ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig, PodTarget,
};

enum Source {
    Static(Vec<ConfigSource>),
    Stores {
        namespaced: Store<MirrordTlsStealConfig>,
        cluster: Store<MirrordClusterTlsStealConfig>,
    },
}

/// A config and the literal start of its `targetPath` (up to the first wildcard): a pod none of
/// whose target paths starts with it cannot match, so most configs are dismissed by a string
/// comparison before `build_plan` does the real matching.
#[derive(Clone, Debug)]
pub struct Candidate {
    prefix: String,
    pub source: ConfigSource,
}

impl Candidate {
    pub fn new(source: ConfigSource) -> Self {
        let prefix = match &source.spec.target_path {
            Some(p) => p[..p.find(['*', '?']).unwrap_or(p.len())].to_owned(),
            None => String::new(),
        };
        Candidate { prefix, source }
    }
}

/// The configs of `entries` that may apply to `target` (a superset of those that do): the plain
/// filter [`NamespaceConfigs::candidates`] is tested against.
#[cfg(test)]
fn candidates(entries: &[Candidate], target: &PodTarget) -> Vec<ConfigSource> {
    let paths = target.target_paths();
    entries
        .iter()
        .filter(|c| c.prefix.is_empty() || paths.iter().any(|p| p.path.starts_with(&c.prefix)))
        .map(|c| c.source.clone())
        .collect()
}

/// The configs that can apply to pods of one namespace (its own and the cluster ones), indexed
/// by literal prefix: a pod's candidates are found by looking up the prefixes of its few target
/// paths instead of comparing every config with every path.
#[derive(Debug, Default)]
pub struct NamespaceConfigs {
    /// Of the snapshot these come from: equal generations, equal configs.
    generation: u64,
    entries: Vec<Candidate>,
    /// Entries without a literal prefix (candidates for every pod).
    unprefixed: Vec<usize>,
    by_prefix: HashMap<String, Vec<usize>>,
    /// The distinct prefix lengths, ascending.
    lengths: Vec<usize>,
}

impl NamespaceConfigs {
    fn new(generation: u64, entries: Vec<Candidate>) -> Self {
        let mut index = NamespaceConfigs {
            generation,
            ..Default::default()
        };
        for (i, c) in entries.iter().enumerate() {
            if c.prefix.is_empty() {
                index.unprefixed.push(i);
            } else {
                index.by_prefix.entry(c.prefix.clone()).or_default().push(i);
                index.lengths.push(c.prefix.len());
            }
        }
        index.lengths.sort_unstable();
        index.lengths.dedup();
        index.entries = entries;
        index
    }

    /// The generation of the config snapshot (it grows with every change of any config).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Same result as [`candidates`] over all the entries, in the same order.
    pub fn candidates(&self, target: &PodTarget) -> Vec<ConfigSource> {
        let mut found = self.unprefixed.clone();
        for p in target.target_paths() {
            for &len in self.lengths.iter().take_while(|&&len| len <= p.path.len()) {
                if let Some(hits) = p.path.get(..len).and_then(|pre| self.by_prefix.get(pre)) {
                    found.extend(hits);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|i| self.entries[i].source.clone())
            .collect()
    }
}

impl std::ops::Deref for NamespaceConfigs {
    type Target = [Candidate];

    fn deref(&self) -> &[Candidate] {
        &self.entries
    }
}

/// A snapshot of every config, grouped for admission.
#[derive(Default)]
pub struct Index {
    generation: u64,
    cluster: Vec<Candidate>,
    namespaced: HashMap<String, Vec<Candidate>>,
    combined: Mutex<HashMap<String, Arc<NamespaceConfigs>>>,
}

impl Index {
    fn build(generation: u64, all: impl IntoIterator<Item = ConfigSource>) -> Self {
        let mut index = Index {
            generation,
            ..Default::default()
        };
        for c in all {
            let c = Candidate::new(c);
            match &c.source.namespace {
                Some(ns) => index.namespaced.entry(ns.clone()).or_default().push(c),
                None => index.cluster.push(c),
            }
        }
        index
    }

    /// The configs that can apply to a pod of `namespace`.
    pub fn for_namespace(&self, namespace: &str) -> Arc<NamespaceConfigs> {
        let mut combined = self.combined.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = combined.get(namespace) {
            return v.clone();
        }
        let v = Arc::new(NamespaceConfigs::new(
            self.generation,
            self.namespaced
                .get(namespace)
                .into_iter()
                .flatten()
                .chain(&self.cluster)
                .cloned()
                .collect(),
        ));
        // Bound the memory spent on namespaces that have no config of their own.
        if combined.len() < 10_000 {
            combined.insert(namespace.to_owned(), v.clone());
        }
        v
    }

    /// Number of configs of both kinds.
    pub fn len(&self) -> usize {
        self.cluster.len() + self.namespaced.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The config caches.
pub struct ConfigCache {
    source: RwLock<Source>,
    generation: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
    index: RwLock<Arc<Index>>,
    watch: WatchMetrics,
}

/// The two config kinds, as their watches' metric label.
const KINDS: [&str; 2] = ["MirrordTlsStealConfig", "MirrordClusterTlsStealConfig"];

/// How the config watches fare: what an operator alerts on when admission may be deciding from
/// a cache that no longer follows the API server.
struct WatchMetrics {
    errors_family: Family<Label, Counter>,
    errors: [Counter; 2],
    listed_family: Family<Label, Gauge>,
    listed_at: [Gauge; 2],
}

impl WatchMetrics {
    fn new() -> Self {
        let (errors_family, errors) = openmetrics::counters("kind", KINDS);
        let (listed_family, listed_at) = openmetrics::labelled("kind", KINDS);
        WatchMetrics {
            errors_family,
            errors,
            listed_family,
            listed_at,
        }
    }
}

impl ConfigCache {
    /// A fixed set of configs (tests, benchmarks, `inject`). Ready at once.
    pub fn from_sources(configs: Vec<ConfigSource>) -> Self {
        ConfigCache {
            source: RwLock::new(Source::Static(configs)),
            generation: Arc::new(AtomicU64::new(1)),
            ready: Arc::new(AtomicBool::new(true)),
            index: RwLock::new(Arc::new(Index::default())),
            watch: WatchMetrics::new(),
        }
    }

    /// Adds the config watches' metrics to `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "tls_steal_webhook_config_watch_errors",
            "Errors of the config watches (each is retried within a second)",
            self.watch.errors_family.clone(),
        );
        registry.register(
            "tls_steal_webhook_config_listed_timestamp_seconds",
            "When the config watch last completed a full list (Unix time)",
            self.watch.listed_family.clone(),
        );
    }

    /// Replaces the configs of a static cache.
    pub fn replace(&self, configs: Vec<ConfigSource>) {
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = Source::Static(configs);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Starts the two reflectors. The cache is ready once both have listed.
    pub fn start(client: Client) -> Arc<Self> {
        let (namespaced, ns_writer) = reflector::store::<MirrordTlsStealConfig>();
        let (cluster, cl_writer) = reflector::store::<MirrordClusterTlsStealConfig>();
        let cache = Arc::new(ConfigCache {
            source: RwLock::new(Source::Stores {
                namespaced: namespaced.clone(),
                cluster: cluster.clone(),
            }),
            generation: Arc::new(AtomicU64::new(1)),
            ready: Arc::new(AtomicBool::new(false)),
            index: RwLock::new(Arc::new(Index::default())),
            watch: WatchMetrics::new(),
        });

        let ns_api: Api<MirrordTlsStealConfig> = Api::all(client.clone());
        tokio::spawn(cache.clone().follow(ns_api, ns_writer, 0));
        let cl_api: Api<MirrordClusterTlsStealConfig> = Api::all(client);
        tokio::spawn(cache.clone().follow(cl_api, cl_writer, 1));
        let ready = cache.ready.clone();
        tokio::spawn(async move {
            if namespaced.wait_until_ready().await.is_ok()
                && cluster.wait_until_ready().await.is_ok()
            {
                tracing::info!("config caches synced");
                ready.store(true, Ordering::SeqCst);
            }
        });
        cache
    }

    /// Keeps the store of `writer` (the config kind at `KINDS[kind]`) in step with the API
    /// server: every event bumps the generation, errors are counted and retried soon (see
    /// `watch_backoff`), and a completed list is timestamped.
    async fn follow<K>(self: Arc<Self>, api: Api<K>, writer: Writer<K>, kind: usize)
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .backoff(WatchBackoff::new(watch_backoff::SMALL));
        stream
            .for_each(|ev| {
                match ev {
                    Err(e) => {
                        tracing::warn!(error = %e, kind = KINDS[kind], "watching configs; retrying");
                        self.watch.errors[kind].inc();
                    }
                    Ok(watcher::Event::InitDone) => {
                        openmetrics::set_to_now(&self.watch.listed_at[kind]);
                    }
                    Ok(_) => {}
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
                futures::future::ready(())
            })
            .await;
    }

    /// Grows with every change of any config; a snapshot built now has at least this one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Both caches have completed their initial list.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The current snapshot, rebuilt when a config changed since the last call.
    pub fn snapshot(&self) -> Arc<Index> {
        let generation = self.generation.load(Ordering::SeqCst);
        {
            let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
            if idx.generation == generation {
                return idx.clone();
            }
        }
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        if idx.generation == generation {
            return idx.clone();
        }
        let source = self.source.read().unwrap_or_else(|e| e.into_inner());
        let new = match &*source {
            Source::Static(v) => Index::build(generation, v.iter().cloned()),
            Source::Stores {
                namespaced,
                cluster,
            } => Index::build(
                generation,
                namespaced
                    .state()
                    .iter()
                    .map(|c| ConfigSource::from(c.as_ref()))
                    .chain(
                        cluster
                            .state()
                            .iter()
                            .map(|c| ConfigSource::from(c.as_ref())),
                    ),
            ),
        };
        *idx = Arc::new(new);
        idx.clone()
    }

    /// The configs that can apply to a pod of `namespace`.
    pub fn for_namespace(&self, namespace: &str) -> Arc<NamespaceConfigs> {
        self.snapshot().for_namespace(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_steal_crds::TlsStealSpec;

    #[test]
    fn groups_by_namespace_and_rebuilds_on_change() {
        let spec = TlsStealSpec::default();
        let cache = ConfigCache::from_sources(vec![
            ConfigSource::namespaced("a", "x", spec.clone()),
            ConfigSource::namespaced("b", "y", spec.clone()),
            ConfigSource::cluster("z", spec.clone()),
        ]);
        let names =
            |v: Arc<NamespaceConfigs>| v.iter().map(|c| c.source.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(cache.for_namespace("a")), ["x", "z"]);
        assert_eq!(names(cache.for_namespace("c")), ["z"]);
        assert_eq!(cache.snapshot().len(), 3);
        cache.replace(vec![ConfigSource::namespaced("c", "w", spec)]);
        assert_eq!(names(cache.for_namespace("a")), Vec::<String>::new());
        assert_eq!(names(cache.for_namespace("c")), ["w"]);
    }

    #[test]
    fn candidates_prefilter_by_literal_prefix() {
        let with = |t: Option<&str>| TlsStealSpec {
            target_path: t.map(Into::into),
            ..Default::default()
        };
        let entries: Vec<Candidate> = [
            None,
            Some("deploy/web*"),
            Some("deploy/api"),
            Some("*/web"),
            Some("pod/x?"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, t)| Candidate::new(ConfigSource::namespaced("a", &i.to_string(), with(t))))
        .collect();
        let target = PodTarget {
            owners: vec![tls_steal_crds::Owner::new(
                tls_steal_crds::OwnerKind::Deployment,
                "web",
            )],
            ..Default::default()
        };
        let got: Vec<String> = candidates(&entries, &target)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(got, ["0", "1", "3"]);
        let indexed: Vec<String> = NamespaceConfigs::new(1, entries)
            .candidates(&target)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(indexed, got);
    }

    #[test]
    fn indexed_candidates_equal_the_linear_filter() {
        use tls_steal_crds::target::ContainerInfo;
        use tls_steal_crds::{Owner, OwnerKind};
        let patterns = [
            None,
            Some("deploy/web*"),
            Some("deploy/we"),
            Some("deploy/web"),
            Some("deploy/web/container/app"),
            Some("deploy/webx"),
            Some("pod/é*"),
            Some("pod/é1/container/a?p"),
            Some("*"),
            Some("?x"),
            Some("rs/web-5d8f7c*"),
            Some("daemonset/a"),
        ];
        let entries: Vec<Candidate> = patterns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let spec = TlsStealSpec {
                    target_path: t.map(Into::into),
                    ..Default::default()
                };
                Candidate::new(ConfigSource::namespaced("a", &i.to_string(), spec))
            })
            .collect();
        let index = NamespaceConfigs::new(1, entries.clone());
        let app = ContainerInfo {
            name: "app".into(),
            ports: vec![8443],
        };
        let targets = [
            PodTarget {
                owners: vec![
                    Owner::new(OwnerKind::ReplicaSet, "web-5d8f7c"),
                    Owner::new(OwnerKind::Deployment, "web"),
                ],
                containers: vec![app.clone()],
                ..Default::default()
            },
            PodTarget {
                name: Some("é1".into()),
                containers: vec![app.clone()],
                ..Default::default()
            },
            PodTarget {
                name: Some("é".into()),
                ..Default::default()
            },
            PodTarget::default(),
        ];
        for t in &targets {
            assert_eq!(index.candidates(t), candidates(&entries, t), "{t:?}");
        }
    }
}
