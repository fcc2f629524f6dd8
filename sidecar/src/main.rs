#![forbid(unsafe_code)]
//! `tls-steal-sidecar`: `init` (iptables capture) and `proxy` (TLS termination, filtering, stealing).

use tls_steal_sidecar::{init, proxy, wait};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the proxy allocates and frees small objects (header maps, buffers, futures) on every
/// request; glibc's malloc cost ~10% of its instructions per request, mimalloc about half that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tls-steal-sidecar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install (or remove) the iptables capture; runs as the `tls-steal-init` init container.
    Init(init::InitArgs),
    /// Run the proxy; runs as the `tls-steal-proxy` container.
    Proxy(Box<proxy::ProxyArgs>),
    /// Wait until the proxy is ready (at most --timeout), then exit 0; the proxy container's
    /// `postStart` hook, so the app starts only once the proxy carries traffic.
    Wait(wait::WaitArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Init(args) => init::main(args),
        Command::Wait(args) => wait::main(args),
        Command::Proxy(args) => match run_proxy(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tls-steal-proxy: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `proxy`: logs to stderr (level from `RUST_LOG`, default info), then serve until SIGTERM.
fn run_proxy(args: proxy::ProxyArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: `kubectl logs` shows escape codes verbatim.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (workers, source) = tls_steal_sidecar::workers::choose(
        args.workers,
        std::env::var("TOKIO_WORKER_THREADS").ok().as_deref(),
        std::path::Path::new("/sys/fs/cgroup"),
    );
    let mut config = args.into_config()?;
    config.workers = workers;
    tracing::info!(workers, from = %source, "worker lanes");
    // This thread is lane 0; the proxy starts the others, each with a runtime like this one
    // (single-threaded: see `proxy::lanes`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(proxy::run(config))?;
    Ok(())
}
