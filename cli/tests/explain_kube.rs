//! `kubectl steal --explain` and `kubectl steal status` through Kubernetes, against a fake API
//! server (configs, a Deployment and its pod) whose port-forward leads to a real
//! `tls-steal-sidecar proxy`: configs matched and not (with the reason), the plan the pod runs,
//! the port's live state, where a sample request goes while a real session steals, and the
//! session listed by `status` (then gone after Ctrl-C).

mod common;
mod fake_kube;

use std::collections::HashMap;

use common::*;
use fake_kube::{Cluster, FakeApi, status};
use serde_json::{Value, json};

const NS: &str = "test";

/// The config that gives exactly the sidecar's plan (`common::plan_json`:
/// `MirrordTlsStealConfig/test/app`, container `app`), and one for another workload.
fn configs(w: &World) -> Value {
    let port = w._real.addr.port();
    let app = json!({
        "apiVersion": "mirrord.metalbear.co/v1alpha", "kind": "MirrordTlsStealConfig",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"targetPath": "deploy/web*", "ports": [{
            "port": port,
            "agentAsServer": {"authentication": {"certPem": w.certs.cert_pem.display().to_string(),
                                                 "keyPem": w.certs.key_pem.display().to_string()},
                              "alpnProtocols": ["h2", "http/1.1"]},
            "agentAsClient": {"verification": {"acceptAnyCert": true}}
        }]}
    });
    let mut other = app.clone();
    other["metadata"]["name"] = json!("other");
    other["spec"]["targetPath"] = json!("deploy/api");
    json!({"apiVersion": "mirrord.metalbear.co/v1alpha", "kind": "MirrordTlsStealConfigList",
           "metadata": {"resourceVersion": "1"}, "items": [app, other]})
}

fn pod(w: &World) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d8f-abcde", "namespace": NS, "resourceVersion": "5",
                     "labels": {"app": "web", "pod-template-hash": "5d8f"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web-5d8f", "uid": "u"}]},
        "spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": w._real.addr.port()}]},
            {"name": "tls-steal-proxy",
             "env": [{"name": "TLS_STEAL_PLAN", "value": plan_json(w._real.addr.port(), &w.certs)}]}
        ]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

