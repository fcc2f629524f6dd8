//! An Event on each pod when a steal session starts and ends on it: who, which ports, which
//! filter, which session. `kubectl describe pod` shows them, so whoever looks at a pod sees that
//! its requests were (or are being) stolen.
//!
//! The signer runs in every webhook replica, so Events get deterministic names (pod, phase and
//! the session's uid): the replica that creates one first wins, the others get `AlreadyExists`.
//! "Started" is emitted for each pod listed in the session's `status.pods` (kept current by
//! `kubectl steal`); "ended" for each pod that leaves the list, and for every pod listed when the
//! session is deleted (by `kubectl steal` on exit, by the signer at its end, or by anyone with
//! `kubectl delete`). A pod that leaves and rejoins the same session is announced once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use tls_steal_crds::steal_session::StealSession;

use super::summary::{filter_summary, ports_summary};

/// The Event reasons.
pub const STARTED: &str = "StealStarted";
pub const ENDED: &str = "StealEnded";

/// Start or end of a session on one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Started,
    Ended,
}

impl Phase {
    fn reason(self) -> &'static str {
        match self {
            Phase::Started => STARTED,
            Phase::Ended => ENDED,
        }
    }
}

/// `<pod>.steal-<started|ended>.<first 8 characters of the session uid>`: one per session,
/// pod and phase, the same in every replica.
pub fn event_name(pod: &str, phase: Phase, session_uid: &str) -> String {
    let phase = match phase {
        Phase::Started => "started",
        Phase::Ended => "ended",
    };
    let uid: String = session_uid.chars().filter(|c| *c != '-').take(8).collect();
    // DNS subdomain: at most 253 characters (pod names are at most 253 themselves).
    let suffix = format!(".steal-{phase}.{uid}");
    let keep = 253usize.saturating_sub(suffix.len());
    format!("{}{suffix}", &pod[..pod.len().min(keep)])
}

