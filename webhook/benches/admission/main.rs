//! Admission throughput and latency: the real HTTPS server (router + rustls) with 1,000 configs
//! in the caches, driven by 64 concurrent keep-alive HTTPS connections in the same process. Run:
//! `cargo bench -p tls-steal-webhook --bench admission`.
//!
//! The load generator shares the 2 cores with the server (the API server would not), so it is
//! kept light: each connection is one task writing a pre-encoded HTTP/1.1 request over rustls
//! and reading the answer (status, `content-length`, body) with httparse ([`RawConn`]), instead
//! of a hyper client (a connection task and a request channel per connection).
//!
//! Scenarios: `spread` (900 namespaced configs over 100 namespaces + 100 cluster-scoped ones;
//! every review injects), `one-namespace` (all 1,000 namespaced configs in the pod's namespace:
//! the worst case for matching; every review injects), `skip` (no config matches).
//!
//! `ADMISSION_BENCH_ONLY=<text>` runs only the scenarios whose name contains `<text>` (for
//! profiling one of them).
//!
//! `reviews`: the configs and reviews sent; `raw_conn`: the load generator's connection.

#[path = "../../tests/common/mod.rs"]
mod common;
mod raw_conn;
mod reviews;

// As in the binary (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tls_steal_crds::ConfigSource;
use tls_steal_webhook::{Admission, ConfigCache, Metrics, Settings};

use raw_conn::RawConn;
use reviews::{Pods, one_namespace_configs, review, spread_configs};

const CONCURRENCY: usize = 64;
pub(crate) const PER_CONN: usize = 500;
pub(crate) const WARMUP_PER_CONN: usize = 20;

struct Result {
    name: &'static str,
    total: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// CPU time the server used (only when the client is another process).
    server_cpu: Option<Duration>,
}

/// The review handler over `configs`, as the server builds it (no cluster: no owner lookups).
fn admission(configs: Vec<ConfigSource>) -> Admission {
    Admission::new(
        Arc::new(ConfigCache::from_sources(configs)),
        Settings::default(),
        Arc::new(Metrics::default()),
        None,
    )
}

