//! The admin endpoints (port 15401):
//!
//! * `/healthz`: the process runs.
//! * `/readyz`: the proxy can carry traffic. 200 while serving, **including** ports in
//!   passthrough (their TLS material is unusable, so they are relayed untouched: traffic still
//!   flows, the pod must stay in its Services); the body names each such port with the file and
//!   reason. 503 once SIGTERM started the drain.
//! * `/metrics`: Prometheus text.
//! * `/app-health/<container>/<kind>`: a kubelet probe the webhook rewrote, run against the app
//!   ([`super::app_probe`]).
//!
//! The listener has the capture listeners' header read timeout and backs off on accept errors.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use tls_steal_http::openmetrics;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tls_steal_crds::contract::APP_HEALTH_PREFIX;
use tokio::net::TcpListener;
use tracing::debug;

use super::Shared;
use super::forward::{ProxyBody, text_response};
use super::ports::PortHealth;

/// `(ready, text)` for `/readyz`.
pub fn readiness(shared: &Shared) -> (bool, String) {
    let ready = !shared.shutdown.is_triggered();
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
                let _ = writeln!(
                    text,
                    "port {port}: relayed untouched (TCP passthrough, nothing is stolen): {}: {}",
                    e.what, e.reason
                );
            }
        }
    }
    (ready, text)
}

async fn respond(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path();
    if let Some(key) = path.strip_prefix(APP_HEALTH_PREFIX) {
        return shared.app_probes.run(key, req.headers()).await;
    }
    match path {
        "/healthz" => text_response(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let (ready, text) = readiness(shared);
            let (status, head) = if ready {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready")
            };
            text_response(status, format!("{head}\n{text}"))
        }
        "/metrics" => {
            let text = openmetrics::encode(&shared.registry);
            let mut r = text_response(StatusCode::OK, text);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(openmetrics::CONTENT_TYPE),
            );
            r
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves the admin endpoints until shutdown completes (readiness turns 503 meanwhile).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                super::accept_failed(&e).await;
                continue;
            }
        };
        let shared = shared.clone();
        let header_timeout = shared.cfg.header_read_timeout;
        tokio::spawn(async move {
            let svc = service_fn(|req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&shared, &req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                debug!(error = %e, "admin connection error");
            }
        });
    }
}
