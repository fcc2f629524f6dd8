//! The session API (HTTP/1.1 on 127.0.0.1:15400): `POST /v1/sessions` registers a session and
//! upgrades its connection, `GET /v1/status` reports ports, certificates and sessions,
//! `POST /v1/explain` says where a sample request would go ([`super::explain`]).
//!
//! A refused registration is a `400` with an [`ApiError`] naming the field at fault (`403`, field
//! `ticket`, when its ticket does not authorize it: [`super::authorize`]); the connection stays
//! usable for another attempt. A registration sent again on a connection that
//! already carries a session gets a `409` (see [`super::conn`]) and ends that session.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tls_steal_crds::filter::{CompiledFilter, HttpFilter};
use tls_steal_crds::session::{
    ApiError, EXPLAIN_PATH, Mode, PASSTHROUGH_HEADER, PORTS_HEADER, REGISTER_PATH, Registration,
    SESSION_ID_HEADER, STATUS_PATH, TICKET_HEADER, UPGRADE_PROTOCOL,
};
use tokio::net::TcpListener;
use tracing::{debug, error, info};

use super::Sessions;
use super::conn::json_response;
use super::metrics::SessionError;
use crate::proxy::ProxyBody;

/// Serves the session API on `listener` forever.
pub async fn serve(listener: TcpListener, sessions: Arc<Sessions>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "session API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let sessions = sessions.clone();
                async move { Ok::<_, Infallible>(handle(sessions, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "session API connection ended with an error");
            }
        });
    }
}

fn api_error(status: StatusCode, error: ApiError) -> Response<ProxyBody> {
    json_response(status, &error)
}

fn err(error: impl Into<String>, field: Option<&str>) -> ApiError {
    ApiError {
        error: error.into(),
        field: field.map(str::to_owned),
        captured_ports: Vec::new(),
    }
}

async fn handle(sessions: Arc<Sessions>, req: Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::POST, REGISTER_PATH) => match register(&sessions, req).await {
            Ok(r) => r,
            Err((status, e)) => {
                sessions.metrics.error(SessionError::RegistrationRejected);
                info!(%status, error = %e.error, field = ?e.field, "session registration refused");
                api_error(status, e)
            }
        },
        (&Method::GET, STATUS_PATH) => {
            let s = sessions.clone();
            match tokio::task::spawn_blocking(move || super::status::report(&s)).await {
                Ok(report) => json_response(StatusCode::OK, &report),
                Err(e) => api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    err(format!("status failed: {e}"), None),
                ),
            }
        }
        (&Method::POST, EXPLAIN_PATH) => super::explain::handle(&sessions, req).await,
        (_, REGISTER_PATH | STATUS_PATH | EXPLAIN_PATH) => api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            err(
                format!(
                    "{} {path} is not supported (POST {REGISTER_PATH}, GET {STATUS_PATH}, POST {EXPLAIN_PATH})",
                    req.method()
                ),
                None,
            ),
        ),
        _ => api_error(
            StatusCode::NOT_FOUND,
            err(
                format!(
                    "no such endpoint {path} (POST {REGISTER_PATH}, GET {STATUS_PATH}, POST {EXPLAIN_PATH})"
                ),
                None,
            ),
        ),
    }
}

fn asks_for_session_upgrade<B>(req: &Request<B>) -> bool {
    tls_steal_http::upgrade_protocol(req).is_some_and(|p| p.eq_ignore_ascii_case(UPGRADE_PROTOCOL))
}

async fn register(
    sessions: &Arc<Sessions>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, (StatusCode, ApiError)> {
    let bad = |e| (StatusCode::BAD_REQUEST, e);
    if !asks_for_session_upgrade(&req) {
        return Err(bad(err(
            format!(
                "a registration upgrades its connection: send `Connection: upgrade` and `Upgrade: {UPGRADE_PROTOCOL}`"
            ),
            None,
        )));
    }
    let ticket = req
        .headers()
        .get(TICKET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let max = sessions.cfg.max_registration_bytes;
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            bad(err(
                format!("cannot read the registration (at most {max} bytes): {e}"),
                None,
            ))
        })?
        .to_bytes();
    // Registered before the 101: a request arriving as soon as the client sees the 101 is
    // routed to the session (and waits for its HTTP/2 connection).
    let session = sessions.register_json(&body, ticket.as_deref())?;
    let id = session.id;
    let ports: Vec<String> = session.ports.iter().map(u16::to_string).collect();
    let (steal_session, user) = session
        .grant()
        .map(|g| (g.session, g.user))
        .unwrap_or_default();
    info!(session = id, client = %session.client, ports = ?session.ports, mode = ?session.mode,
        filter = ?session.filter_spec, filter_ports = ?session.filter_ports, %steal_session, %user,
        "session registered");
    // The developer learns at once why nothing of a port will be stolen.
    let passthrough = sessions
        .proxy()
        .map(|shared| super::status::passthrough(&shared, &session.ports))
        .unwrap_or_default();
    tokio::spawn(session.run(sessions.clone(), on_upgrade));
    let mut r = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    h.insert(SESSION_ID_HEADER, HeaderValue::from(id));
    if let Ok(v) = HeaderValue::from_str(&ports.join(",")) {
        h.insert(PORTS_HEADER, v);
    }
    if !passthrough.is_empty() {
        // JSON escapes control characters; other non-ASCII bytes are valid header bytes.
        match serde_json::to_vec(&passthrough).map(|json| HeaderValue::from_bytes(&json)) {
            Ok(Ok(v)) => {
                h.insert(PASSTHROUGH_HEADER, v);
            }
            _ => debug!(
                session = id,
                "passthrough ports not sent: not a header value"
            ),
        }
    }
    Ok(r)
}

