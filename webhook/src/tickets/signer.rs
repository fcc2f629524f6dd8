//! Signs and renews the ticket of every admitted `StealSession` (`kube::runtime::Controller`
//! over the sessions of every namespace). It runs in the `controller` command (the chart's
//! controller Deployment, under its own account: the webhook's only reads). Each replica runs
//! one, without leader election: a ticket is signed only when it is missing or past half its life, both replicas'
//! tickets are valid, and the status is written with a merge patch of the signer's own fields.
//!
//! A session whose duration is over, or whose client stopped its heartbeat for longer than the
//! grace period, is deleted: `kubectl steal` sees the deletion and stops, and a client that does
//! not keeps its ticket at most until it expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tls_steal_crds::session::rfc3339;
use tls_steal_crds::steal_session::StealSession;
use tls_steal_crds::ticket::{TICKET_VERSION, TicketClaims, filter_hash};
use tokio::sync::mpsc;

use super::keys::SessionKeys;
use super::metrics::TicketMetrics;
use super::pod_events::PodEvents;
use super::summary::{filter_summary, ports_summary};
use crate::controller::error_chain as chain;
use crate::watch_backoff::{self, WatchBackoff};

/// Field manager of the signer's status writes.
const MANAGER: &str = "tls-steal-session-signer";

/// Settings of the signer.
#[derive(Clone, Debug)]
pub struct SignerSettings {
    /// How long a ticket lasts; renewed from half its life on.
    pub ticket_ttl: Duration,
    /// A session whose last heartbeat is older than this is deleted (its client is gone).
    pub heartbeat_grace: Duration,
    /// The duration of a session that names none (`sessions.maxDuration`).
    pub max_duration: Duration,
}

/// What reconciling needs.
pub struct Signer {
    pub client: Client,
    pub keys: Arc<SessionKeys>,
    pub settings: SignerSettings,
    pub metrics: Arc<TicketMetrics>,
    /// What this replica has announced on pods.
    pub events: PodEvents,
    /// This replica (the Events' reporting instance).
    pub reporter: String,
}

/// Why one session could not be handled (retried).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("writing the status of StealSession {0}")]
    Status(String, #[source] kube::Error),
    #[error("deleting StealSession {0}")]
    Delete(String, #[source] kube::Error),
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn parse_time(s: &str) -> Option<u64> {
    let t: Time = serde_json::from_value(json!(s)).ok()?;
    u64::try_from(t.0.as_second()).ok()
}

/// What to do with a session at `now` (Unix seconds): the pure part of reconciling.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not admitted (no recorded user): say so, sign nothing.
    NotAdmitted,
    /// Over: delete it, with the reason.
    End(String),
    /// Sign a ticket expiring at `exp`, then look again at `next`.
    Sign { exp: u64, next: u64 },
    /// Nothing now; look again at `next`.
    Wait { next: u64 },
}

/// Decides the [`Step`] for `session` at `now`.
pub fn step(session: &StealSession, settings: &SignerSettings, now: u64) -> Step {
    if session.spec.requested_by.is_none() {
        return Step::NotAdmitted;
    }
    let created = session
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| u64::try_from(t.0.as_second()).ok())
        .unwrap_or(now);
    let duration = session
        .spec
        .duration_seconds
        .map_or(settings.max_duration.as_secs(), u64::from);
    let end = created + duration;
    if now >= end {
        return Step::End(format!("its duration ({duration} s) is over"));
    }
    let status = session.status.clone().unwrap_or_default();
    let grace = settings.heartbeat_grace.as_secs();
    let last_sign_of_life = status
        .heartbeat
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(created)
        .max(created);
    if now >= last_sign_of_life + grace {
        return Step::End(format!(
            "its client sent no heartbeat for {} s",
            now - last_sign_of_life
        ));
    }
    let ttl = settings.ticket_ttl.as_secs().max(2);
    let current = status
        .ticket
        .as_ref()
        .and(status.ticket_expires.as_deref())
        .and_then(parse_time);
    let check_again = (last_sign_of_life + grace).min(end);
    match current {
        Some(exp) if exp > now + ttl / 2 => Step::Wait {
            next: (exp - ttl / 2).min(check_again),
        },
        _ => {
            let exp = (now + ttl).min(end);
            Step::Sign {
                exp,
                next: (exp - (exp - now) / 2).min(check_again).max(now + 1),
            }
        }
    }
}

