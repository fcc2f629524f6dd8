//! Shared harness of the whole-proxy tests: the test PKI, app, TLS and HTTP clients of
//! `tls-steal-test-support`, the app's routes, and an in-process proxy whose original destination
//! is fixed to the app (`orig_dst_override`, no iptables needed).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use rustls::pki_types::CertificateDer;
use tls_steal_crds::StealPlan;
use tls_steal_crds::plan::PortPlan;
use tls_steal_crds::types::{
    AgentAsClient, AgentAsServer, ClientVerification, ServerVerification, TlsAuthentication,
};
use tls_steal_sidecar::proxy::{self, ProxyConfig, ProxyHandle};
use tls_steal_test_support::app::{echo_upgrade, switching_protocols, with_trailers};
use tls_steal_test_support::client::h2_handshake;
// Each test binary uses a part of what the harness re-exports.
#[allow(unused_imports)]
pub use tls_steal_test_support::client::h1_handshake;
use tls_steal_test_support::{Body, full, http1_get};

// Each test binary uses a part of what the harness re-exports.
#[allow(unused_imports)]
pub use tls_steal_test_support::{
    Ca, ClientOpts, ClientTls, Conn, Err, Leaf, Pki, Seen, ServerTls, body_of, empty, provider,
    tls_connect,
};

/// The real HTTPS application of the proxy tests: records what it sees (`seen`, [`App::last`])
/// and answers with it as JSON, or per the routes of `app_handle`.
pub struct App(pub tls_steal_test_support::App);

impl std::ops::Deref for App {
    type Target = tls_steal_test_support::App;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

pub struct AppOptions {
    pub leaf: Leaf,
    pub alpn: Vec<&'static str>,
    /// Roots for optional client certificates (presence is recorded).
    pub client_roots: Vec<CertificateDer<'static>>,
}

impl App {
    pub async fn start(pki: &Pki) -> App {
        App::start_with(AppOptions {
            leaf: pki.server_leaf.clone(),
            alpn: vec!["h2", "http/1.1"],
            client_roots: vec![pki.client_root.der()],
        })
        .await
    }

    /// An HTTP/1.1 app that closes connections idle for `after` (as a Node app does after 5 s).
    pub async fn start_closing_idle(pki: &Pki, after: Duration) -> App {
        let o = AppOptions {
            leaf: pki.server_leaf.clone(),
            alpn: vec!["http/1.1"],
            client_roots: vec![],
        };
        App::serve(o, Some(after)).await
    }

    pub async fn start_with(o: AppOptions) -> App {
        App::serve(o, None).await
    }

    async fn serve(o: AppOptions, close_idle_after: Option<Duration>) -> App {
        let tls = ServerTls::leaf(&o.leaf)
            .alpn(&o.alpn)
            .client_roots(o.client_roots)
            .build();
        let mut app = tls_steal_test_support::App::builder().tls(tls);
        if let Some(after) = close_idle_after {
            app = app.close_idle_after(after);
        }
        App(app.serve(app_handle).await)
    }
}

/// An HTTP/2 client over `tls` sending bodies of type `B`; its connection runs in the returned
/// task, which ends when the connection does.
pub async fn h2_client<B>(
    tls: ClientTls,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Err>,
{
    h2_handshake(tls).await
}

async fn app_handle(seen: Seen, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/trailers" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        Response::new(with_trailers(
            Bytes::from_static(b"body-before-trailers"),
            trailers,
        ))
    } else if path == "/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        Response::new(full(n.to_string()))
    } else if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len() as u64);
                Some((
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n as usize))),
                    left - n,
                ))
            }
        });
        Response::new(StreamBody::new(stream).boxed())
    } else if path == "/ws" {
        echo_upgrade(&mut req, |b| b);
        switching_protocols("Upgrade")
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    } else if let Some(rest) = path.strip_prefix("/redirect/") {
        // `/redirect/<code>/<path>`: that status, `Location: /<path>` (the query kept).
        let (code, to) = rest.split_once('/').unwrap_or((rest, ""));
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        redirect(code, &format!("/{to}{query}"))
    } else if let Some(code) = path.strip_prefix("/redirect-away/") {
        redirect(code, "https://elsewhere.test/")
    } else if path == "/loop" {
        redirect("302", "/loop")
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("answering {code}")));
        *r.status_mut() =
            StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::IM_A_TEAPOT);
        r
    } else {
        Response::new(full(serde_json::to_vec(&seen).unwrap()))
    }
}

