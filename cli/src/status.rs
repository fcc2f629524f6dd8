//! `kubectl steal status TARGET`: the sessions active on the target's pods (who, ports, filter,
//! mode, since when, requests taken), read from each pod's sidecar (`GET /v1/status`).

use serde::Serialize;
use tls_steal_crds::session::{Mode, SessionInfo};

use crate::inspect::{Format, InspectError, Scope, print_json};
use crate::output::describe;

/// `kubectl steal status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The workload: `deploy/NAME`, `statefulset/NAME`, `pod/NAME`, ...
    pub target: String,
    /// Namespace of the target (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// `human` (default) or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

/// The sessions of one pod, or why they could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodSessions {
    pub pod: String,
    /// The pod has no `tls-steal-proxy`, or it does not run.
    pub sidecar: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub sessions: Vec<SessionInfo>,
}

/// What `status` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusOutput {
    pub target: String,
    pub namespace: String,
    pub pods: Vec<PodSessions>,
}

/// Runs `kubectl steal status`.
pub async fn run(args: &StatusArgs) -> Result<(), InspectError> {
    let scope = Scope::open(&args.target, args.namespace.clone(), args.context.clone()).await?;
    let mut pods = Vec::new();
    for pod in &scope.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut entry = PodSessions {
            pod: name,
            sidecar: false,
            error: None,
            sessions: Vec::new(),
        };
        if let Some(conn) = scope.sidecar(pod).await {
            entry.sidecar = true;
            match conn {
                Ok(mut api) => match api.status().await {
                    Ok(report) => entry.sessions = report.sessions,
                    Err(e) => entry.error = Some(e.to_string()),
                },
                Err(e) => entry.error = Some(e.to_string()),
            }
        }
        pods.push(entry);
    }
    let out = StatusOutput {
        target: scope.target.to_string(),
        namespace: scope.namespace.clone(),
        pods,
    };
    match args.output {
        Format::Json => print_json(&out),
        Format::Human => print!("{}", render(&out)),
    }
    Ok(())
}

/// `2h03m`, `4m10s`, `12s`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// One line of the table for `s` on `pod`.
fn row(pod: &str, s: &SessionInfo) -> [String; 8] {
    let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
    let mut filter = describe(s.filter.as_ref());
    if let (Some(_), Some(fp)) = (&s.filter, &s.filter_ports) {
        let fp: Vec<String> = fp.iter().map(u16::to_string).collect();
        filter = format!("{filter} on port {}, others whole", fp.join(","));
    }
    let (mode, taken) = match s.mode {
        Mode::Steal => ("steal", s.stolen),
        Mode::Mirror => ("mirror", s.mirrored),
    };
    let since = match (&s.since, s.age_seconds) {
        (Some(t), Some(a)) => format!("{t} ({} ago)", age(a)),
        (Some(t), None) => t.clone(),
        _ => "?".into(),
    };
    [
        pod.to_string(),
        s.id.to_string(),
        if s.client.is_empty() {
            "?".into()
        } else {
            s.client.clone()
        },
        mode.into(),
        ports.join(","),
        filter,
        since,
        taken.to_string(),
    ]
}

/// The human output.
pub fn render(out: &StatusOutput) -> String {
    let count: usize = out.pods.iter().map(|p| p.sessions.len()).sum();
    let with_sidecar = out.pods.iter().filter(|p| p.sidecar).count();
    let mut text = format!(
        "{} in namespace {}: {count} active session(s) on {with_sidecar} pod(s) with the sidecar ({} pod(s) in all)\n",
        out.target,
        out.namespace,
        out.pods.len()
    );
    let mut rows: Vec<[String; 8]> = Vec::new();
    for p in &out.pods {
        rows.extend(p.sessions.iter().map(|s| row(&p.pod, s)));
    }
    if !rows.is_empty() {
        let head = [
            "POD", "SESSION", "CLIENT", "MODE", "PORTS", "FILTER", "SINCE", "TAKEN",
        ]
        .map(String::from);
        text += &table(std::iter::once(head).chain(rows).collect());
    }
    for p in &out.pods {
        if let Some(e) = &p.error {
            text += &format!("pod/{}: cannot read its sessions: {e}\n", p.pod);
        } else if !p.sidecar {
            text += &format!(
                "pod/{}: no running tls-steal-proxy (nothing can be stolen there)\n",
                p.pod
            );
        }
    }
    text
}

/// Columns padded to their widest cell (the last one unpadded).
pub fn table<const N: usize>(rows: Vec<[String; N]>) -> String {
    let mut widths = [0usize; N];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut text = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line += c;
            } else {
                line += &format!("{c:<w$}  ", w = widths[i]);
            }
        }
        text += line.trim_end();
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use tls_steal_crds::filter::HttpFilter;

    use super::*;

    fn info(id: u64, mode: Mode) -> SessionInfo {
        SessionInfo {
            id,
            client: "alice@laptop".into(),
            ports: vec![443, 8443],
            mode,
            filter: Some(HttpFilter::Header("x-steal: yes".into())),
            filter_ports: Some(vec![443]),
            stolen: 4,
            mirrored: 7,
            since: Some("2024-05-01T12:00:00Z".into()),
            age_seconds: Some(130),
        }
    }

    #[test]
    fn renders_a_table_of_sessions_and_the_pods_without_one() {
        let out = StatusOutput {
            target: "deploy/web".into(),
            namespace: "shop".into(),
            pods: vec![
                PodSessions {
                    pod: "web-1".into(),
                    sidecar: true,
                    error: None,
                    sessions: vec![info(3, Mode::Steal), info(5, Mode::Mirror)],
                },
                PodSessions {
                    pod: "web-2".into(),
                    sidecar: true,
                    error: Some("RBAC forbids port-forwarding".into()),
                    sessions: vec![],
                },
                PodSessions {
                    pod: "old".into(),
                    sidecar: false,
                    error: None,
                    sessions: vec![],
                },
            ],
        };
        let text = render(&out);
        assert!(
            text.starts_with("deploy/web in namespace shop: 2 active session(s) on 2 pod(s)"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("POD    SESSION  CLIENT"), "{text}");
        assert!(lines[2].contains("web-1  3"), "{text}");
        assert!(lines[2].contains("steal"), "{text}");
        assert!(
            lines[2].contains("header ~ \"x-steal: yes\" on port 443, others whole"),
            "{text}"
        );
        assert!(
            lines[2].contains("2024-05-01T12:00:00Z (2m10s ago)"),
            "{text}"
        );
        assert!(lines[2].ends_with(" 4"), "stolen for steal: {text}");
        assert!(lines[3].ends_with(" 7"), "mirrored for mirror: {text}");
        assert!(
            text.contains("pod/web-2: cannot read its sessions: RBAC"),
            "{text}"
        );
        assert!(
            text.contains("pod/old: no running tls-steal-proxy"),
            "{text}"
        );

        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json["pods"][0]["sessions"][0]["since"],
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(json["pods"][1]["error"], "RBAC forbids port-forwarding");
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(130), "2m10s");
        assert_eq!(age(7380), "2h03m");
    }
}
