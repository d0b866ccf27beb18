//! Structural validation of automerge sync messages before automerge decodes them.
//!
//! automerge 0.12 trusts the bloom filters in a peer's sync message. A filter that claims
//! entries but has `bits_per_entry = 0` has no bits, and the next
//! `generate_sync_message` for that peer takes a remainder modulo zero and panics; a filter
//! with a huge `num_probes` makes it allocate `num_probes` probe positions (up to 16 GiB)
//! for every change it considers. Both come from a single frame of a single peer, so
//! every sync message from the network goes through [`check_sync_message`] first.
//!
//! The format, as automerge 0.12 writes and reads it (`sync.rs`, `sync/bloom.rs`):
//!
//! ```text
//! message   = type:u8 (0x42 v1, 0x43 v2) heads need haves changes [flags] [ignored...]
//! heads     = count:uleb128 hash{count}            (hash = 32 bytes)
//! need      = count:uleb128 hash{count}
//! haves     = count:uleb128 have{count}
//! have      = last_sync:(count:uleb128 hash{count}) bloom_len:uleb128 bloom
//! bloom     = "" | num_entries:uleb128 bits_per_entry:uleb128 num_probes:uleb128
//!                  bits:byte{ceil(num_entries * bits_per_entry / 8)}
//! changes   = count:uleb128 (len:uleb128 chunk:byte{len}){count}
//! flags     = len:uleb128 byte{len}       (present only if bytes remain after the changes)
//! ```
//!
//! A v2 message has the same layout; its one "change" is a whole saved document. automerge
//! ignores whatever follows the flags (that is how flags were added compatibly), and so does
//! this check. The check reads lengths, the bloom parameters and the chunk headers, and
//! hashes each chunk to verify its checksum; it allocates nothing.
//!
//! Chunks are checked because automerge applies them with `load_incremental`, which on a
//! document that already has content drops a corrupt chunk without an error: the peer would
//! never learn why its change went nowhere. Each chunk is
//!
//! ```text
//! chunk     = magic:85 6f 4a 83  checksum:byte{4}  type:u8  len:uleb128  data:byte{len}
//! checksum  = first 4 bytes of SHA-256(type len data)
//! ```
//!
//! Types: 0 a whole document, 1 a change, 2 a change whose data is deflated, 3 a bundle.
//! What is deflated is inflated here first, with a cap, because automerge 0.12 inflates
//! without any limit: a 255 KiB compressed change of zeros makes it allocate 768 MiB
//! (DESIGN.md: every decoder that faces the network bounds what a compressed chunk inflates
//! to). A compressed change (type 2) is inflated into an ordinary change chunk that replaces
//! it in the message ([`CheckedSync::inflated`]), and its checksum, which covers the
//! uncompressed form, is verified then. A document (type 0) may deflate each of its columns;
//! those are inflated into a counting sink, bounded, and left to automerge. Bundles are an
//! experimental format automerge never puts in a sync message, so they are refused.
//!
//! The check also names what the message carries ([`CheckedSync::carried`]: each change's
//! hash, each document's heads), so the engine can tell afterwards whether automerge really
//! took every chunk and refuse a message it silently dropped part of.

/// Bounds on what [`check_sync_message`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// The largest sync message. It travels inside one WebSocket frame, so the frame limit
    /// bounds it too.
    pub max_message_bytes: usize,
    /// The most hashes in `heads`, in `need`, and in one have's `last_sync`, each.
    pub max_hashes: usize,
    /// The most `have` entries (automerge sends at most one).
    pub max_haves: usize,
    /// The most change chunks, and the most changes one document in the message may hold
    /// (counted from its change columns before automerge decodes them).
    pub max_changes: usize,
    /// The largest `bits_per_entry` of a bloom filter; automerge writes 10.
    pub max_bits_per_entry: u32,
    /// The largest `num_probes` of a bloom filter; automerge writes 7.
    pub max_num_probes: u32,
    /// The longest flags section; automerge writes 2 bytes.
    pub max_flag_bytes: usize,
    /// The most one compressed chunk (a deflated change, or the deflated columns of one
    /// document) may inflate to.
    pub max_inflated_chunk_bytes: usize,
    /// The most all the changes of one message may add up to once inflated.
    pub max_inflated_message_bytes: usize,
    /// The most operations all the changes of one message may hold. Columns are run-length
    /// encoded, so a change of a hundred bytes can claim a million operations (automerge
    /// 0.12 then spends a second and 400 MiB applying them); the count is read from the
    /// action column's runs before automerge sees the change.
    pub max_ops: usize,
}

