#![forbid(unsafe_code)]
//! Session benchmark: throughput and latency of requests through the real proxy (TLS in, TLS to
//! the app), forwarded with 0, 1 and 10 registered sessions whose filters do not match, and
//! stolen through a local session (reverse HTTP/2 on loopback).
//!
//! `cargo run --release -p tls-steal-sidecar --example session_bench [-- SECONDS [WORKERS]]`
//!
//! Everything (client, proxy, app, session) shares one process and the machine's cores, so the
//! figures compare the scenarios with each other rather than measure a production ceiling.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/session_common/mod.rs"]
mod session_common;

use std::time::{Duration, Instant};

use tls_steal_crds::filter::HttpFilter;
use tls_steal_crds::session::Mode;

use common::{ClientOpts, Conn};
use session_common::{World, default_handler, register};

struct Row {
    name: String,
    requests: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

async fn run(
    w: &World,
    name: &str,
    path: &'static str,
    secs: u64,
    workers: usize,
    alpn: &'static str,
) -> Row {
    let opts = ClientOpts::new(&w.pki, &[alpn]);
    let addr = w.addr();
    // Warm-up: connections and pools.
    let mut c = Conn::open(addr, &opts).await.unwrap();
    for _ in 0..50 {
        let _ = c.get(path).await;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr, &opts).await.unwrap();
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.get(path).await {
                    Ok((s, _)) if s.is_success() => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Row {
        name: name.into(),
        requests: all.len(),
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

/// The routing decision alone (no I/O): ns per request for 0, 1 and 10 non-matching sessions
/// (mixed filter kinds), and for one plain header regex and one with look-ahead.
fn decision_cost() -> Vec<(String, f64)> {
    use tls_steal_sidecar::proxy::{ConnInfo, Router};
    use tls_steal_sidecar::session::{SessionConfig, Sessions};
    let parts = http::Request::get("https://app.test/api/v2/users/42?page=3")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        )
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("accept-language", "en-US,en;q=0.9")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc")
        .header("x-request-id", "2b1f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
        .header("x-forwarded-for", "10.1.2.3")
        .header("cookie", "session=abcdef0123456789")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let conn = ConnInfo {
        client: "10.0.0.9:40000".parse().unwrap(),
        original_dst: "10.0.0.1:443".parse().unwrap(),
        port: 443,
        sni: Some("app.test".into()),
        alpn: Some(b"h2".to_vec()),
    };
    let mixed = |i: usize| match i % 3 {
        0 => HttpFilter::Header(format!("^x-steal-{i}: (?!no)")),
        1 => HttpFilter::Path(format!(r"^/api/v{i}/.*\?debug=1")),
        _ => HttpFilter::AllOf(vec![
            HttpFilter::Method("POST".into()),
            HttpFilter::Header(format!("^x-dev: user{i}$")),
        ]),
    };
    let scenarios: Vec<(&str, Vec<HttpFilter>)> = vec![
        ("0 sessions", vec![]),
        (
            "1 session, plain header regex",
            vec![HttpFilter::Header("^x-steal: yes$".into())],
        ),
        (
            "1 session, path regex",
            vec![HttpFilter::Path("^/steal/".into())],
        ),
        (
            "1 session, header regex with look-ahead",
            vec![HttpFilter::Header("^x-steal-0: (?!no)".into())],
        ),
        ("10 sessions, mixed kinds", (0..10).map(mixed).collect()),
    ];
    let mut out = Vec::new();
    for (label, filters) in scenarios {
        let sessions = Sessions::new(SessionConfig::new(vec![443]));
        for f in filters {
            let reg = tls_steal_crds::session::Registration {
                ports: vec![443],
                filter: Some(f),
                filter_ports: None,
                mode: Mode::Steal,
                client: String::new(),
            };
            sessions.register(&reg).unwrap();
        }
        let iters = 100_000;
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(sessions.route(std::hint::black_box(&parts), &conn));
        }
        out.push((
            label.to_owned(),
            t.elapsed().as_nanos() as f64 / iters as f64,
        ));
    }
    out
}

fn main() {
    let decisions = decision_cost();
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let w = World::start().await;
        let mut rows = Vec::new();
        for alpn in ["http/1.1", "h2"] {
            let mut keep = Vec::new();
            rows.push(run(&w, &format!("forwarded, 0 sessions ({alpn})"), "/fwd", secs, workers, alpn).await);
            keep.push(
                register(w.api, &w.reg(Some(HttpFilter::Header("^x-steal-0: yes$".into())), Mode::Steal, "b0"), default_handler("b0"))
                    .await
                    .unwrap(),
            );
            rows.push(run(&w, &format!("forwarded, 1 non-matching session ({alpn})"), "/fwd", secs, workers, alpn).await);
            for i in 1..10 {
                // Mixed kinds, as real filters are: header regexes with look-around, paths, composites.
                let f = match i % 3 {
                    0 => HttpFilter::Header(format!("^x-steal-{i}: (?!no)")),
                    1 => HttpFilter::Path(format!(r"^/api/v{i}/.*\?debug=1")),
                    _ => HttpFilter::AllOf(vec![HttpFilter::Method("POST".into()), HttpFilter::Header(format!("^x-dev: user{i}$"))]),
                };
                keep.push(register(w.api, &w.reg(Some(f), Mode::Steal, "b"), default_handler("b")).await.unwrap());
            }
            rows.push(run(&w, &format!("forwarded, 10 non-matching sessions ({alpn})"), "/fwd", secs, workers, alpn).await);
            drop(keep);
            w.wait_sessions(0).await;
            let _s = register(w.api, &w.reg(Some(HttpFilter::Path("^/steal".into())), Mode::Steal, "local"), default_handler("local"))
                .await
                .unwrap();
            rows.push(run(&w, &format!("stolen via a local session ({alpn})"), "/steal", secs, workers, alpn).await);
            drop(_s);
            w.wait_sessions(0).await;
        }
        println!("\nRouting decision alone (non-matching filters, a request with 9 headers):\n");
        println!("| sessions | ns/request |");
        println!("|---|---:|");
        for (label, ns) in decisions {
            println!("| {label} | {ns:.0} |");
        }
        println!("\nThrough the proxy: {workers} concurrent clients (one keep-alive TLS connection each), {secs} s per scenario\n");
        println!("| scenario | requests/s | p50 | p99 | errors |");
        println!("|---|---:|---:|---:|---:|");
        for r in rows {
            println!(
                "| {} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                r.name,
                r.requests as f64 / r.secs,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.errors
            );
        }
    });
}
