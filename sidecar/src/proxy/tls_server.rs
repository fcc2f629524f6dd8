//! The proxy as TLS server toward the original client (`agentAsServer`).
//!
//! Client verification (seed semantics):
//! * `verification` absent → no CertificateRequest is sent at all.
//! * `acceptAnyCert` → any presented certificate is accepted (expired, self-signed, unknown
//!   issuer…); the handshake signature is still checked, proving the client holds the key.
//!   Anonymous clients only if `allowAnonymous` too.
//! * `trustRoots` non-empty → webpki chain validation against exactly those roots; anonymous
//!   clients only if `allowAnonymous`.
//! * no roots, `allowAnonymous` only → a certificate is requested but any presented one is
//!   refused: only anonymous clients get in.
//! * no roots and neither flag → a configuration error (the port goes to passthrough and
//!   `/readyz` says why), never a silent accept.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tls_steal_crds::types::{AgentAsServer, ServerVerification};
use tracing::warn;

use super::material::{MaterialError, RawMaterial, RootFile};
use super::pem;
use super::signatures::Signatures;

/// Builds the server configuration of a port.
pub fn server_config(
    plan: &AgentAsServer,
    raw: &RawMaterial,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, MaterialError> {
    let chain = pem::cert_chain(&raw.server_cert.bytes, &raw.server_cert.path)?;
    let key = pem::private_key(&raw.server_key.bytes, &raw.server_key.path)?;
    // Loads the key with the provider and checks it matches the end-entity certificate.
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
        |e| {
            MaterialError::new(
                &raw.server_key.path,
                format!(
                    "cannot be used with the certificate in {}: {e}",
                    raw.server_cert.path
                ),
            )
        },
    )?;
    let verifier = client_verifier(
        plan.verification.as_ref(),
        &raw.server_roots,
        provider.clone(),
    )?;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MaterialError::new("agentAsServer", e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| MaterialError::new(&raw.server_cert.path, e.to_string()))?;
    cfg.alpn_protocols = plan
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(cfg)
}

/// A root store from PEM files. A named file that is unusable (malformed PEM, a certificate
/// webpki refuses) fails with its name; an unusable entry of a directory is skipped with a
/// warning naming it (mirrord loads roots best-effort), and listed in the second value.
pub fn root_store(files: &[RootFile]) -> Result<(RootCertStore, Vec<String>), MaterialError> {
    let mut roots = RootCertStore::empty();
    let mut skipped = Vec::new();
    for f in files {
        let added = f
            .bytes
            .as_ref()
            .map_err(|why| MaterialError::new(&f.path, why.clone()))
            .and_then(|bytes| Ok(pem::certificates(bytes, &f.path)?))
            .and_then(|certs| {
                let mut store = RootCertStore::empty();
                for cert in certs {
                    store.add(cert).map_err(|e| {
                        MaterialError::new(&f.path, format!("unusable trust root: {e}"))
                    })?;
                }
                Ok(store)
            });
        match added {
            Ok(store) => roots.roots.extend(store.roots),
            Err(e) if f.in_dir => {
                warn!(file = %e.what, reason = %e.reason, "trust root skipped (a trustRoots directory is read best-effort)");
                skipped.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok((roots, skipped))
}

/// The error of a `trustRoots` list that gave no usable certificate.
pub fn no_root(side: &str, paths: &[String], skipped: &[String]) -> MaterialError {
    let mut reason = format!("no usable certificate found in {side}.verification.trustRoots");
    if !skipped.is_empty() {
        reason.push_str(&format!(" (skipped: {})", skipped.join("; ")));
    }
    MaterialError::new(paths.join(", "), reason)
}

fn client_verifier(
    v: Option<&ServerVerification>,
    roots: &[RootFile],
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, MaterialError> {
    let Some(v) = v else { return Ok(None) };
    if v.accept_any_cert {
        return Ok(Some(Arc::new(AnyClientCert {
            provider: Signatures(provider),
            mandatory: !v.allow_anonymous,
            refuse_all: false,
        })));
    }
    if v.trust_roots.is_empty() {
        if v.allow_anonymous {
            return Ok(Some(Arc::new(AnyClientCert {
                provider: Signatures(provider),
                mandatory: false,
                refuse_all: true,
            })));
        }
        return Err(MaterialError::new(
            "agentAsServer.verification",
            "trustRoots is empty and neither allowAnonymous nor acceptAnyCert is set: no client could ever connect",
        ));
    }
    let (store, skipped) = root_store(roots)?;
    if store.is_empty() {
        return Err(no_root("agentAsServer", &v.trust_roots, &skipped));
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider);
    if v.allow_anonymous {
        b = b.allow_unauthenticated();
    }
    b.build()
        .map(Some)
        .map_err(|e| MaterialError::new("agentAsServer.verification", e.to_string()))
}

/// Accepts any presented client certificate (or, with `refuse_all`, none), still checking
/// the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyClientCert {
    provider: Signatures,
    mandatory: bool,
    refuse_all: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.refuse_all {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        }
        Ok(ClientCertVerified::assertion())
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
