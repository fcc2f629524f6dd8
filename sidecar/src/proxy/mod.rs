//! `tls-steal-sidecar proxy`: the TLS-terminating hop of the `tls-steal-proxy` container.
//!
//! Wiring only; each concern lives in its own module:
//! [`config`] (arguments, plan), [`files`] (target-container paths), [`mounts`] (mount tables:
//! which process is of which container), [`pem`], [`material`],
//! [`tls_server`], [`tls_client`], [`ports`] (per-port state), [`reload`], [`orig_dst`],
//! [`conn`] (one connection), [`affinity`] (HTTP/1.1 app connection per client connection),
//! [`app_listen`] (does the app still listen, for the drain), [`route`] (per-request decision), [`body`] (bounded body reads for body filters),
//! [`forward`], [`idle`] (client connection timeouts), [`passthrough`], [`admin`], [`app_probe`] (the
//! kubelet's probes, run against the app), [`metrics`], [`shutdown`] (drain while the app
//! listens, then graceful close), [`lanes`] (one single-threaded runtime per worker).
//!
//! Limits against hostile or runaway clients: `--max-connections` client connections per
//! captured port (the excess is closed right after accept, counted), at most
//! [`MAX_POOLS_PER_PORT`] upstream pools per port (least recently used evicted) and a
//! bounded idle list per port ([`affinity`]), and the header read timeout on every listener
//! (the admin port's too).

mod admin;
mod affinity;
mod app_listen;
mod app_probe;
mod body;
mod config;
mod conn;
mod files;
mod forward;
mod idle;
mod lanes;
mod material;
mod metrics;
mod mounts;
mod orig_dst;
mod passthrough;
mod pem;
mod ports;
mod reload;
mod route;
mod shutdown;
mod signatures;
mod tls_client;
mod tls_server;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use affinity::KEEP_IDLE;
pub use body::BodyRead;
pub use config::{Authorization, AuthorizationMode, ConfigError, ProxyArgs, ProxyConfig};
pub use forward::{MAX_POOLS_PER_PORT, ProxyBody, app_head};
pub use route::{ConnInfo, Delivery, Mirror, Mirrored, Route, Router, Stolen, Taker};

// What the session layer (a sibling) uses of the proxy besides the routing interface.
pub(crate) use forward::{empty_body, error_chain, head_copy, text_response};
pub(crate) use metrics::{Labels, Metrics, per_port, port_label};
pub(crate) use pem::cert_chain;
pub(crate) use ports::PortHealth;

