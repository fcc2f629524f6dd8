//! Client verification by the proxy (`agentAsServer.verification`) and verification of / by the
//! application (`agentAsClient`), each case with real handshakes.
//!
//! Over 400 lines: one test per verification setting, each with its own certificates.

mod common;

use common::*;
use tls_steal_crds::types::TlsAuthentication;

struct Case {
    anonymous: bool,
    trusted: bool,
    foreign: bool,
}

/// Starts app + proxy with `verification` and checks which clients get through.
async fn check(verification: Option<tls_steal_crds::types::ServerVerification>, expect: Case) {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    plan.agent_as_server.verification = verification;
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let addr = proxy.listen[0];
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let base = ClientOpts::new(&pki, alpn);
        let anon = get_seen(addr, &base, "/anon").await;
        assert_eq!(
            anon.is_ok(),
            expect.anonymous,
            "anonymous client ({alpn:?}): {anon:?}"
        );
        let trusted = get_seen(addr, &base.clone().with_cert(&pki.client_leaf), "/trusted").await;
        assert_eq!(
            trusted.is_ok(),
            expect.trusted,
            "client with a trusted cert ({alpn:?}): {trusted:?}"
        );
        let foreign = get_seen(addr, &base.clone().with_cert(&pki.foreign_leaf), "/foreign").await;
        assert_eq!(
            foreign.is_ok(),
            expect.foreign,
            "client with a foreign cert ({alpn:?}): {foreign:?}"
        );
    }
    let (status, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("relayed untouched"),
        "TLS is terminated: {body}"
    );
}

#[tokio::test]
async fn no_verification_offers_no_client_auth() {
    check(
        None,
        Case {
            anonymous: true,
            trusted: true,
            foreign: true,
        },
    )
    .await;
}

#[tokio::test]
async fn known_root_admits_its_clients_only() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    plan.agent_as_server.verification =
        server_verification(false, false, vec![pki.path("client-root.crt")]);
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let base = ClientOpts::new(&pki, &["h2"]);
    assert!(
        get_seen(
            proxy.listen[0],
            &base.clone().with_cert(&pki.client_leaf),
            "/"
        )
        .await
        .is_ok()
    );
    assert!(
        get_seen(
            proxy.listen[0],
            &base.clone().with_cert(&pki.foreign_leaf),
            "/"
        )
        .await
        .is_err()
    );
    assert!(
        get_seen(proxy.listen[0], &base, "/").await.is_err(),
        "anonymous refused"
    );
    let metrics = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    let failures: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tls_steal_tls_handshake_failures_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(failures >= 2, "{metrics}");
}

/// Like [`check`], with the roots named as files of the test's own Pki.
async fn check_roots(
    allow_anonymous: bool,
    accept_any_cert: bool,
    root: Option<&str>,
    expect: Case,
) {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    plan.agent_as_server.verification = server_verification(
        allow_anonymous,
        accept_any_cert,
        root.map(|r| vec![pki.path(r)]).unwrap_or_default(),
    );
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let addr = proxy.listen[0];
    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let base = ClientOpts::new(&pki, alpn);
        let anon = get_seen(addr, &base, "/anon").await;
        assert_eq!(
            anon.is_ok(),
            expect.anonymous,
            "anonymous client ({alpn:?}): {anon:?}"
        );
        let trusted = get_seen(addr, &base.clone().with_cert(&pki.client_leaf), "/trusted").await;
        assert_eq!(
            trusted.is_ok(),
            expect.trusted,
            "client with a trusted cert ({alpn:?}): {trusted:?}"
        );
        let foreign = get_seen(addr, &base.clone().with_cert(&pki.foreign_leaf), "/foreign").await;
        assert_eq!(
            foreign.is_ok(),
            expect.foreign,
            "client with a foreign cert ({alpn:?}): {foreign:?}"
        );
    }
    let (status, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("relayed untouched"),
        "TLS is terminated: {body}"
    );
}

