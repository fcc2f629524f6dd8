//! Decisions remembered per pod shape.
//!
//! The pods of one ReplicaSet (DaemonSet, Job, ...) look the same to the mutation: equal
//! [`PodTarget`]s (labels, owners, containers and ports) and equal [`PodShape`]s (mounts, and the
//! fields the patch touches), and they arrive together, in a rollout or a scale-up. Matching the
//! configs, building the plan and writing the patch was more than half of an injecting review;
//! for the second pod of a ReplicaSet on, admission reuses the answer computed for the first.
//! Pods of *another* ReplicaSet (a new one of the same Deployment, or another Deployment matched
//! by the same configs) have another target but often the same plan: the patch, which depends
//! only on the plan and the shape, is remembered by those two separately.
//!
//! Sound by construction: each key is every input of what it stands for. `build_plan` reads only
//! the target, the namespace and the namespace's configs (fixed by the config snapshot's
//! generation); the mutation and its patch are computed from the plan and the [`PodShape`], not
//! from the pod (and from the settings, fixed for an `Admission`). Decisions are kept for one
//! generation at a time: a config change forgets them; patches stay valid across changes. Both
//! tables are bounded ([`CAPACITY`] entries; when full, an arbitrary entry makes room), and errors
//! are never remembered.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

// Keys hold labels, owners, mounts: a few hundred bytes hashed per review. foldhash (seeded per
// process, like std's SipHash) hashes them in a fraction of SipHash's time; a collision costs
// nothing but a recomputation, since keys are compared on lookup.
use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};

use tls_steal_crds::PodTarget;

use crate::mutate::{PodShape, SkipReason};

/// Entries remembered at most per table (a few kB each).
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
    pub patch_base64: Arc<str>,
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

/// Every input of a patch besides the settings: the plan (as the JSON the sidecar gets, which
/// holds all of it) and the pod's shape.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PatchKey {
    pub plan_json: String,
    pub shape: PodShape,
}

/// A key with its hash, computed once for the lookup and the insertion (hashing labels,
/// containers and mounts is most of a lookup).
pub struct Hashed<K> {
    hash: u64,
    key: K,
}

impl<K> Hashed<K> {
    pub fn key(&self) -> &K {
        &self.key
    }
}

/// A bounded map by precomputed hash; the key itself is compared on lookup.
struct Table<K, V> {
    entries: HashMap<u64, (K, V), RandomState>,
}

impl<K: Eq, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            entries: HashMap::with_capacity_and_hasher(CAPACITY, RandomState::default()),
        }
    }

    fn get(&self, key: &Hashed<K>) -> Option<V> {
        match self.entries.get(&key.hash) {
            Some((k, v)) if *k == key.key => Some(v.clone()),
            _ => None,
        }
    }

    /// Of two keys with one hash, the later is kept.
    fn insert(&mut self, key: Hashed<K>, value: V) {
        if self.entries.len() >= CAPACITY
            && let Some(&any) = self.entries.keys().next()
        {
            // Full: one entry makes room, so the cost stays per review (no burst of frees).
            self.entries.remove(&any);
        }
        self.entries.insert(key.hash, (key.key, value));
    }
}

pub struct Memo {
    hasher: RandomState,
    inner: Mutex<Inner>,
}

struct Inner {
    generation: u64,
    decided: Table<Key, Decided>,
    patches: Table<PatchKey, Arc<str>>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            hasher: RandomState::default(),
            inner: Mutex::new(Inner {
                generation: 0,
                decided: Table::new(),
                patches: Table::new(),
            }),
        }
    }
}

impl Memo {
    pub fn key<K: Hash>(&self, key: K) -> Hashed<K> {
        Hashed {
            hash: self.hasher.hash_one(&key),
            key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decision remembered for `key` under config generation `generation`.
    pub fn get(&self, generation: u64, key: &Hashed<Key>) -> Option<Decided> {
        let inner = self.lock();
        if inner.generation != generation {
            return None;
        }
        inner.decided.get(key)
    }

    /// Remembers `decided`. A newer generation forgets every decision; an older one (a review
    /// that started before a config change) is not remembered.
    pub fn insert(&self, generation: u64, key: Hashed<Key>, decided: Decided) {
        let mut inner = self.lock();
        if generation < inner.generation {
            return;
        }
        let mut stale = None;
        if generation > inner.generation {
            // Freed after the lock is released: dropping a full table takes a while.
            stale = Some(std::mem::replace(&mut inner.decided, Table::new()));
            inner.generation = generation;
        }
        inner.decided.insert(key, decided);
        drop(inner);
        drop(stale);
    }

    /// The patch (base64) remembered for a plan and a pod shape.
    pub fn patch(&self, key: &Hashed<PatchKey>) -> Option<Arc<str>> {
        self.lock().patches.get(key)
    }

    pub fn insert_patch(&self, key: Hashed<PatchKey>, patch_base64: Arc<str>) {
        self.lock().patches.insert(key, patch_base64);
    }

    /// Decisions remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().decided.entries.len()
    }

    /// Patches remembered now.
    #[cfg(test)]
    pub fn patches(&self) -> usize {
        self.lock().patches.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_key(name: &str) -> Key {
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
        assert!(memo.get(1, &memo.key(raw_key("a"))).is_none());
        memo.insert(1, memo.key(raw_key("a")), skip());
        assert!(memo.get(1, &memo.key(raw_key("a"))).is_some());
        assert!(memo.get(1, &memo.key(raw_key("b"))).is_none());
        // A review of an older snapshot neither sees nor replaces newer decisions.
        memo.insert(2, memo.key(raw_key("b")), skip());
        assert!(memo.get(1, &memo.key(raw_key("a"))).is_none());
        assert!(
            memo.get(2, &memo.key(raw_key("a"))).is_none(),
            "a config change empties it"
        );
        memo.insert(1, memo.key(raw_key("a")), skip());
        assert!(memo.get(2, &memo.key(raw_key("a"))).is_none());
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn bounded() {
        let memo = Memo::default();
        for i in 0..CAPACITY + 10 {
            memo.insert(1, memo.key(raw_key(&i.to_string())), skip());
            assert!(memo.len() <= CAPACITY);
        }
        assert!(
            memo.get(1, &memo.key(raw_key(&(CAPACITY + 9).to_string())))
                .is_some()
        );
    }

    /// Two keys with one hash never answer for each other.
    #[test]
    fn equal_hashes_compare_keys() {
        let memo = Memo::default();
        let a = Hashed {
            hash: 7,
            key: raw_key("a"),
        };
        memo.insert(1, a, skip());
        let b = Hashed {
            hash: 7,
            key: raw_key("b"),
        };
        assert!(memo.get(1, &b).is_none());
        let a = Hashed {
            hash: 7,
            key: raw_key("a"),
        };
        assert!(memo.get(1, &a).is_some());
    }
}
