//! `tls-steal-sidecar init`: the `tls-steal-init` init container.
//!
//! It installs, in the pod's network namespace, `nat PREROUTING → TLS_STEAL_INBOUND → REDIRECT
//! --to-ports <proxy port>` for the listed TCP ports only, for IPv4 and (when the pod has IPv6)
//! IPv6. `--cleanup` removes it again, `--dry-run` prints the `iptables-restore` input instead of
//! applying it.
//!
//! # Decisions
//!
//! * **Atomic and idempotent.** Each family is changed by one `iptables-restore --noflush`
//!   transaction that declares and flushes `TLS_STEAL_INBOUND`, refills it with one `REDIRECT`
//!   rule per port (in the order given; no `multiport`, so there is no 15-port limit), and appends
//!   `-A PREROUTING -j TLS_STEAL_INBOUND` only if that exact rule is not there yet. Running twice
//!   therefore leaves identical tables; an existing jump keeps its position.
//! * **Appended, never inserted.** The jump goes after whatever `PREROUTING` already holds, so a
//!   mesh's own capture (installed by an earlier init container) runs first.
//! * **Only `PREROUTING`.** Nothing is added to `OUTPUT`, so connections opened inside the pod —
//!   the proxy's own connections to the app, to the pod IP or to 127.0.0.1 — are never captured.
//!   (Loopback packets do pass `PREROUTING`, but their NAT decision was already taken in
//!   `OUTPUT`.)
//! * **Backend detection** (`--backend auto`): legacy if `iptables-legacy-save` /
//!   `ip6tables-legacy-save` show any rule or non-built-in chain in any existing table (reading all
//!   tables without `-t` never creates one); otherwise nft if `iptables-nft -t nat -S` succeeds;
//!   otherwise plain `iptables`; as a last resort legacy if only the legacy tools exist. IPv6 uses
//!   the same backend as IPv4.
//! * **IPv6** (`--ipv6 auto`): on when `/proc/net/if_inet6` lists a global-scope address on an
//!   interface other than `lo` (unique-local `fd00::/8` counts; link-local does not). IPv4 and a
//!   forced `--ipv6 on` fail hard; under `auto` an IPv6 failure is a logged warning, because a
//!   failing init container would keep the app from starting at all (IPv6 clients then reach the
//!   app directly, unfiltered but unbroken).
//! * **Tools are found through `PATH`** and run by absolute path with `LC_ALL=C`; a missing tool
//!   is named together with the `PATH` searched.
//! * **Capabilities.** The first privileged call is `iptables -w -t nat -S`; its "Permission denied
//!   (you must be root)" (legacy `iptables-restore` alone would only say "unable to initialize
//!   table") becomes the message that NET_ADMIN and NET_RAW are needed.
//! * **`--cleanup`** removes every rule jumping to `TLS_STEAL_INBOUND` (wherever it is) and the
//!   chain, in one transaction per family. With `--backend auto` it cleans every backend whose
//!   tools exist (legacy, then nft; plain `iptables` only when neither exists), because the
//!   detection that chose the backend at install time may answer differently later. IPv6 is
//!   cleaned unless `--ipv6 off`; with `--ipv6 auto` an IPv6 table that cannot be read is skipped
//!   with a note. `--ports` / `--proxy-port` are not needed (and ignored) with `--cleanup`.
//!   Nothing to remove is a success.
//! * **`--dry-run`** reads the tables (to know whether the jump exists), never writes, and prints
//!   the exact restore input per family (with `#` comment headers, still valid restore input) on
//!   stdout. If the tables cannot be read (no tools, no capabilities) it says so on stderr and
//!   prints the input for a fresh install.
//! * **Output.** Log lines go to stderr prefixed `tls-steal-init:`; after installing, the rules
//!   read back from the table are logged, and checked against what was meant to be installed.
//! * **A plan problem never blocks the pod** (fail open, as the webhook does): an invalid
//!   `--ports`, or one listing a port of the proxy itself (15400 session API, 15401 admin, the
//!   `--proxy-port`), is logged with the reason and `init` exits 0 without touching iptables,
//!   so the pod starts without capture (clients reach the app directly). Only a broken iptables
//!   is an error, and then nothing is half-installed: each family is one `iptables-restore`.
//! * **Exit status.** 0 success, or a plan that was not applied (logged); 1 iptables failed
//!   otherwise (restore or verification); 2 clap's own usage errors (a malformed command line);
//!   3 an iptables tool is missing; 4 the NET_ADMIN / NET_RAW capabilities are missing.

