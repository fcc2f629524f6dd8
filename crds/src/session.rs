//! The session API between `kubectl-steal` and `tls-steal-proxy` (127.0.0.1:15400 in the pod,
//! reached through port-forward, so Kubernetes RBAC on `pods/portforward` decides who may steal).
//!
//! ## Protocol
//! 1. The client opens a TCP connection and sends an HTTP/1.1 `POST /v1/sessions` with
//!    `Connection: upgrade`, `Upgrade: tls-steal-session/1` and a JSON [`Registration`] body.
//! 2. The sidecar checks it: an error is a `400` with a JSON [`ApiError`] naming the field
//!    (bad JSON, invalid regex or JSONPath query, a port the plan does not capture — listing the
//!    captured ones). Success is `101 Switching Protocols` with the session id in the
//!    `tls-steal-session` header, the session's ports in the `tls-steal-ports` header
//!    ([`PORTS_HEADER`], e.g. `443,8443`) and, when some of the registered ports are relayed
//!    untouched (their TLS material could not be loaded, so nothing on them can be stolen), the
//!    `tls-steal-passthrough` header ([`PASSTHROUGH_HEADER`]): a JSON list of their
//!    [`PortStatus`] (with the reason, naming the file).
//! 3. On the upgraded connection the roles reverse: the sidecar is the HTTP/2 **client**, the
//!    session the HTTP/2 **server**. Each stolen (or mirrored) request is one HTTP/2 stream: the
//!    original method, path, query and headers, streamed body and trailers, plus the header
//!    `tls-steal-meta` holding a JSON [`RequestMeta`]. The session's response (status, headers,
//!    streamed body, trailers) goes back to the original client unchanged; for mirrored
//!    requests it is discarded.
//! 4. An HTTP/1.1 upgrade (WebSocket) travels as an extended CONNECT stream (RFC 8441,
//!    `:protocol` = the `Upgrade` header's value); the original upgrade headers are in the meta.
//!    The session answers `200` with the local app's real status in `tls-steal-status` (101 on
//!    success) and its headers; after that the stream carries the raw upgraded bytes both ways.
//! 5. Notifications travel as `POST /.tls-steal/event` streams with a JSON [`Event`] body.
//!
//! **Authorization** (`TLS_STEAL_SESSION_AUTHORIZATION=required`, what the webhook injects by
//! default): the registration carries the session's signed ticket in the [`TICKET_HEADER`]
//! header (`crate::ticket`: namespace, ports as sent, mode and filter hash must match). A missing,
//! forged, expired or mismatched ticket is a `403` with an [`ApiError`] whose `field` is
//! `ticket`. Before the ticket expires, the sidecar asks the session for its current one with
//! `GET /.tls-steal/ticket` streams ([`TICKET_PATH`]); a fresh ticket for the same session (same
//! uid and scope) extends it, and a session whose ticket expires is ended like one whose client
//! left.
//! 6. The session ends when its connection closes: its filters vanish at once, its in-flight
//!    requests get a 502 whose body says the session ended, and new requests reach the app.
//!    The sidecar also ends a session that leaves too many stolen requests unanswered (1024 by
//!    default; the request that finds it stuck goes to the app) or stops answering HTTP/2 PINGs.
//! 7. A registration sent again on a connection that already carries a session (HTTP/1 bytes
//!    where the session's HTTP/2 frames are expected) is answered `409 Conflict` with an
//!    [`ApiError`], and that session ends: one connection, one session.
//! 8. For an upgrade, a non-`2xx` answer to the CONNECT is passed to the client as is (the upgrade
//!    did not happen); a `2xx` whose `tls-steal-status` is not `101` gives the client that status,
//!    with the bytes of the stream as the body.
//!
//! `GET /v1/status` (plain HTTP/1.1) returns a [`StatusReport`]. `POST /v1/explain` with an
//! [`ExplainRequest`] (a sample request) returns an [`ExplainAnswer`]: where that request would
//! go now, and why. It only reads: nothing is routed, no counter moves, no session is told.
//!
//! ## Compatibility
//! Later additions keep `tls-steal-session/1` and stay optional, so an older client's
//! registration means what it always meant:
//! * `ports` may be empty: the session takes every port the sidecar captures (its steal plan).
//! * `filter_ports`: the ports the filter applies to (mirrord's `http_filter.ports`); the
//!   session's other ports are taken whole. Absent: the filter applies to every port.
//! * `filter` may hold `body` filters (the sidecar then reads the bodies of requests on those
//!   ports, bounded in size and time).
//!
//! A sidecar that knows these answers the `tls-steal-ports` header. An older sidecar refuses an
//! empty `ports` list and an unknown filter kind (`400`), but would silently ignore
//! `filter_ports`: a client that sends it and gets no `tls-steal-ports` header must end the
//! session (kubectl-steal does, saying the sidecar is too old).

