//! The PEM rules of the seed semantics, over bytes already read:
//! a certificate chain is every `CERTIFICATE` item in order (end-entity first, at least one),
//! a private key file holds exactly one key (PKCS#1, PKCS#8 or SEC1); every other item is ignored.

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file broke a rule; carries the file name for the log and `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct PemError {
    pub file: String,
    pub reason: String,
}

fn sections(bytes: &[u8], file: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError {
            file: file.to_owned(),
            reason: format!("malformed PEM: {e}"),
        })
}

/// Every certificate in the file, in order; other items ignored. Zero certificates is allowed
/// here (trust-root directories may hold other files); see [`cert_chain`] for chains.
pub fn certificates(bytes: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    Ok(sections(bytes, file)?
        .into_iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect())
}

/// A certificate chain, end-entity first: at least one certificate.
pub fn cert_chain(bytes: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = certificates(bytes, file)?;
    if certs.is_empty() {
        return Err(PemError {
            file: file.to_owned(),
            reason: "no CERTIFICATE item found".into(),
        });
    }
    Ok(certs)
}

/// Exactly one private key (PKCS#1 `RSA PRIVATE KEY`, PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`).
pub fn private_key(bytes: &[u8], file: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    let mut keys: Vec<PrivateKeyDer<'static>> = sections(bytes, file)?
        .into_iter()
        .filter_map(|(k, der)| PrivateKeyDer::from_pem(k, der))
        .collect();
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(PemError {
            file: file.to_owned(),
            reason: "no private key found (expected exactly one)".into(),
        }),
        n => Err(PemError {
            file: file.to_owned(),
            reason: format!("{n} private keys found (expected exactly one)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        // Minimal base64 for tests, no dependency.
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for ch in der.chunks(3) {
            let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= ch.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        format!("-----BEGIN {label}-----\n{s}\n-----END {label}-----\n")
    }

    #[test]
    fn chain_keeps_order_and_ignores_other_items() {
        let text = [
            pem("CERTIFICATE", b"leaf"),
            pem("PRIVATE KEY", b"k"),
            pem("CERTIFICATE", b"inter"),
        ]
        .concat();
        let chain = cert_chain(text.as_bytes(), "c.pem").unwrap();
        assert_eq!(
            chain
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect::<Vec<_>>(),
            vec![b"leaf".to_vec(), b"inter".to_vec()]
        );
    }

    #[test]
    fn empty_chain_names_the_file() {
        let e = cert_chain(pem("PRIVATE KEY", b"k").as_bytes(), "/etc/tls/tls.crt").unwrap_err();
        assert_eq!(e.file, "/etc/tls/tls.crt");
        assert!(cert_chain(b"garbage", "x").is_err());
    }

    #[test]
    fn exactly_one_key_of_any_kind() {
        for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"] {
            let text = [pem("CERTIFICATE", b"c"), pem(label, b"key")].concat();
            assert!(private_key(text.as_bytes(), "k.pem").is_ok(), "{label}");
        }
        let two = [pem("PRIVATE KEY", b"a"), pem("EC PRIVATE KEY", b"b")].concat();
        let e = private_key(two.as_bytes(), "/k.pem").unwrap_err();
        assert!(
            e.to_string().contains("/k.pem") && e.reason.contains("2 private keys"),
            "{e}"
        );
        let e = private_key(pem("CERTIFICATE", b"c").as_bytes(), "/k.pem").unwrap_err();
        assert!(e.reason.contains("no private key"), "{e}");
    }
}
