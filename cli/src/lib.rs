#![forbid(unsafe_code)]
//! `kubectl-steal`: the developer's side of a tls-steal session.
//!
//! One concept per module: `args` (the command line), `mirrord_config` (the
//! `feature.network.incoming` section of a mirrord config), `settings` (flags over file →
//! what to register and how to deliver), `target` (TARGET → pods), `pods` (following them),
//! `portforward`, `session` (register, then serve the reverse HTTP/2), `deliver` (to the
//! local app), [`tls`] (the delivery TLS client), `output` (what the developer sees),
//! `runner` (keeping one session per endpoint alive), `steal` (the command from start to
//! summary), `steal_object` (the run's `StealSession`: the permission, the ticket, the heartbeat). Read-only: `explain` (`--explain`), `status` (`status TARGET`), both through
//! `inspect` and `sidecar_api`.
//!
//! The binary needs only [`Args`] and [`run`]; [`tls`] and [`local_head`] are public for the
//! integration tests. Everything else is private, so the compiler reports what nothing uses.

mod args;
mod deliver;
mod explain;
mod inspect;
mod mirrord_config;
mod output;
mod pods;
mod portforward;
mod runner;
mod session;
mod settings;
mod sidecar_api;
mod status;
mod steal;
mod steal_object;
mod target;
pub mod tls;

pub use args::Args;
pub use deliver::local_head;
pub use steal::run;
