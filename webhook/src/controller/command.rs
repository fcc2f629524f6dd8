//! The `controller` subcommand: the controller alone, with its own plain-HTTP admin server
//! (`/healthz`, `/readyz`, `/metrics`), stopping (and releasing its Lease) on SIGINT/SIGTERM.

use std::sync::Arc;

use kube::Client;
use prometheus_client::registry::Registry;

use super::args::ControllerCommandArgs;
use super::metrics::ControllerMetrics;
use crate::openmetrics;

/// Why the `controller` command could not start.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("connecting to the Kubernetes API")]
    Kube(#[from] kube::Error),
    #[error("listening on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the `controller` command until SIGINT/SIGTERM.
pub async fn run_command(args: ControllerCommandArgs) -> Result<(), CommandError> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(ControllerMetrics::default());
    if !args.admin_listen.is_empty() {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let listener = tokio::net::TcpListener::bind(&args.admin_listen)
            .await
            .map_err(|source| CommandError::Listen {
                addr: args.admin_listen.clone(),
                source,
            })?;
        tracing::info!(addr = %args.admin_listen, "serving /healthz and /metrics");
        let router = admin_router(Arc::new(registry));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "admin server");
            }
        });
    }
    super::run(client, args.args, metrics, crate::signals::terminated()).await;
    Ok(())
}

fn admin_router(registry: Arc<Registry>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)],
                    openmetrics::encode(&registry),
                )
            }),
        )
}
