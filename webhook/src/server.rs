//! The thin HTTPS wrapper: `POST /mutate` (pods), `POST /sessions` (`StealSession` objects),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use kube::core::admission::AdmissionResponse;
use prometheus_client::registry::Registry;

use crate::admission::Admission;
use crate::admission::sessions::SessionPolicy;
use crate::openmetrics;

/// Largest accepted AdmissionReview body. Bigger ones get 413.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<Admission>,
    /// Set once a serving certificate is loaded.
    pub tls_ready: Arc<AtomicBool>,
    /// Set on SIGTERM: `/readyz` fails at once (so the Service stops routing here) while
    /// reviews are still answered through the drain delay.
    pub draining: Arc<AtomicBool>,
    /// What `/metrics` shows.
    pub metrics: Arc<Registry>,
    /// The policy `/sessions` (admission of `StealSession` objects) applies.
    pub session_policy: Arc<SessionPolicy>,
}

/// The router, with `body_limit` bytes as the largest accepted review.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/sessions", post(sessions))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn mutate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                state.admission.metrics.oversized();
            }
            let review = AdmissionResponse::invalid(rejection.body_text()).into_review();
            return json(status, serde_json::to_vec(&review).unwrap_or_default());
        }
    };
    let answer = state.admission.review(&body).await;
    json(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        answer.body,
    )
}

async fn sessions(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let review = AdmissionResponse::invalid(rejection.body_text()).into_review();
            return json(
                rejection.status(),
                serde_json::to_vec(&review).unwrap_or_default(),
            );
        }
    };
    let answer = crate::admission::sessions::review(&body, &state.session_policy);
    json(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        answer.body,
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down").into_response();
    }
    let caches = state.admission.cache.is_ready();
    let tls = state.tls_ready.load(Ordering::SeqCst);
    if caches && tls {
        (StatusCode::OK, "ready").into_response()
    } else {
        let msg = format!("not ready: config caches synced={caches}, certificate loaded={tls}");
        (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = openmetrics::encode(&state.metrics);
    ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], text).into_response()
}

/// Serves `router` over TLS on an already bound listener until `handle` shuts it down (a
/// graceful shutdown stops accepting and lets in-flight reviews finish).
pub async fn serve_tls(
    listener: TcpListener,
    tls: RustlsConfig,
    router: Router,
    handle: axum_server::Handle<std::net::SocketAddr>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router.into_make_service())
        .await
}

/// The graceful stop: readiness off, answer through `delay`, then stop accepting and give
/// in-flight reviews `timeout`.
pub async fn drain(
    draining: &AtomicBool,
    handle: &axum_server::Handle<std::net::SocketAddr>,
    delay: Duration,
    timeout: Duration,
) {
    draining.store(true, Ordering::SeqCst);
    tracing::info!(
        delay_s = delay.as_secs(),
        "SIGTERM: /readyz fails; still answering reviews while the Service stops routing here"
    );
    tokio::time::sleep(delay).await;
    tracing::info!(
        in_flight = handle.connection_count(),
        "drain delay over: no new connections; finishing in-flight reviews"
    );
    handle.graceful_shutdown(Some(timeout));
}
