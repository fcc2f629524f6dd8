//! A client speaking TLS the proxy cannot (TLS 1.0 with CBC suites) to an app that still
//! accepts it: real OpenSSL on both ends (Debian's `openssl` and `curl`). Without tls-steal the
//! app serves that client; with it, the proxy relays the connection to the app untouched.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::process::{Child, Command};

/// Debian's OpenSSL allows TLS 1.0 only at security level 0.
const LEGACY: &str = "DEFAULT@SECLEVEL=0";

/// `openssl s_server` serving TLS 1.0 only, with its status page (`-www`), on a free port.
async fn legacy_app(pki: &Pki) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-tls1", "-cipher", LEGACY, "-www", "-quiet"])
        .args([
            "-cert",
            &pki.path("server.crt"),
            "-key",
            &pki.path("server.key"),
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is required (apt-get install openssl)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("openssl s_server did not listen on {port}");
}

/// `curl` limited to TLS 1.0 against `port`, verifying the app's certificate: (succeeded,
/// body, stderr). `s_server` sends its leaf alone, so the intermediate comes with the root.
async fn curl_tls10(port: u16, pki: &Pki) -> (bool, String, String) {
    let roots = format!("{}{}", pki.server_root.pem(), pki.server_inter.pem());
    let roots = pki.write("legacy-roots.crt", &roots);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--tlsv1.0", "--tls-max", "1.0"])
        .args(["--ciphers", LEGACY, "--cacert"])
        .arg(roots)
        .args(["--resolve", &format!("app.test:{port}:127.0.0.1")])
        .arg(format!("https://app.test:{port}/"))
        .output()
        .await
        .expect("curl is required (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_tls_1_0_client_is_served_by_the_app_as_without_the_proxy() {
    let pki = Pki::new();
    let (_app, app_port) = legacy_app(&pki).await;
    // Without the proxy: the app serves the TLS 1.0 client.
    let (ok, direct, err) = curl_tls10(app_port, &pki).await;
    assert!(ok, "the app itself serves TLS 1.0: {err}");
    assert!(direct.contains("New, TLSv1.0"), "{direct}");

    let app = format!("127.0.0.1:{app_port}").parse().unwrap();
    let proxy = start_proxy(test_config(port_plan(&pki, app_port), app)).await;
    let (ok, through, err) = curl_tls10(proxy.listen[0].port(), &pki).await;
    assert!(ok, "through the proxy: {err}");
    assert!(
        through.contains("New, TLSv1.0, Cipher is"),
        "the app's own TLS 1.0 session answered: {through}"
    );

    let m = admin_get(proxy.admin.unwrap(), "/metrics").await.1;
    let port = app_port;
    for line in [
        format!(
            "tls_steal_tls_handshake_failures_total{{port=\"{port}\",reason=\"legacy_tls\"}} 1"
        ),
        format!("tls_steal_connections_total{{port=\"{port}\",kind=\"passthrough\"}} 1"),
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
    }
}
