//! The seed corpora of the fuzzers in `fuzz/` (see docs/FUZZING.md), made from this crate's
//! test fixtures: real frames, sync messages, stored chunks, offline changes, signed reports
//! and key files, so each fuzzer starts from inputs that reach deep into its decoder.
//!
//! `FIELDSYNC_WRITE_FUZZ_SEEDS=1 cargo test -p fieldsync-shared fuzz_seeds` writes them to
//! `fuzz/seeds/<target>/`; without the variable the test checks that every committed seed is
//! still an input its decoder accepts, so a format change cannot leave the fuzzers starting
//! from inputs that are refused at the first byte. (The token seeds are the server's:
//! `server/src/auth.rs`.)
//!
//! The input layouts are the fuzz targets' own (`fuzz/fuzz_targets/*.rs`): `sync_check` and
//! `admit` begin with a flags byte, `report` with a mode byte, `stored_doc` with a count.

use std::path::{Path, PathBuf};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use crate::canonical;
use crate::ids::{DeviceId, DocumentId, TechnicianId};
use crate::job::doc::JobDoc;
use crate::job::fixtures::{actor, new_job};
use crate::keys::KeyPair;
use crate::protocol::message::*;
use crate::protocol::{self, Limits, SyncLimits};
use crate::report::{AckDraft, DeviceRecord, SignedReport, TrustStore, sign_acknowledgement};
use crate::rules::tests::sample_job;
use crate::time::Timestamp;

/// The job document `sync_check` and `admit` run against, in `fuzz/fixtures/`.
const BASE: &str = "base-job.automerge";

/// The keys the `report` fuzz target trusts (the report tests' keys).
const BRANCH_SEED: [u8; 32] = [1; 32];
const DEVICE_SEED: [u8; 32] = [2; 32];

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

/// The seeds, by target and file name.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let (base, messages, offline) = sync_material();
    out.push(("../fixtures", BASE.to_owned(), base));
    // Flags byte 1: the targets make the chunks' checksums right.
    for (i, bytes) in offline.into_iter().enumerate() {
        out.push(("admit", format!("offline-{i}"), [&[1][..], &bytes].concat()));
    }
    for (i, m) in messages.iter().enumerate() {
        out.push(("sync_check", format!("message-{i}"), [&[1][..], m].concat()));
    }
    for (i, frame) in frames(&messages).into_iter().enumerate() {
        out.push(("frame", format!("frame-{i}"), frame));
    }
    for (i, input) in stored_docs().into_iter().enumerate() {
        out.push(("stored_doc", format!("stored-{i}"), input));
    }
    let (reports, jcs) = report_material();
    for (i, input) in reports.into_iter().enumerate() {
        out.push(("report", format!("report-{i}"), input));
    }
    for (i, input) in jcs.into_iter().enumerate() {
        out.push(("jcs", format!("jcs-{i}"), input));
    }
    out
}

