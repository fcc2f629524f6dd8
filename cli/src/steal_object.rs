//! The run's `StealSession` object. Creating it is the permission to steal (RBAC `create` on
//! `stealsessions` in the target's namespace); admission records who created it and applies the
//! cluster's policy; when the cluster requires tickets, the one signed into its status is what
//! every registration carries, renewed while the run keeps a heartbeat in the status. The object
//! is deleted on exit, and a deleted object ends the run.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tls_steal_crds::contract::SESSION_AUTHORIZATION_ANNOTATION;
use tls_steal_crds::session::{Registration, rfc3339};
use tls_steal_crds::steal_session::{StealSession, StealSessionSpec};
use tokio::sync::mpsc;

use crate::session::Context;

/// How often the status gets a heartbeat (the signer ends a session after 90 s without one).
const HEARTBEAT: Duration = Duration::from_secs(20);
/// How long the first ticket may take.
const FIRST_TICKET: Duration = Duration::from_secs(30);

/// The object could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "you may not steal in namespace {namespace}: {message}\n  Stealing needs `create` on stealsessions.tls-steal.io there: ask for the ClusterRole tls-steal-user bound to you in that namespace (kubectl create rolebinding steal-$USER --clusterrole=tls-steal-user --user=$USER -n {namespace})."
    )]
    Forbidden { namespace: String, message: String },
    #[error("the cluster refused the session: {0}")]
    Refused(String),
    #[error("creating the StealSession in namespace {namespace}")]
    Kube {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "no ticket was signed for StealSession {0} within {FIRST_TICKET:?} (is the tls-steal webhook running?)"
    )]
    NoTicket(String),
}

/// The created object.
pub struct SessionObject {
    api: Api<StealSession>,
    pub namespace: String,
    pub name: String,
    /// The cluster's proxies require tickets.
    pub tickets_required: bool,
}

impl SessionObject {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Creates the run's object. `Ok(None)`: the cluster has no `StealSession` resource (a
/// tls-steal installed before it), so the run is not recorded and needs no ticket.
pub async fn create(
    client: Client,
    namespace: &str,
    target: &str,
    reg: &Registration,
    delivery: &str,
) -> Result<Option<SessionObject>, ObjectError> {
    let api: Api<StealSession> = Api::namespaced(client, namespace);
    let obj = StealSession {
        metadata: ObjectMeta {
            generate_name: Some("steal-".into()),
            ..Default::default()
        },
        spec: StealSessionSpec {
            target: target.into(),
            ports: reg.ports.clone(),
            mode: reg.mode,
            filter: reg.filter.clone(),
            filter_ports: reg.filter_ports.clone(),
            delivery: Some(delivery.into()),
            duration_seconds: None,
            requested_by: None,
        },
        status: None,
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => Ok(Some(SessionObject {
            namespace: namespace.into(),
            name: created.name_any(),
            tickets_required: created
                .annotations()
                .get(SESSION_AUTHORIZATION_ANNOTATION)
                .is_some_and(|v| v == "required"),
            api,
        })),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 400 || s.code == 422 => {
            // An admission webhook's refusal reads "admission webhook "x" denied the request: why".
            match s.message.split_once("denied the request: ") {
                Some((_, why)) => Err(ObjectError::Refused(why.to_owned())),
                None if s.code == 403 => Err(ObjectError::Forbidden {
                    namespace: namespace.into(),
                    message: s.message.clone(),
                }),
                None => Err(ObjectError::Refused(s.message.clone())),
            }
        }
        Err(source) => Err(ObjectError::Kube {
            namespace: namespace.into(),
            source,
        }),
    }
}

/// What following the object reports.
pub enum Ended {
    /// Someone (or the signer, at the end of the session's duration) deleted it.
    Deleted,
}

impl SessionObject {
    /// Follows the object: its ticket into `ticket`, its deletion into `ended`. Returns once the
    /// first ticket is there (when tickets are required), then keeps following in a task.
    pub async fn follow(
        self: &Arc<Self>,
        ctx: Arc<Context>,
        ended: mpsc::Sender<Ended>,
    ) -> Result<(), ObjectError> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut events = watcher(self.api.clone(), cfg).boxed();
        let first = self.tickets_required.then(|| ctx.ticket.subscribe());
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let t = o.status.and_then(|s| s.ticket);
                        if t.is_some() && *ctx.ticket.borrow() != t {
                            ctx.ticket.send_replace(t);
                        }
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        let _ = ended.send(Ended::Deleted).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(session = %me.id(), error = %e, "watching the StealSession");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        if let Some(mut rx) = first {
            tokio::time::timeout(FIRST_TICKET, rx.wait_for(Option::is_some))
                .await
                .map_err(|_| ObjectError::NoTicket(self.id()))?
                .map_err(|_| ObjectError::NoTicket(self.id()))?;
        }
        Ok(())
    }

    /// Writes a heartbeat and the pods the run is registered on into the status, every
    /// [`HEARTBEAT`] and whenever those pods change, until the task is dropped.
    pub async fn heartbeat(self: Arc<Self>, ctx: Arc<Context>) {
        let mut changes = ctx.pods.subscribe();
        loop {
            let pods: Vec<String> = changes.borrow_and_update().iter().cloned().collect();
            let status = json!({"status": {
                "heartbeat": rfc3339(std::time::SystemTime::now()),
                "podsRegistered": pods.len(),
                "pods": pods,
            }});
            if let Err(e) = self
                .api
                .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::warn!(session = %self.id(), error = %e, "StealSession heartbeat not written");
            }
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                r = changes.changed() => if r.is_err() { return },
            }
        }
    }

    /// Deletes the object (the run is over).
    pub async fn delete(&self) {
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => tracing::warn!(session = %self.id(), error = %e, "StealSession not deleted"),
        }
    }
}
