//! Following the target's pods: a session on every ready pod that carries `tls-steal-proxy`,
//! started when a pod becomes ready, ended when it goes away (replaced, scaled down, deleted).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::runner::{Endpoint, Fatal, keep_session};
use crate::session::Context;
use crate::target::{PodSelector, Target};

/// Name of the injected sidecar container.
pub const SIDECAR_CONTAINER: &str = "tls-steal-proxy";

/// Following cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(
        "no pod of {target} carries the tls-steal sidecar (container `{SIDECAR_CONTAINER}`). To get it: label the namespace (`kubectl label namespace {namespace} tls-steal-injection=enabled`), create a MirrordTlsStealConfig whose targetPath/selector match {target} and list port(s) {ports}, and let the workload roll out (the controller restarts it when the config changes)"
    )]
    NoSidecar {
        target: Target,
        namespace: String,
        ports: String,
    },
    #[error("cannot list the pods of {target}: {message}")]
    Watch { target: Target, message: String },
}

/// Whether `pod` has the sidecar (a container, or a native-sidecar init container).
pub fn carries_sidecar(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| c.name == SIDECAR_CONTAINER)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == SIDECAR_CONTAINER)
    })
}

/// Ready, and not being deleted.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Aborts its session when dropped.
struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What to do with a pod in a given state.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    Session,
    NoSession,
}

pub fn want(pod: &Pod) -> Want {
    if carries_sidecar(pod) && is_ready(pod) {
        Want::Session
    } else {
        Want::NoSession
    }
}

/// Follows the pods of `target` until dropped; returns only on an error that ends the run.
pub async fn follow(
    api: Api<Pod>,
    namespace: String,
    target: Target,
    selector: PodSelector,
    ctx: Arc<Context>,
    fatal: mpsc::Sender<Fatal>,
) -> Result<(), FollowError> {
    let config = match &selector {
        PodSelector::Name(name) => {
            watcher::Config::default().fields(&format!("metadata.name={name}"))
        }
        PodSelector::Labels(labels) => watcher::Config::default().labels(labels),
    };
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut initial: Option<Vec<Pod>> = None;
    let mut synced_once = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) if !synced_once => {
                return Err(FollowError::Watch {
                    target,
                    message: e.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching pods failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => initial = Some(Vec::new()),
            watcher::Event::InitApply(pod) => initial.get_or_insert_with(Vec::new).push(pod),
            watcher::Event::InitDone => {
                let pods = initial.take().unwrap_or_default();
                if !synced_once {
                    synced_once = true;
                    check_first_sync(&pods, &namespace, &target, &ctx)?;
                }
                let names: Vec<String> = pods
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                running.retain(|name, _| names.contains(name));
                for pod in &pods {
                    apply(pod, &mut running, &api, &namespace, &ctx, &fatal);
                }
            }
            watcher::Event::Apply(pod) => apply(&pod, &mut running, &api, &namespace, &ctx, &fatal),
            watcher::Event::Delete(pod) => {
                if let Some(name) = pod.metadata.name
                    && running.remove(&name).is_some()
                {
                    ctx.output
                        .info(&format!("pod/{name}: gone; its session ended"));
                }
            }
        }
    }
    Ok(())
}

fn check_first_sync(
    pods: &[Pod],
    namespace: &str,
    target: &Target,
    ctx: &Context,
) -> Result<(), FollowError> {
    if pods.is_empty() {
        ctx.output
            .info(&format!("{target} has no pods yet; waiting for them"));
        return Ok(());
    }
    if !pods.iter().any(carries_sidecar) {
        let ports: Vec<String> = ctx.registration.ports.iter().map(u16::to_string).collect();
        let ports = match ports.is_empty() {
            true => "to steal".to_string(),
            false => ports.join(", "),
        };
        return Err(FollowError::NoSidecar {
            target: target.clone(),
            namespace: namespace.into(),
            ports,
        });
    }
    if !pods.iter().any(|p| want(p) == Want::Session) {
        ctx.output
            .info(&format!("no pod of {target} is ready yet; waiting"));
    }
    Ok(())
}

fn apply(
    pod: &Pod,
    running: &mut HashMap<String, Running>,
    api: &Api<Pod>,
    namespace: &str,
    ctx: &Arc<Context>,
    fatal: &mpsc::Sender<Fatal>,
) {
    let Some(name) = pod.metadata.name.clone() else {
        return;
    };
    match want(pod) {
        Want::Session if !running.contains_key(&name) => {
            if !carries_sidecar(pod) {
                return;
            }
            let endpoint = Endpoint::Pod {
                api: Box::new(api.clone()),
                namespace: namespace.into(),
                name: name.clone(),
            };
            let task = tokio::spawn(keep_session(endpoint, ctx.clone(), fatal.clone()));
            running.insert(name, Running(task));
        }
        Want::Session => {}
        Want::NoSession => {
            if running.remove(&name).is_some() {
                ctx.output
                    .info(&format!("pod/{name}: no longer ready; its session ended"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};

    use super::*;

    fn pod(containers: &[&str], ready: bool) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn only_ready_pods_with_the_sidecar_get_a_session() {
        assert_eq!(want(&pod(&["app", SIDECAR_CONTAINER], true)), Want::Session);
        assert_eq!(
            want(&pod(&["app", SIDECAR_CONTAINER], false)),
            Want::NoSession
        );
        assert_eq!(want(&pod(&["app"], true)), Want::NoSession);
        let mut native = pod(&["app"], true);
        native.spec.as_mut().unwrap().init_containers = Some(vec![Container {
            name: SIDECAR_CONTAINER.into(),
            ..Container::default()
        }]);
        assert_eq!(want(&native), Want::Session);
    }

    #[test]
    fn no_sidecar_error_explains_the_fix() {
        let e = FollowError::NoSidecar {
            target: "deploy/web".parse().unwrap(),
            namespace: "shop".into(),
            ports: "443".into(),
        }
        .to_string();
        assert!(e.contains("tls-steal-injection=enabled"), "{e}");
        assert!(e.contains("MirrordTlsStealConfig"), "{e}");
        assert!(e.contains("roll out"), "{e}");
    }
}
