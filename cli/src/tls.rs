//! The TLS client toward the local app, as mirrord's `tls_delivery` defines it: anonymous, and
//! verifying nothing unless given trust roots or the server's certificate.
//!
//! * `trust_roots` (files, or directories read one level deep): every certificate found is a
//!   trust anchor. Loaded best-effort, as mirrord does: a file that cannot be read or parsed is
//!   skipped with a warning naming it; no usable root at all is an error.
//! * `server_cert`: the local app's certificate chain (at least one certificate); every
//!   certificate in it is a trust anchor, so a self-signed certificate verifies against itself.
//!   Its first subject alternative name is the default server name.
//!
//! With either, the chain and the server name are verified by webpki; handshake signatures are
//! always checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The delivery TLS settings cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("no usable trust root in {paths}")]
    NoUsableRoot { paths: String },
    #[error("cannot build the TLS client: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Client configs for the local app: one offering `h2` and `http/1.1`, one only `http/1.1`
/// (HTTP/1 requests and upgrades).
#[derive(Clone, Debug)]
pub struct TlsClients {
    pub h2: Arc<ClientConfig>,
    pub h1: Arc<ClientConfig>,
    /// The server certificate's first subject alternative name (DNS name or IP address), the
    /// default server name when `server_cert` is given.
    pub cert_name: Option<String>,
    /// Trust-root files skipped, each with the reason.
    pub skipped: Vec<String>,
}

impl TlsClients {
    pub fn new(trust_roots: &[PathBuf], server_cert: Option<&Path>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut skipped = Vec::new();
        let mut cert_name = None;
        let store = match (server_cert, trust_roots) {
            (Some(cert), _) => {
                let chain = certificates(cert)?;
                cert_name = chain.first().and_then(|c| first_name(c));
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(chain);
                if added == 0 {
                    return Err(TlsError::NoUsableRoot {
                        paths: cert.display().to_string(),
                    });
                }
                Some(store)
            }
            (None, []) => None,
            (None, roots) => Some(root_store(roots, &mut skipped)?),
        };
        let verifier = Arc::new(Verifier::new(store, server_cert.is_some(), &provider)?);
        let config = |alpn: &[&[u8]]| -> Result<Arc<ClientConfig>, TlsError> {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        Ok(TlsClients {
            h2: config(&[b"h2", b"http/1.1"])?,
            h1: config(&[b"http/1.1"])?,
            cert_name,
            skipped,
        })
    }
}

/// Every certificate under `roots` (files, and the files directly in directories); what cannot
/// be used is listed in `skipped`.
fn root_store(roots: &[PathBuf], skipped: &mut Vec<String>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        let files = match pem_files(root) {
            Ok(f) => f,
            Err(e) => {
                skipped.push(e.to_string());
                continue;
            }
        };
        for file in files {
            match certificates(&file) {
                Ok(certs) => {
                    let (_, ignored) = store.add_parsable_certificates(certs);
                    if ignored > 0 {
                        skipped.push(format!(
                            "{}: {ignored} certificate(s) that cannot be a trust root",
                            file.display()
                        ));
                    }
                }
                Err(e) => skipped.push(e.to_string()),
            }
        }
    }
    if store.is_empty() {
        let paths: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(TlsError::NoUsableRoot {
            paths: paths.join(", "),
        });
    }
    Ok(store)
}

/// A file, or the regular files of a directory (not recursive).
fn pem_files(path: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let read_err = |e: std::io::Error| TlsError::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    if !path.is_dir() {
        return Ok(vec![path.into()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |e: rustls_pki_types::pem::Error| TlsError::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first subject alternative name that is a valid server name.
fn first_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| {
        let name = match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => match b.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string(),
                16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string(),
                _ => return None,
            },
            _ => return None,
        };
        ServerName::try_from(name.as_str()).is_ok().then_some(name)
    })
}

/// Verifies against the trust anchors, or (with none) accepts any certificate. Handshake
/// signatures are always checked.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The anchors are the `server_cert` chain (for the error message).
    pinned: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(
        store: Option<RootCertStore>,
        pinned: bool,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let webpki = match store {
            None => None,
            Some(store) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
        };
        Ok(Verifier {
            webpki,
            pinned,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(ref why) if self.pinned => {
                    rustls::Error::General(format!(
                        "the local app's certificate does not verify against the server certificate given (server_cert / --server-cert): {why:?}"
                    ))
                }
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_steal_test_support::Leaf;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = TlsClients::new(std::slice::from_ref(&missing), None).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let e = TlsClients::new(&[], Some(&empty)).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(
            e.to_string().contains("empty.pem holds no PEM certificate"),
            "{e}"
        );
        let e = TlsClients::new(&[dir.path().to_path_buf()], None).unwrap_err();
        assert!(matches!(e, TlsError::NoUsableRoot { .. }), "{e}");
    }

    #[test]
    fn roots_load_best_effort_and_name_what_they_skip() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Leaf::self_signed(&["ca.local"]);
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("README"), "hello").unwrap();
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.path().join("broken.pem"), broken).unwrap();
        let c = TlsClients::new(
            &[dir.path().to_path_buf(), dir.path().join("gone.pem")],
            None,
        )
        .unwrap();
        assert_eq!(c.h2.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(c.h1.alpn_protocols, [b"http/1.1".to_vec()]);
        let skipped = c.skipped.join("\n");
        for name in ["README", "broken.pem", "gone.pem"] {
            assert!(skipped.contains(name), "{skipped}");
        }
        assert!(!skipped.contains("ca.pem"), "{skipped}");
    }

    #[test]
    fn the_server_cert_names_the_default_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Leaf::self_signed(&["local.test", "127.0.0.1"]);
        let p = dir.path().join("c.pem");
        std::fs::write(&p, ck.cert_pem).unwrap();
        let c = TlsClients::new(&[], Some(&p)).unwrap();
        assert_eq!(c.cert_name.as_deref(), Some("local.test"));
        let ip_only = Leaf::self_signed(&["10.1.2.3"]);
        std::fs::write(&p, ip_only.cert_pem).unwrap();
        let c = TlsClients::new(&[], Some(&p)).unwrap();
        assert_eq!(c.cert_name.as_deref(), Some("10.1.2.3"));
    }
}
