//! The admin endpoints (port 15401): `/healthz` (the process runs), `/readyz` (every port
//! terminates TLS; otherwise 503 listing each port in passthrough with the file and reason;
//! also 503 while shutting down) and `/metrics` (Prometheus text).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use super::Shared;
use super::forward::{ProxyBody, text_response};
use super::ports::PortHealth;

/// `(ready, text)` for `/readyz`.
pub fn readiness(shared: &Shared) -> (bool, String) {
    let mut ready = !shared.shutdown.is_triggered();
    let mut text = String::new();
    if !ready {
        text.push_str("shutting down\n");
    }
    for entry in shared.ports.iter() {
        let port = entry.plan.port;
        match entry.health() {
            PortHealth::Ok => {
                let _ = writeln!(text, "port {port}: ok");
            }
            PortHealth::Stale(e) => {
                let _ = writeln!(
                    text,
                    "port {port}: ok (serving earlier certificates; {}: {})",
                    e.what, e.reason
                );
            }
            PortHealth::Passthrough(e) => {
                ready = false;
                let _ = writeln!(
                    text,
                    "port {port}: not ready, relayed untouched (TCP passthrough): {}: {}",
                    e.what, e.reason
                );
            }
        }
    }
    (ready, text)
}

fn respond(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/healthz" => text_response(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let (ready, text) = readiness(shared);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text_response(
                status,
                if ready {
                    format!("ready\n{text}")
                } else {
                    format!("not ready\n{text}")
                },
            )
        }
        "/metrics" => {
            let mut text = shared.metrics.render();
            shared.router.render_metrics(&mut text);
            let mut r = text_response(StatusCode::OK, text);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves the admin endpoints until shutdown completes (readiness turns 503 meanwhile).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(|req| {
                let r = respond(&shared, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}
