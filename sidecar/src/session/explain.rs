//! `POST /v1/explain`: where a sample request would go now, and why (the question
//! `kubectl steal --explain` asks). The same decision as [`super::route`], read-only: nothing is
//! routed, no counter moves, no session is told or closed.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tls_steal_crds::filter::MatchNotes;
use tls_steal_crds::session::{
    ApiError, Destination, ExplainAnswer, ExplainRequest, Mode, PortStatus, SessionVerdict, Verdict,
};

use super::Sessions;
use super::conn::json_response;
use super::view::PartsView;
use crate::proxy::PortHealth;
use crate::proxy::ProxyBody;

fn bad(error: String, field: &str) -> ApiError {
    ApiError {
        error,
        field: Some(field.to_owned()),
        captured_ports: Vec::new(),
    }
}

/// Answers `POST /v1/explain`.
pub async fn handle(sessions: &Arc<Sessions>, req: Request<Incoming>) -> Response<ProxyBody> {
    let max = sessions.cfg.max_registration_bytes;
    let body: Result<Bytes, _> = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let answer = match body {
        Err(e) => Err(ApiError {
            error: format!("cannot read the sample request (at most {max} bytes): {e}"),
            field: None,
            captured_ports: Vec::new(),
        }),
        Ok(body) => serde_json::from_slice::<ExplainRequest>(&body)
            .map_err(|e| ApiError {
                error: format!("the sample request is not valid JSON of the expected shape: {e}"),
                field: None,
                captured_ports: Vec::new(),
            })
            .and_then(|sample| explain(sessions, &sample)),
    };
    match answer {
        Ok(a) => json_response(StatusCode::OK, &a),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &e),
    }
}

/// The head of the sample as the filters see a real request.
fn parts(sample: &ExplainRequest) -> Result<http::request::Parts, ApiError> {
    let method = sample.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|e| bad(format!("{method:?} is not a method: {e}"), "method"))?;
    let path = sample.path.as_deref().unwrap_or("/");
    let uri: http::Uri = path
        .parse()
        .map_err(|e| bad(format!("{path:?} is not a request path: {e}"), "path"))?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (i, (name, value)) in sample.headers.iter().enumerate() {
        let field = format!("headers[{i}]");
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| bad(format!("{name:?} is not a header name: {e}"), &field))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|e| bad(format!("{value:?} is not a header value: {e}"), &field))?;
        builder = builder.header(name, value);
    }
    let req = builder
        .body(())
        .map_err(|e| bad(format!("not a request: {e}"), "path"))?;
    Ok(req.into_parts().0)
}

/// The port as the proxy serves it now (reads no file); `None`: not captured.
fn port_state(sessions: &Sessions, port: u16) -> Option<PortStatus> {
    let status = |state: &str, reason: Option<String>| PortStatus {
        port,
        state: state.into(),
        reason,
        certificate: None,
    };
    match sessions.proxy() {
        Some(shared) => shared.ports.get(port).map(|entry| match entry.health() {
            PortHealth::Ok => status("tls", None),
            PortHealth::Stale(e) => status(
                "tls",
                Some(format!(
                    "serving earlier certificates; the current files are unusable: {}: {}",
                    e.what, e.reason
                )),
            ),
            PortHealth::Passthrough(e) => {
                status("passthrough", Some(format!("{}: {}", e.what, e.reason)))
            }
        }),
        None => sessions
            .cfg
            .captured_ports
            .contains(&port)
            .then(|| status("unknown", Some("the proxy is not running".into()))),
    }
}

/// Where `sample` would go now (see the module documentation).
pub fn explain(sessions: &Sessions, sample: &ExplainRequest) -> Result<ExplainAnswer, ApiError> {
    let port = sample.port;
    let head = parts(sample)?;
    let state = port_state(sessions, port);
    let app = |reason: String, verdicts: Vec<SessionVerdict>| ExplainAnswer {
        port,
        port_state: state.clone(),
        destination: Destination::App,
        reason,
        sessions: verdicts,
    };
    match &state {
        None => {
            let captured: Vec<String> = sessions
                .cfg
                .captured_ports
                .iter()
                .map(u16::to_string)
                .collect();
            return Ok(app(
                format!(
                    "port {port} is not captured by this sidecar (captured: {}): the request reaches the app without passing the proxy",
                    captured.join(", ")
                ),
                Vec::new(),
            ));
        }
        Some(s) if s.state == "passthrough" => {
            return Ok(app(
                format!(
                    "port {port} is relayed untouched (its TLS material could not be loaded: {}): nothing on it can be stolen",
                    s.reason.as_deref().unwrap_or("unknown reason")
                ),
                Vec::new(),
            ));
        }
        Some(_) => {}
    }
    let snapshot = sessions.registry.snapshot();
    let view = PartsView::with_body(&head, sample.body.as_ref());
    let mut notes = MatchNotes::default();
    let mut verdicts = Vec::new();
    let mut winner: Option<usize> = None;
    for s in snapshot.for_port(port) {
        let verdict = if s.is_closing() {
            Verdict::Closing
        } else if s.needs_body(port) && sample.body.is_none() {
            Verdict::NeedsBody
        } else if !s.matches(&view, port, &mut notes) {
            Verdict::NoMatch
        } else if winner.is_some() {
            Verdict::Earlier
        } else if s.mode == Mode::Steal && s.in_flight() >= sessions.cfg.max_in_flight {
            Verdict::Stuck
        } else {
            winner = Some(verdicts.len());
            Verdict::Takes
        };
        verdicts.push(SessionVerdict {
            id: s.id,
            client: s.client.clone(),
            mode: s.mode,
            verdict,
        });
    }
    let limit = match notes.regex_limit_hits {
        0 => String::new(),
        n => format!(
            " ({n} regex evaluation(s) stopped at the backtracking limit and counted as no match)"
        ),
    };
    if let Some(i) = winner {
        let w = &verdicts[i];
        let what = match w.mode {
            Mode::Steal => "it answers instead of the app",
            Mode::Mirror => "the app answers, the session gets a copy",
        };
        let reason = format!(
            "session {} ({}) takes it: the earliest-registered session on port {port} whose filter matches; {what}{limit}",
            w.id, w.client
        );
        return Ok(ExplainAnswer {
            port,
            port_state: state,
            destination: Destination::Session {
                id: w.id,
                client: w.client.clone(),
                mode: w.mode,
            },
            reason,
            sessions: verdicts,
        });
    }
    let reason = if verdicts.is_empty() {
        format!("no session is registered on port {port}: the request reaches the app")
    } else if verdicts.iter().any(|v| v.verdict == Verdict::NeedsBody) {
        format!(
            "no session's filter matches the request's head; a session filtering on the body may take it (give the sample a JSON body){limit}"
        )
    } else {
        format!("no session's filter matches: the request reaches the app{limit}")
    };
    Ok(app(reason, verdicts))
}
