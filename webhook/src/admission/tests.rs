//! Admission end to end, without HTTP: answers byte for byte, the memo and replay layers.

use super::*;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};
use tls_steal_crds::TlsStealSpec;

fn admission() -> Admission {
    admission_with(Settings::default())
}

fn admission_with(settings: Settings) -> Admission {
    let spec: TlsStealSpec = serde_json::from_value(json!({
        "targetPath": "deploy/web",
        "ports": [{"port": 8443,
            "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"}},
            "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
    }))
    .unwrap();
    Admission::new(
        Arc::new(ConfigCache::from_sources(vec![
            tls_steal_crds::ConfigSource::namespaced("shop", "web", spec),
        ])),
        settings,
        Arc::new(Metrics::default()),
        None,
    )
}

fn pod(deploy: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deploy}-5d8f7c-"), "namespace": "shop",
            "labels": {"app": deploy, "pod-template-hash": "5d8f7c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-5d8f7c"), "uid": "u"}]},
        "spec": {"containers": [{"name": "app", "image": "web:1", "ports": [{"containerPort": 8443}],
            "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]}
    })
}

/// Admission's metrics as `/metrics` renders them.
fn counters(a: &Admission) -> String {
    let mut registry = Registry::default();
    a.register_metrics(&mut registry);
    crate::openmetrics::encode(&registry)
}

/// The answer allows the pod and changes nothing.
fn allowed_unpatched(answer: &Answer, what: &str) {
    let body = String::from_utf8_lossy(&answer.body);
    assert!(body.contains("\"allowed\":true"), "{body}");
    assert!(!body.contains("\"patch\""), "{what}: {body}");
}

fn review(api_version: &str, kind: Value, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": kind,
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object, "oldObject": null, "dryRun": false}
    })
}

/// The one-pass read answers exactly like the general path, byte for byte.
#[tokio::test]
async fn fast_path_answers_like_the_general_path() {
    let a = admission();
    let pod_kind = json!({"group": "", "version": "v1", "kind": "Pod"});
    let mut bodies = vec![
        review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "CREATE",
            pod("web"),
        ),
        review(
            "admission.k8s.io/v1beta1",
            pod_kind.clone(),
            "CREATE",
            pod("web"),
        ),
        review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "CREATE",
            pod("api"),
        ),
        review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "UPDATE",
            pod("web"),
        ),
        review(
            "admission.k8s.io/v1",
            pod_kind.clone(),
            "DELETE",
            Value::Null,
        ),
        review(
            "admission.k8s.io/v1",
            json!({"group": "apps", "version": "v1", "kind": "Pod"}),
            "CREATE",
            pod("web"),
        ),
        review(
            "admission.k8s.io/v1",
            json!({"group": "", "version": "v1", "kind": "Service"}),
            "CREATE",
            pod("web"),
        ),
    ];
    let mut no_ns = review(
        "admission.k8s.io/v1",
        pod_kind.clone(),
        "CREATE",
        pod("web"),
    );
    no_ns["request"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    bodies.push(no_ns);
    let mut bad = review(
        "admission.k8s.io/v1",
        pod_kind.clone(),
        "CREATE",
        pod("web"),
    );
    bad["request"]["object"]["spec"]["containers"] = json!("not a list");
    bodies.push(bad);
    let mut dry_run = review("admission.k8s.io/v1", pod_kind, "CREATE", pod("web"));
    dry_run["request"]["dryRun"] = true.into();
    bodies.push(dry_run);
    let mut bodies: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| serde_json::to_vec(b).unwrap())
        .collect();
    bodies.push(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_vec());
    bodies.push(br#"{"request": {"uid": "x", "uid": "y"}}"#.to_vec());
    bodies.push(b"[1, 2]".to_vec());
    let mut patched = 0;
    for body in &bodies {
        let Reviewed {
            result: r1,
            answer: fast,
            ..
        } = a.review_read(body, read::read).await;
        // A fresh admission: no decision remembered from the fast path's review.
        let b = admission();
        let Reviewed {
            result: r2,
            answer: general,
            ..
        } = b.review_read(body, read::read_general).await;
        let text = String::from_utf8_lossy(body);
        assert_eq!(r1, r2, "{text}");
        assert_eq!(fast.status, general.status, "{text}");
        assert_eq!(fast.body, general.body, "{text}");
        let v: Value = serde_json::from_slice(&fast.body).unwrap();
        patched += usize::from(v["response"].get("patch").is_some());
    }
    assert_eq!(patched, 4);
}

