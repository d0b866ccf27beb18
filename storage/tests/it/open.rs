use std::fs;

use fieldsync_storage::{OpenCheck, SCHEMA_VERSION, StorageError, Store, StoreConfig};
use rusqlite::Connection;

use crate::{DOC, open, temp_db};

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[test]
fn a_new_file_gets_the_whole_schema_in_wal_mode() -> anyhow::Result<()> {
    let (dir, _) = temp_db()?;
    // The folder is created too: a device's data folder may not exist on first start.
    let path = dir.path().join("data").join("node.sqlite");
    let store = open(&path)?;
    store.close()?;

    let conn = Connection::open(&path)?;
    assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    assert_eq!(mode, "wal");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    tables.retain(|name| !name.starts_with("sqlite_"));
    assert_eq!(
        tables,
        [
            "doc_chunks",
            "doc_summaries",
            "doc_versions",
            "doc_watermarks",
            "ho_complaints",
            "ho_complaints_rejected",
            "ho_reports",
            "ho_reports_aside",
            "ho_retry",
            "meta",
            "records",
            "sync_states"
        ]
    );
    Ok(())
}

#[test]
fn reopening_keeps_the_schema_version_and_the_data() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let store = open(&path)?;
    store.append_changes(DOC, b"changes".to_vec()).wait()?;
    drop(store);

    let store = open(&path)?;
    assert_eq!(store.load_doc(DOC)?, Some(vec![b"changes".to_vec()]));
    store.close()?;
    assert_eq!(user_version(&Connection::open(&path)?)?, SCHEMA_VERSION);
    Ok(())
}

