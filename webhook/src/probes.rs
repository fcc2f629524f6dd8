//! App probes that target a captured port are rewritten to the proxy's admin port.
//!
//! The kubelet probes the pod IP, so a probe of a captured port would be redirected into the
//! proxy: an `httpGet` would be judged through the steal path (and fail when the proxy verifies
//! the app against the pod IP, as the kubelet sends no SNI), a `tcpSocket` would be accepted by
//! the proxy even with the app down. Such a probe becomes `GET http://<pod>:15401/app-health/
//! <container>/<kind>`, and its original action travels to the proxy (env
//! [`tls_steal_crds::contract::APP_PROBES_ENV`], [`AppProbes`]), which runs it against the app as the kubelet would.
//!
//! Decisions:
//! * Only the action is replaced (`httpGet` / `tcpSocket` → `httpGet` on the admin port); timing
//!   fields (delays, periods, thresholds, `timeoutSeconds`) stay as the user wrote them.
//! * Rewritten: `httpGet` (HTTP and HTTPS) and `tcpSocket` probes of regular containers whose port
//!   (a number, or a name resolved against that container's own ports, as the kubelet does) is
//!   captured. Left alone: `exec` and `grpc` probes, probes of other ports, probes with a `host`
//!   (the kubelet then connects elsewhere than the pod IP, so nothing is captured), an unknown
//!   `scheme`, and probes of init containers.
//! * The rewrite is part of the injection: a pod that gets no plan keeps its probes, so a config
//!   that stops matching undoes it with the rollout its plan hash change causes.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tls_steal_crds::probe::{
    AppProbe, AppProbes, ProbeAction, ProbeHeader, ProbeKind, ProbeScheme, app_health_path,
    probe_key,
};

use tls_steal_crds::contract::ADMIN_PORT;

/// A probe's port as written: a number or a container port name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PortRef {
    Number(i32),
    Name(String),
}

impl From<&IntOrString> for PortRef {
    fn from(p: &IntOrString) -> Self {
        match p {
            IntOrString::Int(n) => PortRef::Number(*n),
            IntOrString::String(s) => PortRef::Name(s.clone()),
        }
    }
}

/// The part of a probe the rewrite reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    HttpGet {
        port: PortRef,
        path: Option<String>,
        scheme: Option<String>,
        host: Option<String>,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        port: PortRef,
        host: Option<String>,
    },
    /// `exec`, `grpc`, or none: never rewritten.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ProbeShape {
    kind: ProbeKind,
    action: Action,
    timeout_seconds: Option<i32>,
}

/// What the rewrite reads of one container: its named ports and its probes. Part of the
/// mutation's `PodShape`, so remembered decisions key on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContainerProbes {
    named_ports: Vec<(String, i32)>,
    probes: Vec<ProbeShape>,
}

/// The probe field of a container for `kind`.
pub fn probe_field(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Readiness => "readinessProbe",
        ProbeKind::Liveness => "livenessProbe",
        ProbeKind::Startup => "startupProbe",
    }
}

fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
    }
}

fn probe_mut(c: &mut Container, kind: ProbeKind) -> Option<&mut Probe> {
    match kind {
        ProbeKind::Readiness => c.readiness_probe.as_mut(),
        ProbeKind::Liveness => c.liveness_probe.as_mut(),
        ProbeKind::Startup => c.startup_probe.as_mut(),
    }
}

impl ContainerProbes {
    pub fn of(c: &Container) -> Self {
        let named_ports = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
            .collect();
        let probes = ProbeKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let p = probe_of(c, kind)?;
                let action = if let Some(h) = &p.http_get {
                    Action::HttpGet {
                        port: (&h.port).into(),
                        path: h.path.clone(),
                        scheme: h.scheme.clone(),
                        host: h.host.clone(),
                        headers: h
                            .http_headers
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                    }
                } else if let Some(t) = &p.tcp_socket {
                    Action::TcpSocket {
                        port: (&t.port).into(),
                        host: t.host.clone(),
                    }
                } else {
                    Action::Other
                };
                Some(ProbeShape {
                    kind,
                    action,
                    timeout_seconds: p.timeout_seconds,
                })
            })
            .collect();
        ContainerProbes {
            named_ports,
            probes,
        }
    }

    fn resolve(&self, port: &PortRef) -> Option<u16> {
        let n = match port {
            PortRef::Number(n) => *n,
            PortRef::Name(name) => self.named_ports.iter().find(|(n, _)| n == name)?.1,
        };
        u16::try_from(n).ok().filter(|p| *p != 0)
    }
}

/// One probe to rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// Index in `spec.containers` (before the proxy is inserted in classic mode).
    pub index: usize,
    pub container: String,
    pub kind: ProbeKind,
    /// The original action was `tcpSocket` (it is removed, `httpGet` added), else `httpGet`
    /// (replaced).
    pub was_tcp: bool,
    /// What the proxy runs instead.
    pub app: AppProbe,
}

