#![forbid(unsafe_code)]
//! `tls-steal-sidecar` as a library: the `init` (iptables capture) and `proxy` (TLS termination,
//! routing, forwarding) halves, and `wait` (the proxy container's `postStart` hook), so the
//! binary stays a thin CLI and tests drive the real code.
//!
//! The public modules are the binary's subcommands and what tests start: [`proxy`] (its
//! configuration, handle and routing interface) and [`session`] (the router that sessions
//! register with). Their submodules are private, so the compiler reports what nothing uses.

pub mod init;
pub mod proxy;
mod serve;
pub mod session;
pub mod wait;
pub mod workers;

#[cfg(test)]
mod metrics_series;
