//! A mirrord config file (JSON or YAML): its `target` and its `feature.network.incoming` section,
//! read with mirrord's meaning for every key accepted (the README's "mirrord compatibility"
//! table lists each key). `mode` (mirrord's default when absent: mirror), `http_filter`
//! (`header_filter`, `path_filter`, `method_filter`, `body_filter`, `all_of`, `any_of`, and
//! `ports`: the ports the filter applies to, others being taken whole), `ports`, `port_mapping`,
//! and `tls_delivery` (or its deprecated alias `https_delivery`) with `protocol`, `trust_roots`,
//! `server_name`, `server_cert`.
//!
//! The file is walked by hand rather than derived, so every error names the offending key as a
//! path (`feature.network.incoming.http_filter.all_of[1]: unknown filter kind "hedaer"`). Other
//! sections (`agent`, `feature.fs`, ...) are not looked at.
//!
//! `target` reads the `target` key, `filter` the `http_filter`, `values` the typed reads of
//! JSON values that name the key at fault.

mod filter;
mod target;
mod values;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::Mode;

use crate::args::DeliveryProtocol;
use filter::http_filter;
use target::target;
use values::{key_err, kind, non_empty, object, port_list, port_pairs, string};

/// Where the incoming section lives in the file.
pub const SECTION: &str = "feature.network.incoming";

/// What the file asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrordConfig {
    pub target: FileTarget,
    pub incoming: IncomingConfig,
}

/// `target`: a path (`deploy/web`, as kubectl-steal spells TARGET) and a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTarget {
    pub path: Option<String>,
    pub namespace: Option<String>,
}

/// `feature.network.incoming`. `None` = not set in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingConfig {
    pub mode: Option<Mode>,
    /// `None`: no filter (whole ports).
    pub filter: Option<HttpFilter>,
    /// `ports`: the ports to take; `None`: every port.
    pub ports: Option<Vec<u16>>,
    /// `http_filter.ports`: the ports the filter applies to; `None`: every port taken.
    pub filter_ports: Option<Vec<u16>>,
    /// `port_mapping`: (local, remote) pairs.
    pub port_mapping: Vec<(u16, u16)>,
    pub delivery: DeliveryConfig,
    /// Keys read with a caveat, or known to mirrord and not used here.
    pub warnings: Vec<String>,
}

/// `tls_delivery` / `https_delivery`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// The key it was read from (`feature.network.incoming.tls_delivery`), for error messages.
    pub key: String,
    pub protocol: Option<DeliveryProtocol>,
    pub trust_roots: Option<Vec<PathBuf>>,
    pub server_name: Option<String>,
    pub server_cert: Option<PathBuf>,
}

/// The file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// The config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the mirrord config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the mirrord config is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("{key}: {message}")]
    Key { key: String, message: String },
}

impl Format {
    /// By extension; `None` when it says nothing (then JSON is tried, then YAML).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<MirrordConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    match Format::from_path(path) {
        Some(format) => parse(&text, format),
        None => parse(&text, Format::Json).or_else(|json_err| match json_err {
            ConfigError::Syntax { .. } => parse(&text, Format::Yaml),
            other => Err(other),
        }),
    }
}

/// Parses the text of a whole mirrord config.
pub fn parse(text: &str, format: Format) -> Result<MirrordConfig, ConfigError> {
    let root: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?,
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?,
    };
    from_value(&root)
}

/// Reads an already parsed config.
pub fn from_value(root: &Value) -> Result<MirrordConfig, ConfigError> {
    let top = object(root, "(top level)")?;
    let target = match top.get("target") {
        None | Some(Value::Null) => FileTarget::default(),
        Some(t) => target(t)?,
    };
    let mut at = root;
    let mut key = String::new();
    for part in ["feature", "network", "incoming"] {
        let obj = object(at, if key.is_empty() { "(top level)" } else { &key })?;
        key = if key.is_empty() {
            part.to_string()
        } else {
            format!("{key}.{part}")
        };
        at = match obj.get(part) {
            // mirrord's toggles (`network` and `incoming` are toggleable there, `feature` is
            // not): `true` keeps the defaults, `false` turns incoming traffic off.
            Some(Value::Bool(on)) if part != "feature" => {
                if !on {
                    return Err(key_err(
                        &key,
                        "`false` turns incoming traffic off (mirrord's mode \"off\"), which takes no traffic; use \"steal\" or \"mirror\"",
                    ));
                }
                return Ok(MirrordConfig {
                    target,
                    incoming: IncomingConfig::default(),
                });
            }
            Some(v) if !v.is_null() => v,
            // mirrord's defaults: every port, mirrored, no filter.
            _ => {
                return Ok(MirrordConfig {
                    target,
                    incoming: IncomingConfig::default(),
                });
            }
        };
    }
    Ok(MirrordConfig {
        target,
        incoming: incoming(at)?,
    })
}

