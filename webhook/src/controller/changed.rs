//! Which workload updates wake its reconciler: a new generation (the spec changed) or new
//! `tls-steal.io/` annotations (the cached ones); status-only updates (replica counts) do not.
//!
//! kube-runtime's `predicate_filter` does the same but keeps name, namespace and uid strings per
//! workload (~180 bytes); this keeps a 64-bit key and hash (issue 19: memory per cached
//! workload). Like it, an entry not seen for an hour is forgotten (the next update then passes).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use kube::Resource;

/// How long an unchanged workload is remembered (kube-runtime's default).
const TTL: Duration = Duration::from_secs(3600);

/// The filter's memory: workload key → (hash of what matters, when last seen).
pub struct Changed {
    seen: HashMap<u64, (u64, Instant)>,
    last_evicted: Instant,
}

impl Default for Changed {
    fn default() -> Self {
        Changed {
            seen: HashMap::new(),
            last_evicted: Instant::now(),
        }
    }
}

fn hash(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

impl Changed {
    /// Whether `obj` is new or its generation or annotations changed since it was last seen.
    pub fn passes<K: Resource>(&mut self, obj: &K) -> bool {
        self.passes_at(obj, Instant::now())
    }

    fn passes_at<K: Resource>(&mut self, obj: &K, now: Instant) -> bool {
        if now.duration_since(self.last_evicted) >= TTL {
            self.seen
                .retain(|_, (_, seen)| now.duration_since(*seen) < TTL);
            self.last_evicted = now;
        }
        let m = obj.meta();
        // The uid tells a recreated workload from the one it replaced.
        let key = hash((&m.namespace, &m.name, &m.uid));
        let value = hash((m.generation, &m.annotations));
        match self.seen.insert(key, (value, now)) {
            Some((before, seen)) => before != value || now.duration_since(seen) >= TTL,
            None => true,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;

    use super::*;

    fn deploy(
        uid: &str,
        generation: i64,
        annotations: serde_json::Value,
        replicas: i32,
    ) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": uid, "generation": generation,
                         "annotations": annotations},
            "spec": {"selector": {}, "template": {}},
            "status": {"replicas": replicas}
        }))
        .unwrap()
    }

    #[test]
    fn spec_and_annotation_changes_pass_status_changes_do_not() {
        let mut c = Changed::default();
        let a = serde_json::json!({"tls-steal.io/rollout": "false"});
        assert!(c.passes(&deploy("u1", 1, a.clone(), 0)), "first sight");
        assert!(!c.passes(&deploy("u1", 1, a.clone(), 3)), "status only");
        assert!(c.passes(&deploy("u1", 2, a.clone(), 3)), "new generation");
        assert!(
            c.passes(&deploy("u1", 2, serde_json::json!({}), 3)),
            "annotation removed"
        );
        assert!(!c.passes(&deploy("u1", 2, serde_json::json!({}), 1)));
        assert!(
            c.passes(&deploy("u2", 2, serde_json::json!({}), 1)),
            "recreated: new uid"
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_unseen_for_the_ttl_are_forgotten() {
        let mut c = Changed::default();
        let t0 = Instant::now();
        let d = deploy("u1", 1, serde_json::json!({}), 0);
        assert!(c.passes_at(&d, t0));
        assert!(!c.passes_at(&d, t0 + Duration::from_secs(60)));
        let other = deploy("u2", 1, serde_json::json!({}), 0);
        let later = t0 + Duration::from_secs(60) + TTL;
        assert!(c.passes_at(&other, later));
        assert_eq!(c.len(), 1, "u1 evicted");
        assert!(c.passes_at(&d, later), "forgotten: passes again");
    }
}
