//! Flags over the mirrord config: what to register with the sidecar and how to deliver.
//!
//! Filter flags combine with all-of (`--any`: any-of); a single one is sent as is; none means the
//! whole port. Any filter flag replaces the file's filter as a whole (the file's
//! `http_filter.ports`, which ports a filter applies to, stays); every other flag overrides just
//! its own setting. No port anywhere means every port of the pod's steal plan (the sidecar
//! resolves it at registration and says which). A config file that does not set `mode` mirrors,
//! as mirrord does.
//!
//! Delivery settings are checked here, before any session starts, as mirrord checks them: with
//! `tls`, `server_cert` and `trust_roots` exclude each other, `trust_roots` may not be an empty
//! list and `server_name` must be a DNS name or an IP address; with `tcp` they are ignored.

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::ServerName;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Mode, Registration};

use crate::args::{Args, DeliveryProtocol};
use crate::mirrord_config::{MirrordConfig, SECTION};

/// Everything a run needs besides where the sidecars are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub registration: Registration,
    pub delivery: DeliverySettings,
    pub warnings: Vec<String>,
    /// Information worth a line (not a problem).
    pub notes: Vec<String>,
}

/// How stolen requests reach the local app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySettings {
    pub protocol: DeliveryProtocol,
    /// `None`: 127.0.0.1 and the port the request was sent to in the pod (or its
    /// `port_mapping` local port).
    pub to: Option<LocalAddr>,
    /// `port_mapping`: (local, remote) pairs, used without `to`.
    pub port_mapping: Vec<(u16, u16)>,
    /// SNI toward the local app; `None`: the server certificate's first name, else the original
    /// client's SNI, else the request's host.
    pub server_name: Option<String>,
    pub trust_roots: Vec<PathBuf>,
    /// The local app's certificate (chain), used as its trust anchor.
    pub server_cert: Option<PathBuf>,
}

/// `--to`: host (name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for LocalAddr {
    type Err = SettingsError;

    /// `PORT`, `HOST:PORT` or `[IPV6]:PORT`.
    fn from_str(s: &str) -> Result<Self, SettingsError> {
        let bad = || SettingsError::BadTo(s.to_string());
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        if let Ok(p) = s.parse::<u16>() {
            return Ok(LocalAddr {
                host: "127.0.0.1".into(),
                port: port(&p.to_string())?,
            });
        }
        let (host, p) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(LocalAddr {
            host: host.to_string(),
            port: port(p)?,
        })
    }
}

