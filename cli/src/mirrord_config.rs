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

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tls_steal_crds::filter::{BodyFilter, HttpFilter};
use tls_steal_crds::session::Mode;

use crate::args::DeliveryProtocol;

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

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
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

/// `target`: `"deploy/web"`, or `{path, namespace}` with `path` a string or mirrord's object
/// form (`{"deployment": "web", "container": "app"}`).
fn target(v: &Value) -> Result<FileTarget, ConfigError> {
    const AT: &str = "target";
    let (path, namespace) = match v {
        Value::String(_) => (Some(target_path(v, AT)?), None),
        Value::Object(obj) => {
            let mut t = FileTarget::default();
            for (name, value) in obj {
                let key = format!("{AT}.{name}");
                match name.as_str() {
                    _ if value.is_null() => {}
                    "path" => t.path = Some(target_path(value, &key)?),
                    "namespace" => t.namespace = Some(non_empty(value, &key)?),
                    other => {
                        return Err(key_err(
                            &key,
                            format!("unknown key {other:?} (expected path or namespace)"),
                        ));
                    }
                }
            }
            (t.path, t.namespace)
        }
        other => {
            return Err(key_err(
                AT,
                format!("expected a target path or a mapping, found {}", kind(other)),
            ));
        }
    };
    Ok(FileTarget { path, namespace })
}

/// A target path in kubectl-steal's spelling (`deploy/web`); the container, if named, does not
/// matter (sessions are per pod, the steal plan names the container of each port).
fn target_path(v: &Value, key: &str) -> Result<String, ConfigError> {
    let path = match v {
        Value::String(s) if s == "targetless" => {
            return Err(key_err(
                key,
                "a targetless run has no pod whose requests could be stolen; name a workload",
            ));
        }
        Value::String(s) => s.clone(),
        Value::Object(obj) => {
            let mut kinds = obj.iter().filter(|(k, _)| k.as_str() != "container");
            let (Some((kind, name)), None) = (kinds.next(), kinds.next()) else {
                return Err(key_err(
                    key,
                    "expected one of pod, deployment, rollout, stateful_set, replica_set, job (and optionally container)",
                ));
            };
            let prefix = match kind.as_str() {
                "pod" => "pod",
                "deployment" => "deploy",
                "rollout" => "rollout",
                "stateful_set" => "statefulset",
                "replica_set" => "rs",
                "job" => "job",
                "cron_job" | "service" | "labels" => {
                    return Err(key_err(
                        &format!("{key}.{kind}"),
                        format!(
                            "{kind} targets are not supported by kubectl-steal (name the workload whose pods carry the sidecar)"
                        ),
                    ));
                }
                other => {
                    return Err(key_err(key, format!("unknown target kind {other:?}")));
                }
            };
            format!("{prefix}/{}", non_empty(name, &format!("{key}.{kind}"))?)
        }
        other => {
            return Err(key_err(
                key,
                format!("expected a target path, found {}", self::kind(other)),
            ));
        }
    };
    path.parse::<crate::target::Target>()
        .map_err(|e| key_err(key, e.to_string()))?;
    Ok(path)
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
            "ports" => cfg.ports = Some(port_list(value, &key, false)?),
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

/// The filter and the `ports` of `http_filter`.
fn http_filter(v: &Value, at: &str) -> Result<(Option<HttpFilter>, Option<Vec<u16>>), ConfigError> {
    let obj = object(v, at)?;
    let mut filters = Vec::new();
    let mut ports = None;
    for (name, value) in obj {
        let key = format!("{at}.{name}");
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            "header_filter" => filters.push((name, leaf("header", value, &key)?)),
            "path_filter" => filters.push((name, leaf("path", value, &key)?)),
            "method_filter" => filters.push((name, leaf("method", value, &key)?)),
            "body_filter" => filters.push((name, body_filter(value, &key)?)),
            "all_of" => filters.push((name, HttpFilter::AllOf(composite(value, &key)?))),
            "any_of" => filters.push((name, HttpFilter::AnyOf(composite(value, &key)?))),
            "ports" => ports = Some(port_list(value, &key, true)?),
            "header_filter_jq" => {
                return Err(key_err(
                    &key,
                    "jq filters are not supported by kubectl-steal; use header_filter (a regex)",
                ));
            }
            other => {
                return Err(key_err(
                    &key,
                    format!(
                        "unknown key {other:?} (expected header_filter, path_filter, method_filter, body_filter, all_of, any_of or ports)"
                    ),
                ));
            }
        }
    }
    if filters.len() > 1 {
        let names: Vec<&str> = filters.iter().map(|(n, _)| n.as_str()).collect();
        return Err(key_err(
            at,
            format!(
                "only one filter may be set, found {}; combine them with all_of or any_of",
                names.join(" and ")
            ),
        ));
    }
    Ok((filters.pop().map(|(_, f)| f), ports))
}

