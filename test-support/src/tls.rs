//! rustls configurations of the test apps and clients, and the raw TLS client stream.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::pki::{Leaf, Pki, certs_from_pem};
use crate::provider;

/// Client certificates a server asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// Not asked for.
    None,
    /// Asked for and verified when given; a client without one is accepted.
    Optional,
    /// Required.
    Required,
}

/// A server's TLS settings: its chain and key, ALPN, and client certificates (asked for only
/// with [`ServerTls::client_roots`]).
pub struct ServerTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
    client_roots: Vec<CertificateDer<'static>>,
    client_auth: ClientAuth,
}

impl ServerTls {
    /// Serves `chain` (end-entity first) with `key`; no ALPN.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> ServerTls {
        ServerTls {
            chain,
            key,
            alpn: Vec::new(),
            client_roots: Vec::new(),
            client_auth: ClientAuth::None,
        }
    }

    /// Serves `leaf` with its issuer.
    pub fn leaf(leaf: &Leaf) -> ServerTls {
        ServerTls::new(leaf.chain(), leaf.key())
    }

    /// Reads the chain and key from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> std::io::Result<ServerTls> {
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", key.display())))?;
        Ok(ServerTls::new(chain, key))
    }

    /// Offers these ALPN protocols, in order.
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|a| a.as_bytes().to_vec()).collect();
        self
    }

    /// Offers these ALPN protocols (raw), in order.
    pub fn alpn_raw(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Asks for a client certificate, verified against `roots`; a client without one is still
    /// accepted (unless [`ServerTls::require_client_cert`]). No roots: not asked for.
    pub fn client_roots(mut self, roots: Vec<CertificateDer<'static>>) -> Self {
        self.client_auth = if roots.is_empty() {
            ClientAuth::None
        } else {
            ClientAuth::Optional
        };
        self.client_roots = roots;
        self
    }

    /// Refuses clients without a certificate from the [`ServerTls::client_roots`].
    pub fn require_client_cert(mut self) -> Self {
        self.client_auth = ClientAuth::Required;
        self
    }

    pub fn try_build(self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let verifier = if self.client_auth == ClientAuth::None {
            rustls::server::WebPkiClientVerifier::no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for r in self.client_roots {
                roots.add(r)?;
            }
            let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let b = match self.client_auth {
                ClientAuth::Optional => b.allow_unauthenticated(),
                _ => b,
            };
            b.build()
                .map_err(|e| rustls::Error::General(e.to_string()))?
        };
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain, self.key)?;
        cfg.alpn_protocols = self.alpn;
        Ok(Arc::new(cfg))
    }

    pub fn build(self) -> Arc<ServerConfig> {
        self.try_build().unwrap()
    }
}

/// Every certificate in the PEM file at `path`.
pub fn read_certs(path: &Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let err =
        |e: rustls_pki_types::pem::Error| std::io::Error::other(format!("{}: {e}", path.display()));
    CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .map(|c| c.map_err(err))
        .collect()
}

/// How a test client connects: the SNI it sends (`None`: none, verified as `app.test`), ALPN,
/// the roots it trusts and its certificate.
#[derive(Clone)]
pub struct ClientOpts {
    pub sni: Option<String>,
    pub alpn: Vec<&'static str>,
    pub roots: Vec<CertificateDer<'static>>,
    pub cert: Option<Leaf>,
}

impl ClientOpts {
    /// SNI `app.test`, trusting the server root of `pki`.
    pub fn new(pki: &Pki, alpn: &[&'static str]) -> Self {
        ClientOpts::trusting(vec![pki.server_root.der()], "app.test", alpn)
    }

    /// SNI `sni`, trusting `roots`.
    pub fn trusting(roots: Vec<CertificateDer<'static>>, sni: &str, alpn: &[&'static str]) -> Self {
        ClientOpts {
            sni: Some(sni.into()),
            alpn: alpn.to_vec(),
            roots,
            cert: None,
        }
    }

    /// SNI `sni`, trusting the certificates in `pem`.
    pub fn trusting_pem(pem: &str, sni: &str, alpn: &[&'static str]) -> Self {
        ClientOpts::trusting(certs_from_pem(pem), sni, alpn)
    }

    pub fn with_cert(mut self, leaf: &Leaf) -> Self {
        self.cert = Some(leaf.clone());
        self
    }

    /// The client config; an error for a root or a certificate rustls refuses.
    pub fn try_config(&self) -> Result<Arc<ClientConfig>, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone())?;
        }
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut cfg = match &self.cert {
            Some(l) => b.with_client_auth_cert(l.chain(), l.key())?,
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        if self.sni.is_none() {
            cfg.enable_sni = false;
        }
        Ok(Arc::new(cfg))
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.try_config().unwrap()
    }

    /// The name the server's certificate is verified against.
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::try_from(self.sni.clone().unwrap_or_else(|| "app.test".into())).unwrap()
    }
}

pub type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` as `o` describes (TCP_NODELAY); the handshake done, and with TLS
/// 1.3, a client-certificate refusal reported here rather than at the first read.
pub async fn tls_connect(addr: SocketAddr, o: &ClientOpts) -> std::io::Result<ClientTls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = tokio_rustls::TlsConnector::from(o.config())
        .connect(o.server_name(), tcp)
        .await?;
    tls.flush().await?;
    Ok(tls)
}
