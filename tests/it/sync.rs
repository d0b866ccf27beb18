//! Two real clients sync a job through a real server (edge server issue).

use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{
    SETTLE, TestServer, append_notes, connect_client, eventually, notes, notes_of, temp_dir,
};

fn set_fault_cause(text: &'static str) -> LocalEdit {
    LocalEdit::Change(Box::new(move |doc| {
        let mut tx = doc.transaction();
        let (_, diagnosis) = tx
            .get(ROOT, "diagnosis")
            .map_err(|e| e.to_string())?
            .ok_or("no diagnosis")?;
        tx.put(&diagnosis, "fault_cause", text)
            .map_err(|e| e.to_string())?;
        tx.commit();
        Ok(())
    }))
}

fn fault_cause(doc: &automerge::Automerge) -> Option<String> {
    read_job(doc).ok().and_then(|j| j.diagnosis.fault_cause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_sync_a_job_through_the_server_and_a_restart_keeps_it() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let a = server.enroll("tech-wang", "dev-a")?;
    let b = server.enroll("tech-wang", "dev-b")?;
    let created = server.create_job("tech-wang").await?;

    let client_a = server.connect_device(&a, devices.path()).await?;
    let client_b = server.connect_device(&b, devices.path()).await?;
    client_a.subscribe(created.job);
    client_b.subscribe(created.job);
    assert!(
        client_a
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "device A receives the job"
    );
    client_a
        .edit(created.job, set_fault_cause("Worn start capacitor"))
        .await?;
    assert!(
        client_b
            .wait_for(created.job, SETTLE, |d| fault_cause(d).as_deref()
                == Some("Worn start capacitor"))
            .await,
        "device B sees device A's edit"
    );

    // The server holds it durably: restart and read it back through a new connection.
    client_a.close();
    client_b.close();
    server.stop().await?;
    let server = TestServer::start_in(data.path()).await?;
    let fresh = temp_dir()?;
    let client_c = server.connect_device(&a, fresh.path()).await?;
    client_c.subscribe(created.job);
    assert!(
        client_c
            .wait_for(created.job, SETTLE, |d| fault_cause(d).as_deref()
                == Some("Worn start capacitor"))
            .await,
        "the restarted server still has the edit"
    );
    server.stop().await?;
    Ok(())
}

/// Regression: the record poller used to replace the in-memory records with a snapshot read
/// while the desk API was adding jobs, so a just-created job could be refused as unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_peer_receives_every_job_it_requests_while_jobs_are_being_created()
-> anyhow::Result<()> {
    use std::sync::Arc;

    use fieldsync_client::{ConnectOptions, SyncClient};
    use fieldsync_server::auth::DeskRole;
    use fieldsync_storage::{Store, StoreConfig};

    let data = temp_dir()?;
    let stores = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let mut jobs = Vec::new();
    for i in 0..400 {
        jobs.push(server.create_job(&format!("tech-{}", i % 4)).await?.job);
    }
    let token = server.desk_token(DeskRole::Manager)?;
    let mut peers = Vec::new();
    for p in 0..4 {
        let store = Arc::new(Store::open(
            stores.path().join(format!("p{p}.sqlite")),
            StoreConfig::default(),
        )?);
        let options = ConnectOptions {
            peer_id: format!("desk-{p}"),
            storage_id: Some(format!("desk-store-{p}")),
            max_frame_bytes: 1 << 24,
        };
        let client = SyncClient::connect(&server.ws_url(), &token, options, store).await?;
        for job in jobs.iter().skip(p).step_by(4) {
            client.subscribe(*job);
        }
        peers.push(client);
    }
    for (p, client) in peers.iter().enumerate() {
        for job in jobs.iter().skip(p).step_by(4) {
            assert!(
                client
                    .wait_for(*job, SETTLE, |d| !d.get_heads().is_empty())
                    .await,
                "peer {p} never received job {job}"
            );
        }
    }
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassigning_a_job_takes_effect_on_a_live_connection() -> anyhow::Result<()> {
    use fieldsync_client::ClientEvent;
    use fieldsync_server::auth::DeskRole;
    use fieldsync_shared::job::index::read_index;

    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let a = server.enroll("tech-a", "dev-a")?;
    let b = server.enroll("tech-b", "dev-b")?;
    let created = server.create_job("tech-a").await?;
    let client_a = server.connect_device(&a, devices.path()).await?;
    client_a.subscribe(created.job);
    client_a.subscribe(created.index);
    assert!(
        client_a
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await
    );
    let mut events = client_a.events();

    let response = reqwest::Client::new()
        .put(server.http_url(&format!("/api/jobs/{}/technicians", created.job)))
        .bearer_auth(server.desk_token(DeskRole::Dispatcher)?)
        .json(&serde_json::json!({"technicians": ["tech-b"]}))
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    let unavailable = tokio::time::timeout(SETTLE, async {
        loop {
            match events.recv().await {
                Ok(ClientEvent::DocUnavailable { doc }) if doc == created.job => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(
        unavailable,
        "device A is told the job is no longer available"
    );
    let url = created.job.url();
    assert!(
        client_a
            .wait_for(created.index, SETTLE, |d| read_index(d)
                .is_ok_and(|i| !i.jobs.contains(&url)))
            .await,
        "device A's assignment index no longer lists the job"
    );

    let client_b = server.connect_device(&b, devices.path()).await?;
    client_b.subscribe(created.job);
    assert!(
        client_b
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok_and(|j| j
                .technicians
                .iter()
                .any(|t| t.as_str() == "tech-b")))
            .await,
        "device B now receives the job, listing tech-b"
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_connected_devices_why_and_flushes() -> anyhow::Result<()> {
    use fieldsync_client::ClientEvent;

    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let a = server.enroll("tech-a", "dev-a")?;
    let created = server.create_job("tech-a").await?;
    let client = server.connect_device(&a, devices.path()).await?;
    client.subscribe(created.job);
    assert!(
        client
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await
    );
    let mut events = client.events();
    server.stop().await?;
    let closed = tokio::time::timeout(SETTLE, async {
        loop {
            match events.recv().await {
                Ok(ClientEvent::Closed { code, reason }) => return Some((code, reason)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await?;
    assert_eq!(
        closed,
        Some((Some(1001), "server shutting down".to_owned())),
        "the close frame says the server is going away"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_offline_reach_the_server_when_the_device_reconnects() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let a = server.enroll("tech-wang", "dev-a")?;
    let created = server.create_job("tech-wang").await?;
    let store = Arc::new(Store::open(
        devices.path().join("dev-a.sqlite"),
        StoreConfig::default(),
    )?);
    let token = server.device_token(&a, Duration::from_secs(600))?;

    let online = connect_client(&server.ws_url(), &token, a.as_str(), Arc::clone(&store)).await?;
    online.subscribe(created.job);
    assert!(
        online
            .wait_for(created.job, SETTLE, |d| notes(d).is_some())
            .await,
        "the device receives the job"
    );
    // Offline: the connection is closed and the device keeps working on its own store.
    online.close();
    online
        .edit(created.job, append_notes("Gate code 4412."))
        .await?;

    // Reconnecting resumes from the sync state saved at the disconnect. The device's first
    // message carries no changes (it cannot know yet what the server lacks); the server
    // answers with what it needs, and that answer, itself without changes, must be answered.
    let back = connect_client(&server.ws_url(), &token, a.as_str(), store).await?;
    back.subscribe(created.job);
    eventually(SETTLE, "the server holds the offline edit", || async {
        server
            .get_job(created.job)
            .await
            .ok()
            .filter(|body| notes_of(body) == "Gate code 4412.")
    })
    .await?;
    server.stop().await?;
    Ok(())
}

/// Issue 17's idle-memory tests: device A receives a new job of tech-wang, records the fault
/// cause and leaves once the server stored it. Returns the job and device B (enrolled, never
/// connected).
async fn a_job_device_a_edited_and_left(
    server: &TestServer,
    devices: &std::path::Path,
) -> anyhow::Result<(DocumentId, DeviceId)> {
    let a = server.enroll("tech-wang", "dev-a")?;
    let b = server.enroll("tech-wang", "dev-b")?;
    let created = server.create_job("tech-wang").await?;
    let client_a = server.connect_device(&a, devices).await?;
    client_a.subscribe(created.job);
    assert!(
        client_a
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "device A receives the job"
    );
    client_a
        .edit(created.job, set_fault_cause("Worn start capacitor"))
        .await?;
    eventually(SETTLE, "the server stores device A's edit", || async {
        let stored = server.stored_doc(created.job).ok()?;
        (fault_cause(&stored).as_deref() == Some("Worn start capacitor")).then_some(())
    })
    .await?;
    client_a.close();
    Ok((created.job, b))
}

/// Device B, which never held `job`, receives device A's edit and the server stores B's edit
/// (`note` in the notes) on top of it; B then leaves.
async fn device_b_receives_and_edits(
    server: &TestServer,
    devices: &std::path::Path,
    b: &DeviceId,
    job: DocumentId,
    note: &'static str,
) -> anyhow::Result<()> {
    let client_b = server.connect_device(b, devices).await?;
    client_b.subscribe(job);
    assert!(
        client_b
            .wait_for(job, SETTLE, |d| fault_cause(d).as_deref()
                == Some("Worn start capacitor"))
            .await,
        "a device that never held the job receives the edit made before it left memory"
    );
    client_b.edit(job, append_notes(note)).await?;
    let stored = eventually(SETTLE, "the server stores device B's edit", || async {
        let stored = server.stored_doc(job).ok()?;
        notes(&stored)
            .is_some_and(|n| n.contains(note))
            .then_some(stored)
    })
    .await?;
    assert_eq!(
        fault_cause(&stored).as_deref(),
        Some("Worn start capacitor")
    );
    client_b.close();
    Ok(())
}

/// Issue 17 (memory per idle document): once its devices are gone, a job keeps only its saved
/// bytes in the server's memory (`limits.document_dormant`), still loaded. A device that never
/// held it receives every change once it wakes, and its edit is stored on top; after that
/// device leaves the job sleeps again. (That a wake reads nothing from storage is the
/// simulator's property 4b.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dormant_job_wakes_from_its_saved_bytes_and_syncs_whole() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_with(data.path(), |config| {
        config.limits.document_dormant = Duration::from_secs(1);
    })
    .await?;
    let (job, b) = a_job_device_a_edited_and_left(&server, devices.path()).await?;
    let metrics = &server.state.metrics;
    eventually(SETTLE, "every loaded document goes dormant", || async {
        let loaded = metrics.loaded_documents.get();
        (loaded > 0 && metrics.dormant_documents.get() == loaded).then_some(())
    })
    .await?;
    let loaded = metrics.loaded_documents.get();
    device_b_receives_and_edits(&server, devices.path(), &b, job, "after the sleep").await?;
    assert_eq!(
        metrics.loaded_documents.get(),
        loaded,
        "woken in place: nothing loaded twice or dropped"
    );
    eventually(
        SETTLE,
        "the job sleeps again once device B left",
        || async {
            (metrics.dormant_documents.get() == metrics.loaded_documents.get()).then_some(())
        },
    )
    .await?;
    server.stop().await?;
    Ok(())
}

/// Issue 17 (memory per idle document): once its devices are gone, a job is evicted from the
/// server's memory and the hub gives the freed memory back to the system on a quiet tick.
/// Neither loses anything: the job loads again from storage, takes a device's edit, and a
/// device that never held it receives every change, the edit made before the eviction too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_job_whose_memory_was_given_back_still_syncs() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_with(data.path(), |config| {
        config.limits.document_idle = Duration::ZERO;
    })
    .await?;
    let (job, b) = a_job_device_a_edited_and_left(&server, devices.path()).await?;
    let metrics = &server.state.metrics;
    eventually(
        SETTLE,
        "the server has evicted every document and given free memory back",
        || async {
            (metrics.loaded_documents.get() == 0 && metrics.memory_released.get() > 0).then_some(())
        },
    )
    .await?;
    assert!(
        metrics.heap_in_use.get() > 0,
        "the heap in use is reported when memory is given back"
    );
    device_b_receives_and_edits(&server, devices.path(), &b, job, "after the eviction").await?;
    server.stop().await?;
    Ok(())
}

/// Issue 17 (a byte budget for documents): a branch under a 1 MiB `max_document_memory_mb`
/// whose desk creates more jobs than that holds: idle jobs leave memory once the documents
/// held exceed it, well before `document_idle`, so what the documents take stays near the
/// budget; and a job that left is served whole to a device that asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_jobs_leave_memory_past_the_byte_budget_and_are_served_again() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_with(data.path(), |config| {
        config.limits.max_document_memory_mb = 1;
        config.limits.hub_shards = Some(1);
    })
    .await?;
    // About 20 KB each as the budget counts them: 80 take half as much again as it allows.
    const JOBS: i64 = 80;
    let budget = 1024 * 1024;
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        jobs.push(server.create_job("tech-wang").await?.job);
    }
    let metrics = &server.state.metrics;
    let loaded = eventually(SETTLE, "the documents held fit the budget", || async {
        let memory = metrics.document_memory.get();
        (memory > 0 && memory < budget).then(|| metrics.loaded_documents.get())
    })
    .await?;
    // `document_idle` is 300 s: only the budget makes an idle job leave.
    assert!(
        loaded < JOBS,
        "idle jobs left memory under the budget: {loaded} documents held"
    );

    let wang = server.enroll("tech-wang", "dev-wang")?;
    let device = server.connect_device(&wang, devices.path()).await?;
    for &job in &jobs[..3] {
        device.subscribe(job);
    }
    for &job in &jobs[..3] {
        assert!(
            device.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await,
            "a job the budget evicted is served whole"
        );
    }
    device.close();
    server.stop().await?;
    Ok(())
}

/// Issue 17: a server whose engine is split into three shards syncs jobs spread over all of
/// them between two devices, answers each device's handshake once (no connection-level
/// refusal), counts the documents of every shard in its gauge, and what it stored is the
/// same to a server with one shard after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_split_into_shards_syncs_jobs_held_by_every_shard() -> anyhow::Result<()> {
    use std::collections::BTreeSet;

    use fieldsync_shared::sync::shard_of;

    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_with(data.path(), |c| c.limits.hub_shards = Some(3)).await?;
    assert_eq!(server.state.hub.shards(), 3);
    let a = server.enroll("tech-wang", "dev-a")?;
    let b = server.enroll("tech-wang", "dev-b")?;
    let mut jobs = Vec::new();
    for _ in 0..24 {
        jobs.push(server.create_job("tech-wang").await?.job);
    }
    let owners: BTreeSet<usize> = jobs.iter().map(|j| shard_of(j, 3)).collect();
    assert_eq!(owners.len(), 3, "24 random ids land on every shard");

    let client_a = server.connect_device(&a, devices.path()).await?;
    let client_b = server.connect_device(&b, devices.path()).await?;
    for job in &jobs {
        client_a.subscribe(*job);
        client_b.subscribe(*job);
    }
    for job in &jobs {
        assert!(
            client_a
                .wait_for(*job, SETTLE, |d| read_job(d).is_ok())
                .await,
            "device A receives job {job} (shard {})",
            shard_of(job, 3)
        );
        client_a
            .edit(*job, set_fault_cause("Seized fan motor"))
            .await?;
    }
    for job in &jobs {
        assert!(
            client_b
                .wait_for(*job, SETTLE, |d| fault_cause(d).as_deref()
                    == Some("Seized fan motor"))
                .await,
            "device B sees device A's edit of job {job} (shard {})",
            shard_of(job, 3)
        );
    }
    let loaded = server.state.metrics.loaded_documents.get();
    assert!(
        loaded >= 24,
        "the gauge adds up the shards' documents: {loaded}"
    );
    let refusals = server.refusals().await?;
    for reason in [
        "not_joined",
        "duplicate_join",
        "peer_id_mismatch",
        "sender_mismatch",
    ] {
        assert!(
            !refusals
                .iter()
                .any(|l| l.contains(reason) && !l.ends_with(" 0")),
            "{reason}: {refusals:?}"
        );
    }

    client_a.close();
    client_b.close();
    server.stop().await?;
    let server = TestServer::start_with(data.path(), |c| c.limits.hub_shards = Some(1)).await?;
    let fresh = temp_dir()?;
    let client_c = server.connect_device(&a, fresh.path()).await?;
    for job in &jobs {
        client_c.subscribe(*job);
    }
    for job in &jobs {
        assert!(
            client_c
                .wait_for(*job, SETTLE, |d| fault_cause(d).as_deref()
                    == Some("Seized fan motor"))
                .await,
            "one shard serves job {job} as three stored it"
        );
    }
    server.stop().await?;
    Ok(())
}
