//! The `controller` subcommand: the rollout controller, the session ticket signer and the
//! keeper of the webhook's serving certificate (each switchable), with their own plain-HTTP
//! admin server (`/healthz`, `/readyz`, `/metrics`), stopping (and releasing the Lease) on
//! SIGINT/SIGTERM.

use std::sync::Arc;

use futures::FutureExt;
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
    #[error("the session ticket signing key")]
    SigningKey(#[from] crate::tickets::KeysError),
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
    let stop = crate::signals::terminated().shared();
    let mut registry = Registry::default();
    let metrics = Arc::new(ControllerMetrics::default());
    metrics.register(&mut registry);
    let signer = if args.sessions.sign_sessions {
        let tickets = Arc::new(crate::tickets::TicketMetrics::default());
        tickets.register(&mut registry);
        let reporter = args.args.identity();
        Some(
            crate::tickets::signer::start(
                client.clone(),
                &args.args.lease_namespace,
                &args.sessions,
                tickets,
                reporter,
                stop.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let certificate = args.manage_certificate.then(|| {
        let opts = args.cert.options(&args.args.lease_namespace);
        tokio::spawn(crate::certs::keep(client.clone(), opts))
    });
    if !args.admin_listen.is_empty() {
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
    if args.rollouts {
        super::run(client, args.args, metrics, stop.clone()).await;
    } else {
        tracing::info!("rollouts off (--rollouts=false)");
        stop.clone().await;
    }
    if let Some(task) = signer {
        let _ = task.await;
    }
    if let Some(task) = certificate {
        task.abort();
    }
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
