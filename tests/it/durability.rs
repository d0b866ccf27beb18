//! A change the server has acknowledged survives SIGKILL (DESIGN.md, "Storage and durability";
//! edge server issue, "Tests that must exist").
//!
//! The real `fieldsync` binary runs as a child process, set up with its own CLI, and is killed
//! with SIGKILL: no shutdown hook, no flush. A new process on the same data directory must
//! hold every change the old one had acknowledged, whether through the desk API (which reads
//! the disk) or by sending it on to another device (the durability barrier: a peer is only
//! told about a change once it is stored).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use fieldsync_client::SyncClient;
use fieldsync_shared::ids::DocumentId;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{
    SETTLE, ServerProcess, append_notes, cli, connect_client, eventually, get_job, notes, notes_of,
    sample_job_body, temp_dir,
};
use serde_json::Value;

const TECHNICIAN: &str = "tech-lin";

/// Enrolls a writing and a watching device with the CLI, as an operator would.
fn enroll_devices(data: &Path) -> anyhow::Result<()> {
    for device in ["dev-writer", "dev-watcher"] {
        let out = cli(
            data,
            &[
                "device",
                "enroll",
                "--technician",
                TECHNICIAN,
                "--device",
                device,
            ],
        )?;
        let printed: Value = serde_json::from_str(&out)?;
        assert_eq!(printed["device_id"], device, "enroll prints the device id");
    }
    Ok(())
}

fn device_token(data: &Path, device: &str) -> anyhow::Result<String> {
    cli(
        data,
        &["device", "token", "--device", device, "--ttl", "10m"],
    )
}

fn desk_token(data: &Path) -> anyhow::Result<String> {
    cli(
        data,
        &["desk", "token", "--role", "dispatcher", "--ttl", "10m"],
    )
}

async fn create_job(server: &ServerProcess, desk: &str) -> anyhow::Result<DocumentId> {
    let response = reqwest::Client::new()
        .post(server.http_url("/api/jobs"))
        .bearer_auth(desk)
        .json(&sample_job_body(TECHNICIAN))
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let body: Value = response.json().await?;
    Ok(DocumentId::from_url(
        body["url"].as_str().unwrap_or_default(),
    )?)
}

fn open_store(dir: &Path, name: &str) -> anyhow::Result<Arc<Store>> {
    Ok(Arc::new(Store::open(
        dir.join(format!("{name}.sqlite")),
        StoreConfig::default(),
    )?))
}

/// Connects a device over `store` and waits until it holds the job.
async fn device_on_job(
    server: &ServerProcess,
    token: &str,
    device: &str,
    store: Arc<Store>,
    job: DocumentId,
) -> anyhow::Result<SyncClient> {
    let client = connect_client(&server.ws_url(), token, device, store).await?;
    client.subscribe(job);
    assert!(
        client.wait_for(job, SETTLE, |d| notes(d).is_some()).await,
        "{device} receives the job"
    );
    Ok(client)
}