fn incoming(v: &Value) -> Result<IncomingConfig, ConfigError> {
    let mut cfg = IncomingConfig::default();
    // mirrord's shorthand: `"incoming": "steal"`.
    if let Value::String(_) = v {
        cfg.mode = Some(mode(v, SECTION)?);
        return Ok(cfg);
    }
    let obj = object(v, SECTION)?;
    let set = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    if set("https_delivery") && set("tls_delivery") {
        return Err(key_err(
            SECTION,
            "both `https_delivery` and `tls_delivery` are set; keep `tls_delivery` (`https_delivery` is its deprecated alias)",
        ));
    }
    if set("ignore_ports") && set("ports") {
        return Err(key_err(
            SECTION,
            "`ignore_ports` and `ports` cannot be used together",
        ));
    }
    for (name, value) in obj {
        let key = format!("{SECTION}.{name}");
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "mode" => cfg.mode = Some(mode(value, &key)?),
            "http_filter" => {
                let (filter, ports) = http_filter(value, &key)?;
                cfg.filter = filter;
                cfg.filter_ports = ports;
            }
            "ports" => {
                let ports = port_list(value, &key, false)?;
                // mirrord then takes no port at all (every bind is outside the list); here an
                // empty list would read as "every port".
                if ports.is_empty() {
                    return Err(key_err(
                        &key,
                        "an empty list takes no port; name the ports, or leave it out for every port",
                    ));
                }
                cfg.ports = Some(ports);
            }
            "port_mapping" => cfg.port_mapping = port_pairs(value, &key)?,
            "tls_delivery" => cfg.delivery = delivery(value, &key)?,
            "https_delivery" => {
                cfg.warnings.push(format!(
                    "{key} is deprecated; use {SECTION}.tls_delivery instead"
                ));
                cfg.delivery = delivery(value, &key)?;
            }
            "ignore_ports" => {
                return Err(key_err(
                    &key,
                    "not supported: name the ports to steal with `ports` (or --port) instead",
                ));
            }
            "listen_ports" | "ignore_localhost" | "on_concurrent_steal" => cfg.warnings.push(
                format!("{key} concerns mirrord's local process and is not used by kubectl-steal (ignored)"),
            ),
            other => {
                return Err(key_err(
                    &key,
                    format!(
                        "unknown key {other:?} (expected mode, http_filter, ports, port_mapping, tls_delivery or https_delivery)"
                    ),
                ));
            }
        }
    }
    Ok(cfg)
}

fn mode(v: &Value, key: &str) -> Result<Mode, ConfigError> {
    match string(v, key)?.to_ascii_lowercase().as_str() {
        "steal" => Ok(Mode::Steal),
        "mirror" => Ok(Mode::Mirror),
        "off" => Err(key_err(
            key,
            "mode \"off\" takes no traffic; use \"steal\" or \"mirror\"",
        )),
        other => Err(key_err(
            key,
            format!("unknown mode {other:?} (expected \"steal\" or \"mirror\")"),
        )),
    }
}

fn delivery(v: &Value, at: &str) -> Result<DeliveryConfig, ConfigError> {
    let obj = object(v, at)?;
    let mut d = DeliveryConfig {
        key: at.to_owned(),
        ..DeliveryConfig::default()
    };
    for (name, value) in obj {
        let key = format!("{at}.{name}");
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "protocol" => {
                d.protocol = Some(match string(value, &key)?.to_ascii_lowercase().as_str() {
                    "tls" => DeliveryProtocol::Tls,
                    "tcp" => DeliveryProtocol::Tcp,
                    other => {
                        return Err(key_err(
                            &key,
                            format!("unknown protocol {other:?} (expected \"tls\" or \"tcp\")"),
                        ));
                    }
                })
            }
            "trust_roots" => {
                let Value::Array(items) = value else {
                    return Err(key_err(
                        &key,
                        format!("expected a list of PEM paths, found {}", kind(value)),
                    ));
                };
                d.trust_roots = Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| non_empty(item, &format!("{key}[{i}]")).map(PathBuf::from))
                        .collect::<Result<_, _>>()?,
                );
            }
            "server_name" => d.server_name = Some(string(value, &key)?),
            "server_cert" => d.server_cert = Some(PathBuf::from(non_empty(value, &key)?)),
            other => {
                return Err(key_err(
                    &key,
                    format!(
                        "unknown key {other:?} (expected protocol, trust_roots, server_name or server_cert)"
                    ),
                ));
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
