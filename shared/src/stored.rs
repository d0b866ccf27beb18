//! A document from its stored chunks (issue 19): one automerge `load` of every chunk
//! concatenated, rather than one `load_incremental` per chunk.
//!
//! Storage keeps a document as a snapshot (automerge `save`) and the incremental chunks stored
//! since (changes, `save_after`). automerge's byte format is a sequence of chunks, so the
//! chunks of a document concatenated are one valid `load` input: the snapshot is inflated
//! once and every later change goes to automerge in one batch. Loading chunk by chunk instead
//! hands automerge one batch per chunk, and each batch pays for a pass over the document's
//! operations: the cold load after a restart grew with the number of chunks (measured in
//! docs/BENCHMARKS.md, "Cold load").
//!
//! Both loaders check what they read as automerge always does (checksums, head hashes); the
//! stored bytes come from our own writer, but a damaged file must still be refused, not
//! misread.

use automerge::{Automerge, AutomergeError, LoadOptions, OnPartialLoad, ReadDoc, VerificationMode};

/// How stored chunks become a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadStrategy {
    /// Every chunk concatenated into one `load` ([`load`]).
    #[default]
    Concatenated,
    /// One `load_incremental` per chunk ([`load_chunk_by_chunk`]): the loader before issue 19,
    /// kept as the baseline the load figures compare against.
    ChunkByChunk,
}

impl LoadStrategy {
    pub fn load(self, chunks: &[Vec<u8>]) -> Result<Automerge, AutomergeError> {
        match self {
            Self::Concatenated => load(chunks),
            Self::ChunkByChunk => load_chunk_by_chunk(chunks),
        }
    }
}

/// Loads a document from its stored chunks in one `load`.
///
/// Strict first: every byte must parse and, unless a snapshot comes first, every change must
/// find its dependencies. What the strict load refuses is loaded again chunk by chunk, which
/// is what storage always promised: a chunk that does not parse is skipped with the ones
/// after it in the same chunk, and changes missing a dependency are kept in automerge's
/// queue (the engine drops such orphans; see `sync::Engine`).
pub fn load(chunks: &[Vec<u8>]) -> Result<Automerge, AutomergeError> {
    let strict = match chunks {
        [] => return Ok(Automerge::new()),
        [one] => load_strict(one),
        many => load_strict(&many.concat()),
    };
    strict.or_else(|_| load_chunk_by_chunk(chunks))
}

/// Loads a document one chunk at a time: the first chunk with `load`, every later one with
/// `load_incremental` (tolerant of a partial chunk, as `load_incremental` is).
pub fn load_chunk_by_chunk(chunks: &[Vec<u8>]) -> Result<Automerge, AutomergeError> {
    let mut doc = Automerge::new();
    for chunk in chunks {
        doc.load_incremental(chunk)?;
    }
    Ok(doc)
}

/// The snapshot that can replace a document's stored chunks: every change they hold, in one
/// automerge `save` (what compaction stores).
///
/// `Ok(None)` when the chunks hold a change whose dependency is stored nowhere: such orphans are
/// the sync engine's to drop when it loads the document (see `sync::Engine`), and a snapshot
/// made here would keep them. Runs inside `catch_unwind`, since automerge can panic on damaged
/// input: a damaged document is refused, never a panic of the caller (storage's writer thread).
pub fn snapshot(chunks: &[Vec<u8>]) -> Result<Option<Vec<u8>>, String> {
    let made = std::panic::catch_unwind(|| -> Result<Option<Vec<u8>>, String> {
        let doc = load(chunks).map_err(|e| e.to_string())?;
        if !doc.get_missing_deps(&[]).is_empty() {
            return Ok(None);
        }
        Ok(Some(doc.save()))
    });
    made.unwrap_or_else(|_| Err("automerge panicked loading the stored chunks".to_owned()))
}

