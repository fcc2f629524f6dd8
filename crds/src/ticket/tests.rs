use super::*;

fn claims(exp: u64) -> TicketClaims {
    TicketClaims {
        v: TICKET_VERSION,
        kid: String::new(),
        namespace: "shop".into(),
        session: "alice-1".into(),
        uid: "u-1".into(),
        user: "alice".into(),
        ports: vec![443],
        mode: Mode::Steal,
        filter: filter_hash(Some(&HttpFilter::Header("x-debug: me".into())), None),
        iat: 1_000,
        exp,
    }
}

fn expected(filter: &str) -> Expected<'_> {
    Expected {
        namespace: "shop",
        ports: &[443],
        mode: Mode::Steal,
        filter,
    }
}

fn key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

#[test]
fn a_signed_ticket_verifies_and_every_refusal_is_named() {
    let k = key();
    let keys = [VerifyingKey::parse(&k.public_key()).unwrap()];
    let c = claims(2_000);
    let f = c.filter.clone();
    let t = k.sign(c.clone());
    let ok = verify(Some(&t), &keys, 1_500, &expected(&f)).unwrap();
    assert_eq!(ok.kid, k.kid());
    assert_eq!(ok.user, "alice");

    let err = |t: Option<&str>, now, e: Expected<'_>| verify(t, &keys, now, &e).unwrap_err();
    assert_eq!(err(None, 1_500, expected(&f)), TicketError::Missing);
    assert_eq!(err(Some(" "), 1_500, expected(&f)), TicketError::Missing);
    assert!(matches!(
        err(Some("abc"), 1_500, expected(&f)),
        TicketError::Malformed(_)
    ));
    assert!(matches!(
        err(Some("!!.!!"), 1_500, expected(&f)),
        TicketError::Malformed(_)
    ));
    assert_eq!(
        err(Some(&t), 2_010, expected(&f)),
        TicketError::Expired { ago: 10 }
    );
    let mut other_ns = expected(&f);
    other_ns.namespace = "other";
    assert!(matches!(
        err(Some(&t), 1_500, other_ns),
        TicketError::WrongNamespace { .. }
    ));
    let mut other_ports = expected(&f);
    other_ports.ports = &[443, 8443];
    assert!(matches!(
        err(Some(&t), 1_500, other_ports),
        TicketError::WrongPorts { .. }
    ));
    let mut mirror = expected(&f);
    mirror.mode = Mode::Mirror;
    assert!(matches!(
        err(Some(&t), 1_500, mirror),
        TicketError::WrongMode { .. }
    ));
    assert_eq!(err(Some(&t), 1_500, expected("")), TicketError::WrongFilter);

    // Forged: claims changed after signing (another user, a longer life).
    let (body, sig) = t.split_once('.').unwrap();
    let mut forged: TicketClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    forged.exp = 9_999_999;
    let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    assert_eq!(
        err(Some(&format!("{forged_body}.{sig}")), 1_500, expected(&f)),
        TicketError::BadSignature
    );
    // Signed by a key the pod does not trust.
    let stranger = key().sign(claims(2_000));
    assert!(matches!(
        err(Some(&stranger), 1_500, expected(&f)),
        TicketError::UnknownKey { .. }
    ));
    for e in [
        TicketError::Missing,
        TicketError::BadSignature,
        TicketError::WrongFilter,
    ] {
        assert!(!e.label().is_empty() && !e.to_string().is_empty());
    }
}

/// During a rotation the pod trusts the old and the new key: tickets of both verify.
#[test]
fn rotation_overlaps() {
    let (old, new) = (key(), key());
    let list = format!("{},{}", old.public_key(), new.public_key());
    let keys = VerifyingKey::parse_list(&list).unwrap();
    assert_eq!(keys.len(), 2);
    let c = claims(2_000);
    let f = c.filter.clone();
    for k in [&old, &new] {
        verify(Some(&k.sign(c.clone())), &keys, 1_500, &expected(&f)).unwrap();
    }
    let only_new = VerifyingKey::parse_list(&new.public_key()).unwrap();
    assert!(matches!(
        verify(Some(&old.sign(c)), &only_new, 1_500, &expected(&f)),
        Err(TicketError::UnknownKey { .. })
    ));
    assert!(VerifyingKey::parse("not-a-key").is_err());
    assert!(SigningKey::from_pkcs8(b"junk").is_err());
}

#[test]
fn filter_hash_is_stable_and_binds_the_filter_ports() {
    let f = HttpFilter::Path("^/api".into());
    assert_eq!(filter_hash(None, None), "");
    let a = filter_hash(Some(&f), None);
    assert_eq!(a, filter_hash(Some(&f), None));
    assert_ne!(a, filter_hash(Some(&f), Some(&[443])));
    assert_eq!(
        filter_hash(Some(&f), Some(&[8443, 443])),
        filter_hash(Some(&f), Some(&[443, 8443, 443]))
    );
    assert_ne!(a, filter_hash(Some(&HttpFilter::Path("^/ap".into())), None));
}
