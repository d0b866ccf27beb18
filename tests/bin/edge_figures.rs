//! The edge server issue's figures, measured against the real `fieldsync` binary in its own
//! process: RSS idle, with 1,000 idle peers, with 2,000 documents loaded by 20 peers; the time
//! to connect one more peer in that state; p50/p99 latency of one small edit from device A to
//! device B on loopback.
//!
//! Run: `cargo build --release --bin fieldsync && cargo run --release -p fieldsync-tests --bin
//! edge-figures` (prints JSON). Not a test: timing belongs in benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::ROOT;
use automerge::transaction::Transactable;
use fieldsync_client::{ClientEvent, ConnectOptions, SyncClient};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::protocol::message::{JoinMessage, PeerId, PeerMetadata};
use fieldsync_shared::protocol::{Limits, Message, decode, encode};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::sample_job_body;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
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
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env("FIELDSYNC_BRANCH_ID", "bench-01")
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

fn start(data: &Path) -> anyhow::Result<Server> {
    let bin = binary()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let child = Command::new(&bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("FIELDSYNC_BRANCH_ID", "bench-01")
        .env("FIELDSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and completes the join handshake; returns the open socket.
async fn join(port: u16, token: &str, peer: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/sync").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let join = Message::Join(JoinMessage {
        sender_id: PeerId::new(peer),
        supported_protocol_versions: vec!["1".into()],
        peer_metadata: PeerMetadata::default(),
    });
    ws.send(WsMessage::Binary(encode(&join).into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                if matches!(decode(&b, &Limits::default())?, Message::Peer(_)) {
                    return Ok(ws);
                }
            }
            Some(Ok(_)) => {}
            other => bail!("handshake failed: {other:?}"),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn settle_rss(server: &Server) -> anyhow::Result<u64> {
    // Let allocations settle, then take the median of a few readings.
    let mut readings = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        readings.push(server.rss_kib()?);
    }
    readings.sort_unstable();
    Ok(readings[2])
}

async fn client(port: u16, token: &str, peer: &str, dir: &Path) -> anyhow::Result<SyncClient> {
    let store = Arc::new(Store::open(
        dir.join(format!("{peer}.sqlite")),
        StoreConfig::default(),
    )?);
    let options = ConnectOptions {
        peer_id: peer.to_owned(),
        storage_id: Some(format!("store-{peer}")),
        max_frame_bytes: 16 << 20,
    };
    Ok(SyncClient::connect(
        &format!("ws://127.0.0.1:{port}/sync"),
        token,
        options,
        store,
    )
    .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let clients_dir = tempfile::tempdir()?;
    let server = start(&data.path().join("server"))?;
    let port = server.port;
    let desk = server.cli(&["desk", "token", "--role", "manager"])?;
    let rss_idle = settle_rss(&server).await?;
    eprintln!("idle: {rss_idle} KiB");

    // 1,000 idle peers.
    let mut idle = Vec::new();
    for i in 0..1000 {
        idle.push(join(port, &desk, &format!("idle-{i}")).await?);
    }
    let rss_idle_peers = settle_rss(&server).await?;
    eprintln!("1000 idle peers: {rss_idle_peers} KiB");
    drop(idle);
    drop(server);

    // A fresh server for the documents, so freed connection memory does not blur the figure.
    let server = start(&data.path().join("server2"))?;
    let port = server.port;
    let desk = server.cli(&["desk", "token", "--role", "manager"])?;
    let rss_before_jobs = settle_rss(&server).await?;

    // 2,000 documents, 100 for each of 20 technicians, loaded by 20 peers.
    let http = reqwest::Client::new();
    let mut jobs: Vec<Vec<DocumentId>> = vec![Vec::new(); 20];
    let created = Instant::now();
    for i in 0..2000 {
        let tech = format!("tech-{}", i % 20);
        let body: serde_json::Value = http
            .post(format!("http://127.0.0.1:{port}/api/jobs"))
            .bearer_auth(&desk)
            .json(&sample_job_body(&tech))
            .send()
            .await?
            .json()
            .await?;
        let url = body["url"].as_str().context("job url")?;
        jobs[i % 20].push(DocumentId::from_url(url)?);
        if i % 500 == 499 {
            eprintln!("created {} jobs", i + 1);
        }
    }
    let create_secs = created.elapsed().as_secs_f64();
    let mut peers = Vec::new();
    for (i, docs) in jobs.iter().enumerate() {
        let c = client(port, &desk, &format!("peer-{i}"), clients_dir.path()).await?;
        for doc in docs {
            c.subscribe(*doc);
        }
        peers.push((c, docs.clone()));
    }
    for (c, docs) in &peers {
        for doc in docs {
            if !c
                .wait_for(*doc, Duration::from_secs(120), |d| {
                    !d.get_heads().is_empty()
                })
                .await
            {
                bail!("peer never received {doc}");
            }
        }
    }
    let rss_loaded = settle_rss(&server).await?;
    eprintln!("2000 docs, 20 peers: {rss_loaded} KiB");

    // One more peer in that state.
    let mut connect_ms = Vec::new();
    for i in 0..21 {
        let t = Instant::now();
        let ws = join(port, &desk, &format!("extra-{i}")).await?;
        connect_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(ws);
    }
    connect_ms.sort_by(f64::total_cmp);

    // Latency of one small edit from A to B.
    let doc = jobs[0][0];
    let a = client(port, &desk, "lat-a", clients_dir.path()).await?;
    let b = client(port, &desk, "lat-b", clients_dir.path()).await?;
    a.subscribe(doc);
    b.subscribe(doc);
    for c in [&a, &b] {
        if !c
            .wait_for(doc, Duration::from_secs(30), |d| !d.get_heads().is_empty())
            .await
        {
            bail!("latency peers did not load the doc");
        }
    }
    let mut lat_ms = Vec::new();
    for i in 0..200 {
        let mut events = b.events();
        let value = format!("note {i}");
        let expected = value.clone();
        let t = Instant::now();
        a.edit(
            doc,
            LocalEdit::Change(Box::new(move |d| {
                let mut tx = d.transaction();
                tx.put(ROOT, "bench_note", value)
                    .map_err(|e| e.to_string())?;
                tx.commit();
                Ok(())
            })),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        loop {
            let current = b.read(doc).await;
            let seen = current.is_some_and(|d| {
                automerge::ReadDoc::get(&d, ROOT, "bench_note")
                    .ok()
                    .flatten()
                    .is_some_and(|(v, _)| v.as_str() == Some(expected.as_str()))
            });
            if seen {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(ClientEvent::Closed { reason, .. })) => bail!("closed: {reason}"),
                Ok(_) => {}
                Err(_) => bail!("edit {i} never arrived"),
            }
        }
        lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat_ms.sort_by(f64::total_cmp);

    let result = json!({
        "rss_idle_kib": rss_idle,
        "rss_1000_idle_peers_kib": rss_idle_peers,
        "per_idle_connection_kib": (rss_idle_peers.saturating_sub(rss_idle)) as f64 / 1000.0,
        "create_2000_jobs_seconds": create_secs,
        "rss_before_jobs_kib": rss_before_jobs,
        "rss_2000_docs_20_peers_kib": rss_loaded,
        "per_loaded_document_kib": (rss_loaded.saturating_sub(rss_before_jobs)) as f64 / 2000.0,
        "connect_one_more_peer_ms": {"p50": percentile(&connect_ms, 0.5), "p99": percentile(&connect_ms, 0.99)},
        "edit_a_to_b_ms": {"p50": percentile(&lat_ms, 0.5), "p99": percentile(&lat_ms, 0.99), "samples": lat_ms.len()},
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
