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
    /// The most change chunks.
    pub max_changes: usize,
    /// The largest `bits_per_entry` of a bloom filter; automerge writes 10.
    pub max_bits_per_entry: u32,
    /// The largest `num_probes` of a bloom filter; automerge writes 7.
    pub max_num_probes: u32,
    /// The longest flags section; automerge writes 2 bytes.
    pub max_flag_bytes: usize,
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

/// Checks that `bytes` is a sync message automerge 0.12 can decode and use without
/// panicking or allocating beyond the message's own size, and that its changes are whole,
/// uncorrupted chunks. `Ok` says nothing about whether the changes make sense; automerge
/// still checks that when it applies them.
pub fn check_sync_message(bytes: &[u8], limits: &SyncLimits) -> Result<(), SyncCheckError> {
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
    for index in 0..changes {
        let len = c.length("changes")?;
        check_chunks(c.take(len, "changes")?, index)?;
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
    Ok(())
}

/// Checks one entry of the changes: one or more whole chunks (automerge loads the entries
/// one after the other, so a chunk may not spill into the next entry), each of a known type
/// and with a checksum that matches. A compressed change (type 2) carries the checksum of its
/// uncompressed form, which cannot be checked without inflating it; automerge checks that one
/// (and never sends compressed changes in sync messages itself).
fn check_chunks(entry: &[u8], index: usize) -> Result<(), SyncCheckError> {
    use sha2::{Digest, Sha256};

    let bad = SyncCheckError::BadChange { index };
    if entry.is_empty() {
        return Err(bad);
    }
    let mut c = Cursor { rest: entry };
    while !c.rest.is_empty() {
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
        c.take(len, "changes").map_err(|_| bad.clone())?;
        let hashed = &hashed[..hashed.len() - c.rest.len()];
        match chunk_type {
            // Document, change, bundle: the checksum covers type, length and data.
            0 | 1 | 3 => {
                if Sha256::digest(hashed)[..4] != *checksum {
                    return Err(SyncCheckError::ChangeChecksum { index });
                }
            }
            2 => {}
            _ => return Err(bad),
        }
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
