use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fieldsync_storage::StorageError;

use crate::{DOC, OTHER_DOC, WriteLock, config_with_busy_timeout, open, temp_db};

#[test]
fn a_thousand_concurrent_writes_complete_in_far_fewer_transactions() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = Arc::new(open(&path)?);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let doc = format!("doc-{t}");
                let writes: Vec<_> = (0..125u32)
                    .map(|i| store.append_changes(&doc, i.to_be_bytes().to_vec()))
                    .collect();
                writes
                    .into_iter()
                    .map(|write| write.wait())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in threads {
        let results = handle
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
        assert_eq!(results.len(), 125);
        for result in results {
            result?;
        }
    }

    let stats = store.stats();
    assert_eq!(stats.writes, 1000);
    assert_eq!(stats.failed_writes, 0);
    assert_eq!(stats.queued, 0);
    assert!(
        stats.transactions < stats.writes,
        "no group commit: {stats:?}"
    );
    assert!(stats.largest_batch > 1, "{stats:?}");
    for t in 0..8 {
        assert_eq!(store.load_chunks(&format!("doc-{t}"))?.len(), 125);
    }
    Ok(())
}

/// While one transaction waits (here for a lock; normally for its fsync), the writes that
/// arrive are taken together into the next one.
#[test]
fn writes_queued_while_the_writer_is_busy_share_one_transaction() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    let lock = WriteLock::take(&path)?;
    let writes: Vec<_> = (0..500u32)
        .map(|i| store.append_changes(DOC, i.to_be_bytes().to_vec()))
        .collect();
    lock.release()?;
    for write in writes {
        write.wait()?;
    }
    let stats = store.stats();
    // The writer may have taken the first write(s) before it blocked; all the rest wait for
    // the next round.
    assert!(stats.transactions <= 2, "{stats:?}");
    assert_eq!(stats.writes, 500);
    Ok(())
}

#[test]
fn a_write_whose_transaction_fails_is_reported_and_not_stored() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = crate::open_with(&path, config_with_busy_timeout(Duration::from_millis(100)))?;
    let lock = WriteLock::take(&path)?;

    let append = store.append_changes(DOC, b"lost".to_vec());
    let sync = store.put_sync_state("peer", DOC, b"lost".to_vec());
    let meta = store.put_meta("devices", "dev-1", b"lost".to_vec());
    let results = [append.wait().map(|_| ()), sync.wait(), meta.wait()];
    for result in results {
        assert!(
            matches!(result, Err(StorageError::BatchFailed(_))),
            "expected BatchFailed, got {result:?}"
        );
    }
    let stats = store.stats();
    assert_eq!((stats.writes, stats.failed_writes), (0, 3));
    assert!(stats.failed_transactions >= 1);
    assert_eq!(store.load_doc(DOC)?, None);
    assert_eq!(store.sync_state("peer", DOC)?, None);
    assert_eq!(store.meta("devices", "dev-1")?, None);

    // Once the lock is gone the store works again.
    lock.release()?;
    store.append_changes(DOC, b"stored".to_vec()).wait()?;
    assert_eq!(store.load_doc(DOC)?, Some(vec![b"stored".to_vec()]));
    Ok(())
}

#[test]
fn a_rejected_write_fails_alone_and_its_neighbours_commit() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    // Hold the writer so that the three writes are grouped.
    let lock = WriteLock::take(&path)?;
    let before = store.append_changes(DOC, b"before".to_vec());
    // An empty document id breaks the table's CHECK constraint.
    let rejected = store.append_changes("", b"bad".to_vec());
    let after = store.append_changes(OTHER_DOC, b"after".to_vec());
    lock.release()?;

    before.wait()?;
    after.wait()?;
    match rejected.wait() {
        Err(StorageError::Sqlite(error)) => {
            assert_eq!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ConstraintViolation)
            );
        }
        other => panic!("expected a constraint violation, got {other:?}"),
    }
    assert_eq!(store.load_doc(DOC)?, Some(vec![b"before".to_vec()]));
    assert_eq!(store.load_doc(OTHER_DOC)?, Some(vec![b"after".to_vec()]));
    assert_eq!(store.load_doc("")?, None);
    let stats = store.stats();
    assert_eq!((stats.writes, stats.failed_writes), (2, 1));
    Ok(())
}

#[test]
fn reads_do_not_wait_for_a_stalled_writer() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.append_changes(DOC, b"committed".to_vec()).wait()?;

    let lock = WriteLock::take(&path)?;
    let stalled = store.append_changes(DOC, b"stalled".to_vec());
    // The writer is stuck behind the lock (for up to the 5 s busy timeout), yet reads answer
    // with the last committed state.
    assert_eq!(store.load_doc(DOC)?, Some(vec![b"committed".to_vec()]));
    assert!(!stalled.is_complete());
    lock.release()?;

    stalled.wait()?;
    assert_eq!(
        store.load_doc(DOC)?,
        Some(vec![b"committed".to_vec(), b"stalled".to_vec()])
    );
    Ok(())
}