/// `e0;e1;…` for edits `0..n`: what the single writer's appends add up to.
fn edits_text(n: usize) -> String {
    (0..n).map(|i| format!("e{i};")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_the_server_stored_survives_sigkill_and_a_restart() -> anyhow::Result<()> {
    const EDITS: usize = 60;
    let data = temp_dir()?;
    let devices = temp_dir()?;
    enroll_devices(data.path())?;
    let desk = desk_token(data.path())?;
    let server = ServerProcess::start(data.path())?;
    let job = create_job(&server, &desk).await?;

    let writer = device_on_job(
        &server,
        &device_token(data.path(), "dev-writer")?,
        "dev-writer",
        open_store(devices.path(), "writer")?,
        job,
    )
    .await?;
    for i in 0..EDITS {
        writer.edit(job, append_notes(format!("e{i};"))).await?;
    }
    let expected = edits_text(EDITS);
    let base = server.http_url("");
    let before = eventually(SETTLE, "the server has stored every edit", || async {
        get_job(&base, &desk, job)
            .await
            .ok()
            .filter(|body| notes_of(body) == expected)
    })
    .await?;

    server.kill()?;
    let server = ServerProcess::start(data.path())?;
    let after = get_job(&server.http_url(""), &desk, job).await?;
    assert_eq!(notes_of(&after), expected, "every edit survived the kill");
    assert_eq!(
        after["heads"], before["heads"],
        "the same document, change for change"
    );

    // And a device that never saw the job gets all of it from the restarted server.
    let fresh = temp_dir()?;
    let watcher = connect_client(
        &server.ws_url(),
        &device_token(data.path(), "dev-watcher")?,
        "dev-watcher",
        open_store(fresh.path(), "watcher")?,
    )
    .await?;
    watcher.subscribe(job);
    assert!(
        watcher
            .wait_for(job, SETTLE, |d| notes(d).as_deref()
                == Some(expected.as_str()))
            .await,
        "a fresh device receives every edit from the restarted server"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_stream_of_edits_loses_nothing_the_server_acknowledged()
-> anyhow::Result<()> {
    /// Kill once the server has acknowledged this many edits, with the stream still going.
    const ACKED_BEFORE_KILL: usize = 25;
    const MAX_EDITS: usize = 5_000;
    let data = temp_dir()?;
    let devices = temp_dir()?;
    enroll_devices(data.path())?;
    let desk = desk_token(data.path())?;
    let writer_token = device_token(data.path(), "dev-writer")?;
    let server = ServerProcess::start(data.path())?;
    let job = create_job(&server, &desk).await?;

    let writer_store = open_store(devices.path(), "writer")?;
    let writer = device_on_job(
        &server,
        &writer_token,
        "dev-writer",
        Arc::clone(&writer_store),
        job,
    )
    .await?;
    // The watcher only receives: whatever it holds, the server sent it, and the server may
    // only send what it has stored.
    let watcher = device_on_job(
        &server,
        &device_token(data.path(), "dev-watcher")?,
        "dev-watcher",
        open_store(devices.path(), "watcher")?,
        job,
    )
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (writer, stop, written) = (writer.clone(), Arc::clone(&stop), Arc::clone(&written));
        tokio::spawn(async move {
            for i in 0..MAX_EDITS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                writer.edit(job, append_notes(format!("e{i};"))).await?;
                written.store(i + 1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };

    // Watch the server's acknowledgements on disk (the desk API reads the store) and kill
    // the server as soon as enough are there, while edits keep arriving.
    let base = server.http_url("");
    let acked = eventually(SETTLE, "the server acknowledges some edits", || async {
        get_job(&base, &desk, job)
            .await
            .ok()
            .map(|body| notes_of(&body))
            .filter(|n| n.matches(';').count() >= ACKED_BEFORE_KILL)
    })
    .await?;
    let written_at_kill = written.load(Ordering::Relaxed);
    server.kill()?;
    stop.store(true, Ordering::Relaxed);
    stream.await??;
    let written_total = written.load(Ordering::Relaxed);
    assert!(
        written_total < MAX_EDITS,
        "the stream was still going when the server died"
    );
    // Everything the watcher holds reached it from the server before the kill.
    let relayed = watcher
        .read(job)
        .await
        .and_then(|d| notes(&d))
        .unwrap_or_default();
    println!(
        "written at kill: {written_at_kill}, acknowledged on disk: {}, relayed to the watcher: \
         {}, written in all: {written_total}",
        acked.matches(';').count(),
        relayed.matches(';').count()
    );

    let server = ServerProcess::start(data.path())?;
    let base = server.http_url("");
    let survived = notes_of(&get_job(&base, &desk, job).await?);
    // One writer appends in order, so every state is a prefix of the full stream.
    assert!(
        survived.starts_with(&acked),
        "the restarted server lost edits it had stored: it has {} of the {} it acknowledged",
        survived.matches(';').count(),
        acked.matches(';').count()
    );
    assert!(
        survived.starts_with(&relayed),
        "the restarted server lost edits it had sent to another device: it has {} of {}",
        survived.matches(';').count(),
        relayed.matches(';').count()
    );

    // What the server never acknowledged is still on the writer's device and arrives when it
    // reconnects: nothing is lost end to end.
    writer.close();
    let writer =
        connect_client(&server.ws_url(), &writer_token, "dev-writer", writer_store).await?;
    writer.subscribe(job);
    let all = edits_text(written_total);
    assert!(
        writer
            .wait_for(job, SETTLE, |d| notes(d).as_deref() == Some(all.as_str()))
            .await,
        "the writer's device holds every edit it made"
    );
    eventually(
        SETTLE,
        "the server has every edit after the reconnect",
        || async {
            get_job(&base, &desk, job)
                .await
                .ok()
                .filter(|body| notes_of(body) == all)
        },
    )
    .await?;
    Ok(())
}
