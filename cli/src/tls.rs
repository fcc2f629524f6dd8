//! The TLS client toward the local app: anonymous, and verifying nothing unless trust roots or a
//! pinned server certificate are given (a local app usually has a self-signed certificate).

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
    #[error("invalid trust root in {path}: {reason}")]
    BadRoot { path: PathBuf, reason: String },
    #[error("cannot build the TLS client: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Client configs for the local app: one offering `h2` and `http/1.1`, one only `http/1.1`
/// (HTTP/1 requests and upgrades).
#[derive(Clone, Debug)]
pub struct TlsClients {
    pub h2: Arc<ClientConfig>,
    pub h1: Arc<ClientConfig>,
}

impl TlsClients {
    pub fn new(trust_roots: &[PathBuf], server_cert: Option<&Path>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Verifier::new(trust_roots, server_cert, &provider)?);
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
        })
    }
}

/// Accepts the pinned certificate, or a chain to the trust roots, or (with neither) anything.
/// Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(
        trust_roots: &[PathBuf],
        server_cert: Option<&Path>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let pinned = match server_cert {
            Some(p) => certificates(p)?,
            None => Vec::new(),
        };
        let roots = if trust_roots.is_empty() {
            None
        } else {
            let mut store = RootCertStore::empty();
            for path in trust_roots {
                for file in pem_files(path)? {
                    for cert in certificates(&file)? {
                        store.add(cert).map_err(|e| TlsError::BadRoot {
                            path: file.clone(),
                            reason: e.to_string(),
                        })?;
                    }
                }
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| TlsError::BadRoot {
                    path: trust_roots[0].clone(),
                    reason: e.to_string(),
                })?;
            Some(v)
        };
        Ok(Verifier {
            roots,
            pinned,
            algorithms: provider.signature_verification_algorithms,
        })
    }
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
    // In a directory, files that hold no certificate (keys, READMEs) are skipped.
    files.retain(|f| certificates(f).is_ok());
    if files.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(files)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Read {
            path: path.into(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: path.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
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
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.roots {
            Some(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None if self.pinned.is_empty() => Ok(ServerCertVerified::assertion()),
            None => Err(rustls::Error::General(
                "the local app's certificate is not the one given with --server-cert".into(),
            )),
        }
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
        let e = TlsClients::new(&[dir.path().to_path_buf()], None).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    }

    #[test]
    fn roots_from_a_directory_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.local".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("README"), "hello").unwrap();
        let c = TlsClients::new(&[dir.path().to_path_buf()], None).unwrap();
        assert_eq!(c.h2.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(c.h1.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
