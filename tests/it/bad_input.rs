//! Hostile and broken input over `/sync` (edge server issue, "Tests that must exist").
//!
//! A device with a valid token sends what no honest client would. Each gets a clear refusal:
//! an `error` message and a close frame whose code and reason say why (or `doc-unavailable`,
//! for documents it may not have). Meanwhile the server loads nothing for it, and two healthy
//! devices of the same technician, on the same job the attacker can reach, keep syncing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use fieldsync_client::SyncClient;
use fieldsync_server::config::Config;
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::protocol::Message;
use fieldsync_shared::protocol::message::{PeerId, SyncMessage};
use fieldsync_tests::{
    CreatedJob, Incoming, RawPeer, Refusal, SETTLE, TestServer, append_notes, notes, temp_dir,
};
use tempfile::TempDir;

/// A server, two healthy devices syncing a job, and an attacker device of the same
/// technician (so the healthy job is within its reach).
struct Fixture {
    server: TestServer,
    _data: TempDir,
    _devices: TempDir,
    job: CreatedJob,
    attacker: DeviceId,
    writer: SyncClient,
    reader: SyncClient,
    healthy_edits: AtomicUsize,
    /// Documents loaded with only the healthy devices at work.
    baseline_docs: i64,
    /// The most documents ever loaded since the baseline, sampled every millisecond.
    peak_docs: Arc<AtomicI64>,
    sampling: Arc<AtomicBool>,
}

