//! The per-request routing decision. Every request is routed on its own (not per connection):
//! forwarded to the application, stolen by a session, or forwarded and mirrored to a session.
//! The decision over the sessions' filters is [`crate::session::Sessions`]'s [`Router`]
//! implementation; [`ForwardAll`] forwards everything.

use std::net::SocketAddr;

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
    /// Taken by a session: it answers instead of the app.
    Steal(crate::session::Stolen),
    /// Forwarded to the app, and a copy sent to a session.
    Mirror(crate::session::Mirrored),
    /// Not decided yet: a session on this port filters on the body. The proxy reads it
    /// (bounded, [`super::body`]) and asks again with [`Router::route_with_body`].
    ReadBody,
}

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
    fn attach(
        &self,
        _shared: &std::sync::Arc<super::Shared>,
    ) -> std::io::Result<Option<SocketAddr>> {
        Ok(None)
    }

    /// Adds the router's own metrics to the proxy's registry (served at `/metrics`).
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}

/// The router of this stage: everything goes to the application.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardAll;

impl Router for ForwardAll {
    fn route(&self, _request: &http::request::Parts, _conn: &ConnInfo) -> Route {
        Route::Forward
    }
}
