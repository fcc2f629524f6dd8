//! Owner lookups: the ReplicaSets and Jobs whose owners a pod's names cannot tell.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Client};
use tls_steal_crds::{Owner, OwnerKind, PodTarget};

/// Completes the owner chain of `target` by reading its ReplicaSets / Jobs. Returns how many
/// lookups failed (they are logged and otherwise ignored: the pod keeps the owners it has).
pub(super) async fn complete(client: &Client, target: &mut PodTarget, namespace: &str) -> usize {
    let owners: Vec<Owner> = target.needs_lookup().into_iter().cloned().collect();
    let mut failed = 0;
    for owner in owners {
        let refs = match owner.kind {
            OwnerKind::ReplicaSet => Api::<ReplicaSet>::namespaced(client.clone(), namespace)
                .get_metadata_opt(&owner.name)
                .await
                .map(|o| o.and_then(|o| o.metadata.owner_references)),
            OwnerKind::Job => Api::<Job>::namespaced(client.clone(), namespace)
                .get_metadata_opt(&owner.name)
                .await
                .map(|o| o.and_then(|o| o.metadata.owner_references)),
            _ => continue,
        };
        match refs {
            Ok(refs) => {
                for r in refs.into_iter().flatten() {
                    if let Some(kind) = OwnerKind::from_kind(&r.kind) {
                        target.add_owner(Owner::new(kind, r.name));
                    }
                }
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, owner = %owner.path(), "owner lookup failed");
            }
        }
    }
    failed
}
