//! Decisions remembered per pod shape.
//!
//! The pods of one ReplicaSet (DaemonSet, Job, ...) look the same to the mutation: equal
//! [`PodTarget`]s (labels, owners, containers and ports) and equal [`PodShape`]s (mounts, and the
//! fields the patch touches), and they arrive together, in a rollout or a scale-up. Matching the
//! configs, building the plan and writing the patch was more than half of an injecting review;
//! for the second pod of a ReplicaSet on, admission reuses the answer computed for the first.
//!
//! Sound by construction: the key is every input of the decision. `build_plan` reads only the
//! target, the namespace and the namespace's configs (fixed by the config snapshot's generation),
//! and the mutation is computed from the [`PodShape`], not the pod. The memo holds one generation
//! at a time: a config change empties it. It is bounded ([`CAPACITY`] shapes; when full it starts
//! over), and errors are never remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tls_steal_crds::PodTarget;

use crate::mutate::{PodShape, SkipReason};

/// Shapes remembered at most (a few kB each).
pub const CAPACITY: usize = 2048;

/// What a review decides for a pod of a given shape.
#[derive(Clone, Debug)]
pub enum Decided {
    Skip(SkipReason),
    Inject(Arc<Injected>),
}

/// An injection, as admission answers and reports it.
#[derive(Debug)]
pub struct Injected {
    /// The JSON patch, base64-encoded as it appears in the answer.
    pub patch_base64: String,
    pub ports: Vec<u16>,
    pub hash: String,
    /// Ids of the configs that contributed ports.
    pub configs: Vec<String>,
    /// Plan ports no container of the pod declares.
    pub undeclared_ports: Vec<u16>,
}

/// Every input of a decision besides the config snapshot.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub target: PodTarget,
    pub shape: PodShape,
}

#[derive(Default)]
pub struct Memo {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    decided: HashMap<Key, Decided>,
}

impl Memo {
    /// The decision remembered for `key` under config generation `generation`.
    pub fn get(&self, generation: u64, key: &Key) -> Option<Decided> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.generation != generation {
            return None;
        }
        inner.decided.get(key).cloned()
    }

    /// Remembers `decided`. A newer generation replaces everything; an older one (a review
    /// that started before a config change) is not remembered.
    pub fn insert(&self, generation: u64, key: Key, decided: Decided) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if generation < inner.generation {
            return;
        }
        if generation > inner.generation || inner.decided.len() >= CAPACITY {
            inner.decided.clear();
            inner.generation = generation;
        }
        inner.decided.insert(key, decided);
    }

    /// Shapes remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decided
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            namespace: "ns".into(),
            target: PodTarget {
                name: Some(name.into()),
                ..Default::default()
            },
            shape: PodShape::of(&serde_json::from_value(serde_json::json!({"spec": {}})).unwrap())
                .unwrap(),
        }
    }

    fn skip() -> Decided {
        Decided::Skip(SkipReason::NoMatchingConfig)
    }

    #[test]
    fn remembers_per_generation() {
        let memo = Memo::default();
        assert!(memo.get(1, &key("a")).is_none());
        memo.insert(1, key("a"), skip());
        assert!(memo.get(1, &key("a")).is_some());
        assert!(memo.get(1, &key("b")).is_none());
        // A review of an older snapshot neither sees nor replaces newer decisions.
        memo.insert(2, key("b"), skip());
        assert!(memo.get(1, &key("a")).is_none());
        assert!(
            memo.get(2, &key("a")).is_none(),
            "a config change empties it"
        );
        memo.insert(1, key("a"), skip());
        assert!(memo.get(2, &key("a")).is_none());
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn bounded() {
        let memo = Memo::default();
        for i in 0..CAPACITY + 10 {
            memo.insert(1, key(&i.to_string()), skip());
            assert!(memo.len() <= CAPACITY);
        }
        assert!(memo.get(1, &key(&(CAPACITY + 9).to_string())).is_some());
    }
}
