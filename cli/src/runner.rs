//! Keeps one session alive per endpoint (a pod through port-forward, or `--connect HOST:PORT`):
//! open, register, serve, and on a lost connection register again, with backoff. Errors that
//! retrying cannot fix (the sidecar refused the registration, RBAC) are reported as fatal.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tls_steal_crds::session::Mode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::output::describe_ports;
use crate::portforward::{self, Forward, PortforwardError};
use crate::session::{self, Context, RegisterError};

/// Something to talk to a session API through.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where a session API is.
#[derive(Clone)]
pub enum Endpoint {
    /// `--connect HOST:PORT`.
    Direct(String),
    /// A pod, through port-forward.
    Pod {
        api: Box<Api<Pod>>,
        namespace: String,
        name: String,
    },
}

impl Endpoint {
    /// How the endpoint is shown.
    pub fn label(&self) -> String {
        match self {
            Endpoint::Direct(addr) => addr.clone(),
            Endpoint::Pod { name, .. } => format!("pod/{name}"),
        }
    }

    async fn open(&self) -> Result<(Pin<Box<dyn Io>>, Option<Forward>), OpenError> {
        match self {
            Endpoint::Direct(addr) => {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| OpenError::Connect(addr.clone(), e))?;
                tcp.set_nodelay(true).ok();
                Ok((Box::pin(tcp), None))
            }
            Endpoint::Pod {
                api,
                namespace,
                name,
            } => {
                let (stream, forward) = portforward::open(api, namespace, name).await?;
                Ok((Box::pin(stream), Some(forward)))
            }
        }
    }
}

/// Why a session could not be (re)established.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect to the session API at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error(transparent)]
    Portforward(#[from] PortforwardError),
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl OpenError {
    pub fn is_fatal(&self) -> bool {
        match self {
            OpenError::Connect(..) => false,
            OpenError::Portforward(e) => e.is_fatal(),
            OpenError::Register(e) => e.is_fatal(),
        }
    }
}

/// A failure that ends the run, with the endpoint it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {error}")]
pub struct Fatal {
    pub endpoint: String,
    pub error: OpenError,
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(5)).min(Duration::from_secs(5))
}

/// Runs the session of `endpoint` until the task is dropped, a fatal error, or the end of a
/// clean shutdown ([`session::Shutdown`]). A `--connect`
/// endpoint that cannot be reached at all on the first try is fatal too (nothing to wait for).
pub async fn keep_session(endpoint: Endpoint, ctx: Arc<Context>, fatal: mpsc::Sender<Fatal>) {
    let label = endpoint.label();
    let mut attempt = 0;
    let mut registered_once = false;
    loop {
        match establish(&endpoint, &ctx).await {
            Ok((registered, forward)) => {
                registered_once = true;
                attempt = 0;
                let reg = &ctx.registration;
                ctx.output.info(&format!(
                    "{label}: session {} registered ({}, {})",
                    registered.id,
                    match reg.mode {
                        Mode::Steal => "steal",
                        Mode::Mirror => "mirror",
                    },
                    describe_ports(reg, &registered.ports),
                ));
                for p in &registered.passthrough {
                    ctx.output.info(&format!(
                        "{label}: port {} is relayed untouched: {}",
                        p.port,
                        p.reason
                            .as_deref()
                            .unwrap_or("its TLS material could not be loaded"),
                    ));
                }
                ctx.pods.send_modify(|p| {
                    p.insert(label.clone());
                });
                let ended = session::serve(registered.io, ctx.clone(), label.clone()).await;
                ctx.pods.send_modify(|p| {
                    p.remove(&label);
                });
                drop(forward);
                if ctx.shutdown.is_started() {
                    return;
                }
                let why = ended.err().map_or("closed".to_string(), |e| e.to_string());
                ctx.output.info(&format!(
                    "{label}: session connection lost ({why}); registering again"
                ));
            }
            Err(error)
                if error.is_fatal()
                    || (!registered_once && matches!(endpoint, Endpoint::Direct(_))) =>
            {
                let _ = fatal
                    .send(Fatal {
                        endpoint: label.clone(),
                        error,
                    })
                    .await;
                return;
            }
            Err(error) => {
                let wait = backoff(attempt);
                ctx.output.info(&format!(
                    "{label}: {error}; retrying in {}ms",
                    wait.as_millis()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown.started() => return,
                }
                attempt += 1;
                continue;
            }
        }
        tokio::time::sleep(backoff(0)).await;
    }
}

async fn establish(
    endpoint: &Endpoint,
    ctx: &Context,
) -> Result<(session::Registered, Option<Forward>), OpenError> {
    let (io, forward) = endpoint.open().await?;
    let ticket = ctx.ticket.borrow().clone();
    let registered = session::register(io, &ctx.registration, ticket.as_deref()).await?;
    Ok((registered, forward))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(30), Duration::from_secs(5));
    }
}
