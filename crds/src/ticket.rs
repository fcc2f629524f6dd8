//! Session tickets: what lets the sidecar check, offline, that Kubernetes authorized a steal
//! session (`docs/architecture.md`, "The session protocol").
//!
//! The rollout controller signs a ticket for each `StealSession` object (Ed25519, `ring`); the
//! sidecar holds the public keys (injected with the plan, two at a time so a rotation overlaps)
//! and refuses a registration whose ticket is missing, malformed, signed by an unknown key,
//! expired, or for another namespace, other ports, mode or filter than the registration asks for.
//!
//! Format: `base64url(claims JSON) "." base64url(signature over the first part)`, no padding.
//! Compact enough for a header, readable with `base64 -d` when debugging.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::filter::HttpFilter;
use crate::session::Mode;

/// Version of the claims' shape.
pub const TICKET_VERSION: u8 = 1;

/// What a ticket says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// [`TICKET_VERSION`].
    pub v: u8,
    /// The signing key ([`key_id`] of its public key).
    pub kid: String,
    /// The `StealSession`'s namespace: only pods there accept the ticket.
    pub namespace: String,
    /// The `StealSession`'s name and uid.
    pub session: String,
    pub uid: String,
    /// Who created the session (recorded by admission).
    pub user: String,
    /// The ports, ascending; empty means every captured port.
    pub ports: Vec<u16>,
    pub mode: Mode,
    /// [`filter_hash`] of the session's filter.
    pub filter: String,
    /// Issued at and expiry, Unix seconds.
    pub iat: u64,
    pub exp: u64,
}

/// What a registration asks for, which the ticket must cover exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    pub ports: &'a [u16],
    pub mode: Mode,
    pub filter: &'a str,
}

/// Why a ticket was refused. The messages are what `kubectl steal` shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error(
        "no session ticket: create the session through its StealSession object (kubectl steal does)"
    )]
    Missing,
    #[error("the session ticket is malformed: {0}")]
    Malformed(String),
    #[error(
        "the session ticket is signed by key {kid}, which this pod does not trust (pods trust the keys current when they were created)"
    )]
    UnknownKey { kid: String },
    #[error("the session ticket's signature is not valid")]
    BadSignature,
    #[error("the session ticket expired {ago} s ago")]
    Expired { ago: u64 },
    #[error("the session ticket is for namespace {ticket:?}, this pod is in {pod:?}")]
    WrongNamespace { ticket: String, pod: String },
    #[error("the session ticket is for ports {ticket:?}, the registration asks for {asked:?}")]
    WrongPorts { ticket: Vec<u16>, asked: Vec<u16> },
    #[error("the session ticket is for mode {ticket:?}, the registration asks for {asked:?}")]
    WrongMode { ticket: Mode, asked: Mode },
    #[error("the session ticket is for another filter than the registration's")]
    WrongFilter,
}

impl TicketError {
    /// A short label (metrics).
    pub fn label(&self) -> &'static str {
        match self {
            TicketError::Missing => "missing",
            TicketError::Malformed(_) => "malformed",
            TicketError::UnknownKey { .. } => "unknown_key",
            TicketError::BadSignature => "bad_signature",
            TicketError::Expired { .. } => "expired",
            TicketError::WrongNamespace { .. } => "wrong_namespace",
            TicketError::WrongPorts { .. } => "wrong_ports",
            TicketError::WrongMode { .. } => "wrong_mode",
            TicketError::WrongFilter => "wrong_filter",
        }
    }
}

/// A key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 Ed25519 private key: {0}")]
    Private(ring::error::KeyRejected),
    #[error("public key {0:?}: not base64url of 32 bytes")]
    Public(String),
    #[error("generating a key pair failed")]
    Generate,
}

/// The id of a public key: 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// The hash a ticket binds a session's filter by: SHA-256 of the canonical JSON of the filter
/// and the ports it applies to; empty for a session without a filter.
pub fn filter_hash(filter: Option<&HttpFilter>, filter_ports: Option<&[u16]>) -> String {
    if filter.is_none() && filter_ports.is_none() {
        return String::new();
    }
    let mut ports = filter_ports.map(<[u16]>::to_vec);
    if let Some(p) = ports.as_mut() {
        p.sort_unstable();
        p.dedup();
    }
    let canonical = serde_json::json!({"filter": filter, "ports": ports});
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The controller's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A new key pair, as PKCS#8 (what the controller stores in its Secret).
    pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Generate)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(KeyError::Private)?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(SigningKey { pair, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as the sidecar is given it (base64url, no padding).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// Signs `claims` (their `kid` is set to this key's).
    pub fn sign(&self, mut claims: TicketClaims) -> String {
        claims.kid = self.kid.clone();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
        let sig = self.pair.sign(body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// A public key the sidecar trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    bytes: Vec<u8>,
}

impl VerifyingKey {
    /// From its base64url form ([`SigningKey::public_key`]).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| KeyError::Public(s.to_owned()))?;
        Ok(VerifyingKey {
            kid: key_id(&bytes),
            bytes,
        })
    }

    /// Every key of a comma-separated list (the sidecar's env var).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, KeyError> {
        s.split(',')
            .filter(|k| !k.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Checks `ticket` against `keys` at `now` (Unix seconds) and what the registration asks for.
pub fn verify(
    ticket: Option<&str>,
    keys: &[VerifyingKey],
    now: u64,
    expected: &Expected<'_>,
) -> Result<TicketClaims, TicketError> {
    let ticket = ticket
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(TicketError::Missing)?;
    let (body, sig) = ticket
        .split_once('.')
        .ok_or_else(|| TicketError::Malformed("expected <claims>.<signature>".into()))?;
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| TicketError::Malformed(format!("claims: {e}")))?;
    let claims: TicketClaims =
        serde_json::from_slice(&raw).map_err(|e| TicketError::Malformed(format!("claims: {e}")))?;
    if claims.v != TICKET_VERSION {
        return Err(TicketError::Malformed(format!(
            "version {}, this sidecar understands {TICKET_VERSION}",
            claims.v
        )));
    }
    let key = keys
        .iter()
        .find(|k| k.kid == claims.kid)
        .ok_or_else(|| TicketError::UnknownKey {
            kid: claims.kid.clone(),
        })?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|e| TicketError::Malformed(format!("signature: {e}")))?;
    UnparsedPublicKey::new(&ED25519, &key.bytes)
        .verify(body.as_bytes(), &sig)
        .map_err(|_| TicketError::BadSignature)?;
    if claims.exp <= now {
        return Err(TicketError::Expired {
            ago: now - claims.exp,
        });
    }
    if claims.namespace != expected.namespace {
        return Err(TicketError::WrongNamespace {
            ticket: claims.namespace.clone(),
            pod: expected.namespace.to_owned(),
        });
    }
    let mut asked = expected.ports.to_vec();
    asked.sort_unstable();
    asked.dedup();
    if claims.ports != asked {
        return Err(TicketError::WrongPorts {
            ticket: claims.ports.clone(),
            asked,
        });
    }
    if claims.mode != expected.mode {
        return Err(TicketError::WrongMode {
            ticket: claims.mode,
            asked: expected.mode,
        });
    }
    if claims.filter != expected.filter {
        return Err(TicketError::WrongFilter);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
