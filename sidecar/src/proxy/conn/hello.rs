//! What the client sends first, read before the proxy answers anything, to tell whether the
//! proxy can terminate this client at all: a first byte that is not a TLS handshake record is
//! a client that does not speak TLS; otherwise the whole `ClientHello` is read.
//!
//! The proxy speaks what rustls speaks: TLS 1.2 and 1.3 with AEAD suites, and a TLS 1.2 client
//! must send the `signature_algorithms` extension. An app (nginx, Java, .NET with legacy
//! settings) may accept more: TLS 1.0/1.1 or CBC-only clients. Such a client is not refused by
//! the proxy but relayed to the app untouched, its hello replayed, so it is served (or refused)
//! by the app exactly as without tls-steal; its requests are not seen, so not stealable.

use bytes::{BufMut, Bytes, BytesMut};
use rustls::server::Acceptor;
use rustls::{CipherSuite, Error, NamedGroup, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the hello says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not TLS at all (plain HTTP, another protocol): only the app can serve it.
    NotTls,
    /// The proxy can take it (or it is broken, and the handshake will say so as before).
    Terminate,
    /// Only the app can serve it: the reason, for the log.
    Legacy(String),
}

/// The most bytes read for a hello (rustls itself refuses larger handshake messages).
const MAX_HELLO: usize = 64 * 1024;

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Reads the client's first bytes: every byte read, to replay, and the verdict for a proxy
/// using `config`; `None` when the client closed before sending anything.
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    config: &ServerConfig,
) -> std::io::Result<Option<(Bytes, Verdict)>> {
    let mut raw = BytesMut::with_capacity(2048);
    // One byte first: a client that does not speak TLS may send little, and wait.
    if io.read_buf(&mut (&mut raw).limit(1)).await? == 0 {
        return Ok(None);
    }
    if raw[0] != TLS_HANDSHAKE {
        return Ok(Some((raw.freeze(), Verdict::NotTls)));
    }
    let mut acceptor = Acceptor::default();
    feed(&mut acceptor, &raw)?;
    loop {
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let offered = Offered {
                    suites: hello.cipher_suites(),
                    groups: hello.named_groups(),
                };
                return Ok(Some((raw.freeze(), verdict(&offered, config))));
            }
            Ok(None) => {}
            Err((Error::PeerIncompatible(why), _)) => {
                let why = format!("the client's hello is one the proxy cannot serve: {why:?}");
                return Ok(Some((raw.freeze(), Verdict::Legacy(why))));
            }
            // Corrupt: the real handshake refuses it and counts why.
            Err(_) => return Ok(Some((raw.freeze(), Verdict::Terminate))),
        }
        if raw.len() >= MAX_HELLO {
            return Ok(Some((raw.freeze(), Verdict::Terminate)));
        }
        let start = raw.len();
        if io.read_buf(&mut raw).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        feed(&mut acceptor, &raw[start..])?;
    }
}

fn feed(acceptor: &mut Acceptor, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        if acceptor.read_tls(&mut bytes)? == 0 {
            break;
        }
    }
    Ok(())
}

/// What a hello offers that the proxy must share.
struct Offered<'a> {
    suites: &'a [CipherSuite],
    /// `supported_groups`, when sent.
    groups: Option<&'a [NamedGroup]>,
}

/// The client must offer a suite of `config`'s (TLS 1.0/1.1 clients offer none; static-RSA and
/// DHE suites are not rustls's) and, when it lists key exchange groups, one of those too.
fn verdict(offered: &Offered<'_>, config: &ServerConfig) -> Verdict {
    let provider = config.crypto_provider();
    let suites = offered.suites;
    let ours = |s: &CipherSuite| provider.cipher_suites.iter().any(|o| o.suite() == *s);
    if !suites.iter().any(ours) {
        return Verdict::Legacy(format!(
            "the client offers no cipher suite the proxy has (it offers {suites:?})"
        ));
    }
    let ours = |g: &NamedGroup| provider.kx_groups.iter().any(|k| k.name() == *g);
    match offered.groups {
        Some(groups) if !groups.iter().any(ours) => Verdict::Legacy(format!(
            "the client offers no key exchange group the proxy has (it offers {groups:?})"
        )),
        _ => Verdict::Terminate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn config() -> ServerConfig {
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()))
    }

    #[test]
    fn a_client_needs_a_suite_and_a_group_the_proxy_has() {
        let cfg = config();
        // What a TLS 1.0 client offers: CBC suites and the renegotiation SCSV.
        let legacy = [
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
            CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA,
            CipherSuite::TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
        ];
        let offer = |suites: &[CipherSuite], groups: Option<&[NamedGroup]>| {
            verdict(&Offered { suites, groups }, &cfg)
        };
        let Verdict::Legacy(why) = offer(&legacy, None) else {
            panic!("CBC-only is legacy");
        };
        assert!(
            why.contains("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
            "{why}"
        );
        let mut modern = legacy.to_vec();
        modern.push(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        assert_eq!(offer(&modern, None), Verdict::Terminate);
        let tls13 = [CipherSuite::TLS13_AES_128_GCM_SHA256];
        assert_eq!(
            offer(&tls13, Some(&[NamedGroup::X25519])),
            Verdict::Terminate
        );
        // Static RSA key exchange is not rustls's either.
        let rsa = [CipherSuite::TLS_RSA_WITH_AES_128_GCM_SHA256];
        assert!(matches!(offer(&rsa, None), Verdict::Legacy(_)));
        // Only P-521 and finite-field groups: no key exchange the proxy can do.
        let groups = [NamedGroup::secp521r1, NamedGroup::FFDHE2048];
        let Verdict::Legacy(why) = offer(&tls13, Some(&groups)) else {
            panic!("no common group is legacy");
        };
        assert!(why.contains("secp521r1"), "{why}");
    }

    /// A hello split over several reads is read whole, and every byte is kept for the replay.
    #[tokio::test]
    async fn the_hello_is_read_whole_and_kept() {
        let cfg = Arc::new(config());
        // A real hello, from rustls's client.
        let mut client = rustls::ClientConnection::new(
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            "app.test".try_into().unwrap(),
        )
        .unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        hello.extend_from_slice(b"early");
        let (mut tx, mut rx) = tokio::io::duplex(64);
        let rest = hello.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in rest.chunks(50) {
                tx.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            tx
        });
        let (raw, verdict) = read(&mut rx, &cfg).await.unwrap().unwrap();
        assert_eq!(verdict, Verdict::Terminate);
        let _tx = writer.await.unwrap();
        assert!(hello.starts_with(&raw), "the bytes as they came");
        assert!(raw.len() >= hello.len() - b"early".len());

        // A client that leaves mid-hello is an error, as in the handshake; one that leaves
        // before its first byte is none.
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &hello[..3])
            .await
            .unwrap();
        drop(tx);
        let e = read(&mut rx, &cfg).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let (tx, mut rx) = tokio::io::duplex(64);
        drop(tx);
        assert!(read(&mut rx, &cfg).await.unwrap().is_none());

        // Plain HTTP: its first byte alone decides, so a client that waits is not kept waiting.
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, b"GET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let (raw, verdict) = read(&mut rx, &cfg).await.unwrap().unwrap();
        assert_eq!((&raw[..], verdict), (&b"G"[..], Verdict::NotTls));
    }
}
