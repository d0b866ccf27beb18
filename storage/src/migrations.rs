//! Schema migrations: numbered SQL files under `storage/migrations/`, compiled in, tracked in
//! `PRAGMA user_version`.
//!
//! `user_version` belongs to this crate alone: it counts the steps of [`MIGRATIONS`] applied
//! to the file. Each step runs in its own `BEGIN IMMEDIATE` transaction together with the
//! `user_version` bump, so a crash mid-way leaves the file at the previous step, never in
//! between. A released step is never edited; a schema change is a new file appended here.

use rusqlite::{Connection, TransactionBehavior};

use crate::StorageError;

/// One migration step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The `user_version` the database has once this step is applied; steps are numbered
    /// 1, 2, 3, ... with no gaps.
    pub(crate) version: i64,
    /// The file name without `.sql`, `NNNN_what`, where `NNNN` is `version`.
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every step, in order. Append new steps at the end (and a seed for the step's schema in the
/// tests below).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_records",
        sql: include_str!("../migrations/0002_records.sql"),
    },
    Migration {
        version: 3,
        name: "0003_head_office",
        sql: include_str!("../migrations/0003_head_office.sql"),
    },
    Migration {
        version: 4,
        name: "0004_doc_summaries",
        sql: include_str!("../migrations/0004_doc_summaries.sql"),
    },
    Migration {
        version: 5,
        name: "0005_doc_versions",
        sql: include_str!("../migrations/0005_doc_versions.sql"),
    },
];

/// The schema version this build writes: the number of the last migration.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies every step up to and including `target`, each in its own transaction.
///
/// The version is read again under the write lock, so two processes opening the same file
/// at once do not both apply a step.
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StorageError> {
    for step in MIGRATIONS.iter().filter(|step| step.version <= target) {
        apply_step(conn, step).map_err(|source| StorageError::Migration {
            step: step.name,
            source,
        })?;
    }
    Ok(())
}