/// The claims of `session`'s ticket.
pub fn claims(session: &StealSession, iat: u64, exp: u64) -> TicketClaims {
    let mut ports = session.spec.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    TicketClaims {
        v: TICKET_VERSION,
        kid: String::new(),
        namespace: session.namespace().unwrap_or_default(),
        session: session.name_any(),
        uid: session.uid().unwrap_or_default(),
        user: session
            .spec
            .requested_by
            .as_ref()
            .map(|u| u.username.clone())
            .unwrap_or_default(),
        ports,
        mode: session.spec.mode,
        filter: filter_hash(
            session.spec.filter.as_ref(),
            session.spec.filter_ports.as_deref(),
        ),
        iat,
        exp,
    }
}

async fn reconcile(session: Arc<StealSession>, ctx: Arc<Signer>) -> Result<Action, SignError> {
    if session.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = session.namespace().unwrap_or_default();
    let name = session.name_any();
    let id = format!("{ns}/{name}");
    let api: Api<StealSession> = Api::namespaced(ctx.client.clone(), &ns);
    let now = unix(SystemTime::now());
    let in_secs = |t: u64| Action::requeue(Duration::from_secs(t.saturating_sub(now).max(1)));
    let step = step(&session, &ctx.settings, now);
    if !matches!(step, Step::NotAdmitted) {
        ctx.events
            .on_session(&ctx.client, &session, &ctx.reporter)
            .await;
    }
    match step {
        Step::NotAdmitted => {
            let status = json!({"status": {"message":
                "not admitted: no spec.requestedBy (is the tls-steal webhook's StealSession admission installed?)"}});
            api.patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&status))
                .await
                .map_err(|e| SignError::Status(id, e))?;
            Ok(Action::await_change())
        }
        Step::End(why) => {
            tracing::info!(session = %id, reason = %why, "ending steal session");
            ctx.metrics.ended(&ns);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
                Err(e) => Err(SignError::Delete(id, e)),
            }
        }
        Step::Wait { next } => Ok(in_secs(next)),
        Step::Sign { exp, next } => {
            let ticket = ctx.keys.signer.sign(claims(&session, now, exp));
            let status = json!({"status": {
                "ticket": ticket,
                "ticketExpires": rfc3339(UNIX_EPOCH + Duration::from_secs(exp)),
                "portsSummary": ports_summary(&session.spec),
                "filterSummary": filter_summary(&session.spec),
            }});
            api.patch_status(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&status))
                .await
                .map_err(|e| SignError::Status(id.clone(), e))?;
            ctx.metrics.signed(&ns);
            tracing::debug!(session = %id, exp, "session ticket signed");
            Ok(in_secs(next))
        }
    }
}

fn error_policy(_: Arc<StealSession>, e: &SignError, ctx: Arc<Signer>) -> Action {
    tracing::warn!(error = %chain(e), "steal session not handled; retrying");
    ctx.metrics.error();
    Action::requeue(Duration::from_secs(2))
}

