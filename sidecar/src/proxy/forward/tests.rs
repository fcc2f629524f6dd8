use super::*;

#[test]
fn alpn_offer_and_host() {
    assert_eq!(
        offered_alpn(Some(b"h2"), false),
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(offered_alpn(Some(b"h2"), true), vec![b"http/1.1".to_vec()]);
    assert_eq!(offered_alpn(None, false), Vec::<Vec<u8>>::new());
    let host = |a: &str| Authority::try_from(a).unwrap().host().to_owned();
    let ip = "10.0.0.1".parse().unwrap();
    assert_eq!(
        server_name(None, Some(&host("a.test:8443")), ip),
        ServerName::try_from("a.test").unwrap()
    );
    assert_eq!(
        server_name(None, Some(&host("[::1]:443")), ip),
        ServerName::try_from("::1").unwrap()
    );
    assert_eq!(
        server_name(Some("sni.test"), Some(&host("a.test")), ip),
        ServerName::try_from("sni.test").unwrap()
    );
}
