//! `tls-steal-webhook inject -f obj.yaml --configs dir/`: prints the objects as the webhook would
//! mutate them, without a cluster (like `istioctl kube-inject`).
//!
//! A Pod is mutated as at admission. For a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or
//! CronJob the pod template is mutated as if it were a pod of that workload (its target paths are
//! the workload's, e.g. `deploy/web`). Other documents are printed unchanged. The mutation is
//! applied as the same JSON patch the webhook would send, onto the document as read, so fields
//! unknown to this build are kept. Sidecar mode `auto` means native here (no API server to ask).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::Value;
use tls_steal_crds::{
    ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig, Owner, OwnerKind, PodTarget,
};

use crate::mutate::mutation;
use crate::serve::SidecarArgs;
use crate::settings::{Settings, SidecarMode};

/// `inject` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct InjectArgs {
    /// Pod or workload manifest (YAML or JSON, several documents allowed); `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Directory of MirrordTlsStealConfig / MirrordClusterTlsStealConfig manifests (*.yaml,
    /// *.yml, *.json; not recursive).
    #[arg(long)]
    pub configs: PathBuf,
    /// Namespace of objects (and namespaced configs) that do not name one.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long, default_value = "yaml", value_parser = ["yaml", "json"])]
    pub output: String,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

/// Why `inject` failed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        /// Boxed: the YAML error is large and errors are rare.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path}: {kind} {name:?}")]
    Object {
        path: PathBuf,
        kind: String,
        name: String,
        #[source]
        source: DocError,
    },
    #[error("writing the JSON output")]
    Json(#[source] serde_json::Error),
    #[error("writing the YAML output")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// Why one document could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("not a valid config")]
    Config(#[source] serde_json::Error),
    #[error("no pod template")]
    NoTemplate,
    #[error("no pod spec")]
    NoSpec,
    #[error("not a valid pod")]
    Pod(#[source] serde_json::Error),
    #[error("writing the patch")]
    Patch(#[source] serde_json::Error),
    #[error("applying the patch")]
    Apply(#[source] json_patch::PatchError),
}

fn read(path: &Path) -> Result<String, InjectError> {
    let io = |source| InjectError::Io {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(io)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

/// Parses every YAML (or JSON) document of a file.
pub fn parse_documents(path: &Path, text: &str) -> Result<Vec<Value>, InjectError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|source| InjectError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Every config of the files of `dir` (namespaced ones without a namespace get `namespace`).
pub fn load_configs(dir: &Path, namespace: &str) -> Result<Vec<ConfigSource>, InjectError> {
    let entries = std::fs::read_dir(dir).map_err(|source| InjectError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    let mut configs = Vec::new();
    for path in files {
        for doc in parse_documents(&path, &read(&path)?)? {
            let kind = doc
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let bad = |e: serde_json::Error| InjectError::Object {
                path: path.clone(),
                kind: kind.clone(),
                name: doc
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                source: DocError::Config(e),
            };
            match kind.as_str() {
                "MirrordTlsStealConfig" => {
                    let mut c: MirrordTlsStealConfig =
                        serde_json::from_value(doc.clone()).map_err(bad)?;
                    c.metadata
                        .namespace
                        .get_or_insert_with(|| namespace.to_owned());
                    configs.push(ConfigSource::from(&c));
                }
                "MirrordClusterTlsStealConfig" => {
                    let c: MirrordClusterTlsStealConfig =
                        serde_json::from_value(doc.clone()).map_err(bad)?;
                    configs.push(ConfigSource::from(&c));
                }
                _ => {}
            }
        }
    }
    Ok(configs)
}

/// Where the pod template of a workload kind lives, and the owner kind it stands for.
fn template_location(kind: &str) -> Option<(&'static str, OwnerKind)> {
    Some(match kind {
        "Deployment" => ("/spec/template", OwnerKind::Deployment),
        "StatefulSet" => ("/spec/template", OwnerKind::StatefulSet),
        "DaemonSet" => ("/spec/template", OwnerKind::DaemonSet),
        "ReplicaSet" => ("/spec/template", OwnerKind::ReplicaSet),
        "Job" => ("/spec/template", OwnerKind::Job),
        "CronJob" => ("/spec/jobTemplate/spec/template", OwnerKind::CronJob),
        _ => return None,
    })
}

/// Builds the target (paths, owners) of the pod of a document.
type TargetFn = Box<dyn Fn(&Pod) -> PodTarget>;

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocResult {
    Injected,
    Skipped(&'static str),
    NotAWorkload,
}

/// Mutates one document in place.
pub fn inject_document(
    doc: &mut Value,
    default_namespace: &str,
    configs: &[ConfigSource],
    settings: &Settings,
) -> Result<DocResult, DocError> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_owned();
    let (pointer, target_of): (&str, TargetFn) = if kind == "Pod" {
        ("", Box::new(PodTarget::from_pod))
    } else if let Some((ptr, owner_kind)) = template_location(&kind) {
        let owner = Owner::new(owner_kind, name.clone());
        let f = move |p: &Pod| {
            let tpl = PodTemplateSpec {
                metadata: Some(p.metadata.clone()),
                spec: p.spec.clone(),
            };
            PodTarget::from_template(&tpl, vec![owner.clone()])
        };
        (ptr, Box::new(f))
    } else {
        return Ok(DocResult::NotAWorkload);
    };
    let raw = doc.pointer_mut(pointer).ok_or(DocError::NoTemplate)?;
    // The typed pod: for a template, its metadata and spec.
    let mut pod_value = serde_json::json!({
        "metadata": raw.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
        "spec": raw.get("spec").cloned().unwrap_or(Value::Null),
    });
    if pod_value["spec"].is_null() {
        return Err(DocError::NoSpec);
    }
    if kind == "Pod"
        && let Some(obj) = pod_value.as_object_mut()
    {
        obj.insert("apiVersion".into(), "v1".into());
        obj.insert("kind".into(), "Pod".into());
    }
    let pod: Pod = serde_json::from_value(pod_value).map_err(DocError::Pod)?;
    let target = target_of(&pod);
    let injection = match mutation(&pod, &target, &namespace, configs, settings) {
        Err(r) => return Ok(DocResult::Skipped(r.as_str())),
        Ok(m) => m,
    };
    if !injection.undeclared_ports.is_empty() {
        tracing::warn!(ports = ?injection.undeclared_ports, %kind, %name, "captured ports that no container declares");
    }
    let patch = injection.patch(&pod).map_err(DocError::Patch)?;
    if raw.get("metadata").is_none()
        && let Some(obj) = raw.as_object_mut()
    {
        obj.insert("metadata".into(), serde_json::json!({}));
    }
    json_patch::patch(raw, &patch).map_err(DocError::Apply)?;
    Ok(DocResult::Injected)
}

/// Runs the command, returning what to print.
pub fn run(args: &InjectArgs) -> Result<String, InjectError> {
    let settings = args.sidecar.settings(SidecarMode::Native);
    let configs = load_configs(&args.configs, &args.namespace)?;
    let mut docs = parse_documents(&args.file, &read(&args.file)?)?;
    for doc in &mut docs {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match inject_document(doc, &args.namespace, &configs, &settings) {
            Ok(DocResult::Injected) => tracing::info!(%kind, %name, "injected"),
            Ok(DocResult::Skipped(reason)) => tracing::info!(%kind, %name, reason, "not injected"),
            Ok(DocResult::NotAWorkload) => {}
            Err(source) => {
                return Err(InjectError::Object {
                    path: args.file.clone(),
                    kind,
                    name,
                    source,
                });
            }
        }
    }
    if args.output == "json" {
        let v = if docs.len() == 1 {
            docs.remove(0)
        } else {
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs})
        };
        return serde_json::to_string_pretty(&v)
            .map(|s| s + "\n")
            .map_err(InjectError::Json);
    }
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(d).map_err(InjectError::Yaml)?);
    }
    Ok(out)
}
