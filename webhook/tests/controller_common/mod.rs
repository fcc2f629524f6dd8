//! Fixtures and a small in-memory Kubernetes API (tower-test mock) for the controller tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tls_steal_crds::types::{MirrordClusterTlsStealConfigSpec, MirrordTlsStealConfigSpec};
use tls_steal_crds::{
    MirrordClusterTlsStealConfig, MirrordTlsStealConfig, Owner, OwnerKind, PodTarget, TlsStealSpec,
    build_plan,
};
use tls_steal_webhook::controller::{
    CacheWriters, Cached, Caches, Context, ControllerMetrics, ControllerSettings,
};

pub const NS: &str = "apps";
pub const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/apps/deployments/web";
pub const CONFIG_PATH: &str =
    "/apis/mirrord.metalbear.co/v1alpha/namespaces/apps/mirrordtlsstealconfigs/web-tls";
pub const CONFIG_STATUS_PATH: &str =
    "/apis/mirrord.metalbear.co/v1alpha/namespaces/apps/mirrordtlsstealconfigs/web-tls/status";
pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";
pub const PODS_PATH: &str = "/api/v1/namespaces/apps/pods";

/// A valid spec for `ports`.
pub fn spec(target: Option<&str>, ports: &[u16]) -> TlsStealSpec {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            json!({
                "port": p,
                "agentAsServer": {"authentication": {"certPem": "/tls/tls.crt", "keyPem": "/tls/tls.key"}},
                "agentAsClient": {"verification": {"acceptAnyCert": true}}
            })
        })
        .collect();
    serde_json::from_value(json!({"targetPath": target, "ports": ports})).unwrap()
}

pub fn ns_config(ns: &str, name: &str, spec: TlsStealSpec) -> MirrordTlsStealConfig {
    let mut c = MirrordTlsStealConfig::new(name, MirrordTlsStealConfigSpec { inner: spec });
    c.metadata.namespace = Some(ns.into());
    c.metadata.uid = Some(format!("uid-{ns}-{name}"));
    c.metadata.generation = Some(3);
    c.metadata.resource_version = Some("7".into());
    c
}

pub fn cluster_config(name: &str, spec: TlsStealSpec) -> MirrordClusterTlsStealConfig {
    let mut c =
        MirrordClusterTlsStealConfig::new(name, MirrordClusterTlsStealConfigSpec { inner: spec });
    c.metadata.uid = Some(format!("uid-{name}"));
    c.metadata.generation = Some(1);
    c
}

pub fn namespace(name: &str, opted_in: bool) -> Namespace {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": if opted_in { json!({"tls-steal-injection": "enabled"}) } else { json!({}) }}
    }))
    .unwrap()
}

/// Deployment `name` in [`NS`], resourceVersion 100, container `app` declaring 443.
pub fn deployment(name: &str, template_annotations: Value, annotations: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                     "resourceVersion": "100", "generation": 1, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": template_annotations},
                "spec": {"containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 443}]}]}
            }
        }
    }))
    .unwrap()
}

/// A running pod of Deployment `app` in [`NS`]; `plan_hash` is the hash of the
/// `tls-steal.io/status` annotation the webhook writes (`None`: no sidecar, no annotation).
pub fn pod(app: &str, name: &str, plan_hash: Option<&str>) -> Value {
    let annotations = match plan_hash {
        Some(h) => json!({"tls-steal.io/status": json!({
            "configs": ["MirrordTlsStealConfig/apps/web-tls"], "ports": [443], "hash": h,
            "discarded": [], "sidecarMode": "native"}).to_string()}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app},
                     "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"}
    })
}

/// The hash the webhook's merge gives the pods of Deployment `d` (computed independently of
/// the controller).
pub fn expected_hash(d: &Deployment, configs: &[tls_steal_crds::ConfigSource]) -> String {
    let name = d.metadata.name.clone().unwrap();
    let target = PodTarget::from_template(
        &d.spec.as_ref().unwrap().template,
        vec![Owner::new(OwnerKind::Deployment, name)],
    );
    build_plan(&target, NS, configs).hash
}

/// One request the mock API received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    pub fn is_event(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/events")
    }
}

