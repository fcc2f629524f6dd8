//! A small fake Kubernetes API server, served in plain text by `tls-steal-test-support`'s app:
//! fixed JSON answers by path for the read-only commands ([`start`]), or the test's own answers
//! ([`serve`]); the WebSocket port-forward (`v4.channel.k8s.io` framing) of port 15400 bridged to
//! a real sidecar's session API ([`portforward_upgrade`]).
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tls_steal_test_support::{App, Body, full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What the fake answers.
pub struct Cluster {
    /// Path (without query) → (status, JSON).
    pub routes: HashMap<String, (u16, Value)>,
    /// Where port 15400 of every pod leads.
    pub session_api: SocketAddr,
}

/// A `Status` object (the API server's error answer).
pub fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

pub fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn api(req: Request<Incoming>, cluster: Arc<Cluster>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path.ends_with("/portforward") {
        return portforward_upgrade(req, cluster.session_api);
    }
    match cluster.routes.get(&path) {
        Some((code, v)) => json_response(*code, v),
        None => {
            let (code, v) = status(404, "NotFound", &format!("{path} not found"));
            json_response(code, &v)
        }
    }
}

/// Answers a port-forward request (a WebSocket upgrade) and, once upgraded, bridges port 15400
/// to `session_api`.
pub fn portforward_upgrade(mut req: Request<Incoming>, session_api: SocketAddr) -> Response<Body> {
    let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.unwrap();
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        portforward(ws, session_api).await;
    });
    let mut r = Response::new(full(""));
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

/// The running fake and a kubeconfig pointing at it (default namespace `namespace`).
pub struct FakeApi {
    _app: App,
    _dir: tempfile::TempDir,
    pub kubeconfig: String,
}

/// The fake answering from `cluster.routes` (port-forwards lead to `cluster.session_api`).
pub async fn start(cluster: Cluster, namespace: &str) -> FakeApi {
    let cluster = Arc::new(cluster);
    serve(namespace, move |req| api(req, cluster.clone())).await
}

/// The fake answering with `handler` (in plain text, HTTP/1.1 and HTTP/2, upgrades allowed).
pub async fn serve<H, F>(namespace: &str, handler: H) -> FakeApi
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::builder().serve_on(listener, move |_, req| handler(req));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    FakeApi {
        _app: app,
        _dir: dir,
        kubeconfig: kubeconfig.display().to_string(),
    }
}
