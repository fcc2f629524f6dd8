//! `kubectl-steal TARGET` through Kubernetes, against a small fake API server: the target is
//! resolved to its pods by the workload's selector, pods are listed and watched, and each session
//! goes through kube's WebSocket port-forward (`v4.channel.k8s.io` framing), which the fake
//! bridges to the session API of a real `tls-steal-sidecar proxy`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

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

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap(),
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

async fn api(mut req: Request<Incoming>, cluster: Arc<Cluster>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    match path.as_str() {
        "/apis/apps/v1/namespaces/shop/deployments/web" => json_response(
            StatusCode::OK,
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
                Some((Ok::<_, Infallible>(Frame::data(line)), rx))
            })
            .chain(futures::stream::pending());
            Response::new(BodyExt::boxed(StreamBody::new(events)))
        }
        "/api/v1/namespaces/shop/pods" => json_response(
            StatusCode::OK,
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
            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
            let on_upgrade = hyper::upgrade::on(&mut req);
            let session_api = cluster.session_api;
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.unwrap();
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                portforward(ws, session_api).await;
            });
            let mut r = Response::new(Full::new(Bytes::new()).boxed());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("connection", "Upgrade".parse().unwrap());
            h.insert(
                "sec-websocket-accept",
                derive_accept_key(&key).parse().unwrap(),
            );
            h.insert(
                "sec-websocket-protocol",
                "v4.channel.k8s.io".parse().unwrap(),
            );
            r
        }
        p if p.starts_with("/apis/apps/v1/namespaces/shop/deployments/") => {
            status(404, "NotFound", "deployments.apps \"nope\" not found")
        }
        _ => status(404, "NotFound", "not found"),
    }
}

/// The kubelet's side of a port-forward of port 15400: channel 0 is data, 1 errors; each opens
/// with the port number (little-endian).
async fn portforward<S>(ws: WebSocketStream<S>, session_api: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let port = 15400u16.to_le_bytes();
    for ch in [0u8, 1] {
        sink.send(Message::binary(vec![ch, port[0], port[1]]))
            .await
            .unwrap();
    }
    let tcp = TcpStream::connect(session_api).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Binary(b) = msg
                && b.len() > 1
                && b[0] == 0
                && wr.write_all(&b[1..]).await.is_err()
            {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(0);
                    frame.extend_from_slice(&buf[..n]);
                    if sink.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(up, down);
}

/// The fake API server and a kubeconfig pointing at it.
struct FakeApi {
    _task: JoinHandle<()>,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

/// Starts the fake; the sender feeds its pod watches.
async fn fake_api(cluster: Cluster) -> (FakeApi, tokio::sync::broadcast::Sender<Value>) {
    let events = cluster.events.clone();
    let cluster = Arc::new(cluster);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let cluster = cluster.clone();
                    async move { Ok::<_, Infallible>(api(req, cluster).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: shop\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let api = FakeApi {
        _task: task,
        kubeconfig: kubeconfig.display().to_string(),
        _dir: dir,
    };
    (api, events)
}

fn kube_args(w: &World, local: SocketAddr, target: &str) -> Vec<String> {
    let mut a = vec![target.to_string()];
    a.extend(steal_args(w, local, "tls"));
    a
}

async fn run_to_exit(args: &[String], kubeconfig: &str) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(WAIT, out)
        .await
        .expect("kubectl-steal exits in time")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    let deadline = tokio::time::Instant::now() + WAIT;
    while steal
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("registered"))
        .count()
        < 2
    {
        let line = tokio::time::timeout_at(deadline, steal.stdout.next_line())
            .await
            .expect("a second registration")
            .unwrap()
            .expect("kubectl-steal keeps running");
        steal.lines.lock().unwrap().push(line);
    }
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
    let (ok, err) = run_to_exit(&kube_args(&w, local.addr, "deploy/nope"), &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("deploy/nope not found in namespace shop"),
        "{err}"
    );

    let (ok, err) = run_to_exit(&kube_args(&w, local.addr, "deploy/web"), &api.kubeconfig).await;
    assert!(!ok);
    assert!(
        err.contains("no pod of deploy/web carries the tls-steal sidecar"),
        "{err}"
    );
    assert!(err.contains("tls-steal-injection=enabled"), "{err}");

    let mut cluster = Cluster::new(vec![pod("web-1", true)], w.sidecar.session_api);
    cluster.forbid_portforward = true;
    let api = fake_api(cluster).await.0;
    let (ok, err) = run_to_exit(&kube_args(&w, local.addr, "deploy/web"), &api.kubeconfig).await;
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
