//! The rollout controller against a real control plane (kube-apiserver +
//! kube-controller-manager, and the chart's webhook so that new pods get the sidecar).
//!
//! Runs only when `TLS_STEAL_E2E_KUBECONFIG` names the cluster's kubeconfig (otherwise it prints
//! why and returns). Prerequisites: the CRDs and the chart installed (the webhook must be
//! serving; its namespaceSelector is `tls-steal-injection=enabled`). The test runs the
//! controller itself, in-process (`tls_steal_webhook::controller::run`, leader election on a
//! Lease in the test namespace), so it can restart it; a controller the chart may also run acts
//! idempotently on the same objects.
//!
//! Steps: create a config → the matching Deployment gets a new ReplicaSet whose pods carry the
//! plan (sidecar + `tls-steal.io/status` hash) while a non-matching Deployment in the same
//! namespace keeps its resourceVersion; edit the config's port → a second rollout; a burst of
//! edits → exactly one more rollout (debounce); delete the
//! config → a rollout whose pods have no sidecar; restart the controller → no new ReplicaSet.
//! The time from each config change to the patched template is printed (and appended to
//! `$TLS_STEAL_E2E_TIMINGS` when set).
//!
//! Over 400 lines: one control plane started once for every rollout scenario, which share its helpers.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tls_steal_crds::types::MirrordTlsStealConfigSpec;
use tls_steal_crds::{
    ConfigSource, MirrordTlsStealConfig, Owner, OwnerKind, PodTarget, TlsStealSpec, build_plan,
};
use tls_steal_webhook::controller::{self, ControllerArgs};

const HASH: &str = "tls-steal.io/config-hash";
const WAIT: Duration = Duration::from_secs(90);

async fn client() -> Option<Client> {
    let Some(path) = std::env::var_os("TLS_STEAL_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: set TLS_STEAL_E2E_KUBECONFIG to run the rollout tests against a cluster"
        );
        return None;
    };
    let kc = Kubeconfig::read_from(&path).expect("reading TLS_STEAL_E2E_KUBECONFIG");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Some(Client::try_from(config).expect("client"))
}

/// Polls `f` every 200 ms until it returns `Some`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn timing(line: String) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("TLS_STEAL_E2E_TIMINGS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            // Each rollout gets its pod at once, whether or not earlier pods ever became ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": "tls-steal.local/e2e-never-pulled:1",
                                    "imagePullPolicy": "Never",
                                    "ports": [{"containerPort": 443}, {"containerPort": 8443}]}]
                }
            }
        }
    }))
    .unwrap()
}

fn spec(port: u16) -> TlsStealSpec {
    serde_json::from_value(json!({
        "targetPath": "deploy/web",
        "ports": [{
            "port": port,
            "agentAsServer": {"authentication": {"certPem": "/tls/tls.crt", "keyPem": "/tls/tls.key"}},
            "agentAsClient": {"verification": {"acceptAnyCert": true}}
        }]
    }))
    .unwrap()
}

struct Env {
    ns: String,
    deploys: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
    pods: Api<Pod>,
    configs: Api<MirrordTlsStealConfig>,
}

impl Env {
    /// The hash the webhook gives pods of `web` with `config` (or none).
    async fn expected(&self, config: Option<&MirrordTlsStealConfig>) -> Result<String> {
        let web = self.deploys.get("web").await?;
        let target = PodTarget::from_template(
            &web.spec.unwrap().template,
            vec![Owner::new(OwnerKind::Deployment, "web")],
        );
        let sources: Vec<ConfigSource> = config.map(ConfigSource::from).into_iter().collect();
        Ok(build_plan(&target, &self.ns, &sources).hash)
    }

