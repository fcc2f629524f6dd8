//! The webhook's serving certificate (the Kubernetes side is in [`cluster`]).
//!
//! Pure parts (unit-tested): generating a CA and a serving certificate with rcgen (ring),
//! deciding whether to renew, the Secret's data, the rustls server config. I/O parts (thin):
//! create-if-absent / replace of the Secret (optimistic concurrency: on conflict re-read, so all
//! replicas converge on one certificate), the `caBundle` patch of the
//! MutatingWebhookConfiguration, the background renewal loop, and the file-reload loop for
//! certificates supplied by flags (cert-manager or user supplied).
//!
//! Lifetimes: CA 10 years, serving certificate 1 year. The serving certificate is re-issued by
//! the same CA 30 days before expiry (or when its DNS names differ from the wanted ones); the CA
//! is replaced 180 days before its expiry, and then `ca.crt` (hence `caBundle`) holds the new CA
//! followed by the old one until the old one expires, so no API server ever sees an unknown CA.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

mod cluster;

pub use cluster::{CertArgs, keep, start_files, start_generated};

/// Validity of the generated CA.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of the generated serving certificate.
pub const SERVING_VALIDITY: Duration = Duration::days(365);
/// Re-issue the serving certificate this long before it expires.
pub const SERVING_RENEW_BEFORE: Duration = Duration::days(30);
/// Replace the CA this long before it expires.
pub const CA_RENEW_BEFORE: Duration = Duration::days(180);

/// Keys of the Secret.
pub const SECRET_CA_CERT: &str = "ca.crt";
pub const SECRET_CA_KEY: &str = "ca.key";
pub const SECRET_CERT: &str = "tls.crt";
pub const SECRET_KEY: &str = "tls.key";