#[tokio::test]
async fn unknown_root_refuses_our_clients() {
    check_roots(
        false,
        false,
        Some("foreign-root.crt"),
        Case {
            anonymous: false,
            trusted: false,
            foreign: true,
        },
    )
    .await;
}

#[tokio::test]
async fn anonymous_allowed_with_roots() {
    check_roots(
        true,
        false,
        Some("client-root.crt"),
        Case {
            anonymous: true,
            trusted: true,
            foreign: false,
        },
    )
    .await;
}

#[tokio::test]
async fn anonymous_refused_with_roots() {
    check_roots(
        false,
        false,
        Some("client-root.crt"),
        Case {
            anonymous: false,
            trusted: true,
            foreign: false,
        },
    )
    .await;
}

#[tokio::test]
async fn accept_any_cert_admits_any_presented_cert_but_not_anonymous() {
    check_roots(
        false,
        true,
        None,
        Case {
            anonymous: false,
            trusted: true,
            foreign: true,
        },
    )
    .await;
}

#[tokio::test]
async fn accept_any_cert_with_anonymous() {
    check_roots(
        true,
        true,
        None,
        Case {
            anonymous: true,
            trusted: true,
            foreign: true,
        },
    )
    .await;
}

#[tokio::test]
async fn empty_roots_with_anonymous_admits_only_anonymous() {
    check_roots(
        true,
        false,
        None,
        Case {
            anonymous: true,
            trusted: false,
            foreign: false,
        },
    )
    .await;
}

#[tokio::test]
async fn empty_roots_without_flags_is_a_reported_config_error() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    plan.agent_as_server.verification = server_verification(false, false, vec![]);
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let (status, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert_eq!(status, 200, "passthrough keeps the pod ready: {body}");
    assert!(
        body.contains("agentAsServer.verification") && body.contains("passthrough"),
        "{body}"
    );
    // Never a silent accept by the proxy: the port is relayed, the app's own TLS answers.
    let seen = get_seen(
        proxy.listen[0],
        &ClientOpts::new(&pki, &["http/1.1"]),
        "/direct",
    )
    .await
    .unwrap();
    assert_eq!(seen.uri, "/direct");
}

// ---- toward the application ----

async fn upstream(
    edit: impl FnOnce(&Pki, &mut tls_steal_crds::plan::PortPlan),
) -> (Result<Seen, Err>, Pki) {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    edit(&pki, &mut plan);
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let r = get_seen(
        proxy.listen[0],
        &ClientOpts::new(&pki, &["http/1.1"]),
        "/up",
    )
    .await;
    (r, pki)
}

#[tokio::test]
async fn upstream_trusted_root() {
    let (r, _) = upstream(|_, _| {}).await;
    let seen = r.unwrap();
    assert!(
        !seen.client_cert,
        "anonymous toward the app when agentAsClient.authentication is absent"
    );
}

#[tokio::test]
async fn upstream_untrusted_root_is_a_502() {
    let (r, _) = upstream(|pki, p| {
        p.agent_as_client.verification.trust_roots = vec![pki.path("foreign-root.crt")]
    })
    .await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("502"), "{e}");
}

#[tokio::test]
async fn upstream_accept_any_cert() {
    let (r, _) = upstream(|pki, p| {
        p.agent_as_client.verification.trust_roots = vec![pki.path("foreign-root.crt")];
        p.agent_as_client.verification.accept_any_cert = true;
    })
    .await;
    r.unwrap();
}

#[tokio::test]
async fn upstream_client_cert_is_presented_to_the_app() {
    let (r, _) = upstream(|pki, p| {
        p.agent_as_client.authentication = Some(TlsAuthentication {
            cert_pem: pki.path("client.crt"),
            key_pem: pki.path("client.key"),
        });
    })
    .await;
    assert!(r.unwrap().client_cert);
}

#[tokio::test]
async fn trust_roots_may_be_a_directory() {
    let (r, _) = upstream(|pki, p| {
        pki.write("roots/a.pem", &pki.foreign_root.pem());
        pki.write("roots/b.pem", &pki.server_root.pem());
        pki.write("roots/readme.txt", "not a certificate");
        p.agent_as_client.verification.trust_roots = vec![pki.path("roots")];
    })
    .await;
    r.unwrap();
}

