//! Flags of session authorization (chart `sessions.*`). `serve` applies the admission policy and
//! reads the published public keys ([`SessionArgs`]); the `controller` command signs the tickets
//! ([`SignerArgs`]). Whether proxies require tickets is `--session-authorization` (with the other
//! injection settings).

use std::time::Duration;

use crate::admission::sessions::SessionPolicy;

use super::SignerSettings;

/// The ConfigMap (in the chart's namespace) where the signer publishes its public keys.
pub const PUBLIC_KEYS_CONFIGMAP: &str = "tls-steal-session-public-keys";
/// Default of `sessions.maxDuration`: 8 hours.
const MAX_DURATION: u32 = 8 * 3600;

/// `serve` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SessionArgs {
    /// Refuse sessions without a filter on every one of their ports.
    #[arg(long, env = "TLS_STEAL_SESSIONS_REQUIRE_FILTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub session_require_filter: bool,
    /// Allow mirror sessions.
    #[arg(long, env = "TLS_STEAL_SESSIONS_ALLOW_MIRROR", default_value_t = true, action = clap::ArgAction::Set)]
    pub session_allow_mirror: bool,
    /// The longest a session may last, seconds (and the duration of one that names none).
    #[arg(long, env = "TLS_STEAL_SESSIONS_MAX_DURATION", default_value_t = MAX_DURATION)]
    pub session_max_duration: u32,
    /// The ConfigMap (in `--namespace`) the controller publishes the signer's public keys in;
    /// with `--session-authorization=required` the webhook waits for it before serving.
    #[arg(long, default_value = PUBLIC_KEYS_CONFIGMAP)]
    pub session_public_keys: String,
}

impl SessionArgs {
    /// The admission policy; `tickets_required`: whether proxies are told to require tickets.
    pub fn policy(&self, tickets_required: bool) -> SessionPolicy {
        SessionPolicy {
            require_filter: self.session_require_filter,
            allow_mirror: self.session_allow_mirror,
            max_duration_seconds: self.session_max_duration.max(1),
            tickets_required,
        }
    }
}

/// `controller` flags: the ticket signer.
#[derive(clap::Args, Clone, Debug)]
pub struct SignerArgs {
    /// Sign session tickets (chart: `sessions.authorization: required`): keep the signing key
    /// Secret, publish its public half, and sign and renew every admitted StealSession's ticket.
    #[arg(long, env = "TLS_STEAL_SIGN_SESSIONS", default_value_t = false, action = clap::ArgAction::Set)]
    pub sign_sessions: bool,
    /// The longest a session may last, seconds (the duration of one that names none).
    #[arg(long, env = "TLS_STEAL_SESSIONS_MAX_DURATION", default_value_t = MAX_DURATION)]
    pub session_max_duration: u32,
    /// How long a session ticket lasts, seconds (renewed from half its life on).
    #[arg(long, default_value_t = 120)]
    pub session_ticket_ttl: u64,
    /// A session whose client sent no heartbeat for this long is deleted, seconds.
    #[arg(long, default_value_t = 90)]
    pub session_heartbeat_grace: u64,
    /// The Secret (in the controller's namespace) holding the ticket signing key; created when
    /// missing.
    #[arg(long, default_value = "tls-steal-session-keys")]
    pub session_key_secret: String,
    /// The ConfigMap (in the controller's namespace) its public keys are published in.
    #[arg(long, default_value = PUBLIC_KEYS_CONFIGMAP)]
    pub session_public_keys: String,
}

impl SignerArgs {
    pub fn settings(&self) -> SignerSettings {
        SignerSettings {
            ticket_ttl: Duration::from_secs(self.session_ticket_ttl.max(2)),
            heartbeat_grace: Duration::from_secs(self.session_heartbeat_grace.max(1)),
            max_duration: Duration::from_secs(u64::from(self.session_max_duration.max(1))),
        }
    }
}
