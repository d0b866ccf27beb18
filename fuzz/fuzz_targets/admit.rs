//! Write-authority admission of changes a device hands over outside sync
//! (`sync::check_offline_changes`: the chunk check with its inflation caps, decoding, ordering
//! and the op-by-op check against the job table), against the fixture job document. The
//! server runs it for a request: a panic that escapes it is a crash (a 500 for bad input).
//! The panics of automerge it contains by design (loading a chunk, `decode_changes`, and
//! expanding a change for the write check, `sync::admit::check`) are let through.
//!
//! What it accepts must be in dependency order, each change building on the document or on
//! one accepted before it.
//!
//! The first byte is flags: bit 0 set makes the chunks' checksums right first
//! (`fieldsync_fuzz::fix_chunk_checksums`). The rest is the hand-over.

#![no_main]

use std::collections::HashSet;

use automerge::{ChangeHash, ReadDoc};
use fieldsync_fuzz::{BASE_JOB, fix_chunk_checksums, sync_limits, with_contained_panics};
use fieldsync_shared::authority::{DocKind, Writer, table};
use fieldsync_shared::sync::check_offline_changes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| with_contained_panics(|| run(input)));

fn run(input: &[u8]) {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let mut data = data.to_vec();
    if flags & 1 == 1 {
        fix_chunk_checksums(&mut data);
    }
    let data = &data[..];
    let doc = &*BASE_JOB;
    let Ok(changes) = check_offline_changes(
        doc,
        data,
        &sync_limits(),
        table(DocKind::Job),
        Writer::Device,
    ) else {
        return;
    };
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    for change in &changes {
        assert!(
            doc.get_change_by_hash(&change.hash()).is_none(),
            "a held change is returned"
        );
        for dep in change.deps() {
            assert!(
                seen.contains(dep) || doc.get_change_by_hash(dep).is_some(),
                "change {} comes before its dependency {dep}",
                change.hash()
            );
        }
        seen.insert(change.hash());
    }
}
