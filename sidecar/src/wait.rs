//! `tls-steal-sidecar wait`: blocks until the proxy answers `GET /readyz` with 200, at most
//! `--timeout`, then exits 0 either way.
//!
//! The webhook runs it as the `tls-steal-proxy` container's `postStart` hook in classic mode:
//! the kubelet starts the next containers (the app) only once the hook returns, so the app
//! never starts before the proxy carries traffic (as Istio's `holdApplicationUntilProxyStarts`).
//! It fails open: a proxy that never becomes ready must not keep the app from starting, so a
//! timeout is reported and still exits 0. It writes nothing but stderr (read-only root
//! filesystem, any uid).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tls_steal_crds::contract::ADMIN_PORT;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Arguments of `tls-steal-sidecar wait`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// The proxy's admin address (`/readyz` is asked there).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT)))]
    pub admin: SocketAddr,
    /// Seconds to wait at most; then exit 0 anyway (never keep the app from starting).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Milliseconds between two attempts.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
}

/// The proxy did not become ready in time.
#[derive(Debug, thiserror::Error)]
#[error("the proxy at {admin} was not ready within {secs}s (last attempt: {last})")]
struct NotReady {
    admin: SocketAddr,
    secs: u64,
    last: String,
}

/// Entry point for `main`: always exits 0.
pub fn main(args: WaitArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(wait_ready(
            args.admin,
            Duration::from_secs(args.timeout),
            Duration::from_millis(args.interval_ms.max(10)),
        )),
        Err(e) => Err(NotReady {
            admin: args.admin,
            secs: 0,
            last: format!("cannot start: {e}"),
        }),
    };
    match result {
        Ok(after) => eprintln!(
            "tls-steal-wait: the proxy is ready (after {:.1}s)",
            after.as_secs_f64()
        ),
        Err(e) => eprintln!("tls-steal-wait: {e}; not waiting any longer (failing open)"),
    }
    ExitCode::SUCCESS
}

/// Polls `http://<admin>/readyz` until it answers 200 (returns how long that took) or
/// `timeout` passes.
async fn wait_ready(
    admin: SocketAddr,
    timeout: Duration,
    interval: Duration,
) -> Result<Duration, NotReady> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left.min(Duration::from_secs(2)), readyz(admin)).await;
        let last = match attempt {
            Ok(Ok(StatusCode::OK)) => return Ok(start.elapsed()),
            Ok(Ok(status)) => format!("/readyz answered {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "/readyz did not answer in time".into(),
        };
        let now = Instant::now();
        if now + interval >= deadline {
            return Err(NotReady {
                admin,
                secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Why one attempt got no status.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[source] hyper::Error),
}

async fn readyz(admin: SocketAddr) -> Result<StatusCode, AttemptError> {
    let tcp = TcpStream::connect(admin)
        .await
        .map_err(AttemptError::Connect)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(AttemptError::Http)?;
    let conn = tokio::spawn(conn);
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = http::Uri::from_static("/readyz");
    if let Ok(host) = http::HeaderValue::from_str(&admin.to_string()) {
        req.headers_mut().insert(http::header::HOST, host);
    }
    let status = send.send_request(req).await.map(|r| r.status());
    conn.abort();
    status.map_err(AttemptError::Http)
}