fn load_strict(bytes: &[u8]) -> Result<Automerge, AutomergeError> {
    Automerge::load_with_options(
        bytes,
        LoadOptions::new()
            .on_partial_load(OnPartialLoad::Error)
            .verification_mode(VerificationMode::Check),
    )
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A snapshot and `n` incremental chunks of one change each, as storage keeps them.
    fn stored(n: usize) -> Result<(Vec<Vec<u8>>, AutoCommit), AutomergeError> {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "title", "job")?;
        let mut chunks = vec![doc.save()];
        for i in 0..n {
            let heads = doc.get_heads();
            doc.put(ROOT, format!("k{}", i % 7), i as i64)?;
            doc.commit();
            chunks.push(doc.save_after(&heads));
        }
        Ok((chunks, doc))
    }

    fn raw_changes(doc: &mut AutoCommit) -> Vec<Vec<u8>> {
        doc.get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    #[test]
    fn both_strategies_load_every_change() -> TestResult {
        let (chunks, mut expected) = stored(40)?;
        for strategy in [LoadStrategy::Concatenated, LoadStrategy::ChunkByChunk] {
            let doc = strategy.load(&chunks)?;
            assert_eq!(doc.get_heads(), expected.get_heads(), "{strategy:?}");
            assert_eq!(doc.get_changes(&[]).len(), 41, "{strategy:?}");
            let title = doc.get(ROOT, "title")?.ok_or("no title")?.0;
            assert_eq!(title.as_str(), Some("job"));
        }
        Ok(())
    }

    #[test]
    fn incremental_chunks_alone_load() -> TestResult {
        let (chunks, mut expected) = stored(5)?;
        // Without a snapshot: each change on its own.
        let changes = raw_changes(&mut expected);
        assert_eq!(load(&changes)?.get_heads(), expected.get_heads());
        assert_eq!(load(&chunks[..1])?.get_changes(&[]).len(), 1);
        assert!(load(&[])?.get_heads().is_empty());
        Ok(())
    }

    #[test]
    fn a_change_missing_its_dependency_is_kept_queued_as_before() -> TestResult {
        let (_, mut doc) = stored(3)?;
        let changes = raw_changes(&mut doc);
        // The second change is missing: the strict load refuses, the fallback queues.
        let gapped = vec![changes[0].clone(), changes[2].clone(), changes[3].clone()];
        let loaded = load(&gapped)?;
        let old = load_chunk_by_chunk(&gapped)?;
        assert_eq!(loaded.get_heads(), old.get_heads());
        assert_eq!(loaded.get_missing_deps(&[]), old.get_missing_deps(&[]));
        assert!(!loaded.get_missing_deps(&[]).is_empty());
        Ok(())
    }

    #[test]
    fn a_snapshot_keeps_every_change() -> TestResult {
        let (chunks, mut expected) = stored(30)?;
        let snapshot = snapshot(&chunks)?.ok_or("no snapshot")?;
        let doc = Automerge::load(&snapshot)?;
        assert_eq!(doc.get_heads(), expected.get_heads());
        let hashes = |changes: Vec<automerge::Change>| {
            let mut h: Vec<_> = changes.iter().map(|c| c.hash()).collect();
            h.sort();
            h
        };
        assert_eq!(
            hashes(doc.get_changes(&[])),
            hashes(expected.get_changes(&[]))
        );
        Ok(())
    }

    #[test]
    fn no_snapshot_of_orphans_or_damage() -> TestResult {
        let (_, mut doc) = stored(3)?;
        let changes = raw_changes(&mut doc);
        let gapped = vec![changes[0].clone(), changes[2].clone()];
        assert_eq!(snapshot(&gapped)?, None);
        assert!(snapshot(&[b"garbage".to_vec(), changes[0].clone()]).is_err());
        Ok(())
    }

    #[test]
    fn damage_is_refused_not_misread() -> TestResult {
        let (mut chunks, _) = stored(3)?;
        chunks[0] = b"not an automerge document".to_vec();
        assert!(load(&chunks).is_err());
        assert!(load_chunk_by_chunk(&chunks).is_err());
        Ok(())
    }
}
