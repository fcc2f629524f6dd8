//! `--explain` for people.

use std::fmt::Write;

use tls_steal_crds::plan::PortPlan;
use tls_steal_crds::session::{Destination, ExplainRequest, Mode, PortStatus};

use super::report::{PodReport, Report, list};
use crate::output::describe;
use crate::status::age;

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} in namespace {}: {} pod(s)",
        r.target,
        r.namespace,
        r.pods.len()
    );
    for n in &r.notes {
        let _ = writeln!(t, "note: {n}");
    }
    if let Some(s) = &r.sample {
        let _ = writeln!(t, "sample request: {}", sample(s));
    }
    for p in &r.pods {
        t.push('\n');
        pod(&mut t, p);
    }
    t
}

fn sample(s: &ExplainRequest) -> String {
    let mut text = format!(
        "{} {}",
        s.method.as_deref().unwrap_or("GET"),
        s.path.as_deref().unwrap_or("/")
    );
    for (n, v) in &s.headers {
        let _ = write!(text, ", {n}: {v}");
    }
    text
}

fn pod(t: &mut String, p: &PodReport) {
    let state = match (p.ready, p.sidecar) {
        (true, true) => "ready, tls-steal-proxy injected",
        (false, true) => "not ready, tls-steal-proxy injected",
        (true, false) => "ready, no tls-steal-proxy",
        (false, false) => "not ready, no tls-steal-proxy",
    };
    let _ = writeln!(t, "pod/{} ({state})", p.pod);
    let _ = writeln!(
        t,
        "  target paths: {} (each also with /container/<name>)",
        p.target_paths.join(", ")
    );
    let _ = writeln!(t, "  configs:");
    if p.configs.is_empty() {
        let _ = writeln!(t, "    none in the namespace or cluster-wide");
    }
    for c in &p.configs {
        match &c.reason {
            None => {
                let _ = writeln!(
                    t,
                    "    matched      {} (targetPath matched {})",
                    c.config,
                    c.paths.join(", ")
                );
            }
            Some(why) => {
                let _ = writeln!(t, "    not matched  {}: {why}", c.config);
            }
        }
    }
    let _ = writeln!(
        t,
        "  plan: {} ({})",
        match p.plan_hash.is_empty() {
            true => "no port".to_string(),
            false => format!("hash {}", p.plan_hash),
        },
        p.running_plan.detail
    );
    let _ = writeln!(t, "  ports:");
    if p.ports.is_empty() {
        let _ = writeln!(t, "    none (nothing on this pod is captured)");
    }
    for port in &p.ports {
        port_lines(t, &port.plan, port.live.as_ref());
    }
    if !p.discarded.is_empty() {
        let _ = writeln!(t, "  discarded:");
        for d in &p.discarded {
            let _ = writeln!(t, "    port {} of {}: {}", d.port, d.config, d.reason);
        }
    }
    if !p.rejected.is_empty() {
        let _ = writeln!(t, "  rejected (invalid, left out of the plan):");
        for r in &p.rejected {
            let _ = writeln!(t, "    {}: {}", r.config, r.errors.join("; "));
        }
    }
    if let Some(e) = &p.sidecar_error {
        let _ = writeln!(t, "  sidecar: cannot ask it: {e}");
    } else if p.sidecar {
        let _ = writeln!(t, "  sessions: {} active", p.sessions.len());
        for s in &p.sessions {
            let mode = match s.mode {
                Mode::Steal => "steal",
                Mode::Mirror => "mirror",
            };
            let since = s.age_seconds.map(age).unwrap_or_else(|| "?".into());
            let _ = writeln!(
                t,
                "    session {} ({}, {mode}) ports {}: {}; registered {since} ago",
                s.id,
                s.client,
                list(&s.ports),
                describe(s.filter.as_ref())
            );
        }
    }
    if !p.requests.is_empty() {
        let _ = writeln!(t, "  sample request:");
    }
    for r in &p.requests {
        match (&r.answer, &r.error) {
            (Some(a), _) => {
                let to = match &a.destination {
                    Destination::App => "the app".to_string(),
                    Destination::Session { id, client, mode } => {
                        let mode = match mode {
                            Mode::Steal => "steal",
                            Mode::Mirror => "mirror",
                        };
                        format!("session {id} ({client}, {mode})")
                    }
                };
                let _ = writeln!(t, "    port {}: → {to}: {}", r.port, a.reason);
                for s in &a.sessions {
                    let _ = writeln!(
                        t,
                        "      session {} ({}): {}",
                        s.id,
                        s.client,
                        s.verdict.describe()
                    );
                }
            }
            (None, Some(e)) => {
                let _ = writeln!(t, "    port {}: unknown: {e}", r.port);
            }
            (None, None) => {}
        }
    }
    for n in &p.notes {
        let _ = writeln!(t, "  note: {n}");
    }
}

fn port_lines(t: &mut String, p: &PortPlan, live: Option<&PortStatus>) {
    let server = &p.agent_as_server;
    let client = &p.agent_as_client;
    let _ = writeln!(
        t,
        "    {}: files in container {}, from {}",
        p.port, p.container, p.config
    );
    let alpn = match server.alpn_protocols.is_empty() {
        true => "ALPN off".to_string(),
        false => format!("ALPN {}", server.alpn_protocols.join(", ")),
    };
    let clients = match &server.verification {
        None => "client certificates not asked".to_string(),
        Some(v) => {
            let mut parts = Vec::new();
            if !v.trust_roots.is_empty() {
                parts.push(format!("client roots {}", v.trust_roots.join(", ")));
            }
            if v.accept_any_cert {
                parts.push("any client certificate".into());
            }
            if v.allow_anonymous {
                parts.push("anonymous clients allowed".into());
            }
            parts.join(", ")
        }
    };
    let _ = writeln!(
        t,
        "      as server: cert {}, key {}, {alpn}, {clients}",
        server.authentication.cert_pem, server.authentication.key_pem
    );
    let verify = match (
        client.verification.accept_any_cert,
        client.verification.trust_roots.is_empty(),
    ) {
        (true, _) => "any app certificate accepted".to_string(),
        (false, false) => format!(
            "app verified against {}",
            client.verification.trust_roots.join(", ")
        ),
        (false, true) => "no trust roots (the app cannot be verified)".to_string(),
    };
    let auth = match &client.authentication {
        None => "anonymous".to_string(),
        Some(a) => format!("client cert {}", a.cert_pem),
    };
    let _ = writeln!(t, "      to the app: {verify}, {auth}");
    let live = match live {
        None => "unknown (the sidecar was not asked)".to_string(),
        Some(s) if s.state == "passthrough" => format!(
            "relayed untouched (TCP passthrough, nothing is stolen): {}",
            s.reason
                .as_deref()
                .unwrap_or("its TLS material could not be loaded")
        ),
        Some(s) if s.state == "tls" => {
            let mut text = "serving (TLS terminated, requests can be stolen)".to_string();
            if let Some(c) = &s.certificate {
                let _ = write!(text, "; certificate {} until {}", c.subject, c.not_after);
            }
            if let Some(r) = &s.reason {
                let _ = write!(text, "; {r}");
            }
            text
        }
        Some(s) => format!(
            "{}{}",
            s.state,
            s.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(t, "      live: {live}");
}