/// Starts the signer: the signing key (made on first start), its public half published for the
/// webhook ([`super::keys`]), then [`run`] until `stop`.
pub async fn start(
    client: Client,
    namespace: &str,
    args: &super::SignerArgs,
    metrics: Arc<TicketMetrics>,
    reporter: String,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<tokio::task::JoinHandle<()>, super::KeysError> {
    let keys = super::load_or_create(client.clone(), namespace, &args.session_key_secret).await?;
    super::publish(
        client.clone(),
        namespace,
        &args.session_public_keys,
        &keys.public,
    )
    .await?;
    tracing::info!(
        kid = keys.signer.kid(),
        trusted = keys.public.len(),
        "signing session tickets"
    );
    let ctx = Arc::new(Signer {
        client,
        keys: Arc::new(keys),
        settings: args.settings(),
        metrics,
        events: Default::default(),
        reporter,
    });
    Ok(tokio::spawn(run(ctx, stop)))
}

/// Runs the signer until `stop` resolves.
pub async fn run(
    ctx: Arc<Signer>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<StealSession> = Api::all(ctx.client.clone());
    // One watch feeds the controller and, since deleted sessions are not reconciled, the pods'
    // "ended" Events. It is retried soon after an API server outage: tickets live 120 s.
    let (reader, writer) = reflector::store();
    let (deleted_tx, mut deleted) = mpsc::unbounded_channel();
    let sessions = reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(WatchBackoff::new(watch_backoff::SMALL))
        .inspect(move |ev| {
            if let Ok(watcher::Event::Delete(session)) = ev {
                let _ = deleted_tx.send(session.clone());
            }
        })
        .applied_objects();
    let deletions = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while let Some(session) = deleted.recv().await {
                ctx.events
                    .on_deleted(&ctx.client, &session, &ctx.reporter)
                    .await;
            }
        })
    };
    // Its errors reach the controller too, whose own backoff must not be the default's either.
    Controller::for_stream(sessions, reader)
        .trigger_backoff(WatchBackoff::new(watch_backoff::SMALL))
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    deletions.abort();
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn settings() -> SignerSettings {
        SignerSettings {
            ticket_ttl: Duration::from_secs(120),
            heartbeat_grace: Duration::from_secs(90),
            max_duration: Duration::from_secs(3600),
        }
    }

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn session(status: serde_json::Value) -> StealSession {
        let mut s: StealSession = serde_json::from_value(json!({
            "apiVersion": "tls-steal.io/v1alpha1", "kind": "StealSession",
            "metadata": {"name": "alice-web", "namespace": "shop", "uid": "u-1"},
            "spec": {"target": "deploy/web", "ports": [8443, 443], "mode": "steal",
                "filter": {"header": "x-user: alice"}, "durationSeconds": 600,
                "requestedBy": {"username": "alice", "groups": []}},
            "status": status
        }))
        .unwrap();
        s.metadata.creation_timestamp = Some(Time(Timestamp::from_second(T0 as i64).unwrap()));
        s
    }

    #[test]
    fn a_new_session_gets_a_ticket_renewed_from_half_its_life() {
        let s = session(json!({}));
        assert_eq!(
            step(&s, &settings(), T0 + 1),
            Step::Sign {
                exp: T0 + 121,
                next: T0 + 61
            }
        );
        let s = session(json!({"ticket": "t", "ticketExpires": at(T0 + 121)}));
        assert_eq!(step(&s, &settings(), T0 + 30), Step::Wait { next: T0 + 61 });
        // Past half its life with a fresh heartbeat: a new one.
        let s = session(json!({"ticket": "t", "ticketExpires": at(T0 + 121),
            "heartbeat": at(T0 + 60)}));
        assert!(matches!(
            step(&s, &settings(), T0 + 70),
            Step::Sign { exp, .. } if exp == T0 + 190
        ));
    }

    #[test]
    fn sessions_end_when_their_duration_is_over_or_their_client_is_gone() {
        let s = session(json!({"heartbeat": at(T0 + 590)}));
        // The last ticket never outlives the session.
        assert!(matches!(
            step(&s, &settings(), T0 + 550),
            Step::Sign { exp, .. } if exp == T0 + 600
        ));
        assert!(matches!(step(&s, &settings(), T0 + 600), Step::End(w) if w.contains("duration")));
        let s = session(json!({"heartbeat": at(T0 + 10)}));
        assert!(matches!(step(&s, &settings(), T0 + 99), Step::Sign { .. }));
        assert!(
            matches!(step(&s, &settings(), T0 + 100), Step::End(w) if w.contains("no heartbeat for 90 s"))
        );
    }

    #[test]
    fn unadmitted_sessions_get_no_ticket_and_claims_bind_the_spec() {
        let mut s = session(json!({}));
        let c = claims(&s, T0, T0 + 120);
        assert_eq!(
            (
                c.namespace.as_str(),
                c.session.as_str(),
                c.uid.as_str(),
                c.user.as_str()
            ),
            ("shop", "alice-web", "u-1", "alice")
        );
        assert_eq!(c.ports, vec![443, 8443]);
        assert_eq!(c.filter, filter_hash(s.spec.filter.as_ref(), None));
        s.spec.requested_by = None;
        assert_eq!(step(&s, &settings(), T0), Step::NotAdmitted);
    }
}
