//! Delivery of stolen requests to the local app: TLS (default) or plaintext TCP, over pooled
//! connections (TCP_NODELAY), streaming bodies and trailers both ways, and upgrades.
//!
//! The request keeps its original version where it can: an HTTP/2 request is offered `h2` by ALPN
//! (or sent as h2c with prior knowledge over `tcp`), an HTTP/1 request goes as HTTP/1.1. When the
//! local app cannot be reached the caller gets a 502 saying so; the session is not affected.
//! `connector` opens the connections; `error` says why there was no answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tls_steal_crds::session::{META_HEADER, RequestMeta, UPGRADE_STATUS_HEADER};
use tls_steal_http::{extended_connect_protocol, strip_hop_by_hop};

use crate::args::DeliveryProtocol;
use crate::settings::{DeliverySettings, LocalAddr};
use crate::tls::{TlsClients, TlsError};

mod connector;
mod error;

use connector::Connector;
pub use error::{DeliveryError, bad_gateway};

/// Errors of any body in flight.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type on both sides.
pub type Body = BoxBody<Bytes, BoxError>;

/// What became of one request.
#[derive(Debug)]
pub struct Delivered {
    pub response: Response<Body>,
    /// The status the caller gets (for an upgrade: the local app's, e.g. 101).
    pub status: u16,
    /// Why the local app did not answer, when the response is our 502.
    pub failure: Option<DeliveryError>,
}

/// Delivers requests; one per run, shared by every session.
pub struct Deliverer {
    settings: DeliverySettings,
    tls: Option<TlsClients>,
    clients: Mutex<HashMap<ClientKey, Client<Connector, Body>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    addr: String,
    sni: Option<String>,
    h2: bool,
}

impl Deliverer {
    /// Loads the TLS settings (trust roots, pinned certificate) once.
    pub fn new(settings: DeliverySettings) -> Result<Self, TlsError> {
        let tls = match settings.protocol {
            DeliveryProtocol::Tls => Some(TlsClients::new(
                &settings.trust_roots,
                settings.server_cert.as_deref(),
            )?),
            DeliveryProtocol::Tcp => None,
        };
        Ok(Deliverer {
            settings,
            tls,
            clients: Mutex::default(),
        })
    }

    /// Where requests sent to `port` in the pod go: `--to`, else 127.0.0.1 and the port's
    /// `port_mapping` local port, else the same port.
    pub fn local_addr(&self, port: u16) -> LocalAddr {
        self.settings.to.clone().unwrap_or_else(|| LocalAddr {
            host: "127.0.0.1".into(),
            port: self
                .settings
                .port_mapping
                .iter()
                .find(|(_, remote)| *remote == port)
                .map_or(port, |(local, _)| *local),
        })
    }

    /// Trust-root files the TLS client skipped, each with the reason.
    pub fn skipped_roots(&self) -> &[String] {
        self.tls.as_ref().map_or(&[], |t| t.skipped.as_slice())
    }

    /// Delivers one stolen request (the `tls-steal-meta` header already parsed into `meta`).
    pub async fn deliver(&self, mut req: Request<Incoming>, meta: &RequestMeta) -> Delivered {
        req.headers_mut().remove(META_HEADER);
        let addr = self.local_addr(meta.port);
        let is_upgrade = extended_connect_protocol(&req).is_some();
        let result = if is_upgrade {
            self.upgrade(req, meta, &addr).await
        } else {
            self.plain(req, meta, &addr).await
        };
        result.unwrap_or_else(|failure| Delivered {
            response: bad_gateway(&failure.describe()),
            status: 502,
            failure: Some(failure),
        })
    }

    async fn plain(
        &self,
        req: Request<Incoming>,
        meta: &RequestMeta,
        addr: &LocalAddr,
    ) -> Result<Delivered, DeliveryError> {
        let h2 = meta.http_version == "HTTP/2";
        let (mut parts, body) = req.into_parts();
        let authority = authority(&parts.uri, &parts.headers, meta, addr);
        parts.uri = self.uri(&authority, &parts.uri)?;
        local_head(&mut parts, h2);
        let out = Request::from_parts(parts, body.map_err(BoxError::from).boxed());
        let client = self.client(addr, meta, &authority, h2);
        let response = client
            .request(out)
            .await
            .map_err(|e| DeliveryError::from_client(addr, e))?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let status = parts.status.as_u16();
        Ok(Delivered {
            response: Response::from_parts(parts, body.map_err(BoxError::from).boxed()),
            status,
            failure: None,
        })
    }

