//! The rollout controller's reconcile and status writer against a mock Kubernetes API.
//!
//! Over 400 lines: one scenario per reconcile outcome against the same mock API; apart they would each rebuild it.

mod controller_common;

/// Named so that `cargo nextest run controller` selects these tests.
mod controller {

    use std::sync::Arc;

    use crate::controller_common::*;
    use kube::runtime::controller::Action;
    use serde_json::{Value, json};
    use tls_steal_crds::ConfigSource;
    use tls_steal_webhook::controller::{
        ADOPTION_RECHECK, Cached, ErrorKind, WorkloadKind, reconcile, sync_statuses,
    };

    const HASH_POINTER: &str = "/spec/template/metadata/annotations/tls-steal.io~1config-hash";
    const ADOPTED_POINTER: &str = "/metadata/annotations/tls-steal.io~1adopted-hash";

    fn patches(log: &[Recorded]) -> Vec<&Recorded> {
        log.iter().filter(|r| r.method == "PATCH").collect()
    }

    fn events(log: &[Recorded]) -> Vec<&Value> {
        log.iter()
            .filter(|r| r.is_event())
            .map(|r| &r.body)
            .collect()
    }

    /// `apps` opted in, config `web-tls` for `deploy/web` on 443, Deployment `web` with the given
    /// template hash annotation (Null: no annotations map).
    fn setup(template_annotations: Value, annotations: Value) -> (Harness, Value, String) {
        let d = deployment("web", template_annotations, annotations);
        let json_d = serde_json::to_value(&d).unwrap();
        let config = ns_config(NS, "web-tls", spec(Some("deploy/web"), &[443]));
        let mut h = harness(
            vec![
                (DEPLOY_PATH, json_d.clone()),
                (CONFIG_PATH, serde_json::to_value(&config).unwrap()),
            ],
            0,
        );
        let expected = expected_hash(&d, &[ConfigSource::from(&config)]);
        assert!(!expected.is_empty());
        h.namespace(namespace(NS, true));
        h.config(config);
        (h, json_d, expected)
    }

    /// The Deployment as the controller's cache holds it.
    fn deploy_of(v: &Value) -> Arc<Cached<k8s_openapi::api::apps::v1::Deployment>> {
        Arc::new(serde_json::from_value(v.clone()).unwrap())
    }

