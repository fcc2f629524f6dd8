//! `StealSession` (`tls-steal.io/v1alpha1`, namespaced): a steal session as a Kubernetes object.
//!
//! `kubectl steal` creates one per run and deletes it on exit. Creating it is the permission to
//! steal (RBAC `create` on `stealsessions` in the target's namespace); admission records who
//! created it (`spec.requestedBy`, immutable) and applies the chart's session policy; the
//! controller signs a short-lived ticket into its status ([`crate::ticket`]), which the sidecar
//! checks before it accepts the registration. `kubectl get stealsessions -A` shows who steals
//! what.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::filter::HttpFilter;
use crate::session::Mode;

/// What a developer asks to steal.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tls-steal.io",
    version = "v1alpha1",
    kind = "StealSession",
    namespaced,
    status = "StealSessionStatus",
    shortname = "steals",
    category = "tls-steal",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.requestedBy.username"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target"}"#,
    printcolumn = r#"{"name":"Ports","type":"string","jsonPath":".status.portsSummary"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Filter","type":"string","jsonPath":".status.filterSummary"}"#,
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.podsRegistered"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StealSessionSpec {
    /// The workload whose pods are stolen from: `deploy/x`, `pod/y`, `statefulset/z`, ...
    pub target: String,
    /// Ports (as the app sees them); empty: every port the pods' steal plan captures.
    #[serde(default)]
    #[schemars(schema_with = "port_list")]
    pub ports: Vec<u16>,
    /// `steal` (the developer answers) or `mirror` (the app answers, the developer gets a copy).
    #[serde(default)]
    pub mode: Mode,
    /// The filter, in the session API's model (`{"header": "x-debug: me"}`, `{"all_of": [..]}`,
    /// ...); absent: every request of the ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub filter: Option<HttpFilter>,
    /// The ports the filter applies to (mirrord's `http_filter.ports`); the others are taken
    /// whole. Absent: all of the session's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_port_list")]
    pub filter_ports: Option<Vec<u16>>,
    /// How stolen requests reach the developer's app: `tls` or `tcp` (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// How long the session may last, in seconds (bounded by the chart's
    /// `sessions.maxDuration`; absent: that bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    /// Who created the session: written by admission from the request's user, never by the
    /// client, and immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<RequestedBy>,
}

/// The Kubernetes user that created a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestedBy {
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What the controller and `kubectl steal` report about a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StealSessionStatus {
    /// The signed ticket the sidecars check (see `ticket`), renewed while the session is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// When the ticket expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_expires: Option<String>,
    /// The last sign of life from `kubectl steal` (RFC 3339); the controller stops renewing the
    /// ticket of a session whose client went quiet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// Pods the session is registered on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    #[serde(default)]
    pub pods_registered: i32,
    /// The ports for people (`443`, `all captured`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_summary: Option<String>,
    /// The filter for people (`header ~ "x-debug: me"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_summary: Option<String>,
    /// Why the session cannot run (a refused policy, an expired duration), if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn port_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535}
    })
}

fn optional_port_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "nullable": true,
        "items": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535}
    })
}

/// A filter's schema: an object checked by admission (it compiles the filter), since a
/// recursive filter has no structural schema.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "The filter in the session API's model: {\"header\": regex}, {\"path\": regex}, {\"method\": m}, {\"body\": {...}}, {\"all_of\": [...]}, {\"any_of\": [...]}."
    })
}
