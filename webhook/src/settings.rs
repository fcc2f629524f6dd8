//! What the mutation needs to know besides the pod and the configs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tls_steal_crds::workers::Workers;

/// How `tls-steal-proxy` is added to the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes 1.29+).
    Native,
    /// A regular container placed first in `containers`.
    Classic,
}

impl SidecarMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarMode::Native => "native",
            SidecarMode::Classic => "classic",
        }
    }

    /// Native sidecars are on by default from Kubernetes 1.29.
    pub fn for_version(major: &str, minor: &str) -> SidecarMode {
        let num = |s: &str| {
            s.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
                .ok()
        };
        match (num(major), num(minor)) {
            (Some(ma), Some(mi)) if (ma, mi) >= (1, 29) => SidecarMode::Native,
            _ => SidecarMode::Classic,
        }
    }
}

/// `--sidecar-mode`: `auto` resolves from the API server version discovered at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SidecarModeArg {
    Auto,
    Native,
    Classic,
}

/// Settings of the injection.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The sidecar image (both `tls-steal-init` and `tls-steal-proxy`).
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// Resources of both injected containers.
    pub resources: Option<ResourceRequirements>,
    pub sidecar_mode: SidecarMode,
    /// A label identifying the webhook's own pods, which are never injected.
    pub self_label: Option<(String, String)>,
    /// The proxy's `--drain-delay`: the most seconds it keeps accepting after SIGTERM while the
    /// app still listens (it stops when the app does).
    pub drain_delay_seconds: u32,
    /// The proxy's `--max-connections` per captured port.
    pub max_connections: u32,
    /// The proxy's `--workers` unless the pod's annotation says otherwise.
    pub workers: Workers,
    /// Whether the proxy requires session tickets, and the keys it trusts.
    pub session_authorization: SessionAuthorization,
    /// The chart's namespace: its pods are never injected (nor `kube-system`'s).
    pub own_namespace: Option<String>,
}

/// What the proxy is told about session authorization (its `TLS_STEAL_SESSION_*` env).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SessionAuthorization {
    /// Whoever reaches the session API may steal.
    #[default]
    Disabled,
    /// A registration needs a ticket signed by one of `keys` (comma-separated, base64url).
    Required { keys: String },
}

/// The proxy's worker threads for a pod: its `tls-steal.io/proxy-workers` annotation when that
/// is valid (a typo must not keep the proxy from starting), else the chart's setting.
pub fn proxy_workers(chart: Workers, annotation: Option<&str>) -> Workers {
    annotation.and_then(|a| a.parse().ok()).unwrap_or(chart)
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: "ghcr.io/tls-steal/tls-steal-sidecar:latest".into(),
            image_pull_policy: None,
            resources: Some(resources("10m", "32Mi", None, Some("256Mi"))),
            sidecar_mode: SidecarMode::Native,
            self_label: Some(("app.kubernetes.io/name".into(), "tls-steal-webhook".into())),
            drain_delay_seconds: 3600,
            max_connections: 4096,
            workers: Workers::default(),
            session_authorization: SessionAuthorization::Disabled,
            own_namespace: None,
        }
    }
}

/// Builds a `ResourceRequirements` from optional quantities.
pub fn resources(
    cpu_request: &str,
    memory_request: &str,
    cpu_limit: Option<&str>,
    memory_limit: Option<&str>,
) -> ResourceRequirements {
    let map = |cpu: Option<&str>, mem: Option<&str>| {
        let m: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", mem)]
            .into_iter()
            .filter_map(|(k, v)| {
                v.filter(|v| !v.is_empty())
                    .map(|v| (k.to_string(), Quantity(v.to_string())))
            })
            .collect();
        (!m.is_empty()).then_some(m)
    };
    ResourceRequirements {
        requests: map(Some(cpu_request), Some(memory_request)),
        limits: map(cpu_limit, memory_limit),
        ..Default::default()
    }
}

/// `key=value`, as given to `--self-label`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelArg(pub String, pub String);

/// Why a `--self-label` value is not a label.
#[derive(Debug, thiserror::Error)]
pub enum LabelArgError {
    #[error("expected key=value, got {0:?}")]
    NoEquals(String),
    #[error("empty label key")]
    EmptyKey,
}

impl FromStr for LabelArg {
    type Err = LabelArgError;
    fn from_str(s: &str) -> Result<Self, LabelArgError> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| LabelArgError::NoEquals(s.to_owned()))?;
        if k.is_empty() {
            return Err(LabelArgError::EmptyKey);
        }
        Ok(LabelArg(k.into(), v.into()))
    }
}

impl fmt::Display for LabelArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_from_1_29() {
        assert_eq!(SidecarMode::for_version("1", "29"), SidecarMode::Native);
        assert_eq!(SidecarMode::for_version("1", "33+"), SidecarMode::Native);
        assert_eq!(SidecarMode::for_version("1", "28"), SidecarMode::Classic);
        assert_eq!(SidecarMode::for_version("x", "28"), SidecarMode::Classic);
    }
}
