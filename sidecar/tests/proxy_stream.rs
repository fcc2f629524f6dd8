//! 100 MiB streamed up and down through the real `tls-steal-sidecar proxy` binary (a subprocess,
//! so its memory is measured alone): bodies are streamed, never buffered, so the proxy's RSS
//! stays within a bound while they pass (HTTP/1.1 and HTTP/2).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::SinkExt;
use http_body_util::BodyExt;
use hyper::body::Frame;

const SIZE: u64 = 100 * 1024 * 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_up_and_down_with_bounded_memory() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let plan = tls_steal_crds::StealPlan::from_ports(vec![port_plan(&pki, app.addr.port())]);
    let plan_file = pki.write("plan.json", &plan.to_json());
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_tls-steal-sidecar"))
        .args(["proxy", "--session-authorization", "disabled"])
        .arg("--plan")
        .arg(&plan_file)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--session-api", &format!("127.0.0.1:{}", free_port())])
        .args(["--orig-dst-override", &app.addr.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Proxy(child);
    let pid = proxy.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
    // Warm up (pools, TLS sessions), then take the baseline.
    get_seen(addr, &ClientOpts::new(&pki, &["h2"]), "/warm")
        .await
        .unwrap();
    get_seen(addr, &ClientOpts::new(&pki, &["http/1.1"]), "/warm")
        .await
        .unwrap();
    let baseline = rss_kib(pid);
    let mut peak = baseline;

    for alpn in ["http/1.1", "h2"] {
        let mut c = Conn::open(addr, &ClientOpts::new(&pki, &[alpn]))
            .await
            .unwrap();
        // Upload: a body produced chunk by chunk, the app counts it.
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let producer = tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
            for _ in 0..(SIZE / chunk.len() as u64) {
                tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
            }
        });
        let req = c
            .request("POST", "/upload")
            .header("content-length", SIZE.to_string())
            .body(http_body_util::StreamBody::new(rx).boxed())
            .unwrap();
        let sampler = {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s2 = stop.clone();
            let h = tokio::spawn(async move {
                let mut peak = 0;
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(rss_kib(pid));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                peak
            });
            (stop, h)
        };
        let resp = c.send(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        producer.await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            SIZE.to_string(),
            "{alpn} upload"
        );

        // Download: streamed by the app, counted here without keeping it.
        let req = c
            .request("GET", &format!("/download/{SIZE}"))
            .body(empty())
            .unwrap();
        let mut body = c.send(req).await.unwrap().into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            n += f.unwrap().data_ref().map(|d| d.len() as u64).unwrap_or(0);
        }
        assert_eq!(n, SIZE, "{alpn} download");
        sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
        peak = peak.max(sampler.1.await.unwrap());
    }
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!(
        "proxy RSS baseline {} KiB, peak {} KiB, growth {growth_mib:.1} MiB",
        baseline, peak
    );
    assert!(
        growth_mib < 64.0,
        "proxy RSS grew by {growth_mib:.1} MiB while streaming 4 x 100 MiB"
    );
}
