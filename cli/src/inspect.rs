//! What `--explain` and `status` share: the Kubernetes client, TARGET resolved to its pods, and a
//! connection to each pod's sidecar. Nothing here registers a session.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};

use crate::pods::carries_sidecar;
use crate::sidecar_api::{SidecarApi, SidecarApiError};
use crate::target::{self, PodSelector, Target, TargetError};

/// `-o`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Human,
    /// For scripts.
    Json,
}

/// The target's pods could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot load the kubeconfig (set KUBECONFIG or --context): {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot list the pods of {target}: {source}")]
    Pods {
        target: Target,
        #[source]
        source: kube::Error,
    },
}

/// The target and its pods, read once.
pub struct Scope {
    pub client: Client,
    pub namespace: String,
    pub target: Target,
    pub pods_api: Api<Pod>,
    /// Sorted by name.
    pub pods: Vec<Pod>,
}

impl Scope {
    /// Resolves `target` (in `namespace`, default the context's) and lists its pods.
    pub async fn open(
        target: &str,
        namespace: Option<String>,
        context: Option<String>,
    ) -> Result<Scope, InspectError> {
        let target: Target = target.parse()?;
        let options = KubeConfigOptions {
            context,
            ..KubeConfigOptions::default()
        };
        let config = Config::from_kubeconfig(&options)
            .await
            .map_err(InspectError::Kubeconfig)?;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(InspectError::Client)?;
        let selector = target::resolve(&client, &namespace, &target).await?;
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let listed = match &selector {
            PodSelector::Name(name) => pods_api.get(name).await.map(|p| vec![p]),
            PodSelector::Labels(labels) => pods_api
                .list(&ListParams::default().labels(labels))
                .await
                .map(|l| l.items),
        };
        let mut pods = listed.map_err(|source| InspectError::Pods {
            target: target.clone(),
            source,
        })?;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(Scope {
            client,
            namespace,
            target,
            pods_api,
            pods,
        })
    }

    /// A connection to the sidecar of `pod`, when it has one and runs.
    pub async fn sidecar(&self, pod: &Pod) -> Option<Result<SidecarApi, SidecarApiError>> {
        let name = pod.metadata.name.as_deref()?;
        if !carries_sidecar(pod) || !is_running(pod) {
            return None;
        }
        Some(SidecarApi::portforward(&self.pods_api, &self.namespace, name).await)
    }
}

/// The pod's phase is `Running` and it is not being deleted.
pub fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running")
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    );
}