impl SyncLimits {
    /// Limits for messages of up to `max_message_bytes`, with the inflation caps at their
    /// default multiples of it (2× per chunk, 4× per message).
    pub fn for_message_bytes(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            max_inflated_chunk_bytes: max_message_bytes.saturating_mul(2),
            max_inflated_message_bytes: max_message_bytes.saturating_mul(4),
            ..Self::default()
        }
    }
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_hashes: 10_000,
            max_haves: 64,
            max_changes: 100_000,
            max_bits_per_entry: 32,
            max_num_probes: 32,
            max_flag_bytes: 64,
            max_inflated_chunk_bytes: 16 * 1024 * 1024,
            max_inflated_message_bytes: 32 * 1024 * 1024,
            max_ops: 200_000,
        }
    }
}

/// Why a sync message was refused. Each variant has a stable [`code`](SyncCheckError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncCheckError {
    #[error("sync message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("sync message is empty")]
    Empty,
    #[error("unknown sync message type byte {0:#04x} (expected 0x42 or 0x43)")]
    UnknownMessageType(u8),
    #[error("sync message ends inside its {section}")]
    Truncated { section: &'static str },
    #[error("malformed LEB128 number in the {section}")]
    BadLeb128 { section: &'static str },
    #[error("{section} has {count} entries, over the limit of {limit}")]
    TooMany {
        section: &'static str,
        count: u64,
        limit: usize,
    },
    #[error("{section} claims {count} entries but only {remaining} bytes remain")]
    CountExceedsInput {
        section: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("bloom filter bits_per_entry {value} is outside 1..={max}")]
    BloomBitsPerEntry { value: u64, max: u32 },
    #[error("bloom filter num_probes {value} is outside 1..={max}")]
    BloomProbes { value: u64, max: u32 },
    #[error("bloom filter of {entries} entries needs {expected} bytes of bits but has {actual}")]
    BloomLength {
        entries: u64,
        expected: u128,
        actual: usize,
    },
    #[error("change {index} is not an automerge chunk")]
    BadChange { index: usize },
    #[error("change {index} is corrupt: its checksum does not match")]
    ChangeChecksum { index: usize },
    #[error("change {index} is not valid deflate data")]
    BadCompression { index: usize },
    #[error(
        "change {index} inflates to more than {limit} bytes (max_inflated_chunk_bytes); \
         compressed {compressed} bytes"
    )]
    InflatedTooLarge {
        index: usize,
        compressed: usize,
        limit: usize,
    },
    #[error(
        "the changes of this message inflate to more than {limit} bytes \
         (max_inflated_message_bytes)"
    )]
    MessageInflatedTooLarge { limit: usize },
    #[error("change {index} is a bundle, which is not accepted in a sync message")]
    Bundle { index: usize },
    #[error("change {index} is a document whose layout is malformed ({section})")]
    BadDocument { index: usize, section: &'static str },
    #[error("change {index} is not laid out as a change ({section})")]
    BadChangeLayout { index: usize, section: &'static str },
    #[error(
        "the changes of this message hold more than {limit} operations (max_ops_per_message); \
         change {index} passes it"
    )]
    TooManyOps { index: usize, limit: usize },
}

impl SyncCheckError {
    /// A short, stable name for the error, for close reasons and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            SyncCheckError::TooLarge { .. } => "too_large",
            SyncCheckError::Empty => "empty",
            SyncCheckError::UnknownMessageType(_) => "unknown_message_type",
            SyncCheckError::Truncated { .. } => "truncated",
            SyncCheckError::BadLeb128 { .. } => "bad_leb128",
            SyncCheckError::TooMany { .. } => "too_many",
            SyncCheckError::CountExceedsInput { .. } => "count_exceeds_input",
            SyncCheckError::BloomBitsPerEntry { .. } => "bloom_bits_per_entry",
            SyncCheckError::BloomProbes { .. } => "bloom_probes",
            SyncCheckError::BloomLength { .. } => "bloom_length",
            SyncCheckError::BadChange { .. } => "bad_change",
            SyncCheckError::ChangeChecksum { .. } => "change_checksum",
            SyncCheckError::BadCompression { .. } => "bad_compression",
            SyncCheckError::InflatedTooLarge { .. } => "inflated_too_large",
            SyncCheckError::MessageInflatedTooLarge { .. } => "message_inflated_too_large",
            SyncCheckError::Bundle { .. } => "bundle",
            SyncCheckError::BadDocument { .. } => "bad_document",
            SyncCheckError::BadChangeLayout { .. } => "bad_change_layout",
            SyncCheckError::TooManyOps { .. } => "too_many_ops",
        }
    }
}

