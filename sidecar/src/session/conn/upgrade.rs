//! Stolen HTTP/1.1 upgrades (WebSocket): sent to the session as an extended CONNECT stream
//! (RFC 8441), whose upgraded bytes are bridged with the client's upgraded connection.

use super::*;

/// Turns the head of an HTTP/1.1 upgrade request into an extended CONNECT for `proto`; its body
/// (empty) is the stream's bytes once the session accepts.
pub(super) fn extended_connect(parts: &mut http::request::Parts, proto: &str) -> SessionBody {
    parts.method = Method::CONNECT;
    parts.headers.remove(CONTENT_LENGTH);
    parts.extensions.insert(hyper::ext::Protocol::from(proto));
    empty_body()
}

impl Session {
    /// The session's answer to an extended CONNECT: `2xx` + `tls-steal-status: 101` → a `101`
    /// to the client and the two upgraded streams bridged; `2xx` with another status → that
    /// status, with the stream's bytes as the body; anything else → passed on as is.
    pub(super) fn finish_upgrade(
        &self,
        mut resp: Response<Incoming>,
        client_upgrade: OnUpgrade,
        proto: &str,
        version: Version,
    ) -> Response<ProxyBody> {
        if !resp.status().is_success() {
            let mut resp = resp.map(|b| b.boxed_unsync());
            *resp.version_mut() = version;
            return resp;
        }
        let real = resp
            .headers()
            .get(UPGRADE_STATUS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::SWITCHING_PROTOCOLS);
        let session_upgrade = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove(UPGRADE_STATUS_HEADER);
        parts.status = real;
        parts.version = version;
        parts.extensions = http::Extensions::new();
        if real == StatusCode::SWITCHING_PROTOCOLS {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if !parts.headers.contains_key(UPGRADE)
                && let Ok(v) = HeaderValue::from_str(proto)
            {
                parts.headers.insert(UPGRADE, v);
            }
            let (id, metrics) = (self.id, self.metrics.clone());
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, session_upgrade) {
                    Ok((c, s)) => {
                        let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
                        match tokio::io::copy_bidirectional(&mut c, &mut s).await {
                            Ok((up, down)) => {
                                debug!(session = id, up, down, "stolen upgraded connection closed")
                            }
                            Err(e) => {
                                debug!(session = id, error = %e, "stolen upgraded connection ended with an error")
                            }
                        }
                    }
                    Err(e) => {
                        metrics.error(SessionError::UpgradeFailed);
                        warn!(session = id, error = %e, "stolen upgrade could not be bridged");
                    }
                }
            });
            Response::from_parts(parts, empty_body())
        } else {
            // The local app refused the upgrade: its answer's body follows on the stream.
            let (tx, rx) = mpsc::channel::<Bytes>(8);
            tokio::spawn(async move {
                let Ok(up) = session_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(up);
                loop {
                    let mut buf = BytesMut::with_capacity(16 * 1024);
                    match io.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if tx.send(buf.freeze()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            parts.headers.remove(CONTENT_LENGTH);
            let body = crate::session::mirror::ChannelBody::new(rx);
            Response::from_parts(parts, body.boxed_unsync())
        }
    }
}
