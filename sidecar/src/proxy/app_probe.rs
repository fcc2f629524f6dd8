//! The app's own probes, run by the proxy on the kubelet's behalf.
//!
//! The kubelet probes the pod IP, so a probe of a captured port would be judged through the
//! steal path. The webhook rewrites such probes to `GET :15401/app-health/<container>/<kind>`
//! and hands the original ones over in `TLS_STEAL_APP_PROBES`
//! ([`tls_steal_crds::probe::AppProbes`]); here each is run against the app as the kubelet
//! would run it:
//!
//! * `httpGet`: a new connection to `podIP:port` (TLS for `https`: **no certificate
//!   verification**, no SNI since the host is an IP, ALPN `h2` then `http/1.1`, no session
//!   resumption), one `GET <path>` (HTTP/2 when the app chose `h2`, as Go's transport in the
//!   kubelet does; else HTTP/1.1) with `Host: <ip>:<port>` (`:authority` in HTTP/2),
//!   `User-Agent` and `Accept` taken from the kubelet's own request (so the app still sees
//!   `kube-probe/1.x`; defaults `kube-probe/tls-steal` and `*/*`), `Connection: close` (HTTP/1.1
//!   only), then the probe's headers (a name given there replaces the default, `Host`
//!   included). Up to [`MAX_BODY`] bytes of each answer are read and discarded. Redirects on
//!   the pod IP are followed as the kubelet follows them ([`redirect`]), each over a new
//!   connection with the same headers.
//!   Answer, from the last request: app 200–399 → 200; app ≥ 400 → that status; app < 200 →
//!   503; no connection, failed TLS, broken exchange, timeout or too many redirects → 503 with
//!   the reason.
//! * `tcpSocket`: a TCP connect → 200, else 503 with the reason.
//!
//! Each probe is bounded by its `timeoutSeconds` (at least 1 s, Kubernetes' default). Its
//! connection from inside the pod is never captured: the capture is in `nat PREROUTING` only
//! (see [`crate::init`]), like the forwarder's own connections. A change of a probe's result
//! (ok ↔ failing) is logged once, not every probe.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tls_steal_crds::probe::{AppProbe, AppProbes, ProbeAction, ProbeHeader, ProbeScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::forward::{ProxyBody, error_chain, text_response};
use super::tls_client::accept_any_cert;

mod redirect;

use redirect::{MAX_REQUESTS, Next, Target};

/// Most bytes of the app's answer read (and discarded), as the kubelet's 10 KiB.
pub const MAX_BODY: usize = 10 * 1024;
/// `User-Agent` when the request to `/app-health` had none.
pub const DEFAULT_USER_AGENT: &str = "kube-probe/tls-steal";

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {}", error_chain(source))]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("reading the answer of {addr} failed: {reason}")]
    Body { addr: SocketAddr, reason: String },
    #[error("no answer from {addr} within {secs}s (the probe's timeoutSeconds)")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("invalid probe path {path:?}: {source}")]
    Path {
        path: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("invalid probe header {name:?}")]
    Header { name: String },
    #[error("the app answered {status}")]
    Status { status: StatusCode },
    #[error("cannot follow the redirect to {location:?}: {reason}")]
    Redirect {
        location: String,
        reason: &'static str,
    },
    #[error("stopped after {MAX_REQUESTS} redirects (the last from {addr})")]
    Redirects { addr: SocketAddr },
}

