//! Inputs the fuzzers in `fuzz/` crashed on (docs/FUZZING.md), kept under
//! `tests/fuzz-regressions/` and fed to the same code here: each must now be refused
//! cleanly.

use std::path::{Path, PathBuf};

use automerge::Automerge;
use fieldsync_shared::authority::{self, Writer};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::protocol::message::{
    JoinMessage, Message, PeerId, PeerMetadata, StorageId, SyncMessage,
};
use fieldsync_shared::protocol::{SyncLimits, encode};
use fieldsync_shared::sync::{
    AllowAll, ConnId, Effect, Engine, EngineConfig, EngineRole, Input, OfflineError, Principal,
    check_offline_changes,
};

const NOW: i64 = 1_790_000_000_000;

fn regressions(prefix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-regressions")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no {prefix}* in {}", dir.display());
    found
}

/// A server engine that a peer (with a storage id) asked for `doc`, waiting for storage.
fn engine_loading(doc: DocumentId, storage_id: &StorageId) -> Engine {
    let mut config = EngineConfig::new(EngineRole::Server, "server");
    config.storage_id = Some("server-storage".into());
    let mut engine = Engine::new(config);
    let conn = ConnId(1);
    let frame = |message: Message| Input::Frame {
        conn,
        bytes: encode(&message),
    };
    let mut effects = Vec::new();
    for input in [
        Input::Connected {
            conn,
            principal: Principal::Server,
        },
        frame(Message::Join(JoinMessage {
            sender_id: PeerId::new("device"),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: PeerMetadata {
                storage_id: Some(storage_id.clone()),
                is_ephemeral: Some(false),
            },
        })),
        frame(Message::Request(SyncMessage {
            sender_id: PeerId::new("device"),
            target_id: PeerId::new("server"),
            document_id: doc,
            // An empty document's first sync message.
            data: vec![0x42, 0, 0, 1, 0, 0, 0],
        })),
    ] {
        effects.extend(engine.handle(input, NOW, &AllowAll));
    }
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::LoadDoc { doc: d } if *d == doc)),
        "{effects:?}"
    );
    engine
}

/// Stored chunks (`chunk-N`, in order) and a stored sync state (`sync-state`) on which the
/// engine panicked while loading the document (`stored_doc`): automerge panicked in
/// `fork_at` when the loaded document held orphaned changes, outside the `catch_unwind`
/// around loading, which took the whole hub thread down. The load must be refused as corrupt
/// and the engine go on.
#[test]
fn damaged_stored_documents_are_refused_not_panicked_on() {
    for case in regressions("stored_doc-") {
        let mut chunks = Vec::new();
        while let Ok(chunk) = std::fs::read(case.join(format!("chunk-{}", chunks.len()))) {
            chunks.push(chunk);
        }
        let state = std::fs::read(case.join("sync-state")).ok();
        let doc = DocumentId::from_bytes([7; 16]);
        let storage_id = StorageId::new("device-storage");
        let mut engine = engine_loading(doc, &storage_id);
        let mut effects = engine.handle(
            Input::SyncStateLoaded {
                doc,
                storage_id,
                state,
            },
            NOW,
            &AllowAll,
        );
        effects.extend(engine.handle(
            Input::DocLoaded {
                doc,
                chunks: Ok(Some(chunks)),
            },
            NOW,
            &AllowAll,
        ));
        let refused = effects.iter().find_map(|e| match e {
            Effect::Refused { reason, detail, .. } => Some((*reason, detail.as_str())),
            _ => None,
        });
        let case = case.display();
        assert!(
            matches!(refused, Some(("load_failed", detail)) if detail.contains("corrupt")),
            "{case}: {effects:?}"
        );
        // The engine goes on, and closes no connection over it.
        let later = engine.handle(Input::Tick, NOW + 1_000, &AllowAll);
        assert!(
            !later.iter().any(|e| matches!(e, Effect::Close { .. })),
            "{case}"
        );
    }
}

/// Devices' hand-overs (`handover`, checksums as the fuzzer fixed them) against the job they
/// were made on (`base.automerge`) on which the check panicked (`admit`), a 500 for the
/// hand-over and a closed connection in sync. `admit-actor-index`: a change whose ops name
/// an actor its header does not list parses, then automerge 0.12 panics expanding it for
/// the write check. `admit-document-load`: automerge panics loading a damaged document
/// chunk (since the change-column check below, that chunk is refused before automerge sees
/// it; the containment stays for damage the check cannot see). `admit-change-count` and
/// `admit-change-count-overlong`: 164-byte document chunks whose change columns claim
/// millions of changes (the second with an overlong LEB128 that automerge reads), which
/// automerge decoded one by one, for seconds and gigabytes; `check_chunk_sequence` refuses
/// them first. Each must be refused as malformed, by the check its `refusal` file names.
#[test]
fn hand_overs_automerge_cannot_read_are_refused_as_malformed() {
    for case in regressions("admit-") {
        let base = std::fs::read(case.join("base.automerge")).expect("base.automerge");
        let base = Automerge::load(&base).expect("the base document loads");
        let handover = std::fs::read(case.join("handover")).expect("handover");
        let result = check_offline_changes(
            &base,
            &handover,
            &SyncLimits::default(),
            &authority::JOB,
            Writer::Device,
        );
        // What the refusal must say: which check caught it.
        let reason = std::fs::read_to_string(case.join("refusal")).expect("refusal");
        let case = case.display();
        match result {
            Err(e @ OfflineError::Malformed(_)) => {
                assert_eq!(e.code(), "invalid_changes");
                assert!(e.to_string().contains(&reason), "{case}: {e}");
            }
            other => panic!("{case}: {other:?}"),
        }
    }
}
