//! A small fake Kubernetes API server for the read-only commands: fixed JSON answers by path, and
//! the WebSocket port-forward (`v4.channel.k8s.io` framing) of port 15400 bridged to a real
//! sidecar's session API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
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

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn api(mut req: Request<Incoming>, cluster: Arc<Cluster>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path.ends_with("/portforward") {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let on_upgrade = hyper::upgrade::on(&mut req);
        let session_api = cluster.session_api;
        tokio::spawn(async move {
            let upgraded = on_upgrade.await.unwrap();
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
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
        return r;
    }
    match cluster.routes.get(&path) {
        Some((code, v)) => json_response(*code, v),
        None => {
            let (code, v) = status(404, "NotFound", &format!("{path} not found"));
            json_response(code, &v)
        }
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

/// The running fake and a kubeconfig pointing at it (default namespace `namespace`).
pub struct FakeApi {
    _task: JoinHandle<()>,
    _dir: tempfile::TempDir,
    pub kubeconfig: String,
}

pub async fn start(cluster: Cluster, namespace: &str) -> FakeApi {
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
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    FakeApi {
        _task: task,
        _dir: dir,
        kubeconfig: kubeconfig.display().to_string(),
    }
}
