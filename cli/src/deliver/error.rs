//! Why a stolen request got no answer from the local app, and the 502 that says so.

use bytes::Bytes;
use http::Response;
use http::StatusCode;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Full};

use super::{Body, BoxError};
use crate::settings::LocalAddr;

/// Why the local app did not answer a stolen request (the caller gets a 502 saying so).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the local app at {addr} is not reachable")]
    Unreachable {
        addr: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the local app at {addr} did not answer")]
    NoAnswer {
        addr: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("bad upgrade protocol {0:?}")]
    BadProtocol(String),
    #[error("cannot build the request URI for the local app")]
    Uri(#[source] http::uri::InvalidUri),
}

impl DeliveryError {
    pub(super) fn from_client(addr: &LocalAddr, source: hyper_util::client::legacy::Error) -> Self {
        let addr = addr.to_string();
        if source.is_connect() {
            DeliveryError::Unreachable { addr, source }
        } else {
            DeliveryError::NoAnswer { addr, source }
        }
    }

    /// The message and its causes, as the 502 and the terminal show them (hyper-util's own
    /// "client error" line is left out when it has a cause: it names none).
    pub fn describe(&self) -> String {
        use std::error::Error as _;
        let mut s = self.to_string();
        let mut cause = self.source();
        if matches!(
            self,
            DeliveryError::Unreachable { .. } | DeliveryError::NoAnswer { .. }
        ) && let Some(inner) = cause.and_then(|c| c.source())
        {
            cause = Some(inner);
        }
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }
}

/// The 502 the caller gets when the local app did not answer.
pub fn bad_gateway(why: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("kubectl-steal: {why}\n")))
            .map_err(BoxError::from)
            .boxed(),
    );
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
