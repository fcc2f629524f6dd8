//! The connector of the upstream pools: TCP (no Nagle) + TLS to a pool's fixed destination,
//! counted, and the IO it yields (telling the pool whether h2 was negotiated).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::Connected;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tls_steal_http::{Hooked, ReadHook};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error_chain;
use crate::proxy::metrics::Metrics;

/// Opens TCP (no Nagle) + TLS to the fixed destination of its pool.
#[derive(Clone)]
pub struct UpstreamConnector {
    pub(super) dst: SocketAddr,
    pub(super) name: ServerName<'static>,
    pub(super) tls: TlsConnector,
    pub(super) connect_timeout: Duration,
    pub(super) metrics: Arc<Metrics>,
    pub(super) port: u16,
}

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<UpstreamIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await })
    }
}

impl UpstreamConnector {
    /// TCP + TLS, counted in `upstream_connects_total` by result.
    pub(super) async fn connect(&self) -> io::Result<UpstreamIo> {
        let r = self.try_connect().await;
        self.metrics.port(self.port).upstream_connect(r.is_ok());
        r
    }

    async fn try_connect(&self) -> io::Result<UpstreamIo> {
        let dst = self.dst;
        let connect = async {
            let tcp = TcpStream::connect(dst).await?;
            tcp.set_nodelay(true)?;
            self.tls.connect(self.name.clone(), tcp).await
        };
        let tls = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {dst} timed out"),
                )
            })?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS to {dst} as {:?}: {}", self.name, error_chain(&e)),
                )
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let gauge = OpenGauge::new(self.metrics.clone(), self.port);
        Ok(TokioIo::new(Hooked::new(
            tls,
            Upstream { h2, _gauge: gauge },
        )))
    }
}

/// Counts an open upstream connection for `/metrics` while alive.
struct OpenGauge {
    metrics: Arc<Metrics>,
    port: u16,
}

impl OpenGauge {
    fn new(metrics: Arc<Metrics>, port: u16) -> Self {
        metrics.port(port).upstream_open(1);
        OpenGauge { metrics, port }
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.metrics.port(self.port).upstream_open(-1);
    }
}

/// What an upstream connection carries besides its bytes: whether h2 was negotiated (told to
/// the pool) and its place in the open-connections gauge.
pub struct Upstream {
    h2: bool,
    _gauge: OpenGauge,
}

impl ReadHook for Upstream {
    fn connected(&self) -> Connected {
        tls_steal_http::negotiated(self.h2)
    }
}

/// A TLS connection to the app.
pub type UpstreamIo = TokioIo<Hooked<TlsStream<TcpStream>, Upstream>>;
