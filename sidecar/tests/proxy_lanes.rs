//! Worker lanes (`--workers 2`): both lanes accept on one socket, each connection is served by
//! the lane with the fewest, on that lane's own thread; the lanes end with the drain.

mod common;

use common::*;
use tls_steal_sidecar::proxy::ProxyHandle;

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

/// `tls_steal_lane_connections{lane}` of the two lanes.
async fn lane_connections(proxy: &ProxyHandle) -> Vec<i64> {
    let mut out = Vec::new();
    for lane in 0..2 {
        let series = format!("tls_steal_lane_connections{{lane=\"{lane}\"}}");
        out.push(metric(proxy.admin.unwrap(), &series).await);
    }
    out
}

#[tokio::test]
async fn two_lanes_share_the_port_and_split_long_lived_connections_evenly() {
    let pki = Pki::new();
    let app = App::start(&pki).await;
    let mut cfg = test_config(port_plan(&pki, app.addr.port()), app.addr);
    cfg.workers = 2;
    let proxy = start_proxy(cfg).await;
    assert_eq!(proxy.listen.len(), 1, "one address, whatever the lanes");
    // Linux names a thread from inside it once it runs, so the name may show a moment later.
    assert_eq!(
        threads_named_eventually("tls-steal-w1", 1).await,
        1,
        "lane 1 runs on its own thread"
    );
    assert_eq!(lane_connections(&proxy).await, vec![0, 0]);

    // Clients that keep their connection, as an ingress does: whichever lane accepts one, it
    // is served by the lane with fewer, so four end up two and two (by chance, as the kernel's
    // `SO_REUSEPORT` hash spread them, all four share a lane one time in eight).
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = Conn::open(proxy.listen[0], &o).await.unwrap();
        assert_eq!(c.get(&format!("/held{i}")).await.unwrap().0, 200);
        held.push(c);
    }
    assert_eq!(lane_connections(&proxy).await, vec![2, 2]);
    assert_eq!(
        upstream_connects(&proxy).await,
        4,
        "each kept HTTP/1.1 client has its own app connection, on its lane"
    );
    for (i, c) in held.iter_mut().enumerate() {
        assert_eq!(c.get(&format!("/again{i}")).await.unwrap().0, 200);
    }
    drop(held);
    for lane in 0..2 {
        let series = format!("tls_steal_lane_connections{{lane=\"{lane}\"}}");
        wait_metric(proxy.admin.unwrap(), &series, 0).await;
    }
    assert_eq!(
        lane_connections(&proxy).await,
        vec![0, 0],
        "a closed connection leaves its lane's count"
    );

    // HTTP/2 and HTTP/1.1 clients at once, on whichever lane: every request answered.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let o = ClientOpts::new(&pki, if i % 2 == 0 { &["h2"] } else { &["http/1.1"] });
        let addr = proxy.listen[0];
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr, &o).await.unwrap();
            for j in 0..5 {
                assert_eq!(c.get(&format!("/c{i}/{j}")).await.unwrap().0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // The drain ends lane 1's runtime and thread.
    proxy.shutdown();
    proxy.wait().await;
    assert_eq!(
        threads_named_eventually("tls-steal-w1", 0).await,
        0,
        "lane 1's thread is still running after the drain"
    );
}

/// Threads named `name`, once their count is `want` or after two seconds of polling.
async fn threads_named_eventually(name: &str, want: usize) -> usize {
    for _ in 0..100 {
        if threads_named(name) == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    threads_named(name)
}
