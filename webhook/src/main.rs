#![forbid(unsafe_code)]
//! `tls-steal-webhook`: admission (`serve`, the default) and offline injection (`inject`).

use clap::{Parser, Subcommand};
use tls_steal_webhook::controller::{self, ControllerCommandArgs};
use tls_steal_webhook::{InjectArgs, ServeArgs};

#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run the admission webhook (the default).
    Serve(ServeArgs),
    /// Print a pod or workload as the webhook would mutate it, without a cluster.
    Inject(InjectArgs),
    /// Run only the rollout controller (leader-elected; `serve --controller` runs it too).
    Controller(ControllerCommandArgs),
}

/// mimalloc, as in the sidecar: a review allocates and frees many small JSON values; glibc's
/// malloc was about a quarter of the review's instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: `kubectl logs` shows escape codes verbatim.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inject(args)) => {
            print!("{}", tls_steal_webhook::run_inject(&args)?);
            Ok(())
        }
        Some(Command::Serve(args)) => serve_blocking(args),
        Some(Command::Controller(args)) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(controller::run_command(args))
            .map_err(Into::into),
        None => serve_blocking(cli.serve),
    }
}

fn serve_blocking(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(tls_steal_webhook::run_serve(args))?;
    Ok(())
}