impl Rewrite {
    /// The action of the rewritten probe.
    pub fn admin_action(&self) -> HTTPGetAction {
        HTTPGetAction {
            path: Some(app_health_path(&self.container, self.kind)),
            port: IntOrString::Int(ADMIN_PORT.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }
    }

    /// Applies the rewrite to the pod's container.
    pub fn apply(&self, c: &mut Container) {
        let action = self.admin_action();
        if let Some(p) = probe_mut(c, self.kind) {
            p.tcp_socket = None;
            p.http_get = Some(action);
        }
    }
}

/// The probes of `containers` (name and probes, in pod order) that target one of `captured`.
pub fn rewrites<'a>(
    containers: impl Iterator<Item = (&'a str, &'a ContainerProbes)>,
    captured: &[u16],
) -> Vec<Rewrite> {
    let mut out = Vec::new();
    for (index, (name, c)) in containers.enumerate() {
        for p in &c.probes {
            let (app, was_tcp) = match &p.action {
                Action::HttpGet {
                    port,
                    path,
                    scheme,
                    host: None,
                    headers,
                } => {
                    let scheme = match scheme.as_deref() {
                        None => ProbeScheme::Http,
                        Some(s) if s.eq_ignore_ascii_case("http") => ProbeScheme::Http,
                        Some(s) if s.eq_ignore_ascii_case("https") => ProbeScheme::Https,
                        Some(_) => continue,
                    };
                    let Some(port) = c.resolve(port) else {
                        continue;
                    };
                    let action = ProbeAction::HttpGet {
                        port,
                        scheme,
                        // The kubelet's default path.
                        path: path.clone().filter(|p| !p.is_empty()).unwrap_or("/".into()),
                        headers: headers
                            .iter()
                            .map(|(name, value)| ProbeHeader {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                    };
                    (action, false)
                }
                Action::TcpSocket { port, host: None } => {
                    let Some(port) = c.resolve(port) else {
                        continue;
                    };
                    (ProbeAction::TcpSocket { port }, true)
                }
                _ => continue,
            };
            if !captured.contains(&app.port()) {
                continue;
            }
            out.push(Rewrite {
                index,
                container: name.to_owned(),
                kind: p.kind,
                was_tcp,
                app: AppProbe {
                    action: app,
                    // Kubernetes' default is 1 s.
                    timeout_seconds: p.timeout_seconds.map_or(1, |t| t.max(1) as u32),
                },
            });
        }
    }
    out
}

/// The JSON handed to the proxy, `None` when nothing was rewritten.
pub fn app_probes_json(rewrites: &[Rewrite]) -> Option<String> {
    if rewrites.is_empty() {
        return None;
    }
    let probes: AppProbes = rewrites
        .iter()
        .map(|r| (probe_key(&r.container, r.kind), r.app.clone()))
        .collect();
    Some(serde_json::to_string(&probes).expect("probes serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn rewrites_of(c: &Container, captured: &[u16]) -> Vec<Rewrite> {
        let probes = ContainerProbes::of(c);
        rewrites(std::iter::once((c.name.as_str(), &probes)), captured)
    }

    #[test]
    fn captured_http_https_and_tcp_probes_are_rewritten() {
        let c = container(json!({
            "name": "app",
            "ports": [{"name": "https", "containerPort": 443}, {"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"port": "https", "scheme": "HTTPS", "path": "/ready",
                "httpHeaders": [{"name": "Host", "value": "app.example"}]}, "timeoutSeconds": 3},
            "livenessProbe": {"httpGet": {"port": 443, "scheme": "https"}},
            "startupProbe": {"tcpSocket": {"port": 443}, "periodSeconds": 1}
        }));
        let r = rewrites_of(&c, &[443]);
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].kind, r[0].was_tcp, r[0].app.timeout_seconds),
            (ProbeKind::Readiness, false, 3)
        );
        assert_eq!(
            r[0].app.action,
            ProbeAction::HttpGet {
                port: 443,
                scheme: ProbeScheme::Https,
                path: "/ready".into(),
                headers: vec![ProbeHeader {
                    name: "Host".into(),
                    value: "app.example".into()
                }],
            }
        );
        assert_eq!(
            r[1].app.action,
            ProbeAction::HttpGet {
                port: 443,
                scheme: ProbeScheme::Https,
                path: "/".into(),
                headers: vec![],
            }
        );
        assert_eq!(r[1].app.timeout_seconds, 1, "Kubernetes' default");
        assert_eq!(
            (r[2].kind, r[2].was_tcp, &r[2].app.action),
            (
                ProbeKind::Startup,
                true,
                &ProbeAction::TcpSocket { port: 443 }
            )
        );
        let mut applied = c.clone();
        for rw in &r {
            rw.apply(&mut applied);
        }
        let startup = applied.startup_probe.unwrap();
        assert!(startup.tcp_socket.is_none());
        assert_eq!(startup.period_seconds, Some(1), "timing fields are kept");
        let get = startup.http_get.unwrap();
        assert_eq!(get.path.as_deref(), Some("/app-health/app/startup"));
        assert_eq!(get.port, IntOrString::Int(15401));
        assert_eq!(
            applied.readiness_probe.unwrap().timeout_seconds,
            Some(3),
            "timeoutSeconds is kept"
        );
        let json = app_probes_json(&r).unwrap();
        let back = tls_steal_crds::probe::parse_app_probes(&json).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back["app/liveness"], r[1].app);
    }

    #[test]
    fn other_probes_are_left_alone() {
        let c = container(json!({
            "name": "app",
            "ports": [{"name": "https", "containerPort": 443}],
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}},
            "livenessProbe": {"exec": {"command": ["true"]}},
            "startupProbe": {"httpGet": {"port": 443, "host": "10.0.0.1"}}
        }));
        assert!(rewrites_of(&c, &[443]).is_empty());
        let c = container(json!({
            "name": "app",
            "readinessProbe": {"httpGet": {"port": "https"}},
            "livenessProbe": {"grpc": {"port": 443}},
            "startupProbe": {"httpGet": {"port": 443, "scheme": "FTP"}}
        }));
        assert!(
            rewrites_of(&c, &[443]).is_empty(),
            "unresolvable name, grpc, unknown scheme"
        );
        assert_eq!(app_probes_json(&[]), None);
    }
}
