//! `target`: a string, or `{path, namespace}` with `path` a string or mirrord's object form.

use serde_json::Value;

use super::values::{key_err, kind, non_empty};
use super::{ConfigError, FileTarget};

/// `target`: `"deploy/web"`, or `{path, namespace}` with `path` a string or mirrord's object
/// form (`{"deployment": "web", "container": "app"}`).
pub(super) fn target(v: &Value) -> Result<FileTarget, ConfigError> {
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