/// The first byte of a v1 sync message.
pub const MESSAGE_TYPE_SYNC: u8 = 0x42;
/// The first byte of a v2 sync message (changes sent as one saved document).
pub const MESSAGE_TYPE_SYNC_V2: u8 = 0x43;

/// Every automerge chunk (change or document) starts with these bytes.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const HASH_LEN: u64 = 32;

/// The largest bloom bit array automerge can index: it computes the number of bits as a
/// `u32`, and at 2^29 bytes that wraps to a modulus of zero.
const MAX_BLOOM_BITS_BYTES: u128 = (1 << 29) - 1;

/// What a checked sync message carries, for the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedSync {
    /// The hash of every change and the heads of every document in the message: what the
    /// document must hold (or hold queued, waiting for dependencies) once automerge has taken
    /// it. Anything missing then was dropped by automerge as corrupt.
    pub carried: Vec<automerge::ChangeHash>,
    /// Entries of the changes holding compressed changes, by index, rewritten with each
    /// compressed change inflated into an ordinary change chunk. The engine swaps them in, so
    /// automerge never inflates anything a peer sent.
    pub inflated: Vec<(usize, Vec<u8>)>,
}

/// Checks that `bytes` is a sync message automerge 0.12 can decode and use without
/// panicking or allocating beyond the message's own size and the inflation caps, and that
/// its changes are whole, uncorrupted chunks. `Ok` says nothing about whether the changes
/// make sense; automerge still checks that when it applies them.
pub fn check_sync_message(
    bytes: &[u8],
    limits: &SyncLimits,
) -> Result<CheckedSync, SyncCheckError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(SyncCheckError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let (&message_type, rest) = bytes.split_first().ok_or(SyncCheckError::Empty)?;
    if !matches!(message_type, MESSAGE_TYPE_SYNC | MESSAGE_TYPE_SYNC_V2) {
        return Err(SyncCheckError::UnknownMessageType(message_type));
    }
    let mut c = Cursor { rest };

    c.hashes("heads", limits)?;
    c.hashes("need", limits)?;

    // A have takes at least two bytes: an empty `last_sync` and an empty bloom filter.
    let haves = c.count("haves", limits.max_haves, 2)?;
    for _ in 0..haves {
        c.hashes("last_sync", limits)?;
        let len = c.length("bloom filter")?;
        check_bloom(c.take(len, "bloom filter")?, limits)?;
    }

    let changes = c.count("changes", limits.max_changes, 1)?;
    let mut checked = CheckedSync::default();
    let mut budget = Budget::of(limits);
    for index in 0..changes {
        let len = c.length("changes")?;
        check_chunks(
            c.take(len, "changes")?,
            index,
            limits,
            &mut budget,
            &mut checked,
        )?;
    }

    if !c.rest.is_empty() {
        let len = c.length("flags")?;
        if len > limits.max_flag_bytes {
            return Err(SyncCheckError::TooMany {
                section: "flags",
                count: len as u64,
                limit: limits.max_flag_bytes,
            });
        }
        c.take(len, "flags")?;
    }
    Ok(checked)
}

/// Checks a sequence of whole chunks that travels outside a sync message (a device's offline
/// changes handed to the desk, as `Automerge::save_after` writes them) with the checks and
/// inflation caps of a sync message's changes. When something was inflated, `inflated` holds
/// the rewritten sequence at index 0.
pub fn check_chunk_sequence(
    bytes: &[u8],
    limits: &SyncLimits,
) -> Result<CheckedSync, SyncCheckError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(SyncCheckError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    let mut checked = CheckedSync::default();
    check_chunks(bytes, 0, limits, &mut Budget::of(limits), &mut checked)?;
    Ok(checked)
}