fn composite(v: &Value, key: &str) -> Result<Vec<HttpFilter>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(key_err(
            key,
            format!("expected a list of filters, found {}", kind(v)),
        ));
    };
    if items.is_empty() {
        return Err(key_err(key, "cannot be an empty list"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| inner_filter(item, &format!("{key}[{i}]")))
        .collect()
}

/// An item of `all_of` / `any_of`: `{"header": ..}`, `{"path": ..}`, `{"method": ..}`, or a body
/// filter `{"body": "json", "query": .., "matches": ..}`.
fn inner_filter(v: &Value, key: &str) -> Result<HttpFilter, ConfigError> {
    let obj = object(v, key)?;
    if obj.contains_key("body") {
        return body_filter(v, key);
    }
    let mut entries = obj.iter();
    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
        return Err(key_err(
            key,
            "a filter item is one of {header}, {path}, {method} or {body, query, matches}",
        ));
    };
    match name.as_str() {
        "header" | "path" | "method" => leaf(name, value, &format!("{key}.{name}")),
        "query" => Err(key_err(
            key,
            "jq filters are not supported by kubectl-steal; use a header item (a regex)",
        )),
        other => Err(key_err(
            key,
            format!("unknown filter kind {other:?} (expected header, path, method or body)"),
        )),
    }
}

/// A header or path regex (checked here so the error names the key), or a method.
fn leaf(kind: &str, v: &Value, key: &str) -> Result<HttpFilter, ConfigError> {
    let s = non_empty(v, key)?;
    let filter = match kind {
        "header" => HttpFilter::Header(s),
        "path" => HttpFilter::Path(s),
        _ => {
            let upper = s.to_ascii_uppercase();
            if http::Method::from_bytes(upper.as_bytes()).is_err() {
                return Err(key_err(key, format!("{s:?} is not an HTTP method")));
            }
            HttpFilter::Method(upper)
        }
    };
    check(&filter, key)?;
    Ok(filter)
}

/// `{"body": "json", "query": "$.a[*]", "matches": "^x"}`.
fn body_filter(v: &Value, key: &str) -> Result<HttpFilter, ConfigError> {
    let obj = object(v, key)?;
    let (mut query, mut matches, mut body) = (None, None, None);
    for (name, value) in obj {
        let k = format!("{key}.{name}");
        match name.as_str() {
            "body" => body = Some(string(value, &k)?),
            "query" => query = Some(non_empty(value, &k)?),
            "matches" => matches = Some(non_empty(value, &k)?),
            other => {
                return Err(key_err(
                    &k,
                    format!("unknown key {other:?} (expected body, query and matches)"),
                ));
            }
        }
    }
    match body.as_deref() {
        Some("json") => {}
        Some(other) => {
            return Err(key_err(
                &format!("{key}.body"),
                format!("unknown body kind {other:?} (only \"json\")"),
            ));
        }
        None => return Err(key_err(key, "missing `body` (\"json\")")),
    }
    let (Some(query), Some(matches)) = (query, matches) else {
        return Err(key_err(
            key,
            "a body filter needs both `query` and `matches`",
        ));
    };
    let filter = HttpFilter::Body(BodyFilter::Json { query, matches });
    check(&filter, key)?;
    Ok(filter)
}

