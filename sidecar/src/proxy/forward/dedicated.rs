//! The HTTP/1.1 path: a request over the client connection's own app connection (see
//! [`super::super::affinity`]), kept between requests, sent again once when the app had closed it
//! unread, or, for a bodiless idempotent request on a connection that sat idle, when the app
//! closed it without an answer.

use std::io::ErrorKind;

use http::HeaderValue;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use tracing::debug;

use super::super::affinity::Affinity;
use super::{
    Forwarder, PoolKey, ProxyBody, SendFailure, client_authority, empty_body, error_chain,
    head_copy,
};
use crate::proxy::ConnInfo;

type Sender = hyper::client::conn::http1::SendRequest<ProxyBody>;

impl Forwarder {
    /// Over the client connection's own HTTP/1.1 connection to the app (origin-form URI, `Host`
    /// added from the authority when the client sent none).
    pub(super) async fn send_dedicated(
        &self,
        slot: &Affinity,
        conn: &ConnInfo,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendFailure> {
        // With SNI the key is fixed for the connection (so the authority is not even parsed);
        // without, it follows the authority: the held connection keeps the `Host` its key was
        // last checked with, and a request with the same `Host` needs no key built (the name
        // parsing costs ~2k instructions; clients without SNI, as an ingress dialing pod IPs,
        // paid it on every request).
        let key_of =
            |req: &Request<ProxyBody>| self.key(conn, client_authority(req).as_ref(), false);
        let sni = conn.sni.is_some();
        let host = match req.uri().authority() {
            None if !sni => req.headers().get(HOST),
            _ => None,
        };
        let lane = self.lane();
        let mut same_host = false;
        let held = slot.take(|k, last| {
            same_host = host.is_some() && last == host;
            sni || same_host || *k == key_of(&req)
        });
        // Sat idle: held over a tick of the sweeper, or kept in the idle list.
        let (key, last, mut sender, sat_idle) = match held {
            Some((key, last, sender, tick)) => (key, last, Some(sender), lane.idle.tick() > tick),
            None => {
                let key = key_of(&req);
                let sender = lane.idle.take(&key, self.timeouts.idle);
                let kept = sender.is_some();
                (key, None, sender, kept)
            }
        };
        let host = match same_host {
            true => last,
            // A copy: a slice of the request would keep hyper's read buffer alive.
            false => host.and_then(|h| HeaderValue::from_bytes(h.as_bytes()).ok()),
        };
        if !req.headers().contains_key(HOST) {
            let host = match &client_authority(&req) {
                Some(a) => http::HeaderValue::from_str(a.as_str()),
                None => http::HeaderValue::from_str(&conn.original_dst.to_string()),
            };
            if let Ok(host) = host {
                req.headers_mut().insert(HOST, host);
            }
        }
        if req.uri().authority().is_some() || req.uri().path_and_query().is_none() {
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(pq);
        }
        // A kept connection may have been closed by the app meanwhile: a request it never
        // received is sent again once, on a new connection. One that sat idle may also be
        // closed by the app's keep-alive timeout just as the request reaches it; a bodiless
        // idempotent request is then sent again too (RFC 9110 §9.2.2), as nginx does. Copied
        // only for such connections: a copy of every request's head would cost on every request.
        let mut again = if sat_idle { replayable(&req) } else { None };
        let mut retried = false;
        loop {
            let mut s = match sender.take() {
                Some(s) => s,
                None => self.connect_h1(&key).await?,
            };
            if s.ready().await.is_err() {
                continue;
            }
            match s.try_send_request(req).await {
                Ok(resp) => {
                    slot.hold(key, host, s, &lane.idle);
                    return Ok(resp);
                }
                Err(mut e) => {
                    let next = match e.take_message() {
                        Some(unsent) => Some(unsent),
                        // Sent: only the copy can go again, and only if nothing came back.
                        None if closed_unanswered(e.error()) => again.take(),
                        None => None,
                    };
                    match next {
                        Some(next) if !retried => {
                            debug!(error = %error_chain(e.error()), "sent again on a new app connection");
                            retried = true;
                            req = next;
                        }
                        _ => return Err(SendFailure::Upstream(Box::new(e.into_error()))),
                    }
                }
            }
        }
    }

    async fn connect_h1(&self, key: &PoolKey) -> Result<Sender, SendFailure> {
        let io = self
            .connector(key, &key.alpn)
            .connect()
            .await
            .map_err(|e| SendFailure::Upstream(Box::new(e)))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(io)
            .await
            .map_err(|e| SendFailure::Upstream(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %error_chain(&e), "connection to the application ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A copy of a bodiless idempotent request, to send again when the app closed the connection
/// without answering.
fn replayable(req: &Request<ProxyBody>) -> Option<Request<ProxyBody>> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = head_copy(req).map(|()| empty_body());
    // The header names' original case travels there.
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

/// The app closed the connection before any answer (end of stream, reset, or a TLS stream cut
/// without close_notify).
fn closed_unanswered(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            );
        }
        cur = c.source();
    }
    false
}
