//! `kubectl-steal TARGET` through Kubernetes, against a small fake API server: the target is
//! resolved to its pods by the workload's selector, pods are listed and watched, and each session
//! goes through kube's WebSocket port-forward (`v4.channel.k8s.io` framing), which the fake
//! bridges to the session API of a real `tls-steal-sidecar proxy`.

mod common;
mod fake_kube;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use fake_kube::{FakeApi, json_response, portforward_upgrade};
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

/// What the fake API server knows.
struct Cluster {
    pods: Vec<Value>,
    /// Where port 15400 of every pod leads.
    session_api: SocketAddr,
    forbid_portforward: bool,
    /// Watch events (`{"type": "ADDED", "object": pod}`) sent to every pod watch.
    events: tokio::sync::broadcast::Sender<Value>,
}

impl Cluster {
    fn new(pods: Vec<Value>, session_api: SocketAddr) -> Self {
        Cluster {
            pods,
            session_api,
            forbid_portforward: false,
            events: tokio::sync::broadcast::channel(16).0,
        }
    }
}

fn pod(name: &str, sidecar: bool) -> Value {
    let mut containers = vec![json!({"name": "app"})];
    if sidecar {
        containers.push(json!({"name": "tls-steal-proxy"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}, "resourceVersion": "5"},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let (code, v) = fake_kube::status(code, reason, message);
    json_response(code, &v)
}

async fn api(req: Request<Incoming>, cluster: Arc<Cluster>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/apis/apps/v1/namespaces/shop/deployments/web" => json_response(
            200,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "shop"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}),
        ),
        "/api/v1/namespaces/shop/pods" if query.contains("watch=true") => {
            // Streams what the test sends, one JSON event per line; never ends by itself.
            let rx = cluster.events.subscribe();
            let events = futures::stream::unfold(rx, |mut rx| async move {
                let event = rx.recv().await.ok()?;
                let line = Bytes::from(format!("{event}\n"));
                Some((Ok::<_, std::io::Error>(Frame::data(line)), rx))
            })
            .chain(futures::stream::pending());
            Response::new(BodyExt::boxed(StreamBody::new(events)))
        }
        "/api/v1/namespaces/shop/pods" => json_response(
            200,
            &json!({"apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": "5"}, "items": cluster.pods}),
        ),
        p if p.starts_with("/api/v1/namespaces/shop/pods/") && p.ends_with("/portforward") => {
            if cluster.forbid_portforward {
                return status(
                    403,
                    "Forbidden",
                    "pods \"web-1\" is forbidden: User \"dev\" cannot create resource \"pods/portforward\"",
                );
            }
            portforward_upgrade(req, cluster.session_api)
        }
        p if p.starts_with("/apis/apps/v1/namespaces/shop/deployments/") => {
            status(404, "NotFound", "deployments.apps \"nope\" not found")
        }
        _ => status(404, "NotFound", "not found"),
    }
}

/// Starts the fake; the sender feeds its pod watches.
async fn fake_api(cluster: Cluster) -> (FakeApi, tokio::sync::broadcast::Sender<Value>) {
    let events = cluster.events.clone();
    let cluster = Arc::new(cluster);
    let api = fake_kube::serve("shop", move |req| api(req, cluster.clone())).await;
    (api, events)
}

fn kube_args(w: &World, local: SocketAddr, target: &str) -> Vec<String> {
    let mut a = vec![target.to_string()];
    a.extend(steal_args(w, local, "tls"));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_stolen_through_port_forward() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let api = fake_api(Cluster::new(
        vec![pod("web-1", true), pod("web-2", true), pod("other", false)],
        w.sidecar.session_api,
    ))
    .await
    .0;
    let args = kube_args(&w, local.addr, "deploy/web");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steal = Steal::spawn(&args, &[("KUBECONFIG", &api.kubeconfig)]);
    let first = steal.wait_for("registered").await;
    assert!(first.contains("pod/web-"), "{first}");
    // Both pods with the sidecar get a session (here both lead to the same sidecar).
    steal.wait_for_nth("registered", 2).await;
    let lines = steal.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("deploy/web in namespace shop")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("pod/other")), "{lines:?}");

    let a = h1(w.sidecar.listen, "/k", &[STEAL]).await;
    assert_eq!(a.body, "local GET /k");
    assert_eq!(h1(w.sidecar.listen, "/k", &[]).await.body, "real GET /k");
    steal.wait_for("GET /k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpful_errors_from_kubernetes() {
    let w = world().await;
    let local = App::start("local", None).await;

    let api = fake_api(Cluster::new(
        vec![pod("web-1", false)],
        w.sidecar.session_api,
    ))
    .await
    .0;
    let (ok, _, err) =
        run_to_exit(&kube_args(&w, local.addr, "deploy/nope"), &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("deploy/nope not found in namespace shop"),
        "{err}"
    );

    let (ok, _, err) = run_to_exit(&kube_args(&w, local.addr, "deploy/web"), &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("no pod of deploy/web carries the tls-steal sidecar"),
        "{err}"
    );
    assert!(err.contains("tls-steal-injection=enabled"), "{err}");

    let mut cluster = Cluster::new(vec![pod("web-1", true)], w.sidecar.session_api);
    cluster.forbid_portforward = true;
    let api = fake_api(cluster).await.0;
    let (ok, _, err) = run_to_exit(&kube_args(&w, local.addr, "deploy/web"), &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("the verb `create` on `pods/portforward`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_followed_as_they_come_and_go() {
    let w = world().await;
    let local = App::start("local", Some(w.certs.server.clone())).await;
    let (api, events) = fake_api(Cluster::new(
        vec![pod("web-1", true)],
        w.sidecar.session_api,
    ))
    .await;
    let args = kube_args(&w, local.addr, "deploy/web");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steal = Steal::spawn(&args, &[("KUBECONFIG", &api.kubeconfig)]);
    steal.wait_for("pod/web-1: session").await;

    // Wait until the watch is open (the fake's subscriber), then replace web-1 by web-3.
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.receiver_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no pod watch");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut not_ready = pod("web-3", true);
    not_ready["status"]["conditions"][0]["status"] = json!("False");
    events
        .send(json!({"type": "ADDED", "object": not_ready}))
        .unwrap();
    events
        .send(json!({"type": "MODIFIED", "object": pod("web-3", true)}))
        .unwrap();
    steal.wait_for("pod/web-3: session").await;
    events
        .send(json!({"type": "DELETED", "object": pod("web-1", true)}))
        .unwrap();
    steal.wait_for("pod/web-1: gone").await;
    let mut leaving = pod("web-3", true);
    leaving["status"]["conditions"][0]["status"] = json!("False");
    events
        .send(json!({"type": "MODIFIED", "object": leaving}))
        .unwrap();
    steal.wait_for("pod/web-3: no longer ready").await;

    // No session left: requests reach the real app.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = h1(w.sidecar.listen, "/gone", &[STEAL]).await;
        if a.body == "real GET /gone" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still stolen: {}",
            a.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