use serde::{Deserialize, Serialize};

use crate::filter::HttpFilter;

/// Registration path.
pub const REGISTER_PATH: &str = "/v1/sessions";
/// Status path.
pub const STATUS_PATH: &str = "/v1/status";
/// Path of the read-only routing question ([`ExplainRequest`] → [`ExplainAnswer`]).
pub const EXPLAIN_PATH: &str = "/v1/explain";
/// Value of the `Upgrade` header of a registration.
pub const UPGRADE_PROTOCOL: &str = "tls-steal-session/1";
/// Response header of a successful registration: the session id.
pub const SESSION_ID_HEADER: &str = "tls-steal-session";
/// Response header of a successful registration: JSON list of the [`PortStatus`] of the
/// registered ports that are in passthrough (absent when there is none).
pub const PASSTHROUGH_HEADER: &str = "tls-steal-passthrough";
/// Response header of a successful registration: the session's ports, comma-separated.
pub const PORTS_HEADER: &str = "tls-steal-ports";
/// Request header carrying [`RequestMeta`] as JSON on every stolen stream.
pub const META_HEADER: &str = "tls-steal-meta";
/// Response header carrying the local app's real status of an upgrade (e.g. `101`).
pub const UPGRADE_STATUS_HEADER: &str = "tls-steal-status";
/// Path of event streams sent to the session.
pub const EVENT_PATH: &str = "/.tls-steal/event";
/// Request header of a registration: the session's signed ticket ([`crate::ticket`]).
pub const TICKET_HEADER: &str = "tls-steal-ticket";
/// Path of the streams by which the sidecar asks a session for its current ticket (a `GET`,
/// answered `200` with the ticket as a `text/plain` body) before the one it holds expires.
pub const TICKET_PATH: &str = "/.tls-steal/ticket";

/// Steal (the session answers) or mirror (the app answers, the session gets a copy).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Steal,
    Mirror,
}

/// What a session asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Ports (as the app sees them, e.g. 443) whose requests the session wants; empty: every
    /// port the sidecar captures.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `None` takes every request of those ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<HttpFilter>,
    /// The ports `filter` applies to; the session's other ports are taken whole. `None`: every
    /// port of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_ports: Option<Vec<u16>>,
    #[serde(default)]
    pub mode: Mode,
    /// Free text shown in status and logs (e.g. `alice@laptop`).
    #[serde(default)]
    pub client: String,
}

/// An error answer of the session API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Human-readable message.
    pub error: String,
    /// The registration field at fault, e.g. `ports[1]` or `filter.all_of[0].header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The ports this sidecar captures (set when a requested port is not one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captured_ports: Vec<u16>,
}

/// What the session is told about each stolen request, besides the request itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Unique per sidecar process.
    pub id: u64,
    /// The app port the request was sent to.
    pub port: u16,
    pub mode: Mode,
    /// The original client, `ip:port`.
    pub client_addr: String,
    /// The original destination, `ip:port`.
    pub original_dst: String,
    /// SNI the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocol negotiated with the client, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub http_version: String,
    /// For an HTTP/1.1 upgrade: the `Upgrade` header's value (e.g. `websocket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
    /// Pod name (from the environment), for the session's display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Notifications to a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A request matched this session's filter too, but an earlier-registered session took it.
    LostToEarlierSession {
        request_id: u64,
        method: String,
        path: String,
        winner: u64,
    },
    /// Mirror copies were dropped because the session was not keeping up.
    MirrorDropped { count: u64 },
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub ports: Vec<PortStatus>,
    pub sessions: Vec<SessionInfo>,
}