fn apply_step(conn: &mut Connection, step: &Migration) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if user_version(&tx)? >= step.version {
        return Ok(());
    }
    tx.execute_batch(step.sql)?;
    tx.pragma_update(None, "user_version", step.version)?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use anyhow::{Context, ensure};
    use rusqlite::params;

    use super::*;

    #[test]
    fn steps_are_numbered_without_gaps_and_named_after_their_number() {
        for (index, step) in MIGRATIONS.iter().enumerate() {
            let expected = i64::try_from(index).map(|i| i + 1).ok();
            assert_eq!(Some(step.version), expected, "{}", step.name);
            assert!(
                step.name.starts_with(&format!("{:04}_", step.version)),
                "{} does not start with its number",
                step.name
            );
        }
        assert_eq!(
            MIGRATIONS.last().map(|step| step.version),
            Some(SCHEMA_VERSION)
        );
    }

    #[test]
    fn migrating_an_empty_database_reaches_the_current_version() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut conn = Connection::open(dir.path().join("empty.sqlite"))?;
        assert_eq!(user_version(&conn)?, 0);
        migrate(&mut conn)?;
        assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
        // Running again is a no-op, as on every later open.
        migrate(&mut conn)?;
        assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
        check_sound(&conn)
    }

    /// Each step applies to a database that holds data written at the previous step, and
    /// that data is still readable afterwards. A new migration adds a `seed` arm for the
    /// schema it produces and a `check_seed` arm for how earlier data must look after it.
    #[test]
    fn each_step_applies_on_a_database_created_at_the_previous_step() -> anyhow::Result<()> {
        for step in MIGRATIONS {
            let previous = step.version - 1;
            let dir = tempfile::tempdir()?;
            let mut conn = Connection::open(dir.path().join("step.sqlite"))?;
            migrate_to(&mut conn, previous)?;
            ensure!(user_version(&conn)? == previous);
            seed(&conn, previous).with_context(|| format!("seeding version {previous}"))?;

            migrate_to(&mut conn, step.version).with_context(|| step.name)?;

            ensure!(user_version(&conn)? == step.version, "{}", step.name);
            check_seed(&conn, previous, step.version)
                .with_context(|| format!("data of version {previous} after {}", step.name))?;
            check_sound(&conn)?;
            // The next step's test will start from data of this version: make sure it can.
            seed(&conn, step.version).with_context(|| format!("seeding {}", step.name))?;
        }
        Ok(())
    }

    /// Writes representative rows with the schema of `version`.
    fn seed(conn: &Connection, version: i64) -> anyhow::Result<()> {
        match version {
            0 => {}
            1 => {
                conn.execute(
                    "INSERT INTO doc_chunks (doc_id, kind, key, data) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        "2j9knpCseyhnK8izDmLpGP5WMdZQ",
                        "snapshot",
                        [7u8; 32],
                        b"snap"
                    ],
                )?;
                conn.execute(
                    "INSERT INTO sync_states (peer_storage_id, doc_id, state) VALUES (?1, ?2, ?3)",
                    params!["peer-1", "2j9knpCseyhnK8izDmLpGP5WMdZQ", b"state"],
                )?;
                conn.execute(
                    "INSERT INTO meta (namespace, key, value) VALUES (?1, ?2, ?3)",
                    params!["devices", "dev-1", b"record"],
                )?;
            }
            2 => {
                conn.execute(
                    "INSERT INTO records (kind, id, revision, lookup, open, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params!["tool", "torque-1", 1, "TW-9", 1, b"{}"],
                )?;
                // Head office's archive as 0003 finds it in `meta`: an entry, its indexes, a
                // report kept aside, a complaint and its index.
                let entry = serde_json::json!({
                    "report_id": "r1", "report_doc": "doc-r1", "branch_id": "north-01",
                    "job_id": "job-1", "month": "2026-10", "customer_id": "cust-1",
                    "product_type": "chiller", "signed_at": 1_790_000_000_000i64,
                    "verified_at": 1_790_000_100_000i64,
                    "report": {"body": {"content": {"product": {"serial": "SN-1"}},
                                        "supersedes": "r0"}}
                });
                let aside = serde_json::json!({"report_doc": "doc-r2", "report_id": "r2",
                    "code": "bad_branch_signature", "at": 1_790_000_200_000i64});
                let complaint = serde_json::json!({"branch_id": "north-01", "month": "2026-10",
                    "revision": 3});
                for (namespace, key, value) in [
                    ("archive", "r1", entry.to_string()),
                    ("by_month:2026-10", "r1", String::new()),
                    ("by_customer:cust-1", "r1", String::new()),
                    ("rejected_reports", "doc-r2", aside.to_string()),
                    ("complaint_archive", "north-01/c1", complaint.to_string()),
                    ("complaints_by_month:2026-10", "north-01/c1", String::new()),
                ] {
                    conn.execute(
                        "INSERT INTO meta (namespace, key, value) VALUES (?1, ?2, ?3)",
                        params![namespace, key, value.into_bytes()],
                    )?;
                }
            }
            3 => {
                conn.execute(
                    "INSERT INTO ho_reports (report_id, report_doc, branch_id, job_id, month,
                         customer_id, product_type, serial, supersedes, signed_at,
                         verified_at, report)
                     VALUES ('r9', 'doc-r9', 'b', 'j', '2026-11', 'c', 'p', 's', NULL, 1, 2, '{}')",
                    [],
                )?;
            }
            4 => {
                // Two documents stored before 0005, the second changed last.
                for (doc, key) in [
                    ("2j9knpCseyhnK8izDmLpGP5WMdZQ", [1u8; 32]),
                    ("4NMNnkMhL8jXrdJ9jamS58PAVdXu", [2u8; 32]),
                    ("2j9knpCseyhnK8izDmLpGP5WMdZQ", [3u8; 32]),
                    ("4NMNnkMhL8jXrdJ9jamS58PAVdXu", [4u8; 32]),
                ] {
                    conn.execute(
                        "INSERT INTO doc_chunks (doc_id, kind, key, data)
                         VALUES (?1, 'incremental', ?2, x'00')",
                        params![doc, key],
                    )?;
                }
                conn.execute(
                    "INSERT INTO doc_summaries (doc_id, body) VALUES (?1, ?2)",
                    params!["2j9knpCseyhnK8izDmLpGP5WMdZQ", b"summary"],
                )?;
            }
            5 => {
                conn.execute(
                    "INSERT INTO doc_watermarks (worker, seq) VALUES ('signer', 1)",
                    [],
                )?;
            }
            other => anyhow::bail!("no seed for schema version {other}: add one"),
        }
        Ok(())
    }

    /// Checks that what `seed(seeded)` wrote reads back correctly at schema `now`.
    fn check_seed(conn: &Connection, seeded: i64, now: i64) -> anyhow::Result<()> {
        match (seeded, now) {
            (0, _) => Ok(()),
            // 0002 adds a table and leaves the tables of 0001 and their rows alone.
            (1, 2) => {
                let count = |table: &str| -> rusqlite::Result<i64> {
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                        row.get(0)
                    })
                };
                ensure!(count("doc_chunks")? == 1);
                ensure!(count("sync_states")? == 1);
                ensure!(count("meta")? == 1);
                ensure!(count("records")? == 0);
                Ok(())
            }
            // 0003 moves head office's archive out of `meta` into its tables.
            (2, 3) => {
                let (id, serial, supersedes, month, signed_at): (
                    String,
                    String,
                    String,
                    String,
                    i64,
                ) = conn.query_row(
                    "SELECT report_id, serial, supersedes, month, signed_at FROM ho_reports",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
                ensure!(id == "r1" && serial == "SN-1" && supersedes == "r0");
                ensure!(month == "2026-10" && signed_at == 1_790_000_000_000);
                let (status, report_id): (String, String) = conn.query_row(
                    "SELECT status, report_id FROM ho_reports_aside WHERE report_doc = 'doc-r2'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                ensure!(status == "rejected" && report_id == "r2");
                let revision: i64 = conn.query_row(
                    "SELECT revision FROM ho_complaints WHERE key = 'north-01/c1'",
                    [],
                    |r| r.get(0),
                )?;
                ensure!(revision == 3);
                // Nothing of head office's is left in `meta`: the entries and their indexes.
                let meta: i64 = conn.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?;
                ensure!(meta == 0, "{meta} rows left in meta");
                ensure!(
                    conn.query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))?
                        == 1
                );
                Ok(())
            }
            // 0004 adds the summaries, empty (a device builds them once, at its next open), and
            // leaves every earlier table alone.
            (3, 4) => {
                let count = |table: &str| -> rusqlite::Result<i64> {
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                        row.get(0)
                    })
                };
                ensure!(count("doc_summaries")? == 0);
                ensure!(count("ho_reports")? == 1);
                Ok(())
            }
            // 0005 numbers the documents already stored (one row each) and leaves the rest.
            (4, 5) => {
                let versions: Vec<(String, i64)> = conn
                    .prepare("SELECT doc_id, seq FROM doc_versions ORDER BY seq")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                ensure!(
                    versions
                        == [
                            ("2j9knpCseyhnK8izDmLpGP5WMdZQ".to_owned(), 1),
                            ("4NMNnkMhL8jXrdJ9jamS58PAVdXu".to_owned(), 2)
                        ],
                    "{versions:?}"
                );
                let watermarks: i64 =
                    conn.query_row("SELECT count(*) FROM doc_watermarks", [], |r| r.get(0))?;
                ensure!(watermarks == 0);
                Ok(())
            }
            (other, now) => anyhow::bail!("no check for data of version {other} at version {now}"),
        }
    }

    fn check_sound(conn: &Connection) -> anyhow::Result<()> {
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        ensure!(integrity == "ok", "integrity_check: {integrity}");
        let violations: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
                row.get(0)
            })?;
        ensure!(violations == 0, "{violations} foreign key violations");
        Ok(())
    }
}
