//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several webhook replicas only
//! one runs the rollout controller.
//!
//! The usual client-go protocol: a candidate takes the Lease when it is free, expired (no renewal
//! for `leaseDurationSeconds`) or already its own, writing it with `replace` so the API server's
//! resourceVersion check settles races; the leader renews every `retry_period` and steps down
//! (drops the controller) when it has not renewed for `renew_deadline`, which is shorter than the
//! lease duration, so a new leader can only start after the old one stopped. On a clean shutdown
//! the leader releases the Lease so a successor takes over at once.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use super::metrics::ControllerMetrics;

/// Lease parameters.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        LeaseSettings {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether `identity` may write `lease` at `now`: free, expired, or already ours.
pub fn can_take(lease: &Lease, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(MicroTime(renewed)) => *renewed + duration < now,
        None => true,
    }
}

/// The spec `identity` writes when taking or renewing `previous`.
pub fn taken_spec(previous: Option<&LeaseSpec>, s: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let mut spec = previous.cloned().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(s.identity.as_str());
    if !ours {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions =
            Some(spec.lease_transitions.unwrap_or(0) + i32::from(spec.holder_identity.is_some()));
    }
    spec.holder_identity = Some(s.identity.clone());
    spec.lease_duration_seconds = Some(s.lease_duration.as_secs().max(1) as i32);
    spec.renew_time = Some(MicroTime(now));
    spec
}

fn is_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// One attempt to take or renew the Lease. `Ok(true)`: we hold it now.
pub async fn try_acquire_or_renew(
    api: &Api<Lease>,
    s: &LeaseSettings,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    match api.get_opt(&s.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(taken_spec(None, s, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_race(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !can_take(&lease, &s.identity, now) {
                return Ok(false);
            }
            lease.spec = Some(taken_spec(lease.spec.as_ref(), s, now));
            match api.replace(&s.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_race(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives the Lease up if we hold it.
pub async fn release(api: &Api<Lease>, s: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&s.name, &PostParams::default(), &lease).await?;
    Ok(())
}

/// Resolves when leadership is lost: the Lease was taken by someone else, or could not be
/// renewed for `renew_deadline`.
async fn hold(api: &Api<Lease>, s: &LeaseSettings) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(s.retry_period).await;
        let left = s.renew_deadline.saturating_sub(last_renewed.elapsed());
        match tokio::time::timeout(left, try_acquire_or_renew(api, s)).await {
            Ok(Ok(true)) => last_renewed = tokio::time::Instant::now(),
            Ok(Ok(false)) => {
                tracing::warn!(lease = %s.name, "the controller lease was taken by another replica");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %s.name, error = %e, "renewing the controller lease")
            }
            Err(_) => {}
        }
        if last_renewed.elapsed() >= s.renew_deadline {
            tracing::warn!(lease = %s.name, "could not renew the controller lease in time; stepping down");
            return;
        }
    }
}

/// Runs `work` (a fresh future each term) while this replica leads; waits while another one
/// does. Returns when `shutdown` resolves, releasing the Lease if held.
pub async fn run_with_leadership<F, Fut>(
    api: Api<Lease>,
    s: LeaseSettings,
    metrics: &ControllerMetrics,
    mut work: F,
    shutdown: impl Future<Output = ()>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Candidate.
        let acquired = async {
            loop {
                match try_acquire_or_renew(&api, &s).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(lease = %s.name, error = %e, "acquiring the controller lease")
                    }
                }
                tokio::time::sleep(s.retry_period).await;
            }
        };
        tokio::select! {
            _ = acquired => {}
            _ = &mut shutdown => return,
        }
        tracing::info!(lease = %s.name, identity = %s.identity, "leading: rollout controller started");
        metrics.set_leader(true);
        let stop = tokio::select! {
            _ = work() => {
                tracing::warn!("the rollout controller stopped");
                false
            }
            _ = hold(&api, &s) => false,
            _ = &mut shutdown => true,
        };
        metrics.set_leader(false);
        if stop {
            if let Err(e) = release(&api, &s).await {
                tracing::warn!(error = %e, "releasing the controller lease");
            }
            return;
        }
        tracing::info!(lease = %s.name, "no longer leading: rollout controller stopped");
        tokio::time::sleep(s.retry_period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let now = Timestamp::now();
        Lease {
            metadata: Default::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn takes_free_expired_or_own_leases_only() {
        let now = Timestamp::now();
        assert!(can_take(&lease(None, 0), "me", now));
        assert!(can_take(&lease(Some(""), 0), "me", now));
        assert!(can_take(&lease(Some("me"), 0), "me", now));
        assert!(!can_take(&lease(Some("other"), 5), "me", now));
        assert!(can_take(&lease(Some("other"), 20), "me", now));
        assert!(can_take(&Lease::default(), "me", now));
    }

    #[test]
    fn transitions_count_changes_of_holder() {
        let s = LeaseSettings::new("l", "ns", "me");
        let now = Timestamp::now();
        let fresh = taken_spec(None, &s, now);
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(fresh.lease_transitions, Some(0));
        assert_eq!(fresh.lease_duration_seconds, Some(15));
        let renewed = taken_spec(Some(&fresh), &s, now + SignedDuration::from_secs(2));
        assert_eq!(renewed.acquire_time, fresh.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = taken_spec(lease(Some("other"), 30).spec.as_ref(), &s, now);
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
    }
}