/// One captured port as the sidecar serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub port: u16,
    /// `tls` (terminating) or `passthrough` (TLS material failed to load).
    pub state: String,
    /// Why the port is in passthrough, naming the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The loaded server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateInfo>,
}

/// A loaded certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    pub file: String,
}

/// An active session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: u64,
    pub client: String,
    pub ports: Vec<u16>,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<HttpFilter>,
    /// The ports the filter applies to (`None`: all of `ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_ports: Option<Vec<u16>>,
    pub stolen: u64,
    pub mirrored: u64,
    /// When the session registered (RFC 3339, UTC, the sidecar's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Seconds since it registered (the sidecar's clock, so the client's clock does not matter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
}

/// `POST /v1/explain`: a sample request, as a client would send it to the app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// The app port (e.g. 443).
    pub port: u16,
    /// Default `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path and query; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Header lines, `[name, value]`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body as JSON, for body filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// Where an [`ExplainRequest`] would go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainAnswer {
    pub port: u16,
    /// The port as the proxy serves it; `None` when the sidecar does not capture the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_state: Option<PortStatus>,
    pub destination: Destination,
    /// Why, in words.
    pub reason: String,
    /// Each session of the port, earliest-registered first, and what it would do.
    #[serde(default)]
    pub sessions: Vec<SessionVerdict>,
}

/// The app, or a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Destination {
    /// Forwarded to the app (or relayed untouched, or never captured).
    App,
    /// Taken by a session: it answers (`steal`), or gets a copy while the app answers
    /// (`mirror`).
    Session { id: u64, client: String, mode: Mode },
}

/// What one session would do with the sample request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVerdict {
    pub id: u64,
    pub client: String,
    pub mode: Mode,
    pub verdict: Verdict,
}

/// See [`SessionVerdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its filter matches and it is the earliest that matches: it takes the request.
    Takes,
    /// Its filter matches, but an earlier-registered session takes the request (it is told).
    Earlier,
    /// Its filter does not match.
    NoMatch,
    /// It is ending and takes no more requests.
    Closing,
    /// It filters on the body here and the sample has none (as JSON): undecided.
    NeedsBody,
    /// It has too many requests waiting for its answers: the sidecar would close it and skip it.
    Stuck,
}

impl Verdict {
    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Takes => "takes it",
            Verdict::Earlier => "matches, but an earlier session takes it",
            Verdict::NoMatch => "its filter does not match",
            Verdict::Closing => "is closing",
            Verdict::NeedsBody => "filters on the JSON body; give the sample a body to decide",
            Verdict::Stuck => "is not answering (the sidecar would close it)",
        }
    }
}

/// `t` as RFC 3339 in UTC, to the second (`2024-05-01T12:00:00Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn explain_types_round_trip_and_old_session_infos_parse() {
        let a = ExplainAnswer {
            port: 443,
            port_state: None,
            destination: Destination::Session {
                id: 3,
                client: "a@b".into(),
                mode: Mode::Steal,
            },
            reason: "r".into(),
            sessions: vec![SessionVerdict {
                id: 3,
                client: "a@b".into(),
                mode: Mode::Steal,
                verdict: Verdict::Takes,
            }],
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["destination"]["to"], "session");
        assert_eq!(json["sessions"][0]["verdict"], "takes");
        assert_eq!(serde_json::from_value::<ExplainAnswer>(json).unwrap(), a);
        let old = r#"{"id":1,"client":"c","ports":[443],"mode":"steal","stolen":0,"mirrored":0}"#;
        let info: SessionInfo = serde_json::from_str(old).unwrap();
        assert_eq!(info.since, None);
        let req: ExplainRequest = serde_json::from_str(r#"{"port":443}"#).unwrap();
        assert_eq!(req.method, None);
    }
}
