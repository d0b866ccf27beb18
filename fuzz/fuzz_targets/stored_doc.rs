//! Documents loaded from storage. `fieldsync-storage` hands a document back as the chunks it
//! stored (`Store::load_doc`, bytes as written; only each row's kind and key are checked) and
//! a session's sync state as stored bytes; the sync engine turns them into a document and a
//! session (`Input::DocLoaded`: `load_chunks`, dropping orphaned changes with `fork_at` and
//! storing a snapshot; `Input::SyncStateLoaded`: `sync::State::decode`). A damaged or hostile
//! database row goes through that path, so it is driven here through the real engine: a
//! peer asks for a document, and the stored chunks and sync state it loads are the input
//! (see `fieldsync_fuzz::split_stored`; bit 3 of the count byte makes the chunks' checksums
//! right first, so mutations reach what is behind them). The engine must not panic,
//! whatever it loads.

#![no_main]

use fieldsync_fuzz::{NOW, fix_chunk_checksums, split_stored, with_contained_panics};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::protocol::encode;
use fieldsync_shared::protocol::message::{
    JoinMessage, Message, PeerId, PeerMetadata, StorageId, SyncMessage,
};
use fieldsync_shared::sync::{
    AllowAll, ConnId, Effect, Engine, EngineConfig, EngineRole, Input, Principal,
};
use libfuzzer_sys::fuzz_target;

fn frame(message: Message) -> Input {
    Input::Frame {
        conn: ConnId(1),
        bytes: encode(&message),
    }
}

/// Answers every write with success, as the store would, until the engine asks for none.
fn settle(engine: &mut Engine, mut effects: Vec<Effect>, now: i64) {
    for _ in 0..4 {
        let writes: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Write { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        if writes.is_empty() {
            return;
        }
        effects = writes
            .into_iter()
            .flat_map(|id| engine.handle(Input::WriteDone { id, result: Ok(()) }, now, &AllowAll))
            .collect();
    }
}

fuzz_target!(|data: &[u8]| with_contained_panics(|| run(data)));

fn run(data: &[u8]) {
    const DOC_BYTES: [u8; 16] = [7; 16];
    let doc = DocumentId::from_bytes(DOC_BYTES);
    let (mut chunks, state) = split_stored(data);
    if data.first().is_some_and(|count| count & 0x08 != 0) {
        chunks.iter_mut().for_each(|c| fix_chunk_checksums(c));
    }
    let now = NOW.as_millis();
    let mut config = EngineConfig::new(EngineRole::Server, "server");
    config.storage_id = Some("server-storage".into());
    let mut engine = Engine::new(config);
    let storage_id = StorageId::new("device-storage");
    let mut effects = Vec::new();
    for input in [
        Input::Connected {
            conn: ConnId(1),
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
        // An empty document's first sync message: the peer asks for the document.
        frame(Message::Request(SyncMessage {
            sender_id: PeerId::new("device"),
            target_id: PeerId::new("server"),
            document_id: doc,
            data: vec![0x42, 0, 0, 1, 0, 0, 0],
        })),
    ] {
        effects.extend(engine.handle(input, now, &AllowAll));
    }
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::LoadDoc { doc: d } if *d == doc)),
        "the engine did not load the document: {effects:?}"
    );
    let mut effects = engine.handle(
        Input::SyncStateLoaded {
            doc,
            storage_id,
            state: Some(state.to_vec()),
        },
        now,
        &AllowAll,
    );
    effects.extend(engine.handle(
        Input::DocLoaded {
            doc,
            chunks: Ok(Some(chunks)),
        },
        now,
        &AllowAll,
    ));
    settle(&mut engine, effects, now);
    let effects = engine.handle(Input::Tick, now + 1_000, &AllowAll);
    settle(&mut engine, effects, now + 1_000);
}
