//! A device sees only its technician's jobs (edge server issue, "Tests that must exist";
//! DESIGN.md: access decisions come from the server's records, never from a document a device
//! can write).
//!
//! Technician A's device asks for technician B's job and index and for ids nobody has, over
//! the client and over a raw socket, and writes links to B's job into every document it can
//! reach. It never receives a byte of B's content and B's job never changes. Revoking the
//! device closes its live connection and refuses the next one.

use std::collections::BTreeSet;
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use fieldsync_client::{ClientEvent, ConnectError, SyncClient};
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::job::index::read_index;
use fieldsync_shared::protocol::Message;
use fieldsync_shared::protocol::message::{PeerId, SyncMessage};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_tests::{
    CreatedJob, Incoming, RawPeer, SETTLE, TestServer, append_notes, cli, eventually,
    message_carrying_changes, notes, notes_of, temp_dir,
};
use serde_json::Value;
use tempfile::TempDir;

/// A server with two technicians, a job each, and technician A's device connected.
struct Branch {
    server: TestServer,
    _data: TempDir,
    devices: TempDir,
    dev_a: DeviceId,
    a: CreatedJob,
    b: CreatedJob,
    client_a: SyncClient,
    /// B's job as the server stored it before A did anything.
    b_before: Value,
}

impl Branch {
    async fn start() -> anyhow::Result<Self> {
        let data = temp_dir()?;
        let devices = temp_dir()?;
        let server = TestServer::start_in(data.path()).await?;
        let dev_a = server.enroll("tech-a", "dev-a")?;
        server.enroll("tech-a", "dev-a2")?;
        server.enroll("tech-b", "dev-b")?;
        let a = server.create_job("tech-a").await?;
        let b = server.create_job("tech-b").await?;
        let b_before = server.get_job(b.job).await?;

        // A's own documents do arrive: the refusals below are about whose they are.
        let client_a = server.connect_device(&dev_a, devices.path()).await?;
        client_a.subscribe(a.job);
        client_a.subscribe(a.index);
        assert!(
            client_a
                .wait_for(a.job, SETTLE, |d| notes(d).is_some())
                .await,
            "A receives its own job"
        );
        assert!(
            client_a
                .wait_for(a.index, SETTLE, |d| read_index(d).is_ok())
                .await,
            "A receives its own assignment index"
        );
        Ok(Self {
            server,
            _data: data,
            devices,
            dev_a,
            a,
            b,
            client_a,
            b_before,
        })
    }

    /// Subscribes A's client to `docs` and waits until the server has refused every one.
    async fn assert_unavailable_to_a(&self, docs: &[DocumentId]) -> anyhow::Result<()> {
        let mut events = self.client_a.events();
        for doc in docs {
            self.client_a.subscribe(*doc);
        }
        let mut waiting: BTreeSet<DocumentId> = docs.iter().copied().collect();
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(ClientEvent::DocUnavailable { doc })) => {
                    waiting.remove(&doc);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => anyhow::bail!("client events ended: {e}"),
                Err(_) => anyhow::bail!("no doc-unavailable for {waiting:?}"),
            }
        }
        for doc in docs {
            let held = self.client_a.read(*doc).await;
            assert!(
                held.is_none_or(|d| d.get_heads().is_empty()),
                "A's device holds nothing of {doc}"
            );
        }
        Ok(())
    }

    async fn assert_b_unchanged(&self) -> anyhow::Result<()> {
        let now = self.server.get_job(self.b.job).await?;
        assert_eq!(now["heads"], self.b_before["heads"], "B's job is unchanged");
        assert_eq!(now["job"], self.b_before["job"]);
        Ok(())
    }

    async fn raw_a(&self) -> anyhow::Result<RawPeer> {
        let token = self
            .server
            .device_token(&self.dev_a, Duration::from_secs(600))?;
        RawPeer::joined(&self.server.ws_url(), &token, "dev-a:raw").await
    }
}

/// A sync message carrying a made-up document's change, for any id.
fn forged_changes() -> anyhow::Result<Vec<u8>> {
    let mut forged = Automerge::new();
    let mut tx = forged.transaction();
    tx.put(ROOT, "notes", "written by A")?;
    tx.commit();
    message_carrying_changes(&forged, &Automerge::new())
}

fn sync_message(raw: &RawPeer, doc: DocumentId, data: Vec<u8>) -> SyncMessage {
    SyncMessage {
        sender_id: PeerId::new(raw.peer_id.clone()),
        target_id: PeerId::new("server"),
        document_id: doc,
        data,
    }
}

