//! `tls-steal-webhook serve`: wires the config caches, the certificate and the HTTPS server
//! together against a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use prometheus_client::registry::Registry;

use crate::admission::{Admission, Cluster};
use crate::certs;
use crate::configs::ConfigCache;
use crate::controller::ControllerMetrics;
use crate::metrics::Metrics;
use crate::server::{self, AppState, DEFAULT_BODY_LIMIT};
use crate::settings::{
    LabelArg, SessionAuthorization, Settings, SidecarMode, SidecarModeArg, resources,
};

/// Flags shared by `serve` and `inject`: what gets injected.
#[derive(clap::Args, Clone, Debug)]
pub struct SidecarArgs {
    /// Image of tls-steal-init and tls-steal-proxy.
    #[arg(
        long,
        env = "TLS_STEAL_SIDECAR_IMAGE",
        default_value = "ghcr.io/tls-steal/tls-steal-sidecar:latest"
    )]
    pub sidecar_image: String,
    /// imagePullPolicy of the injected containers (unset: Kubernetes' default).
    #[arg(long, env = "TLS_STEAL_SIDECAR_IMAGE_PULL_POLICY")]
    pub image_pull_policy: Option<String>,
    /// `native` (init container with restartPolicy Always), `classic` (first regular container)
    /// or `auto` (native on Kubernetes 1.29+; `inject` without a cluster assumes native).
    #[arg(
        long,
        value_enum,
        env = "TLS_STEAL_SIDECAR_MODE",
        default_value = "auto"
    )]
    pub sidecar_mode: SidecarModeArg,
    #[arg(long, default_value = "10m")]
    pub sidecar_cpu_request: String,
    #[arg(long, default_value = "32Mi")]
    pub sidecar_memory_request: String,
    #[arg(long)]
    pub sidecar_cpu_limit: Option<String>,
    #[arg(long, default_value = "256Mi")]
    pub sidecar_memory_limit: Option<String>,
    /// Label (key=value) of the webhook's own pods, which are never injected.
    #[arg(long, default_value = "app.kubernetes.io/name=tls-steal-webhook")]
    pub self_label: LabelArg,
    /// Most seconds the injected proxy keeps accepting after SIGTERM while the app still
    /// listens (its `--drain-delay`; it stops when the app does).
    #[arg(long, env = "TLS_STEAL_SIDECAR_DRAIN_DELAY", default_value_t = 3600)]
    pub sidecar_drain_delay: u32,
    /// Client connections per captured port above which the proxy refuses new ones (its
    /// `--max-connections`).
    #[arg(
        long,
        env = "TLS_STEAL_SIDECAR_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub sidecar_max_connections: u32,
    /// The proxy's worker threads: `auto` (its CPU limit, else 2) or a number; a pod's
    /// `tls-steal.io/proxy-workers` annotation overrides it.
    #[arg(long, env = "TLS_STEAL_SIDECAR_WORKERS", default_value = "auto")]
    pub sidecar_workers: tls_steal_crds::workers::Workers,
    /// Whether the injected proxy requires a signed ticket to register a session (`required`)
    /// or lets whoever reaches its session API steal (`disabled`, the behaviour before tickets).
    #[arg(long, env = "TLS_STEAL_SESSION_AUTHORIZATION", value_enum, default_value_t = SessionAuthorizationArg::Disabled)]
    pub session_authorization: SessionAuthorizationArg,
    /// Public keys (base64url Ed25519, comma-separated, at most two so a rotation overlaps)
    /// whose tickets the injected proxies accept.
    #[arg(long, env = "TLS_STEAL_SESSION_KEYS", default_value = "")]
    pub session_keys: String,
}

/// `--session-authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionAuthorizationArg {
    Required,
    Disabled,
}

