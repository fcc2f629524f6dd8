//! The two custom resources. Field names, optionality and defaults follow the published
//! description of `MirrordTlsStealConfig` exactly, so a YAML written for it loads unchanged.
//!
//! Required (not marked optional there): `ports`, `ports[].port`, `agentAsServer`,
//! `agentAsServer.authentication`, `agentAsClient` and `agentAsClient.verification`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::TlsStealConfigStatus;

/// The spec shared by both kinds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStealSpec {
    /// Wildcard pattern matched against the target paths of a pod (`deploy/x`,
    /// `pod/y/container/c`, ...). `*` matches any run of characters (including `/`), `?` exactly
    /// one. Optional: absent matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// Label selector matched against the pod's labels. Optional: absent matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// TLS settings per port of the target.
    pub ports: Vec<PortConfig>,
}

/// TLS settings of one port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortConfig {
    /// The TCP port the application serves TLS on (1-65535).
    #[schemars(schema_with = "port_schema")]
    pub port: u16,
    /// How the proxy authenticates itself and verifies clients when acting as the TLS server.
    pub agent_as_server: AgentAsServer,
    /// How the proxy authenticates itself and verifies the application when acting as a TLS
    /// client (forwarding requests that are not stolen).
    pub agent_as_client: AgentAsClient,
}

fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "maximum": 65535,
        "description": "The TCP port the application serves TLS on (1-65535)."
    })
}

/// A certificate chain and its private key, as paths in the target container's filesystem.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsAuthentication {
    /// PEM file with the certificate chain, end-entity first; other PEM items are ignored.
    pub cert_pem: String,
    /// PEM file with exactly one private key (PKCS#1, PKCS#8 or SEC1); other items are ignored.
    pub key_pem: String,
}

/// The proxy acting as the TLS server toward the original client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentAsServer {
    /// The server's certificate chain and key.
    pub authentication: TlsAuthentication,
    /// ALPN protocols in order of preference. Empty disables ALPN.
    #[serde(default)]
    pub alpn_protocols: Vec<String>,
    /// How clients are verified. Absent: client authentication is not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<ServerVerification>,
}

/// Client-certificate verification of the proxy's TLS server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerVerification {
    /// Accept clients that present no certificate.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Accept any presented certificate, valid or not. Does not admit anonymous clients.
    #[serde(default)]
    pub accept_any_cert: bool,
    /// PEM files and directories (not recursive) whose certificates are the allowed roots.
    #[serde(default)]
    pub trust_roots: Vec<String>,
}

/// The proxy acting as a TLS client toward the application.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentAsClient {
    /// Client certificate presented to the application. Absent: connect anonymously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<TlsAuthentication>,
    /// How the application's certificate is verified (no system roots are ever used).
    pub verification: ClientVerification,
}

/// Server-certificate verification of the proxy's TLS client.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientVerification {
    /// Accept any server certificate, valid or not.
    #[serde(default)]
    pub accept_any_cert: bool,
    /// PEM files and directories (not recursive) whose certificates are the allowed roots.
    #[serde(default)]
    pub trust_roots: Vec<String>,
}

/// Namespaced HTTPS-stealing configuration: applies to pods in its own namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirrord.metalbear.co",
    version = "v1alpha",
    kind = "MirrordTlsStealConfig",
    namespaced,
    status = "TlsStealConfigStatus",
    shortname = "tlssteal",
    category = "tls-steal",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetPath"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".status.matchedCount"}"#,
    printcolumn = r#"{"name":"Conflicts","type":"integer","jsonPath":".status.conflictCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrordTlsStealConfigSpec {
    #[serde(flatten)]
    pub inner: TlsStealSpec,
}

/// Cluster-scoped HTTPS-stealing configuration: applies to pods in every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mirrord.metalbear.co",
    version = "v1alpha",
    kind = "MirrordClusterTlsStealConfig",
    status = "TlsStealConfigStatus",
    shortname = "clustertlssteal",
    category = "tls-steal",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetPath"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".status.matchedCount"}"#,
    printcolumn = r#"{"name":"Conflicts","type":"integer","jsonPath":".status.conflictCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MirrordClusterTlsStealConfigSpec {
    #[serde(flatten)]
    pub inner: TlsStealSpec,
}

impl std::ops::Deref for MirrordTlsStealConfigSpec {
    type Target = TlsStealSpec;
    fn deref(&self) -> &TlsStealSpec {
        &self.inner
    }
}

impl std::ops::Deref for MirrordClusterTlsStealConfigSpec {
    type Target = TlsStealSpec;
    fn deref(&self) -> &TlsStealSpec {
        &self.inner
    }
}