fn empty_request() -> Vec<u8> {
    Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .map(|m| m.encode())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_never_receives_another_technicians_job_whatever_id_it_asks_for()
-> anyhow::Result<()> {
    let branch = Branch::start().await?;
    let mut asked = vec![branch.b.job, branch.b.index];
    asked.extend((0..5).map(|_| DocumentId::random()));
    branch.assert_unavailable_to_a(&asked).await?;

    // Over a raw socket, with `request`, with `sync`, and with a sync message that carries a
    // change: each id gets `doc-unavailable` and nothing else.
    let mut raw = branch.raw_a().await?;
    let forged = forged_changes()?;
    for (doc, data, request) in [
        (branch.b.job, empty_request(), true),
        (branch.b.index, empty_request(), false),
        (branch.b.job, forged.clone(), false),
        (branch.b.index, forged.clone(), true),
    ] {
        let payload = sync_message(&raw, doc, data);
        raw.send(&if request {
            Message::Request(payload)
        } else {
            Message::Sync(payload)
        })
        .await?;
        match raw.next(SETTLE).await? {
            Incoming::Message(Message::DocUnavailable(m)) => assert_eq!(m.document_id, doc),
            other => panic!("expected doc-unavailable for {doc}, got {other:?}"),
        }
    }
    branch.assert_b_unchanged().await?;
    branch.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_a_device_writes_into_its_own_documents_grant_it_nothing() -> anyhow::Result<()> {
    let branch = Branch::start().await?;
    let (a, b) = (branch.a, branch.b);

    // A link to B's job in A's own job is just text: the server stores it, and grants nothing.
    branch
        .client_a
        .edit(a.job, append_notes(format!("see {}", b.job.url())))
        .await?;
    eventually(SETTLE, "the server stores A's note", || async {
        branch
            .server
            .get_job(a.job)
            .await
            .ok()
            .filter(|body| notes_of(body).contains(&b.job.url()))
    })
    .await?;

    // A's assignment index is read-only for A. Adding B's job to it changes A's own copy; the
    // server tells A's client not to send such changes, and refuses them from a device that
    // sends them anyway.
    let b_url = b.job.url();
    branch
        .client_a
        .edit(
            a.index,
            LocalEdit::Change(Box::new(move |doc| {
                let mut tx = doc.transaction();
                let (_, jobs) = tx
                    .get(ROOT, "jobs")
                    .map_err(|e| e.to_string())?
                    .ok_or("no jobs list")?;
                tx.insert(&jobs, 0, b_url.as_str())
                    .map_err(|e| e.to_string())?;
                tx.commit();
                Ok(())
            })),
        )
        .await?;
    // One socket, in order: once a later edit is stored, whatever the client sent about the
    // index before it has been handled.
    branch.client_a.edit(a.job, append_notes(" (1)")).await?;
    eventually(SETTLE, "the server stores A's next edit", || async {
        branch
            .server
            .get_job(a.job)
            .await
            .ok()
            .filter(|body| notes_of(body).ends_with(" (1)"))
    })
    .await?;
    let doctored = branch
        .client_a
        .read(a.index)
        .await
        .ok_or_else(|| anyhow::anyhow!("A's client lost its index"))?;
    assert!(read_index(&doctored)?.jobs.contains(&b.job.url()));
    let stored_index = || -> anyhow::Result<Automerge> {
        let chunks = branch
            .server
            .state
            .store
            .load_doc(&a.index.to_string())?
            .unwrap_or_default();
        let mut stored = Automerge::new();
        for chunk in &chunks {
            stored.load_incremental(chunk)?;
        }
        Ok(stored)
    };
    let mut raw = branch.raw_a().await?;
    let data = message_carrying_changes(&doctored, &stored_index()?)?;
    raw.send(&Message::Sync(sync_message(&raw, a.index, data)))
        .await?;
    let metrics = &branch.server.state.metrics;
    // Refused by the index's write table, which names the path (only the server writes it).
    eventually(SETTLE, "the server refuses the index change", || async {
        (metrics.refusals("write_forbidden") > 0).then_some(())
    })
    .await?;

    // Neither the stored index nor what the server serves lists B's job.
    assert_eq!(read_index(&stored_index()?)?.jobs, vec![a.job.url()]);
    let a2 = branch
        .server
        .connect_device(&DeviceId::new("dev-a2")?, branch.devices.path())
        .await?;
    a2.subscribe(a.index);
    assert!(
        a2.wait_for(a.index, SETTLE, |d| read_index(d).is_ok())
            .await,
        "A's second device receives the index"
    );
    let served = a2.read(a.index).await.map(|d| read_index(&d));
    assert_eq!(
        served.transpose()?.map(|i| i.jobs),
        Some(vec![a.job.url()]),
        "the index the server serves lists only A's job"
    );

    // And B's job stays out of reach, unchanged.
    branch.assert_unavailable_to_a(&[b.job]).await?;
    branch.assert_b_unchanged().await?;

    // The refused change does not start an endless exchange with A's client: an edit round
    // trip afterwards costs a handful of messages, not thousands.
    let before = metrics.messages_in.get();
    branch.client_a.edit(a.job, append_notes(" (2)")).await?;
    eventually(SETTLE, "the server stores A's last edit", || async {
        branch
            .server
            .get_job(a.job)
            .await
            .ok()
            .filter(|body| notes_of(body).ends_with(" (2)"))
    })
    .await?;
    let spent = metrics.messages_in.get() - before;
    assert!(spent < 50, "{spent} messages for one edit");
    branch.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_closes_its_live_connection_and_refuses_the_next() -> anyhow::Result<()> {
    let branch = Branch::start().await?;
    let mut events = branch.client_a.events();

    // `fieldsync device revoke` is another process writing the same database; the running
    // server notices and closes the device's connection.
    let out = cli(
        &branch.server.data_dir,
        &["device", "revoke", "--device", "dev-a"],
    )?;
    assert_eq!(serde_json::from_str::<Value>(&out)?["revoked"], true);
    let closed = tokio::time::timeout(SETTLE, async {
        loop {
            if let Ok(ClientEvent::Closed { code, reason }) = events.recv().await {
                return (code, reason);
            }
        }
    })
    .await?;
    assert_eq!(closed.0, Some(1008), "{closed:?}");
    assert!(closed.1.contains("revoked"), "{closed:?}");

    let refused = branch
        .server
        .connect_device(&branch.dev_a, branch.devices.path())
        .await
        .err()
        .and_then(|e| e.downcast::<ConnectError>().ok());
    match refused {
        Some(ConnectError::Refused {
            status,
            code,
            reason,
        }) => {
            assert_eq!(status, 401);
            assert_eq!(code, "revoked", "{reason}");
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    branch.server.stop().await
}