impl SidecarArgs {
    /// The settings, with `auto` resolved to `detected`.
    pub fn settings(&self, detected: SidecarMode) -> Settings {
        Settings {
            image: self.sidecar_image.clone(),
            image_pull_policy: self.image_pull_policy.clone().filter(|p| !p.is_empty()),
            resources: Some(resources(
                &self.sidecar_cpu_request,
                &self.sidecar_memory_request,
                self.sidecar_cpu_limit.as_deref(),
                self.sidecar_memory_limit.as_deref(),
            )),
            sidecar_mode: match self.sidecar_mode {
                SidecarModeArg::Auto => detected,
                SidecarModeArg::Native => SidecarMode::Native,
                SidecarModeArg::Classic => SidecarMode::Classic,
            },
            self_label: Some((self.self_label.0.clone(), self.self_label.1.clone())),
            drain_delay_seconds: self.sidecar_drain_delay,
            max_connections: self.sidecar_max_connections.max(1),
            workers: self.sidecar_workers,
            session_authorization: match self.session_authorization {
                SessionAuthorizationArg::Disabled => SessionAuthorization::Disabled,
                SessionAuthorizationArg::Required => SessionAuthorization::Required {
                    keys: self.session_keys.clone(),
                },
            },
            own_namespace: None,
        }
    }

    /// Checks the flags a pod would otherwise carry to its proxy: a bad key stops the webhook
    /// at start, never an injected pod.
    pub fn check(&self) -> Result<(), tls_steal_crds::ticket::KeyError> {
        let keys = tls_steal_crds::ticket::VerifyingKey::parse_list(&self.session_keys)?;
        if keys.len() > 2 {
            tracing::warn!(
                keys = keys.len(),
                "more than two session keys: a rotation needs only the current and the previous"
            );
        }
        Ok(())
    }
}

/// `serve` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address of the HTTPS server.
    #[arg(long, env = "TLS_STEAL_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// Serve this certificate (PEM chain) instead of generating one; reloaded when it changes.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "10")]
    pub tls_poll_seconds: u64,
    /// The webhook's namespace (Secret and Service).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tls-steal")]
    pub namespace: String,
    /// Without certificate files: the certificate it generates (and keeps) itself.
    #[command(flatten)]
    pub cert: certs::CertArgs,
    /// Largest accepted AdmissionReview, in bytes (bigger: 413).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// `--controller`: also run the rollout controller (leader-elected) in this process.
    #[command(flatten)]
    pub controller: crate::controller::ServeControllerArgs,
    #[command(flatten)]
    pub sessions: crate::tickets::SessionArgs,
    /// Seconds to keep answering reviews after SIGTERM while `/readyz` fails, so the Service
    /// stops sending reviews here before the server stops accepting.
    #[arg(long, env = "TLS_STEAL_WEBHOOK_DRAIN_DELAY", default_value_t = 5)]
    pub drain_delay: u64,
    /// Seconds in-flight reviews get to finish once the server stops accepting.
    #[arg(long, default_value_t = 10)]
    pub shutdown_timeout: u64,
}

