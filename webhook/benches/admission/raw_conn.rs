//! The load generator's connection: HTTP/1.1 over rustls, answers read with httparse.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// One keep-alive HTTPS connection sending pre-encoded requests (see the module docs).
pub struct RawConn {
    tls: tls_steal_test_support::ClientTls,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> RawConn {
        let tls = common::connect_tls(addr, ca_pem, &common::sni())
            .await
            .unwrap();
        RawConn {
            tls,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// `POST /mutate` with `body`, as the bytes to write.
    pub fn request(body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST /mutate HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            common::sni(),
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    /// Sends `request` and reads the whole answer: its status and body.
    pub async fn send(&mut self, request: &[u8]) -> (u16, &[u8]) {
        self.tls.write_all(request).await.unwrap();
        self.buf.clear();
        let (status, head, len) = loop {
            let mut chunk = [0u8; 8192];
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(&self.buf).unwrap() {
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .unwrap()
                            .parse::<usize>()
                            .unwrap()
                    })
                    .expect("answers carry content-length");
                break (resp.code.unwrap(), head, len);
            }
        };
        while self.buf.len() < head + len {
            let mut chunk = [0u8; 8192];
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection mid-answer");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(self.buf.len(), head + len, "one answer per request");
        (status, &self.buf[head..])
    }
}
