#![forbid(unsafe_code)]
//! `tls-steal-sidecar`: `init` (iptables capture) and `proxy` (TLS termination, filtering, stealing).

use tls_steal_sidecar::{init, proxy};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Proxy(proxy::ProxyArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Init(args) => init::main(args),
        Command::Proxy(args) => match run_proxy(args) {
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
        .init();
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(proxy::run(config))?;
    Ok(())
}