/// The controller context wired to an in-memory API holding `objects` (path → JSON).
pub struct Harness {
    pub ctx: Arc<Context>,
    pub writers: CacheWriters,
    pub metrics: Arc<ControllerMetrics>,
    pub objects: Arc<Mutex<HashMap<String, Value>>>,
    server: tokio::task::JoinHandle<Vec<Recorded>>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// `conflicts`: how many JSON patches are answered as if another writer changed the object
/// just before (its resourceVersion is bumped, so the `test` op fails).
pub fn harness(objects: Vec<(&str, Value)>, conflicts: usize) -> Harness {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let objects: Arc<Mutex<HashMap<String, Value>>> = Arc::new(Mutex::new(
        objects
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    ));
    let state = objects.clone();
    let server = tokio::spawn(async move {
        let mut log = Vec::new();
        let mut conflicts = conflicts;
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let rec = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: body.clone(),
            };
            let (code, answer) = {
                let mut objects = state.lock().unwrap();
                match rec.method.as_str() {
                    "POST" if rec.is_event() => (201, body),
                    "POST" => {
                        let name = body["metadata"]["name"].as_str().unwrap_or_default();
                        let path = format!("{}/{name}", rec.path);
                        match objects.entry(path) {
                            std::collections::hash_map::Entry::Occupied(_) => {
                                (409, status(409, "AlreadyExists", "already exists"))
                            }
                            std::collections::hash_map::Entry::Vacant(slot) => {
                                let mut created = body.clone();
                                created["metadata"]["resourceVersion"] = json!("1");
                                slot.insert(created.clone());
                                (201, created)
                            }
                        }
                    }
                    "PUT" => match objects.get_mut(&rec.path) {
                        None => (404, status(404, "NotFound", "not found")),
                        Some(obj) => {
                            let current = obj["metadata"]["resourceVersion"].clone();
                            if body["metadata"]["resourceVersion"] != current {
                                (409, status(409, "Conflict", "the object has been modified"))
                            } else {
                                let rv: u64 = current.as_str().unwrap_or("0").parse().unwrap();
                                *obj = body.clone();
                                obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                                (200, obj.clone())
                            }
                        }
                    },
                    "GET" => match objects.get(&rec.path) {
                        Some(o) => (200, o.clone()),
                        None => (404, status(404, "NotFound", "not found")),
                    },
                    "PATCH" => {
                        let base = rec.path.trim_end_matches("/status").to_owned();
                        match objects.get_mut(&base) {
                            None => (404, status(404, "NotFound", "not found")),
                            Some(obj) => {
                                if rec.content_type == "application/json-patch+json"
                                    && conflicts > 0
                                {
                                    conflicts -= 1;
                                    let rv: u64 = obj["metadata"]["resourceVersion"]
                                        .as_str()
                                        .unwrap()
                                        .parse()
                                        .unwrap();
                                    obj["metadata"]["resourceVersion"] =
                                        json!((rv + 1).to_string());
                                }
                                let result = if rec.content_type == "application/json-patch+json" {
                                    let p: json_patch::Patch =
                                        serde_json::from_value(body.clone()).unwrap();
                                    json_patch::patch(obj, &p).map_err(|e| e.to_string())
                                } else {
                                    json_patch::merge(obj, &body);
                                    Ok(())
                                };
                                match result {
                                    Ok(()) => {
                                        let rv: u64 = obj["metadata"]["resourceVersion"]
                                            .as_str()
                                            .unwrap_or("0")
                                            .parse()
                                            .unwrap();
                                        obj["metadata"]["resourceVersion"] =
                                            json!((rv + 1).to_string());
                                        (200, obj.clone())
                                    }
                                    Err(e) => (422, status(422, "Invalid", &e)),
                                }
                            }
                        }
                    }
                    _ => (405, status(405, "MethodNotAllowed", "unexpected request")),
                }
            };
            log.push(rec);
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
        log
    });
    let (caches, writers) = Caches::new();
    let metrics = Arc::new(ControllerMetrics::default());
    let settings = ControllerSettings::default();
    let ctx = Arc::new(Context::new(
        client,
        caches,
        settings,
        metrics.clone(),
        Reporter {
            controller: "tls-steal-controller".into(),
            instance: Some("test".into()),
        },
    ));
    Harness {
        ctx,
        writers,
        metrics,
        objects,
        server,
    }
}

impl Harness {
    pub fn namespace(&mut self, ns: Namespace) {
        self.writers
            .namespaces
            .apply_watcher_event(&watcher::Event::Apply(ns));
    }

    pub fn config(&mut self, c: MirrordTlsStealConfig) {
        self.writers
            .namespaced_configs
            .apply_watcher_event(&watcher::Event::Apply(c));
    }

    pub fn cluster_config(&mut self, c: MirrordClusterTlsStealConfig) {
        self.writers
            .cluster_configs
            .apply_watcher_event(&watcher::Event::Apply(c));
    }

    pub fn deployment(&mut self, d: Deployment) {
        self.writers
            .deployments
            .apply_watcher_event(&watcher::Event::Apply(Cached::of(&d)));
    }

    /// What a pod list in [`NS`] answers (any label selector: the query is only recorded).
    pub fn pods(&self, pods: Vec<Value>) {
        self.objects.lock().unwrap().insert(
            PODS_PATH.into(),
            json!({"apiVersion": "v1", "kind": "PodList",
                   "metadata": {"resourceVersion": "1"}, "items": pods}),
        );
    }

    /// The stored JSON at `path`.
    pub fn object(&self, path: &str) -> Value {
        self.objects.lock().unwrap()[path].clone()
    }

    /// Stops the mock API and returns every request it received.
    pub async fn finish(self) -> Vec<Recorded> {
        let Harness {
            ctx,
            writers,
            server,
            ..
        } = self;
        drop(ctx);
        drop(writers);
        server.await.unwrap()
    }
}
