//! hyper clients of the test apps and of the proxy: one connection that speaks what ALPN chose
//! ([`Conn`]), handshakes over any stream, plain HTTP/1 GETs, answers collected whole, and a
//! reader of raw HTTP/1.1 responses.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::{ClientOpts, tls_connect};
use crate::{Body, empty};

pub type Err = Box<dyn std::error::Error + Send + Sync>;

/// How long [`collect`] waits for a body.
pub const WAIT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 client over `io` sending bodies of type `B`; its connection (upgrades allowed)
/// runs in a spawned task.
pub async fn h1_handshake<B, S>(io: S) -> http1::SendRequest<B>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Err>,
{
    let (s, c) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(c.with_upgrades());
    s
}

/// An HTTP/2 client over `io` sending bodies of type `B`; its connection runs in the returned
/// task, which ends when the connection does.
pub async fn h2_handshake<B, S>(
    io: S,
) -> (
    http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Err>,
{
    let (s, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    (s, tokio::spawn(conn))
}

/// One HTTPS connection (h2 when negotiated, else HTTP/1.1) to a server of `app.test`.
pub enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Conn {
    pub async fn open(addr: SocketAddr, o: &ClientOpts) -> Result<Conn, Err> {
        let tls = tls_connect(addr, o).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (s, c) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(c);
            Ok(Conn::H2(s))
        } else {
            let (s, c) = http1::handshake(io).await?;
            tokio::spawn(c.with_upgrades());
            Ok(Conn::H1(s))
        }
    }

    pub async fn send(&mut self, req: Request<Body>) -> Result<Response<Incoming>, Err> {
        Ok(match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }

    /// A request for `path` of `app.test`: absolute URI over h2, Host header over HTTP/1.1.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        if self.is_h2() {
            Request::builder()
                .method(method)
                .uri(format!("https://app.test{path}"))
        } else {
            Request::builder()
                .method(method)
                .uri(path)
                .header("Host", "app.test")
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes), Err> {
        let req = self.request("GET", path).body(empty())?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A plain HTTP/1.1 GET of `path` with Host `host` on a new TCP connection: (status, body).
pub async fn http1_get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut s, c) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(c);
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A whole answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Reads `resp` whole (within [`WAIT`]).
pub async fn collect(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("the body arrives in time")
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Reads from `s` into `buf` until `buf` starts with a whole HTTP/1.1 head: its length, or
/// `None` when the stream ends (or fails) first.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Reads one HTTP/1.1 response head (and, with a content-length, its body) from a raw stream:
/// (status, head, body).
pub async fn read_raw_response<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String, String) {
    let mut buf = Vec::new();
    let head_end = tokio::time::timeout(Duration::from_secs(10), read_head(s, &mut buf))
        .await
        .unwrap();
    let Some(head_end) = head_end else {
        panic!(
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
    };
    let mut tmp = [0u8; 4096];
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&tmp[..n]);
    }
    (
        status,
        head,
        String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
    )
}
