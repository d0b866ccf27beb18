//! Issue 19: the edge's storage writer compacts documents whose chunks piled up. A compaction
//! replaces a document's chunks in one transaction, so a SIGKILL at any moment of it leaves
//! either the old chunks or the snapshot: the server is killed over and over while it
//! compacts, and every change of every document must still be stored.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT};
use fieldsync_shared::ids::DocumentId;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{SETTLE, ServerProcess, temp_dir};

fn hashes(changes: &[automerge::Change]) -> BTreeSet<ChangeHash> {
    changes.iter().map(|c| c.hash()).collect()
}

/// Every document as written: heads equal, every change present. Returns how many of them
/// are down to one chunk.
fn check(db: &Path, docs: &mut [(DocumentId, AutoCommit)]) -> anyhow::Result<usize> {
    let store = Store::open(db, StoreConfig::without_maintenance())?;
    store.integrity_check()?;
    let mut compacted = 0;
    for (id, expected) in docs.iter_mut() {
        let chunks = store.load_doc(&id.to_string())?.expect("stored");
        compacted += usize::from(chunks.len() == 1);
        let stored = fieldsync_shared::stored::load(&chunks)?;
        let mut want = expected.get_heads();
        want.sort();
        let mut have = stored.get_heads();
        have.sort();
        assert_eq!(have, want, "{id}: heads");
        assert_eq!(
            hashes(&stored.get_changes(&[])),
            hashes(&expected.get_changes(&[])),
            "{id}: changes"
        );
    }
    store.close()?;
    Ok(compacted)
}

fn uncompacted(db: &Path) -> anyhow::Result<usize> {
    let store = Store::open(db, StoreConfig::without_maintenance())?;
    let mut left = 0;
    for id in store.doc_ids()? {
        left += usize::from(store.load_chunks(&id)?.len() > 1);
    }
    Ok(left)
}

#[test]
fn a_kill_during_compaction_loses_nothing() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    // The first start makes the data directory; then documents go in as an older server left
    // them: many chunks of one change each.
    ServerProcess::start(&data)?.kill()?;
    let db = data.join("fieldsync.sqlite");
    let mut docs = Vec::new();
    {
        let store = Store::open(&db, StoreConfig::without_maintenance())?;
        for _ in 0..30 {
            let id = DocumentId::random();
            let mut doc = AutoCommit::new();
            for i in 0..60 {
                let heads = doc.get_heads();
                doc.put(ROOT, format!("field {}", i % 6), format!("value {i}"))?;
                doc.commit();
                store
                    .append_changes(&id.to_string(), doc.save_after(&heads))
                    .wait()?;
            }
            docs.push((id, doc));
        }
        store.close()?;
    }
    // Kill moments spread from the first instant of serving on; compaction starts when the
    // store opens, before that.
    let mut progress = Vec::new();
    for round in 0..10u64 {
        let server = ServerProcess::start(&data)?;
        std::thread::sleep(Duration::from_millis(round * round * 4));
        server.kill()?;
        progress.push(check(&db, &mut docs)?);
    }
    // Which kills came in the middle of the work, for whoever reads the output.
    eprintln!("documents compacted after each kill: {progress:?}");
    // Left to run, it compacts every document, and still loses nothing. (The wait is
    // bounded only against a hang.)
    let server = ServerProcess::start(&data)?;
    let deadline = Instant::now() + SETTLE;
    while uncompacted(&db)? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the server never compacted");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill()?;
    assert_eq!(
        check(&db, &mut docs)?,
        docs.len(),
        "compacted after rounds {progress:?}"
    );
    Ok(())
}
