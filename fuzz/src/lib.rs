//! What the fuzz targets share: the fixed clock, small limits, and the fixture document and
//! keys their seeds were made with (`shared/src/fuzz_seeds.rs`, `server/src/auth.rs`).
//!
//! Nothing here reads the wall clock: every target passes [`NOW`], so a crash replays the same
//! way on any day.

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{LazyLock, Once};

use automerge::Automerge;
use fieldsync_shared::protocol::{Limits, SyncLimits};
use fieldsync_shared::time::Timestamp;
use sha2::{Digest, Sha256};

/// The instant every target runs at: the tests' `NOW` (2026-09-21), when the token seeds are
/// valid.
pub const NOW: Timestamp = Timestamp::from_millis(1_790_000_000_000);

/// Wire limits small enough that the fuzzer reaches every one of them.
pub fn wire_limits() -> Limits {
    Limits {
        max_message_bytes: 64 * 1024,
        max_depth: 8,
        max_string_len: 256,
        max_array_items: 64,
        max_heads: 16,
    }
}

/// Sync limits small enough that the fuzzer reaches the inflation caps and the op count
/// (the defaults allow 16 MiB per chunk and 200 000 ops).
pub fn sync_limits() -> SyncLimits {
    SyncLimits {
        max_message_bytes: 64 * 1024,
        max_hashes: 64,
        max_haves: 4,
        max_changes: 64,
        max_bits_per_entry: 32,
        max_num_probes: 32,
        max_flag_bytes: 64,
        max_inflated_chunk_bytes: 32 * 1024,
        max_inflated_message_bytes: 96 * 1024,
        max_ops: 2_000,
    }
}

/// The job document the sync and admission seeds were made against (a fresh repair job,
/// saved by the server's actor).
pub static BASE_JOB: LazyLock<Automerge> = LazyLock::new(|| {
    Automerge::load(include_bytes!("../fixtures/base-job.automerge"))
        .unwrap_or_else(|e| panic!("fuzz/fixtures/base-job.automerge does not load: {e}"))
});

/// Splits `stored_doc` input: a count byte (its low 3 bits: at most 7 chunks), that many chunks each as a
/// u16 LE length and its bytes (cut short at the end of the input), and the rest as a stored
/// sync state.
pub fn split_stored(data: &[u8]) -> (Vec<Vec<u8>>, &[u8]) {
    let Some((&count, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut chunks = Vec::new();
    for _ in 0..count % 8 {
        let (len, tail) = match rest {
            [a, b, tail @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), tail),
            _ => (0, &[][..]),
        };
        let len = len.min(tail.len());
        chunks.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    (chunks, rest)
}

/// Every automerge chunk starts with these bytes.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Reads an unsigned LEB128 at `*at`, moving past it.
fn uleb(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Rewrites the checksum of every whole chunk of type 0 (document) or 1 (change) in a
/// sequence of chunks to match its bytes, as an honest peer's would. A fuzzer cannot guess
/// SHA-256, so without this every mutation inside a chunk stops at the checksum and
/// nothing behind it (automerge's parsing, the op count, write authority) is reached. Stops
/// at the first thing that is not a chunk.
pub fn fix_chunk_checksums(bytes: &mut [u8]) {
    let mut at = 0;
    while bytes.get(at..at + 4) == Some(&CHUNK_MAGIC[..]) {
        let start = at + 8;
        let Some(&kind) = bytes.get(start) else {
            return;
        };
        let mut end = start + 1;
        let Some(len) = uleb(bytes, &mut end) else {
            return;
        };
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| end.checked_add(len))
            .filter(|end| *end <= bytes.len())
        else {
            return;
        };
        if kind <= 1 {
            let hash = Sha256::digest(&bytes[start..end]);
            bytes[at + 4..at + 8].copy_from_slice(&hash[..4]);
        }
        at = end;
    }
}

/// [`fix_chunk_checksums`] for each entry of the changes of a sync message (the layout is
/// in `shared/src/protocol/sync_check.rs`), as far as the message makes sense.
pub fn fix_sync_message_checksums(message: &mut [u8]) {
    let mut entries = Vec::new();
    let _ = sync_message_entries(message, &mut entries);
    for (start, end) in entries {
        if let Some(entry) = message.get_mut(start..end) {
            fix_chunk_checksums(entry);
        }
    }
}

/// Collects the byte ranges of a sync message's change entries, until one does not parse.
fn sync_message_entries(m: &[u8], entries: &mut Vec<(usize, usize)>) -> Option<()> {
    let skip_hashes = |at: &mut usize| -> Option<()> {
        let count = usize::try_from(uleb(m, at)?).ok()?;
        *at = at.checked_add(count.checked_mul(32)?)?;
        Some(())
    };
    let mut at = 1;
    skip_hashes(&mut at)?;
    skip_hashes(&mut at)?;
    for _ in 0..uleb(m, &mut at)?.min(1024) {
        skip_hashes(&mut at)?;
        let len = usize::try_from(uleb(m, &mut at)?).ok()?;
        at = at.checked_add(len)?;
    }
    for _ in 0..uleb(m, &mut at)?.min(1024) {
        let len = usize::try_from(uleb(m, &mut at)?).ok()?;
        let end = at.checked_add(len)?;
        entries.push((at, end.min(m.len())));
        at = end;
    }
    Some(())
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Backtrace)>> = const { RefCell::new(None) };
}

/// Runs one input of a target whose code under test contains some panics by design: the
/// sync engine runs automerge inside `catch_unwind` (a panic there closes one connection or
/// refuses one load), so a panic it catches is not a crash. libfuzzer-sys's panic hook
/// aborts on every panic, caught or not; this replaces it with one that only remembers the
/// message, and a panic that escapes `body` is printed and goes on to libFuzzer, which
/// reports the crash.
pub fn with_contained_panics(body: impl FnOnce()) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let trace = Backtrace::force_capture();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some((info.to_string(), trace)));
        }));
    });
    LAST_PANIC.with(|last| last.borrow_mut().take());
    if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
        if let Some((message, trace)) = LAST_PANIC.with(|last| last.borrow_mut().take()) {
            eprintln!("{message}\n{trace}");
        }
        resume_unwind(panic);
    }
}
