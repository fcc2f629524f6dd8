//! Warning events about pods being admitted, on their controller (fire and forget).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder};

use super::memo::Injected;

/// Publishes a Warning event about `pod` in the background.
pub(super) fn warn(recorder: &Recorder, pod: &Pod, namespace: &str, reason: &str, note: String) {
    let recorder = recorder.clone();
    let reference = event_reference(pod, namespace);
    let reason = reason.to_string();
    tokio::spawn(async move {
        let ev = Event {
            type_: EventType::Warning,
            reason,
            note: Some(note),
            action: "Inject".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &reference).await {
            tracing::debug!(error = %e, "publishing event");
        }
    });
}

/// The `UndeclaredPort` warning: the plan captures ports no container declares.
pub(super) fn undeclared_ports(recorder: &Recorder, pod: &Pod, namespace: &str, i: &Injected) {
    let ports = &i.undeclared_ports;
    tracing::warn!(?ports, "captured ports that no container declares");
    let note = format!(
        "tls-steal captures port(s) {ports:?} that no container declares (configs: {})",
        i.configs.join(", ")
    );
    warn(recorder, pod, namespace, "UndeclaredPort", note);
}

/// What an event about a pod being created refers to: its controller (which exists already),
/// else the pod by name or generateName.
fn event_reference(pod: &Pod, namespace: &str) -> ObjectReference {
    let meta = &pod.metadata;
    if let Some(owner) = meta.owner_references.iter().flatten().next() {
        return ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(namespace.into()),
            uid: Some(owner.uid.clone()),
            ..Default::default()
        };
    }
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: meta.name.clone().or_else(|| meta.generate_name.clone()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}