fn redirect(code: &str, location: &str) -> Response<Body> {
    let mut r = Response::new(full(format!("moved to {location}")));
    *r.status_mut() = StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::FOUND);
    r.headers_mut()
        .insert(http::header::LOCATION, location.parse().unwrap());
    r
}

/// GET `path` over a fresh connection; returns what the app saw.
pub async fn get_seen(proxy: SocketAddr, o: &ClientOpts, path: &str) -> Result<Seen, Err> {
    let mut c = Conn::open(proxy, o).await?;
    let (status, body) = c.get(path).await?;
    if status != StatusCode::OK {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The plan entry of the usual setup: the app's own cert and key on the proxy, the app
/// verified with its root, no client authentication toward the app.
pub fn port_plan(pki: &Pki, port: u16) -> PortPlan {
    port_plan_with(
        port,
        &pki.path("server.crt"),
        &pki.path("server.key"),
        &pki.path("server-root.crt"),
    )
}

/// [`port_plan`] with the certificate, key and root at the given paths.
pub fn port_plan_with(port: u16, cert: &str, key: &str, root: &str) -> PortPlan {
    PortPlan {
        port,
        container: "app".into(),
        config: "MirrordTlsStealConfig/default/test".into(),
        agent_as_server: AgentAsServer {
            authentication: TlsAuthentication {
                cert_pem: cert.into(),
                key_pem: key.into(),
            },
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            verification: None,
        },
        agent_as_client: AgentAsClient {
            authentication: None,
            verification: ClientVerification {
                accept_any_cert: false,
                trust_roots: vec![root.into()],
            },
        },
    }
}

pub fn server_verification(
    allow_anonymous: bool,
    accept_any_cert: bool,
    roots: Vec<String>,
) -> Option<ServerVerification> {
    Some(ServerVerification {
        allow_anonymous,
        accept_any_cert,
        trust_roots: roots,
    })
}

/// Proxy settings for tests: loopback, ephemeral ports, original destination fixed to `app`.
pub fn test_config(plan: PortPlan, app: SocketAddr) -> ProxyConfig {
    let mut cfg = ProxyConfig::new(StealPlan::from_ports(vec![plan]));
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.admin = Some("127.0.0.1:0".parse().unwrap());
    cfg.orig_dst_override = Some(app);
    cfg.files.search_processes = false;
    cfg.reload_interval = Duration::from_millis(200);
    cfg.drain_timeout = Duration::from_secs(2);
    // Tests of the drain delay set their own.
    cfg.drain_delay = Duration::ZERO;
    cfg
}

pub async fn start_proxy(cfg: ProxyConfig) -> ProxyHandle {
    proxy::start(cfg).await.expect("proxy starts")
}

/// GET on the admin port: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    http1_get(admin, path, "admin").await
}

pub fn path_exists(p: &str) -> bool {
    Path::new(p).exists()
}

/// `tls_steal_upstream_connections`: app connections open now (held, pooled or idle).
pub async fn upstream_open(proxy: &ProxyHandle) -> i64 {
    let m = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    m.lines()
        .filter(|l| l.starts_with("tls_steal_upstream_connections{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum()
}

/// `tls_steal_upstream_connects_total{result="ok"}` summed over ports: connections made to the app.
pub async fn upstream_connects(proxy: &ProxyHandle) -> u64 {
    let m = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    m.lines()
        .filter(|l| l.starts_with("tls_steal_upstream_connects_total{") && l.contains("\"ok\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The value of the `/metrics` line of `series` (its name and labels, exactly).
pub async fn metric(admin: SocketAddr, series: &str) -> i64 {
    let series = series.trim_end();
    let text = admin_get(admin, "/metrics").await.1;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Waits (up to 5 s) until `series` reads `want`.
pub async fn wait_metric(admin: SocketAddr, series: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = metric(admin, series).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stays {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` clients one after the other, each sending one request with `Connection: close` on a
/// fresh connection and leaving (the proxy sees it leave before the next one arrives).
pub async fn reconnecting_clients(addr: SocketAddr, o: &ClientOpts, n: usize) {
    for i in 0..n {
        let mut c = Conn::open(addr, o).await.unwrap();
        let req = c
            .request("GET", &format!("/r{i}"))
            .header("connection", "close")
            .body(empty())
            .unwrap();
        let resp = c.send(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        drop(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
