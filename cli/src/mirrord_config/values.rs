//! Typed reads of JSON values; every error names the key at fault.

use serde_json::{Map, Value};

use super::ConfigError;

pub(super) fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

/// A list of ports; with `single`, one port alone is accepted too (mirrord's `VecOrSingle`).
pub(super) fn port_list(v: &Value, key: &str, single: bool) -> Result<Vec<u16>, ConfigError> {
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
pub(super) fn port_pairs(v: &Value, key: &str) -> Result<Vec<(u16, u16)>, ConfigError> {
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

pub(super) fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| key_err(key, format!("expected a mapping, found {}", kind(v))))
}

pub(super) fn string(v: &Value, key: &str) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| key_err(key, format!("expected a string, found {}", kind(v))))
}

/// A string that is not empty (mirrord refuses empty filter strings: they would look configured
/// yet match everything).
pub(super) fn non_empty(v: &Value, key: &str) -> Result<String, ConfigError> {
    let s = string(v, key)?;
    if s.is_empty() {
        return Err(key_err(key, "cannot be an empty string"));
    }
    Ok(s)
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
