//! Two real clients sync a job through a real server (edge server issue).

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_tests::{SETTLE, TestServer, temp_dir};

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
