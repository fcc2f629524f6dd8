//! A port-forward (kube's WebSocket port-forward) to the session API of one pod.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::Portforwarder;
use tls_steal_crds::contract::SESSION_API_PORT;
use tokio::io::DuplexStream;

/// The port-forward could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortforwardError {
    #[error(
        "RBAC forbids port-forwarding to pod/{pod} in namespace {namespace}: stealing needs the verb `create` on `pods/portforward` there (check with `kubectl auth can-i create pods/portforward -n {namespace}`). The API server said: {message}"
    )]
    Forbidden {
        pod: String,
        namespace: String,
        message: String,
    },
    #[error("cannot port-forward to pod/{pod}: {source}")]
    Kube { pod: String, source: kube::Error },
    #[error("the port-forward to pod/{pod} has no stream for port {SESSION_API_PORT}")]
    NoStream { pod: String },
}

impl PortforwardError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, PortforwardError::Forbidden { .. })
    }
}

/// An open port-forward; dropping it ends it.
pub struct Forward {
    forwarder: Portforwarder,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// Opens a stream to 127.0.0.1:15400 inside `pod`.
pub async fn open(
    api: &Api<Pod>,
    namespace: &str,
    pod: &str,
) -> Result<(DuplexStream, Forward), PortforwardError> {
    let mut forwarder = api
        .portforward(pod, &[SESSION_API_PORT])
        .await
        .map_err(|source| match source {
            kube::Error::Api(status) if status.is_forbidden() => PortforwardError::Forbidden {
                pod: pod.into(),
                namespace: namespace.into(),
                message: status.message.clone(),
            },
            source => PortforwardError::Kube {
                pod: pod.into(),
                source,
            },
        })?;
    let stream = forwarder
        .take_stream(SESSION_API_PORT)
        .ok_or_else(|| PortforwardError::NoStream { pod: pod.into() })?;
    Ok((stream, Forward { forwarder }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_names_the_verb_and_resource() {
        let e = PortforwardError::Forbidden {
            pod: "web-1".into(),
            namespace: "shop".into(),
            message: "pods \"web-1\" is forbidden".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("the verb `create` on `pods/portforward`"),
            "{text}"
        );
        assert!(text.contains("-n shop"), "{text}");
        assert!(e.is_fatal());
    }
}
