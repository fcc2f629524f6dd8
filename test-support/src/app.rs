//! A test app on loopback: HTTP/1.1 and HTTP/2 (by ALPN over TLS, by preface in plain text),
//! upgrades allowed, every request recorded as a [`Seen`] and answered by the harness's handler.
//! Dropping the [`App`] (or [`App::kill`]) closes its listener and every connection.
//!
//! The handlers' shared pieces are here too: [`with_trailers`], [`echo_upgrade`] and
//! [`switching_protocols`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::{Body, full, header_list};

/// What the app saw of one request (and of the TLS connection it came on).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub client_cert: bool,
    pub version: String,
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn of<B>(conn: &Seen, req: &Request<B>) -> Seen {
        Seen {
            version: format!("{:?}", req.version()),
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: header_list(req.headers()),
            ..conn.clone()
        }
    }
}

/// A running app.
pub struct App {
    pub addr: SocketAddr,
    /// Every request it received, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    pub fn builder() -> AppBuilder {
        AppBuilder {
            tls: None,
            close_idle_after: None,
        }
    }

    /// The last request it received.
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the app saw no request")
    }

    /// Closes the listener and every connection.
    pub fn kill(&self) {
        self.task.abort();
    }
}

/// How an [`App`] listens: plain text, or TLS with a server config.
pub struct AppBuilder {
    tls: Option<Arc<ServerConfig>>,
    close_idle_after: Option<std::time::Duration>,
}

impl AppBuilder {
    /// Serves TLS with `cfg` (its ALPN decides between HTTP/1.1 and HTTP/2).
    pub fn tls(mut self, cfg: Arc<ServerConfig>) -> Self {
        self.tls = Some(cfg);
        self
    }

    /// Closes an HTTP/1.1 connection that waits longer than `after` for its next request, as
    /// Node's `keepAliveTimeout` (5 s by default) does. hyper's header read timeout does it: its
    /// timer also runs while a keep-alive connection waits.
    pub fn close_idle_after(mut self, after: std::time::Duration) -> Self {
        self.close_idle_after = Some(after);
        self
    }

    /// Plain text when `None`.
    pub fn maybe_tls(mut self, cfg: Option<Arc<ServerConfig>>) -> Self {
        self.tls = cfg;
        self
    }

    /// Serves on an ephemeral port of 127.0.0.1.
    pub async fn serve<H, F>(self, handler: H) -> App
    where
        H: Fn(Seen, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.serve_on(listener, handler)
    }

    /// Serves on `listener`; `handler` answers each request, given what was seen of it.
    pub fn serve_on<H, F>(self, listener: TcpListener, handler: H) -> App
    where
        H: Fn(Seen, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tls, close_idle_after) = (self.tls, self.close_idle_after);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                tcp.set_nodelay(true).ok();
                let (tls, log, handler) = (tls.clone(), log.clone(), handler.clone());
                conns.spawn(async move {
                    let service = move |conn: Seen| {
                        service_fn(move |req: Request<Incoming>| {
                            let seen = Seen::of(&conn, &req);
                            log.lock().unwrap().push(seen.clone());
                            let answer = handler(seen, req);
                            async move { Ok::<_, std::convert::Infallible>(answer.await) }
                        })
                    };
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http1().preserve_header_case(true);
                    if let Some(after) = close_idle_after {
                        b.http1()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(after);
                    }
                    match tls {
                        Some(cfg) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            let (_, c) = s.get_ref();
                            let conn = Seen {
                                sni: c.server_name().map(str::to_owned),
                                alpn: c
                                    .alpn_protocol()
                                    .map(|a| String::from_utf8_lossy(a).into_owned()),
                                client_cert: c.peer_certificates().is_some_and(|c| !c.is_empty()),
                                ..Seen::default()
                            };
                            let _ = b
                                .serve_connection_with_upgrades(TokioIo::new(s), service(conn))
                                .await;
                        }
                        None => {
                            let _ = b
                                .serve_connection_with_upgrades(
                                    TokioIo::new(tcp),
                                    service(Seen::default()),
                                )
                                .await;
                        }
                    }
                });
            }
        });
        App { addr, seen, task }
    }
}

/// A streamed body: `data`, then `trailers`.
pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> Body {
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
        vec![Ok(Frame::data(data.into())), Ok(Frame::trailers(trailers))];
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// Once `req` is upgraded (HTTP/1.1 `Upgrade` or an HTTP/2 extended CONNECT), echoes every byte
/// back through `map` until the peer stops sending, then shuts its side down.
pub fn echo_upgrade(req: &mut Request<Incoming>, map: fn(u8) -> u8) {
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        let mut buf = [0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf[..n].iter_mut().for_each(|b| *b = map(*b));
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = io.shutdown().await;
    });
}

/// `101 Switching Protocols` to `upgrade: websocket` with `connection: <connection>`.
pub fn switching_protocols(connection: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert("upgrade", "websocket".parse().unwrap());
    r.headers_mut()
        .insert("connection", connection.parse().unwrap());
    r
}