fn port_number(p: &Value, field: &str) -> Result<u16, ApiError> {
    p.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| err(format!("{p} is not a port number (1-65535)"), Some(field)))
}

/// Checks a registration: JSON shape field by field (so the error names the field), captured
/// ports, and every regex of the filter.
pub fn validate(
    body: &[u8],
    captured: &[u16],
) -> Result<(Registration, Option<CompiledFilter>), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| err(format!("the registration is not valid JSON: {e}"), None))?;
    let Value::Object(obj) = &value else {
        return Err(err("the registration must be a JSON object", None));
    };
    let ports = match obj.get("ports") {
        None | Some(Value::Null) => {
            return Err(err(
                "`ports` is required: the ports to steal from",
                Some("ports"),
            ));
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("`ports` must be a list of port numbers", Some("ports"))),
    };
    let mut port_numbers = Vec::with_capacity(ports.len());
    for (i, p) in ports.iter().enumerate() {
        let field = format!("ports[{i}]");
        let n = port_number(p, &field)?;
        if !captured.contains(&n) {
            let list = captured
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ApiError {
                error: format!("port {n} is not captured by this sidecar (captured ports: {list})"),
                field: Some(field),
                captured_ports: captured.to_vec(),
            });
        }
        port_numbers.push(n);
    }
    // No port named: every port this sidecar captures.
    if port_numbers.is_empty() {
        port_numbers = captured.to_vec();
    }
    let filter_ports = match obj.get("filter_ports") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .enumerate()
                .map(|(i, p)| port_number(p, &format!("filter_ports[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(err(
                "`filter_ports` must be a list of port numbers",
                Some("filter_ports"),
            ));
        }
    };
    let filter = match obj.get("filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(
            serde_json::from_value::<HttpFilter>(f.clone())
                .map_err(|e| err(format!("invalid filter: {e}"), Some("filter")))?,
        ),
    };
    let mode = match obj.get("mode") {
        None | Some(Value::Null) => Mode::default(),
        Some(m) => serde_json::from_value::<Mode>(m.clone()).map_err(|e| {
            err(
                format!("invalid mode (`steal` or `mirror`): {e}"),
                Some("mode"),
            )
        })?,
    };
    let client = match obj.get("client") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err("`client` must be a string", Some("client"))),
    };
    let compiled = match &filter {
        None => None,
        Some(f) => Some(
            f.compile()
                .map_err(|e| err(e.to_string(), Some(&e.field)))?,
        ),
    };
    Ok((
        Registration {
            ports: port_numbers,
            filter,
            filter_ports,
            mode,
            client,
        },
        compiled,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> ApiError {
        validate(body.as_bytes(), &[443, 8443]).unwrap_err()
    }

    #[test]
    fn validation_names_the_field() {
        assert!(bad("{not json").error.contains("not valid JSON"));
        assert_eq!(bad("[1]").field, None);
        assert_eq!(bad("{}").field.as_deref(), Some("ports"));
        assert_eq!(bad(r#"{"ports":3}"#).field.as_deref(), Some("ports"));
        assert_eq!(
            bad(r#"{"ports":[443],"filter_ports":[0]}"#)
                .field
                .as_deref(),
            Some("filter_ports[0]")
        );
        assert_eq!(
            bad(r#"{"ports":[443],"filter_ports":"443"}"#)
                .field
                .as_deref(),
            Some("filter_ports")
        );
        assert_eq!(
            bad(r#"{"ports":[443],"filter":{"body":{"json":{"query":"$[","matches":"a"}}}}"#)
                .field
                .as_deref(),
            Some("filter.body.json.query")
        );
        assert_eq!(
            bad(r#"{"ports":[443, 70000]}"#).field.as_deref(),
            Some("ports[1]")
        );
        let e = bad(r#"{"ports":[443, 80]}"#);
        assert_eq!(e.field.as_deref(), Some("ports[1]"));
        assert_eq!(e.captured_ports, vec![443, 8443]);
        assert!(e.error.contains("443, 8443"), "{}", e.error);
        let e = bad(r#"{"ports":[443],"filter":{"any_of":[{"path":"/ok"},{"header":"x-("}]}}"#);
        assert_eq!(e.field.as_deref(), Some("filter.any_of[1].header"));
        assert!(e.error.contains("x-("), "{}", e.error);
        assert_eq!(
            bad(r#"{"ports":[443],"filter":{"bogus":"x"}}"#)
                .field
                .as_deref(),
            Some("filter")
        );
        assert_eq!(
            bad(r#"{"ports":[443],"mode":"copy"}"#).field.as_deref(),
            Some("mode")
        );
        assert_eq!(
            bad(r#"{"ports":[443],"client":7}"#).field.as_deref(),
            Some("client")
        );
        let (reg, f) = validate(
            br#"{"ports":[8443,443],"filter":{"header":"^x: (?!y)"},"mode":"mirror","client":"a@b"}"#,
            &[443, 8443],
        )
        .unwrap();
        assert_eq!(reg.mode, Mode::Mirror);
        assert!(f.is_some());
        // No port: every captured port; filter_ports kept as sent.
        let (reg, _) = validate(
            br#"{"ports":[],"filter":{"method":"POST"},"filter_ports":[8443]}"#,
            &[443, 8443],
        )
        .unwrap();
        assert_eq!(reg.ports, [443, 8443]);
        assert_eq!(reg.filter_ports, Some(vec![8443]));
    }
}