impl Fixture {
    async fn start(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let data = temp_dir()?;
        let devices = temp_dir()?;
        let server = TestServer::start_with(data.path(), adjust).await?;
        let attacker = server.enroll("tech-wu", "dev-x")?;
        let writer_id = server.enroll("tech-wu", "dev-w")?;
        let reader_id = server.enroll("tech-wu", "dev-r")?;
        let job = server.create_job("tech-wu").await?;
        let writer = server.connect_device(&writer_id, devices.path()).await?;
        let reader = server.connect_device(&reader_id, devices.path()).await?;
        for client in [&writer, &reader] {
            client.subscribe(job.job);
            assert!(
                client
                    .wait_for(job.job, SETTLE, |d| notes(d).is_some())
                    .await,
                "a healthy device receives the job"
            );
        }
        let mut fixture = Self {
            server,
            _data: data,
            _devices: devices,
            job,
            attacker,
            writer,
            reader,
            healthy_edits: AtomicUsize::new(0),
            baseline_docs: 0,
            peak_docs: Arc::new(AtomicI64::new(0)),
            sampling: Arc::new(AtomicBool::new(true)),
        };
        fixture.assert_healthy().await?;
        fixture.baseline_docs = fixture.loaded_docs();
        fixture
            .peak_docs
            .store(fixture.baseline_docs, Ordering::Relaxed);
        let state = Arc::clone(&fixture.server.state);
        let (peak, sampling) = (
            Arc::clone(&fixture.peak_docs),
            Arc::clone(&fixture.sampling),
        );
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let now = state.metrics.loaded_documents.get();
                peak.fetch_max(now, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Ok(fixture)
    }

    fn loaded_docs(&self) -> i64 {
        self.server.state.metrics.loaded_documents.get()
    }

    /// The writer makes an edit and the reader receives it.
    async fn assert_healthy(&self) -> anyhow::Result<()> {
        let mark = format!("h{};", self.healthy_edits.fetch_add(1, Ordering::Relaxed));
        self.writer
            .edit(self.job.job, append_notes(mark.clone()))
            .await?;
        assert!(
            self.reader
                .wait_for(self.job.job, SETTLE, |d| notes(d)
                    .is_some_and(|n| n.ends_with(&mark)))
                .await,
            "the healthy reader receives the writer's edit {mark}"
        );
        Ok(())
    }

    fn token(&self) -> anyhow::Result<String> {
        self.server
            .device_token(&self.attacker, Duration::from_secs(600))
    }

    async fn attacker_joined(&self) -> anyhow::Result<RawPeer> {
        RawPeer::joined(&self.server.ws_url(), &self.token()?, "dev-x").await
    }

    async fn attacker_unjoined(&self) -> anyhow::Result<RawPeer> {
        Ok(RawPeer::connect(&self.server.ws_url(), Some(&self.token()?), "dev-x").await?)
    }

    /// A sync message of the attacker for `doc`.
    fn sync(&self, doc: DocumentId, data: Vec<u8>) -> Message {
        Message::Sync(payload(doc, data))
    }

    /// Checks the end of every test: healthy sync still works and nothing extra was ever
    /// loaded.
    async fn finish(self) -> anyhow::Result<()> {
        self.assert_healthy().await?;
        self.sampling.store(false, Ordering::Relaxed);
        assert_eq!(
            self.peak_docs.load(Ordering::Relaxed),
            self.baseline_docs,
            "the loaded-document count stayed flat"
        );
        assert_eq!(self.loaded_docs(), self.baseline_docs);
        self.server.stop().await
    }
}

fn payload(doc: DocumentId, data: Vec<u8>) -> SyncMessage {
    SyncMessage {
        sender_id: PeerId::new("dev-x"),
        target_id: PeerId::new("server"),
        document_id: doc,
        data,
    }
}

/// Asserts the server closed with `code` and a reason containing `why`; when `error` is set,
/// an `error` message saying the same came first.
fn assert_refused(refusal: &Refusal, code: u16, why: &str, error: bool) {
    let (got, reason) = refusal.close.clone().unwrap_or_default();
    assert_eq!(got, code, "{refusal:?}");
    assert!(
        reason.contains(why),
        "close reason {reason:?} should say {why:?}"
    );
    if error {
        assert!(
            refusal.errors.iter().any(|e| e.contains(why)),
            "an error message should say {why:?}: {refusal:?}"
        );
    }
}

/// LEB128 as automerge writes lengths and counts.
fn uleb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A v1 sync message with no heads, needs or changes and one `have` whose bloom filter has
/// these parameters (and as many bytes of bits as they call for).
fn sync_with_bloom(entries: u64, bits_per_entry: u64, probes: u64) -> Vec<u8> {
    let mut bloom = Vec::new();
    uleb(&mut bloom, entries);
    uleb(&mut bloom, bits_per_entry);
    uleb(&mut bloom, probes);
    let bits = usize::try_from((entries * bits_per_entry).div_ceil(8)).unwrap_or(0);
    bloom.extend(std::iter::repeat_n(0xa5, bits));
    let mut out = vec![0x42, 0, 0, 1, 0];
    uleb(&mut out, bloom.len() as u64);
    out.extend(bloom);
    out.push(0);
    out
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 256, "strings of up to 255 bytes only");
    if s.len() < 24 {
        out.push(0x60 | s.len() as u8);
    } else {
        out.extend_from_slice(&[0x78, s.len() as u8]);
    }
    out.extend_from_slice(s.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cbor_is_refused_with_a_protocol_close_that_says_why() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    for garbage in [vec![0xff, 0x00, 0x13], b"hello".to_vec(), vec![0xa1]] {
        let mut peer = f.attacker_joined().await?;
        peer.send_bytes(garbage).await?;
        assert_refused(&peer.refusal(SETTLE).await?, 1002, "bad message", true);
    }
    f.finish().await
}

/// A well-formed message of a type we do not know: `frobnicate`, from `dev-x`.
fn unknown_type_frame() -> Vec<u8> {
    let mut frame = vec![0xa2];
    cbor_text(&mut frame, "type");
    cbor_text(&mut frame, "frobnicate");
    cbor_text(&mut frame, "senderId");
    cbor_text(&mut frame, "dev-x");
    frame
}

/// Before `join` the peer must speak the handshake: an unknown type there closes, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_before_join_is_refused_by_name() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_unjoined().await?;
    peer.send_bytes(unknown_type_frame()).await?;
    let refusal = peer.refusal(SETTLE).await?;
    assert_refused(&refusal, 1002, "bad message", true);
    assert!(
        refusal.close.is_some_and(|(_, r)| r.contains("frobnicate")),
        "the reason names the type"
    );
    f.finish().await
}