/// Compiles `filter` (one leaf) so a bad regex or JSONPath is reported at its key.
fn check(filter: &HttpFilter, key: &str) -> Result<(), ConfigError> {
    filter.compile().map(|_| ()).map_err(|e| {
        key_err(
            key,
            format!("invalid {} {:?}: {}", e.what, e.pattern, e.reason),
        )
    })
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

/// A list of ports; with `single`, one port alone is accepted too (mirrord's `VecOrSingle`).
fn port_list(v: &Value, key: &str, single: bool) -> Result<Vec<u16>, ConfigError> {
    let port = |item: &Value, at: &str| {
        item.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
            .ok_or_else(|| key_err(at, format!("{item} is not a port (1-65535)")))
    };
    match v {
        Value::Number(_) if single => Ok(vec![port(v, key)?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| port(item, &format!("{key}[{i}]")))
            .collect(),
        other => Err(key_err(
            key,
            format!("expected a list of ports, found {}", kind(other)),
        )),
    }
}

/// `[[local, remote], ...]`; a port may appear once on each side.
fn port_pairs(v: &Value, key: &str) -> Result<Vec<(u16, u16)>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(key_err(
            key,
            format!(
                "expected a list of [local, remote] pairs, found {}",
                kind(v)
            ),
        ));
    };
    let mut pairs: Vec<(u16, u16)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let ports = port_list(item, &at, false)?;
        let [local, remote] = ports[..] else {
            return Err(key_err(&at, "expected a [local, remote] pair"));
        };
        if pairs.iter().any(|(l, _)| *l == local) {
            return Err(key_err(&at, format!("duplicate local port {local}")));
        }
        if pairs.iter().any(|(_, r)| *r == remote) {
            return Err(key_err(&at, format!("duplicate remote port {remote}")));
        }
        pairs.push((local, remote));
    }
    Ok(pairs)
}

fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| key_err(key, format!("expected a mapping, found {}", kind(v))))
}

fn string(v: &Value, key: &str) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| key_err(key, format!("expected a string, found {}", kind(v))))
}

