//! Driving a session's connection: the upgraded registration connection becomes an HTTP/2
//! client connection (the session serves), kept alive by PINGs, watched for `GOAWAY`; requests
//! and events are sent on it; when it ends, the session leaves the registry.

use super::*;

use super::steal::NotSent;

/// How long a session that ended cleanly waits for the answers to its requests in flight.
const DRAIN_BOUND: Duration = Duration::from_secs(30);
/// How often a session is asked for a renewed ticket once its ticket is past half its life,
/// and how long each ask may take.
const TICKET_RETRY: Duration = Duration::from_secs(5);

/// Why a session's connection failed (a connection that simply ends is no error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    #[error("the registration connection was not upgraded in time")]
    UpgradeTimeout,
    #[error("the registration connection was not upgraded")]
    Upgrade(#[source] hyper::Error),
    #[error("reading from the session failed")]
    Read(#[source] std::io::Error),
    #[error("the session sent an HTTP/1 request instead of serving HTTP/2")]
    Http1,
    #[error("the HTTP/2 handshake with the session timed out")]
    HandshakeTimeout,
    #[error("the HTTP/2 handshake with the session failed")]
    Handshake(#[source] hyper::Error),
    #[error("the session connection failed")]
    Connection(#[source] hyper::Error),
}

impl Session {
    fn closed_reason(&self) -> Arc<str> {
        match &*self.link.borrow() {
            Link::Closed(r) => r.clone(),
            _ => Arc::from("the session is closing"),
        }
    }

    /// Sends one request on the session's connection; waits while it connects. `Err` carries
    /// why the session could not answer.
    pub(crate) async fn send(
        &self,
        req: Request<SessionBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut rx = self.link.subscribe();
        let mut sender = {
            let link = rx
                .wait_for(|l| !matches!(l, Link::Connecting))
                .await
                .map_err(|_| SendError::NotSent(NotSent::Gone))?;
            match &*link {
                Link::Ready(s) => s.clone(),
                Link::Closed(r) => return Err(SendError::NotSent(NotSent::Ended(r.clone()))),
                Link::Connecting => unreachable!(),
            }
        };
        if sender.is_closed() {
            return Err(SendError::NotSent(NotSent::ConnectionClosed));
        }
        // An upgrade (extended CONNECT) is sent as is: a session whose SETTINGS do not allow
        // it resets the stream, which ends as a 502 naming the error.
        let closed = async {
            let _ = rx.wait_for(|l| matches!(l, Link::Closed(_))).await;
        };
        // `try_send_request`: a request hyper could not hand to the connection (it is closed,
        // or a GOAWAY was just noticed) comes back, and is known not to have reached the session.
        tokio::select! {
            r = sender.try_send_request(req) => r.map_err(|mut e| {
                if e.take_message().is_some() {
                    SendError::NotSent(NotSent::Refused(e.into_error()))
                } else if self.is_closing() || matches!(&*self.link.borrow(), Link::Closed(_)) {
                    SendError::Ended(self.closed_reason())
                } else {
                    SendError::Failed(e.into_error())
                }
            }),
            _ = closed => Err(SendError::Ended(self.closed_reason())),
        }
    }

    /// Runs the session's connection to its end, then removes the session.
    pub(crate) async fn run(self: Arc<Self>, sessions: Arc<Sessions>, on_upgrade: OnUpgrade) {
        let result = self.connect_and_serve(&sessions, on_upgrade).await;
        sessions.registry.remove(self.id);
        self.closing.store(true, Ordering::Release);
        if result.is_ok() && !self.was_killed() {
            // A clean end (the session's GOAWAY, or its connection closed): hyper's client may
            // finish while the streams it already sent are still being answered; they complete
            // (or fail, if the connection is gone) on their own. Requests waiting for an answer
            // only get a 502 when the sidecar closes the session itself.
            let deadline = tokio::time::Instant::now() + DRAIN_BOUND;
            while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let reason = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics.error(SessionError::ConnectionFailed);
                error_chain(&e)
            }
        };
        self.link
            .send_replace(Link::Closed(Arc::from(reason.as_str())));
        sessions.metrics.session_ended();
        info!(session = self.id, client = %self.client, stolen = self.stolen.load(Ordering::Relaxed),
            mirrored = self.mirrored.load(Ordering::Relaxed), %reason, "session ended");
    }

    fn was_killed(&self) -> bool {
        self.close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn connect_and_serve(
        self: &Arc<Self>,
        sessions: &Sessions,
        on_upgrade: OnUpgrade,
    ) -> Result<String, ConnectionError> {
        let upgraded = tokio::time::timeout(Duration::from_secs(10), on_upgrade)
            .await
            .map_err(|_| ConnectionError::UpgradeTimeout)?
            .map_err(ConnectionError::Upgrade)?;
        let mut io = TokioIo::new(upgraded);
        // An HTTP/2 server speaks first (its SETTINGS); a registration sent again on this
        // connection is answered in HTTP/1.1 and the session ends.
        let mut prefix = BytesMut::with_capacity(64);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while classify(&prefix) == Sniffed::NeedMore {
            match tokio::time::timeout_at(deadline, io.read_buf(&mut prefix)).await {
                Ok(Ok(0)) => return Ok("the session closed its connection".into()),
                Ok(Err(e)) => return Err(ConnectionError::Read(e)),
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
        if classify(&prefix) == Sniffed::Http1 {
            let err = ApiError {
                error: format!(
                    "this connection already carries session {} (it stops now); register on a new connection",
                    self.id
                ),
                field: None,
                captured_ports: Vec::new(),
            };
            let body = serde_json::to_string(&err).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = io.write_all(answer.as_bytes()).await;
            let _ = io.shutdown().await;
            return Err(ConnectionError::Http1);
        }
        let goaway = Arc::new(Notify::new());
        let io = TokioIo::new(Hooked::new(
            Prefixed::prefixed(prefix.freeze(), io),
            GoawayWatch::new(goaway.clone()),
        ));
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.cfg.keepalive_interval)
            .keep_alive_timeout(self.cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1024 * 1024)
            .initial_connection_window_size(8 * 1024 * 1024)
            .max_send_buf_size(1024 * 1024);
        let (send, conn) = tokio::time::timeout(Duration::from_secs(10), builder.handshake(io))
            .await
            .map_err(|_| ConnectionError::HandshakeTimeout)?
            .map_err(ConnectionError::Handshake)?;
        self.link.send_replace(Link::Ready(send));
        info!(session = self.id, client = %self.client, "session connected");
        let events = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = events {
            tokio::spawn(self.clone().deliver_events(rx));
        }
        if self.grant().is_some() {
            tokio::spawn(self.clone().keep_ticket());
        }
        tokio::pin!(conn);
        let mut leaving = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => return match r {
                    Ok(()) if leaving => Ok("the session left (GOAWAY)".into()),
                    Ok(()) => Ok("the session closed its connection".into()),
                    Err(e) => Err(ConnectionError::Connection(e)),
                },
                _ = self.kill.notified() => {
                    let reason = self.close_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    return Ok(reason.unwrap_or_else(|| "closed by the sidecar".into()));
                }
                _ = goaway.notified(), if !leaving => {
                    // The session is leaving (kubectl-steal's Ctrl-C): out of the registry now,
                    // so the next requests reach the app; its streams in flight complete, then
                    // it closes the connection.
                    leaving = true;
                    self.closing.store(true, Ordering::Release);
                    sessions.registry.remove(self.id);
                    info!(session = self.id, client = %self.client, in_flight = self.in_flight(),
                        "session is leaving (GOAWAY); it takes no new requests");
                }
            }
        }
    }

    /// Keeps the session's ticket current: from half its lifetime on, asks the session for its
    /// current ticket (`GET /.tls-steal/ticket`) every few seconds until one extends it; at the
    /// expiry, ends the session like one whose client left.
    async fn keep_ticket(self: Arc<Self>) {
        let mut link = self.link.subscribe();
        loop {
            let Some(grant) = self.grant() else { return };
            let now = authorize::now();
            if now >= grant.exp {
                warn!(session = self.id, steal_session = %grant.session, "session ticket expired");
                self.close(&format!(
                    "the session ticket of {} expired and was not renewed (StealSession deleted, or kubectl-steal gone?)",
                    grant.session
                ));
                return;
            }
            let ask_at = grant.exp.saturating_sub(grant.lifetime / 2);
            let wait = if now < ask_at {
                ask_at - now
            } else {
                match self.ask_ticket().await {
                    Some(ticket) => match self.cfg.authorization.renew(&ticket, &grant, now) {
                        Ok(renewed) if renewed.exp > grant.exp => {
                            debug!(
                                session = self.id,
                                exp = renewed.exp,
                                "session ticket renewed"
                            );
                            self.set_grant(renewed);
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(session = self.id, error = %e, "renewed session ticket refused")
                        }
                    },
                    None => debug!(session = self.id, "no renewed session ticket yet"),
                }
                TICKET_RETRY.as_secs().min(grant.exp - now)
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait.max(1))) => {}
                _ = link.wait_for(|l| matches!(l, Link::Closed(_))) => return,
            }
        }
    }

    /// The session's current ticket, if it answers one.
    async fn ask_ticket(&self) -> Option<String> {
        let req = Request::get(format!("https://tls-steal{TICKET_PATH}"))
            .body(Empty::<Bytes>::new().map_err(|n| match n {}).boxed_unsync())
            .ok()?;
        let resp = tokio::time::timeout(TICKET_RETRY, self.send(req))
            .await
            .ok()?
            .ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let body = http_body_util::Limited::new(resp.into_body(), 16 * 1024);
        let bytes = tokio::time::timeout(TICKET_RETRY, body.collect())
            .await
            .ok()?
            .ok()?
            .to_bytes();
        String::from_utf8(bytes.to_vec())
            .ok()
            .map(|t| t.trim().to_owned())
    }

    /// Sends queued events (and, every 250 ms, the count of dropped mirror copies) as
    /// `POST /.tls-steal/event` streams, one at a time, until the session ends.
    async fn deliver_events(self: Arc<Self>, mut rx: mpsc::Receiver<Event>) {
        let mut link = self.link.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = tick.tick() => {
                    let n = self.dropped_unreported.swap(0, Ordering::AcqRel);
                    if n == 0 { continue }
                    Event::MirrorDropped { count: n }
                }
                _ = link.wait_for(|l| matches!(l, Link::Closed(_))) => return,
            };
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let req = Request::post(format!("https://tls-steal{EVENT_PATH}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(
                    Full::new(Bytes::from(body))
                        .map_err(|n| match n {})
                        .boxed_unsync(),
                );
            let Ok(req) = req else { continue };
            match self.send(req).await {
                Ok(resp) => {
                    let mut body = resp.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                }
                Err(e) => debug!(session = self.id, error = %e, "event not delivered"),
            }
        }
    }
}
