#![forbid(unsafe_code)]
//! `kubectl-steal`: the developer's side of a tls-steal session.
//!
//! One concept per module: [`args`] (the command line), [`mirrord_config`] (the
//! `feature.network.incoming` section of a mirrord config), [`settings`] (flags over file →
//! what to register and how to deliver), [`target`] (TARGET → pods), [`pods`] (following them),
//! [`portforward`], [`session`] (register, then serve the reverse HTTP/2), [`deliver`] (to the
//! local app), [`tls`] (the delivery TLS client), [`output`] (what the developer sees),
//! [`runner`] (keeping one session per endpoint alive). Read-only: [`explain`]
//! (`--explain`), [`status`] (`status TARGET`), both through [`inspect`] and [`sidecar_api`].

pub mod args;
pub mod deliver;
pub mod explain;
pub mod inspect;
pub mod mirrord_config;
pub mod output;
pub mod pods;
pub mod portforward;
pub mod runner;
pub mod session;
pub mod settings;
pub mod sidecar_api;
pub mod status;
pub mod target;
pub mod tls;
