//! `kubectl steal --explain TARGET`: why requests are (or are not) stolen. For each pod of the
//! target: the configs that matched and those that did not (pattern, selector, namespace), the
//! plan's ports with their TLS settings, discarded and rejected entries, each port's live state
//! and the active sessions (from the sidecar), and where a sample request would go. Matching and
//! the plan are `tls-steal-crds`' (`match_config`, `build_plan`: what the webhook computes);
//! nothing is registered.
//!
//! [`report`] computes from the pod and the configs (pure), [`render`] prints for people.

mod render;
mod report;
#[cfg(test)]
mod tests;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tls_steal_crds::plan::ConfigSource;
use tls_steal_crds::session::ExplainRequest;
use tls_steal_crds::target::{Owner, OwnerKind};
use tls_steal_crds::{MirrordClusterTlsStealConfig, MirrordTlsStealConfig, PodTarget};

use crate::args::Args;
use crate::inspect::{Format, InspectError, Scope, print_json};
use report::{PodReport, Report, RequestReport};

/// `--explain` cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("--explain needs TARGET (e.g. deploy/web)")]
    NoTarget,
    #[error("--header {0:?}: a sample header is `name: value`")]
    Header(String),
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("cannot list the MirrordTlsStealConfigs of namespace {namespace}: {source}")]
    Configs {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// The sample request of the command line: `--header 'name: value'`, `--path`, `--method`.
/// `None` when none of them (nor `--port`) is given.
pub fn sample(args: &Args) -> Result<Option<ExplainRequest>, ExplainError> {
    if args.headers.is_empty()
        && args.paths.is_empty()
        && args.methods.is_empty()
        && args.ports.is_empty()
    {
        return Ok(None);
    }
    let headers = args
        .headers
        .iter()
        .map(|h| match h.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().into(), v.trim().into())),
            _ => Err(ExplainError::Header(h.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(ExplainRequest {
        port: 0,
        method: args.methods.first().cloned(),
        path: args.paths.first().cloned(),
        headers,
        body: None,
    }))
}

/// Completes the owner chain where names cannot (a ReplicaSet without a hash label, a Job),
/// as the webhook does at admission. Lookup failures become notes.
async fn complete_owners(scope: &Scope, target: &mut PodTarget, notes: &mut Vec<String>) {
    let lookups: Vec<Owner> = target.needs_lookup().into_iter().cloned().collect();
    for owner in lookups {
        let refs = match owner.kind {
            OwnerKind::ReplicaSet => {
                Api::<ReplicaSet>::namespaced(scope.client.clone(), &scope.namespace)
                    .get(&owner.name)
                    .await
                    .map(|o| o.metadata.owner_references)
            }
            OwnerKind::Job => Api::<Job>::namespaced(scope.client.clone(), &scope.namespace)
                .get(&owner.name)
                .await
                .map(|o| o.metadata.owner_references),
            _ => continue,
        };
        match refs {
            Ok(refs) => {
                for r in refs.iter().flatten() {
                    if let Some(kind) = OwnerKind::from_kind(&r.kind) {
                        target.add_owner(Owner::new(kind, &r.name));
                    }
                }
            }
            Err(e) => notes.push(format!(
                "cannot read {} to complete the owner chain ({e}); configs naming its owner may be missed",
                owner.path()
            )),
        }
    }
}

/// Every config that could apply to pods of the namespace; cluster-wide ones that cannot be
/// listed become a note.
async fn configs(
    scope: &Scope,
    notes: &mut Vec<String>,
) -> Result<Vec<ConfigSource>, ExplainError> {
    let namespaced: Api<MirrordTlsStealConfig> =
        Api::namespaced(scope.client.clone(), &scope.namespace);
    let mut sources: Vec<ConfigSource> = namespaced
        .list(&ListParams::default())
        .await
        .map_err(|source| ExplainError::Configs {
            namespace: scope.namespace.clone(),
            source,
        })?
        .items
        .iter()
        .map(ConfigSource::from)
        .collect();
    let cluster: Api<MirrordClusterTlsStealConfig> = Api::all(scope.client.clone());
    match cluster.list(&ListParams::default()).await {
        Ok(list) => sources.extend(list.items.iter().map(ConfigSource::from)),
        Err(e) => notes.push(format!(
            "cluster-wide configs (MirrordClusterTlsStealConfig) not listed: {e}"
        )),
    }
    Ok(sources)
}

/// Adds what the pod's sidecar says: live port states, sessions, the sample's destinations.
async fn ask_sidecar(
    scope: &Scope,
    pod: &Pod,
    report: &mut PodReport,
    sample: Option<&ExplainRequest>,
    ports: &[u16],
) {
    let Some(conn) = scope.sidecar(pod).await else {
        if report.sidecar {
            report.sidecar_error = Some("the pod is not running".into());
        }
        return;
    };
    let mut api = match conn {
        Ok(api) => api,
        Err(e) => {
            report.sidecar_error = Some(e.to_string());
            return;
        }
    };
    match api.status().await {
        Ok(status) => {
            for p in &mut report.ports {
                p.live = status.ports.iter().find(|s| s.port == p.plan.port).cloned();
            }
            report.sessions = status.sessions;
        }
        Err(e) => report.sidecar_error = Some(e.to_string()),
    }
    let Some(sample) = sample else { return };
    let asked: Vec<u16> = match ports.is_empty() {
        true => report.ports.iter().map(|p| p.plan.port).collect(),
        false => ports.to_vec(),
    };
    for port in asked {
        let request = ExplainRequest {
            port,
            ..sample.clone()
        };
        let (answer, error) = match api.explain(&request).await {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e.to_string())),
        };
        report.requests.push(RequestReport {
            port,
            answer,
            error,
        });
    }
}

/// Runs `kubectl steal --explain`.
pub async fn run(args: &Args) -> Result<(), ExplainError> {
    let target = args.target.as_deref().ok_or(ExplainError::NoTarget)?;
    let sample = sample(args)?;
    let scope = Scope::open(target, args.namespace.clone(), args.context.clone()).await?;
    let mut notes = Vec::new();
    let configs = configs(&scope, &mut notes).await?;
    let mut pods = Vec::new();
    for pod in &scope.pods {
        let mut target = PodTarget::from_pod(pod);
        let mut pod_notes = Vec::new();
        complete_owners(&scope, &mut target, &mut pod_notes).await;
        let mut report = report::pod_report(pod, &target, &scope.namespace, &configs);
        report.notes = pod_notes;
        for port in &args.ports {
            if !report.ports.iter().any(|p| p.plan.port == *port) {
                report.notes.push(format!(
                    "port {port} is not in this pod's plan: it is not captured, its requests reach the app directly and cannot be stolen"
                ));
            }
        }
        if !args.ports.is_empty() {
            report.ports.retain(|p| args.ports.contains(&p.plan.port));
        }
        ask_sidecar(&scope, pod, &mut report, sample.as_ref(), &args.ports).await;
        pods.push(report);
    }
    if pods.is_empty() {
        notes.push(format!("{} has no pods", scope.target));
    }
    let report = Report {
        target: scope.target.to_string(),
        namespace: scope.namespace.clone(),
        sample,
        notes,
        pods,
    };
    match args.output.unwrap_or_default() {
        Format::Json => print_json(&report),
        Format::Human => print!("{}", render::render(&report)),
    }
    Ok(())
}
