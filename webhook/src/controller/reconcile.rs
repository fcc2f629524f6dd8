//! The reconcile function of the three workload controllers and its error policy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use tls_steal_crds::StealPlan;

use super::desired::{Adoption, Decision, Workload, WorkloadState};
use super::error::{Error, is_conflict, is_not_found};
use super::{CONFIG_HASH_ANNOTATION, Context, FIELD_MANAGER, ROLLOUT_ANNOTATION};

/// How soon a workload without a hash annotation and without pods yet is looked at again.
pub const ADOPTION_RECHECK: Duration = Duration::from_secs(5);

/// Brings one workload's template hash to what the current configs give its pods.
///
/// In sync: no API request at all. Workload recording no hash (no template annotation, no
/// `tls-steal.io/adopted-hash`) but a non-empty desired hash: its pods are listed once and judged
/// by [`super::desired::adoption`] — all carrying the desired hash means one JSON patch of the
/// workload's own metadata recording `tls-steal.io/adopted-hash` (no rollout), no pods yet means
/// a recheck in [`ADOPTION_RECHECK`], no pods because it wants none means no request.
/// Out of date and annotated `tls-steal.io/rollout: "false"`: a warning event on the workload
/// (once per desired hash), no patch. Otherwise exactly one JSON patch (resourceVersion `test` +
/// annotation `add`); on a conflict the workload is read again at once and the decision remade,
/// up to `conflict_retries` attempts; then the error policy's backoff ([`super::backoff`]) waits.
pub async fn reconcile<W: Workload>(workload: Arc<W>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconcile();
    let (Some(ns), Some(name)) = (workload.namespace(), workload.meta().name.clone()) else {
        return Err(Error::InvalidObject(W::KIND.as_str()));
    };
    let api: Api<W> = Api::namespaced(ctx.client.clone(), &ns);
    // Done until something changes: the periodic resync comes as a trigger (`run.rs`).
    let done = Action::await_change();
    let mut obj = workload;
    let mut attempt = 0u32;
    // The live pods' plan hashes, listed at most once per reconciliation.
    let mut pod_hashes: Option<Option<Vec<String>>> = None;
    loop {
        let state = ctx.state_of(&*obj);
        let id = state.id();
        let plan = state.desired_plan(&ctx.configs_for(&ns));
        let decision = state.decide(&plan.hash);
        // Set when every live pod already carries the plan: record it on the workload instead
        // of rolling it out.
        let mut adopt = false;
        if decision != Decision::InSync && super::desired::recorded_hash(&*obj).is_none() {
            let hashes = match &pod_hashes {
                Some(h) => h,
                None => pod_hashes.insert(live_pod_hashes(&*obj, &ns, &id, &ctx).await?),
            };
            // `None`: the pods cannot be judged; decide from the template alone, as before.
            if let Some(hashes) = hashes {
                match super::desired::adoption(&plan.hash, hashes, obj.expects_no_pods()) {
                    // No pod at all (wants none): nothing to record, a later pod gets the plan
                    // from the webhook and a plan removal has no pod to take it from.
                    Adoption::InSync if hashes.is_empty() => {
                        tracing::debug!(workload = %id, "wants no pods; not rolling out");
                        ctx.forget(&id);
                        return Ok(done);
                    }
                    Adoption::InSync => adopt = true,
                    Adoption::WaitForPods => {
                        tracing::debug!(workload = %id, "no pods yet; looking again shortly");
                        ctx.backoff.forget(&id);
                        return Ok(Action::requeue(ADOPTION_RECHECK));
                    }
                    Adoption::Rollout => {}
                }
            }
        }
        let patch = if adopt {
            // Not a rollout: the opt-out annotation does not apply.
            super::patches::adoption_patch(obj.meta(), &plan.hash)
        } else {
            match decision {
                Decision::InSync => {
                    ctx.forget(&id);
                    return Ok(done);
                }
                Decision::RolloutDisabled => {
                    ctx.backoff.forget(&id);
                    report_disabled(&*obj, &state, &plan, &ctx).await;
                    return Ok(done);
                }
                Decision::Rollout => {}
            }
            super::patches::rollout_patch(obj.meta(), obj.template().as_deref(), &plan.hash)
        };
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.patch(&name, &params, &Patch::<()>::Json(patch)).await {
            Ok(_) if adopt => {
                ctx.forget(&id);
                tracing::info!(workload = %id, hash = %plan.hash, "pods already carry the plan; recorded it without a rollout");
                ctx.status_dirty.notify_one();
                return Ok(done);
            }
            Ok(_) => {
                ctx.forget(&id);
                ctx.metrics.rollout(W::KIND);
                tracing::info!(workload = %id, from = %state.current_hash, to = %plan.hash, "rolled out");
                record_rollout(&*obj, &state, &plan, &ctx).await;
                ctx.status_dirty.notify_one();
                return Ok(done);
            }
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) if is_conflict(&e) => {
                attempt += 1;
                if attempt >= ctx.settings.conflict_retries.max(1) {
                    return Err(Error::Conflict {
                        workload: id,
                        attempts: attempt,
                        last: e,
                    });
                }
                tracing::debug!(workload = %id, attempt, "patch conflict; reading the workload again");
                match api.get_opt(&name).await? {
                    Some(fresh) => obj = Arc::new(fresh),
                    None => return Ok(Action::await_change()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The plan hashes of the workload's live pods (listed by its `spec.selector`). `None` when
/// they cannot be listed: no usable selector, or the controller may not list pods (403).
async fn live_pod_hashes<W: Workload>(
    obj: &W,
    ns: &str,
    id: &str,
    ctx: &Context,
) -> Result<Option<Vec<String>>, Error> {
    let Some(selector) = obj.pod_selector() else {
        tracing::debug!(workload = %id, "no usable pod selector; judging the template alone");
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => Ok(Some(super::desired::live_pod_hashes(&list.items))),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::warn!(workload = %id, "may not list pods; judging the template alone");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Counts the error and requeues the workload with a per-workload exponential backoff.
pub fn error_policy<W: Workload>(workload: Arc<W>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.kind());
    let id = super::desired::workload_id(
        workload.namespace().as_deref().unwrap_or_default(),
        W::KIND,
        &workload.name_any(),
    );
    let delay = ctx.backoff.failed(&id);
    tracing::warn!(workload = %id, error = %super::error::chain(error), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn config_list(plan: &StealPlan) -> String {
    if plan.configs.is_empty() {
        "none".into()
    } else {
        plan.configs.join(", ")
    }
}

async fn record_rollout<W: Workload>(
    obj: &W,
    state: &WorkloadState,
    plan: &StealPlan,
    ctx: &Context,
) {
    let id = state.id();
    let note = if plan.hash.is_empty() {
        let why = state
            .no_plan
            .map(|r| r.describe())
            .unwrap_or_else(|| "no config applies any more".into());
        format!(
            "tls-steal plan removed ({why}): rolling out so the pods lose the sidecar \
             ({CONFIG_HASH_ANNOTATION} {:?} -> \"\")",
            state.current_hash
        )
    } else {
        format!(
            "tls-steal plan changed: rolling out ({CONFIG_HASH_ANNOTATION} {:?} -> {:?}; ports {:?}; configs {})",
            state.current_hash,
            plan.hash,
            plan.port_numbers(),
            config_list(plan)
        )
    };
    ctx.publish(
        &Event {
            type_: EventType::Normal,
            reason: "RolloutTriggered".into(),
            note: Some(note),
            action: "Rollout".into(),
            secondary: None,
        },
        &obj.object_ref(&()),
    )
    .await;
    for config in &plan.configs {
        let Some(reference) = ctx.config_reference(config) else {
            continue;
        };
        ctx.publish(
            &Event {
                type_: EventType::Normal,
                reason: "RolloutTriggered".into(),
                note: Some(format!(
                    "rolled out {id} so its pods get plan {:?} (ports {:?})",
                    plan.hash,
                    plan.port_numbers()
                )),
                action: "Rollout".into(),
                secondary: Some(obj.object_ref(&())),
            },
            &reference,
        )
        .await;
    }
}

/// A warning event on the workload, once per desired hash (the config status names it too).
async fn report_disabled<W: Workload>(
    obj: &W,
    state: &WorkloadState,
    plan: &StealPlan,
    ctx: &Context,
) {
    let id = state.id();
    if !ctx.first_report(&id, &plan.hash) {
        return;
    }
    ctx.metrics.rollout_disabled(W::KIND);
    tracing::info!(workload = %id, current = %state.current_hash, desired = %plan.hash, "rollout disabled by annotation");
    ctx.publish(
        &Event {
            type_: EventType::Warning,
            reason: "RolloutDisabled".into(),
            note: Some(format!(
                "not rolled out because of {ROLLOUT_ANNOTATION}: \"false\": the pods keep plan {:?} \
                 while the current configs ({}) give {:?}",
                state.current_hash,
                config_list(plan),
                plan.hash
            )),
            action: "Rollout".into(),
            secondary: None,
        },
        &obj.object_ref(&()),
    )
    .await;
    ctx.status_dirty.notify_one();
}
