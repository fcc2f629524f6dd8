//! App probes that target a captured port, as the webhook hands them to the proxy.
//!
//! The kubelet sends probes to the pod IP, so a probe of a captured port would be redirected into
//! the proxy and judged through the steal path (an `httpGet` answered by the proxy's forwarding,
//! a `tcpSocket` accepted by the proxy even when the app is down). The webhook therefore rewrites
//! such probes to `GET http://<pod>:15401/app-health/<container>/<kind>` and passes the original
//! action here (env [`crate::contract::APP_PROBES_ENV`]); the proxy runs it against the app the
//! way the kubelet would and answers with the result.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contract::APP_HEALTH_PREFIX;

/// Which probe of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Readiness,
    Liveness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Readiness,
        ProbeKind::Liveness,
        ProbeKind::Startup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Startup => "startup",
        }
    }

    pub fn parse(s: &str) -> Option<ProbeKind> {
        ProbeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `http` or `https`, as in the probe's `scheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeScheme {
    Http,
    Https,
}

/// One header of an `httpGet` probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeHeader {
    pub name: String,
    pub value: String,
}

/// What the kubelet would have done.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeAction {
    /// `GET` of `path` on the port (named ports resolved), without certificate verification for
    /// `https`, with the probe's headers (a `Host` among them replaces the default `ip:port`).
    HttpGet {
        port: u16,
        scheme: ProbeScheme,
        path: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<ProbeHeader>,
    },
    /// A TCP connect to the port.
    TcpSocket { port: u16 },
}

impl ProbeAction {
    pub fn port(&self) -> u16 {
        match self {
            ProbeAction::HttpGet { port, .. } | ProbeAction::TcpSocket { port } => *port,
        }
    }
}

/// One rewritten probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProbe {
    pub action: ProbeAction,
    /// The probe's `timeoutSeconds` (Kubernetes' default 1 when unset).
    pub timeout_seconds: u32,
}

/// Every rewritten probe of a pod, keyed by `<container>/<kind>` (the path after
/// [`APP_HEALTH_PREFIX`]). A `BTreeMap`, so the JSON is stable.
pub type AppProbes = BTreeMap<String, AppProbe>;

/// The key of a probe in [`AppProbes`].
pub fn probe_key(container: &str, kind: ProbeKind) -> String {
    format!("{container}/{kind}")
}

/// The admin path a rewritten probe points at: `/app-health/<container>/<kind>`.
pub fn app_health_path(container: &str, kind: ProbeKind) -> String {
    format!("{APP_HEALTH_PREFIX}{}", probe_key(container, kind))
}

/// Reads [`AppProbes`] from the env var's JSON.
pub fn parse_app_probes(json: &str) -> Result<AppProbes, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_is_stable() {
        let mut probes = AppProbes::new();
        probes.insert(
            probe_key("app", ProbeKind::Readiness),
            AppProbe {
                action: ProbeAction::HttpGet {
                    port: 443,
                    scheme: ProbeScheme::Https,
                    path: "/healthz".into(),
                    headers: vec![ProbeHeader {
                        name: "x-probe".into(),
                        value: "1".into(),
                    }],
                },
                timeout_seconds: 1,
            },
        );
        probes.insert(
            probe_key("app", ProbeKind::Startup),
            AppProbe {
                action: ProbeAction::TcpSocket { port: 443 },
                timeout_seconds: 3,
            },
        );
        let json = serde_json::to_string(&probes).unwrap();
        assert_eq!(
            json,
            r#"{"app/readiness":{"action":{"httpGet":{"port":443,"scheme":"https","path":"/healthz","headers":[{"name":"x-probe","value":"1"}]}},"timeoutSeconds":1},"app/startup":{"action":{"tcpSocket":{"port":443}},"timeoutSeconds":3}}"#
        );
        assert_eq!(parse_app_probes(&json).unwrap(), probes);
        assert_eq!(
            app_health_path("app", ProbeKind::Liveness),
            "/app-health/app/liveness"
        );
        assert_eq!(ProbeKind::parse("startup"), Some(ProbeKind::Startup));
        assert_eq!(ProbeKind::parse("other"), None);
    }
}