/// What the changes of one message may still inflate to, and how many operations they may
/// still hold.
struct Budget {
    left: usize,
    limit: usize,
    ops_left: u64,
    ops_limit: usize,
}

impl Budget {
    fn of(limits: &SyncLimits) -> Self {
        Self {
            left: limits.max_inflated_message_bytes,
            limit: limits.max_inflated_message_bytes,
            ops_left: limits.max_ops as u64,
            ops_limit: limits.max_ops,
        }
    }

    fn spend_ops(&mut self, ops: u64, index: usize) -> Result<(), SyncCheckError> {
        self.ops_left = self
            .ops_left
            .checked_sub(ops)
            .ok_or(SyncCheckError::TooManyOps {
                index,
                limit: self.ops_limit,
            })?;
        Ok(())
    }

    fn spend(&mut self, bytes: usize) -> Result<(), SyncCheckError> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(SyncCheckError::MessageInflatedTooLarge { limit: self.limit })?;
        Ok(())
    }
}

/// Counts what `deflated` inflates to, without keeping it, stopping past `cap`: `Ok(None)`
/// when it would exceed the cap.
fn inflated_len(
    deflated: &[u8],
    cap: usize,
    index: usize,
) -> Result<Option<usize>, SyncCheckError> {
    use std::io::Read;

    let mut decoder = flate2::read::DeflateDecoder::new(deflated);
    let mut buf = [0u8; 8192];
    let mut total = 0usize;
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|_| SyncCheckError::BadCompression { index })?;
        if n == 0 {
            return Ok(Some(total));
        }
        total += n;
        if total > cap {
            return Ok(None);
        }
    }
}

/// Inflates one deflated column of a document, refusing past `cap` (counted first).
fn inflate_column(
    deflated: &[u8],
    cap: usize,
    index: usize,
    compressed: usize,
) -> Result<Vec<u8>, SyncCheckError> {
    use std::io::Read;

    let too_large = SyncCheckError::InflatedTooLarge {
        index,
        compressed,
        limit: cap,
    };
    let len = inflated_len(deflated, cap, index)?.ok_or(too_large)?;
    let mut out = Vec::with_capacity(len);
    flate2::read::DeflateDecoder::new(deflated)
        .take(len as u64)
        .read_to_end(&mut out)
        .map_err(|_| SyncCheckError::BadCompression { index })?;
    Ok(out)
}

/// Inflates a compressed change (type 2) whose data is `deflated` and `checksum` its header's
/// checksum into an ordinary change chunk, verifying that the checksum matches the inflated
/// change. Returns the chunk and the change's hash.
fn inflate_change(
    deflated: &[u8],
    checksum: &[u8],
    index: usize,
    limits: &SyncLimits,
    budget: &mut Budget,
) -> Result<(Vec<u8>, [u8; 32]), SyncCheckError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;

    // Count first: the cap is checked before anything is allocated.
    let cap = limits.max_inflated_chunk_bytes;
    let Some(len) = inflated_len(deflated, cap, index)? else {
        return Err(SyncCheckError::InflatedTooLarge {
            index,
            compressed: deflated.len(),
            limit: cap,
        });
    };
    budget.spend(len)?;
    let mut data = Vec::with_capacity(len);
    flate2::read::DeflateDecoder::new(deflated)
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(|_| SyncCheckError::BadCompression { index })?;
    let mut header = vec![1u8];
    write_uleb(&mut header, len as u64);
    let hash: [u8; 32] = Sha256::new()
        .chain_update(&header)
        .chain_update(&data)
        .finalize()
        .into();
    if hash[..4] != *checksum {
        return Err(SyncCheckError::ChangeChecksum { index });
    }
    let mut chunk = Vec::with_capacity(CHUNK_MAGIC.len() + 4 + header.len() + len);
    chunk.extend_from_slice(&CHUNK_MAGIC);
    chunk.extend_from_slice(checksum);
    chunk.extend_from_slice(&header);
    chunk.extend_from_slice(&data);
    Ok((chunk, hash))
}

