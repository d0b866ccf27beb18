//! `check_sync_message` with small limits (the inflation caps and the op count within reach),
//! then what the engine does with a message that passed (`sync::engine::on_sync` and
//! `process`): automerge decodes it, the inflated chunks replace the compressed ones, and
//! the job document receives it.
//!
//! The check promises that automerge can decode a message that passed, and use it, without
//! panicking: a panic in `decode` or in the `generate_sync_message` that answers it (the bloom
//! filters the check guards) is a crash here. automerge panicking while applying changes is
//! contained by the engine (`catch_unwind`, the connection closes), so it is contained here
//! too.
//!
//! The first byte is flags: bit 0 set makes the checksums of the message's chunks right
//! before the check (`fieldsync_fuzz::fix_sync_message_checksums`), so mutations inside a
//! chunk reach what is behind the checksum. The rest is the sync message.

#![no_main]

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::ReadDoc;
use automerge::sync::{self, SyncDoc};
use fieldsync_fuzz::{BASE_JOB, fix_sync_message_checksums, sync_limits, with_contained_panics};
use fieldsync_shared::protocol::check_sync_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| with_contained_panics(|| run(input)));

fn run(input: &[u8]) {
    let Some((&flags, message)) = input.split_first() else {
        return;
    };
    let mut message = message.to_vec();
    if flags & 1 == 1 {
        fix_sync_message_checksums(&mut message);
    }
    let data = &message[..];
    let limits = sync_limits();
    let Ok(checked) = check_sync_message(data, &limits) else {
        return;
    };
    for (index, entry) in &checked.inflated {
        assert!(
            entry.len() <= data.len() + limits.max_inflated_message_bytes,
            "entry {index} inflated to {} bytes, past the caps",
            entry.len()
        );
    }
    let Ok(mut message) = sync::Message::decode(data) else {
        return;
    };
    if !checked.inflated.is_empty() {
        let mut entries: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
        for (index, entry) in checked.inflated {
            let slot = entries
                .get_mut(index)
                .unwrap_or_else(|| panic!("inflated entry {index} is not in the message"));
            *slot = entry;
        }
        message.changes = sync::ChunkList::from(entries);
    }
    let mut doc = BASE_JOB.clone();
    let mut state = sync::State::new();
    let received = catch_unwind(AssertUnwindSafe(|| {
        doc.receive_sync_message(&mut state, message)
    }));
    if let Ok(Ok(())) = received {
        let _ = doc.get_missing_deps(&checked.carried);
        let _ = doc.generate_sync_message(&mut state);
    }
}
