//! Writes every config's status subresource from the caches (see [`super::status`]), and the
//! sync gauges. Runs after any change, debounced, and periodically.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tls_steal_crds::status::TlsStealConfigStatus;
use tls_steal_crds::{ConfigSource, MirrordClusterTlsStealConfig, MirrordTlsStealConfig};

use super::error::Error;
use super::status::{ConfigInput, compute_statuses};
use super::{Context, FIELD_MANAGER};

enum Target {
    Namespaced(Arc<MirrordTlsStealConfig>),
    Cluster(Arc<MirrordClusterTlsStealConfig>),
}

fn inputs_of<'a>(
    sources: &'a [ConfigSource],
    previous: &'a [(Option<i64>, Option<TlsStealConfigStatus>)],
) -> Vec<ConfigInput<'a>> {
    sources
        .iter()
        .zip(previous)
        .map(|(source, (generation, previous))| ConfigInput {
            source,
            generation: *generation,
            previous: previous.as_ref(),
        })
        .collect()
}

/// Recomputes every config's status and patches those that changed. Returns how many were
/// patched.
pub async fn sync_statuses(ctx: &Context) -> Result<usize, Error> {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let workloads = ctx.workload_states();
    let mut targets = Vec::new();
    let mut sources = Vec::new();
    for c in ctx.caches.namespaced_configs.state() {
        sources.push(ConfigSource::from(c.as_ref()));
        targets.push(Target::Namespaced(c));
    }
    for c in ctx.caches.cluster_configs.state() {
        sources.push(ConfigSource::from(c.as_ref()));
        targets.push(Target::Cluster(c));
    }
    let previous: Vec<(Option<i64>, Option<TlsStealConfigStatus>)> = targets
        .iter()
        .map(|t| match t {
            Target::Namespaced(c) => (c.metadata.generation, c.status.clone()),
            Target::Cluster(c) => (c.metadata.generation, c.status.clone()),
        })
        .collect();
    // Every workload against every config of its namespace: seconds of CPU at thousands of
    // each, so off the async workers (the Lease renewal must not wait behind it).
    let (statuses, counts, sources, previous) = {
        let now = now.clone();
        let computed = tokio::task::spawn_blocking(move || {
            let (statuses, counts) =
                compute_statuses(&inputs_of(&sources, &previous), &workloads, &now);
            (statuses, counts, sources, previous)
        })
        .await;
        match computed {
            Ok(c) => c,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    };
    let inputs = inputs_of(&sources, &previous);
    ctx.metrics.set_sync_counts(counts);

    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut patched = 0;
    let mut first_error = None;
    for ((target, input), status) in targets.iter().zip(&inputs).zip(statuses) {
        let uid = match target {
            Target::Namespaced(c) => c.uid(),
            Target::Cluster(c) => c.uid(),
        }
        .unwrap_or_else(|| input.source.id());
        if input.previous == Some(&status) || ctx.already_written(&uid, &status) {
            continue;
        }
        let body = Patch::Merge(json!({ "status": status }));
        let result = match target {
            Target::Namespaced(c) => {
                let api: Api<MirrordTlsStealConfig> =
                    Api::namespaced(ctx.client.clone(), &c.namespace().unwrap_or_default());
                api.patch_status(&c.name_any(), &params, &body)
                    .await
                    .map(drop)
            }
            Target::Cluster(c) => {
                let api: Api<MirrordClusterTlsStealConfig> = Api::all(ctx.client.clone());
                api.patch_status(&c.name_any(), &params, &body)
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => {
                patched += 1;
                ctx.metrics.status_update();
                ctx.remember_written(&uid, status);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(config = %input.source.id(), error = %e, "writing the config status");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(patched),
    }
}
