//! Connections to the local app: TCP (no Nagle), or TLS over it, within a bounded time; the
//! pool learns from ALPN whether the app chose h2.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::Connected;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tls_steal_http::{Hooked, ReadHook};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connecting to the local app gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Opens connections to the local app (the URI's authority is only the pool key).
#[derive(Clone)]
pub struct Connector {
    pub(super) addr: String,
    pub(super) tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<LocalStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, tls) = (self.addr.clone(), self.tls.clone());
        Box::pin(async move {
            let connect = async {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                Ok::<_, io::Error>(match tls {
                    None => {
                        Hooked::new(Box::new(tcp) as Box<dyn LocalIo>, Negotiated { h2: false })
                    }
                    Some((config, name)) => {
                        let tls = TlsConnector::from(config)
                            .connect(name, tcp)
                            .await
                            .map_err(|e| io::Error::other(format!("TLS handshake failed: {e}")))?;
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        Hooked::new(Box::new(tls) as Box<dyn LocalIo>, Negotiated { h2 })
                    }
                })
            };
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The byte stream of a connection to the local app: TCP, or TLS over it.
pub trait LocalIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LocalIo for T {}

/// Tells the pool whether the local app chose h2 (ALPN).
pub struct Negotiated {
    h2: bool,
}

impl ReadHook for Negotiated {
    fn connected(&self) -> Connected {
        tls_steal_http::negotiated(self.h2)
    }
}

/// A connection to the local app.
pub type LocalStream = Hooked<Box<dyn LocalIo>, Negotiated>;
