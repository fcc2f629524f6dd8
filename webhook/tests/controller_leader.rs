//! Lease-based leader election of the rollout controller against a mock Kubernetes API.

mod controller_common;

/// Named so that `cargo nextest run controller` selects these tests.
mod controller {
    use crate::controller_common::*;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use kube::Api;
    use serde_json::{Value, json};
    use tls_steal_webhook::controller::{LeaseSettings, release, try_acquire_or_renew};

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/tls-steal/leases/tls-steal-controller";

    fn lease(holder: &str, renewed_secs_ago: i64, transitions: i32) -> Value {
        let renewed = Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago);
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "tls-steal-controller", "namespace": "tls-steal", "resourceVersion": "5"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": renewed.to_string(), "acquireTime": renewed.to_string(),
                     "leaseTransitions": transitions}
        })
    }

    fn settings(identity: &str) -> LeaseSettings {
        LeaseSettings::new("tls-steal-controller", "tls-steal", identity)
    }

    async fn attempt(objects: Vec<(&str, Value)>, identity: &str) -> (bool, Vec<Recorded>, Value) {
        let h = harness(objects, 0);
        let api: Api<Lease> = Api::namespaced(h.ctx.client.clone(), "tls-steal");
        let got = try_acquire_or_renew(&api, &settings(identity))
            .await
            .unwrap();
        drop(api);
        let stored = h
            .objects
            .lock()
            .unwrap()
            .get(LEASE_PATH)
            .cloned()
            .unwrap_or(Value::Null);
        (got, h.finish().await, stored)
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let (got, log, stored) = attempt(vec![], "me").await;
        assert!(got);
        let calls: Vec<_> = log.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(calls, ["GET", "POST"]);
        assert_eq!(stored["spec"]["holderIdentity"], "me");
        assert_eq!(stored["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(stored["spec"]["leaseTransitions"], 0);
    }

    #[tokio::test]
    async fn leaves_a_live_lease_of_another_replica_alone() {
        let (got, log, stored) = attempt(vec![(LEASE_PATH, lease("other", 3, 2))], "me").await;
        assert!(!got);
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(stored["spec"]["holderIdentity"], "other");
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease() {
        let (got, log, stored) = attempt(vec![(LEASE_PATH, lease("other", 60, 2))], "me").await;
        assert!(got);
        let calls: Vec<_> = log.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(calls, ["GET", "PUT"]);
        // Optimistic concurrency: the replace carries the version read.
        assert_eq!(log[1].body["metadata"]["resourceVersion"], "5");
        assert_eq!(stored["spec"]["holderIdentity"], "me");
        assert_eq!(stored["spec"]["leaseTransitions"], 3);
    }

    #[tokio::test]
    async fn renews_its_own_lease_and_releases_it() {
        let (got, _, stored) = attempt(vec![(LEASE_PATH, lease("me", 5, 1))], "me").await;
        assert!(got);
        assert_eq!(stored["spec"]["leaseTransitions"], 1);

        let h = harness(vec![(LEASE_PATH, lease("me", 1, 1))], 0);
        let api: Api<Lease> = Api::namespaced(h.ctx.client.clone(), "tls-steal");
        release(&api, &settings("me")).await.unwrap();
        drop(api);
        let stored = h.object(LEASE_PATH);
        h.finish().await;
        assert!(stored["spec"].get("holderIdentity").is_none(), "{stored}");
        // Free now: anyone takes it at once.
        let (got, _, _) = attempt(vec![(LEASE_PATH, stored)], "next").await;
        assert!(got);
    }
}