use ports::PortTable;
use shutdown::{Drain, Shutdown};

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no capture listener could be bound")]
    NoListener,
    #[error("the router could not start serving")]
    Attach(#[source] std::io::Error),
    #[error("cannot start a worker lane")]
    Lane(#[source] std::io::Error),
}

/// The HTTP server builders, configured once.
pub(crate) struct HttpBuilders {
    /// hyper's own HTTP/1 builder: its connection can be taken apart to park it (`conn::h1`).
    pub(crate) h1: http1::Builder,
    pub(crate) h2: auto::Builder<TokioExecutor>,
    /// HTTP/1 without keep-alive: for connections that start once the proxy stops accepting
    /// (accepted just before): their one request is served, with `Connection: close`.
    pub(crate) h1_last: http1::Builder,
}

impl HttpBuilders {
    fn new(cfg: &ProxyConfig) -> Self {
        // No hyper header timer for HTTP/1: it also runs while a keep-alive connection waits
        // for its next request, which would close idle clients after 10 s where the app keeps
        // them; `idle` bounds heads and idle time for both protocols.
        // As the app alone answers: header names in the case they were written both ways (the
        // forwarder keeps them too), and no `Date` the app did not send.
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .preserve_header_case(true)
            .auto_date_header(false)
            .header_read_timeout(None)
            .max_buf_size(cfg.max_header_bytes.max(8192));
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http2()
            .timer(TokioTimer::new())
            .auto_date_header(false)
            .max_header_list_size(cfg.max_header_bytes as u32)
            .max_concurrent_streams(1000)
            // A peer that vanished mid-stream (no FIN) is noticed; idle ones are closed by `idle`.
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
            .keep_alive_timeout(std::time::Duration::from_secs(20));
        let mut last = h1.clone();
        last.keep_alive(false);
        HttpBuilders {
            h1,
            h2: b.http2_only(),
            h1_last: last,
        }
    }
}

/// What every connection task shares.
pub struct Shared {
    pub(crate) cfg: ProxyConfig,
    pub(crate) ports: PortTable,
    pub(crate) metrics: Arc<Metrics>,
    /// What `/metrics` serves: the proxy's families and the router's.
    pub(crate) registry: prometheus_client::registry::Registry,
    pub(crate) router: Arc<dyn Router>,
    pub(crate) http: HttpBuilders,
    pub(crate) shutdown: Shutdown,
    pub(crate) drain: Drain,
    pub(crate) app_probes: app_probe::AppProbeRunner,
    pub(crate) lanes: lanes::LaneSet,
}

impl Shared {
    /// The state every connection shares: the plan's ports loaded (blocking file reads, off the
    /// runtime) and the proxy's and `router`'s metrics registered.
    pub(crate) async fn load(cfg: ProxyConfig, router: Arc<dyn Router>) -> Arc<Shared> {
        let metrics = Arc::new(Metrics::new(cfg.plan.port_numbers()));
        let ports = {
            let (plan, files, m, t) = (
                cfg.plan.clone(),
                cfg.files.clone(),
                metrics.clone(),
                forward::UpstreamTimeouts {
                    connect: cfg.connect_timeout,
                    idle: cfg.upstream_idle_timeout,
                },
            );
            let lanes = cfg.workers.max(1);
            tokio::task::spawn_blocking(move || PortTable::load(&plan, files, m, t, lanes))
                .await
                .expect("port loading panicked")
        };
        let lanes = lanes::LaneSet::new(cfg.workers);
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        lanes.register(&mut registry);
        router.register_metrics(&mut registry);
        Arc::new(Shared {
            http: HttpBuilders::new(&cfg),
            app_probes: app_probe::AppProbeRunner::new(&cfg.app_probes, cfg.pod_ip),
            cfg,
            ports,
            metrics,
            registry,
            router,
            shutdown: Shutdown::default(),
            drain: Drain::default(),
            lanes,
        })
    }
}

/// A running proxy.
pub struct ProxyHandle {
    /// The bound capture listeners (resolved ports when `:0` was asked).
    pub listen: Vec<SocketAddr>,
    /// The bound admin listener.
    pub admin: Option<SocketAddr>,
    /// The bound session API listener (`cfg.session_api`).
    pub session_api: Option<SocketAddr>,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// Starts the graceful shutdown (as SIGTERM does): not ready at once, still serving for
    /// the drain delay, then closing.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// The drain delay is over: the capture listeners are closed.
    pub fn is_closing(&self) -> bool {
        self.shutdown.is_closing()
    }

    /// Waits until the proxy has drained (or hit the drain deadline).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// The capture listeners of every lane: `lanes[i]` holds lane `i`'s handle of each address that
/// could be bound, one socket per address shared by all lanes (see [`lanes`]).
fn bind_lanes(
    addrs: &[SocketAddr],
    lanes: usize,
) -> Result<Vec<Vec<std::net::TcpListener>>, ProxyError> {
    let mut out: Vec<Vec<std::net::TcpListener>> = (0..lanes).map(|_| Vec::new()).collect();
    for addr in addrs {
        let socket = match bind_std(*addr) {
            Ok(l) => l,
            Err(e) if addr.is_ipv6() => {
                warn!(%addr, error = %e, "IPv6 capture listener not bound");
                continue;
            }
            Err(source) => {
                return Err(ProxyError::Bind {
                    addr: *addr,
                    source,
                });
            }
        };
        for lane in out.iter_mut().skip(1) {
            let l = socket.try_clone().map_err(|source| ProxyError::Bind {
                addr: *addr,
                source,
            })?;
            lane.push(l);
        }
        out[0].push(socket);
    }
    Ok(out)
}

// The proxy with the session layer as its router: wired in `crate::serve`, named here too for
// the callers that start "the proxy".
pub use crate::serve::{run, start};

/// Loads the plan's material, binds the listeners (and whatever `router` serves besides, through
/// [`Router::attach`]) and serves: each request goes where `router` says.
pub async fn start_with_router(
    cfg: ProxyConfig,
    router: Arc<dyn Router>,
) -> Result<ProxyHandle, ProxyError> {
    let shared = Shared::load(cfg, router).await;
    let cfg = &shared.cfg;
    let mut lane_listeners = bind_lanes(&cfg.listen, cfg.workers.max(1))?.into_iter();
    let listeners = (lane_listeners.next().unwrap_or_default().into_iter())
        .map(TcpListener::from_std)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(ProxyError::Lane)?;
    if listeners.is_empty() {
        return Err(ProxyError::NoListener);
    }
    let admin = match cfg.admin {
        Some(addr) => Some(bind(addr).map_err(|source| ProxyError::Bind { addr, source })?),
        None => None,
    };
    let listen: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let shutdown = shared.shutdown.clone();
    let session_api = shared.router.attach(&shared).map_err(ProxyError::Attach)?;
    info!(listen = ?listen, admin = ?admin_addr, ports = ?shared.cfg.plan.port_numbers(), "tls-steal-proxy serving");

    let admin_task = admin.map(|l| tokio::spawn(admin::serve(l, shared.clone())));
    let reload_task = tokio::spawn(reload::run(shared.clone()));
    lanes::receive(0, &shared);
    for (i, l) in lane_listeners.enumerate() {
        if let Err(e) = lanes::spawn(i + 1, l, shared.clone()) {
            shared.shutdown.stop(); // ends the lanes started so far
            return Err(ProxyError::Lane(e));
        }
    }
    let accept_tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, shared.clone())))
        .collect();

    let task = tokio::spawn(async move {
        shared.shutdown.wait().await;
        let delay = shared.cfg.drain_delay;
        info!(
            drain_delay_secs = delay.as_secs_f64(),
            "shutting down: not ready any more; accepting and serving while the app listens (at most the drain delay)"
        );
        let why = tokio::select! {
            _ = tokio::time::sleep(delay) => "drain delay over",
            _ = shared.shutdown.closing() => "asked to close",
            _ = app_listen::stopped(shared.cfg.app_ports()) => "the app stopped listening",
        };
        shared.shutdown.close();
        info!("{why}: no new connections, finishing in-flight requests");
        for t in accept_tasks {
            let _ = t.await;
        }
        reload_task.abort();
        if shared.drain.wait(shared.cfg.drain_timeout).await {
            info!("drained");
        } else {
            warn!(
                live = shared.drain.live(),
                "drain deadline reached; closing remaining connections"
            );
        }
        if let Some(t) = admin_task {
            t.abort();
        }
        shared.shutdown.stop();
    });
    Ok(ProxyHandle {
        listen,
        admin: admin_addr,
        session_api,
        shutdown,
        task,
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, client)) => lanes::dispatch(&shared, tcp, client),
                Err(e) => accept_failed(&e).await,
            },
            // Returning drops the listener: connects are refused from here on.
            _ = shared.shutdown.closing() => return,
        }
    }
}

/// Out of descriptors and the like: back off, never exit, never spin.
pub(crate) async fn accept_failed(e: &std::io::Error) {
    error!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

/// Serves until SIGTERM/SIGINT, then drains (a second signal skips the rest of the drain delay).
pub(crate) async fn run_until_signalled(handle: ProxyHandle) {
    shutdown::signal().await;
    handle.shutdown();
    let again = handle.shutdown.clone();
    tokio::spawn(async move {
        shutdown::signal().await;
        again.close();
    });
    handle.wait().await;
}