/// Writes `n` as unsigned LEB128 (the encoding of every count and length in the format).
pub(crate) fn write_uleb(out: &mut Vec<u8>, mut n: u64) {
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

/// The column of an operation's action (id 4, an integer column), in changes and documents:
/// as many entries as operations.
const ACTION_COLUMN: u64 = 4 << 4 | 2;
const DEFLATE_BIT: u64 = 0b1000;
/// The column types whose values are run-length encoded integers: group, actor, integer,
/// delta, value metadata.
const INTEGER_COLUMN_TYPES: [u64; 5] = [0, 1, 2, 3, 6];

/// Counts the entries of a run-length encoded integer column (the action column: one entry
/// per operation), charging them to the budget as it goes, so a column claiming billions of
/// entries is refused after reading a few bytes.
///
/// ```text
/// column = run*
/// run    = count:sleb128 (count > 0: value:uleb128, `count` copies
///                         | count < 0: -count values:uleb128
///                         | count = 0: nulls:uleb128)
/// ```
fn count_ops(column: &[u8], index: usize, budget: &mut Budget) -> Result<(), SyncCheckError> {
    let bad = || SyncCheckError::BadChangeLayout {
        index,
        section: "action column",
    };
    let mut c = Cursor { rest: column };
    while !c.rest.is_empty() {
        let count = c.sleb("action column").map_err(|_| bad())?;
        let entries = match count {
            n if n > 0 => {
                c.uleb("action column").map_err(|_| bad())?;
                n.unsigned_abs()
            }
            n if n < 0 => {
                for _ in 0..n.unsigned_abs().min(c.rest.len() as u64 + 1) {
                    c.uleb("action column").map_err(|_| bad())?;
                }
                n.unsigned_abs()
            }
            _ => c.uleb("action column").map_err(|_| bad())?,
        };
        budget.spend_ops(entries, index)?;
    }
    Ok(())
}

/// Counts the entries of a run-length encoded integer column (the layout of [`count_ops`];
/// `signed` for a delta column, whose values are sleb128), in time linear in its bytes.
/// `None` when a run cannot be read: automerge reads overlong LEB128 that automerge never
/// writes, and a run it reads that way can claim billions of entries.
fn count_entries(column: &[u8], signed: bool) -> Option<u64> {
    let mut c = Cursor { rest: column };
    let value = |c: &mut Cursor<'_>| {
        if signed {
            c.sleb("column").map(drop)
        } else {
            c.uleb("column").map(drop)
        }
    };
    let mut total = 0u64;
    while !c.rest.is_empty() {
        let count = c.sleb("column").ok()?;
        let entries = match count {
            n if n > 0 => {
                value(&mut c).ok()?;
                n.unsigned_abs()
            }
            n if n < 0 => {
                for _ in 0..n.unsigned_abs().min(c.rest.len() as u64 + 1) {
                    value(&mut c).ok()?;
                }
                n.unsigned_abs()
            }
            _ => c.uleb("column").ok()?,
        };
        total = total.saturating_add(entries);
    }
    Some(total)
}

/// Reads a change chunk's data as far as its columns and counts its operations.
///
/// ```text
/// change = deps:(count:uleb128 hash{count}) actor:(len:uleb128 byte{len}) seq:uleb128
///          start_op:uleb128 time:sleb128 message:(len:uleb128 byte{len})
///          other_actors:(count:uleb128 (len:uleb128 byte{len}){count})
///          ops_columns:(count:uleb128 (spec:uleb128 len:uleb128){count})
///          column data, [extra bytes]
/// ```
fn check_change_ops(data: &[u8], index: usize, budget: &mut Budget) -> Result<(), SyncCheckError> {
    let bad = |section| SyncCheckError::BadChangeLayout { index, section };
    let mut c = Cursor { rest: data };
    let deps = c
        .uleb("change")
        .ok()
        .filter(|n| n.saturating_mul(HASH_LEN) <= c.rest.len() as u64)
        .ok_or(bad("dependencies"))?;
    c.take(deps as usize * HASH_LEN as usize, "change")
        .map_err(|_| bad("dependencies"))?;
    let actor = c.length("change").map_err(|_| bad("actor"))?;
    c.take(actor, "change").map_err(|_| bad("actor"))?;
    c.uleb("change").map_err(|_| bad("seq"))?;
    c.uleb("change").map_err(|_| bad("start_op"))?;
    c.sleb("change").map_err(|_| bad("time"))?;
    let message = c.length("change").map_err(|_| bad("message"))?;
    c.take(message, "change").map_err(|_| bad("message"))?;
    let others = c
        .uleb("change")
        .ok()
        .filter(|n| *n <= c.rest.len() as u64)
        .ok_or(bad("other actors"))?;
    for _ in 0..others {
        let len = c.length("change").map_err(|_| bad("other actors"))?;
        c.take(len, "change").map_err(|_| bad("other actors"))?;
    }
    let columns = c
        .uleb("change")
        .ok()
        .filter(|n| n.saturating_mul(2) <= c.rest.len() as u64)
        .ok_or(bad("columns"))?;
    let mut layout = Vec::new();
    for _ in 0..columns {
        let spec = c.uleb("change").map_err(|_| bad("columns"))?;
        let len = c.uleb("change").map_err(|_| bad("columns"))?;
        layout.push((spec, usize::try_from(len).map_err(|_| bad("columns"))?));
    }
    for (spec, len) in layout {
        let column = c.take(len, "change").map_err(|_| bad("column data"))?;
        if spec == ACTION_COLUMN {
            count_ops(column, index, budget)?;
        }
    }
    Ok(())
}

