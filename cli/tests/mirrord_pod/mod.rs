//! The pod of the mirrord compatibility tests: two real apps behind one real sidecar (its
//! `--orig-dst-for` maps a listener to each app, as iptables would), `kubectl-steal -f` sessions
//! against it, requests through the proxy and the cases asserting who answered.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::process::Child;

use crate::common::*;

/// The pod: two apps behind one sidecar.
pub struct Pod {
    pub certs: Certs,
    _apps: [App; 2],
    /// The apps' ports (the plan's ports).
    pub ports: [u16; 2],
    /// Where to connect to reach each port through the proxy.
    pub listen: [SocketAddr; 2],
    pub admin: SocketAddr,
    pub api: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

pub const A: usize = 0;
pub const B: usize = 1;

pub async fn pod() -> Pod {
    pod_with(&[]).await
}

pub async fn pod_with(extra: &[&str]) -> Pod {
    let certs = certs();
    let apps = [
        App::start("real-a", Some(certs.server.clone())).await,
        App::start("real-b", Some(certs.server.clone())).await,
    ];
    let ports = [apps[0].addr.port(), apps[1].addr.port()];
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, plan_json_ports(&ports, &certs)).unwrap();
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    for attempt in 1.. {
        let (listen, admin, api) = ([addr(), addr()], addr(), addr());
        let routes = [(listen[0], apps[0].addr), (listen[1], apps[1].addr)];
        match spawn_sidecar_routes(&plan, &routes, admin, api, extra).await {
            Ok(child) => {
                return Pod {
                    certs,
                    _apps: apps,
                    ports,
                    listen,
                    admin,
                    api,
                    _child: child,
                    _dir: dir,
                };
            }
            Err(why) => {
                assert!(attempt < 5, "the sidecar did not come up: {why}");
                eprintln!("the sidecar did not come up ({why}); again on other ports");
            }
        }
    }
    unreachable!()
}

impl Pod {
    pub fn config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.certs.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `kubectl-steal --connect` with the config `text` (and `args`), once registered.
    pub async fn steal(&self, text: &str, args: &[&str]) -> Steal {
        let file = self.config("mirrord.json", text);
        let api = self.api.to_string();
        let file = file.display().to_string();
        let mut all = vec!["--connect", &api, "-f", &file];
        all.extend_from_slice(args);
        let mut s = Steal::spawn(&all, &[]);
        s.wait_for("registered").await;
        s
    }

    /// Ends `steal` and waits until the sidecar has no session left.
    pub async fn stop(&self, mut steal: Steal) {
        steal.child.kill().await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while sessions(self.api).await != 0 {
            assert!(tokio::time::Instant::now() < deadline, "the session stays");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        plain_get(self.admin, "/metrics").await
    }
}

/// A plain HTTP/1.1 GET; the body.
pub async fn plain_get(addr: SocketAddr, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut send = h1_handshake(tcp).await;
    let req = Request::get(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    collect(send.send_request(req).await.unwrap()).await.body
}

pub async fn sessions(api: SocketAddr) -> usize {
    let status: serde_json::Value =
        serde_json::from_str(&plain_get(api, "/v1/status").await).unwrap_or_default();
    status["sessions"].as_array().map_or(usize::MAX, Vec::len)
}

/// One request through the proxy (HTTP/1.1 over TLS).
pub async fn send(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = h1_handshake::<Full<Bytes>, _>(tls_to(proxy, false).await).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = tokio::time::timeout(WAIT, s.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap();
    collect(resp).await
}

/// A request and who must answer it.
pub struct Case<'a> {
    port: usize,
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a str,
    stolen: bool,
}

pub fn case<'a>(port: usize, method: &'a str, path: &'a str, stolen: bool) -> Case<'a> {
    Case {
        port,
        method,
        path,
        headers: &[],
        body: "",
        stolen,
    }
}

impl<'a> Case<'a> {
    pub fn headers(self, headers: &'a [(&'a str, &'a str)]) -> Self {
        Case { headers, ..self }
    }
    pub fn body(self, body: &'a str) -> Self {
        Case { body, ..self }
    }
}

pub async fn check(pod: &Pod, label: &str, cases: &[Case<'_>]) {
    for c in cases {
        let a = send(pod.listen[c.port], c.method, c.path, c.headers, c.body).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{label}: {} {}: {}",
            c.method,
            c.path,
            a.body
        );
        let who = a.headers["x-app"].to_str().unwrap().to_owned();
        let want = match (c.stolen, c.port) {
            (true, _) => "local",
            (false, A) => "real-a",
            (false, _) => "real-b",
        };
        assert_eq!(
            who, want,
            "{label}: {} {} on port {} (headers {:?}, body {:?})",
            c.method, c.path, pod.ports[c.port], c.headers, c.body
        );
    }
}

pub const STEAL_HDR: &[(&str, &str)] = &[("x-steal", "yes")];

pub fn incoming(section: &str) -> String {
    format!(r#"{{"feature": {{"network": {{"incoming": {section}}}}}}}"#)
}