    async fn template_hash(&self, name: &str) -> Result<Option<String>> {
        let d = self.deploys.get(name).await?;
        Ok(d.spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(HASH).cloned()))
    }

    /// Waits until `web`'s template carries `hash`; returns the time it took from `since`.
    async fn wait_patched(&self, hash: &str, since: Instant) -> Result<Duration> {
        eventually(&format!("deploy/web to carry {HASH}={hash:?}"), || async {
            Ok(
                (self.template_hash("web").await?.as_deref() == Some(hash))
                    .then(|| since.elapsed()),
            )
        })
        .await
    }

    async fn replicasets_of(&self, app: &str) -> Result<Vec<ReplicaSet>> {
        Ok(self
            .replicasets
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await?
            .items)
    }

    /// Waits for the ReplicaSet of `web` whose template hash is `hash` and for one of its pods;
    /// returns the pod.
    async fn wait_rollout_pod(&self, hash: &str) -> Result<Pod> {
        let rs = eventually(
            &format!("a ReplicaSet of web with {HASH}={hash:?}"),
            || async {
                Ok(self.replicasets_of("web").await?.into_iter().find(|rs| {
                    rs.spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .and_then(|t| t.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref())
                        .and_then(|a| a.get(HASH))
                        .map(String::as_str)
                        == Some(hash)
                }))
            },
        )
        .await?;
        let pth = rs
            .labels()
            .get("pod-template-hash")
            .cloned()
            .context("pod-template-hash")?;
        eventually(
            &format!("a pod of ReplicaSet {}", rs.name_any()),
            || async {
                let lp = ListParams::default().labels(&format!("app=web,pod-template-hash={pth}"));
                Ok(self.pods.list(&lp).await?.items.into_iter().next())
            },
        )
        .await
    }

    async fn config_status_matches(&self, name: &str, workloads: &[String]) -> Result<()> {
        eventually(
            &format!("status of {name} to list {workloads:?}"),
            || async {
                let c = self.configs.get(name).await?;
                Ok(c.status
                    .filter(|s| {
                        s.matched_workloads == workloads
                            && s.observed_generation == c.metadata.generation
                    })
                    .map(|_| ()))
            },
        )
        .await
    }
}

fn has_sidecar(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == "tls-steal-proxy")
}

fn pod_plan_hash(pod: &Pod) -> Option<String> {
    let status = pod.annotations().get("tls-steal.io/status")?;
    let v: serde_json::Value = serde_json::from_str(status).ok()?;
    v["hash"].as_str().map(Into::into)
}

