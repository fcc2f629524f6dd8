//! The ports and certificates as the proxy serves them, for `GET /v1/status`.

use tls_steal_crds::session::{CertificateInfo, PortStatus, StatusReport};

use super::Sessions;
use crate::proxy::PortHealth;
use crate::proxy::Shared;

/// Every captured port: `tls` (with its certificate) or `passthrough` (with the reason).
pub fn ports(shared: &Shared) -> Vec<PortStatus> {
    shared
        .ports
        .iter()
        .map(|entry| {
            let port = entry.plan.port;
            let (state, reason, current) = match entry.health() {
                PortHealth::Ok => ("tls", None, true),
                PortHealth::Stale(e) => (
                    "tls",
                    Some(format!(
                        "serving earlier certificates; the current files are unusable: {}: {}",
                        e.what, e.reason
                    )),
                    false,
                ),
                PortHealth::Passthrough(e) => (
                    "passthrough",
                    Some(format!("{}: {}", e.what, e.reason)),
                    false,
                ),
            };
            let certificate = current
                .then(|| {
                    certificate(
                        shared,
                        &entry.plan.container,
                        &entry.plan.agent_as_server.authentication.cert_pem,
                    )
                })
                .flatten();
            PortStatus {
                port,
                state: state.into(),
                reason,
                certificate,
            }
        })
        .collect()
}

/// The ports among `ports` that are relayed untouched, with the reason (reads no file).
pub fn passthrough(shared: &Shared, ports: &[u16]) -> Vec<PortStatus> {
    ports
        .iter()
        .filter_map(|p| shared.ports.get(*p))
        .filter_map(|entry| match entry.health() {
            PortHealth::Passthrough(e) => Some(PortStatus {
                port: entry.plan.port,
                state: "passthrough".into(),
                reason: Some(format!("{}: {}", e.what, e.reason)),
                certificate: None,
            }),
            PortHealth::Ok | PortHealth::Stale(_) => None,
        })
        .collect()
}

/// The end-entity certificate of `file` in `container` (as the proxy reads it), subject and
/// expiry.
fn certificate(shared: &Shared, container: &str, file: &str) -> Option<CertificateInfo> {
    let bytes = shared.cfg.files.for_container(container).read(file).ok()?;
    let chain = crate::proxy::cert_chain(&bytes, file).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let t = cert.validity().not_after.to_datetime();
    Some(CertificateInfo {
        subject: cert.subject().to_string(),
        not_after: format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        file: file.to_owned(),
    })
}

/// The whole report (reads the certificate files: call it off the async workers).
pub fn report(sessions: &Sessions) -> StatusReport {
    let ports = match sessions.proxy() {
        Some(shared) => ports(&shared),
        None => sessions
            .cfg
            .captured_ports
            .iter()
            .map(|p| PortStatus {
                port: *p,
                state: "unknown".into(),
                reason: Some("the proxy is not running".into()),
                certificate: None,
            })
            .collect(),
    };
    StatusReport {
        ports,
        sessions: sessions
            .registry
            .snapshot()
            .all
            .iter()
            .map(|s| s.info())
            .collect(),
    }
}
