#![forbid(unsafe_code)]
//! Fixtures shared by tls-steal's tests (sidecar, cli, webhook) and the e2e tools, so each
//! harness keeps only what is its own:
//!
//! * [`pki`]: certificate authorities and leaves (DNS names, IP SANs, server/client use) built
//!   with rcgen, the usual test world's [`Pki`] (server, client and foreign chains) written to a
//!   temporary directory, and a self-signed [`Leaf::self_signed`].
//! * [`tls`]: rustls server configs ([`ServerTls`]), client options ([`ClientOpts`]) and
//!   [`tls_connect`], the raw TLS stream; PEM loading through `rustls-pki-types`.
//! * [`app`]: an HTTP/1 + HTTP/2 app on loopback (TLS or plain) that records what it saw
//!   ([`Seen`]) and answers with the harness's handler; the building blocks those handlers share.
//! * [`client`]: hyper clients over a TLS or TCP stream ([`Conn`], handshakes, plain HTTP/1 GETs,
//!   [`collect`]ed answers, raw HTTP/1 responses).
//!
//! The crypto provider is ring everywhere ([`provider`]), as in the product.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

pub mod app;
pub mod client;
pub mod pki;
pub mod tls;

pub use app::{App, AppBuilder, Seen};
pub use client::{Answer, Conn, Err, collect, http1_get, read_head, read_raw_response};
pub use pki::{Ca, Leaf, LeafBuilder, Pki};
pub use tls::{ClientOpts, ClientTls, ServerTls, tls_connect};

/// The ring crypto provider, as every component uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The body type of the test apps, handlers and clients.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|n: Infallible| match n {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// `body_of(b)` is [`full`]`(b)`.
pub fn body_of(b: impl Into<Bytes>) -> Body {
    full(b)
}

/// The headers of a request or response as (name, value) pairs, in order; values read lossily.
pub fn header_list(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
