//! `kubectl-steal --connect --ticket` against the real sidecar binary running with session
//! authorization required (`--session-authorization required`, a key the test made): a ticket
//! the test signs for exactly the session's port, mode and filter is accepted and the session
//! steals; no ticket, or a ticket for another filter, ends `kubectl-steal` with the sidecar's
//! reason.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::Mode;
use tls_steal_crds::ticket::{SigningKey, TICKET_VERSION, TicketClaims, filter_hash};

fn ticket(key: &SigningKey, port: u16, filter: &HttpFilter) -> String {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    key.sign(TicketClaims {
        v: TICKET_VERSION,
        kid: String::new(),
        namespace: "shop".into(),
        session: "alice-web".into(),
        uid: "uid-1".into(),
        user: "alice".into(),
        ports: vec![port],
        mode: Mode::Steal,
        filter: filter_hash(Some(filter), None),
        iat,
        exp: iat + 600,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_ticket_lets_kubectl_steal_in_and_a_wrong_one_is_refused_with_the_reason() {
    let certs = certs();
    let real = App::start("real", Some(certs.server.clone())).await;
    let local = App::start("local", Some(certs.server.clone())).await;
    let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
    let public = key.public_key();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, plan_json(real.addr.port(), &certs)).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, admin, api) = (addr(), addr(), addr());
    let _sidecar = spawn_sidecar_routes(
        &plan,
        &[(listen, real.addr)],
        admin,
        api,
        &[
            "--session-authorization",
            "required",
            "--session-keys",
            &public,
            "--pod-namespace",
            "shop",
        ],
    )
    .await
    .expect("the sidecar starts");

    let port = real.addr.port().to_string();
    let to = local.addr.to_string();
    let api = api.to_string();
    let args = |t: Option<&str>| {
        let mut a = vec![
            "--connect",
            &api,
            "--port",
            &port,
            "--header",
            "^x-steal: yes$",
            "--to",
            &to,
            "--delivery",
            "tls",
        ];
        if let Some(t) = t {
            a.extend(["--ticket", t]);
        }
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    let (ok, _, stderr) = run_to_exit(&args(None), "/nonexistent").await;
    assert!(!ok);
    assert!(stderr.contains("ticket: no session ticket"), "{stderr}");
    let other = ticket(
        &key,
        real.addr.port(),
        &HttpFilter::Header("^x-other$".into()),
    );
    let (ok, _, stderr) = run_to_exit(&args(Some(&other)), "/nonexistent").await;
    assert!(!ok);
    assert!(stderr.contains("another filter"), "{stderr}");

    let good = ticket(
        &key,
        real.addr.port(),
        &HttpFilter::Header("^x-steal: yes$".into()),
    );
    let args = args(Some(&good));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steal = Steal::spawn(&args, &[]);
    steal.wait_for("registered").await;
    let a = h1(listen, "/hello", &[STEAL]).await;
    assert_eq!(a.body, "local GET /hello");
    let a = h1(listen, "/hello", &[]).await;
    assert_eq!(a.body, "real GET /hello");
}
