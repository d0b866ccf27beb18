//! Two real clients sync a job through a real server (edge server issue).

use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
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