    /// An extended CONNECT (RFC 8441) becomes an HTTP/1.1 upgrade toward the local app; on `101`
    /// the session answers `200` with `tls-steal-status: 101` and joins the two streams.
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        meta: &RequestMeta,
        addr: &LocalAddr,
    ) -> Result<Delivered, DeliveryError> {
        let caller = hyper::upgrade::on(&mut req);
        let protocol = meta.upgrade.clone().unwrap_or_else(|| {
            extended_connect_protocol(&req)
                .unwrap_or_default()
                .to_owned()
        });
        let (mut parts, _body) = req.into_parts();
        let authority = authority(&parts.uri, &parts.headers, meta, addr);
        parts.uri = self.uri(&authority, &parts.uri)?;
        parts.method = Method::GET;
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        strip_hop_by_hop(&mut parts.headers, false);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(
            header::UPGRADE,
            HeaderValue::from_str(&protocol)
                .map_err(|_| DeliveryError::BadProtocol(protocol.clone()))?,
        );
        let body = Full::new(Bytes::new()).map_err(BoxError::from).boxed();
        let client = self.client(addr, meta, &authority, false);
        let mut response = client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| DeliveryError::from_client(addr, e))?;
        let status = response.status();
        if status.is_success() {
            // Answered without upgrading: a 2xx to a CONNECT opens the stream, so the status
            // travels in the header and the body as the stream's bytes.
            let (mut parts, mut body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(UPGRADE_STATUS_HEADER, HeaderValue::from(status.as_u16()));
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Ok(upgraded) = caller.await else { return };
                let mut io = TokioIo::new(upgraded);
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data()
                        && io.write_all(&data).await.is_err()
                    {
                        return;
                    }
                }
                let _ = io.shutdown().await;
            });
            let mut ok = Response::new(Full::new(Bytes::new()).map_err(BoxError::from).boxed());
            *ok.headers_mut() = parts.headers;
            return Ok(Delivered {
                response: ok,
                status: status.as_u16(),
                failure: None,
            });
        }
        if status != StatusCode::SWITCHING_PROTOCOLS {
            // Refused: relayed as an ordinary response, with the real status in the header too.
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            parts
                .headers
                .insert(UPGRADE_STATUS_HEADER, HeaderValue::from(status.as_u16()));
            return Ok(Delivered {
                response: Response::from_parts(parts, body.map_err(BoxError::from).boxed()),
                status: status.as_u16(),
                failure: None,
            });
        }
        let local = hyper::upgrade::on(&mut response);
        let mut headers = std::mem::take(response.headers_mut());
        strip_hop_by_hop(&mut headers, false);
        headers.insert(UPGRADE_STATUS_HEADER, HeaderValue::from_static("101"));
        tokio::spawn(async move {
            match tokio::try_join!(caller, local) {
                Ok((a, b)) => {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                        tracing::debug!(error = %e, "upgraded stream ended");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "upgrade could not be completed"),
            }
        });
        let mut ok = Response::new(Full::new(Bytes::new()).map_err(BoxError::from).boxed());
        *ok.headers_mut() = headers;
        Ok(Delivered {
            response: ok,
            status: 101,
            failure: None,
        })
    }

    fn uri(&self, authority: &str, original: &Uri) -> Result<Uri, DeliveryError> {
        let scheme = match self.settings.protocol {
            DeliveryProtocol::Tls => "https",
            DeliveryProtocol::Tcp => "http",
        };
        let path = original.path_and_query().map_or("/", |p| p.as_str());
        format!("{scheme}://{authority}{path}")
            .parse()
            .map_err(DeliveryError::Uri)
    }

    fn client(
        &self,
        addr: &LocalAddr,
        meta: &RequestMeta,
        authority: &str,
        h2: bool,
    ) -> Client<Connector, Body> {
        // mirrord's order: the configured name, the server certificate's first name, the
        // client's SNI, the request's host; `localhost` when none is a valid name.
        let sni = self.tls.as_ref().map(|t| {
            self.settings
                .server_name
                .clone()
                .or_else(|| t.cert_name.clone())
                .or_else(|| meta.sni.clone())
                .unwrap_or_else(|| host_of(authority).to_string())
        });
        let key = ClientKey {
            addr: addr.to_string(),
            sni,
            h2,
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key.clone())
            .or_insert_with(|| {
                let tls = self.tls.as_ref().map(|t| {
                    let config = if h2 { t.h2.clone() } else { t.h1.clone() };
                    let name = key.sni.clone().unwrap_or_default();
                    let name = ServerName::try_from(name)
                        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"));
                    (config, name)
                });
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .http2_only(h2 && tls.is_none())
                    .build(Connector {
                        addr: key.addr.clone(),
                        tls,
                    })
            })
            .clone()
    }
}

/// The head of a stolen request as the local app gets it (the URI aside): HTTP/1.1 (the pool
/// picks h2 when the app negotiates it), no hop-by-hop headers, and for a request that came as
/// HTTP/2 no `Host` (it travels as `:authority`; toward an HTTP/1.1 app the client sets `Host`
/// from it).
pub fn local_head(parts: &mut http::request::Parts, h2: bool) {
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, false);
    if h2 {
        parts.headers.remove(header::HOST);
    }
}

/// The request's authority: the URI's, else `Host`, else the original SNI, else the local address.
fn authority(uri: &Uri, headers: &HeaderMap, meta: &RequestMeta, addr: &LocalAddr) -> String {
    uri.authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.parse::<http::uri::Authority>().is_ok())
                .map(str::to_string)
        })
        .or_else(|| meta.sni.clone())
        .unwrap_or_else(|| addr.to_string())
}

fn host_of(authority: &str) -> &str {
    match authority.parse::<http::uri::Authority>() {
        Ok(_) if authority.starts_with('[') => authority
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or(authority),
        Ok(_) => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        Err(_) => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_authorities() {
        assert_eq!(host_of("app.example.com:443"), "app.example.com");
        assert_eq!(host_of("app.example.com"), "app.example.com");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("10.0.0.1:443"), "10.0.0.1");
    }

    #[test]
    fn bad_gateway_says_why() {
        let r = bad_gateway("the local app at 127.0.0.1:1 is not reachable: refused");
        assert_eq!(r.status(), 502);
    }
}