/// Reads a document chunk's data far enough to name its heads and to bound what its
/// deflated columns inflate to (into a counting sink; automerge inflates them itself).
///
/// ```text
/// document = actors:(count:uleb128 (len:uleb128 byte{len}){count})
///            heads:(count:uleb128 hash{count})
///            change_columns:(count:uleb128 (spec:uleb128 len:uleb128){count})
///            ops_columns:(count:uleb128 (spec:uleb128 len:uleb128){count})
///            change column data, ops column data, [head indexes]
/// spec     = id << 4 | deflate:1 bit (0x08) | type:3 bits
/// ```
fn check_document(
    data: &[u8],
    index: usize,
    limits: &SyncLimits,
    budget: &mut Budget,
    carried: &mut Vec<automerge::ChangeHash>,
) -> Result<(), SyncCheckError> {
    let bad = |section| SyncCheckError::BadDocument { index, section };
    let mut c = Cursor { rest: data };
    let actors = c
        .uleb("document")
        .ok()
        .filter(|n| *n <= c.rest.len() as u64)
        .ok_or(bad("actors"))?;
    for _ in 0..actors {
        let len = c.length("document").map_err(|_| bad("actors"))?;
        c.take(len, "document").map_err(|_| bad("actors"))?;
    }
    let heads = c
        .uleb("document")
        .ok()
        .filter(|n| n.saturating_mul(HASH_LEN) <= c.rest.len() as u64)
        .ok_or(bad("heads"))?;
    for _ in 0..heads {
        let hash = c
            .take(HASH_LEN as usize, "document")
            .map_err(|_| bad("heads"))?;
        let mut h = [0u8; 32];
        h.copy_from_slice(hash);
        carried.push(automerge::ChangeHash(h));
    }
    // (spec, length, in the ops columns)
    let mut columns: Vec<(u64, usize, bool)> = Vec::new();
    for section in ["change columns", "ops columns"] {
        // A column spec and its length take at least two bytes.
        let count = c
            .uleb("document")
            .ok()
            .filter(|n| n.saturating_mul(2) <= c.rest.len() as u64)
            .ok_or(bad(section))?;
        for _ in 0..count {
            let spec = c.uleb("document").map_err(|_| bad(section))?;
            let len = c.uleb("document").map_err(|_| bad(section))?;
            let len = usize::try_from(len).map_err(|_| bad(section))?;
            columns.push((spec, len, section == "ops columns"));
        }
    }
    let cap = limits.max_inflated_chunk_bytes;
    let mut inflated = 0usize;
    for (spec, len, op_column) in columns {
        let column = c.take(len, "document").map_err(|_| bad("column data"))?;
        let deflated = spec & DEFLATE_BIT != 0;
        if !op_column && INTEGER_COLUMN_TYPES.contains(&(spec & 0b111)) {
            // One entry per change: a few bytes of runs can claim billions of changes, which
            // automerge 0.12 decodes one by one before anything else (a 165-byte hand-over
            // took seconds; found by the admit fuzzer), so they are counted first.
            let plain;
            let column = if deflated {
                plain = inflate_column(column, cap - inflated.min(cap), index, data.len())?;
                &plain[..]
            } else {
                column
            };
            let count = count_entries(column, spec & 0b111 == 3).ok_or(bad("change columns"))?;
            if count > limits.max_changes as u64 {
                return Err(SyncCheckError::TooMany {
                    section: "the changes of a document",
                    count,
                    limit: limits.max_changes,
                });
            }
        }
        if op_column && spec & !DEFLATE_BIT == ACTION_COLUMN {
            // One entry per operation; inflated first if need be (within the cap).
            if deflated {
                let plain = inflate_column(column, cap - inflated.min(cap), index, data.len())?;
                count_ops(&plain, index, budget)?;
            } else {
                count_ops(column, index, budget)?;
            }
        }
        let size = if deflated {
            inflated_len(column, cap - inflated.min(cap), index)?.ok_or(
                SyncCheckError::InflatedTooLarge {
                    index,
                    compressed: data.len(),
                    limit: cap,
                },
            )?
        } else {
            column.len()
        };
        inflated = inflated.saturating_add(size);
        if inflated > cap {
            return Err(SyncCheckError::InflatedTooLarge {
                index,
                compressed: data.len(),
                limit: cap,
            });
        }
    }
    budget.spend(inflated)
}

