//! The sidecar's read-only endpoints (`GET /v1/status`, `POST /v1/explain`) over one
//! port-forward stream, HTTP/1.1 keep-alive: one connection per pod for every question.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::de::DeserializeOwned;
use tls_steal_crds::session::{
    ApiError, EXPLAIN_PATH, ExplainAnswer, ExplainRequest, STATUS_PATH, StatusReport,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::portforward::{self, Forward, PortforwardError};

/// Largest answer read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Each question gives up after this long.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A question to the sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum SidecarApiError {
    #[error(transparent)]
    Portforward(#[from] PortforwardError),
    #[error("talking to the session API failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the session API did not answer {path} within {TIMEOUT:?}")]
    Timeout { path: &'static str },
    #[error("reading the answer to {path} failed: {reason}")]
    Body { path: &'static str, reason: String },
    #[error(
        "this sidecar has no {path} (it predates it: roll the workload out to get a newer one)"
    )]
    Missing { path: &'static str },
    #[error("the sidecar refused {path}: {}{}", .error.field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default(), .error.error)]
    Refused { path: &'static str, error: ApiError },
    #[error("the session API answered {path} with {status}: {body}")]
    Unexpected {
        path: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("the answer to {path} is not what this kubectl-steal expects: {source}")]
    Json {
        path: &'static str,
        source: serde_json::Error,
    },
}

/// An open connection to one sidecar's session API.
pub struct SidecarApi {
    send: SendRequest<Full<Bytes>>,
    _forward: Option<Forward>,
}

impl SidecarApi {
    /// Through a port-forward to `pod`.
    pub async fn portforward(
        api: &Api<Pod>,
        namespace: &str,
        pod: &str,
    ) -> Result<Self, SidecarApiError> {
        let (stream, forward) = portforward::open(api, namespace, pod).await?;
        Self::over(stream, Some(forward)).await
    }

    async fn over<S>(io: S, forward: Option<Forward>) -> Result<Self, SidecarApiError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "session API connection ended");
            }
        });
        Ok(SidecarApi {
            send,
            _forward: forward,
        })
    }

    /// `GET /v1/status`: the ports as the proxy serves them and the active sessions.
    pub async fn status(&mut self) -> Result<StatusReport, SidecarApiError> {
        self.ask(Method::GET, STATUS_PATH, Bytes::new()).await
    }

    /// `POST /v1/explain`: where `sample` would go now.
    pub async fn explain(
        &mut self,
        sample: &ExplainRequest,
    ) -> Result<ExplainAnswer, SidecarApiError> {
        let body = serde_json::to_vec(sample).unwrap_or_default();
        self.ask(Method::POST, EXPLAIN_PATH, body.into()).await
    }

    async fn ask<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &'static str,
        body: Bytes,
    ) -> Result<T, SidecarApiError> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "127.0.0.1")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("a static request is valid");
        let exchange = async {
            self.send.ready().await?;
            let resp = self.send.send_request(req).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| SidecarApiError::Body {
                    path,
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, SidecarApiError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| SidecarApiError::Timeout { path })??;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|source| SidecarApiError::Json { path, source }),
            StatusCode::NOT_FOUND => Err(SidecarApiError::Missing { path }),
            StatusCode::BAD_REQUEST => match serde_json::from_slice::<ApiError>(&body) {
                Ok(error) => Err(SidecarApiError::Refused { path, error }),
                Err(_) => Err(unexpected(path, status, &body)),
            },
            _ => Err(unexpected(path, status, &body)),
        }
    }
}

fn unexpected(path: &'static str, status: StatusCode, body: &[u8]) -> SidecarApiError {
    SidecarApiError::Unexpected {
        path,
        status,
        body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    }
}
