//! Shared by the HTTP tests and the benchmark: a real TLS server on 127.0.0.1 and a minimal
//! HTTPS client (`tls-steal-test-support`'s TLS client and hyper http1) trusting only the
//! generated CA.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum_server::tls_rustls::RustlsConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use prometheus_client::registry::Registry;
use rustls_pki_types::CertificateDer;
use tls_steal_test_support::client::h1_handshake;
use tls_steal_test_support::{ClientOpts, ClientTls, tls_connect};
use tls_steal_webhook::{self as webhook, Admission, AppState, CertBundle};

pub const SERVICE: &str = "tls-steal-webhook";
pub const NAMESPACE: &str = "tls-steal";

pub fn sni() -> String {
    format!("{SERVICE}.{NAMESPACE}.svc")
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub bundle: CertBundle,
    pub state: AppState,
    /// Stops the server (see `tls_steal_webhook::drain`).
    pub handle: axum_server::Handle<SocketAddr>,
    /// Resolves when the server has stopped.
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the real router over TLS with a freshly generated certificate; `/metrics` shows
/// admission's metrics.
pub async fn start(admission: Admission, body_limit: usize) -> TestServer {
    let mut registry = Registry::default();
    admission.register_metrics(&mut registry);
    start_with_metrics(admission, body_limit, registry).await
}

/// [`start`] with `/metrics` showing `registry`.
pub async fn start_with_metrics(
    admission: Admission,
    body_limit: usize,
    registry: Registry,
) -> TestServer {
    let bundle = webhook::generate_cert_bundle(
        &webhook::dns_names(SERVICE, NAMESPACE),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let tls = RustlsConfig::from_config(
        webhook::server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes()).unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        admission: Arc::new(admission),
        tls_ready: Arc::new(AtomicBool::new(true)),
        draining: Arc::new(AtomicBool::new(false)),
        metrics: Arc::new(registry),
        session_policy: Arc::default(),
    };
    let router = webhook::router(state.clone(), body_limit);
    let handle = axum_server::Handle::new();
    let served = tokio::spawn(webhook::serve_tls(listener, tls, router, handle.clone()));
    TestServer {
        addr,
        bundle,
        state,
        handle,
        served,
    }
}

pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// The certificate chain the server presented.
    pub peer_certs: Vec<CertificateDer<'static>>,
}

/// One TLS connection (verified against `ca_pem` with SNI `sni`, ALPN http/1.1).
pub async fn connect_tls(addr: SocketAddr, ca_pem: &str, sni: &str) -> std::io::Result<ClientTls> {
    tls_connect(addr, &ClientOpts::trusting_pem(ca_pem, sni, &["http/1.1"])).await
}

/// Opens one HTTPS connection (TLS verified against `ca_pem` with SNI `sni`).
pub async fn connect(addr: SocketAddr, ca_pem: &str, sni: &str) -> std::io::Result<Conn> {
    let tls = connect_tls(addr, ca_pem, sni).await?;
    let peer_certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .to_vec();
    let sender = h1_handshake(tls).await;
    Ok(Conn { sender, peer_certs })
}

impl Conn {
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), hyper::Error> {
        let (status, _, body) = self.request_typed(method, path, body).await?;
        Ok((status, body))
    }

    /// [`Conn::request`], with the answer's Content-Type.
    pub async fn request_typed(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String, Vec<u8>), hyper::Error> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", sni())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, content_type, body))
    }

    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.request("POST", path, body).await.unwrap()
    }

    pub async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        self.request("GET", path, Vec::new()).await.unwrap()
    }
}