/// Checks one entry of the changes: one or more whole chunks (automerge loads the entries
/// one after the other, so a chunk may not spill into the next entry), each of a known type
/// and with a checksum that matches. A compressed change (type 2) carries the checksum of its
/// uncompressed form: it is inflated (within the caps) and checked against that, and the
/// entry is rewritten with the inflated change in its place (automerge never sends
/// compressed changes in sync messages itself).
fn check_chunks(
    entry: &[u8],
    index: usize,
    limits: &SyncLimits,
    budget: &mut Budget,
    checked: &mut CheckedSync,
) -> Result<(), SyncCheckError> {
    use sha2::{Digest, Sha256};

    let bad = SyncCheckError::BadChange { index };
    if entry.is_empty() {
        return Err(bad);
    }
    // The entry rewritten with its compressed changes inflated, once there is one.
    let mut rewritten: Option<Vec<u8>> = None;
    let mut c = Cursor { rest: entry };
    while !c.rest.is_empty() {
        let chunk_start = entry.len() - c.rest.len();
        let magic = c
            .take(CHUNK_MAGIC.len(), "changes")
            .map_err(|_| bad.clone())?;
        if magic != CHUNK_MAGIC {
            return Err(bad);
        }
        let checksum = c.take(4, "changes").map_err(|_| bad.clone())?;
        let hashed = c.rest;
        let chunk_type = c.take(1, "changes").map_err(|_| bad.clone())?[0];
        let len = c.length("changes").map_err(|_| bad.clone())?;
        let data = c.take(len, "changes").map_err(|_| bad.clone())?;
        let hashed = &hashed[..hashed.len() - c.rest.len()];
        let chunk = &entry[chunk_start..entry.len() - c.rest.len()];
        match chunk_type {
            // Document, change: the checksum covers type, length and data.
            0 | 1 => {
                let hash: [u8; 32] = Sha256::digest(hashed).into();
                if hash[..4] != *checksum {
                    return Err(SyncCheckError::ChangeChecksum { index });
                }
                if chunk_type == 1 {
                    budget.spend(data.len())?;
                    check_change_ops(data, index, budget)?;
                    checked.carried.push(automerge::ChangeHash(hash));
                } else {
                    check_document(data, index, limits, budget, &mut checked.carried)?;
                }
                if let Some(out) = rewritten.as_mut() {
                    out.extend_from_slice(chunk);
                }
            }
            2 => {
                let (inflated, hash) = inflate_change(data, checksum, index, limits, budget)?;
                // The inflated change's data starts after its header: magic, checksum, type
                // and the length.
                let mut header = Cursor {
                    rest: &inflated[CHUNK_MAGIC.len() + 5..],
                };
                header.uleb("changes").map_err(|_| bad.clone())?;
                check_change_ops(header.rest, index, budget)?;
                checked.carried.push(automerge::ChangeHash(hash));
                rewritten
                    .get_or_insert_with(|| entry[..chunk_start].to_vec())
                    .extend_from_slice(&inflated);
            }
            3 => return Err(SyncCheckError::Bundle { index }),
            _ => return Err(bad),
        }
    }
    if let Some(out) = rewritten {
        checked.inflated.push((index, out));
    }
    Ok(())
}

