//! Telling HTTP/1, HTTP/2 (prior knowledge) and anything else apart when the client negotiated
//! no ALPN, and replaying the sniffed bytes to whoever serves the connection
//! ([`crate::Prefixed`]).

/// The HTTP/2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Http1,
    Http2,
    /// Not HTTP: relay bytes.
    Opaque,
    /// Not enough bytes yet.
    NeedMore,
}

/// Longest HTTP/1 method token we accept before the space.
const MAX_METHOD: usize = 20;

/// Classifies the bytes seen so far.
pub fn classify(buf: &[u8]) -> Sniffed {
    if buf.is_empty() {
        return Sniffed::NeedMore;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Sniffed::Http2
        } else {
            Sniffed::NeedMore
        };
    }
    // HTTP/1 request line: an upper-case token method, then a space.
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => continue,
            b' ' if i > 0 => return Sniffed::Http1,
            _ => return Sniffed::Opaque,
        }
    }
    if buf.len() >= MAX_METHOD {
        Sniffed::Opaque
    } else {
        Sniffed::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    use crate::io::Prefixed;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Sniffed::Http1);
        assert_eq!(classify(b"POS"), Sniffed::NeedMore);
        assert_eq!(classify(H2_PREFACE), Sniffed::Http2);
        assert_eq!(classify(b"PRI * HTTP/2"), Sniffed::NeedMore);
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(classify(b"\x00\x01garbage"), Sniffed::Opaque);
        assert_eq!(classify(b"get / HTTP/1.1"), Sniffed::Opaque);
        assert_eq!(classify(b" GET"), Sniffed::Opaque);
        assert_eq!(classify(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Sniffed::Opaque);
        assert_eq!(classify(b""), Sniffed::NeedMore);
    }

    #[tokio::test]
    async fn prefixed_replays_then_reads() {
        let inner: &[u8] = b" world";
        let mut io = Prefixed::prefixed(Bytes::from_static(b"hello"), inner);
        let mut s = String::new();
        io.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }
}
