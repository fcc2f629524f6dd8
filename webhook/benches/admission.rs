//! Admission throughput and latency: the real HTTPS server (router + rustls) with 1,000 configs
//! in the caches, driven by 64 concurrent keep-alive HTTPS connections (hyper http1 clients) in
//! the same process. Run: `cargo bench -p tls-steal-webhook --bench admission`.
//!
//! Scenarios: `spread` (900 namespaced configs over 100 namespaces + 100 cluster-scoped ones;
//! every review injects), `one-namespace` (all 1,000 namespaced configs in the pod's namespace:
//! the worst case for matching; every review injects), `skip` (no config matches).

#[path = "../tests/common/mod.rs"]
mod common;

// As in the binary (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tls_steal_crds::{ConfigSource, TlsStealSpec};
use tls_steal_webhook::admission::Admission;
use tls_steal_webhook::configs::ConfigCache;
use tls_steal_webhook::metrics::Metrics;
use tls_steal_webhook::settings::Settings;

const CONCURRENCY: usize = 64;
const PER_CONN: usize = 250;
const WARMUP_PER_CONN: usize = 20;

fn spec(target: String, port: u16) -> TlsStealSpec {
    serde_json::from_value(json!({
        "targetPath": target,
        "ports": [{"port": port,
            "agentAsServer": {"authentication": {"certPem": "/etc/tls/tls.crt", "keyPem": "/etc/tls/tls.key"},
                              "alpnProtocols": ["h2", "http/1.1"]},
            "agentAsClient": {"verification": {"acceptAnyCert": true}}}]
    }))
    .unwrap()
}

fn spread_configs() -> Vec<ConfigSource> {
    let mut v = Vec::new();
    for ns in 0..100 {
        for i in 0..9 {
            v.push(ConfigSource::namespaced(
                &format!("ns-{ns}"),
                &format!("c-{i}"),
                spec(format!("deploy/svc-{i}"), 8443),
            ));
        }
    }
    for i in 0..100 {
        v.push(ConfigSource::cluster(
            &format!("cl-{i}"),
            spec(format!("daemonset/agent-{i}"), 9443),
        ));
    }
    v
}

fn one_namespace_configs() -> Vec<ConfigSource> {
    (0..1000)
        .map(|i| {
            ConfigSource::namespaced(
                "ns-7",
                &format!("c-{i}"),
                spec(format!("deploy/svc-{i}"), 8443),
            )
        })
        .collect()
}