/// Forward compatibility (automerge-repo 2.6+ adds message types): a joined peer's message of
/// an unknown type is dropped and counted, and its connection goes on; a malformed message
/// of a known type still closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_after_join_is_dropped_and_counted() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_joined().await?;
    peer.send_bytes(unknown_type_frame()).await?;
    // Still served: a request for its job is answered with its content.
    let request = Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .map(|m| m.encode())
        .unwrap_or_default();
    peer.send(&Message::Request(payload(f.job.job, request)))
        .await?;
    loop {
        match peer.next(SETTLE).await? {
            Incoming::Message(Message::Sync(s)) if s.document_id == f.job.job => break,
            Incoming::Message(_) => {}
            Incoming::Closed(close) => anyhow::bail!("closed over an unknown type: {close:?}"),
        }
    }
    assert_eq!(
        f.server.state.metrics.refusals("unknown_message_type"),
        1,
        "counted"
    );
    // A `sync` without its `data` is malformed, not unknown: closed.
    let mut broken = vec![0xa4];
    for (k, v) in [
        ("type", "sync"),
        ("senderId", "dev-x"),
        ("targetId", "server"),
        ("documentId", f.job.job.to_string().as_str()),
    ] {
        cbor_text(&mut broken, k);
        cbor_text(&mut broken, v);
    }
    peer.send_bytes(broken).await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1002, "bad message", true);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_without_protocol_version_1_is_refused() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_unjoined().await?;
    peer.send(&peer.join_message(&["2", "0.9"])).await?;
    assert_refused(
        &peer.refusal(SETTLE).await?,
        1002,
        "unsupported protocol versions",
        true,
    );
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_before_join_is_refused() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_unjoined().await?;
    let request = Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .map(|m| m.encode())
        .unwrap_or_default();
    peer.send(&f.sync(f.job.job, request)).await?;
    assert_refused(
        &peer.refusal(SETTLE).await?,
        1002,
        "expected join first, got sync",
        true,
    );
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_automerge_bytes_in_a_sync_message_close_only_that_connection() -> anyhow::Result<()>
{
    let f = Fixture::start(|_| {}).await?;
    // Structurally broken: a head count with no hash after it, and an unknown type byte.
    for data in [vec![0x42, 0x01, 0x02], vec![0x17, 0, 0, 0, 0]] {
        let mut peer = f.attacker_joined().await?;
        peer.send(&f.sync(f.job.job, data)).await?;
        assert_refused(&peer.refusal(SETTLE).await?, 1002, "bad sync message", true);
    }
    // Well formed, but the change inside is corrupt: the last byte of a real change flipped.
    // automerge alone would drop it without a word (the job already has content).
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "notes", "x")?;
    tx.commit();
    let mut change = doc.save_after(&[]);
    if let Some(last) = change.last_mut() {
        *last ^= 0x01;
    }
    let mut data = vec![0x42, 0, 0, 0, 1];
    uleb(&mut data, change.len() as u64);
    data.extend(change);
    let mut peer = f.attacker_joined().await?;
    peer.send(&f.sync(f.job.job, data)).await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1002, "checksum", true);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bloom_filter_with_zero_bits_per_entry_is_refused_before_automerge_sees_it()
-> anyhow::Result<()> {
    // automerge 0.12 divides by zero on this filter when it next generates for the peer.
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_joined().await?;
    peer.send(&f.sync(f.job.job, sync_with_bloom(3, 0, 7)))
        .await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1002, "bits_per_entry 0", true);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bloom_filter_with_a_huge_num_probes_is_refused_before_automerge_sees_it()
