//! Semantic validation beyond what the structural schema lets the API server enforce. Every
//! problem is reported (not just the first) with the JSON path of the field at fault.

use std::collections::BTreeSet;
use std::fmt;

use crate::contract::RESERVED_PORTS;
use crate::pattern::wildcard_match;
use crate::selector::OPERATORS;
use crate::target::known_prefixes;
use crate::types::{
    ClientVerification, PortConfig, ServerVerification, TlsAuthentication, TlsStealSpec,
};

/// One problem, at one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path such as `spec.ports[0].agentAsServer.authentication.certPem`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of one spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl TlsStealSpec {
    /// Checks everything the API server cannot: pattern problems, selector operators, empty or
    /// relative PEM paths, the proxy's own ports, empty ALPN entries and verification settings
    /// that could never accept anyone. A port listed twice is not an error: as the feature
    /// description says, extra entries are discarded ([`TlsStealSpec::duplicate_ports`]).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = Errors::default();
        if let Some(p) = &self.target_path {
            validate_pattern(p, &mut errs);
        }
        if let Some(sel) = &self.selector {
            for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
                let at = format!("spec.selector.matchExpressions[{i}]");
                let values = e.values.as_deref().unwrap_or_default();
                if e.key.is_empty() {
                    errs.push(format!("{at}.key"), "must not be empty");
                }
                match e.operator.as_str() {
                    "In" | "NotIn" if values.is_empty() => errs.push(
                        format!("{at}.values"),
                        format!("operator {} needs at least one value", e.operator),
                    ),
                    "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(
                        format!("{at}.values"),
                        format!("operator {} takes no values", e.operator),
                    ),
                    op if !OPERATORS.contains(&op) => errs.push(
                        format!("{at}.operator"),
                        format!(
                            "unknown operator {op:?}; expected one of {}",
                            OPERATORS.join(", ")
                        ),
                    ),
                    _ => {}
                }
            }
            for k in sel.match_labels.iter().flatten().map(|(k, _)| k) {
                if k.is_empty() {
                    errs.push("spec.selector.matchLabels", "label keys must not be empty");
                }
            }
        }
        if self.ports.is_empty() {
            errs.push("spec.ports", "must list at least one port");
        }
        for (i, port) in self.ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            if port.port == 0 {
                errs.push(format!("{at}.port"), "must be between 1 and 65535");
            } else if RESERVED_PORTS.contains(&port.port) {
                errs.push(
                    format!("{at}.port"),
                    format!(
                        "port {} is one of tls-steal-proxy's own ports ({}); capturing it would loop or hide the proxy",
                        port.port,
                        RESERVED_PORTS.map(|p| p.to_string()).join(", ")
                    ),
                );
            }
            validate_port(&at, port, &mut errs);
        }
        if errs.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs.0))
        }
    }
}

impl TlsStealSpec {
    /// Entries of `ports` whose port an earlier entry already lists, as (index, port): the merge
    /// keeps the first entry and discards these.
    pub fn duplicate_ports(&self) -> Vec<(usize, u16)> {
        let mut seen = BTreeSet::new();
        self.ports
            .iter()
            .enumerate()
            .filter(|(_, p)| !seen.insert(p.port))
            .map(|(i, p)| (i, p.port))
            .collect()
    }
}

fn validate_pattern(p: &str, errs: &mut Errors) {
    const AT: &str = "spec.targetPath";
    if p.is_empty() {
        errs.push(
            AT,
            "must not be empty (omit the field to match every target)",
        );
        return;
    }
    if let Some(c) = p.chars().find(|c| c.is_whitespace() || c.is_control()) {
        errs.push(
            AT,
            format!("contains the character {c:?}, which no target path has"),
        );
    }
    if p.contains("//") {
        errs.push(AT, "contains an empty path segment (`//`)");
    }
    // A first segment without `*` must be one of the target kinds, or the pattern never matches.
    let first = p.split('/').next().unwrap_or_default();
    if !first.contains('*') && !known_prefixes().any(|k| wildcard_match(first, k)) {
        let kinds: Vec<_> = known_prefixes().collect();
        errs.push(
            AT,
            format!(
                "starts with {first:?}, which matches no target kind ({}); it can never match",
                kinds.join(", ")
            ),
        );
    }
}

fn validate_port(at: &str, port: &PortConfig, errs: &mut Errors) {
    let server = &port.agent_as_server;
    validate_auth(
        &format!("{at}.agentAsServer.authentication"),
        &server.authentication,
        errs,
    );
    let mut alpn = BTreeSet::new();
    for (j, proto) in server.alpn_protocols.iter().enumerate() {
        let field = format!("{at}.agentAsServer.alpnProtocols[{j}]");
        if proto.is_empty() {
            errs.push(field, "must not be empty");
        } else if proto.len() > 255 {
            errs.push(field, "longer than 255 bytes, the ALPN limit");
        } else if !alpn.insert(proto.as_str()) {
            errs.push(field, format!("{proto:?} is listed more than once"));
        }
    }
    if let Some(v) = &server.verification {
        validate_server_verification(&format!("{at}.agentAsServer.verification"), v, errs);
    }
    let client = &port.agent_as_client;
    if let Some(auth) = &client.authentication {
        validate_auth(&format!("{at}.agentAsClient.authentication"), auth, errs);
    }
    validate_client_verification(
        &format!("{at}.agentAsClient.verification"),
        &client.verification,
        errs,
    );
}

fn validate_auth(at: &str, auth: &TlsAuthentication, errs: &mut Errors) {
    validate_path(&format!("{at}.certPem"), &auth.cert_pem, errs);
    validate_path(&format!("{at}.keyPem"), &auth.key_pem, errs);
}

fn validate_path(field: &str, path: &str, errs: &mut Errors) {
    if path.is_empty() {
        errs.push(field, "must not be empty");
    } else if !path.starts_with('/') {
        errs.push(
            field,
            format!("{path:?} must be an absolute path in the target container's filesystem"),
        );
    } else if path.contains('\0') {
        errs.push(field, "contains a NUL byte");
    }
}

fn validate_roots(at: &str, roots: &[String], errs: &mut Errors) {
    for (k, r) in roots.iter().enumerate() {
        validate_path(&format!("{at}.trustRoots[{k}]"), r, errs);
    }
}

fn validate_server_verification(at: &str, v: &ServerVerification, errs: &mut Errors) {
    validate_roots(at, &v.trust_roots, errs);
    if v.trust_roots.is_empty() && !v.allow_anonymous && !v.accept_any_cert {
        errs.push(
            format!("{at}.trustRoots"),
            "empty while allowAnonymous and acceptAnyCert are false: no client could ever connect",
        );
    }
}

fn validate_client_verification(at: &str, v: &ClientVerification, errs: &mut Errors) {
    validate_roots(at, &v.trust_roots, errs);
    if v.trust_roots.is_empty() && !v.accept_any_cert {
        errs.push(
            format!("{at}.trustRoots"),
            "empty while acceptAnyCert is false: the application's certificate could never be verified",
        );
    }
}
