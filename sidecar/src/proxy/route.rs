//! The per-request routing decision. Every request is routed on its own (not per connection):
//! forwarded to the application, taken by someone else ([`Taker`]: it answers instead of the
//! app), or forwarded and copied ([`Mirror`]). The proxy owns these traits and knows nothing of
//! who implements them: the session layer ([`crate::session`]) is the [`Router`], and its
//! sessions are the takers and mirrors.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};

use super::forward::ProxyBody;

/// What the proxy knows about the connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The original client.
    pub client: SocketAddr,
    /// The address the client connected to (before the iptables REDIRECT).
    pub original_dst: SocketAddr,
    /// The captured port (`original_dst.port()`), key of the plan entry.
    pub port: u16,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// The ALPN protocol negotiated with the client, if any.
    pub alpn: Option<Vec<u8>>,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// To the original destination over a pooled TLS connection.
    Forward,
    /// Taken by someone else (a session): it answers instead of the app.
    Steal(Stolen),
    /// Forwarded to the app, and a copy sent elsewhere (to a session).
    Mirror(Mirrored),
    /// Not decided yet: a session on this port filters on the body. The proxy reads it
    /// (bounded, [`super::body`]) and asks again with [`Router::route_with_body`].
    ReadBody,
}

/// What became of a request handed to a [`Taker`].
pub enum Delivery {
    /// The taker's answer (or a `502` saying why there is none).
    Answered(Response<ProxyBody>),
    /// The taker never got the request (it was closing): it goes to the app, as if nothing had
    /// taken it.
    NotTaken(Request<ProxyBody>),
}

/// Whoever answers the requests routed to it instead of the app (a steal session).
pub trait Taker: Send + Sync + 'static {
    /// Who this is (logs, `Debug`, equality of routes).
    fn id(&self) -> u64;

    /// Answers `req`, request `request_id` of the connection `conn`.
    fn take<'a>(
        &'a self,
        request_id: u64,
        req: Request<ProxyBody>,
        conn: &'a ConnInfo,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;
}

/// Whoever gets a copy of the requests routed to it (a mirror session); the app answers.
pub trait Mirror: Send + Sync + 'static {
    /// Who this is (logs, `Debug`, equality of routes).
    fn id(&self) -> u64;

    /// Starts the copy of `req` and returns the request to forward to the app (its body teed).
    fn tee(
        self: Arc<Self>,
        request_id: u64,
        req: Request<ProxyBody>,
        conn: &ConnInfo,
    ) -> Request<ProxyBody>;
}

/// A request taken by a [`Taker`]: [`Stolen::serve`] hands it over and returns the answer (or,
/// if the taker never got it, the request back, for the app).
#[derive(Clone)]
pub struct Stolen {
    pub taker: Arc<dyn Taker>,
    pub request_id: u64,
}

/// A request copied to a [`Mirror`]: [`Mirrored::tee`] starts the copy and returns the request
/// to forward to the app.
#[derive(Clone)]
pub struct Mirrored {
    pub mirror: Arc<dyn Mirror>,
    pub request_id: u64,
}

impl Stolen {
    pub async fn serve(self, req: Request<ProxyBody>, conn: &ConnInfo) -> Delivery {
        self.taker.take(self.request_id, req, conn).await
    }
}

impl Mirrored {
    pub fn tee(self, req: Request<ProxyBody>, conn: &ConnInfo) -> Request<ProxyBody> {
        self.mirror.tee(self.request_id, req, conn)
    }
}

macro_rules! handle_traits {
    ($t:ty, $field:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("session", &self.$field.id())
                    .field("request_id", &self.request_id)
                    .finish()
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.$field.id() == other.$field.id() && self.request_id == other.request_id
            }
        }
        impl Eq for $t {}
    };
}
handle_traits!(Stolen, taker);
handle_traits!(Mirrored, mirror);

/// Decides the route of one request from its head and its connection.
pub trait Router: Send + Sync + 'static {
    fn route(&self, request: &http::request::Parts, conn: &ConnInfo) -> Route;

    /// The decision once the body was read (after [`Route::ReadBody`]); never `ReadBody`.
    fn route_with_body(
        &self,
        request: &http::request::Parts,
        _body: &super::body::BodyRead,
        conn: &ConnInfo,
    ) -> Route {
        match self.route(request, conn) {
            Route::ReadBody => Route::Forward,
            r => r,
        }
    }

    /// Called once the proxy's shared state exists; the session layer starts its API here and
    /// returns the address it bound.
    fn attach(&self, _shared: &Arc<super::Shared>) -> std::io::Result<Option<SocketAddr>> {
        Ok(None)
    }

    /// Adds the router's own metrics to the proxy's registry (served at `/metrics`).
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}
