//! Durability is a promise: what the server told a peer it holds survives SIGKILL. The server
//! runs as a separate process (the real `fieldsync` binary), is killed with SIGKILL and
//! restarted on the same data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fieldsync_client::{ConnectOptions, SyncClient};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::{PartDraft, read_job};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::Money;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{SETTLE, sample_job_body, temp_dir};
use serde_json::Value;

/// The `fieldsync` binary that cargo built next to this test.
pub(crate) fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no profile directory")?;
    let bin = profile_dir.join("fieldsync");
    if !bin.exists() {
        bail!(
            "{} is missing: build it with `cargo build --bin fieldsync` (scripts/test does)",
            bin.display()
        );
    }
    Ok(bin)
}

struct ServerProcess {
    child: Child,
    port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(data: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(binary()?)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .output()?;
    if !out.status.success() {
        bail!(
            "fieldsync {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

async fn start(data: &Path) -> anyhow::Result<ServerProcess> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(binary()?)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .env("FIELDSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let server = ServerProcess { child, port };
    let deadline = Instant::now() + SETTLE;
    loop {
        let up = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("the server did not come up on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The job as the server has it on disk (`GET /api/jobs/{id}` reads durable storage).
async fn stored_job(port: u16, desk: &str, job: DocumentId) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/jobs/{job}"))
        .bearer_auth(desk)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("GET job: {}", response.status());
    }
    Ok(response.json().await?)
}

fn part_numbers(job: &Value) -> Vec<String> {
    job["job"]["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["part_number"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn add_part(n: usize) -> LocalEdit {
    LocalEdit::job(move |job| {
        job.add_part(&PartDraft {
            part_number: format!("P-{n:04}"),
            name: format!("part {n}"),
            specification: String::new(),
            quantity: 1,
            unit_price: Money(100),
            warranty: false,
        })
        .map(|_| ())
    })
}

/// Connects a device, retrying while the server has not yet picked up its enrollment (the
/// CLI writes it from another process; the server merges it within a second).
async fn connect(port: u16, data: &Path, stores: &Path) -> anyhow::Result<SyncClient> {
    let token = cli(
        data,
        &["device", "token", "--device", "dev-a", "--ttl", "10m"],
    )?;
    let store = Arc::new(Store::open(
        stores.join("dev-a.sqlite"),
        StoreConfig::default(),
    )?);
    let deadline = Instant::now() + SETTLE;
    loop {
        let options = ConnectOptions {
            peer_id: "dev-a".into(),
            storage_id: Some("store-dev-a".into()),
            max_frame_bytes: 1 << 24,
        };
        match SyncClient::connect(
            &format!("ws://127.0.0.1:{port}/sync"),
            &token,
            options,
            Arc::clone(&store),
        )
        .await
        {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn setup(data: &Path) -> anyhow::Result<(ServerProcess, String, DocumentId)> {
    let server = start(data).await?;
    cli(
        data,
        &[
            "device",
            "enroll",
            "--technician",
            "tech-a",
            "--device",
            "dev-a",
        ],
    )?;
    let desk = cli(data, &["desk", "token", "--role", "dispatcher"])?;
    let created: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/jobs", server.port))
        .bearer_auth(&desk)
        .json(&sample_job_body("tech-a"))
        .send()
        .await?
        .json()
        .await?;
    let job = DocumentId::from_url(created["url"].as_str().context("job url")?)?;
    Ok((server, desk, job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_the_server_acknowledged_survives_sigkill() -> anyhow::Result<()> {
    let data_dir = temp_dir()?;
    let stores = temp_dir()?;
    let data = data_dir.path();
    let (server, desk, job) = setup(data).await?;
    let client = connect(server.port, data, stores.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);
    for n in 0..40 {
        client
            .edit(job, add_part(n))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Wait until the server holds all of them on disk.
    let deadline = Instant::now() + SETTLE;
    let before = loop {
        let stored = stored_job(server.port, &desk, job).await?;
        if part_numbers(&stored).len() == 40 {
            break stored;
        }
        if Instant::now() > deadline {
            bail!("the server never held all 40 parts");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // SIGKILL: no shutdown, no flush.
    let mut server = server;
    server.child.kill()?;
    server.child.wait()?;
    drop(server);
    client.close();

    let server = start(data).await?;
    let after = stored_job(server.port, &desk, job).await?;
    assert_eq!(part_numbers(&after), part_numbers(&before));
    assert_eq!(after["heads"], before["heads"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_a_stream_of_edits_loses_nothing_acknowledged() -> anyhow::Result<()>
{
    let data_dir = temp_dir()?;
    let stores = temp_dir()?;
    let data = data_dir.path();
    let (server, desk, job) = setup(data).await?;
    let client = connect(server.port, data, stores.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);

    // Edits keep flowing while we watch what the server reports as stored, and kill it as
    // soon as it has acknowledged some of them.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                if client.edit(job, add_part(n)).await.is_err() {
                    break;
                }
            }
        })
    };
    let deadline = Instant::now() + SETTLE;
    let acknowledged = loop {
        let stored = stored_job(server.port, &desk, job).await?;
        let parts = part_numbers(&stored);
        if parts.len() >= 25 {
            break parts;
        }
        if Instant::now() > deadline {
            bail!("the server never acknowledged 25 parts");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut server = server;
    server.child.kill()?;
    server.child.wait()?;
    drop(server);
    writer.abort();
    client.close();

    let server = start(data).await?;
    let survived = part_numbers(&stored_job(server.port, &desk, job).await?);
    for part in &acknowledged {
        assert!(
            survived.contains(part),
            "{part} was on the server's disk before SIGKILL and is gone after"
        );
    }
    Ok(())
}