impl ProbeError {
    /// The status `/app-health` answers with: the app's own failing status, else 503.
    pub fn status(&self) -> StatusCode {
        match self {
            ProbeError::Status { status } if status.as_u16() >= 400 => *status,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

const UNKNOWN: u8 = 0;
const OK: u8 = 1;
const FAILING: u8 = 2;

struct Entry {
    probe: AppProbe,
    /// The last result (`UNKNOWN`, `OK`, `FAILING`), to log changes only.
    last: AtomicU8,
}

/// The rewritten probes of the pod and what runs them.
pub struct AppProbeRunner {
    probes: BTreeMap<String, Entry>,
    pod_ip: IpAddr,
    tls: Arc<rustls::ClientConfig>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Aborts the spawned HTTP connection task when the probe ends (or times out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Drives a client connection (its outcome shows in the request's).
    fn spawn<F: std::future::Future + Send + 'static>(conn: F) -> Self {
        AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AppProbeRunner {
    pub fn new(probes: &AppProbes, pod_ip: IpAddr) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(accept_any_cert(provider))
            .with_no_client_auth();
        // As Go's transport in the kubelet (`http2.ConfigureTransport`): HTTP/2 when the app
        // offers it.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // As the kubelet: a full handshake per probe.
        tls.resumption = rustls::client::Resumption::disabled();
        AppProbeRunner {
            probes: probes
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        Entry {
                            probe: p.clone(),
                            last: AtomicU8::new(UNKNOWN),
                        },
                    )
                })
                .collect(),
            pod_ip,
            tls: Arc::new(tls),
        }
    }

    /// Answers `GET /app-health/<key>`; `incoming` are the kubelet's request headers.
    pub async fn run(&self, key: &str, incoming: &HeaderMap) -> Response<ProxyBody> {
        let Some(entry) = self.probes.get(key) else {
            let known: Vec<&str> = self.probes.keys().map(String::as_str).collect();
            return text_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no app probe {key:?} (known: {})\n",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        };
        let result = self.check(&entry.probe, incoming).await;
        let now = if result.is_ok() { OK } else { FAILING };
        if entry.last.swap(now, Ordering::Relaxed) != now {
            match &result {
                Ok(what) => info!(probe = key, result = %what, "app probe succeeds"),
                Err(e) => warn!(probe = key, error = %e, "app probe fails"),
            }
        }
        match result {
            Ok(what) => text_response(StatusCode::OK, format!("ok: {what}\n")),
            Err(e) => text_response(e.status(), format!("app probe {key} failed: {e}\n")),
        }
    }

    /// Runs one probe: what succeeded, or why it failed.
    pub async fn check(
        &self,
        probe: &AppProbe,
        incoming: &HeaderMap,
    ) -> Result<String, ProbeError> {
        let addr = SocketAddr::new(self.pod_ip, probe.action.port());
        let secs = u64::from(probe.timeout_seconds.max(1));
        let run = async {
            match &probe.action {
                ProbeAction::TcpSocket { .. } => {
                    TcpStream::connect(addr)
                        .await
                        .map_err(|source| ProbeError::Connect { addr, source })?;
                    Ok(format!("TCP connect to {addr} succeeded"))
                }
                ProbeAction::HttpGet {
                    scheme,
                    path,
                    headers,
                    ..
                } => self.http_get(addr, *scheme, path, headers, incoming).await,
            }
        };
        tokio::time::timeout(Duration::from_secs(secs), run)
            .await
            .unwrap_or(Err(ProbeError::Timeout { addr, secs }))
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        scheme: ProbeScheme,
        path: &str,
        probe_headers: &[ProbeHeader],
        incoming: &HeaderMap,
    ) -> Result<String, ProbeError> {
        let mut target = Target::probe(scheme, addr, path);
        let mut probe_host = true;
        let mut requests = 0;
        loop {
            requests += 1;
            let req = request(
                &target.host,
                &target.path,
                probe_headers,
                incoming,
                probe_host,
            )?;
            let (status, location) = self.exchange(&target, req).await?;
            let followed = redirect::followed(status).then_some(location).flatten();
            let Some(location) = followed else {
                return match status.as_u16() {
                    200..=399 => Ok(format!("the app answered {status}")),
                    _ => Err(ProbeError::Status { status }),
                };
            };
            match redirect::next(&target, &location, self.pod_ip)? {
                Next::OtherHost => {
                    return Ok(format!(
                        "the app answered {status}, a redirect to another host ({location}), not followed, as the kubelet"
                    ));
                }
                Next::Follow { .. } if requests == MAX_REQUESTS => {
                    return Err(ProbeError::Redirects { addr: target.addr });
                }
                Next::Follow {
                    target: next,
                    relative,
                } => {
                    probe_host &= relative;
                    target = next;
                }
            }
        }
    }

    /// One request over a new connection: the status and the `Location`, if any.
    async fn exchange(
        &self,
        target: &Target,
        req: Request<Empty<Bytes>>,
    ) -> Result<(StatusCode, Option<String>), ProbeError> {
        let addr = target.addr;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let (io, h2): (Box<dyn Io>, bool) = match target.scheme {
            ProbeScheme::Http => (Box::new(tcp), false),
            ProbeScheme::Https => {
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    // An IP address: rustls sends no SNI, as Go's client toward an IP.
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await
                    .map_err(|source| ProbeError::Tls { addr, source })?;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                (Box::new(tls), h2)
            }
        };
        let http = |source| ProbeError::Http { addr, source };
        let io = TokioIo::new(io);
        let (resp, _conn) = if h2 {
            let req = as_h2(req)?;
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(http)?;
            let conn = AbortOnDrop::spawn(conn);
            (sender.send_request(req).await.map_err(http)?, conn)
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(http)?;
            let conn = AbortOnDrop::spawn(conn);
            (sender.send_request(req).await.map_err(http)?, conn)
        };
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read (a little of) the answer, as the kubelet does; a longer body is not an error.
        if let Err(e) = Limited::new(resp.into_body(), MAX_BODY).collect().await
            && !e.is::<http_body_util::LengthLimitError>()
        {
            return Err(ProbeError::Body {
                addr,
                reason: error_chain(&*e),
            });
        }
        Ok((status, location))
    }
}

/// An HTTP/1.1 probe request as Go's HTTP/2 transport sends it: the `Host` becomes
/// `:authority` (no `host` field), the scheme `https`, and no `Connection` field.
fn as_h2(mut req: Request<Empty<Bytes>>) -> Result<Request<Empty<Bytes>>, ProbeError> {
    let host = req.headers_mut().remove(HOST);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let uri = format!("https://{host}{path}");
    *req.uri_mut() = Uri::try_from(uri.as_str()).map_err(|source| ProbeError::Path {
        path: uri.clone(),
        source,
    })?;
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut().remove(CONNECTION);
    Ok(req)
}

/// The probe's request: defaults, then the probe's own headers (a name given there replaces
/// the default; repeated names are all sent, as the kubelet's `Header.Add`). Without
/// `probe_host` a `Host` among them is left out (after a redirect that named a host); `host` is
/// the target's ([`Target::host`]).
fn request(
    host: &str,
    path: &str,
    probe_headers: &[ProbeHeader],
    incoming: &HeaderMap,
    probe_host: bool,
) -> Result<Request<Empty<Bytes>>, ProbeError> {
    let target = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let uri = Uri::try_from(target.as_str()).map_err(|source| ProbeError::Path {
        path: path.to_owned(),
        source,
    })?;
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    if let Ok(host) = HeaderValue::from_str(host) {
        h.insert(HOST, host);
    }
    let from_kubelet = |name: HeaderName, default: &'static str| {
        incoming
            .get(&name)
            .cloned()
            .unwrap_or(HeaderValue::from_static(default))
    };
    h.insert(USER_AGENT, from_kubelet(USER_AGENT, DEFAULT_USER_AGENT));
    h.insert(ACCEPT, from_kubelet(ACCEPT, "*/*"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    let mut given: Vec<HeaderName> = Vec::new();
    for ph in probe_headers {
        let bad = || ProbeError::Header {
            name: ph.name.clone(),
        };
        let name = HeaderName::from_bytes(ph.name.as_bytes()).map_err(|_| bad())?;
        if name == HOST && !probe_host {
            continue;
        }
        let value = HeaderValue::from_str(&ph.value).map_err(|_| bad())?;
        if given.contains(&name) {
            h.append(name, value);
        } else {
            h.insert(name.clone(), value);
            given.push(name);
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> ProbeHeader {
        ProbeHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn defaults_then_the_probes_headers() {
        let addr = "[fd00::7]:8443";
        let mut kubelet = HeaderMap::new();
        kubelet.insert(USER_AGENT, HeaderValue::from_static("kube-probe/1.20"));
        let req = request(addr, "healthz?full=1", &[], &kubelet, true).unwrap();
        assert_eq!(req.uri(), "/healthz?full=1");
        assert_eq!(req.headers()[HOST], "[fd00::7]:8443");
        assert_eq!(req.headers()[USER_AGENT], "kube-probe/1.20");
        assert_eq!(req.headers()[ACCEPT], "*/*");

        let probe = [
            header("Host", "app.example"),
            header("X-Probe", "a"),
            header("x-probe", "b"),
            header("accept", "application/json"),
        ];
        let req = request(addr, "/", &probe, &HeaderMap::new(), true).unwrap();
        let h = req.headers();
        assert_eq!(h[HOST], "app.example");
        assert_eq!(h[USER_AGENT], DEFAULT_USER_AGENT);
        assert_eq!(h[ACCEPT], "application/json");
        let xs: Vec<_> = h.get_all("x-probe").iter().collect();
        assert_eq!(xs, ["a", "b"]);
        assert_eq!(h.get_all(HOST).iter().count(), 1);
        // After a redirect that named a host, that host, not the probe's.
        let req = request(addr, "/", &probe, &HeaderMap::new(), false).unwrap();
        assert_eq!(req.headers()[HOST], "[fd00::7]:8443");
        assert_eq!(req.headers()["x-probe"], "a");
    }

    #[test]
    fn bad_paths_and_headers_are_named() {
        let addr = "10.0.0.1:443";
        let e = request(addr, "/a b", &[], &HeaderMap::new(), true).unwrap_err();
        assert!(e.to_string().contains("\"/a b\""), "{e}");
        let e = request(
            addr,
            "/",
            &[header("bad name", "x")],
            &HeaderMap::new(),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"bad name\""), "{e}");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let app = ProbeError::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
        };
        assert_eq!(app.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let early = ProbeError::Status {
            status: StatusCode::CONTINUE,
        };
        assert_eq!(early.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
