//! `http_filter`: mirrord's filter kinds and composites, each leaf compiled at once so a bad
//! regex or JSONPath is reported at its key.

use serde_json::Value;
use tls_steal_crds::filter::{BodyFilter, HttpFilter};

use super::ConfigError;
use super::values::{key_err, kind, non_empty, object, port_list, string};

/// The filter and the `ports` of `http_filter`.
pub(super) fn http_filter(
    v: &Value,
    at: &str,
) -> Result<(Option<HttpFilter>, Option<Vec<u16>>), ConfigError> {
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