/// `rate`: `None` = closed loop (each connection sends its next review as soon as the previous
/// answer arrived); `Some(r)` = open loop at `r` reviews/s in total (each connection on a fixed
/// schedule; latency counted from the scheduled time, so queueing is not hidden).
async fn scenario(
    name: &'static str,
    configs: Vec<ConfigSource>,
    pods: Pods,
    expect_patch: bool,
    rate: Option<f64>,
) -> Option<Result> {
    if !selected(name) {
        return None;
    }
    let admission = admission(configs);
    let srv = common::start(admission, 4 * 1024 * 1024).await;
    // Sanity check of the answer.
    let mut c = common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
        .await
        .unwrap();
    let (status, resp) = c.post("/mutate", pods.body(0, 0).to_vec()).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(
        v["response"].get("patch").is_some(),
        expect_patch,
        "{name}: {v}"
    );

    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(RawConn::connect(srv.addr, &srv.bundle.ca_cert_pem).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENCY + 1));
    let mut tasks = Vec::new();
    for (idx, mut conn) in conns.into_iter().enumerate() {
        let requests = pods.requests(idx);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            for req in &requests[..WARMUP_PER_CONN] {
                let (status, body) = conn.send(req).await;
                assert_eq!(status, 200);
                let key = b"\"patchType\"";
                let patched = body.windows(key.len()).any(|w| w == key);
                assert_eq!(patched, expect_patch, "{name}");
            }
            barrier.wait().await;
            let mut lat = Vec::with_capacity(PER_CONN);
            let begin = Instant::now();
            for k in 0..PER_CONN {
                let t = match rate {
                    None => Instant::now(),
                    Some(r) => {
                        let interval = Duration::from_secs_f64(CONCURRENCY as f64 / r);
                        let offset = interval.mul_f64(idx as f64 / CONCURRENCY as f64);
                        let at = begin + offset + interval * k as u32;
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                };
                let (status, _) = conn.send(&requests[WARMUP_PER_CONN + k]).await;
                lat.push(t.elapsed());
                assert_eq!(status, 200);
            }
            lat
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Some(Result {
        name,
        total: all.len(),
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        max: *all.last().unwrap(),
        server_cpu: None,
    })
}

/// See `ADMISSION_BENCH_ONLY` in the module docs.
fn selected(name: &str) -> bool {
    std::env::var("ADMISSION_BENCH_ONLY").map_or(true, |only| name.contains(&only))
}

/// Closed loop driven by `h2load` (another process, as the API server is; the server on the
/// cores h2load leaves it): 64 HTTP/1.1
/// keep-alive TLS connections, each sending its next review when the answer arrives. `None`
/// when h2load is not installed (Debian: nghttp2-client).
async fn external(name: &'static str, configs: Vec<ConfigSource>, body: Vec<u8>) -> Option<Result> {
    if !selected(name) {
        return None;
    }
    // The server gets its own runtime with one worker per core h2load leaves it: on 2 cores, a
    // server with 2 workers plus h2load's thread would be 3 threads taking turns on 2 cores,
    // which measures the oversubscription rather than the server.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores - 1).max(1))
        .enable_all()
        .build()
        .unwrap();
    let admission = admission(configs);
    let srv = server_rt
        .spawn(common::start(admission, 4 * 1024 * 1024))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = (dir.path().join("review.json"), dir.path().join("log.tsv"));
    std::fs::write(&data, &body).unwrap();
    let total = CONCURRENCY * PER_CONN;
    let url = format!("https://127.0.0.1:{}/mutate", srv.addr.port());
    let run = |n: usize, log: Option<&std::path::Path>| {
        let mut cmd = tokio::process::Command::new("h2load");
        cmd.args([
            "--h1",
            "-t1",
            "-c",
            &CONCURRENCY.to_string(),
            "-n",
            &n.to_string(),
        ])
        .arg("-d")
        .arg(&data)
        .args(["-H", "content-type: application/json"]);
        if let Some(log) = log {
            cmd.arg("--log-file").arg(log);
        }
        cmd.arg(&url).stdout(std::process::Stdio::piped());
        cmd.output()
    };
    // Warm-up (connections, caches); a missing h2load ends the scenario.
    let warm = run(CONCURRENCY * WARMUP_PER_CONN, None).await.ok()?;
    let text = String::from_utf8_lossy(&warm.stdout).into_owned();
    assert!(text.contains(" 0 failed"), "{name}: h2load warm-up: {text}");
    let start = Instant::now();
    let cpu = process_cpu();
    let out = run(total, Some(&log)).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let server_cpu = process_cpu() - cpu;
    server_rt.shutdown_background();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("{total} succeeded")),
        "{name}: {text}"
    );
    // Log lines: start (µs since epoch), status, duration (µs).
    let mut all: Vec<Duration> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect();
    assert_eq!(all.len(), total, "{name}: h2load log");
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Some(Result {
        name,
        total,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        max: *all.last().unwrap(),
        server_cpu: Some(server_cpu),
    })
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (clock ticks of
/// 10 ms: a run of a few CPU-seconds reads it to 1%). h2load is another process, so during the
/// external scenario this is the server's CPU alone.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// CPU cost of one review without HTTP/TLS: `Admission::review` in a loop on one task.
async fn in_process(configs: Vec<ConfigSource>, pods: Pods) -> Duration {
    let admission = admission(configs);
    // Every review a different one, as in the scenarios: none is seen twice.
    let n = 6 * PER_CONN;
    let bodies = pods.first(0, WARMUP_PER_CONN + n);
    for body in &bodies[..WARMUP_PER_CONN] {
        admission.review(body).await;
    }
    let t = Instant::now();
    for body in &bodies[WARMUP_PER_CONN..] {
        assert_eq!(admission.review(body).await.status, 200);
    }
    t.elapsed() / n as u32
}

/// Name, configs, pods, whether a patch is expected, offered rate (`None`: closed loop).
type Scenario = (
    &'static str,
    fn() -> Vec<ConfigSource>,
    Pods,
    bool,
    Option<f64>,
);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let same = || Pods::same(review("ns-7", "svc-3"));
    let scenarios: [Scenario; 7] = [
        (
            "spread, inject, closed loop",
            spread_configs,
            same(),
            true,
            None,
        ),
        (
            "spread, inject, a new ReplicaSet each review, closed loop",
            spread_configs,
            Pods::NewReplicaSetEach,
            true,
            None,
        ),
        (
            "spread, inject, a new pod shape each review (nothing reused), closed loop",
            spread_configs,
            Pods::NewShapeEach,
            true,
            None,
        ),
        (
            "spread, inject, 2,000/s offered",
            spread_configs,
            same(),
            true,
            Some(2000.0),
        ),
        (
            "spread, inject, 6,000/s offered",
            spread_configs,
            same(),
            true,
            Some(6000.0),
        ),
        (
            "one-namespace, inject, closed loop",
            one_namespace_configs,
            same(),
            true,
            None,
        ),
        (
            "spread, skip (no match), closed loop",
            spread_configs,
            Pods::same(review("ns-7", "nothing")),
            false,
            None,
        ),
    ];
    let results = rt.block_on(async {
        let mut results = Vec::new();
        for (name, configs, pods, expect_patch, rate) in scenarios {
            results.extend(scenario(name, configs(), pods, expect_patch, rate).await);
        }
        results.extend(
            external(
                "spread, inject, h2load client (another process), closed loop",
                spread_configs(),
                review("ns-7", "svc-3"),
            )
            .await,
        );
        results
    });
    println!(
        "webhook admission: 1,000 configs, {CONCURRENCY} concurrent HTTPS connections, {} cores, body {} bytes",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        review("ns-7", "svc-3").len()
    );
    let (inject, new_rs, new_shape, one_ns, one_ns_new_shape, skip) = rt.block_on(async {
        let same = || Pods::same(review("ns-7", "svc-3"));
        (
            in_process(spread_configs(), same()).await,
            in_process(spread_configs(), Pods::NewReplicaSetEach).await,
            in_process(spread_configs(), Pods::NewShapeEach).await,
            in_process(one_namespace_configs(), same()).await,
            in_process(one_namespace_configs(), Pods::NewShapeEach).await,
            in_process(spread_configs(), Pods::same(review("ns-7", "nothing"))).await,
        )
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "in-process, no HTTP (one task), µs/review: spread inject {:.1} (a new ReplicaSet each: {:.1}, a new shape each: {:.1}), one-namespace inject {:.1} (a new shape each: {:.1}), spread skip {:.1}",
        us(inject),
        us(new_rs),
        us(new_shape),
        us(one_ns),
        us(one_ns_new_shape),
        us(skip)
    );
    println!("| scenario | reviews | reviews/s | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.name,
            r.total,
            r.total as f64 / r.secs,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3
        );
    }
    for r in &results {
        if let Some(cpu) = r.server_cpu {
            let per = cpu / r.total as u32;
            println!(
                "server CPU with the external client ({}): {:.0} µs/review, i.e. {:.0} reviews/s per core",
                r.name,
                us(per),
                1.0 / per.as_secs_f64()
            );
        }
    }
}