/// The flags and the file do not make a usable session.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--port 0 is not a port")]
    ZeroPort,
    #[error("--to {0:?}: expected PORT, HOST:PORT or [IPV6]:PORT")]
    BadTo(String),
    #[error("{flag} {pattern:?}: invalid regex: {reason}")]
    BadRegex {
        flag: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("--method {0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("{0} and {1} cannot be used together: the server certificate is the trust anchor")]
    CertAndRoots(String, String),
    #[error("{0}: cannot be an empty list")]
    EmptyTrustRoots(String),
    #[error("{from} {name:?}: must be a valid DNS name or an IP address")]
    BadServerName { from: String, name: String },
}

/// The filter the flags ask for, `None` when no filter flag is given.
pub fn flag_filter(args: &Args) -> Result<Option<HttpFilter>, SettingsError> {
    let mut items = Vec::new();
    for (flag, patterns, make) in [
        (
            "--header",
            &args.headers,
            HttpFilter::Header as fn(String) -> HttpFilter,
        ),
        ("--path", &args.paths, HttpFilter::Path),
    ] {
        for p in patterns {
            let f = make(p.clone());
            f.compile().map_err(|e| SettingsError::BadRegex {
                flag,
                pattern: p.clone(),
                reason: e.reason,
            })?;
            items.push(f);
        }
    }
    for m in &args.methods {
        let upper = m.to_ascii_uppercase();
        if m.is_empty() || http::Method::from_bytes(upper.as_bytes()).is_err() {
            return Err(SettingsError::BadMethod(m.clone()));
        }
        items.push(HttpFilter::Method(upper));
    }
    Ok(match items.len() {
        0 => None,
        1 => items.pop(),
        _ if args.any => Some(HttpFilter::AnyOf(items)),
        _ => Some(HttpFilter::AllOf(items)),
    })
}

/// Merges the flags over the file (if any).
pub fn resolve(args: &Args, file: Option<MirrordConfig>) -> Result<Settings, SettingsError> {
    let from_file = file.is_some();
    let file = file.unwrap_or_default().incoming;
    let mut warnings = file.warnings.clone();
    let mut notes = Vec::new();
    let flags = flag_filter(args)?;
    if args.any && flags.is_none() {
        warnings.push("--any has no effect without --header, --path or --method".into());
    }
    let filter = if flags.is_some() { flags } else { file.filter };
    let ports = if args.ports.is_empty() {
        file.ports.unwrap_or_default()
    } else {
        args.ports.clone()
    };
    if ports.contains(&0) {
        return Err(SettingsError::ZeroPort);
    }
    let filter_ports = match (&filter, file.filter_ports) {
        (_, None) => None,
        (None, Some(_)) => {
            warnings.push(format!(
                "{SECTION}.http_filter.ports has no effect without a filter (every request of the stolen ports is taken)"
            ));
            None
        }
        (Some(_), Some(fp)) => {
            let outside: Vec<String> = fp
                .iter()
                .filter(|p| !ports.is_empty() && !ports.contains(p))
                .map(u16::to_string)
                .collect();
            if !outside.is_empty() {
                warnings.push(format!(
                    "{SECTION}.http_filter.ports names port(s) {} that are not stolen; no effect there",
                    outside.join(", ")
                ));
            }
            Some(fp)
        }
    };
    let mode = match (args.mode, file.mode) {
        (Some(m), _) => m.into(),
        (None, Some(m)) => m,
        (None, None) if from_file => {
            notes.push(format!(
                "{SECTION}.mode is not set in the config file: mirroring (mirrord's default); use --mode steal or mode: steal to steal"
            ));
            Mode::Mirror
        }
        (None, None) => Mode::Steal,
    };
    let d = file.delivery;
    let file_key = |name: &str| format!("{}.{name}", d.key);
    let delivery = DeliverySettings {
        protocol: args.delivery.or(d.protocol).unwrap_or_default(),
        to: args.to.as_deref().map(str::parse).transpose()?,
        port_mapping: file.port_mapping,
        server_name: args.server_name.clone().or(d.server_name.clone()),
        trust_roots: if args.trust_roots.is_empty() {
            d.trust_roots.clone().unwrap_or_default()
        } else {
            args.trust_roots.clone()
        },
        server_cert: args.server_cert.clone().or(d.server_cert.clone()),
    };
    if delivery.to.is_some() && !delivery.port_mapping.is_empty() {
        warnings.push(format!("--to is given: {SECTION}.port_mapping is not used"));
    }
    match delivery.protocol {
        DeliveryProtocol::Tcp => {
            if delivery.server_name.is_some()
                || !delivery.trust_roots.is_empty()
                || delivery.server_cert.is_some()
            {
                warnings.push(
                    "TLS settings (server name, trust roots, server cert) are ignored with --delivery tcp"
                        .into(),
                );
            }
        }
        DeliveryProtocol::Tls => {
            let roots_from = if args.trust_roots.is_empty() {
                file_key("trust_roots")
            } else {
                "--trust-root".into()
            };
            let cert_from = if args.server_cert.is_some() {
                "--server-cert".into()
            } else {
                file_key("server_cert")
            };
            if args.trust_roots.is_empty() && d.trust_roots.as_ref().is_some_and(Vec::is_empty) {
                return Err(SettingsError::EmptyTrustRoots(roots_from));
            }
            if delivery.server_cert.is_some() && !delivery.trust_roots.is_empty() {
                return Err(SettingsError::CertAndRoots(cert_from, roots_from));
            }
            if let Some(name) = &delivery.server_name
                && ServerName::try_from(name.as_str()).is_err()
            {
                let from = if args.server_name.is_some() {
                    "--server-name".into()
                } else {
                    file_key("server_name")
                };
                return Err(SettingsError::BadServerName {
                    from,
                    name: name.clone(),
                });
            }
        }
    }
    Ok(Settings {
        registration: Registration {
            ports,
            filter,
            filter_ports,
            mode,
            client: args.client.clone().unwrap_or_else(default_client),
        },
        delivery,
        warnings,
        notes,
    })
}

/// `$USER@$HOSTNAME`.
fn default_client() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests;
