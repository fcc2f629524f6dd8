//! Worker lanes (`--workers 2`): each lane accepts on its own `SO_REUSEPORT` socket, runs on its
//! own thread and keeps its own app connections; the lanes end with the drain.

mod common;

use common::*;

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

#[tokio::test]
async fn two_lanes_share_the_port_and_keep_their_own_app_connections() {
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

    // Clients that reconnect for every request, one after the other: the kernel spreads their
    // connections over both lanes' sockets, and each lane hands its one app connection on to
    // its next client. One lane would make one app connection; two make exactly two.
    let o = ClientOpts::new(&pki, &["http/1.1"]);
    reconnecting_clients(proxy.listen[0], &o, 40).await;
    assert_eq!(
        upstream_connects(&proxy).await,
        2,
        "both lanes accepted, each with its own app connection"
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
