//! mirrord config files as `kubectl-steal -f` reads them, against the real sidecar: bad input
//! refused before any session starts, the file's target used when the command line has none,
//! and the feature description's seed example served with mutual TLS and stolen from.

mod common;
mod mirrord_pod;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use mirrord_pod::*;

/// Runs `kubectl-steal -f FILE ARGS` to its end; (exit success, stdout + stderr).
async fn run_to_end(file: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-steal"))
            .arg("-f")
            .arg(file)
            .args(args)
            .env("KUBECONFIG", "/nonexistent")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("kubectl-steal ends")
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_session_starts() {
    let pod = pod().await;
    let api = pod.api.to_string();
    let not_a_cert = pod.certs.dir.join("not-a-cert.pem");
    std::fs::write(&not_a_cert, "hello, I am not a certificate\n").unwrap();
    let cert = pod.certs.cert_pem.display().to_string();
    let filter = r#""http_filter": {"header_filter": "a"}"#;
    let cases = [
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"server_cert": "{}"}}}}"#, not_a_cert.display())),
            format!("{} holds no PEM certificate", not_a_cert.display()),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"server_name": "not a name"}}}}"#)),
            "feature.network.incoming.tls_delivery.server_name \"not a name\": must be a valid DNS name or an IP address".into(),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"trust_roots": []}}}}"#)),
            "feature.network.incoming.tls_delivery.trust_roots: cannot be an empty list".into(),
        ),
        (
            incoming(&format!(r#"{{"mode": "steal", {filter}, "tls_delivery": {{"trust_roots": ["{cert}"], "server_cert": "{cert}"}}}}"#)),
            "feature.network.incoming.tls_delivery.server_cert and feature.network.incoming.tls_delivery.trust_roots cannot be used together".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "http_filter": {"body_filter": {"body": "json", "query": "$.items[", "matches": "x"}}}"#),
            "feature.network.incoming.http_filter.body_filter: invalid JSONPath query \"$.items[\"".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "http_filter": {"any_of": [{"body": "json", "query": "items", "matches": "x"}]}}"#),
            "feature.network.incoming.http_filter.any_of[0]: invalid JSONPath query \"items\"".into(),
        ),
        (
            incoming(r#"{"mode": "steal", "tls_delivery": {}, "https_delivery": {}}"#),
            "both `https_delivery` and `tls_delivery` are set".into(),
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = pod.config(&format!("bad-{i}.json"), text);
        let (ok, out) = run_to_end(&file, &["--connect", &api]).await;
        assert!(!ok, "{text} was accepted:\n{out}");
        assert!(
            out.contains(want.as_str()),
            "{text}\n  printed {out}\n  want {want}"
        );
        assert!(!out.contains("registered"), "{out}");
    }
    assert_eq!(sessions(pod.api).await, 0);

    // The deprecated name is named in a warning.
    let file = pod.config(
        "alias.json",
        &incoming(r#"{"mode": "steal", "https_delivery": {"protocol": "tcp"}}"#),
    );
    let (_, out) = run_to_end(&file, &[]).await;
    assert!(
        out.contains("warning: feature.network.incoming.https_delivery is deprecated; use feature.network.incoming.tls_delivery instead"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_target_is_used_when_the_command_line_has_none() {
    let pod = pod().await;
    let file = pod.config(
        "target.json",
        r#"{"target": {"path": {"deployment": "web", "container": "app"}, "namespace": "shop"}, "feature": {"network": {"incoming": "steal"}}}"#,
    );
    // No cluster here: the run gets as far as loading the kubeconfig for the file's target.
    let (ok, out) = run_to_end(&file, &[]).await;
    assert!(!ok);
    assert!(out.contains("cannot load the kubeconfig"), "{out}");
    assert!(!out.contains("which workload"), "{out}");
    // Nothing anywhere: asked for.
    let file = pod.config("no-target.json", &incoming(r#""steal""#));
    let (_, out) = run_to_end(&file, &[]).await;
    assert!(out.contains("which workload?"), "{out}");
}

/// The feature description's own example resource (`e2e/fixtures/seed-tls-steal-config.yaml`),
/// with only its `/path/to/` prefix pointed at generated PEM files: merged into a plan for a
/// pod of `deploy/example-deploy`, served by the real proxy on port 443 with mutual TLS on both
/// sides, and stolen from by a mirrord config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_serves_and_a_mirrord_config_steals_through_it() {
    use rustls_pki_types::ServerName;
    use tls_steal_crds::{ConfigSource, MirrordTlsStealConfig, PodTarget, build_plan};
    use tls_steal_test_support::pki::write_in;
    use tls_steal_test_support::{Ca, ClientOpts, ServerTls, tls_connect};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| {
        write_in(root, rel, text);
    };
    let (server_ca, client_ca) = (Ca::root("server roots"), Ca::root("client roots"));
    let server = server_ca.issue().dns(&["app.test"]).build();
    let proxy_client = client_ca.issue().dns(&["proxy.test"]).build();
    let user = client_ca.issue().dns(&["user.test"]).build();
    write("server/cert.pem", &server.cert_pem);
    write("server/key.pem", &server.key_pem);
    write("trusted/client/root/cert.pem", &client_ca.pem());
    write("client/cert.pem", &proxy_client.cert_pem);
    write("client/key.pem", &proxy_client.key_pem);
    write("trusted/server/root/cert.pem", &server_ca.pem());

    let seed =
        std::fs::read_to_string(workspace_root().join("e2e/fixtures/seed-tls-steal-config.yaml"))
            .unwrap()
            .replace("/path/to/", &format!("{}/", root.display()));
    let config: MirrordTlsStealConfig = serde_saphyr::from_str(&seed).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "example-deploy-6d4cf56db6-x2x9z", "namespace": "example-deploy-namespace",
            "labels": {"app": "example-deploy", "pod-template-hash": "6d4cf56db6"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "example-deploy-6d4cf56db6", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443}]}]}
    }))
    .unwrap();
    let plan = build_plan(
        &PodTarget::from_pod(&pod),
        "example-deploy-namespace",
        &[ConfigSource::from(&config)],
    );
    assert_eq!(plan.port_numbers(), [443]);

    // The app, on port 443 of a loopback address of its own; it wants a client certificate
    // from the client roots (the proxy's, per agentAsClient.authentication).
    let app_tls = ServerTls::new(vec![server.cert_der.clone()], server.key())
        .alpn(&["h2", "http/1.1"])
        .client_roots(vec![client_ca.der()])
        .require_client_cert()
        .build();
    let n = std::process::id();
    let ip = format!(
        "127.{}.{}.{}",
        10 + n % 200,
        (n / 200) % 250,
        1 + (n / 50_000) % 250
    );
    let listener = tokio::net::TcpListener::bind(format!("{ip}:443"))
        .await
        .expect("binding port 443 on loopback (needs root, as the tests run)");
    let app = App::start_on(listener, "real", Some(app_tls));

    let plan_file = root.join("plan.json");
    std::fs::write(&plan_file, plan.to_json()).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let (listen, admin, api) = (addr(), addr(), addr());
    let _sidecar = spawn_sidecar_routes(&plan_file, &[(listen, app.addr)], admin, api, &[])
        .await
        .unwrap();

    let local = App::start("local", None).await;
    let mirrord = root.join("mirrord.yaml");
    std::fs::write(
        &mirrord,
        "target:\n  path: deployment/example-deploy\n  namespace: example-deploy-namespace\nfeature:\n  network:\n    incoming:\n      mode: steal\n      http_filter:\n        header_filter: '^x-steal: yes$'\n      tls_delivery:\n        protocol: tcp\n",
    )
    .unwrap();
    let (api_s, mirrord_s, to) = (
        api.to_string(),
        mirrord.display().to_string(),
        local.addr.to_string(),
    );
    let mut steal = Steal::spawn(&["--connect", &api_s, "-f", &mirrord_s, "--to", &to], &[]);
    let line = steal.wait_for("registered").await;
    assert!(line.contains("port 443: header"), "{line}");

    // A client with a certificate from the client roots, verifying the app's name and roots.
    let client = ClientOpts::trusting(vec![server_ca.der()], "app.test", &[]).with_cert(&user);
    for (headers, want) in [(STEAL_HDR, "local"), (&[][..], "real")] {
        let tls = tls_connect(listen, &client).await.unwrap();
        let mut s = h1_handshake::<Full<Bytes>, _>(tls).await;
        let mut req = Request::get("/seed").header("host", "app.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let a = collect(
            s.send_request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (a.status, a.headers["x-app"].to_str().unwrap()),
            (StatusCode::OK, want),
            "{}",
            a.body
        );
    }
    // Without a client certificate the proxy refuses the handshake (allowAnonymous: false).
    let anonymous = kubectl_steal::tls::TlsClients::new(&[], None).unwrap().h1;
    let refused = tokio::time::timeout(WAIT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(listen).await?;
        let mut tls = tokio_rustls::TlsConnector::from(anonymous)
            .connect(ServerName::try_from("app.test").unwrap(), tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
            .await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    })
    .await
    .expect("the proxy answers or closes");
    assert!(
        !matches!(refused, Ok(n) if n > 0),
        "an anonymous client got an answer"
    );
}
