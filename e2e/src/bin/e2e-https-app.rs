#![forbid(unsafe_code)]
//! `e2e-https-app [--listen ADDR] [--cert PEM] [--key PEM] [--alpn h2,http/1.1] [--served-by TEXT]`
//!
//! A tiny HTTPS server (HTTP/1.1 and HTTP/2 via ALPN) for the e2e suite and the demo. Every
//! request is answered `200` with a plain-text body:
//!
//! ```text
//! served-by: pod <hostname>       (or the --served-by text)
//! method: GET
//! authority: host[:port]
//! path: /x?y=1
//! version: HTTP/2.0
//! header: name: value      (one line per request header, in order)
//! body-bytes: N
//! ```
//!
//! The certificate is re-read for every new connection, so a rotated Secret is picked up (the
//! rustls config is `tls-steal-test-support`'s [`ServerTls`], ring as everywhere).
//!
//! Health, as a real app's probes see it: `GET /healthz` answers `200 ok` until a
//! `POST /control/fail-health` makes it answer `500` (the process state; a restarted container
//! is healthy again). SIGTERM is handled as a well-behaved server does: stop accepting, let
//! in-flight requests finish (keep-alive connections are told to close), exit within 10 s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tls_steal_test_support::ServerTls;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct Args {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    alpn: Vec<Vec<u8>>,
    /// Replaces `pod <hostname>` in the first line (the demo's local process says what it is).
    served_by: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        listen: "0.0.0.0:443".parse()?,
        cert: "/tls/tls.crt".into(),
        key: "/tls/tls.key".into(),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        served_by: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?.parse().context("--listen")?,
            "--cert" => a.cert = value()?.into(),
            "--key" => a.key = value()?.into(),
            "--served-by" => a.served_by = Some(value()?),
            "--alpn" => {
                a.alpn = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_bytes().to_vec())
                    .collect()
            }
            "-h" | "--help" => {
                println!(
                    "e2e-https-app [--listen ADDR] [--cert PEM] [--key PEM] [--alpn h2,http/1.1] [--served-by TEXT]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

fn server_config(args: &Args) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let tls = ServerTls::from_pem_files(&args.cert, &args.key)
        .with_context(|| format!("reading {} and {}", args.cert.display(), args.key.display()))?;
    Ok(tls.alpn_raw(args.alpn.clone()).try_build()?)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether `/healthz` fails (set by `POST /control/fail-health`).
static FAILING: AtomicBool = AtomicBool::new(false);

fn text(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("static response parts are valid")
}

/// Who answers: the first line of every response and the `x-served-by` header.
struct Identity {
    line: String,
    name: String,
}

async fn handle(
    host: Arc<Identity>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/healthz") if FAILING.load(Ordering::Relaxed) => {
            return Ok(text(500, "failing (POST /control/fail-health)\n"));
        }
        ("GET", "/healthz") => return Ok(text(200, "ok\n")),
        ("POST", "/control/fail-health") => {
            FAILING.store(true, Ordering::Relaxed);
            eprintln!("e2e-https-app: /healthz fails from now on");
            return Ok(text(200, "/healthz fails from now on\n"));
        }
        _ => {}
    }
    let mut out = format!(
        "{}\nmethod: {}\nauthority: {}\npath: {}\nversion: {:?}\n",
        host.line,
        req.method(),
        req.uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| req
                .headers()
                .get("host")
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()))
            .unwrap_or_default(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.version()
    );
    for (name, value) in req.headers() {
        out.push_str(&format!(
            "header: {}: {}\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = req.into_body().collect().await?.to_bytes();
    out.push_str(&format!("body-bytes: {}\n", body.len()));
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-served-by", host.name.as_str())
        .body(Full::new(Bytes::from(out)))
        .expect("static response parts are valid"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    server_config(&args)?; // fail fast on unusable files
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let host = Arc::new(match &args.served_by {
        Some(text) => Identity {
            line: format!("served-by: {text}"),
            name: text.clone(),
        },
        None => Identity {
            line: tls_steal_e2e::served_by_line(&hostname()),
            name: hostname(),
        },
    });
    eprintln!(
        "e2e-https-app: serving https on {} as {}",
        args.listen, host.name
    );
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = term.recv() => break,
        };
        let cfg = match server_config(&args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("e2e-https-app: certificate: {e:#}");
                continue;
            }
        };
        let host = host.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match TlsAcceptor::from(cfg).accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("e2e-https-app: TLS handshake with {peer}: {e}");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| handle(host.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                eprintln!("e2e-https-app: connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    eprintln!("e2e-https-app: SIGTERM: not accepting; finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => eprintln!("e2e-https-app: drained"),
        _ = tokio::time::sleep(Duration::from_secs(10)) => eprintln!("e2e-https-app: drain deadline"),
    }
    Ok(())
}