/// Why the serving certificate could not be made, read or published.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid PEM")]
    Pem(#[from] rustls_pki_types::pem::Error),
    #[error("no certificate in the PEM")]
    NoCertificate,
    #[error("parsing a certificate")]
    X509(#[from] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("building the TLS config")]
    Rustls(#[from] rustls::Error),
    #[error("Kubernetes API request failed")]
    Kube(#[from] kube::Error),
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the certificate Secret kept changing under us")]
    SecretContention,
}

/// The CA (possibly followed by older CAs still trusted), its key, and the serving pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertBundle {
    /// PEM: the signing CA first, then older CAs kept for overlap. This is the `caBundle`.
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// DNS names of the webhook Service: `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn generate_ca(now: OffsetDateTime) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tls-steal-webhook CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_VALIDITY;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_serving(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let first_ca = first_pem_cert(ca_cert_pem)?;
    let issuer = Issuer::from_ca_cert_der(&first_ca, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.get(2).or(names.first()).cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + SERVING_VALIDITY;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A fresh CA and a serving certificate for `names`.
pub fn generate(names: &[String], now: OffsetDateTime) -> Result<CertBundle, CertError> {
    let (ca_cert_pem, ca_key_pem) = generate_ca(now)?;
    let (cert_pem, key_pem) = issue_serving(&ca_cert_pem, &ca_key_pem, names, now)?;
    Ok(CertBundle {
        ca_cert_pem,
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(certs)
}

fn first_pem_cert(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    Ok(pem_certs(pem)?.remove(0))
}

/// Expiry (Unix seconds) and DNS SANs of a DER certificate.
fn inspect(der: &[u8]) -> Result<(i64, Vec<String>), CertError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)?;
    let not_after = cert.validity().not_after.timestamp();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    Ok((not_after, names))
}

/// Expiry of the first certificate of a PEM, as a Unix timestamp.
pub fn not_after(pem: &str) -> Result<i64, CertError> {
    Ok(inspect(&first_pem_cert(pem)?)?.0)
}

/// What [`renew`] has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Still good.
    None,
    /// Re-issue the serving certificate with the same CA.
    Serving,
    /// Replace the CA (and so the serving certificate).
    Ca,
}

/// Decides whether `bundle` must be renewed at `now` for `names`. Anything unreadable → `Ca`.
pub fn renewal_needed(bundle: &CertBundle, names: &[String], now: OffsetDateTime) -> Renewal {
    let now = now.unix_timestamp();
    let ca_ok = not_after(&bundle.ca_cert_pem)
        .is_ok_and(|t| t - now > CA_RENEW_BEFORE.whole_seconds())
        && KeyPair::from_pem(&bundle.ca_key_pem).is_ok();
    if !ca_ok {
        return Renewal::Ca;
    }
    let serving_ok = first_pem_cert(&bundle.cert_pem)
        .and_then(|der| inspect(&der))
        .is_ok_and(|(t, sans)| {
            t - now > SERVING_RENEW_BEFORE.whole_seconds() && names.iter().all(|n| sans.contains(n))
        })
        && PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes()).is_ok();
    if serving_ok {
        Renewal::None
    } else {
        Renewal::Serving
    }
}

/// Applies `renewal` to `bundle`. A replaced CA stays in `ca_cert_pem` (after the new one)
/// until it expires.
pub fn renew(
    bundle: &CertBundle,
    renewal: Renewal,
    names: &[String],
    now: OffsetDateTime,
) -> Result<CertBundle, CertError> {
    match renewal {
        Renewal::None => Ok(bundle.clone()),
        Renewal::Serving => {
            let (cert_pem, key_pem) =
                issue_serving(&bundle.ca_cert_pem, &bundle.ca_key_pem, names, now)?;
            Ok(CertBundle {
                cert_pem,
                key_pem,
                ..bundle.clone()
            })
        }
        Renewal::Ca => {
            let mut fresh = generate(names, now)?;
            let ts = now.unix_timestamp();
            // Keep the previous CAs that are still valid, for the overlap.
            for der in pem_certs(&bundle.ca_cert_pem).unwrap_or_default() {
                if inspect(&der).is_ok_and(|(t, _)| t > ts) {
                    fresh.ca_cert_pem.push_str(&der_to_pem(&der));
                }
            }
            Ok(fresh)
        }
    }
}

fn der_to_pem(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// PEM: base64 in 64-column lines between the labels.
fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The Secret's `data`.
pub fn to_secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    [
        (SECRET_CA_CERT, &bundle.ca_cert_pem),
        (SECRET_CA_KEY, &bundle.ca_key_pem),
        (SECRET_CERT, &bundle.cert_pem),
        (SECRET_KEY, &bundle.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect()
}

/// Reads a bundle back from a Secret's `data`; `None` when a key is missing or not UTF-8.
pub fn from_secret_data(data: &BTreeMap<String, ByteString>) -> Option<CertBundle> {
    let get = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(CertBundle {
        ca_cert_pem: get(SECRET_CA_CERT)?,
        ca_key_pem: get(SECRET_CA_KEY)?,
        cert_pem: get(SECRET_CERT)?,
        key_pem: get(SECRET_KEY)?,
    })
}

/// A rustls server config (ring provider, ALPN h2 and http/1.1) for a PEM chain and key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, CertError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        dns_names("tls-steal-webhook", "tls-steal")
    }

    #[test]
    fn generated_bundle_roundtrips_and_is_fresh() {
        let now = OffsetDateTime::now_utc();
        let b = generate(&names(), now).unwrap();
        assert_eq!(renewal_needed(&b, &names(), now), Renewal::None);
        assert_eq!(from_secret_data(&to_secret_data(&b)), Some(b.clone()));
        let (exp, sans) = inspect(&first_pem_cert(&b.cert_pem).unwrap()).unwrap();
        assert_eq!(sans, names());
        assert!((exp - (now + SERVING_VALIDITY).unix_timestamp()).abs() < 5);
        server_config(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap();
    }

    #[test]
    fn renewal_decisions() {
        let now = OffsetDateTime::now_utc();
        let b = generate(&names(), now).unwrap();
        // 340 days later the serving certificate has < 30 days left.
        let later = now + Duration::days(340);
        assert_eq!(renewal_needed(&b, &names(), later), Renewal::Serving);
        let r = renew(&b, Renewal::Serving, &names(), later).unwrap();
        assert_eq!(r.ca_cert_pem, b.ca_cert_pem);
        assert_ne!(r.cert_pem, b.cert_pem);
        assert_eq!(renewal_needed(&r, &names(), later), Renewal::None);
        // Other service name → re-issue.
        assert_eq!(
            renewal_needed(&b, &dns_names("other", "ns"), now),
            Renewal::Serving
        );
        // Near the CA's end → new CA, old one kept for overlap.
        let much_later = now + Duration::days(3600);
        assert_eq!(renewal_needed(&b, &names(), much_later), Renewal::Ca);
        let r = renew(&b, Renewal::Ca, &names(), much_later).unwrap();
        assert_eq!(pem_certs(&r.ca_cert_pem).unwrap().len(), 2);
        assert!(
            r.ca_cert_pem
                .ends_with(&der_to_pem(&first_pem_cert(&b.ca_cert_pem).unwrap()))
        );
        // Garbage → new CA.
        let bad = CertBundle {
            ca_cert_pem: "x".into(),
            ..b
        };
        assert_eq!(renewal_needed(&bad, &names(), now), Renewal::Ca);
    }

    #[test]
    fn pem_encoder_matches_rcgen() {
        let b = generate(&names(), OffsetDateTime::now_utc()).unwrap();
        let der = first_pem_cert(&b.ca_cert_pem).unwrap();
        assert_eq!(
            der_to_pem(&der).replace('\r', ""),
            b.ca_cert_pem.replace('\r', "")
        );
    }
}
