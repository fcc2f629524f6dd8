#![forbid(unsafe_code)]
//! The vocabulary of tls-steal: the `MirrordTlsStealConfig` / `MirrordClusterTlsStealConfig`
//! custom resources, their validation, target-path and label-selector matching, and the merge of
//! every config that applies to a pod into one [`plan::StealPlan`].
//!
//! Pure logic, no I/O: the webhook feeds it cluster state, the sidecar reads the plan it produces.
//!
//! The public modules are namespaces the other crates import from: [`contract`] (the public
//! names), [`types`], [`plan`], [`target`], [`status`], [`explain`], [`filter`], [`probe`],
//! [`session`] (the session protocol), [`crdgen`]. [`steal_session`] and [`ticket`] define the
//! `StealSession` resource and its signed tickets: the CRD ships, nothing checks tickets yet.
//! Matching and validation internals are private.

pub mod contract;
pub mod crdgen;
pub mod explain;
pub mod filter;
mod pattern;
pub mod plan;
pub mod probe;
mod selector;
pub mod session;
pub mod status;
pub mod steal_session;
pub mod target;
pub mod ticket;
pub mod types;
mod validate;
pub mod workers;

pub use plan::{ConfigSource, StealPlan, build_plan};
pub use status::TlsStealConfigStatus;
pub use target::{Owner, OwnerKind, PodTarget};
pub use types::{
    AgentAsClient, AgentAsServer, ClientVerification, MirrordClusterTlsStealConfig,
    MirrordTlsStealConfig, PortConfig, ServerVerification, TlsAuthentication, TlsStealSpec,
};
pub use validate::{FieldError, ValidationErrors};
