//! Who may register a session: the signed ticket of its `StealSession` object
//! ([`tls_steal_crds::ticket`]), checked offline against the keys the webhook injected, and its
//! renewal while the session lives.
//!
//! The ticket must cover the registration exactly as sent: the pod's namespace, the `ports` list
//! (empty means every captured port, in the ticket too), the mode and the filter's hash. A
//! renewed ticket must be for the same `StealSession` (its uid) and the same scope.

use std::time::{SystemTime, UNIX_EPOCH};

use tls_steal_crds::session::{Mode, Registration};
use tls_steal_crds::ticket::{self, Expected, TicketError};

pub use crate::proxy::Authorization;

/// What a registration asks for, as sent (before "no ports" becomes every captured port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub ports: Vec<u16>,
    pub mode: Mode,
    pub filter: String,
}

impl Scope {
    pub fn of(reg: &Registration) -> Self {
        let mut ports = reg.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Scope {
            ports,
            mode: reg.mode,
            filter: ticket::filter_hash(reg.filter.as_ref(), reg.filter_ports.as_deref()),
        }
    }
}

/// What an accepted ticket grants a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The `StealSession` (`namespace/name`) and its uid.
    pub session: String,
    pub uid: String,
    /// Who created it (recorded by admission).
    pub user: String,
    /// Expiry and lifetime of the ticket, seconds.
    pub exp: u64,
    pub lifetime: u64,
    pub scope: Scope,
}

/// A renewed ticket was refused.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error("the renewed ticket is for another StealSession (uid {got}, the session's is {want})")]
    OtherSession { got: String, want: String },
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authorization {
    /// Checks a registration's ticket. `Ok(None)`: authorization is disabled.
    pub fn check(
        &self,
        ticket: Option<&str>,
        scope: &Scope,
        now: u64,
    ) -> Result<Option<Grant>, TicketError> {
        let Authorization::Required { keys, namespace } = self else {
            return Ok(None);
        };
        let claims = ticket::verify(
            ticket,
            keys,
            now,
            &Expected {
                namespace,
                ports: &scope.ports,
                mode: scope.mode,
                filter: &scope.filter,
            },
        )?;
        Ok(Some(Grant {
            session: format!("{}/{}", claims.namespace, claims.session),
            uid: claims.uid,
            user: claims.user,
            exp: claims.exp,
            lifetime: claims.exp.saturating_sub(claims.iat).max(1),
            scope: scope.clone(),
        }))
    }

    /// Checks a renewed ticket for the session holding `grant`; the new grant on success.
    pub fn renew(&self, ticket: &str, grant: &Grant, now: u64) -> Result<Grant, RenewError> {
        let renewed = self
            .check(Some(ticket), &grant.scope, now)?
            .ok_or(TicketError::Missing)?;
        if renewed.uid != grant.uid {
            return Err(RenewError::OtherSession {
                got: renewed.uid,
                want: grant.uid.clone(),
            });
        }
        Ok(renewed)
    }
}

#[cfg(test)]
mod tests {
    use tls_steal_crds::ticket::{SigningKey, TICKET_VERSION, TicketClaims, VerifyingKey};

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn claims(uid: &str, ports: Vec<u16>, iat: u64, exp: u64) -> TicketClaims {
        TicketClaims {
            v: TICKET_VERSION,
            kid: String::new(),
            namespace: "shop".into(),
            session: "alice-1".into(),
            uid: uid.into(),
            user: "alice".into(),
            ports,
            mode: Mode::Steal,
            filter: String::new(),
            iat,
            exp,
        }
    }

    fn required(k: &SigningKey) -> Authorization {
        Authorization::Required {
            keys: vec![VerifyingKey::parse(&k.public_key()).unwrap()],
            namespace: "shop".into(),
        }
    }

    fn scope(ports: Vec<u16>) -> Scope {
        Scope::of(&Registration {
            ports,
            filter: None,
            filter_ports: None,
            mode: Mode::Steal,
            client: String::new(),
        })
    }

    #[test]
    fn disabled_grants_nothing_and_refuses_nothing() {
        assert_eq!(
            Authorization::Disabled.check(None, &scope(vec![]), 10),
            Ok(None)
        );
    }

    #[test]
    fn ports_are_compared_as_sent_and_the_grant_carries_the_session() {
        let k = key();
        let auth = required(&k);
        let t = k.sign(claims("u1", vec![443, 8443], 100, 220));
        let g = auth
            .check(Some(&t), &scope(vec![8443, 443, 443]), 150)
            .unwrap()
            .unwrap();
        assert_eq!(
            (g.session.as_str(), g.user.as_str(), g.exp, g.lifetime),
            ("shop/alice-1", "alice", 220, 120)
        );
        // "every captured port" is its own scope: a ticket for two ports does not cover it.
        assert!(matches!(
            auth.check(Some(&t), &scope(vec![]), 150),
            Err(TicketError::WrongPorts { .. })
        ));
        assert_eq!(
            auth.check(None, &scope(vec![443]), 150),
            Err(TicketError::Missing)
        );
    }

    #[test]
    fn renewal_needs_the_same_session() {
        let k = key();
        let auth = required(&k);
        let first = auth
            .check(
                Some(&k.sign(claims("u1", vec![443], 100, 200))),
                &scope(vec![443]),
                150,
            )
            .unwrap()
            .unwrap();
        let renewed = auth
            .renew(&k.sign(claims("u1", vec![443], 180, 300)), &first, 190)
            .unwrap();
        assert_eq!(renewed.exp, 300);
        let other = auth.renew(&k.sign(claims("u2", vec![443], 180, 300)), &first, 190);
        assert!(matches!(other, Err(RenewError::OtherSession { .. })));
        let stale = auth.renew(&k.sign(claims("u1", vec![443], 100, 180)), &first, 190);
        assert!(matches!(
            stale,
            Err(RenewError::Ticket(TicketError::Expired { .. }))
        ));
    }
}