async fn fake(w: &World) -> FakeApi {
    let mut routes = HashMap::new();
    routes.insert(
        format!("/apis/apps/v1/namespaces/{NS}/deployments/web"),
        (
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": NS},
                   "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}),
        ),
    );
    routes.insert(
        format!("/api/v1/namespaces/{NS}/pods"),
        (
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"},
                   "items": [pod(w)]}),
        ),
    );
    routes.insert(
        format!("/apis/mirrord.metalbear.co/v1alpha/namespaces/{NS}/mirrordtlsstealconfigs"),
        (200, configs(w)),
    );
    routes.insert(
        "/apis/mirrord.metalbear.co/v1alpha/mirrordclustertlsstealconfigs".into(),
        status(
            403,
            "Forbidden",
            "mirrordclustertlsstealconfigs is forbidden: User \"dev\" cannot list",
        ),
    );
    fake_kube::start(
        Cluster {
            routes,
            session_api: w.sidecar.session_api,
        },
        NS,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_status_read_the_cluster_and_the_sidecar() {
    let w = world().await;
    let api = fake(&w).await;
    let port = w._real.addr.port().to_string();

    // Before any session: the configs, the plan, the live port; a sample reaches the app.
    let (ok, out, err) = run_to_exit(
        &[
            "--explain",
            "deploy/web",
            "--port",
            &port,
            "--header",
            "x-steal: yes",
        ],
        &api.kubeconfig,
    )
    .await;
    assert!(ok, "{out}{err}");
    for want in [
        "deploy/web in namespace test: 1 pod(s)",
        "note: cluster-wide configs (MirrordClusterTlsStealConfig) not listed",
        "pod/web-5d8f-abcde (ready, tls-steal-proxy injected)",
        "matched      MirrordTlsStealConfig/test/app (targetPath matched deploy/web)",
        "not matched  MirrordTlsStealConfig/test/other: pattern: targetPath \"deploy/api\"",
        "the pod runs the plan the configs give now",
        &format!("    {port}: files in container app, from MirrordTlsStealConfig/test/app"),
        "live: serving (TLS terminated, requests can be stolen); certificate",
        "sessions: 0 active",
        &format!("port {port}: → the app: no session is registered on port {port}"),
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }

    let (ok, out, _) = run_to_exit(&["status", "deploy/web"], &api.kubeconfig).await;
    assert!(ok);
    assert!(
        out.starts_with("deploy/web in namespace test: 0 active session(s) on 1 pod(s)"),
        "{out}"
    );

    // A real session steals `x-steal: yes`: the sample goes to it, another request to the app.
    let api_addr = w.sidecar.session_api.to_string();
    let mut steal = Steal::spawn(
        &[
            "--connect",
            &api_addr,
            "--port",
            &port,
            "--header",
            "^x-steal: yes$",
            "--to",
            "127.0.0.1:9",
        ],
        &[],
    );
    steal.wait_for("registered").await;
    let (ok, out, err) = run_to_exit(
        &[
            "--explain",
            "deploy/web",
            "-n",
            NS,
            "--header",
            "x-steal: yes",
            "-o",
            "json",
        ],
        &api.kubeconfig,
    )
    .await;
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let p = &v["pods"][0];
    assert_eq!(p["runningPlan"]["state"], "same", "{p}");
    assert_eq!(p["ports"][0]["live"]["state"], "tls", "{p}");
    assert_eq!(p["sessions"][0]["client"], "test", "{p}");
    let dest = &p["requests"][0]["answer"]["destination"];
    assert_eq!(dest["to"], "session", "{p}");
    assert_eq!(dest["client"], "test", "{p}");
    assert_eq!(dest["mode"], "steal", "{p}");

    let (_, out, _) = run_to_exit(
        &[
            "--explain",
            "deploy/web",
            "--header",
            "x-steal: no",
            "--path",
            "/x",
        ],
        &api.kubeconfig,
    )
    .await;
    assert!(
        out.contains(&format!(
            "port {port}: → the app: no session's filter matches"
        )),
        "{out}"
    );
    assert!(out.contains("its filter does not match"), "{out}");

    let (ok, out, _) = run_to_exit(&["status", "deploy/web", "-n", NS], &api.kubeconfig).await;
    assert!(ok);
    assert!(out.contains(": 1 active session(s) on 1 pod(s)"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("web-5d8f-abcde"))
        .unwrap_or_else(|| panic!("{out}"));
    for want in [
        " test ",
        " steal ",
        &port,
        "header ~ \"^x-steal: yes$\"",
        "Z (",
    ] {
        assert!(row.contains(want), "missing {want:?} in {row:?}");
    }
    let (_, out, _) = run_to_exit(&["status", "deploy/web", "-o", "json"], &api.kubeconfig).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pods"][0]["sessions"][0]["mode"], "steal");

    steal.interrupt();
    let _ = steal.child.wait().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, out, _) = run_to_exit(&["status", "deploy/web"], &api.kubeconfig).await;
        if out.contains(": 0 active session(s)") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session still listed:\n{out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_errors_name_what_is_missing() {
    let w = world().await;
    let api = fake(&w).await;
    let (ok, _, err) = run_to_exit(&["--explain"], &api.kubeconfig).await;
    assert!(!ok);
    assert!(err.contains("--explain needs TARGET"), "{err}");
    let (ok, _, err) = run_to_exit(&["--explain", "deploy/nope"], &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("deploy/nope not found in namespace test"),
        "{err}"
    );
    let (ok, _, err) = run_to_exit(
        &["--explain", "deploy/web", "--header", "x"],
        &api.kubeconfig,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("a sample header is `name: value`"), "{err}");
    let (ok, _, err) = run_to_exit(&["status"], &api.kubeconfig).await;
    assert!(!ok);
    assert!(err.contains("TARGET"), "{err}");
}