mod backend;
mod ports;
mod rules;

use std::process::ExitCode;

use thiserror::Error;
use tls_steal_crds::contract::CAPTURE_PORT;

use backend::Backend;
pub use backend::BackendChoice;
use rules::{Family, NatState};

/// Arguments of `tls-steal-sidecar init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// TCP ports to capture, comma-separated (e.g. `443,8443`).
    #[arg(long, value_name = "PORT,...", required_unless_present = "cleanup")]
    pub ports: Option<String>,
    /// The port the proxy listens on; captured connections are redirected there.
    #[arg(long, value_name = "PORT", default_value_t = CAPTURE_PORT)]
    pub proxy_port: u16,
    /// Which iptables implementation to use.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Whether to install IPv6 rules too (`auto`: when the pod has a global IPv6 address).
    #[arg(long, value_enum, default_value_t = Ipv6Choice::Auto)]
    pub ipv6: Ipv6Choice,
    /// Print the iptables-restore input instead of applying it; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the capture (the PREROUTING jump and the TLS_STEAL_INBOUND chain).
    #[arg(long)]
    pub cleanup: bool,
}

/// `--ipv6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ipv6Choice {
    Auto,
    On,
    Off,
}

/// Everything that can make `init` fail.
#[derive(Debug, Error)]
enum InitError {
    #[error("iptables is not installed: {names} not found in PATH ({path})")]
    MissingBinary { names: String, path: String },
    #[error(
        "the tls-steal-init container needs the NET_ADMIN and NET_RAW capabilities \
         (`{command}` said: {stderr})"
    )]
    MissingCapabilities { command: String, stderr: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{family}: after installing, the nat table does not hold the expected rules:\n{found}")]
    Verification { family: Family, found: String },
}

impl InitError {
    /// The process exit status for this error (see the module documentation).
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::MissingBinary { .. } => 3,
            InitError::MissingCapabilities { .. } => 4,
            InitError::CommandFailed { .. }
            | InitError::Spawn { .. }
            | InitError::Verification { .. } => 1,
        }
    }
}

