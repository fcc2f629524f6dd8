#![forbid(unsafe_code)]
//! `tls-steal-sidecar` as a library: the `init` (iptables capture) and `proxy` (TLS termination,
//! routing, forwarding) halves, and `wait` (the proxy container's `postStart` hook), so the
//! binary stays a thin CLI and tests drive the real code.

pub mod init;
pub mod proxy;
pub mod serve;
pub mod session;
pub mod wait;
pub mod workers;

#[cfg(test)]
mod metrics_series;
