//! The steal command: flags and file resolved into settings, a session kept on every ready pod
//! of the target (or on `--connect`), until Ctrl-C, SIGTERM or a fatal error; then a clean exit
//! (GOAWAY on every session) and the summary. `status` and `--explain` branch off first.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};
use tls_steal_crds::session::Mode;
use tokio::sync::mpsc;

use crate::args::{Args, Command, DeliveryProtocol};
use crate::deliver::Deliverer;
use crate::output::{Output, describe_start};
use crate::runner::{Endpoint, keep_session};
use crate::session::Context;
use crate::steal_object::{self, Ended, SessionObject};
use crate::target::Target;
use crate::{mirrord_config, pods, settings, target};

/// Runs `kubectl steal` with `args` to its end.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Read-only commands: nothing is registered.
    if let Some(Command::Status(status)) = &args.command {
        return Ok(crate::status::run(status).await?);
    }
    if args.explain {
        return Ok(crate::explain::run(&args).await?);
    }
    let file = match &args.config_file {
        Some(path) => {
            Some(mirrord_config::load(path).with_context(|| format!("in {}", path.display()))?)
        }
        None => None,
    };
    // TARGET and --namespace win over the file's `target`.
    let file_target = file.as_ref().map(|f| f.target.clone()).unwrap_or_default();
    let target_arg = args.target.clone().or(file_target.path);
    let namespace_arg = args.namespace.clone().or(file_target.namespace);
    let settings = settings::resolve(&args, file)?;
    for w in &settings.warnings {
        eprintln!("kubectl-steal: warning: {w}");
    }
    for n in &settings.notes {
        eprintln!("kubectl-steal: {n}");
    }
    let deliverer = Deliverer::new(settings.delivery.clone())
        .context("cannot set up delivery to the local app")?;
    for skipped in deliverer.skipped_roots() {
        eprintln!("kubectl-steal: warning: trust root skipped: {skipped}");
    }
    let output = Arc::new(Output::default());
    let reg = settings.registration.clone();
    let to = match &settings.delivery.to {
        Some(a) => a.to_string(),
        None if settings.delivery.port_mapping.is_empty() => "127.0.0.1:<same port>".into(),
        None => "127.0.0.1:<port_mapping, else same port>".into(),
    };
    let how = match settings.delivery.protocol {
        DeliveryProtocol::Tls => "tls",
        DeliveryProtocol::Tcp => "tcp",
    };
    let ctx = Arc::new(Context {
        registration: reg.clone(),
        ticket: tokio::sync::watch::channel(args.ticket.clone()).0,
        pods: Default::default(),
        deliverer: Arc::new(deliverer),
        output: output.clone(),
        shutdown: Default::default(),
    });
    let sessions = ctx.clone();
    let (fatal_tx, mut fatal_rx) = mpsc::channel(4);
    // The run's StealSession (in a cluster): its deletion ends the run.
    let (ended_tx, mut ended_rx) = mpsc::channel::<Ended>(1);
    let mut object: Option<Arc<SessionObject>> = None;
    let mut heartbeat = None;

    let (what, work) = match (&args.connect, &target_arg) {
        (Some(addr), target) => {
            if let Some(t) = target {
                eprintln!("kubectl-steal: warning: with --connect, TARGET ({t}) is not used");
            }
            let endpoint = Endpoint::Direct(addr.clone());
            (
                addr.clone(),
                tokio::spawn(async move {
                    keep_session(endpoint, ctx, fatal_tx).await;
                    Ok(())
                }),
            )
        }
        (None, None) => {
            bail!(
                "which workload? Give TARGET (e.g. deploy/web), `target` in the mirrord config, or --connect HOST:PORT"
            )
        }
        (None, Some(t)) => {
            let target: Target = t.parse()?;
            let options = KubeConfigOptions {
                context: args.context.clone(),
                ..KubeConfigOptions::default()
            };
            let config = Config::from_kubeconfig(&options)
                .await
                .context(
                    "cannot load the kubeconfig (set KUBECONFIG or --context; --connect HOST:PORT works without Kubernetes)",
                )?;
            let namespace = namespace_arg
                .clone()
                .unwrap_or_else(|| config.default_namespace.clone());
            let client = Client::try_from(config).context("cannot create the Kubernetes client")?;
            // The StealSession first: creating it is the permission to steal, so someone without
            // it learns that (and which role to ask for) before anything else.
            if let Some(o) = steal_object::create(client.clone(), &namespace, t, &reg, how).await? {
                let o = Arc::new(o);
                output.info(&format!(
                    "StealSession {} created{}",
                    o.id(),
                    if o.tickets_required {
                        "; waiting for its ticket"
                    } else {
                        ""
                    }
                ));
                object = Some(o.clone());
                if let Err(e) = o.follow(ctx.clone(), ended_tx.clone()).await {
                    o.delete().await;
                    return Err(e.into());
                }
                heartbeat = Some(tokio::spawn(o.clone().heartbeat(ctx.clone())));
            } else {
                output.info(
                    "this cluster has no StealSession resource (tls-steal predates it): the session is not recorded",
                );
            }
            let selector = match target::resolve(&client, &namespace, &target).await {
                Ok(s) => s,
                Err(e) => {
                    if let Some(o) = &object {
                        o.delete().await;
                    }
                    return Err(e.into());
                }
            };
            let api: Api<Pod> = Api::namespaced(client, &namespace);
            let what = format!("{target} in namespace {namespace}");
            (
                what,
                tokio::spawn(pods::follow(
                    api, namespace, target, selector, ctx, fatal_tx,
                )),
            )
        }
    };
    let verb = match reg.mode {
        Mode::Steal => "stealing",
        Mode::Mirror => "mirroring",
    };
    let which = describe_start(&reg);
    output.info(&format!(
        "{verb} from {what}: {which} → {how}://{to} (Ctrl-C to stop)"
    ));

    let mut work = work;
    // `biased`: a session task sends its fatal error and then ends, so both can be ready at
    // once; the fatal error (e.g. "the sidecar refused the session") is the one to report.
    let (result, finished): (anyhow::Result<()>, bool) = tokio::select! {
        biased;
        _ = shutdown_signal() => (Ok(()), false),
        Some(fatal) = fatal_rx.recv() => (Err(fatal.into()), false),
        Some(Ended::Deleted) = ended_rx.recv() => (Err(anyhow::anyhow!(
            "StealSession {} was deleted: the session ended",
            object.as_ref().map(|o| o.id()).unwrap_or_default()
        )), false),
        ended = &mut work => (match ended {
            _ if let Ok(fatal) = fatal_rx.try_recv() => Err(fatal.into()),
            Ok(Ok(())) => Err(anyhow::anyhow!("following the pods ended")),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow::anyhow!("internal error: {e}")),
        }, true),
    };
    if !finished {
        // A clean exit: every session sends GOAWAY (the sidecar stops routing to it at once,
        // even when the connection is a port-forward that takes a while to close), answers the
        // stolen requests it already has, and closes; bounded, then whatever is left is dropped.
        sessions.shutdown.begin();
        if tokio::time::timeout(SHUTDOWN_BOUND, sessions.shutdown.drained())
            .await
            .is_err()
        {
            output.info("sessions did not close in time; dropping their connections");
        }
        work.abort();
        let _ = work.await;
    }
    if let Some(h) = heartbeat {
        h.abort();
    }
    if let Some(o) = &object {
        o.delete().await;
        output.info(&format!("StealSession {} deleted", o.id()));
    }
    if result.is_ok() || output.served() > 0 {
        output.info("sessions closed (deregistered)");
        println!("{}", output.summary());
    }
    result
}

/// How long a clean exit waits for the sessions to finish their requests and close.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