/// Why `serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("connecting to the Kubernetes API")]
    Kube(#[from] kube::Error),
    #[error("the serving certificate")]
    Cert(#[from] certs::CertError),
    #[error("--session-keys (TLS_STEAL_SESSION_KEYS)")]
    SessionKeys(#[from] tls_steal_crds::ticket::KeyError),
    #[error("serving on {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The public keys the controller published (`--session-public-keys`), read again every 2 s
/// until they exist (the controller makes them on its first start).
async fn wait_for_public_keys(
    client: &Client,
    namespace: &str,
    args: &crate::tickets::SessionArgs,
) -> Vec<String> {
    let name = &args.session_public_keys;
    let mut attempt = 0u32;
    loop {
        match crate::tickets::published(client.clone(), namespace, name).await {
            Ok(Some(keys)) => return keys,
            Ok(None) if attempt.is_multiple_of(15) => tracing::info!(
                configmap = %format!("{namespace}/{name}"),
                "waiting for the controller to publish the session public keys"
            ),
            Err(e) if attempt.is_multiple_of(15) => tracing::warn!(
                error = %crate::controller::error_chain(&e),
                "cannot read the session public keys yet"
            ),
            _ => {}
        }
        attempt = attempt.wrapping_add(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Runs the webhook until SIGTERM/SIGINT, then shuts down gracefully (see [`drain`]).
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    run_until(args, crate::signals::terminated()).await
}

/// Runs the webhook until `stop` resolves, then: `/readyz` fails at once and the controller
/// (if any) stops and releases its Lease; reviews are answered for `--drain-delay`; then the
/// server stops accepting and in-flight reviews get `--shutdown-timeout` to finish.
pub async fn run_until(
    args: ServeArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    args.sidecar.check()?;
    tokio::pin!(stop);
    let client = Client::try_default().await?;
    let detected = match client.apiserver_version().await {
        Ok(v) => {
            let mode = SidecarMode::for_version(&v.major, &v.minor);
            tracing::info!(version = %v.git_version, mode = mode.as_str(), "API server version");
            mode
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the API server version; assuming classic sidecars");
            SidecarMode::Classic
        }
    };
    let mut settings = args.sidecar.settings(detected);
    settings.own_namespace = Some(args.namespace.clone());
    tracing::info!(mode = settings.sidecar_mode.as_str(), image = %settings.image, "injection settings");

    let cache = ConfigCache::start(client.clone());
    // One registry for this process's `/metrics`: admission's, and the controller's when it
    // runs here.
    let mut registry = Registry::default();
    // Session authorization: the signer's public keys, published by the controller (this
    // process never sees the private key), and any extra `--session-keys`, injected into every
    // proxy. Waits for them: a proxy told to require tickets without keys would refuse all.
    if let SessionAuthorization::Required { keys } = &settings.session_authorization {
        // The stop signal meanwhile ends the process, as it would a running webhook.
        let waiting = wait_for_public_keys(&client, &args.namespace, &args.sessions);
        let mut public = tokio::select! {
            keys = waiting => keys,
            _ = &mut stop => {
                tracing::info!("stopped while waiting for the session public keys");
                return Ok(());
            }
        };
        public.extend(crate::tickets::split_keys(keys));
        tracing::info!(trusted = public.len(), "session tickets required");
        settings.session_authorization = SessionAuthorization::Required {
            keys: public.join(","),
        };
    }
    let (stop_controller, controller_stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = args.controller.enabled.then(|| {
        let metrics = Arc::new(ControllerMetrics::default());
        metrics.register(&mut registry);
        crate::controller::spawn(
            client.clone(),
            args.controller.args.clone(),
            metrics,
            async {
                let _ = controller_stopped.await;
            },
        )
    });
    let reporter = Reporter {
        controller: "tls-steal-webhook".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let session_policy = Arc::new(args.sessions.policy(matches!(
        settings.session_authorization,
        SessionAuthorization::Required { .. }
    )));
    let admission = Arc::new(Admission::new(
        cache,
        settings,
        Arc::new(Metrics::default()),
        Some(Cluster {
            client: client.clone(),
            recorder: Recorder::new(client.clone(), reporter),
        }),
    ));
    admission.register_metrics(&mut registry);
    let tls_ready = Arc::new(AtomicBool::new(false));
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            certs::start_files(
                cert.clone(),
                key.clone(),
                Duration::from_secs(args.tls_poll_seconds.max(1)),
                tls_ready.clone(),
            )
            .await?
        }
        _ => {
            let opts = args.cert.options(&args.namespace);
            certs::start_generated(client, opts, tls_ready.clone()).await?
        }
    };
    let listener = std::net::TcpListener::bind(args.listen).map_err(|source| ServeError::Io {
        addr: args.listen,
        source,
    })?;
    tracing::info!(addr = %args.listen, "serving /mutate");
    let draining = Arc::new(AtomicBool::new(false));
    let router = server::router(
        AppState {
            admission,
            tls_ready,
            draining: draining.clone(),
            metrics: Arc::new(registry),
            session_policy,
        },
        args.body_limit,
    );
    let handle = axum_server::Handle::new();
    let server = server::serve_tls(listener, tls, router, handle.clone());
    let drain = async {
        stop.await;
        server::drain(
            &draining,
            &handle,
            Duration::from_secs(args.drain_delay),
            Duration::from_secs(args.shutdown_timeout),
        )
        .await;
        let _ = stop_controller.send(());
        if let Some(task) = controller {
            let _ = task.await;
            tracing::info!("rollout controller stopped (Lease released if it led)");
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = server => r.map_err(|source| ServeError::Io { addr: args.listen, source })?,
        _ = drain => {}
    }
    tracing::info!("webhook stopped");
    Ok(())
}
