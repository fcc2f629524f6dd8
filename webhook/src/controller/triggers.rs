//! Which workloads to reconcile when a config or a namespace changes.
//!
//! Config changes are filtered on `metadata.generation` (status writes, including the
//! controller's own, trigger nothing) and deletions are never missed: a config that disappears
//! across a re-list (watch desync) is treated as deleted at `InitDone`. A namespaced config maps
//! to every workload of its namespace, a cluster one to every workload. Namespaces trigger only
//! when their opt-in label flips.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::runtime::watcher::Event;

use super::context::namespace_opted_in;
use super::desired::{self, Workload};

/// A set of workloads to reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Every workload (a cluster-scoped config changed).
    All,
    /// Every workload of one namespace.
    Namespace(String),
}

impl Trigger {
    pub fn covers(&self, namespace: &str) -> bool {
        match self {
            Trigger::All => true,
            Trigger::Namespace(ns) => ns == namespace,
        }
    }

    /// Whether this trigger reconciles workload `w`: in its scope, and in an opted-in
    /// namespace or recording a plan (which losing the opt-in label rolls back); the others
    /// want no plan and have none.
    pub fn reaches<W: Workload>(&self, w: &W, namespace_opted_in: impl Fn(&str) -> bool) -> bool {
        let ns = w.meta().namespace.as_deref().unwrap_or_default();
        self.covers(ns) && (namespace_opted_in(ns) || desired::records_a_plan(w))
    }

    fn for_scope(namespace: Option<&str>) -> Trigger {
        match namespace {
            Some(ns) => Trigger::Namespace(ns.into()),
            None => Trigger::All,
        }
    }
}

type Key = (Option<String>, String);

/// Remembers the generation of every config seen; turns watch events into triggers.
#[derive(Default)]
pub struct ConfigTracker {
    seen: HashMap<Key, (Option<String>, Option<i64>)>,
    relisting: Option<HashSet<Key>>,
}

impl ConfigTracker {
    pub fn on_event<K: Resource>(&mut self, event: &Event<K>) -> Vec<Trigger> {
        let key = |o: &K| {
            (
                o.meta().namespace.clone(),
                o.meta().name.clone().unwrap_or_default(),
            )
        };
        let value = |o: &K| (o.meta().uid.clone(), o.meta().generation);
        let mut out = Vec::new();
        match event {
            Event::Init => self.relisting = Some(HashSet::new()),
            Event::Apply(o) | Event::InitApply(o) => {
                let k = key(o);
                if let Some(set) = &mut self.relisting
                    && matches!(event, Event::InitApply(_))
                {
                    set.insert(k.clone());
                }
                let v = value(o);
                if self.seen.get(&k) != Some(&v) {
                    out.push(Trigger::for_scope(k.0.as_deref()));
                    self.seen.insert(k, v);
                }
            }
            Event::Delete(o) => {
                let k = key(o);
                self.seen.remove(&k);
                out.push(Trigger::for_scope(k.0.as_deref()));
            }
            Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    let gone: Vec<Key> = self
                        .seen
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.seen.remove(&k);
                        out.push(Trigger::for_scope(k.0.as_deref()));
                    }
                }
            }
        }
        dedup(out)
    }
}

/// Remembers each namespace's opt-in state; triggers its workloads when it flips.
#[derive(Default)]
pub struct NamespaceTracker {
    opted_in: HashMap<String, bool>,
}

impl NamespaceTracker {
    pub fn on_event(&mut self, event: &Event<Namespace>) -> Vec<Trigger> {
        match event {
            Event::Apply(ns) | Event::InitApply(ns) => {
                let name = ns.meta().name.clone().unwrap_or_default();
                let now = namespace_opted_in(ns);
                match self.opted_in.insert(name.clone(), now) {
                    Some(before) if before != now => vec![Trigger::Namespace(name)],
                    _ => Vec::new(),
                }
            }
            Event::Delete(ns) => {
                self.opted_in
                    .remove(ns.meta().name.as_deref().unwrap_or_default());
                Vec::new()
            }
            Event::Init | Event::InitDone => Vec::new(),
        }
    }
}

