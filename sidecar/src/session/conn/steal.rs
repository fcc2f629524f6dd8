//! Handing a stolen request to its session and answering the client with what comes back: the
//! session's answer, a `502` naming why there is none, or the request itself (for the app) when
//! the session never got it.

use super::*;

/// Why a session gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The session ended (the reason it ended).
    #[error("the session ended ({0})")]
    Ended(Arc<str>),
    /// The session is alive but the exchange failed (e.g. it reset the stream).
    #[error("the exchange with the session failed")]
    Failed(#[source] hyper::Error),
    /// The session's connection was closed (or closing) before the request was handed over:
    /// the session never saw it, so it can go to the app instead.
    #[error("not sent: the session is closing")]
    NotSent(#[source] NotSent),
}

/// Why a request was not handed to its session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotSent {
    #[error("the session is gone")]
    Gone,
    #[error("its connection is closed")]
    ConnectionClosed,
    #[error("{0}")]
    Ended(Arc<str>),
    #[error("the connection refused it")]
    Refused(#[source] hyper::Error),
}

/// A stolen request's body as lent to the session's connection: the body stays in a shared
/// slot, so a request hyper hands back unsent gets its body back, untouched, for the app.
struct LentBody(Arc<Mutex<Option<ProxyBody>>>);

impl hyper::body::Body for LentBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map_or_else(
            || hyper::body::SizeHint::with_exact(0),
            hyper::body::Body::size_hint,
        )
    }
}

impl Session {
    fn failed(&self, request_id: u64, why: SendError) -> Response<ProxyBody> {
        self.metrics.error(SessionError::RequestFailed);
        let client = if self.client.is_empty() {
            "unnamed"
        } else {
            &self.client
        };
        let text = match &why {
            SendError::Ended(r) => format!(
                "session {} ({client}) ended before answering this request: {r}",
                self.id
            ),
            SendError::Failed(_) | SendError::NotSent(_) => format!(
                "session {} ({client}) failed to answer this request: {}",
                self.id,
                error_chain(&why)
            ),
        };
        info!(session = self.id, client = %self.client, request = request_id, reason = %text, "stolen request not answered");
        text_response(
            StatusCode::BAD_GATEWAY,
            format!("tls-steal-proxy: {text}\n"),
        )
    }

    /// Delivers a stolen request to the session and returns its answer (or a 502 saying why
    /// there is none). A request the session never got (its connection closed or closing before
    /// the request was handed over) comes back as [`Delivery::NotTaken`], for the app.
    pub async fn steal(
        &self,
        request_id: u64,
        mut req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Delivery {
        let _slot = InFlight::enter(&self.in_flight);
        self.stolen.fetch_add(1, Ordering::Relaxed);
        let version = req.version();
        let upgrade = upgrade_protocol(&req).map(str::to_owned);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let meta = self.meta(request_id, conn, version, upgrade.clone(), Mode::Steal);
        let (mut parts, body) = req.into_parts();
        let original = OriginalHead::keep(&mut parts);
        let lent = Arc::new(Mutex::new(Some(body)));
        let mut parts = session_head(parts, &meta, conn.original_dst);
        let body = match &upgrade {
            Some(proto) => super::upgrade::extended_connect(&mut parts, proto),
            None => LentBody(lent.clone()).boxed_unsync(),
        };
        let resp = match self.send(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(SendError::NotSent(why)) => {
                let body = lent.lock().unwrap_or_else(|e| e.into_inner()).take();
                let Some(body) = body else {
                    return Delivery::Answered(self.failed(request_id, SendError::NotSent(why)));
                };
                self.stolen.fetch_sub(1, Ordering::Relaxed);
                info!(session = self.id, client = %self.client, request = request_id, reason = %error_chain(&why),
                    "the session is closing and never got this request; it goes to the app");
                return Delivery::NotTaken(original.into_request(body, client_upgrade));
            }
            Err(why) => return Delivery::Answered(self.failed(request_id, why)),
        };
        Delivery::Answered(match (upgrade, client_upgrade) {
            (Some(proto), Some(client_upgrade)) => {
                self.finish_upgrade(resp, client_upgrade, &proto, version)
            }
            _ => {
                let mut resp = resp.map(|b| b.boxed_unsync());
                *resp.version_mut() = version;
                resp
            }
        })
    }
}
