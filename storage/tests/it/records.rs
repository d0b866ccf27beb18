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