fn dedup(v: Vec<Trigger>) -> Vec<Trigger> {
    if v.contains(&Trigger::All) {
        return vec![Trigger::All];
    }
    let mut seen = HashSet::new();
    v.into_iter().filter(|t| seen.insert(t.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use tls_steal_crds::types::{MirrordClusterTlsStealConfigSpec, MirrordTlsStealConfigSpec};
    use tls_steal_crds::{MirrordClusterTlsStealConfig, MirrordTlsStealConfig};

    #[test]
    fn triggers_reach_opted_in_workloads_and_those_recording_a_plan() {
        let deploy = |ns: &str, template_hash: Option<&str>, adopted: Option<&str>| {
            let mut d: k8s_openapi::api::apps::v1::Deployment =
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "web", "namespace": ns},
                    "spec": {"selector": {}, "template": {"metadata": {"annotations": {}}}}
                }))
                .unwrap();
            if let Some(h) = template_hash {
                let t = d.spec.as_mut().unwrap().template.metadata.as_mut().unwrap();
                t.annotations = Some(
                    [(
                        super::super::CONFIG_HASH_ANNOTATION.to_owned(),
                        h.to_owned(),
                    )]
                    .into(),
                );
            }
            if let Some(h) = adopted {
                d.metadata.annotations = Some(
                    [(
                        super::super::ADOPTED_HASH_ANNOTATION.to_owned(),
                        h.to_owned(),
                    )]
                    .into(),
                );
            }
            super::super::Cached::of(&d)
        };
        let opted = |ns: &str| ns == "apps";
        let all = Trigger::All;
        assert!(all.reaches(&deploy("apps", None, None), opted));
        assert!(
            !all.reaches(&deploy("other", None, None), opted),
            "no plan wanted, none held"
        );
        assert!(
            all.reaches(&deploy("other", Some("abc"), None), opted),
            "rolled back"
        );
        assert!(
            all.reaches(&deploy("other", None, Some("abc")), opted),
            "adopted: rolled back"
        );
        assert!(
            !all.reaches(&deploy("other", Some(""), Some("abc")), opted),
            "template says none"
        );
        let ns = Trigger::Namespace("apps".into());
        assert!(ns.reaches(&deploy("apps", None, None), opted));
        assert!(
            !ns.reaches(&deploy("other", Some("abc"), None), opted),
            "another namespace"
        );
    }

    fn cfg(ns: &str, name: &str, generation: i64) -> MirrordTlsStealConfig {
        MirrordTlsStealConfig {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(format!("{ns}-{name}")),
                generation: Some(generation),
                ..Default::default()
            },
            spec: MirrordTlsStealConfigSpec {
                inner: Default::default(),
            },
            status: None,
        }
    }

    #[test]
    fn configs_trigger_on_generation_and_deletion_only() {
        let mut t = ConfigTracker::default();
        let ns = |s: &str| vec![Trigger::Namespace(s.into())];
        assert_eq!(t.on_event(&Event::Apply(cfg("a", "x", 1))), ns("a"));
        // A status write keeps the generation.
        let mut status_only = cfg("a", "x", 1);
        status_only.metadata.resource_version = Some("9".into());
        assert_eq!(t.on_event(&Event::Apply(status_only)), vec![]);
        assert_eq!(t.on_event(&Event::Apply(cfg("a", "x", 2))), ns("a"));
        assert_eq!(t.on_event(&Event::Delete(cfg("a", "x", 2))), ns("a"));
        assert_eq!(t.on_event(&Event::Apply(cfg("b", "y", 1))), ns("b"));
        // A re-list that no longer contains b/y reports it deleted; unchanged a/z is quiet.
        t.on_event(&Event::Apply(cfg("a", "z", 1)));
        assert_eq!(t.on_event(&Event::<MirrordTlsStealConfig>::Init), vec![]);
        assert_eq!(t.on_event(&Event::InitApply(cfg("a", "z", 1))), vec![]);
        assert_eq!(
            t.on_event(&Event::<MirrordTlsStealConfig>::InitDone),
            ns("b")
        );
    }

    #[test]
    fn cluster_configs_trigger_everything() {
        let mut t = ConfigTracker::default();
        let c = MirrordClusterTlsStealConfig {
            metadata: ObjectMeta {
                name: Some("c".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: MirrordClusterTlsStealConfigSpec {
                inner: Default::default(),
            },
            status: None,
        };
        assert_eq!(t.on_event(&Event::Apply(c)), vec![Trigger::All]);
        assert!(Trigger::All.covers("x"));
        assert!(!Trigger::Namespace("y".into()).covers("x"));
    }

    #[test]
    fn namespaces_trigger_when_the_label_flips() {
        let mut t = NamespaceTracker::default();
        let ns = |labelled: bool| Namespace {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: labelled
                    .then(|| [("tls-steal-injection".to_string(), "enabled".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(t.on_event(&Event::InitApply(ns(true))), vec![]);
        assert_eq!(t.on_event(&Event::Apply(ns(true))), vec![]);
        assert_eq!(
            t.on_event(&Event::Apply(ns(false))),
            vec![Trigger::Namespace("n".into())]
        );
        assert_eq!(
            t.on_event(&Event::Apply(ns(true))),
            vec![Trigger::Namespace("n".into())]
        );
    }
}