/// Entry point for `main`: runs `init`, reports a failure on stderr, maps it to the exit status.
pub fn main(args: InitArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tls-steal-init: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

fn log(line: impl AsRef<str>) {
    eprintln!("tls-steal-init: {}", line.as_ref());
}

/// Runs `init` with parsed arguments.
fn run(args: &InitArgs) -> Result<(), InitError> {
    if args.cleanup {
        return cleanup(args);
    }
    let ports = match ports::parse_ports(args.ports.as_deref().unwrap_or_default())
        .and_then(|ports| ports::check_reserved(&ports, args.proxy_port).map(|()| ports))
    {
        Ok(ports) => ports,
        Err(err) => {
            log(format!(
                "not capturing anything: {err}; no rule installed, the pod starts and its clients reach the app directly"
            ));
            return Ok(());
        }
    };

    let families = selected_families(args.ipv6);
    let families_text = families
        .iter()
        .map(Family::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let backend = match backend::detect(args.backend) {
        Ok((backend, reason)) => {
            log(format!("backend: {backend} ({reason})"));
            Some(backend)
        }
        Err(err) if args.dry_run => {
            log(format!("dry run: cannot detect the backend: {err}"));
            None
        }
        Err(err) => return Err(err),
    };
    log(format!(
        "families: {families_text}; redirecting tcp ports {} to {} via nat PREROUTING -> {}",
        ports::join(&ports),
        args.proxy_port,
        rules::CHAIN
    ));

    for family in families {
        match install_family(args, &ports, backend, family) {
            Ok(()) => {}
            // Capture on IPv6 is best effort under `auto`: the pod must still start, its IPv6
            // clients then reach the app directly (untouched, never broken).
            Err(err) if family == Family::Ipv6 && args.ipv6 == Ipv6Choice::Auto => {
                log(format!(
                    "warning: IPv6 capture not installed ({err}); IPv6 clients reach the app directly"
                ));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Installs (or, in a dry run, prints) the rules of one address family.
fn install_family(
    args: &InitArgs,
    ports: &[u16],
    backend: Option<backend::Backend>,
    family: Family,
) -> Result<(), InitError> {
    let state = match backend.map(|backend| backend::list_nat(backend, family)) {
        Some(Ok(listing)) => NatState::parse(&listing),
        Some(Err(err)) if !args.dry_run => return Err(err),
        Some(Err(err)) => {
            log(format!(
                "dry run: cannot read the {family} nat table: {err}"
            ));
            NatState::default()
        }
        None => NatState::default(),
    };
    let add_jump = !state.has_prerouting_jump();
    let text = rules::render_install(ports, args.proxy_port, add_jump);
    let Some(backend) = backend.filter(|_| !args.dry_run) else {
        let restore = backend.map_or_else(
            || "iptables-restore (backend undetected)".to_owned(),
            |backend| backend.restore(family),
        );
        println!("# {family}: {restore} --noflush\n{text}");
        return Ok(());
    };
    backend::restore(backend, family, &text)?;
    let installed = NatState::parse(&backend::list_nat(backend, family)?);
    let expected: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with(&format!("-A {} ", rules::CHAIN)))
        .map(str::to_owned)
        .collect();
    if installed.chain_rules != expected || !installed.has_prerouting_jump() {
        let found = installed
            .jumps
            .iter()
            .chain(&installed.chain_rules)
            .map(|rule| format!("  {rule}"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(InitError::Verification { family, found });
    }
    log(format!(
        "{family}: installed with {} ({}):",
        backend.restore(family),
        if add_jump {
            "PREROUTING jump appended"
        } else {
            "PREROUTING jump already present"
        }
    ));
    for rule in installed.jumps.iter().chain(&installed.chain_rules) {
        log(format!("{family}:   {rule}"));
    }
    Ok(())
}

fn selected_families(choice: Ipv6Choice) -> Vec<Family> {
    let ipv6 = match choice {
        Ipv6Choice::On => true,
        Ipv6Choice::Off => false,
        Ipv6Choice::Auto => {
            let found = backend::has_global_ipv6();
            log(format!(
                "ipv6 auto: {}",
                if found {
                    "the pod has a global IPv6 address"
                } else {
                    "no global IPv6 address, IPv4 only"
                }
            ));
            found
        }
    };
    let mut families = vec![Family::Ipv4];
    if ipv6 {
        families.push(Family::Ipv6);
    }
    families
}

fn cleanup(args: &InitArgs) -> Result<(), InitError> {
    let backends: Vec<Backend> = match args.backend {
        BackendChoice::Nft => vec![Backend::Nft],
        BackendChoice::Legacy => vec![Backend::Legacy],
        BackendChoice::Auto => {
            let mut found: Vec<Backend> = [Backend::Legacy, Backend::Nft]
                .into_iter()
                .filter(|backend| {
                    let tool = match backend {
                        Backend::Legacy => backend.save(Family::Ipv4),
                        _ => backend.iptables(Family::Ipv4),
                    };
                    backend::find_in_path(&tool).is_some()
                })
                .collect();
            if found.is_empty() {
                found.push(Backend::Plain);
            }
            found
        }
    };
    let mut families = vec![Family::Ipv4];
    if args.ipv6 != Ipv6Choice::Off {
        families.push(Family::Ipv6);
    }
    let mut removed = false;
    for backend in backends {
        for &family in &families {
            let listing = if backend == Backend::Legacy && args.backend == BackendChoice::Auto {
                // Do not create a legacy nat table just to find it empty.
                backend::legacy_nat_listing(family).map(Option::unwrap_or_default)
            } else {
                backend::list_nat(backend, family)
            };
            let listing = match listing {
                Ok(listing) => listing,
                Err(err)
                    if family == Family::Ipv6
                        && args.ipv6 == Ipv6Choice::Auto
                        && !matches!(err, InitError::MissingCapabilities { .. }) =>
                {
                    log(format!("cleanup: skipping {backend} {family}: {err}"));
                    continue;
                }
                Err(err) => return Err(err),
            };
            let Some(text) = rules::render_cleanup(&NatState::parse(&listing)) else {
                continue;
            };
            if args.dry_run {
                println!("# {family}: {} --noflush\n{text}", backend.restore(family));
            } else {
                backend::restore(backend, family, &text)?;
                log(format!(
                    "cleanup: removed {} and its jumps ({backend}, {family})",
                    rules::CHAIN
                ));
            }
            removed = true;
        }
    }
    if !removed {
        log(format!(
            "cleanup: no {} chain found, nothing to remove",
            rules::CHAIN
        ));
    }
    Ok(())
}