-> anyhow::Result<()> {
    // automerge 0.12 would allocate num_probes positions for every change it considers.
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_joined().await?;
    peer.send(&f.sync(f.job.job, sync_with_bloom(3, 10, 1 << 40)))
        .await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1002, "num_probes", true);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_max_frame_bytes_is_refused_with_1009() -> anyhow::Result<()> {
    let f = Fixture::start(|c| c.limits.max_frame_bytes = 64 * 1024).await?;
    let mut peer = f.attacker_joined().await?;
    peer.send_bytes(vec![0xa5; 100_000]).await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1009, "max_frame_bytes", false);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_is_refused_with_1003() -> anyhow::Result<()> {
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_joined().await?;
    peer.send_text(r#"{"type":"join","senderId":"dev-x"}"#)
        .await?;
    assert_refused(&peer.refusal(SETTLE).await?, 1003, "text frames", false);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_for_random_ids_gets_doc_unavailable_each_and_loads_nothing()
-> anyhow::Result<()> {
    const FLOOD: usize = 500;
    let f = Fixture::start(|_| {}).await?;
    let mut peer = f.attacker_joined().await?;
    let request = Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .map(|m| m.encode())
        .unwrap_or_default();
    let ids: Vec<DocumentId> = (0..FLOOD).map(|_| DocumentId::random()).collect();
    let flood = async {
        for id in &ids {
            peer.send(&Message::Request(payload(*id, request.clone())))
                .await?;
        }
        let mut answered = std::collections::BTreeSet::new();
        while answered.len() < FLOOD {
            match peer.next(SETTLE).await? {
                Incoming::Message(Message::DocUnavailable(m)) => {
                    anyhow::ensure!(answered.insert(m.document_id), "one answer per id");
                }
                other => anyhow::bail!("expected doc-unavailable, got {other:?}"),
            }
        }
        anyhow::ensure!(
            ids.iter().all(|id| answered.contains(id)),
            "every id was answered"
        );
        anyhow::Ok(peer)
    };
    // The healthy devices keep syncing while the flood is under way.
    let healthy = async {
        for _ in 0..3 {
            f.assert_healthy().await?;
        }
        anyhow::Ok(())
    };
    let (flooded, healthy) = tokio::join!(flood, healthy);
    healthy?;
    let mut peer = flooded?;

    // The connection is still good for what it may have.
    peer.send(&f.sync(f.job.job, request)).await?;
    match peer.next(SETTLE).await? {
        Incoming::Message(Message::Sync(m)) => assert_eq!(m.document_id, f.job.job),
        other => panic!("expected the job, got {other:?}"),
    }
    assert_eq!(
        f.server.state.metrics.refusals("forbidden"),
        FLOOD as u64,
        "each request was refused as forbidden, without a load"
    );
    f.finish().await
}

/// The compressed-change bomb of issue 12, against the real binary: one enrolled device sends
/// a sync message for its own job whose one change is deflated zeros that inflate to 256 MiB
/// (255 KiB on the wire). automerge 0.12 would inflate it without a limit and copy it again
/// (768 MiB); the server counts what it inflates to, refuses it past the cap with a reason,
/// and its resident memory never grows by 64 MiB. A healthy device keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compressed_change_bomb_is_refused_and_costs_the_server_no_memory() -> anyhow::Result<()>
{
    use fieldsync_tests::{ServerProcess, cli, connect_client, sample_job_body};
    use std::io::Write;

    let (data, devices) = (temp_dir()?, temp_dir()?);
    let server = ServerProcess::start(data.path())?;
    let enroll = |device: &str| -> anyhow::Result<(String, String)> {
        cli(
            data.path(),
            &[
                "device",
                "enroll",
                "--technician",
                "tech-wang",
                "--device",
                device,
            ],
        )?;
        let token = cli(data.path(), &["device", "token", "--device", device])?;
        Ok((device.to_owned(), token))
    };
    let (healthy, healthy_token) = enroll("dev-ok")?;
    let (_, attacker_token) = enroll("dev-x")?;
    let desk = cli(data.path(), &["desk", "token", "--role", "dispatcher"])?;
    let created: serde_json::Value = reqwest::Client::new()
        .post(server.http_url("/api/jobs"))
        .bearer_auth(&desk)
        .json(&sample_job_body("tech-wang"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let job: DocumentId = created["job_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no job id in {created}"))?;

    let store = Arc::new(fieldsync_storage::Store::open(
        devices.path().join("ok.sqlite"),
        fieldsync_storage::StoreConfig::default(),
    )?);
    let client = connect_client(&server.ws_url(), &healthy_token, &healthy, store).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| notes(d).is_some()).await);
    let base = server.http_url("");
    let healthy_edit = |mark: &'static str| {
        let (client, base, desk) = (&client, &base, &desk);
        async move {
            client.edit(job, append_notes(mark)).await?;
            fieldsync_tests::eventually(SETTLE, "the healthy edit is stored", || async {
                let body = fieldsync_tests::get_job(base, desk, job).await.ok()?;
                fieldsync_tests::notes_of(&body)
                    .ends_with(mark)
                    .then_some(())
            })
            .await
        }
    };
    healthy_edit("before;").await?;
    let resident_before = server.memory("VmRSS")?;

    // 256 MiB of zeros, deflated, as the data of a compressed change (type 2).
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&block)?;
    }
    let deflated = encoder.finish()?;
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 2];
    uleb(&mut chunk, deflated.len() as u64);
    chunk.extend_from_slice(&deflated);
    let bomb = sync::Message {
        heads: vec![],
        need: vec![],
        have: vec![],
        changes: sync::ChunkList::from(vec![chunk]),
        flags: None,
        version: sync::MessageVersion::V1,
    }
    .encode();
    assert!(bomb.len() < 300 * 1024, "{} bytes on the wire", bomb.len());

    let mut attacker = RawPeer::joined(&server.ws_url(), &attacker_token, "dev-x").await?;
    attacker.send(&Message::Sync(payload(job, bomb))).await?;
    let refusal = attacker.refusal(SETTLE).await?;
    let reason = refusal.close.clone().map(|(_, r)| r).unwrap_or_default();
    assert!(
        reason.contains("inflates to more than") && reason.contains("max_inflated_chunk_bytes"),
        "{refusal:?}"
    );

    healthy_edit("after;").await?;
    let peak = server.memory("VmHWM")?;
    let growth = peak.saturating_sub(resident_before);
    eprintln!(
        "compressed-change bomb: resident {} MiB before, peak {} MiB, growth {:.1} MiB",
        resident_before >> 20,
        peak >> 20,
        growth as f64 / f64::from(1 << 20)
    );
    assert!(growth < 64 << 20, "the server grew by {growth} bytes");
    client.close();
    Ok(())
}
