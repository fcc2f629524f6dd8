//! The proxy as TLS client toward the application (`agentAsClient`).
//!
//! * `authentication` absent → anonymous; present → that chain and key as client certificate.
//! * `verification`: `acceptAnyCert` (signatures still checked) or exactly the `trustRoots`;
//!   system roots are never used, so no roots and no `acceptAnyCert` is a configuration error.
//! * SNI: the client's SNI, else the request authority's host, else the original destination
//!   IP ([`server_name`]).
//! * ALPN: chosen per connection by the caller ([`UpstreamTls::config`]); the base config is
//!   cloned per ALPN list and cached, sharing the session-resumption store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tls_steal_crds::types::AgentAsClient;

use super::material::{MaterialError, RawMaterial};
use super::signatures::Signatures;
use super::{pem, tls_server};

/// The client configurations of one port, per offered ALPN list.
pub struct UpstreamTls {
    base: Arc<ClientConfig>,
    by_alpn: Mutex<HashMap<Vec<Vec<u8>>, Arc<ClientConfig>>>,
}

impl UpstreamTls {
    /// The configuration offering exactly `alpn` (empty: no ALPN extension).
    pub fn config(&self, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        if alpn.is_empty() {
            return self.base.clone();
        }
        let mut map = self.by_alpn.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(alpn.to_vec())
            .or_insert_with(|| {
                let mut c = (*self.base).clone();
                c.alpn_protocols = alpn.to_vec();
                Arc::new(c)
            })
            .clone()
    }
}

/// Builds the client side of a port.
pub fn upstream_tls(
    plan: &AgentAsClient,
    raw: &RawMaterial,
    provider: Arc<CryptoProvider>,
) -> Result<UpstreamTls, MaterialError> {
    let verifier: Arc<dyn ServerCertVerifier> = if plan.verification.accept_any_cert {
        accept_any_cert(provider.clone())
    } else {
        if plan.verification.trust_roots.is_empty() {
            return Err(MaterialError::new(
                "agentAsClient.verification",
                "trustRoots is empty and acceptAnyCert is false: the application's certificate could never be verified (system roots are never used)",
            ));
        }
        let (store, skipped) = tls_server::root_store(&raw.client_roots)?;
        if store.is_empty() {
            return Err(tls_server::no_root(
                "agentAsClient",
                &plan.verification.trust_roots,
                &skipped,
            ));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| MaterialError::new("agentAsClient.verification", e.to_string()))?
    };
    let provider = aes_128_first(&provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| MaterialError::new("agentAsClient", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &raw.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = pem::cert_chain(&cert.bytes, &cert.path)?;
            let k = pem::private_key(&key.bytes, &key.path)?;
            rustls::sign::CertifiedKey::from_der(chain.clone(), k.clone_key(), &provider).map_err(
                |e| {
                    MaterialError::new(
                        &key.path,
                        format!("cannot be used with the certificate in {}: {e}", cert.path),
                    )
                },
            )?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| MaterialError::new(&cert.path, e.to_string()))?
        }
    };
    Ok(UpstreamTls {
        base: Arc::new(config),
        by_alpn: Mutex::new(HashMap::new()),
    })
}

/// The provider toward the app, offering the AES-128-GCM suites first (rustls and OpenSSL offer
/// AES-256-GCM first). Decision: the hop is pod-local, and AES-128 needs 10 rounds where AES-256
/// needs 14 on every record of every request and answer; both are TLS 1.3's recommended
/// suites. Every suite stays offered, so an app that insists on its own order still gets it.
fn aes_128_first(provider: &Arc<CryptoProvider>) -> Arc<CryptoProvider> {
    use rustls::CipherSuite::*;
    let mut p = (**provider).clone();
    // Stable: TLS 1.3's suites stay ahead of TLS 1.2's, and the rest keep their order.
    p.cipher_suites.sort_by_key(|s| {
        let aes_128 = matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (s.version() != &rustls::version::TLS13, !aes_128)
    });
    Arc::new(p)
}

/// The name presented to (and verified against) the application: the client's SNI, else the
/// request authority's host, else the original destination IP.
pub fn server_name(
    sni: Option<&str>,
    authority_host: Option<&str>,
    dst: IpAddr,
) -> ServerName<'static> {
    for candidate in [sni, authority_host].into_iter().flatten() {
        let host = candidate.trim_start_matches('[').trim_end_matches(']');
        if let Ok(name) = ServerName::try_from(host.to_owned()) {
            return name;
        }
    }
    ServerName::IpAddress(dst.into())
}

/// A verifier accepting any server certificate (handshake signatures still checked), as the
/// kubelet's probes and `acceptAnyCert` do.
pub fn accept_any_cert(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyServerCert {
        provider: Signatures(provider),
    })
}

/// Accepts any application certificate; handshake signatures are still verified.
#[derive(Debug)]
struct AnyServerCert {
    provider: Signatures,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.provider.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.provider.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite a handshake between the proxy's app-side config and an app settles on.
    fn negotiated(app_own_order: bool) -> rustls::CipherSuite {
        use rustls::{ClientConnection, ServerConnection};
        use tls_steal_test_support::pki::Leaf;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(aes_128_first(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(accept_any_cert(provider.clone()))
            .with_no_client_auth();
        let leaf = Leaf::self_signed(&["app.test"]);
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain(), leaf.key())
            .unwrap();
        server.ignore_client_order = app_own_order;
        let name = ServerName::try_from("app.test").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        let mut wire = Vec::new();
        while c.is_handshaking() || s.is_handshaking() {
            wire.clear();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut wire.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            wire.clear();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut wire.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
        c.negotiated_cipher_suite().unwrap().suite()
    }

    #[test]
    fn the_app_side_offers_aes_128_first_and_the_app_may_still_choose() {
        use rustls::CipherSuite::*;
        assert_eq!(negotiated(false), TLS13_AES_128_GCM_SHA256);
        // rustls's own order, as an app that prefers its order (OpenSSL's is the same) has it.
        assert_eq!(negotiated(true), TLS13_AES_256_GCM_SHA384);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ours: Vec<_> = aes_128_first(&provider)
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut all: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours.len(), all.len());
        assert_eq!(
            ours[..3],
            [
                TLS13_AES_128_GCM_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_CHACHA20_POLY1305_SHA256
            ]
        );
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        all.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, all, "every suite is still offered");
    }

    #[test]
    fn sni_rule() {
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            server_name(Some("a.test"), Some("b.test"), ip),
            ServerName::try_from("a.test").unwrap()
        );
        assert_eq!(
            server_name(None, Some("b.test"), ip),
            ServerName::try_from("b.test").unwrap()
        );
        assert_eq!(
            server_name(None, Some("[::1]"), ip),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name(None, None, ip),
            ServerName::IpAddress(ip.into())
        );
        assert_eq!(
            server_name(None, Some("bad host!"), ip),
            ServerName::IpAddress(ip.into())
        );
    }
}
