use fieldsync_storage::{Record, RecordFilter, StorageError};

use crate::{DOC, OTHER_DOC, open, temp_db};

#[test]
fn sync_states_are_kept_per_peer_and_document() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    assert_eq!(store.sync_state("peer-a", DOC)?, None);

    store.put_sync_state("peer-a", DOC, b"a1".to_vec()).wait()?;
    store.put_sync_state("peer-b", DOC, b"b1".to_vec()).wait()?;
    store
        .put_sync_state("peer-a", OTHER_DOC, b"a-other".to_vec())
        .wait()?;
    store.put_sync_state("peer-a", DOC, b"a2".to_vec()).wait()?;

    assert_eq!(store.sync_state("peer-a", DOC)?, Some(b"a2".to_vec()));
    assert_eq!(store.sync_state("peer-b", DOC)?, Some(b"b1".to_vec()));
    assert_eq!(
        store.sync_state("peer-a", OTHER_DOC)?,
        Some(b"a-other".to_vec())
    );

    store.delete_sync_state("peer-a", DOC).wait()?;
    assert_eq!(store.sync_state("peer-a", DOC)?, None);
    assert_eq!(store.sync_state("peer-b", DOC)?, Some(b"b1".to_vec()));
    Ok(())
}

#[test]
fn meta_records_are_kept_per_namespace() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.put_meta("devices", "dev-2", b"two".to_vec()).wait()?;
    store.put_meta("devices", "dev-1", b"one".to_vec()).wait()?;
    store
        .put_meta("revocations", "dev-1", b"revoked".to_vec())
        .wait()?;
    store
        .put_meta("devices", "dev-2", b"two, renamed".to_vec())
        .wait()?;

    assert_eq!(store.meta("devices", "dev-1")?, Some(b"one".to_vec()));
    assert_eq!(
        store.meta("revocations", "dev-1")?,
        Some(b"revoked".to_vec())
    );
    assert_eq!(store.meta("devices", "dev-3")?, None);
    assert_eq!(
        store.meta_entries("devices")?,
        [
            ("dev-1".to_owned(), b"one".to_vec()),
            ("dev-2".to_owned(), b"two, renamed".to_vec())
        ]
    );

    store.delete_meta("devices", "dev-1").wait()?;
    assert_eq!(store.meta("devices", "dev-1")?, None);
    assert_eq!(store.meta_entries("revocations")?.len(), 1);
    Ok(())
}

fn tool(id: &str, revision: u64, open: bool, body: &str) -> Record {
    Record {
        kind: "tool".into(),
        id: id.into(),
        revision,
        lookup: Some("TW-9".into()),
        open,
        body: body.as_bytes().to_vec(),
    }
}

/// Two writers that read the same revision cannot both win: the second write is refused
/// whole, and what the first stored stays.
#[test]
fn versioned_records_are_written_by_compare_and_set() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.put_record(tool("t-1", 1, true, "lent")).wait()?;
    let again = store.put_record(tool("t-1", 1, true, "lent twice")).wait();
    assert!(
        matches!(
            again,
            Err(StorageError::RevisionConflict { expected: 0, .. })
        ),
        "{again:?}"
    );
    store.put_record(tool("t-1", 2, false, "returned")).wait()?;
    let stale = store.put_record(tool("t-1", 2, true, "lost")).wait();
    assert!(
        matches!(
            stale,
            Err(StorageError::RevisionConflict { expected: 1, .. })
        ),
        "{stale:?}"
    );
    let skipped = store.put_record(tool("t-1", 4, true, "lost")).wait();
    assert!(matches!(
        skipped,
        Err(StorageError::RevisionConflict { .. })
    ));
    assert_eq!(
        store.record("tool", "t-1")?,
        Some(tool("t-1", 2, false, "returned"))
    );
    assert_eq!(store.record("tool", "t-2")?, None);
    Ok(())
}

#[test]
fn records_are_listed_by_lookup_key_and_open_flag() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.put_record(tool("t-2", 1, true, "b")).wait()?;
    store.put_record(tool("t-1", 1, false, "a")).wait()?;
    let mut other = tool("t-3", 1, true, "c");
    other.lookup = None;
    store.put_record(other).wait()?;
    let mut request = tool("r-1", 1, true, "r");
    request.kind = "request".into();
    store.put_record(request).wait()?;

    let ids = |filter: RecordFilter| -> anyhow::Result<Vec<String>> {
        Ok(store
            .records("tool", &filter)?
            .into_iter()
            .map(|r| r.id)
            .collect())
    };
    assert_eq!(ids(RecordFilter::default())?, ["t-1", "t-2", "t-3"]);
    assert_eq!(
        ids(RecordFilter {
            open_only: true,
            ..RecordFilter::default()
        })?,
        ["t-2", "t-3"]
    );
    assert_eq!(
        ids(RecordFilter {
            lookup: Some("TW-9".into()),
            open_only: true,
        })?,
        ["t-2"]
    );
    Ok(())
}
