//! What TLS costs a connection (issue 13): the time to open a sync connection to the real
//! `fieldsync` binary over `ws://` and over `wss://`, side by side in one run (two servers,
//! the same binary, connections alternating between them so both see the same machine).
//!
//! One connection is timed from before the TCP connect until the WebSocket upgrade's 101 is
//! read (with TLS, the handshake in between), in phases: TCP connect, TLS handshake, upgrade.
//! Two kinds of TLS connection: a full handshake (a client that never talked to the server,
//! or whose session expired) and a resumed one (TLS 1.3 session ticket: a device reconnecting
//! in the same process). The certificate is ECDSA P-256 from a test CA (`fieldsync_tests::pki`).
//!
//! Run: `cargo build --release --bin fieldsync && cargo run --release -p fieldsync-tests --bin
//! tls-figures [connections]` (default 200 of each kind; prints JSON). Not a test: timing
//! belongs in benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fieldsync_tests::pki::Pki;
use futures_util::SinkExt;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Server {
    child: Child,
    port: u16,
    data: PathBuf,
    bin: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .output()?;
        if !out.status.success() {
            bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("exe dir")?;
    let bin = dir.join("fieldsync");
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release --bin fieldsync` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts the binary on a free loopback port, with TLS if `pki` is given.
fn start(data: &Path, pki: Option<&Pki>) -> anyhow::Result<Server> {
    let bin = binary()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut command = Command::new(&bin);
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env_remove("FIELDSYNC_CONFIG")
        // An edge's first start needs a branch id (issue 16).
        .env("FIELDSYNC_BRANCH_ID", "bench-01")
        .env("FIELDSYNC_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(pki) = pki {
        command
            .env("FIELDSYNC_TLS_CERT", &pki.cert_file)
            .env("FIELDSYNC_TLS_KEY", &pki.key_file);
    }
    let server = Server {
        child: command.spawn()?,
        port,
        data: data.to_owned(),
        bin,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// The phases of one connection, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Phases {
    tcp: f64,
    tls: f64,
    upgrade: f64,
}

impl Phases {
    fn total(&self) -> f64 {
        self.tcp + self.tls + self.upgrade
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Opens one sync connection (TLS if `tls` is given), closes it, and returns its phases.
async fn connect(
    port: u16,
    token: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Phases> {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let mut request = format!("{scheme}://127.0.0.1:{port}/sync").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let start = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let connected = Instant::now();
    let (tcp_time, tls_time, upgrade_time) = match tls {
        Some(config) => {
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(ServerName::try_from("127.0.0.1")?, tcp)
                .await?;
            let secured = Instant::now();
            let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await?;
            let upgraded = Instant::now();
            let _ = ws.send(WsMessage::Close(None)).await;
            (connected - start, secured - connected, upgraded - secured)
        }
        None => {
            let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
            let upgraded = Instant::now();
            let _ = ws.send(WsMessage::Close(None)).await;
            (connected - start, Duration::ZERO, upgraded - connected)
        }
    };
    Ok(Phases {
        tcp: micros(tcp_time),
        tls: micros(tls_time),
        upgrade: micros(upgrade_time),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(samples: &[Phases]) -> serde_json::Value {
    let sorted = |f: fn(&Phases) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let total = sorted(Phases::total);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "connections": samples.len(),
        "median_us": round(percentile(&total, 0.5)),
        "p90_us": round(percentile(&total, 0.9)),
        "median_tcp_us": round(percentile(&sorted(|p| p.tcp), 0.5)),
        "median_tls_handshake_us": round(percentile(&sorted(|p| p.tls), 0.5)),
        "median_upgrade_us": round(percentile(&sorted(|p| p.upgrade), 0.5)),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .context("the argument is the number of connections")?,
        None => 200,
    };
    let pki = Pki::generate("tls-figures CA")?;
    let data = tempfile::tempdir()?;
    let plain = start(&data.path().join("plain"), None)?;
    let secure = start(&data.path().join("tls"), Some(&pki))?;
    let plain_token = plain.cli(&["desk", "token", "--role", "manager"])?;
    let secure_token = secure.cli(&["desk", "token", "--role", "manager"])?;
    let roots = pki.client_tls()?.rustls_config()?;
    // A full handshake every time: no session cache.
    let mut fresh = (*roots).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let fresh = Arc::new(fresh);
    // Resumption as a reconnecting device has it: one config, its session cache kept.
    let resuming = Arc::new((*roots).clone());

    // Warm up both servers (and the resuming client's cache).
    for _ in 0..10 {
        connect(plain.port, &plain_token, None).await?;
        connect(secure.port, &secure_token, Some(&fresh)).await?;
        connect(secure.port, &secure_token, Some(&resuming)).await?;
    }
    let (mut ws, mut full, mut resumed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..count {
        ws.push(connect(plain.port, &plain_token, None).await?);
        full.push(connect(secure.port, &secure_token, Some(&fresh)).await?);
        resumed.push(connect(secure.port, &secure_token, Some(&resuming)).await?);
    }
    let median = |s: &[Phases]| {
        let mut v: Vec<f64> = s.iter().map(Phases::total).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    let report = json!({
        "machine_cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "what": "TCP connect + (TLS handshake) + WebSocket upgrade to /sync on loopback, release binary",
        "ws": summary(&ws),
        "wss_full_handshake": summary(&full),
        "wss_resumed": summary(&resumed),
        "ratio_full_to_ws": ratio(median(&full), median(&ws)),
        "ratio_resumed_to_ws": ratio(median(&resumed), median(&ws)),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