/// A string that is not empty (mirrord refuses empty filter strings: they would look configured
/// yet match everything).
fn non_empty(v: &Value, key: &str) -> Result<String, ConfigError> {
    let s = string(v, key)?;
    if s.is_empty() {
        return Err(key_err(key, "cannot be an empty string"));
    }
    Ok(s)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<MirrordConfig, ConfigError> {
        parse(s, Format::Json)
    }

    fn incoming_of(s: &str) -> IncomingConfig {
        json(s).unwrap().incoming
    }

    fn err(s: &str) -> String {
        json(s).unwrap_err().to_string()
    }

    #[test]
    fn full_section_json() {
        let c = json(
            r#"{"target": {"path": "deploy/x/container/app", "namespace": "shop"}, "feature": {"network": {"incoming": {
                "mode": "steal",
                "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}], "ports": [443]},
                "ports": [443, 8443],
                "port_mapping": [[9443, 443]],
                "tls_delivery": {"protocol": "tcp", "trust_roots": ["/r.pem"], "server_name": "app.local"}
            }}}}"#,
        )
        .unwrap();
        assert_eq!(c.target.path.as_deref(), Some("deploy/x/container/app"));
        assert_eq!(c.target.namespace.as_deref(), Some("shop"));
        let c = c.incoming;
        assert_eq!(c.mode, Some(Mode::Steal));
        assert_eq!(c.ports, Some(vec![443, 8443]));
        assert_eq!(c.filter_ports, Some(vec![443]));
        assert_eq!(c.port_mapping, vec![(9443, 443)]);
        assert_eq!(
            c.filter,
            Some(HttpFilter::AllOf(vec![
                HttpFilter::Header("^x-steal: yes$".into()),
                HttpFilter::Path("^/api".into()),
            ]))
        );
        assert_eq!(c.delivery.protocol, Some(DeliveryProtocol::Tcp));
        assert_eq!(c.delivery.trust_roots, Some(vec![PathBuf::from("/r.pem")]));
        assert_eq!(c.delivery.server_name.as_deref(), Some("app.local"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn target_spellings() {
        let t = |s: &str| json(s).map(|c| c.target);
        assert_eq!(
            t(r#"{"target": "deployment/web"}"#)
                .unwrap()
                .path
                .as_deref(),
            Some("deployment/web")
        );
        let obj = t(
            r#"{"target": {"path": {"deployment": "web", "container": "app"}, "namespace": "ns"}}"#,
        )
        .unwrap();
        assert_eq!(obj.path.as_deref(), Some("deploy/web"));
        assert_eq!(obj.namespace.as_deref(), Some("ns"));
        assert_eq!(
            t(r#"{"target": {"path": {"stateful_set": "db"}}}"#)
                .unwrap()
                .path
                .as_deref(),
            Some("statefulset/db")
        );
        assert_eq!(
            t(r#"{"target": {"namespace": "ns"}}"#).unwrap(),
            FileTarget {
                path: None,
                namespace: Some("ns".into())
            }
        );
        for (text, want) in [
            (r#"{"target": "targetless"}"#, "target: a targetless run"),
            (
                r#"{"target": {"path": "service/web"}}"#,
                "target.path: \"service/web\" is not a target",
            ),
            (
                r#"{"target": {"path": {"cron_job": "c"}}}"#,
                "target.path.cron_job: cron_job targets are not supported",
            ),
            (
                r#"{"target": {"pth": "deploy/x"}}"#,
                "target.pth: unknown key",
            ),
            (
                r#"{"target": 7}"#,
                "target: expected a target path or a mapping",
            ),
            (
                r#"{"target": {"namespace": ""}}"#,
                "target.namespace: cannot be an empty string",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with(want), "{text}\n  gave {e}\n  want {want}");
        }
    }

    #[test]
    fn body_filters_alone_and_in_composites() {
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$.user.id","matches":"^4[0-9]$"}}}}}}"#,
        );
        assert_eq!(
            c.filter,
            Some(HttpFilter::Body(BodyFilter::Json {
                query: "$.user.id".into(),
                matches: "^4[0-9]$".into()
            }))
        );
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"path":"^/x"},{"body":"json","query":"$.a[*]","matches":"b"}]}}}}}"#,
        );
        assert!(
            matches!(&c.filter, Some(HttpFilter::AnyOf(v)) if matches!(v[1], HttpFilter::Body(_)))
        );
    }

    #[test]
    fn yaml_equals_json() {
        let y = parse(
            "feature:\n  network:\n    incoming:\n      mode: mirror\n      http_filter:\n        header_filter: 'x-a: 1'\n        ports: 8443\n      ports: [8443]\n      tls_delivery:\n        protocol: tls\n",
            Format::Yaml,
        )
        .unwrap();
        let j = json(
            r#"{"feature":{"network":{"incoming":{"mode":"mirror","http_filter":{"header_filter":"x-a: 1","ports":[8443]},"ports":[8443],"tls_delivery":{"protocol":"tls"}}}}}"#,
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(y.incoming.mode, Some(Mode::Mirror));
        assert_eq!(y.incoming.filter_ports, Some(vec![8443]));
    }

    #[test]
    fn shorthand_missing_section_and_no_filter() {
        let c = incoming_of(r#"{"feature":{"network":{"incoming":"mirror"}}}"#);
        assert_eq!(c.mode, Some(Mode::Mirror));
        assert_eq!(c.filter, None);
        let c =
            incoming_of(r#"{"feature":{"network":{"incoming":{"http_filter":{"ports":[443]}}}}}"#);
        assert_eq!((c.filter, c.filter_ports), (None, Some(vec![443])));
        // No section: mirrord's defaults (left to the settings: mirror every port).
        assert_eq!(
            incoming_of(r#"{"feature":{"network":{}}}"#),
            IncomingConfig::default()
        );
        assert_eq!(
            incoming_of(r#"{"target":"pod/p"}"#),
            IncomingConfig::default()
        );
    }

    #[test]
    fn http_filter_ports_do_not_replace_the_ports() {
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","ports":[443]},"ports":[80,443]}}}}"#,
        );
        assert_eq!(c.ports, Some(vec![80, 443]));
        assert_eq!(c.filter_ports, Some(vec![443]));
    }

    #[test]
    fn https_delivery_is_the_deprecated_alias() {
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"https_delivery":{"protocol":"tcp"}}}}}"#,
        );
        assert_eq!(c.delivery.protocol, Some(DeliveryProtocol::Tcp));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains(
                "https_delivery is deprecated; use feature.network.incoming.tls_delivery"
            ),
            "{:?}",
            c.warnings
        );
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"tls_delivery":{"protocol":"tcp"}}}}}"#,
        );
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn bad_filter_kind_names_the_item() {
        let e = err(
            r#"{"feature":{"network":{"incoming":{"http_filter":{"all_of":[{"header":"a"},{"hedaer":"b"}]}}}}}"#,
        );
        assert!(
            e.starts_with(
                "feature.network.incoming.http_filter.all_of[1]: unknown filter kind \"hedaer\""
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            (
                r#"{"feature":{"network":{"incoming":{"http_filtre":{}}}}}"#,
                "feature.network.incoming.http_filtre: unknown key",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"mode":"stael"}}}}"#,
                "feature.network.incoming.mode: unknown mode \"stael\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"x-("}}}}}"#,
                "feature.network.incoming.http_filter.header_filter: invalid regex \"x-(\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"path_filter":""}}}}}"#,
                "feature.network.incoming.http_filter.path_filter: cannot be an empty string",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"all_of":[]}}}}}"#,
                "feature.network.incoming.http_filter.all_of: cannot be an empty list",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"path":"/a"},{"path":7}]}}}}}"#,
                "feature.network.incoming.http_filter.any_of[1].path: expected a string",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$[","matches":"a"}}}}}}"#,
                "feature.network.incoming.http_filter.body_filter: invalid JSONPath query \"$[\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"json","query":"$.a","matches":"("}}}}}}"#,
                "feature.network.incoming.http_filter.body_filter: invalid regex \"(\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"body_filter":{"body":"xml","query":"$.a","matches":"a"}}}}}}"#,
                "feature.network.incoming.http_filter.body_filter.body: unknown body kind \"xml\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"body":"json","query":"$.a"}]}}}}}"#,
                "feature.network.incoming.http_filter.any_of[0]: a body filter needs both",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter_jq":".a"}}}}}"#,
                "feature.network.incoming.http_filter.header_filter_jq: jq filters are not supported",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"ports":[443, 70000]}}}}"#,
                "feature.network.incoming.ports[1]: 70000 is not a port",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"tls_delivery":{"protocol":"udp"}}}}}"#,
                "feature.network.incoming.tls_delivery.protocol: unknown protocol \"udp\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"tls_delivery":{"trust_root":["/a"]}}}}}"#,
                "feature.network.incoming.tls_delivery.trust_root: unknown key",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"tls_delivery":{},"https_delivery":{}}}}}"#,
                "feature.network.incoming: both `https_delivery` and `tls_delivery`",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","path_filter":"b"}}}}}"#,
                "feature.network.incoming.http_filter: only one filter may be set",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"mode":"off"}}}}"#,
                "feature.network.incoming.mode: mode \"off\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"ignore_ports":[9999]}}}}"#,
                "feature.network.incoming.ignore_ports: not supported",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"port_mapping":[[1,2],[1,3]]}}}}"#,
                "feature.network.incoming.port_mapping[1]: duplicate local port 1",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.starts_with(want), "{text}\n  gave {e}\n  want {want}");
        }
    }

    #[test]
    fn mirrord_keys_for_the_local_process_warn() {
        let c = incoming_of(
            r#"{"feature":{"network":{"incoming":{"mode":"steal","listen_ports":[[80,4480]]}}}}"#,
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("listen_ports"));
    }

    #[test]
    fn syntax_errors_say_which_format() {
        assert!(err("{").contains("not valid JSON"));
        let e = parse("feature: [", Format::Yaml).unwrap_err().to_string();
        assert!(e.contains("not valid YAML"), "{e}");
    }

    #[test]
    fn load_picks_format_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(&p, "feature:\n  network:\n    incoming: steal\n").unwrap();
        assert_eq!(load(&p).unwrap().incoming.mode, Some(Mode::Steal));
        let p = dir.path().join("m.conf");
        std::fs::write(&p, "feature:\n  network:\n    incoming: mirror\n").unwrap();
        assert_eq!(load(&p).unwrap().incoming.mode, Some(Mode::Mirror));
        let e = load(&dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(e.contains("cannot read the mirrord config"), "{e}");
    }
}
