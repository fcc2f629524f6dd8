//! Session authorization through the real session API: a proxy that requires tickets refuses
//! forged, expired and mismatched ones (403, field `ticket`, the reason in the message) beside an
//! accepted one whose session steals; a renewed ticket keeps a session past its first expiry,
//! and a session whose ticket is not renewed ends at the expiry, after which requests reach the
//! app again.

mod common;
mod session_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::{Mode, Registration};
use tls_steal_crds::ticket::{SigningKey, TICKET_VERSION, TicketClaims, VerifyingKey, filter_hash};
use tls_steal_sidecar::proxy::Authorization;

use common::{ClientOpts, Conn};
use session_common::{TicketCell, World, default_handler, register_ticketed, served_by};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn header_filter() -> HttpFilter {
    HttpFilter::Header("^x-user: alice$".into())
}

/// The claims of a ticket for `world`'s port, a header filter, steal mode, namespace `shop`.
fn claims(world: &World, lifetime: u64) -> TicketClaims {
    let iat = now();
    TicketClaims {
        v: TICKET_VERSION,
        kid: String::new(),
        namespace: "shop".into(),
        session: "alice-web".into(),
        uid: "uid-1".into(),
        user: "alice".into(),
        ports: vec![world.port],
        mode: Mode::Steal,
        filter: filter_hash(Some(&header_filter()), None),
        iat,
        exp: iat + lifetime,
    }
}

fn registration(world: &World) -> Vec<u8> {
    serde_json::to_vec(&Registration {
        ports: vec![world.port],
        filter: Some(header_filter()),
        filter_ports: None,
        mode: Mode::Steal,
        client: "alice@laptop".into(),
    })
    .unwrap()
}

fn cell(ticket: Option<String>) -> TicketCell {
    Arc::new(Mutex::new(ticket))
}

async fn world(signer: &SigningKey) -> World {
    World::start_authorized(Authorization::Required {
        keys: vec![VerifyingKey::parse(&signer.public_key()).unwrap()],
        namespace: "shop".into(),
    })
    .await
}

/// Who answers `GET /who` with `headers`: a session (its `x-served-by`) or the app.
async fn served_with(world: &World, headers: &[(&str, &str)]) -> String {
    let mut c = Conn::open(world.addr(), &ClientOpts::new(&world.pki, &["http/1.1"]))
        .await
        .unwrap();
    let mut b = c.request("GET", "/who");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = c.send(b.body(common::empty()).unwrap()).await.unwrap();
    served_by(&resp)
}

/// Who answers a request of alice's.
async fn served(world: &World) -> String {
    served_with(world, &[("x-user", "alice")]).await
}

#[tokio::test]
async fn forged_expired_and_mismatched_tickets_are_refused_beside_an_accepted_one() {
    let signer = key();
    let stranger = key();
    let w = world(&signer).await;
    let good = signer.sign(claims(&w, 300));

    // A ticket with its claims edited (another user) and the original signature.
    let (_, sig) = good.split_once('.').unwrap();
    let mut edited = claims(&w, 300);
    edited.kid = signer.kid().to_owned();
    edited.user = "mallory".into();
    let forged = format!(
        "{}.{sig}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&edited).unwrap())
    );
    let with = |f: fn(&mut TicketClaims)| {
        let mut c = claims(&w, 300);
        f(&mut c);
        signer.sign(c)
    };
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "no session ticket"),
        ("malformed", Some("not-a-ticket".into()), "malformed"),
        ("forged", Some(forged), "signature is not valid"),
        (
            "unknown key",
            Some(stranger.sign(claims(&w, 300))),
            "does not trust",
        ),
        (
            "expired",
            Some(with(|c| {
                c.iat -= 600;
                c.exp = c.iat + 60;
            })),
            "expired",
        ),
        (
            "other namespace",
            Some(with(|c| c.namespace = "other".into())),
            "namespace \"other\"",
        ),
        (
            "other ports",
            Some(with(|c| c.ports = vec![1])),
            "ports [1]",
        ),
        (
            "other mode",
            Some(with(|c| c.mode = Mode::Mirror)),
            "mode Mirror",
        ),
        (
            "other filter",
            Some(with(|c| c.filter = filter_hash(None, None))),
            "another filter",
        ),
    ];
    for (what, ticket, says) in refused {
        let r = register_ticketed(w.api, registration(&w), cell(ticket), default_handler("x"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: the registration was accepted"));
        assert_eq!(r.status, 403, "{what}: {:?}", r.error);
        assert_eq!(r.error.field.as_deref(), Some("ticket"), "{what}");
        assert!(r.error.error.contains(says), "{what}: {}", r.error.error);
    }
    assert_eq!(served(&w).await, "app", "no refused session steals");

    let s = register_ticketed(
        w.api,
        registration(&w),
        cell(Some(good)),
        default_handler("alice"),
    )
    .await
    .expect("a valid ticket is accepted");
    assert_eq!(served(&w).await, "alice");
    let status = w.status().await;
    assert_eq!(status.sessions.len(), 1);
    let metrics = w.metrics().await;
    for reason in [
        "missing",
        "malformed",
        "bad_signature",
        "unknown_key",
        "expired",
    ] {
        let line = format!("tls_steal_session_tickets_refused_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    drop(s);
}

#[tokio::test]
async fn a_renewed_ticket_keeps_the_session_and_an_expired_one_ends_it() {
    let signer = key();
    let w = world(&signer).await;
    // Both tickets live 4 s; the sidecar asks for a new one from half their life on.
    let renewed_cell = cell(Some(signer.sign(claims(&w, 4))));
    let kept = register_ticketed(
        w.api,
        registration(&w),
        renewed_cell.clone(),
        default_handler("kept"),
    )
    .await
    .unwrap();
    *renewed_cell.lock().unwrap() = Some(signer.sign(claims(&w, 300)));

    let mut other = claims(&w, 4);
    other.uid = "uid-2".into();
    other.filter = filter_hash(None, None);
    let lapsing_reg = serde_json::to_vec(&Registration {
        ports: vec![w.port],
        filter: None,
        filter_ports: None,
        mode: Mode::Steal,
        client: "bob".into(),
    })
    .unwrap();
    let lapsing_cell = cell(Some(signer.sign(other)));
    let lapsing = register_ticketed(
        w.api,
        lapsing_reg,
        lapsing_cell.clone(),
        default_handler("lapsing"),
    )
    .await
    .unwrap();
    // No renewal for the second session: its client stopped answering tickets.
    *lapsing_cell.lock().unwrap() = None;
    w.wait_sessions(2).await;

    // Past both first expiries: the renewed session is still there, the other is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sessions = w.status().await.sessions;
        if sessions.len() == 1 {
            assert_eq!(sessions[0].client, "alice@laptop");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session with an expired ticket did not end: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.status().await.sessions.len(), 1, "the renewed one stays");
    assert_eq!(served(&w).await, "kept");
    // A request without alice's header: nobody's filter takes it now that bob's session ended.
    assert_eq!(served_with(&w, &[]).await, "app");
    drop((kept, lapsing));
}