struct RunningController {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start_controller(client: &Client, ns: &str, identity: &str) -> RunningController {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let args = ControllerArgs {
        // The default debounce: the measured times are what users get.
        debounce_ms: 1000,
        status_debounce_ms: 500,
        lease_name: "tls-steal-controller-e2e".into(),
        lease_namespace: ns.into(),
        identity: Some(identity.into()),
        // Only this test's namespace: other tests' workloads are none of its business.
        watch_namespace: Some(ns.into()),
        ..Default::default()
    };
    let task = tokio::spawn(controller::run(
        client.clone(),
        args,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    RunningController { stop, task }
}

impl RunningController {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Waits until `name`'s resourceVersion stays the same for 3 s (the deployment controller has
/// finished writing its status), and returns it.
async fn settled_version(deploys: &Api<Deployment>, name: &str) -> Result<String> {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    let mut since = Instant::now();
    loop {
        let rv = deploys
            .get(name)
            .await?
            .resource_version()
            .unwrap_or_default();
        if rv != last {
            last = rv;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(3) {
            return Ok(last);
        }
        if Instant::now() > deadline {
            bail!("deploy/{name} kept changing for {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_roll_out_exactly_the_matching_workload() {
    let Some(client) = client().await else {
        return;
    };
    let ns = format!("tls-steal-rollout-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": ns, "labels": {"tls-steal-injection": "enabled"}}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the test namespace");
    let result = scenario(client.clone(), &ns).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result.unwrap();
}

async fn scenario(client: Client, ns: &str) -> Result<()> {
    let env = Env {
        ns: ns.into(),
        deploys: Api::namespaced(client.clone(), ns),
        replicasets: Api::namespaced(client.clone(), ns),
        pods: Api::namespaced(client.clone(), ns),
        configs: Api::namespaced(client.clone(), ns),
    };
    let pp = PostParams::default();
    env.deploys.create(&pp, &deployment("web")).await?;
    env.deploys.create(&pp, &deployment("other")).await?;
    let mut controller = start_controller(&client, ns, "e2e-1");

    // Without a config nothing is patched.
    let other_rv = settled_version(&env.deploys, "other").await?;
    settled_version(&env.deploys, "web").await?;
    assert_eq!(env.template_hash("web").await?, None);
    assert_eq!(env.replicasets_of("web").await?.len(), 1);

    // 1. Create a config for deploy/web → rollout with the plan.
    let mut config =
        MirrordTlsStealConfig::new("web-tls", MirrordTlsStealConfigSpec { inner: spec(443) });
    let t0 = Instant::now();
    let created = env.configs.create(&pp, &config).await?;
    let h1 = env.expected(Some(&created)).await?;
    assert!(!h1.is_empty());
    let took = env.wait_patched(&h1, t0).await?;
    timing(format!(
        "rollout e2e: config created -> template patched in {} ms",
        took.as_millis()
    ));
    let pod = env.wait_rollout_pod(&h1).await?;
    assert!(
        has_sidecar(&pod),
        "pod {} of the new ReplicaSet has no sidecar",
        pod.name_any()
    );
    assert_eq!(pod_plan_hash(&pod).as_deref(), Some(h1.as_str()));
    assert_eq!(env.replicasets_of("web").await?.len(), 2);
    env.config_status_matches("web-tls", &[format!("{ns}/Deployment/web")])
        .await?;

    // The non-matching Deployment was never touched.
    let other = env.deploys.get("other").await?;
    assert_eq!(
        other.resource_version().unwrap_or_default(),
        other_rv,
        "deploy/other changed"
    );
    assert_eq!(other.metadata.generation, Some(1));
    assert_eq!(env.template_hash("other").await?, None);
    assert_eq!(env.replicasets_of("other").await?.len(), 1);

    // 2. Edit the config's port → a second rollout.
    config = env.configs.get("web-tls").await?;
    let t0 = Instant::now();
    let patch = json!({"spec": {"ports": serde_json::to_value(&spec(8443).ports)?}});
    let edited = env
        .configs
        .patch("web-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_ne!(edited.metadata.generation, config.metadata.generation);
    let h2 = env.expected(Some(&edited)).await?;
    assert!(!h2.is_empty() && h2 != h1);
    let took = env.wait_patched(&h2, t0).await?;
    timing(format!(
        "rollout e2e: config port edited -> template patched in {} ms",
        took.as_millis()
    ));
    let pod = env.wait_rollout_pod(&h2).await?;
    assert!(has_sidecar(&pod));
    assert_eq!(pod_plan_hash(&pod).as_deref(), Some(h2.as_str()));
    assert_eq!(env.replicasets_of("web").await?.len(), 3);

    // 2b. A burst of edits (back to back, well inside the debounce) is one rollout.
    let t0 = Instant::now();
    for port in [9001u16, 9002, 9003, 9004, 9443] {
        let patch = json!({"spec": {"ports": serde_json::to_value(&spec(port).ports)?}});
        env.configs
            .patch("web-tls", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let last = env.configs.get("web-tls").await?;
    let h3 = env.expected(Some(&last)).await?;
    let took = env.wait_patched(&h3, t0).await?;
    timing(format!(
        "rollout e2e: burst of 5 edits -> template patched in {} ms",
        took.as_millis()
    ));
    let pod = env.wait_rollout_pod(&h3).await?;
    assert_eq!(pod_plan_hash(&pod).as_deref(), Some(h3.as_str()));
    // Anything else the burst would cause has had time to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.replicasets_of("web").await?.len(),
        4,
        "the burst was not coalesced"
    );

    // 3. Delete the config → a rollout whose pods have no sidecar.
    let t0 = Instant::now();
    env.configs
        .delete("web-tls", &DeleteParams::default())
        .await?;
    let took = env.wait_patched("", t0).await?;
    timing(format!(
        "rollout e2e: config deleted -> template patched in {} ms",
        took.as_millis()
    ));
    let pod = env.wait_rollout_pod("").await?;
    assert!(
        !has_sidecar(&pod),
        "pod {} still has the sidecar",
        pod.name_any()
    );
    assert_eq!(pod_plan_hash(&pod), None);
    assert_eq!(env.replicasets_of("web").await?.len(), 5);

    // 4. Restart the controller → nothing is rolled out again.
    let web_rv = settled_version(&env.deploys, "web").await?;
    controller.stop().await;
    controller = start_controller(&client, ns, "e2e-2");
    // Long enough for the new leader to take the released Lease, sync and reconcile everything.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let web = env.deploys.get("web").await?;
    assert_eq!(
        web.resource_version().unwrap_or_default(),
        web_rv,
        "deploy/web changed after the restart"
    );
    assert_eq!(env.replicasets_of("web").await?.len(), 5);
    let other = env.deploys.get("other").await?;
    assert_eq!(other.resource_version().unwrap_or_default(), other_rv);
    controller.stop().await;

    let rs_counts: BTreeMap<&str, usize> = [
        ("web", env.replicasets_of("web").await?.len()),
        ("other", env.replicasets_of("other").await?.len()),
    ]
    .into();
    eprintln!("rollout e2e: ReplicaSets at the end: {rs_counts:?}");
    Ok(())
}

/// A config that names one of the proxy's own ports (15443) is rejected with the field named in
/// its status (`Valid=False`), and the pods it matches start normally, uninjected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_on_the_proxy_port_is_rejected_and_the_pod_starts() {
    let Some(client) = client().await else {
        return;
    };
    let ns = format!("tls-steal-reserved-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": ns, "labels": {"tls-steal-injection": "enabled"}}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the test namespace");
    let result = reserved_port_scenario(client.clone(), &ns).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result.unwrap();
}

async fn reserved_port_scenario(client: Client, ns: &str) -> Result<()> {
    let configs: Api<MirrordTlsStealConfig> = Api::namespaced(client.clone(), ns);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let controller = start_controller(&client, ns, "e2e-reserved");
    let mut spec = spec(15443);
    spec.target_path = Some("deploy/reserved".into());
    let config =
        MirrordTlsStealConfig::new("on-proxy-port", MirrordTlsStealConfigSpec { inner: spec });
    configs.create(&PostParams::default(), &config).await?;
    let message = eventually("Valid=False on the config naming the port", || async {
        let c = configs.get("on-proxy-port").await?;
        Ok(c.status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .find(|c| c.type_ == "Valid" && c.status == "False")
            .map(|c| c.message.clone()))
    })
    .await?;
    eprintln!("status of on-proxy-port: Valid=False: {message}");
    assert!(
        message.contains("spec.ports[0].port") && message.contains("15443"),
        "{message}"
    );
    // A workload it matches: a pod that runs (the test app's image, sleeping).
    let deploy: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reserved", "labels": {"app": "reserved"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "reserved"}},
            "template": {
                "metadata": {"labels": {"app": "reserved"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": "tls-steal.local/e2e-https-app:e2e",
                                    "imagePullPolicy": "Never", "command": ["sleep", "3600"],
                                    "ports": [{"containerPort": 15443}]}]
                }
            }
        }
    }))?;
    deploys.create(&PostParams::default(), &deploy).await?;
    let pod = eventually("the reserved-port pod Running and Ready", || async {
        let list = pods
            .list(&ListParams::default().labels("app=reserved"))
            .await?;
        Ok(list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        }))
    })
    .await?;
    assert!(
        !has_sidecar(&pod),
        "a pod whose only config is rejected is not injected"
    );
    eprintln!("pod {} Ready, not injected", pod.name_any());
    controller.stop().await;
    Ok(())
}