/// A job document on the server, a device's copy with edits (one of them large enough for
/// automerge to compress), the sync messages between them, and the device's edits as the
/// offline hand-over bytes (`save_after`), plain and with the big change compressed.
fn sync_material() -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
    let base = server.save();
    let heads = server.heads();
    let mut device = server.fork();
    device.set_actor(actor(1));
    device.set_fault_cause(Some("Fan relay")).expect("edit");
    device
        .set_fault_cause(Some(&"condensate pump seized; ".repeat(40)))
        .expect("edit");
    let server = server.inner_mut().document().clone();
    let device = device.inner_mut().document().clone();

    let mut messages = Vec::new();
    let (mut s_state, mut d_state) = (sync::State::new(), sync::State::new());
    let (mut s_doc, mut d_doc) = (server.clone(), device.clone());
    for _ in 0..6 {
        let mut quiet = true;
        if let Some(m) = s_doc.generate_sync_message(&mut s_state) {
            quiet = false;
            let bytes = m.encode();
            messages.push(bytes.clone());
            let m = sync::Message::decode(&bytes).expect("decode");
            d_doc
                .receive_sync_message(&mut d_state, m)
                .expect("receive");
        }
        if let Some(m) = d_doc.generate_sync_message(&mut d_state) {
            quiet = false;
            let bytes = m.encode();
            messages.push(bytes.clone());
            let m = sync::Message::decode(&bytes).expect("decode");
            s_doc
                .receive_sync_message(&mut s_state, m)
                .expect("receive");
        }
        if quiet {
            break;
        }
    }

    // A v1 message carrying the device's changes, the big one compressed (type 2).
    let mut changes = device.get_changes(&heads);
    let mut compressed = Vec::new();
    let mut message = vec![protocol::sync_check::MESSAGE_TYPE_SYNC, 0, 0, 0];
    uleb(&mut message, changes.len() as u64);
    for change in &mut changes {
        let bytes = change.bytes().into_owned();
        uleb(&mut message, bytes.len() as u64);
        message.extend_from_slice(&bytes);
        compressed.extend_from_slice(&bytes);
    }
    messages.push(message);

    let offline = vec![device.save_after(&heads), compressed];
    (base, messages, offline)
}

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

/// One frame of every type, the sync ones carrying the real sync messages.
fn frames(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let peer = |s: &str| PeerId::new(s);
    let doc = DocumentId::from_bytes([7; 16]);
    let storage = StorageId::new("3f0a6f8e-storage");
    let mut out = vec![
        Message::Join(JoinMessage {
            sender_id: peer("device-1"),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: PeerMetadata {
                storage_id: Some(storage.clone()),
                is_ephemeral: Some(false),
            },
        }),
        Message::Peer(PeerMessage {
            sender_id: peer("server"),
            target_id: peer("device-1"),
            selected_protocol_version: "1".into(),
            peer_metadata: PeerMetadata::default(),
        }),
        Message::Error(ErrorMessage {
            sender_id: Some(peer("server")),
            target_id: None,
            message: "unsupported protocol version".into(),
        }),
        Message::Leave(LeaveMessage {
            sender_id: peer("device-1"),
        }),
        Message::DocUnavailable(DocUnavailableMessage {
            sender_id: peer("server"),
            target_id: peer("device-1"),
            document_id: doc,
        }),
        Message::Ephemeral(EphemeralMessage {
            sender_id: peer("device-1"),
            target_id: peer("server"),
            count: (1 << 40) + 3,
            session_id: SessionId::new("s-1"),
            document_id: doc,
            data: vec![0xa1, 0x61, 0x78, 0x01],
        }),
        Message::RemoteSubscriptionChange(RemoteSubscriptionChangeMessage {
            sender_id: peer("device-1"),
            target_id: peer("server"),
            add: Some(vec![storage.clone()]),
            remove: None,
        }),
        Message::RemoteHeadsChanged(RemoteHeadsChangedMessage {
            sender_id: peer("server"),
            target_id: peer("device-1"),
            document_id: doc,
            new_heads: [(
                storage,
                RemoteHeads {
                    heads: vec![encode_head(&ChangeHash([9; 32]))],
                    timestamp: 1_790_000_000_000,
                },
            )]
            .into_iter()
            .collect(),
        }),
    ];
    for (i, data) in messages.iter().take(3).enumerate() {
        let m = SyncMessage {
            sender_id: peer("device-1"),
            target_id: peer("server"),
            document_id: doc,
            data: data.clone(),
        };
        out.push(if i == 0 {
            Message::Request(m)
        } else {
            Message::Sync(m)
        });
    }
    out.iter().map(protocol::encode).collect()
}

