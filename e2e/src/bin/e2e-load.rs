#![forbid(unsafe_code)]
//! `e2e-load --connect IP:PORT --name DNS-NAME --ca CA.pem [--interval-ms 20]`
//!
//! A steady HTTPS client for the e2e rollout checks, behaving as ordinary clients of a Service
//! do. Three loops run until SIGINT/SIGTERM:
//!
//! * `new-conn`: every request on a new TLS connection (HTTP/1.1, `Connection: close`);
//! * `h1-keepalive`: one kept HTTP/1.1 connection, reopened when the server closes it;
//! * `h2`: one kept HTTP/2 connection, reopened after GOAWAY.
//!
//! The certificate is verified against `--ca` for `--name` (SNI; the TLS client config is
//! `tls-steal-test-support`'s, ring as everywhere), as an in-cluster client
//! reaching `https://<service>.<namespace>.svc` would. Retries follow HTTP's own rule for
//! idempotent requests (RFC 9110 §9.2.2), as Go's and browsers' clients do: a `GET` that fails on
//! a *reused* connection before any response arrived (the server closed it meanwhile, or an h2
//! GOAWAY refused the stream) is sent once more on a new connection, and counted as retried. A
//! failure on a new connection, a second failure, or any answer other than 200 (a 502 included)
//! counts as failed and is never retried.
//!
//! On exit it prints one summary line per loop and the pods that answered (`x-served-by`), and
//! exits 1 if any request failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tls_steal_test_support::ClientOpts;
use tls_steal_test_support::tls::read_certs;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Args {
    connect: SocketAddr,
    name: String,
    ca: PathBuf,
    interval: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let (mut connect, mut name, mut ca, mut interval) = (None, None, None, 20u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--connect" => connect = Some(value()?.parse().context("--connect")?),
            "--name" => name = Some(value()?),
            "--ca" => ca = Some(PathBuf::from(value()?)),
            "--interval-ms" => interval = value()?.parse().context("--interval-ms")?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Args {
        connect: connect.context("--connect IP:PORT is required")?,
        name: name.context("--name is required")?,
        ca: ca.context("--ca is required")?,
        interval: Duration::from_millis(interval),
    })
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    retried: u64,
    errors: Vec<String>,
    served_by: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<BTreeMap<&'static str, Tally>>>;

fn record(tally: &Shared, loop_name: &'static str, f: impl FnOnce(&mut Tally)) {
    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
    f(t.entry(loop_name).or_default());
}

struct Client {
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    async fn connect(&self, h2: bool) -> anyhow::Result<Sender> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(self.addr))
            .await
            .context("TCP connect timed out")?
            .context("TCP connect")?;
        tcp.set_nodelay(true)?;
        let mut cfg = (*self.tls).clone();
        cfg.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let tls = TlsConnector::from(Arc::new(cfg))
            .connect(self.name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        Ok(if h2 {
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(s)
        } else {
            let (s, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(s)
        })
    }

    fn request(&self, path: &str, close: bool) -> Request<Empty<Bytes>> {
        let mut b = Request::get(format!("https://{}{path}", self.name.to_str()));
        if close {
            b = b.header("connection", "close");
        }
        b.body(Empty::new()).expect("a valid request")
    }
}

/// What the server answered: its status and the pod (`x-served-by`).
struct Answered {
    status: http::StatusCode,
    pod: String,
}

impl Answered {
    /// Only a 200 counts as served; any other answer is a failure, never retried.
    fn into_result(self) -> anyhow::Result<String> {
        if self.status != 200 {
            bail!("status {} from {}", self.status, self.pod);
        }
        Ok(self.pod)
    }
}

/// Sends one request: the answer, or the transport error (no answer at all).
async fn send(sender: &mut Sender, req: Request<Empty<Bytes>>) -> anyhow::Result<Answered> {
    let resp = match sender {
        Sender::H1(s) => {
            s.ready().await?;
            let mut req = req;
            // HTTP/1.1 takes the origin form, with Host.
            let host = req.uri().host().unwrap_or_default().to_owned();
            *req.uri_mut() = req.uri().path().parse()?;
            req.headers_mut().insert("host", host.parse()?);
            s.send_request(req).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(req).await?
        }
    };
    let status = resp.status();
    let pod = resp
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    resp.into_body().collect().await?;
    Ok(Answered { status, pod })
}

fn is_usable(sender: &Sender) -> bool {
    match sender {
        Sender::H1(s) => !s.is_closed(),
        Sender::H2(s) => !s.is_closed(),
    }
}

async fn kept_loop(client: Arc<Client>, h2: bool, tally: Shared, interval: Duration) {
    let loop_name = if h2 { "h2" } else { "h1-keepalive" };
    let mut conn: Option<(Sender, u64)> = None;
    loop {
        tokio::time::sleep(interval).await;
        // A connection the server closed (Connection: close, GOAWAY) is simply replaced.
        if conn.as_ref().is_some_and(|(s, _)| !is_usable(s)) {
            conn = None;
        }
        let mut result = Err(anyhow::anyhow!("not sent"));
        for attempt in 0..2 {
            let (mut sender, used) = match conn.take() {
                Some(c) => c,
                None => match client.connect(h2).await {
                    Ok(s) => (s, 0),
                    Err(e) => {
                        result = Err(e.context("new connection"));
                        break;
                    }
                },
            };
            match send(&mut sender, client.request("/load/kept", false)).await {
                Ok(answered) => {
                    conn = Some((sender, used + 1));
                    result = answered.into_result();
                    break;
                }
                // Reused connection, no answer at all: retried once on a new connection.
                Err(e) if used > 0 && attempt == 0 => {
                    record(&tally, loop_name, |t| t.retried += 1);
                    eprintln!(
                        "e2e-load: {loop_name}: retrying after a reused connection failed: {e:#}"
                    );
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        count(&tally, loop_name, result);
    }
}

async fn fresh_loop(client: Arc<Client>, tally: Shared, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let result = async {
            let mut s = client.connect(false).await?;
            send(&mut s, client.request("/load/new-conn", true))
                .await?
                .into_result()
        }
        .await;
        count(&tally, "new-conn", result);
    }
}

fn count(tally: &Shared, loop_name: &'static str, result: anyhow::Result<String>) {
    record(tally, loop_name, |t| match result {
        Ok(pod) => {
            t.ok += 1;
            *t.served_by.entry(pod).or_default() += 1;
        }
        Err(e) => {
            t.failed += 1;
            let line = format!("{e:#}");
            eprintln!("e2e-load: {loop_name}: FAILED: {line}");
            if t.errors.len() < 5 {
                t.errors.push(line);
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let roots = read_certs(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let tls = ClientOpts::trusting(roots, &args.name, &[])
        .try_config()
        .with_context(|| format!("trusting {}", args.ca.display()))?;
    let client = Arc::new(Client {
        addr: args.connect,
        name: ServerName::try_from(args.name.clone()).context("--name")?,
        tls,
    });
    let tally: Shared = Arc::default();
    let tasks = [
        tokio::spawn(fresh_loop(client.clone(), tally.clone(), args.interval)),
        tokio::spawn(kept_loop(
            client.clone(),
            false,
            tally.clone(),
            args.interval,
        )),
        tokio::spawn(kept_loop(
            client.clone(),
            true,
            tally.clone(),
            args.interval,
        )),
    ];
    eprintln!(
        "e2e-load: sending to {} as {} until SIGINT/SIGTERM",
        args.connect, args.name
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    for t in &tasks {
        t.abort();
    }
    let tally = tally.lock().unwrap_or_else(|e| e.into_inner());
    let mut failed = 0;
    for (name, t) in tally.iter() {
        failed += t.failed;
        println!(
            "{name}: {} ok, {} failed, {} retried on a new connection; served by {:?}",
            t.ok, t.failed, t.retried, t.served_by
        );
        for e in &t.errors {
            println!("  {name} error: {e}");
        }
    }
    let pods: std::collections::BTreeSet<&String> =
        tally.values().flat_map(|t| t.served_by.keys()).collect();
    println!("pods that answered: {}", pods.len());
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
