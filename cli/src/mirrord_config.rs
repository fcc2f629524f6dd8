//! The `feature.network.incoming` section of a mirrord config (JSON or YAML), so a developer's
//! existing config carries over: `mode`, `http_filter` (`header_filter`, `path_filter`,
//! `method_filter`, `all_of`, `any_of`, `ports`), `ports`, and `https_delivery` (or its older name
//! `tls_delivery`) with `protocol`, `trust_roots`, `server_name`, `server_cert`.
//!
//! The section is walked by hand rather than derived, so every error names the offending key as a
//! path (`feature.network.incoming.http_filter.all_of[1]: unknown filter kind "hedaer"`). Other
//! sections of the file (`target`, `agent`, ...) are not looked at.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::Mode;

use crate::args::DeliveryProtocol;

/// Where the section lives in the file.
pub const SECTION: &str = "feature.network.incoming";

/// What the section asks for. `None` = not set in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncomingConfig {
    pub mode: Option<Mode>,
    /// `None`: no filter (the whole port).
    pub filter: Option<HttpFilter>,
    pub ports: Option<Vec<u16>>,
    pub delivery: DeliveryConfig,
    /// Keys mirrord knows that kubectl-steal does not use.
    pub warnings: Vec<String>,
}

/// `https_delivery` / `tls_delivery`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryConfig {
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
pub fn load(path: &Path) -> Result<IncomingConfig, ConfigError> {
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

/// Parses the text of a whole mirrord config and extracts its incoming section.
pub fn parse(text: &str, format: Format) -> Result<IncomingConfig, ConfigError> {
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

/// Extracts the incoming section of an already parsed config.
pub fn from_value(root: &Value) -> Result<IncomingConfig, ConfigError> {
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
            _ => {
                return Err(key_err(
                    SECTION,
                    "missing: the file has no incoming traffic section",
                ));
            }
        };
    }
    incoming(at)
}