#[test]
fn a_database_from_a_newer_program_is_refused_and_left_alone() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    open(&path)?.close()?;
    let newer = SCHEMA_VERSION + 1;
    Connection::open(&path)?.pragma_update(None, "user_version", newer)?;

    match Store::open(&path, StoreConfig::default()) {
        Err(StorageError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (newer, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(user_version(&Connection::open(&path)?)?, newer);
    Ok(())
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&path, &garbage)?;

    let error = Store::open(&path, StoreConfig::default()).map(|_| ());
    match error {
        Err(StorageError::NotADatabase { path: reported }) => assert_eq!(reported, path),
        other => panic!("expected NotADatabase, got {other:?}"),
    }
    assert_eq!(fs::read(&path)?, garbage);
    Ok(())
}

#[test]
fn a_damaged_database_is_reported_as_corrupt() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    // Closing the last connection checkpoints the WAL into the main file.
    filled_and_closed(&path)?;

    damage(&path)?;

    match Store::open(&path, StoreConfig::default()) {
        Err(StorageError::Corrupt {
            path: reported,
            detail,
        }) => {
            assert_eq!(reported, path);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn integrity_check_passes_a_sound_store_and_names_what_is_wrong_with_a_damaged_one()
-> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    // Closing the last connection checkpoints the WAL into the main file.
    filled_and_closed(&path)?;
    let store = open(&path)?;
    store.integrity_check()?;
    drop(store);

    damage(&path)?;
    // Opened without the check at open, as a tool inspecting a damaged file would.
    let unchecked = StoreConfig {
        quick_check: false,
        ..StoreConfig::default()
    };
    let store = Store::open(&path, unchecked)?;
    match store.integrity_check() {
        Err(StorageError::Corrupt { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

/// Keeps page 1 (header and schema) and overwrites data pages past the tables' and indexes'
/// root pages (about 20 since 0003), so the file still opens and the damage is for the check
/// to find. Rewrites the file, as a tool or a bad copy would.
fn damage(path: &std::path::Path) -> anyhow::Result<()> {
    let mut bytes = fs::read(path)?;
    assert!(
        bytes.len() > 4096 * 70,
        "the database is smaller than expected"
    );
    bytes[4096 * 40..4096 * 70].fill(0x5a);
    fs::write(path, &bytes)?;
    Ok(())
}

// ---- the check at open after a clean close (issue 17) ----

/// A store holding 300 chunks, closed cleanly: big enough that damage past page 40 is in
/// data pages, as in the tests above.
fn filled_and_closed(path: &std::path::Path) -> anyhow::Result<()> {
    let store = open(path)?;
    assert_eq!(
        store.open_check(),
        OpenCheck::Checked,
        "a new file is checked"
    );
    let writes: Vec<_> = (0..300u32)
        .map(|i| store.append_changes(DOC, vec![(i % 251) as u8; 2000 + i as usize]))
        .collect();
    for write in writes {
        write.wait()?;
    }
    store.close()?;
    Ok(())
}

#[test]
fn the_check_is_skipped_only_after_a_clean_close_and_runs_again_after_a_crash() -> anyhow::Result<()>
{
    let (_dir, path) = temp_db()?;
    filled_and_closed(&path)?;

    let store = open(&path)?;
    assert_eq!(store.open_check(), OpenCheck::CleanClose);
    store
        .append_changes(DOC, b"after the clean open".to_vec())
        .wait()?;
    // A crash: the store is never closed (its writer and connections are left as a killed
    // process leaves them, the last commit in the write-ahead log only).
    std::mem::forget(store);

    let store = open(&path)?;
    assert_eq!(
        store.open_check(),
        OpenCheck::Checked,
        "the last close was not clean: checked"
    );
    let chunks = store.load_doc(DOC)?.unwrap_or_default();
    assert!(chunks.contains(&b"after the clean open".to_vec()));
    drop(store);
    // Dropping closes as cleanly as `close`.
    assert_eq!(open(&path)?.open_check(), OpenCheck::CleanClose);
    Ok(())
}

#[test]
fn a_file_damaged_after_a_clean_close_is_still_refused_even_with_its_time_set_back()
-> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    filled_and_closed(&path)?;
    let modified = fs::metadata(&path)?.modified()?;

    // Overwrite data pages in place (same file, same size), then set the modification time
    // back to what it was: the change time still moves, and the check runs.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = fs::OpenOptions::new().write(true).open(&path)?;
        file.seek(SeekFrom::Start(4096 * 40))?;
        file.write_all(&[0x5a_u8; 4096 * 30])?;
        file.set_modified(modified)?;
    }
    assert_eq!(fs::metadata(&path)?.modified()?, modified);

    match Store::open(&path, StoreConfig::default()) {
        Err(StorageError::Corrupt { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_store_opened_without_the_check_never_vouches_for_the_file() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    filled_and_closed(&path)?;
    let unchecked = StoreConfig {
        quick_check: false,
        ..StoreConfig::default()
    };
    let store = Store::open(&path, unchecked)?;
    assert_eq!(store.open_check(), OpenCheck::Off);
    store.close()?;
    assert_eq!(open(&path)?.open_check(), OpenCheck::Checked);

    // A file written by another program while closed (here a SQLite connection of its own,
    // through its own transaction) is checked again too.
    drop(open(&path)?);
    Connection::open(&path)?.execute(
        "INSERT INTO meta (namespace, key, value) VALUES ('tool', 'note', x'01')",
        [],
    )?;
    assert_eq!(open(&path)?.open_check(), OpenCheck::Checked);
    Ok(())
}

#[test]
fn a_store_whose_check_found_damage_leaves_no_clean_close_stamp() -> anyhow::Result<()> {
    let (_dir, path) = temp_db()?;
    filled_and_closed(&path)?;
    let store = open(&path)?;
    assert_eq!(store.open_check(), OpenCheck::CleanClose);
    // Damaged while this store has it open (no write of its own pending), found by the
    // out-of-band check: the close must not vouch for the file as it now is.
    damage(&path)?;
    assert!(matches!(
        store.integrity_check(),
        Err(StorageError::Corrupt { .. })
    ));
    store.close()?;
    match Store::open(&path, StoreConfig::default()) {
        Err(StorageError::Corrupt { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    Ok(())
}
