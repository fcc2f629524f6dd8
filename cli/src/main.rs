#![forbid(unsafe_code)]
//! `kubectl-steal`: the developer's side of a steal session (see the library crate).

use std::process::ExitCode;

use kubectl_steal::Args;

fn main() -> ExitCode {
    let args = Args::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubectl-steal: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubectl_steal::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubectl-steal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