/// `stored_doc` inputs: a count byte, that many chunks each as a u16 LE length and its
/// bytes, and the rest as a stored sync state.
fn stored_docs() -> Vec<Vec<u8>> {
    let mut job = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
    let snapshot = job.save();
    let heads = job.heads();
    job.set_fault_cause(Some("Fan relay")).expect("edit");
    let first = job.inner_mut().document().save_after(&heads);
    let middle = job.heads();
    job.set_fault_category(Some("electrical")).expect("edit");
    let second = job.inner_mut().document().save_after(&middle);
    let doc = job.inner_mut().document().clone();
    // A sync state as the engine persists it (shared heads after a round).
    let mut state = sync::State::new();
    let _ = doc.generate_sync_message(&mut state);
    state.shared_heads = doc.get_heads();
    let state = state.encode();

    let input = |chunks: &[&[u8]], state: &[u8]| {
        // Bit 3: the target makes the chunks' checksums right.
        let mut out = vec![chunks.len() as u8 | 0x08];
        for chunk in chunks {
            let len = u16::try_from(chunk.len()).expect("small chunk");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(state);
        out
    };
    vec![
        input(&[&snapshot, &first, &second], &state),
        input(&[&snapshot], &[]),
        // The second change without the first: an orphan, dropped at load.
        input(&[&snapshot, &second], &state),
        input(&[&doc.save()], &state),
    ]
}

/// `report` inputs (mode byte, then the text) and `jcs` inputs.
fn report_material() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let branch = KeyPair::from_seed(&BRANCH_SEED);
    let device = KeyPair::from_seed(&DEVICE_SEED);
    let mut job = sample_job();
    let heads = ["bb".to_owned(), "aa".to_owned()];
    let draft = AckDraft {
        signer_name: "Chen Li".into(),
        signature: crate::job::model::SignatureMark::Strokes {
            strokes: vec![vec![[1, 2], [3, 4]]],
        },
        signed_at: Timestamp::from_millis(1_790_059_000_000),
        survey: job.acknowledgement.as_ref().expect("sample").survey.clone(),
    };
    let device_id = DeviceId::new("dev-1").expect("valid");
    job.acknowledgement = Some(
        sign_acknowledgement(&job, heads.clone(), draft, device_id.clone(), &device).expect("sign"),
    );
    let report = SignedReport::sign(
        &job,
        heads,
        Timestamp::from_millis(1_790_070_000_000),
        None,
        &branch,
    )
    .expect("sign");
    let json = report.to_canonical_json().expect("json");
    let pretty = serde_json::to_vec_pretty(&report).expect("json");
    let records = vec![DeviceRecord {
        device_id,
        branch_id: job.branch_id.clone(),
        technician: TechnicianId::new("tech-wang").expect("valid"),
        public_key: device.public().to_hex(),
        revoked_at: Some(Timestamp::from_millis(1_800_000_000_000)),
    }];
    let devices = serde_json::to_vec_pretty(&records).expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let (public, secret) = (dir.path().join("b.pub"), dir.path().join("b.key"));
    branch.public().save(&public).expect("save");
    branch.save(&secret).expect("save");
    let public = std::fs::read(&public).expect("read");
    let secret = std::fs::read(&secret).expect("read");

    let mode = |m: u8, text: &[u8]| [&[m][..], text].concat();
    let reports = vec![
        mode(0, &json),
        mode(1, &pretty),
        mode(2, &devices),
        mode(3, &public),
        mode(4, &secret),
    ];
    let job_json = serde_json::to_vec(&job).expect("json");
    let jcs = vec![
        json,
        job_json,
        br#"[1e21,1e-7,-0,0.1,123456789012345680000,5e-324,1.7976931348623157e308,9007199254740992,-1.5e-10]"#.to_vec(),
        r#"{"\u20ac":1,"\r":2,"1":3,"\ud83d\ude00":4,"\ufb33":5,"a\u0000\u001f\u2028\"\\/":[true,false,null,{}]}"#
            .as_bytes()
            .to_vec(),
    ];
    (reports, jcs)
}

