//! What `tls-steal-sidecar proxy` runs: the proxy ([`crate::proxy`]) with the session layer
//! ([`crate::session`]) as its router. The proxy knows only its own routing traits; this is the
//! one place that puts the two together.

use crate::proxy::{self, ProxyConfig, ProxyError, ProxyHandle};
use crate::session::{SessionConfig, Sessions};

/// Loads the plan's material, binds the listeners (and the session API, `cfg.session_api`) and
/// serves: each request is forwarded unless a session's filter takes it.
pub async fn start(cfg: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
    let mut sessions = SessionConfig::new(cfg.plan.port_numbers());
    sessions.authorization = cfg.session_authorization.clone();
    let sessions = Sessions::new(sessions);
    proxy::start_with_router(cfg, sessions).await
}

/// Runs until SIGTERM/SIGINT, then drains (a second signal skips the rest of the drain delay).
pub async fn run(cfg: ProxyConfig) -> Result<(), ProxyError> {
    let handle = start(cfg).await?;
    proxy::run_until_signalled(handle).await;
    Ok(())
}
