//! Which iptables implementation to drive (nft, legacy, or whatever plain `iptables` is), finding
//! its tools through `PATH`, and running them with their failures classified.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::InitError;
use super::rules::{self, Family};

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// legacy if legacy rules already exist here, else nft if it works, else plain `iptables`.
    Auto,
    /// `iptables-nft` / `ip6tables-nft`.
    Nft,
    /// `iptables-legacy` / `ip6tables-legacy`.
    Legacy,
}

/// A concrete set of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
    /// `iptables`, `iptables-restore`, … without suffix: whatever the image links them to.
    Plain,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
            Backend::Plain => "plain iptables",
        })
    }
}

impl Backend {
    fn tool(self, family: Family, tool: &str) -> String {
        let base = match family {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        };
        let suffix = match self {
            Backend::Nft => "-nft",
            Backend::Legacy => "-legacy",
            Backend::Plain => "",
        };
        format!("{base}{suffix}{tool}")
    }

    /// `iptables-nft`, `ip6tables-legacy`, `iptables`, …
    pub fn iptables(self, family: Family) -> String {
        self.tool(family, "")
    }

    /// `iptables-nft-restore`, …
    pub fn restore(self, family: Family) -> String {
        self.tool(family, "-restore")
    }

    /// `iptables-nft-save`, …
    pub fn save(self, family: Family) -> String {
        self.tool(family, "-save")
    }
}

/// The directories of `PATH`, for lookups and for error messages.
fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// The executable `name` in `PATH`, if any.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&search_path())
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn missing(names: &[&str]) -> InitError {
    InitError::MissingBinary {
        names: names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", "),
        path: search_path().to_string_lossy().into_owned(),
    }
}

/// What iptables prints when the caller lacks CAP_NET_ADMIN / CAP_NET_RAW.
fn is_permission_error(stderr: &str) -> bool {
    [
        "Permission denied",
        "you must be root",
        "Operation not permitted",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// Runs the tool `name` (looked up in `PATH`) with `args`, feeding `stdin` if given; returns its
/// standard output. Failures are classified: missing tool, missing capabilities, other.
pub fn run(name: &str, args: &[&str], stdin: Option<&str>) -> Result<String, InitError> {
    let program = find_in_path(name).ok_or_else(|| missing(&[name]))?;
    let command_line = std::iter::once(name)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(&program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| InitError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| InitError::Spawn {
                command: command_line.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| InitError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    if is_permission_error(&stderr) {
        return Err(InitError::MissingCapabilities {
            command: command_line,
            stderr,
        });
    }
    Err(InitError::CommandFailed {
        command: command_line,
        status: output.status.to_string(),
        stderr,
    })
}

/// Lists the `nat` table (`iptables -w -t nat -S`); this is also the first privileged call, so a
/// missing capability shows up here with iptables' own "Permission denied" message.
pub fn list_nat(backend: Backend, family: Family) -> Result<String, InitError> {
    run(&backend.iptables(family), &["-w", "-t", "nat", "-S"], None)
}

/// Applies `text` atomically with `iptables-restore --noflush`.
pub fn restore(backend: Backend, family: Family, text: &str) -> Result<(), InitError> {
    run(
        &backend.restore(family),
        &["--noflush", "--wait", "30"],
        Some(text),
    )
    .map(drop)
}

/// The `*nat` section of an `iptables-legacy-save` dump of all tables. Reading every table (no
/// `-t`) only shows tables that already exist, so this never creates a legacy `nat` table.
pub fn legacy_nat_listing(family: Family) -> Result<Option<String>, InitError> {
    let dump = run(&Backend::Legacy.save(family), &[], None)?;
    let mut in_nat = false;
    let mut found = false;
    let mut out = String::new();
    for line in dump.lines() {
        match line.trim() {
            "*nat" => {
                in_nat = true;
                found = true;
            }
            "COMMIT" => in_nat = false,
            rule if in_nat => {
                out.push_str(rule);
                out.push('\n');
            }
            _ => {}
        }
    }
    Ok(found.then_some(out))
}

/// The backend to use and a human-readable reason.
pub fn detect(choice: BackendChoice) -> Result<(Backend, String), InitError> {
    match choice {
        BackendChoice::Nft => return Ok((Backend::Nft, "chosen with --backend nft".into())),
        BackendChoice::Legacy => {
            return Ok((Backend::Legacy, "chosen with --backend legacy".into()));
        }
        BackendChoice::Auto => {}
    }
    // 1. Something in this network namespace already uses legacy tables (e.g. a mesh's init
    //    container with legacy iptables): mixing would make rule order unpredictable.
    let mut legacy_tools = false;
    for family in [Family::Ipv4, Family::Ipv6] {
        let save = Backend::Legacy.save(family);
        if find_in_path(&save).is_none() {
            continue;
        }
        legacy_tools = true;
        match run(&save, &[], None) {
            Ok(dump) if rules::legacy_dump_in_use(&dump) => {
                return Ok((
                    Backend::Legacy,
                    format!("legacy rules already exist in this network namespace ({save})"),
                ));
            }
            Ok(_) => {}
            Err(err @ InitError::MissingCapabilities { .. }) => return Err(err),
            Err(err) => eprintln!("tls-steal-init: note: {err}; ignoring"),
        }
    }
    // 2. nft when it works.
    let nft = Backend::Nft.iptables(Family::Ipv4);
    let nft_note = if find_in_path(&nft).is_some() {
        match list_nat(Backend::Nft, Family::Ipv4) {
            Ok(_) => {
                return Ok((
                    Backend::Nft,
                    format!("no legacy rules here and `{nft} -t nat -S` works"),
                ));
            }
            Err(err @ InitError::MissingCapabilities { .. }) => return Err(err),
            Err(err) => format!("nft is not usable ({err})"),
        }
    } else {
        format!("`{nft}` is not installed")
    };
    // 3. Plain `iptables`, whatever it is linked to.
    if find_in_path("iptables").is_some() {
        return Ok((
            Backend::Plain,
            format!("{nft_note}; using plain `iptables`"),
        ));
    }
    if legacy_tools && find_in_path(&Backend::Legacy.iptables(Family::Ipv4)).is_some() {
        return Ok((
            Backend::Legacy,
            format!("{nft_note} and plain `iptables` is not installed"),
        ));
    }
    Err(missing(&["iptables-legacy", "iptables-nft", "iptables"]))
}

/// Whether this network namespace has a global (non-link-local) IPv6 address.
pub fn has_global_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .is_ok_and(|table| rules::if_inet6_has_global(&table))
}