fn incoming(v: &Value) -> Result<IncomingConfig, ConfigError> {
    let mut cfg = IncomingConfig::default();
    // mirrord's shorthand: `"incoming": "steal"`.
    if let Value::String(_) = v {
        cfg.mode = Some(mode(v, SECTION)?);
        return Ok(cfg);
    }
    let obj = object(v, SECTION)?;
    if obj.contains_key("https_delivery") && obj.contains_key("tls_delivery") {
        return Err(key_err(
            SECTION,
            "both `https_delivery` and `tls_delivery` are set; keep one (`tls_delivery` is its older name)",
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
                if ports.is_some() {
                    cfg.ports = ports;
                }
            }
            "ports" => {
                let ports = port_list(value, &key)?;
                cfg.ports.get_or_insert(ports);
            }
            "https_delivery" | "tls_delivery" => cfg.delivery = delivery(value, &key)?,
            "port_mapping"
            | "ignore_localhost"
            | "ignore_ports"
            | "listen_ports"
            | "on_concurrent_steal" => cfg
                .warnings
                .push(format!("{key} is not used by kubectl-steal (ignored)")),
            other => {
                return Err(key_err(
                    &key,
                    format!(
                        "unknown key {other:?} (expected mode, http_filter, ports, https_delivery or tls_delivery)"
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
            "all_of" => filters.push((name, HttpFilter::AllOf(composite(value, &key)?))),
            "any_of" => filters.push((name, HttpFilter::AnyOf(composite(value, &key)?))),
            "ports" => ports = Some(port_list(value, &key)?),
            other => {
                return Err(key_err(
                    &key,
                    format!(
                        "unknown key {other:?} (expected header_filter, path_filter, method_filter, all_of, any_of or ports)"
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
    items
        .iter()
        .enumerate()
        .map(|(i, item)| inner_filter(item, &format!("{key}[{i}]")))
        .collect()
}

/// An item of `all_of` / `any_of`: `{"header": ..}`, `{"path": ..}` or `{"method": ..}`.
fn inner_filter(v: &Value, key: &str) -> Result<HttpFilter, ConfigError> {
    let obj = object(v, key)?;
    let mut entries = obj.iter();
    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
        return Err(key_err(
            key,
            "a filter item has exactly one key: header, path or method",
        ));
    };
    match name.as_str() {
        "header" | "path" | "method" => leaf(name, value, &format!("{key}.{name}")),
        other => Err(key_err(
            key,
            format!("unknown filter kind {other:?} (expected header, path or method)"),
        )),
    }
}

/// A header or path regex (checked here so the error names the key), or a method.
fn leaf(kind: &str, v: &Value, key: &str) -> Result<HttpFilter, ConfigError> {
    let s = string(v, key)?;
    let filter = match kind {
        "header" => HttpFilter::Header(s),
        "path" => HttpFilter::Path(s),
        _ => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(key_err(key, format!("{s:?} is not an HTTP method")));
            }
            HttpFilter::Method(s.to_ascii_uppercase())
        }
    };
    filter
        .compile()
        .map_err(|e| key_err(key, format!("invalid regex {:?}: {}", e.pattern, e.reason)))?;
    Ok(filter)
}

fn delivery(v: &Value, at: &str) -> Result<DeliveryConfig, ConfigError> {
    let obj = object(v, at)?;
    let mut d = DeliveryConfig::default();
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
                let roots = match value {
                    Value::String(s) => vec![PathBuf::from(s)],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| string(item, &format!("{key}[{i}]")).map(PathBuf::from))
                        .collect::<Result<_, _>>()?,
                    other => {
                        return Err(key_err(
                            &key,
                            format!("expected a list of PEM paths, found {}", self::kind(other)),
                        ));
                    }
                };
                d.trust_roots = Some(roots);
            }
            "server_name" => d.server_name = Some(string(value, &key)?),
            "server_cert" => d.server_cert = Some(PathBuf::from(string(value, &key)?)),
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

fn port_list(v: &Value, key: &str) -> Result<Vec<u16>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(key_err(
            key,
            format!("expected a list of ports, found {}", kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0)
                .ok_or_else(|| {
                    key_err(
                        &format!("{key}[{i}]"),
                        format!("{item} is not a port (1-65535)"),
                    )
                })
        })
        .collect()
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

    fn json(s: &str) -> Result<IncomingConfig, ConfigError> {
        parse(s, Format::Json)
    }

    fn err(s: &str) -> String {
        json(s).unwrap_err().to_string()
    }

    #[test]
    fn full_section_json() {
        let c = json(
            r#"{"target": "deploy/x", "feature": {"network": {"incoming": {
                "mode": "steal",
                "http_filter": {"all_of": [{"header": "^x-steal: yes$"}, {"path": "^/api"}], "ports": [443]},
                "https_delivery": {"protocol": "tcp", "trust_roots": ["/r.pem"], "server_name": "app.local", "server_cert": "/c.pem"}
            }}}}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Some(Mode::Steal));
        assert_eq!(c.ports, Some(vec![443]));
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
        assert_eq!(c.delivery.server_cert, Some(PathBuf::from("/c.pem")));
    }

    #[test]
    fn yaml_equals_json() {
        let y = parse(
            "feature:\n  network:\n    incoming:\n      mode: mirror\n      http_filter:\n        header_filter: 'x-a: 1'\n      ports: [8443]\n      tls_delivery:\n        protocol: tls\n",
            Format::Yaml,
        )
        .unwrap();
        let j = json(
            r#"{"feature":{"network":{"incoming":{"mode":"mirror","http_filter":{"header_filter":"x-a: 1"},"ports":[8443],"tls_delivery":{"protocol":"tls"}}}}}"#,
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(y.mode, Some(Mode::Mirror));
        assert_eq!(y.filter, Some(HttpFilter::Header("x-a: 1".into())));
    }

    #[test]
    fn shorthand_and_no_filter() {
        let c = json(r#"{"feature":{"network":{"incoming":"mirror"}}}"#).unwrap();
        assert_eq!(c.mode, Some(Mode::Mirror));
        assert_eq!(c.filter, None);
        let c = json(r#"{"feature":{"network":{"incoming":{"http_filter":{"ports":[443]}}}}}"#)
            .unwrap();
        assert_eq!((c.filter, c.ports), (None, Some(vec![443])));
    }

    #[test]
    fn http_filter_ports_win_over_incoming_ports() {
        let c = json(
            r#"{"feature":{"network":{"incoming":{"http_filter":{"ports":[443]},"ports":[80]}}}}"#,
        )
        .unwrap();
        assert_eq!(c.ports, Some(vec![443]));
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
                r#"{"feature":{"network":{"incoming":{"http_filter":{"any_of":[{"path":"/a"},{"path":7}]}}}}}"#,
                "feature.network.incoming.http_filter.any_of[1].path: expected a string",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"ports":[443, 70000]}}}}"#,
                "feature.network.incoming.ports[1]: 70000 is not a port",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"https_delivery":{"protocol":"udp"}}}}}"#,
                "feature.network.incoming.https_delivery.protocol: unknown protocol \"udp\"",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"https_delivery":{"trust_root":["/a"]}}}}}"#,
                "feature.network.incoming.https_delivery.trust_root: unknown key",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"http_filter":{"header_filter":"a","path_filter":"b"}}}}}"#,
                "feature.network.incoming.http_filter: only one filter may be set",
            ),
            (
                r#"{"feature":{"network":{}}}"#,
                "feature.network.incoming: missing",
            ),
            (
                r#"{"feature":{"network":{"incoming":{"mode":"off"}}}}"#,
                "feature.network.incoming.mode: mode \"off\"",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.starts_with(want), "{text}\n  gave {e}\n  want {want}");
        }
    }

    #[test]
    fn mirrord_keys_we_do_not_use_warn() {
        let c =
            json(r#"{"feature":{"network":{"incoming":{"mode":"steal","ignore_ports":[9999]}}}}"#)
                .unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("ignore_ports"));
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
        assert_eq!(load(&p).unwrap().mode, Some(Mode::Steal));
        let p = dir.path().join("m.conf");
        std::fs::write(&p, "feature:\n  network:\n    incoming: mirror\n").unwrap();
        assert_eq!(load(&p).unwrap().mode, Some(Mode::Mirror));
        let e = load(&dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(e.contains("cannot read the mirrord config"), "{e}");
    }
}