/// Checks that a seed is what its target's decoder accepts.
fn check(target: &str, name: &str, bytes: &[u8], base: &Automerge) {
    let what = format!("fuzz/seeds/{target}/{name}");
    match target {
        "frame" => {
            protocol::decode(bytes, &Limits::default()).expect(&what);
        }
        "../fixtures" => {}
        "sync_check" => {
            protocol::check_sync_message(&bytes[1..], &SyncLimits::default()).expect(&what);
        }
        "admit" => {
            let changes = crate::sync::check_offline_changes(
                base,
                &bytes[1..],
                &SyncLimits::default(),
                crate::authority::table(crate::authority::DocKind::Job),
                crate::authority::Writer::Device,
            )
            .expect(&what);
            assert!(!changes.is_empty(), "{what}: no changes");
        }
        "stored_doc" => {
            let count = bytes[0] & 0x07;
            let mut rest = &bytes[1..];
            let mut doc = Automerge::new();
            for _ in 0..count {
                let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
                doc.load_incremental(&rest[2..2 + len]).expect(&what);
                rest = &rest[2 + len..];
            }
            assert!(!doc.get_heads().is_empty(), "{what}: empty document");
            if !rest.is_empty() {
                sync::State::decode(rest).expect(&what);
            }
        }
        "report" => {
            let text = std::str::from_utf8(&bytes[1..]).expect(&what);
            let path = Path::new(&what);
            match bytes[0] {
                0 | 1 => {
                    trust().verify_json(text.as_bytes()).expect(&what);
                }
                2 => {
                    let records: Vec<DeviceRecord> = serde_json::from_str(text).expect(&what);
                    assert_eq!(records.len(), 1, "{what}");
                }
                3 => {
                    crate::keys::PublicKey::parse_file(text, path).expect(&what);
                }
                4 => {
                    KeyPair::parse_file(text, path).expect(&what);
                }
                other => panic!("{what}: unknown mode {other}"),
            }
        }
        "jcs" => {
            let value: serde_json::Value = serde_json::from_slice(bytes).expect(&what);
            canonical::to_canonical_bytes(&value).expect(&what);
        }
        "token" => {} // The server's (server/src/auth.rs).
        other => panic!("{what}: no check for target {other}"),
    }
}

fn trust() -> TrustStore {
    let job = sample_job();
    let mut trust = TrustStore::new();
    trust.add_branch_key(
        job.branch_id.clone(),
        KeyPair::from_seed(&BRANCH_SEED).public().clone(),
    );
    trust
        .add_device(DeviceRecord {
            device_id: DeviceId::new("dev-1").expect("valid"),
            branch_id: job.branch_id,
            technician: TechnicianId::new("tech-wang").expect("valid"),
            public_key: KeyPair::from_seed(&DEVICE_SEED).public().to_hex(),
            revoked_at: None,
        })
        .expect("valid key");
    trust
}

#[test]
fn fuzz_seeds_are_inputs_their_decoders_accept() {
    let dir = seeds_dir();
    if std::env::var_os("FIELDSYNC_WRITE_FUZZ_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            let target_dir = dir.join(target);
            std::fs::create_dir_all(&target_dir).expect("create seeds dir");
            std::fs::write(target_dir.join(name), bytes).expect("write seed");
        }
    }
    // Whatever is committed must still be accepted; the generated seeds too.
    let base = std::fs::read(dir.join("../fixtures").join(BASE)).expect(
        "fuzz/fixtures/base-job.automerge: write the seeds with FIELDSYNC_WRITE_FUZZ_SEEDS=1",
    );
    let base = Automerge::load(&base).expect("base document");
    let mut checked = 0;
    for target in std::fs::read_dir(&dir).expect("fuzz/seeds") {
        let target = target.expect("entry").path();
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        for seed in std::fs::read_dir(&target).expect("seed dir") {
            let seed = seed.expect("entry").path();
            let file = seed
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            check(name, file, &std::fs::read(&seed).expect("read"), &base);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} seeds under fuzz/seeds");
    let generated = seeds();
    let base = generated
        .iter()
        .find(|(_, name, _)| name == BASE)
        .map(|(_, _, bytes)| Automerge::load(bytes).expect("base document"))
        .expect("a base document");
    for (target, name, bytes) in &generated {
        check(target, name, bytes, &base);
    }
}