/// A certificate PEM block whose DER is not a certificate.
const GARBAGE_DER: &str = "-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n";
/// A PEM block that is not even base64.
const BROKEN_PEM: &str = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";

#[tokio::test]
async fn unusable_files_in_a_roots_directory_are_skipped() {
    let (r, _) = upstream(|pki, p| {
        pki.write("roots/a-broken.pem", BROKEN_PEM);
        pki.write("roots/b-garbage.pem", GARBAGE_DER);
        pki.write("roots/c.pem", &pki.server_root.pem());
        p.agent_as_client.verification.trust_roots = vec![pki.path("roots")];
    })
    .await;
    r.unwrap();
}

#[tokio::test]
async fn a_roots_directory_without_a_usable_root_fails_the_port_naming_each_file() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    pki.write("roots/a-broken.pem", BROKEN_PEM);
    pki.write("roots/b-garbage.pem", GARBAGE_DER);
    plan.agent_as_client.verification.trust_roots = vec![pki.path("roots")];
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let (_, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    for want in [
        "passthrough",
        "no usable certificate found in agentAsClient.verification.trustRoots",
        "a-broken.pem",
        "b-garbage.pem",
    ] {
        assert!(body.contains(want), "{want:?} missing in {body}");
    }
}

#[tokio::test]
async fn a_named_root_file_that_is_unusable_still_fails_the_port() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut plan = port_plan(&pki, app.addr.port());
    let bad = pki.write("garbage-root.pem", GARBAGE_DER);
    plan.agent_as_client.verification.trust_roots = vec![bad.display().to_string()];
    let proxy = start_proxy(test_config(plan, app.addr)).await;
    let (_, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
    assert!(
        body.contains("passthrough")
            && body.contains("garbage-root.pem")
            && body.contains("unusable trust root"),
        "{body}"
    );
}

#[tokio::test]
async fn pem_files_over_1_mib_are_refused_naming_the_file() {
    for which in ["cert", "key", "root"] {
        let pki = Pki::new();
        let app = App::start(&pki).await;
        let mut plan = port_plan(&pki, app.addr.port());
        // A real PEM followed by padding comments (ignored by PEM parsers) past 1 MiB.
        let pad = format!("# padding\n{}\n", "x".repeat(1024 * 1024));
        let (file, path) = match which {
            "cert" => {
                let p = pki.write("big-cert.pem", &(pki.server_leaf.full_chain_pem() + &pad));
                plan.agent_as_server.authentication.cert_pem = p.display().to_string();
                ("big-cert.pem", p)
            }
            "key" => {
                let key =
                    std::fs::read_to_string(&plan.agent_as_server.authentication.key_pem).unwrap();
                let p = pki.write("big-key.pem", &(key + &pad));
                plan.agent_as_server.authentication.key_pem = p.display().to_string();
                ("big-key.pem", p)
            }
            _ => {
                let p = pki.write("big-root.pem", &(pki.server_root.pem() + &pad));
                plan.agent_as_client.verification.trust_roots = vec![p.display().to_string()];
                ("big-root.pem", p)
            }
        };
        assert!(std::fs::metadata(&path).unwrap().len() > 1024 * 1024);
        let proxy = start_proxy(test_config(plan, app.addr)).await;
        let (_, body) = admin_get(proxy.admin.unwrap(), "/readyz").await;
        assert!(
            body.contains("passthrough")
                && body.contains(file)
                && body.contains("PEM files over 1 MiB (1048576 bytes) are refused"),
            "{which}: {body}"
        );
        // The port is relayed untouched: the app's own TLS answers.
        let seen = get_seen(
            proxy.listen[0],
            &ClientOpts::new(&pki, &["http/1.1"]),
            "/direct",
        )
        .await
        .unwrap();
        assert_eq!(seen.uri, "/direct");
    }
}