    #[tokio::test]
    async fn hash_unchanged_means_no_request_at_all() {
        let (mut h, _, expected) = setup(json!({}), Value::Null);
        let d = deployment(
            "web",
            json!({"tls-steal.io/config-hash": expected}),
            Value::Null,
        );
        h.deployment(d.clone());
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        let metrics = h.metrics.clone();
        let log = h.finish().await;
        assert!(log.is_empty(), "unexpected requests: {log:?}");
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 0);
    }

    #[tokio::test]
    async fn changed_hash_sends_exactly_one_json_patch() {
        let (h, d, expected) = setup(
            json!({"tls-steal.io/config-hash": "0123456789abcdef", "other": "x"}),
            Value::Null,
        );
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let patched = h.object(DEPLOY_PATH);
        let metrics = h.metrics.clone();
        let log = h.finish().await;

        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].path, DEPLOY_PATH);
        assert_eq!(p[0].content_type, "application/json-patch+json");
        assert!(p[0].query.contains("fieldManager=tls-steal-controller"));
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": HASH_POINTER, "value": expected},
            ])
        );
        // No GET, nothing but the patch and the events.
        assert!(log.iter().all(|r| r.method == "PATCH" || r.is_event()));
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"],
            json!({"tls-steal.io/config-hash": expected, "other": "x"})
        );

        // One event on the workload, one on the config.
        let ev = events(&log);
        assert_eq!(ev.len(), 2, "{ev:#?}");
        let on = |kind: &str| {
            ev.iter()
                .find(|e| e["regarding"]["kind"] == kind)
                .unwrap_or_else(|| panic!("no event on a {kind}"))
        };
        let w = on("Deployment");
        assert_eq!(w["reason"], "RolloutTriggered");
        assert_eq!(w["type"], "Normal");
        assert!(w["note"].as_str().unwrap().contains(&expected));
        let c = on("MirrordTlsStealConfig");
        assert_eq!(c["regarding"]["name"], "web-tls");
        assert!(c["note"].as_str().unwrap().contains("apps/Deployment/web"));
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 1);

        // The patched workload is in sync: a second reconcile (e.g. after a restart) does nothing.
        let (mut h2, _, _) = setup(json!({}), Value::Null);
        h2.deployment(serde_json::from_value(patched.clone()).unwrap());
        reconcile(deploy_of(&patched), h2.ctx.clone())
            .await
            .unwrap();
        assert!(h2.finish().await.is_empty());
    }

    #[tokio::test]
    async fn missing_annotation_map_is_added_whole() {
        let (h, d, expected) = setup(Value::Null, Value::Null);
        h.pods(vec![pod("web", "web-1", None)]);
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let patched = h.object(DEPLOY_PATH);
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].body[1],
            json!({"op": "add", "path": "/spec/template/metadata/annotations",
               "value": {"tls-steal.io/config-hash": expected}})
        );
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"]["tls-steal.io/config-hash"],
            json!(expected)
        );
    }

    fn pod_lists(log: &[Recorded]) -> Vec<&Recorded> {
        log.iter()
            .filter(|r| r.method == "GET" && r.path == PODS_PATH)
            .collect()
    }

    #[tokio::test]
    async fn absent_annotation_and_pods_with_the_plan_records_the_adoption_without_rollout() {
        // Created after its config: the webhook gave the pods the plan; no annotation yet.
        let (h, d, expected) = setup(json!({"other": "x"}), Value::Null);
        h.pods(vec![
            pod("web", "web-1", Some(&expected)),
            pod("web", "web-2", Some(&expected)),
        ]);
        let action = reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        let adopted = h.object(DEPLOY_PATH);
        // Level-triggered: judging the recorded workload again (a resync, a restart) does
        // nothing at all, without listing the pods.
        let again = reconcile(deploy_of(&adopted), h.ctx.clone()).await.unwrap();
        assert_eq!(again, action);
        let metrics = h.metrics.clone();
        let log = h.finish().await;

        let calls: Vec<(&str, &str)> = log
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            calls,
            [("GET", PODS_PATH), ("PATCH", DEPLOY_PATH)],
            "{log:#?}"
        );
        // Listed by the Deployment's selector.
        assert!(
            log[0].query.contains("labelSelector=app%3Dweb"),
            "{}",
            log[0].query
        );
        // Exactly one patch, of the workload's own metadata (the map was absent: added whole),
        // and no template patch.
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].content_type, "application/json-patch+json");
        assert!(p[0].query.contains("fieldManager=tls-steal-controller"));
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": "/metadata/annotations",
                 "value": {"tls-steal.io/adopted-hash": expected}},
            ])
        );
        assert!(
            p.iter()
                .all(|r| !r.body.to_string().contains("/spec/template")),
            "{log:#?}"
        );
        assert_eq!(
            adopted["metadata"]["annotations"],
            json!({"tls-steal.io/adopted-hash": expected})
        );
        assert_eq!(
            adopted["spec"], d["spec"],
            "the pod template changed (a rollout)"
        );
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 0);
    }

    #[tokio::test]
    async fn adoption_adds_to_an_existing_annotation_map() {
        let (h, d, expected) = setup(json!({}), json!({"owner": "team-a"}));
        h.pods(vec![pod("web", "web-1", Some(&expected))]);
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let adopted = h.object(DEPLOY_PATH);
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": ADOPTED_POINTER, "value": expected},
            ])
        );
        assert_eq!(
            adopted["metadata"]["annotations"],
            json!({"owner": "team-a", "tls-steal.io/adopted-hash": expected})
        );
    }

    #[tokio::test]
    async fn adopted_hash_equal_to_desired_means_no_request_at_all() {
        let (mut h, _, expected) = setup(json!({}), Value::Null);
        let d = deployment(
            "web",
            json!({"other": "x"}),
            json!({"tls-steal.io/adopted-hash": expected}),
        );
        h.deployment(d.clone());
        // Pods would say otherwise, but a recorded hash is compared without listing them.
        h.pods(vec![pod("web", "web-1", None)]);
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        // The status and the gauges count it as in sync too.
        sync_statuses(&h.ctx).await.unwrap();
        let metrics = h.metrics.clone();
        let log = h.finish().await;
        assert!(
            log.iter().all(|r| r.path == CONFIG_STATUS_PATH),
            "unexpected requests: {log:#?}"
        );
        let status = &log[0].body["status"];
        let rolled = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "RolledOut")
            .unwrap();
        assert_eq!(rolled["reason"], "UpToDate", "{rolled}");
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 0);
    }

    #[tokio::test]
    async fn adopted_workload_rolls_back_when_its_config_is_deleted() {
        let d = deployment(
            "web",
            json!({"other": "x"}),
            json!({"tls-steal.io/adopted-hash": "0123456789abcdef"}),
        );
        let json_d = serde_json::to_value(&d).unwrap();
        let mut h = harness(vec![(DEPLOY_PATH, json_d)], 0);
        h.namespace(namespace(NS, true));
        // No config at all any more: desired "".
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        let patched = h.object(DEPLOY_PATH);
        let metrics = h.metrics.clone();
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].path, DEPLOY_PATH);
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": HASH_POINTER, "value": ""},
                {"op": "remove", "path": ADOPTED_POINTER},
            ])
        );
        assert!(pod_lists(&log).is_empty(), "{log:#?}");
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"],
            json!({"other": "x", "tls-steal.io/config-hash": ""})
        );
        // The template annotation supersedes the adoption record, which is removed.
        assert_eq!(patched["metadata"]["annotations"], json!({}));
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 1);
        let ev = events(&log);
        assert!(ev[0]["note"].as_str().unwrap().contains("plan removed"));
    }

    #[tokio::test]
    async fn adopted_workload_rolls_back_when_its_namespace_loses_the_label() {
        let (mut h, _, expected) = setup(json!({}), Value::Null);
        h.namespace(namespace(NS, false));
        let d = deployment(
            "web",
            json!({}),
            json!({"tls-steal.io/adopted-hash": expected}),
        );
        h.objects
            .lock()
            .unwrap()
            .insert(DEPLOY_PATH.into(), serde_json::to_value(&d).unwrap());
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].body[1]["path"], HASH_POINTER);
        assert_eq!(p[0].body[1]["value"], "");
    }

    #[tokio::test]
    async fn absent_annotation_ignores_finished_and_terminating_pods() {
        let (h, d, expected) = setup(json!({}), Value::Null);
        let mut evicted = pod("web", "web-old-1", None);
        evicted["status"]["phase"] = json!("Failed");
        let mut terminating = pod("web", "web-old-2", None);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        h.pods(vec![
            evicted,
            terminating,
            pod("web", "web-1", Some(&expected)),
        ]);
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        // Adopted: only the metadata record, no template patch.
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(
            p[0].body[1]["value"],
            json!({"tls-steal.io/adopted-hash": expected})
        );
        assert_eq!(pod_lists(&log).len(), 1);
    }

    #[tokio::test]
    async fn absent_annotation_and_a_pod_without_sidecar_sends_one_patch() {
        // Existed before the config: an old pod has no sidecar (hash "").
        let (h, d, expected) = setup(json!({"other": "x"}), Value::Null);
        h.pods(vec![
            pod("web", "web-1", Some(&expected)),
            pod("web", "web-2", None),
        ]);
        let action = reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        let patched = h.object(DEPLOY_PATH);
        let metrics = h.metrics.clone();
        let log = h.finish().await;
        assert_eq!(pod_lists(&log).len(), 1, "{log:#?}");
        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].path, DEPLOY_PATH);
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": HASH_POINTER, "value": expected},
            ])
        );
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"]["tls-steal.io/config-hash"],
            json!(expected)
        );
        assert_eq!(metrics.rollouts_of(WorkloadKind::Deployment), 1);
    }

    #[tokio::test]
    async fn absent_annotation_and_a_pod_with_another_plan_sends_one_patch() {
        let (h, d, _) = setup(json!({}), Value::Null);
        h.pods(vec![pod("web", "web-1", Some("0123456789abcdef"))]);
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        assert_eq!(patches(&log).len(), 1, "{log:#?}");
    }

    #[tokio::test]
    async fn absent_annotation_and_no_pods_yet_requeues_without_patch() {
        let (h, d, _) = setup(json!({}), Value::Null);
        h.pods(vec![]);
        let action = reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        assert_eq!(action, Action::requeue(ADOPTION_RECHECK));
        assert_eq!(ADOPTION_RECHECK, std::time::Duration::from_secs(5));
        let unchanged = h.object(DEPLOY_PATH);
        let log = h.finish().await;
        let calls: Vec<(&str, &str)> = log
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(calls, [("GET", PODS_PATH)], "{log:#?}");
        assert_eq!(unchanged, d, "the workload changed");
    }

    #[tokio::test]
    async fn absent_annotation_no_pods_and_zero_replicas_does_not_wait() {
        let (h, mut d, _) = setup(json!({}), Value::Null);
        d["spec"]["replicas"] = json!(0);
        h.pods(vec![]);
        let action = reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        let log = h.finish().await;
        assert!(patches(&log).is_empty(), "{log:#?}");
        assert_eq!(pod_lists(&log).len(), 1);
    }

    #[tokio::test]
    async fn present_empty_annotation_is_compared_without_listing_pods() {
        // `""` was written by the controller (plan removed): present, so no pod list.
        let (h, d, expected) = setup(json!({"tls-steal.io/config-hash": ""}), Value::Null);
        h.pods(vec![pod("web", "web-1", Some(&expected))]);
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        assert!(pod_lists(&log).is_empty(), "{log:#?}");
        assert_eq!(patches(&log).len(), 1, "{log:#?}");
    }

    #[tokio::test]
    async fn opt_out_annotation_blocks_the_patch_and_the_status_says_why() {
        let (mut h, d, expected) = setup(
            json!({"tls-steal.io/config-hash": "0123456789abcdef"}),
            json!({"tls-steal.io/rollout": "false"}),
        );
        h.deployment(serde_json::from_value(d.clone()).unwrap());
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        // Reported once per desired hash, not on every resync.
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let patched = sync_statuses(&h.ctx).await.unwrap();
        assert_eq!(patched, 1);
        // Unchanged state: the status is not written again.
        assert_eq!(sync_statuses(&h.ctx).await.unwrap(), 0);
        let unchanged = h.object(DEPLOY_PATH);
        let log = h.finish().await;

        assert!(
            log.iter()
                .all(|r| !(r.path == DEPLOY_PATH && r.method == "PATCH")),
            "the workload was patched: {log:#?}"
        );
        assert_eq!(unchanged, d, "the workload changed");
        let ev = events(&log);
        assert_eq!(ev.len(), 1, "{ev:#?}");
        assert_eq!(ev[0]["type"], "Warning");
        assert_eq!(ev[0]["reason"], "RolloutDisabled");
        assert_eq!(ev[0]["regarding"]["name"], "web");
        assert!(ev[0]["note"].as_str().unwrap().contains(&expected));

        let p = patches(&log);
        assert_eq!(p.len(), 1, "{log:#?}");
        assert_eq!(p[0].path, CONFIG_STATUS_PATH);
        assert_eq!(p[0].content_type, "application/merge-patch+json");
        let status = &p[0].body["status"];
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["matchedWorkloads"], json!(["apps/Deployment/web"]));
        assert_eq!(status["matchedCount"], 1);
        assert_eq!(status["conflictCount"], 0);
        let cond = |t: &str| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Valid")["status"], "True");
        let rolled = cond("RolledOut");
        assert_eq!(rolled["status"], "False");
        assert_eq!(rolled["reason"], "RolloutDisabled");
        let msg = rolled["message"].as_str().unwrap();
        assert!(msg.contains("apps/Deployment/web"), "{msg}");
        assert!(msg.contains("tls-steal.io/rollout"), "{msg}");
    }

    #[tokio::test]
    async fn deleted_config_rolls_back_to_no_plan() {
        let d = deployment(
            "web",
            json!({"tls-steal.io/config-hash": "0123456789abcdef"}),
            Value::Null,
        );
        let json_d = serde_json::to_value(&d).unwrap();
        let mut h = harness(vec![(DEPLOY_PATH, json_d)], 0);
        h.namespace(namespace(NS, true));
        // No config at all any more.
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        let patched = h.object(DEPLOY_PATH);
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "100"},
                {"op": "add", "path": HASH_POINTER, "value": ""},
            ])
        );
        assert_eq!(
            patched["spec"]["template"]["metadata"]["annotations"]["tls-steal.io/config-hash"],
            ""
        );
        let ev = events(&log);
        assert_eq!(ev.len(), 1);
        assert!(ev[0]["note"].as_str().unwrap().contains("plan removed"));
    }

    #[tokio::test]
    async fn namespace_losing_its_label_rolls_back_to_no_plan() {
        let (mut h, d, _) = setup(
            json!({"tls-steal.io/config-hash": "0123456789abcdef"}),
            Value::Null,
        );
        h.namespace(namespace(NS, false));
        reconcile(deploy_of(&d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        let p = patches(&log);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].body[1]["value"], "");
        let ev = events(&log);
        assert!(
            ev[0]["note"]
                .as_str()
                .unwrap()
                .contains("not labelled tls-steal-injection=enabled")
        );
    }

    #[tokio::test]
    async fn namespace_not_opted_in_and_no_hash_means_no_request() {
        let (mut h, _, _) = setup(json!({}), Value::Null);
        h.namespace(namespace(NS, false));
        let d = deployment("web", json!({"unrelated": "1"}), Value::Null);
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        assert!(h.finish().await.is_empty());
    }

    #[tokio::test]
    async fn conflicts_are_retried_on_a_fresh_read() {
        let d = deployment("web", json!({}), Value::Null);
        let json_d = serde_json::to_value(&d).unwrap();
        let mut h = harness(vec![(DEPLOY_PATH, json_d)], 1);
        h.pods(vec![pod("web", "web-1", None)]);
        let config = ns_config(NS, "web-tls", spec(Some("deploy/web"), &[443]));
        let expected = expected_hash(&d, &[ConfigSource::from(&config)]);
        h.namespace(namespace(NS, true));
        h.config(config);
        reconcile(Arc::new(d), h.ctx.clone()).await.unwrap();
        let log = h.finish().await;
        let calls: Vec<(&str, &str)> = log
            .iter()
            .filter(|r| !r.is_event())
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                // The template has no hash annotation: its pods are listed (once).
                ("GET", PODS_PATH),
                ("PATCH", DEPLOY_PATH),
                ("GET", DEPLOY_PATH),
                ("PATCH", DEPLOY_PATH)
            ]
        );
        let p = patches(&log);
        assert_eq!(p[0].body[0]["value"], "100");
        // The object changed under us (101); the retry tests the fresh version.
        assert_eq!(p[1].body[0]["value"], "101");
        assert_eq!(p[1].body[1]["value"], json!(expected));
    }

    #[tokio::test]
    async fn persistent_conflicts_become_a_conflict_error() {
        let d = deployment("web", json!({}), Value::Null);
        let json_d = serde_json::to_value(&d).unwrap();
        let mut h = harness(vec![(DEPLOY_PATH, json_d)], usize::MAX);
        h.pods(vec![pod("web", "web-1", None)]);
        h.namespace(namespace(NS, true));
        h.config(ns_config(NS, "web-tls", spec(Some("deploy/web"), &[443])));
        let err = reconcile(Arc::new(d), h.ctx.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        let log = h.finish().await;
        assert_eq!(patches(&log).len(), 5);
    }

    #[tokio::test]
    async fn status_reports_invalid_configs_and_port_conflicts() {
        let d = deployment("web", json!({}), Value::Null);
        let web_tls = ns_config(NS, "web-tls", spec(Some("deploy/web"), &[443]));
        // Loses port 443 to the namespaced config.
        let everything = cluster_config("everything", spec(None, &[443, 8443]));
        let mut bad = spec(Some("deploy/web"), &[9443]);
        bad.ports[0].agent_as_server.authentication.cert_pem = "relative.pem".into();
        let broken = ns_config(NS, "broken", bad);
        let base = "/apis/mirrord.metalbear.co/v1alpha";
        let mut h = harness(
            vec![
                (DEPLOY_PATH, serde_json::to_value(&d).unwrap()),
                (CONFIG_PATH, serde_json::to_value(&web_tls).unwrap()),
                (
                    &format!("{base}/mirrordclustertlsstealconfigs/everything"),
                    serde_json::to_value(&everything).unwrap(),
                ),
                (
                    &format!("{base}/namespaces/apps/mirrordtlsstealconfigs/broken"),
                    serde_json::to_value(&broken).unwrap(),
                ),
            ],
            0,
        );
        h.namespace(namespace(NS, true));
        h.deployment(d);
        h.config(web_tls);
        h.cluster_config(everything);
        h.config(broken);
        assert_eq!(sync_statuses(&h.ctx).await.unwrap(), 3);
        let log = h.finish().await;
        let status_of = |name: &str| {
            log.iter()
                .find(|r| r.path.ends_with(&format!("/{name}/status")))
                .unwrap()
                .body["status"]
                .clone()
        };
        let everything = status_of("everything");
        assert_eq!(
            everything["matchedWorkloads"],
            json!(["apps/Deployment/web"])
        );
        assert_eq!(everything["conflictCount"], 1);
        assert_eq!(
            everything["portConflicts"],
            json!([{"port": 443, "workload": "apps/Deployment/web",
                "keptBy": "MirrordTlsStealConfig/apps/web-tls"}])
        );
        assert_eq!(status_of("web-tls")["conflictCount"], 0);
        let broken = status_of("broken");
        let valid = &broken["conditions"][0];
        assert_eq!(valid["type"], "Valid");
        assert_eq!(valid["status"], "False");
        assert_eq!(valid["reason"], "InvalidSpec");
        assert!(
            valid["message"]
                .as_str()
                .unwrap()
                .contains("spec.ports[0].agentAsServer.authentication.certPem"),
            "{valid}"
        );
    }
}