/// The Event's message: who, what, through which session.
pub fn message(session: &StealSession, phase: Phase) -> String {
    let who = session
        .spec
        .requested_by
        .as_ref()
        .map_or("someone", |u| u.username.as_str());
    let mode = serde_json::to_value(session.spec.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let what = match phase {
        Phase::Started => "started",
        Phase::Ended => "ended",
    };
    format!(
        "{who}'s {mode} session {} {what} on this pod: port {}, filter {}",
        session.name_any(),
        ports_summary(&session.spec),
        filter_summary(&session.spec),
    )
}

/// The pods to announce now: listed and not announced yet (started), announced and no longer
/// listed (ended). `announced` is updated.
pub fn changes(announced: &mut BTreeSet<String>, listed: &[String]) -> Vec<(String, Phase)> {
    let listed: BTreeSet<&String> = listed.iter().collect();
    let mut out = Vec::new();
    for pod in &listed {
        if announced.insert((*pod).clone()) {
            out.push(((*pod).clone(), Phase::Started));
        }
    }
    for pod in announced.iter() {
        if !listed.contains(pod) {
            out.push((pod.clone(), Phase::Ended));
        }
    }
    announced.retain(|p| listed.contains(p));
    out
}

/// The pods a session lists, by name (`kubectl steal` writes them as `pod/<name>`).
fn listed_pods(session: &StealSession) -> Vec<String> {
    session
        .status
        .iter()
        .flat_map(|s| &s.pods)
        .map(|p| p.strip_prefix("pod/").unwrap_or(p).to_owned())
        .collect()
}

/// What one replica has announced, per session uid.
#[derive(Default)]
pub struct PodEvents {
    announced: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl PodEvents {
    /// Announces what changed in `session`'s pod list since the last call.
    pub async fn on_session(&self, client: &Client, session: &StealSession, reporter: &str) {
        let uid = session.uid().unwrap_or_default();
        let listed = listed_pods(session);
        let todo = {
            let mut all = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            let announced = all.entry(uid.clone()).or_default();
            changes(announced, &listed)
        };
        for (pod, phase) in todo {
            emit(client, session, &pod, phase, reporter).await;
        }
    }

    /// Announces the end on every pod `session` (deleted) was listed on.
    pub async fn on_deleted(&self, client: &Client, session: &StealSession, reporter: &str) {
        let uid = session.uid().unwrap_or_default();
        let mut pods: BTreeSet<String> = listed_pods(session).into_iter().collect();
        if let Some(a) = self
            .announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid)
        {
            pods.extend(a);
        }
        for pod in pods {
            emit(client, session, &pod, Phase::Ended, reporter).await;
        }
    }
}

/// Creates the Event (named by [`event_name`]) on `pod`; one that exists already is left alone.
/// Failures are logged, never retried: an Event is a courtesy, the session goes on.
async fn emit(client: &Client, session: &StealSession, pod: &str, phase: Phase, reporter: &str) {
    let ns = session.namespace().unwrap_or_default();
    // The pod's uid makes the Event show in `kubectl describe pod`.
    let uid = match Api::<Pod>::namespaced(client.clone(), &ns).get(pod).await {
        Ok(p) => p.uid(),
        Err(kube::Error::Api(s)) if s.code == 404 => return,
        Err(e) => {
            tracing::debug!(error = %e, %pod, "reading the pod of a session event");
            None
        }
    };
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(event_name(pod, phase, &session.uid().unwrap_or_default())),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.into()),
            namespace: Some(ns.clone()),
            uid,
            ..ObjectReference::default()
        },
        reason: Some(phase.reason().into()),
        message: Some(message(session, phase)),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("tls-steal".into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("tls-steal-session-signer".into()),
        reporting_instance: Some(reporter.into()),
        ..Event::default()
    };
    match Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
    {
        Ok(_) => tracing::info!(namespace = %ns, %pod, reason = phase.reason(), "session event"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, namespace = %ns, %pod, "creating a session event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_pod_phase_and_session_and_fit_a_dns_subdomain() {
        let uid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
        assert_eq!(
            event_name("web-7d9f-abcde", Phase::Started, uid),
            "web-7d9f-abcde.steal-started.0a1b2c3d"
        );
        assert_ne!(
            event_name("web-1", Phase::Started, uid),
            event_name("web-1", Phase::Ended, uid)
        );
        let long = "p".repeat(253);
        assert_eq!(event_name(&long, Phase::Ended, uid).len(), 253);
    }

    #[test]
    fn pods_are_announced_once_when_they_join_and_when_they_leave() {
        let mut announced = BTreeSet::new();
        let pods = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            changes(&mut announced, &pods(&["a", "b"])),
            vec![("a".into(), Phase::Started), ("b".into(), Phase::Started)]
        );
        assert!(changes(&mut announced, &pods(&["b", "a"])).is_empty());
        assert_eq!(
            changes(&mut announced, &pods(&["b"])),
            vec![("a".into(), Phase::Ended)]
        );
    }

    #[test]
    fn listed_pods_are_names_without_the_kind_kubectl_steal_writes() {
        let s: StealSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "tls-steal.io/v1alpha1", "kind": "StealSession",
            "metadata": {"name": "s", "namespace": "shop"},
            "spec": {"target": "deploy/web"},
            "status": {"pods": ["pod/web-1", "web-2"], "podsRegistered": 2}
        }))
        .unwrap();
        assert_eq!(listed_pods(&s), ["web-1", "web-2"]);
    }

    #[test]
    fn the_message_names_the_user_ports_filter_and_session() {
        let s: StealSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "tls-steal.io/v1alpha1", "kind": "StealSession",
            "metadata": {"name": "alice-web-1", "namespace": "shop", "uid": "u1"},
            "spec": {"target": "deploy/web", "ports": [443], "mode": "steal",
                     "filter": {"header": "x-debug: alice"},
                     "requestedBy": {"username": "alice", "groups": ["dev"]}}
        }))
        .unwrap();
        let m = message(&s, Phase::Started);
        assert!(
            m.starts_with("alice's steal session alice-web-1 started on this pod"),
            "{m}"
        );
        assert!(m.contains("443") && m.contains("x-debug"), "{m}");
    }
}