/// Checks one bloom filter's bytes. Empty means "no filter" and is fine; otherwise the
/// parameters must be ones automerge can probe with, and the bit array exactly as long as
/// they imply (automerge would ignore extra bytes, but no automerge writes them).
fn check_bloom(bloom: &[u8], limits: &SyncLimits) -> Result<(), SyncCheckError> {
    if bloom.is_empty() {
        return Ok(());
    }
    let mut c = Cursor { rest: bloom };
    let entries = c.uleb("bloom filter")?;
    let bits_per_entry = c.uleb("bloom filter")?;
    let num_probes = c.uleb("bloom filter")?;
    if bits_per_entry == 0 || bits_per_entry > u64::from(limits.max_bits_per_entry) {
        return Err(SyncCheckError::BloomBitsPerEntry {
            value: bits_per_entry,
            max: limits.max_bits_per_entry,
        });
    }
    if num_probes == 0 || num_probes > u64::from(limits.max_num_probes) {
        return Err(SyncCheckError::BloomProbes {
            value: num_probes,
            max: limits.max_num_probes,
        });
    }
    // Both factors are below 2^64, so the product fits in a u128.
    let expected = (u128::from(entries) * u128::from(bits_per_entry)).div_ceil(8);
    let length_ok = entries <= u64::from(u32::MAX) && expected <= MAX_BLOOM_BITS_BYTES;
    if !length_ok || expected != c.rest.len() as u128 {
        return Err(SyncCheckError::BloomLength {
            entries,
            expected,
            actual: c.rest.len(),
        });
    }
    Ok(())
}

/// The unread rest of a sync message.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, section: &'static str) -> Result<&'a [u8], SyncCheckError> {
        if n > self.rest.len() {
            return Err(SyncCheckError::Truncated { section });
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// An unsigned LEB128 number, as strict as automerge's reader: at most ten bytes, no
    /// bits beyond 64, and no redundant trailing zero byte.
    fn uleb(&mut self, section: &'static str) -> Result<u64, SyncCheckError> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(SyncCheckError::Truncated { section })?;
            self.rest = rest;
            // The tenth byte holds only the 64th bit.
            if shift == 63 && byte > 1 {
                return Err(SyncCheckError::BadLeb128 { section });
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift > 0 && byte == 0 {
                    return Err(SyncCheckError::BadLeb128 { section });
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    /// A signed LEB128 number of at most 64 bits.
    fn sleb(&mut self, section: &'static str) -> Result<i64, SyncCheckError> {
        let mut value = 0i64;
        let mut shift = 0u32;
        loop {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(SyncCheckError::Truncated { section })?;
            self.rest = rest;
            if shift >= 64 {
                return Err(SyncCheckError::BadLeb128 { section });
            }
            value |= i64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    /// A byte length, which must fit in what is left.
    fn length(&mut self, section: &'static str) -> Result<usize, SyncCheckError> {
        let len = self.uleb(section)?;
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.rest.len())
            .ok_or(SyncCheckError::Truncated { section })
    }

    /// A count of items that take at least `min_item_bytes` each: within `limit`, and
    /// possible in the bytes that are left.
    fn count(
        &mut self,
        section: &'static str,
        limit: usize,
        min_item_bytes: u64,
    ) -> Result<usize, SyncCheckError> {
        let count = self.uleb(section)?;
        if count > limit as u64 {
            return Err(SyncCheckError::TooMany {
                section,
                count,
                limit,
            });
        }
        if count.saturating_mul(min_item_bytes) > self.rest.len() as u64 {
            return Err(SyncCheckError::CountExceedsInput {
                section,
                count,
                remaining: self.rest.len(),
            });
        }
        // The count is at most `limit`, a usize.
        Ok(count as usize)
    }

    /// A counted list of change hashes.
    fn hashes(&mut self, section: &'static str, limits: &SyncLimits) -> Result<(), SyncCheckError> {
        let count = self.count(section, limits.max_hashes, HASH_LEN)?;
        // `count` checked that `count * 32` bytes are left.
        self.take(count * HASH_LEN as usize, section)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