fn review(namespace: &str, deploy: &str) -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deploy}-5d8f7c-"), "namespace": namespace,
            "labels": {"app": deploy, "pod-template-hash": "5d8f7c", "team": "payments", "tier": "backend"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deploy}-5d8f7c"),
                "uid": "3c1d6a4e-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "containers": [{"name": "app", "image": "example.com/app:1.2.3",
                "ports": [{"containerPort": 8443, "name": "https", "protocol": "TCP"}, {"containerPort": 9090, "name": "metrics"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"}},
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls", "readOnly": true},
                                 {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "volumes": [{"name": "tls", "secret": {"secretName": "app-tls"}},
                        {"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false}
    }))
    .unwrap()
}

struct Result {
    name: &'static str,
    total: usize,
    secs: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// The review handler over `configs`, as the server builds it (no cluster: no owner lookups).
fn admission(configs: Vec<ConfigSource>) -> Admission {
    Admission {
        cache: Arc::new(ConfigCache::from_sources(configs)),
        settings: Settings::default(),
        metrics: Arc::new(Metrics::default()),
        cluster: None,
    }
}

/// `rate`: `None` = closed loop (each connection sends its next review as soon as the previous
/// answer arrived); `Some(r)` = open loop at `r` reviews/s in total (each connection on a fixed
/// schedule; latency counted from the scheduled time, so queueing is not hidden).
async fn scenario(
    name: &'static str,
    configs: Vec<ConfigSource>,
    body: Vec<u8>,
    expect_patch: bool,
    rate: Option<f64>,
) -> Result {
    let admission = admission(configs);
    let srv = common::start(admission, 4 * 1024 * 1024).await;
    let body = Arc::new(body);
    // Sanity check of the answer.
    let mut c = common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
        .await
        .unwrap();
    let (status, resp) = c.post("/mutate", body.to_vec()).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(
        v["response"].get("patch").is_some(),
        expect_patch,
        "{name}: {v}"
    );

    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(
            common::connect(srv.addr, &srv.bundle.ca_cert_pem, &common::sni())
                .await
                .unwrap(),
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CONCURRENCY + 1));
    let mut tasks = Vec::new();
    for (idx, mut conn) in conns.into_iter().enumerate() {
        let body = body.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..WARMUP_PER_CONN {
                conn.post("/mutate", body.to_vec()).await;
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
                let (status, _) = conn.post("/mutate", body.to_vec()).await;
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
    Result {
        name,
        total: all.len(),
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
        max: *all.last().unwrap(),
    }
}

/// Closed loop driven by `h2load` (another process, as the API server is): 64 HTTP/1.1
/// keep-alive TLS connections, each sending its next review when the answer arrives. `None`
/// when h2load is not installed (Debian: nghttp2-client).
async fn external(name: &'static str, configs: Vec<ConfigSource>, body: Vec<u8>) -> Option<Result> {
    let admission = admission(configs);
    let srv = common::start(admission, 4 * 1024 * 1024).await;
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
    let out = run(total, Some(&log)).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
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
    })
}

/// CPU cost of one review without HTTP/TLS: `Admission::review` in a loop on one task.
async fn in_process(configs: Vec<ConfigSource>, body: &[u8]) -> Duration {
    let admission = admission(configs);
    for _ in 0..200 {
        admission.review(body).await;
    }
    let n = 3000;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(admission.review(body).await.status, 200);
    }
    t.elapsed() / n
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        vec![
            scenario(
                "spread, inject, closed loop",
                spread_configs(),
                review("ns-7", "svc-3"),
                true,
                None,
            )
            .await,
            scenario(
                "spread, inject, 2,000/s offered",
                spread_configs(),
                review("ns-7", "svc-3"),
                true,
                Some(2000.0),
            )
            .await,
            scenario(
                "spread, inject, 6,000/s offered",
                spread_configs(),
                review("ns-7", "svc-3"),
                true,
                Some(6000.0),
            )
            .await,
            scenario(
                "one-namespace, inject, closed loop",
                one_namespace_configs(),
                review("ns-7", "svc-3"),
                true,
                None,
            )
            .await,
            scenario(
                "spread, skip (no match), closed loop",
                spread_configs(),
                review("ns-7", "nothing"),
                false,
                None,
            )
            .await,
        ]
        .into_iter()
        .chain(
            external(
                "spread, inject, closed loop, h2load client (another process)",
                spread_configs(),
                review("ns-7", "svc-3"),
            )
            .await,
        )
        .collect::<Vec<_>>()
    });
    println!(
        "webhook admission: 1,000 configs, {CONCURRENCY} concurrent HTTPS connections, {} cores, body {} bytes",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        review("ns-7", "svc-3").len()
    );
    let (spread_inject, one_ns_inject, spread_skip) = rt.block_on(async {
        (
            in_process(spread_configs(), &review("ns-7", "svc-3")).await,
            in_process(one_namespace_configs(), &review("ns-7", "svc-3")).await,
            in_process(spread_configs(), &review("ns-7", "nothing")).await,
        )
    });
    println!(
        "in-process, no HTTP (one task): spread inject {:.0} µs/review, one-namespace inject {:.0} µs/review, spread skip {:.0} µs/review",
        spread_inject.as_secs_f64() * 1e6,
        one_ns_inject.as_secs_f64() * 1e6,
        spread_skip.as_secs_f64() * 1e6
    );
    println!("| scenario | reviews | reviews/s | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in results {
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
}