fn create(pod: Value, uid: &str) -> Vec<u8> {
    let pod_kind = json!({"group": "", "version": "v1", "kind": "Pod"});
    let mut v = review("admission.k8s.io/v1", pod_kind, "CREATE", pod);
    v["request"]["uid"] = uid.into();
    serde_json::to_vec(&v).unwrap()
}

/// The next pod of a ReplicaSet reuses the first one's decision and gets the answer a fresh
/// computation gives, byte for byte; a pod of another shape or target, and every pod after a
/// config change, is decided anew.
#[tokio::test]
async fn decisions_are_remembered_per_pod_shape() {
    let a = admission();
    // `remembered`: (decisions, patches) remembered after the review.
    let check = |body: Vec<u8>, remembered: (usize, usize)| {
        let a = &a;
        async move {
            let got = a.review(&body).await;
            let want = admission().review(&body).await;
            assert_eq!(got.body, want.body, "{}", String::from_utf8_lossy(&body));
            assert_eq!((a.memo.len(), a.memo.patches()), remembered);
            got
        }
    };
    let first = check(create(pod("web"), "u-1"), (1, 1)).await;
    assert!(String::from_utf8_lossy(&first.body).contains("\"patch\""));
    // The next pod of the ReplicaSet: another uid, same shape.
    let next = check(create(pod("web"), "u-2"), (1, 1)).await;
    assert_ne!(next.body, first.body, "each answer carries its own uid");
    // Another shape: the certificate volume mounted one level up (the proxy's mount follows).
    let mut moved = pod("web");
    moved["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/etc".into();
    let moved = check(create(moved, "u-3"), (2, 2)).await;
    assert!(String::from_utf8_lossy(&moved.body) != String::from_utf8_lossy(&first.body));
    // Another ReplicaSet of the Deployment: another target, decided anew, but the same plan
    // and shape, so the same patch.
    let mut rs2 = pod("web");
    rs2["metadata"]["labels"]["pod-template-hash"] = "77aa99".into();
    rs2["metadata"]["ownerReferences"][0]["name"] = "web-77aa99".into();
    check(create(rs2, "u-4"), (3, 2)).await;
    // A config change: decided again, against the new configs (none).
    a.cache.replace(vec![]);
    let after = a.review(&create(pod("web"), "u-1")).await;
    assert!(!String::from_utf8_lossy(&after.body).contains("\"patch\""));
    assert_eq!(a.memo.len(), 1, "only the new decision");
    assert_eq!(a.memo.patches(), 2, "patches do not depend on the configs");
}

/// A review that differs from an earlier one only in its uid gets the earlier answer with
/// its own uid: byte for byte what a fresh review gives, counted like one. A config change,
/// another pod, or a uid that would not read as itself means a fresh review. The first pod
/// of a shape is not kept; the second (its decision remembered) is.
#[tokio::test]
async fn replayed_answers_equal_fresh_ones() {
    let a = admission();
    a.review(&create(pod("web"), "u-0")).await;
    assert!(a.replay.is_empty(), "the first pod of a shape");
    let mut host = pod("web");
    host["spec"]["hostNetwork"] = true.into();
    // As the API server sends pods: managedFields, whose keys are escaped JSON.
    let mut managed = pod("web");
    managed["metadata"]["managedFields"] = json!([{"manager": "kube-controller-manager",
        "operation": "Update", "time": "2026-11-28T16:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}}}}}}]);
    for pod in [pod("web"), pod("api"), host, managed] {
        a.review(&create(pod.clone(), "u-0")).await;
        a.review(&create(pod.clone(), "u-1")).await;
        for uid in ["u-2", "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4", ""] {
            let hits = a.metrics.replays();
            let replayed = a.review(&create(pod.clone(), uid)).await;
            assert_eq!(a.metrics.replays(), hits + 1, "{pod} {uid}");
            let fresh = admission().review(&create(pod.clone(), uid)).await;
            assert_eq!(replayed.status, fresh.status);
            assert_eq!(replayed.body, fresh.body, "{pod} {uid}");
        }
    }
    let counters = counters(&a);
    for line in [
        "tls_steal_webhook_reviews_total{result=\"injected\"} 11",
        "tls_steal_webhook_reviews_total{result=\"skipped\"} 10",
        "tls_steal_webhook_skips_total{reason=\"no_matching_config\"} 5",
        "tls_steal_webhook_skips_total{reason=\"host_network\"} 5",
    ] {
        assert!(counters.lines().any(|l| l == line), "{line}\n{counters}");
    }
    // A uid with an escape reads as something else: reviewed afresh.
    let hits = a.metrics.replays();
    let escaped = a.review(&create(pod("web"), "u\\u0031")).await;
    let fresh = admission().review(&create(pod("web"), "u\\u0031")).await;
    assert_eq!((a.metrics.replays(), &escaped.body), (hits, &fresh.body));
    // Another pod, then a config change: reviewed afresh, against the new configs.
    let mut other = pod("web");
    other["metadata"]["labels"]["extra"] = "1".into();
    a.review(&create(other, "u-3")).await;
    a.cache.replace(vec![]);
    let after = a.review(&create(pod("web"), "u-4")).await;
    assert_eq!(a.metrics.replays(), hits);
    assert!(!String::from_utf8_lossy(&after.body).contains("\"patch\""));
}

/// A pod whose plan has a port no container declares gets a warning event per pod: its
/// answer is never replayed.
#[tokio::test]
async fn undeclared_port_answers_are_not_replayed() {
    let a = admission();
    let mut undeclared = pod("web");
    undeclared["spec"]["containers"][0]["ports"] = json!([]);
    for uid in ["u-1", "u-2"] {
        let answer = a.review(&create(undeclared.clone(), uid)).await;
        assert!(String::from_utf8_lossy(&answer.body).contains("\"patch\""));
    }
    assert_eq!((a.metrics.replays(), a.replay.len()), (0, 0));
}

/// Fields the webhook does not read are not validated on the one-pass read (`sparse_pod`,
/// `FastReview`): a pod with a malformed `resources`, or a review without `userInfo` or
/// with a malformed `oldObject`, is injected there, where the general path calls the review
/// malformed and admits it unchanged.
#[tokio::test]
async fn unread_fields_are_not_validated() {
    let mut bad_resources = pod("web");
    bad_resources["spec"]["containers"][0]["resources"] = "lots".into();
    let mut no_user: Value = serde_json::from_slice(&create(pod("web"), "u-2")).unwrap();
    no_user["request"]
        .as_object_mut()
        .unwrap()
        .remove("userInfo");
    let mut bad_old: Value = serde_json::from_slice(&create(pod("web"), "u-3")).unwrap();
    bad_old["request"]["oldObject"] = json!({"spec": {"containers": 7}});
    for body in [
        create(bad_resources, "u-1"),
        serde_json::to_vec(&no_user).unwrap(),
        serde_json::to_vec(&bad_old).unwrap(),
    ] {
        let text = String::from_utf8_lossy(&body).into_owned();
        let a = admission();
        let Reviewed {
            result,
            answer: fast,
            ..
        } = a.review_read(&body, read::read).await;
        assert_eq!(result, ReviewResult::Injected, "{text}");
        assert_eq!(fast.status, 200);
        let Reviewed {
            result,
            answer: general,
            ..
        } = a.review_read(&body, read::read_general).await;
        assert_eq!(result, ReviewResult::Invalid, "{text}");
        assert!(String::from_utf8_lossy(&general.body).contains("malformed AdmissionReview"));
    }
}

/// A body that is not UTF-8 takes the general path, which names the problem.
#[tokio::test]
async fn non_utf8_body_is_invalid() {
    let a = admission();
    let mut body = create(pod("web"), "u-1");
    let at = body.windows(3).position(|w| w == b"web").unwrap();
    body[at] = 0xff;
    let Reviewed { result, answer, .. } = a.review_read(&body, read::read).await;
    assert_eq!(result, ReviewResult::Invalid);
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("request body is not JSON"));
}

/// `allowed` builds what kube-core's `AdmissionResponse::from(&request)` builds.
#[test]
fn allowed_matches_kube_core_from_request() {
    let body = create(pod("web"), "u-9");
    let review: AdmissionReview<Pod> = serde_json::from_slice(&body).unwrap();
    let req: AdmissionRequest<Pod> = review.try_into().unwrap();
    let want = serde_json::to_value(AdmissionResponse::from(&req).into_review()).unwrap();
    let got = serde_json::to_value(answer::allowed(&PodRequest::from(req)).into_review()).unwrap();
    assert_eq!(got, want);
}

/// Through admission (memo included): in classic mode a pod that runs to completion gets no
/// patch, the first review and the remembered ones alike, and is counted as such; the same pod
/// with `restartPolicy: Always`, or in native mode, is injected.
#[tokio::test]
async fn run_to_completion_pods_are_left_alone_in_classic_mode() {
    let classic = || {
        admission_with(Settings {
            sidecar_mode: crate::settings::SidecarMode::Classic,
            ..Settings::default()
        })
    };
    let with_policy = |policy: &str| {
        let mut p = pod("web");
        p["spec"]["restartPolicy"] = policy.into();
        p
    };
    let a = classic();
    for uid in ["u-0", "u-1", "u-2"] {
        for policy in ["Never", "OnFailure"] {
            let answer = a.review(&create(with_policy(policy), uid)).await;
            allowed_unpatched(&answer, &format!("{policy} {uid}"));
        }
    }
    let counters = counters(&a);
    let line = "tls_steal_webhook_skips_total{reason=\"runs_to_completion\"} 6";
    assert!(counters.lines().any(|l| l == line), "{counters}");
    let always = a.review(&create(with_policy("Always"), "u-3")).await;
    assert!(String::from_utf8_lossy(&always.body).contains("\"patch\""));
    let native = admission()
        .review(&create(with_policy("Never"), "u-4"))
        .await;
    assert!(String::from_utf8_lossy(&native.body).contains("\"patch\""));
}

/// A pod whose container declares one of the proxy's TCP ports gets no patch (the app and the
/// proxy could not both listen), first review and remembered ones alike; the same port as UDP
/// does not conflict.
#[tokio::test]
async fn pods_declaring_the_proxys_ports_are_left_alone() {
    let with_port = |port: u16, protocol: &str| {
        let mut p = pod("web");
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8443},
            {"containerPort": port, "protocol": protocol}]);
        p
    };
    let a = admission();
    for uid in ["u-0", "u-1"] {
        for port in [15400, 15401, 15443] {
            let answer = a.review(&create(with_port(port, "TCP"), uid)).await;
            allowed_unpatched(&answer, &format!("{port} {uid}"));
        }
    }
    let counters = counters(&a);
    let line = "tls_steal_webhook_skips_total{reason=\"port_conflict\"} 6";
    assert!(counters.lines().any(|l| l == line), "{counters}");
    let udp = a.review(&create(with_port(15443, "UDP"), "u-2")).await;
    assert!(String::from_utf8_lossy(&udp.body).contains("\"patch\""));
}
