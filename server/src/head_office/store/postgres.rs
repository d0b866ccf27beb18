//! Head office's archive on PostgreSQL (`[storage] url = "postgres://…"`), through
//! `tokio-postgres` without TLS (a database on the head office's own network; put it behind
//! a TLS tunnel otherwise).
//!
//! Every write is one statement (a data-modifying `WITH` where two tables change), so it is
//! atomic without a client-side transaction, and PostgreSQL's commit makes it durable
//! (`synchronous_commit` as the server is configured: keep it `on`). Uniqueness is the
//! database's: `ON CONFLICT (report_id) DO NOTHING` archives a report once however many
//! processes verify it at the same moment.
//!
//! Migrations are the numbered files beside this module, recorded in `fieldsync_schema`,
//! applied under an advisory lock (two processes starting at once apply each step once), each
//! in its own transaction; a database whose schema is newer than this program is refused.
//!
//! A few connections are opened lazily and reopened when one breaks (the database restarted):
//! a failed statement is an error for that call only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fieldsync_storage::{
    ArchivedBrief, AsideRow, AsideStatus, ComplaintRow, ReportQuery, ReportRow, STATS_COLUMNS,
    StatsRow, StatsValues, month_stats_query,
};
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls, Row};

use super::StoreError;

/// The steps, in order; `fieldsync_schema.version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_head_office",
    include_str!("postgres/0001_head_office.sql"),
)];

/// Connections kept open; statements are pipelined on each.
const CONNECTIONS: usize = 4;

/// An arbitrary constant naming fieldsync's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x6669_656c_6473_796e;

pub struct Postgres {
    config: Config,
    slots: Vec<Mutex<Option<Arc<Client>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "head office's PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Brings the schema up to date; refuses a newer one.
async fn migrate(client: &Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS fieldsync_schema (
                     version BIGINT NOT NULL, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL
                 )",
            )
            .await?;
        let found: i64 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM fieldsync_schema",
                &[],
            )
            .await?
            .try_get(0)?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if found > known {
            return Err(StoreError::Schema(format!(
                "the PostgreSQL database is at schema version {found}, newer than this \
                 program's {known}: run the newer fieldsync"
            )));
        }
        for (index, (name, sql)) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
            if version <= found {
                continue;
            }
            client
                .batch_execute(&format!(
                    "BEGIN;\n{sql}\nINSERT INTO fieldsync_schema (version, name, applied_at) \
                     VALUES ({version}, '{name}', now());\nCOMMIT;"
                ))
                .await
                .map_err(|e| StoreError::Schema(format!("migration {name}: {e}")))?;
            tracing::info!(migration = name, "head office's PostgreSQL schema migrated");
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

const REPORT_COLUMNS: &str = "report_id, report_doc, branch_id, job_id, month, customer_id, \
    product_type, serial, supersedes, signed_at, verified_at, report, kind, billing, people, \
    days_on_site, parts, labour, travel, cost, customer_pays, training, acknowledged, attitude, \
    skill, punctuality, service_items, suggestion, fault";

/// The 17 statistics columns from `first` on.
fn stats_values(row: &Row, first: usize) -> Result<StatsValues, tokio_postgres::Error> {
    Ok(StatsValues {
        kind: row.try_get(first)?,
        billing: row.try_get(first + 1)?,
        people: row.try_get(first + 2)?,
        days_on_site: row.try_get(first + 3)?,
        charges: [
            row.try_get(first + 4)?,
            row.try_get(first + 5)?,
            row.try_get(first + 6)?,
            row.try_get(first + 7)?,
            row.try_get(first + 8)?,
        ],
        training: row.try_get(first + 9)?,
        acknowledged: row.try_get(first + 10)?,
        scores: [
            row.try_get(first + 11)?,
            row.try_get(first + 12)?,
            row.try_get(first + 13)?,
            row.try_get(first + 14)?,
        ],
        suggestion: row.try_get(first + 15)?,
        fault: row.try_get(first + 16)?,
    })
}

fn stats_row(row: &Row) -> Result<StatsRow, tokio_postgres::Error> {
    Ok(StatsRow {
        report_id: row.try_get(0)?,
        branch_id: row.try_get(1)?,
        job_id: row.try_get(2)?,
        signed_at: row.try_get(3)?,
        product_type: row.try_get(4)?,
        serial: row.try_get(5)?,
        stats: stats_values(row, 6)?.columns(),
        report: row.try_get(23)?,
    })
}

fn report_row(row: &Row) -> Result<ReportRow, tokio_postgres::Error> {
    Ok(ReportRow {
        report_id: row.try_get(0)?,
        report_doc: row.try_get(1)?,
        branch_id: row.try_get(2)?,
        job_id: row.try_get(3)?,
        month: row.try_get(4)?,
        customer_id: row.try_get(5)?,
        product_type: row.try_get(6)?,
        serial: row.try_get(7)?,
        supersedes: row.try_get(8)?,
        signed_at: row.try_get(9)?,
        verified_at: row.try_get(10)?,
        report: row.try_get(11)?,
        stats: stats_values(row, 12)?.columns(),
    })
}

fn aside_row(row: &Row) -> Result<AsideRow, tokio_postgres::Error> {
    let status: String = row.try_get(1)?;
    Ok(AsideRow {
        report_doc: row.try_get(0)?,
        status: if status == "pending" {
            AsideStatus::Pending
        } else {
            AsideStatus::Rejected
        },
        report_id: row.try_get(2)?,
        at: row.try_get(3)?,
        body: row.try_get(4)?,
    })
}

fn complaint_row(row: &Row) -> Result<ComplaintRow, tokio_postgres::Error> {
    Ok(ComplaintRow {
        key: row.try_get(0)?,
        branch_id: row.try_get(1)?,
        month: row.try_get(2)?,
        revision: row.try_get(3)?,
        body: row.try_get(4)?,
    })
}

impl Postgres {
    /// Connects to `url` once and migrates the schema, on a thread of its own with its own
    /// small runtime (so it can be called from synchronous start-up code, inside a runtime or
    /// not); the connections the archive then uses are opened on the caller's runtime at
    /// first use.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let config: Config = url.parse()?;
        let checked = config.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Schema(format!("cannot start a runtime: {e}")))?;
            runtime.block_on(async {
                let client = connect(&checked).await?;
                migrate(&client).await
            })
        })
        .join()
        .map_err(|_| StoreError::Join("the migration thread panicked".into()))??;
        Ok(Self {
            config,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// A connection, opened again if it broke.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(connect(&self.config).await?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(super) async fn archive_report(&self, r: &ReportRow) -> Result<(), StoreError> {
        let v = StatsValues::of(r.stats.as_ref());
        self.client()
            .await?
            .execute(
                &format!(
                    "WITH cleared AS (DELETE FROM ho_reports_aside WHERE report_doc = $2)
                     INSERT INTO ho_reports (report_id, report_doc, branch_id, job_id, month,
                         customer_id, product_type, serial, supersedes, signed_at,
                         verified_at, report, {STATS_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                         $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)
                     ON CONFLICT (report_id) DO NOTHING"
                ),
                &[
                    &r.report_id,
                    &r.report_doc,
                    &r.branch_id,
                    &r.job_id,
                    &r.month,
                    &r.customer_id,
                    &r.product_type,
                    &r.serial,
                    &r.supersedes,
                    &r.signed_at,
                    &r.verified_at,
                    &r.report,
                    &v.kind,
                    &v.billing,
                    &v.people,
                    &v.days_on_site,
                    &v.charges[0],
                    &v.charges[1],
                    &v.charges[2],
                    &v.charges[3],
                    &v.charges[4],
                    &v.training,
                    &v.acknowledged,
                    &v.scores[0],
                    &v.scores[1],
                    &v.scores[2],
                    &v.scores[3],
                    &v.suggestion,
                    &v.fault,
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn put_report_aside(&self, a: &AsideRow) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO ho_reports_aside (report_doc, status, report_id, at, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (report_doc) DO UPDATE SET status = excluded.status,
                     report_id = excluded.report_id, at = excluded.at, body = excluded.body",
                &[
                    &a.report_doc,
                    &a.status.as_str(),
                    &a.report_id,
                    &a.at,
                    &a.body,
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn delete_report_aside(
        &self,
        report_doc: &str,
        status: AsideStatus,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM ho_reports_aside WHERE report_doc = $1 AND status = $2",
                &[&report_doc, &status.as_str()],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn retry_rejected(&self, report_docs: &[String]) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "WITH cleared AS (DELETE FROM ho_reports_aside
                                  WHERE report_doc = ANY($1) AND status = 'rejected')
                 UPDATE ho_retry SET generation = generation + 1",
                &[&report_docs],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn retry_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one("SELECT generation FROM ho_retry", &[])
            .await?
            .try_get(0)?)
    }

    pub(super) async fn archived_briefs(
        &self,
        report_ids: &[String],
    ) -> Result<Vec<ArchivedBrief>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT report_id, branch_id, verified_at FROM ho_reports
                 WHERE report_id = ANY($1)",
                &[&report_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(ArchivedBrief {
                    report_id: row.try_get(0)?,
                    branch_id: row.try_get(1)?,
                    verified_at: row.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    pub(super) async fn reports_aside_by_doc(
        &self,
        report_docs: &[String],
    ) -> Result<Vec<AsideRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE report_doc = ANY($1)",
                &[&report_docs],
            )
            .await?;
        Ok(rows.iter().map(aside_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn archive_complaint(
        &self,
        row: &ComplaintRow,
        document: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "WITH cleared AS (DELETE FROM ho_complaints_rejected WHERE document = $6)
                 INSERT INTO ho_complaints (key, branch_id, month, revision, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (key) DO UPDATE SET branch_id = excluded.branch_id,
                     month = excluded.month, revision = excluded.revision, body = excluded.body
                 WHERE excluded.revision > ho_complaints.revision",
                &[
                    &row.key,
                    &row.branch_id,
                    &row.month,
                    &row.revision,
                    &row.body,
                    &document,
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn reject_complaint(
        &self,
        document: &str,
        at: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO ho_complaints_rejected (document, at, body) VALUES ($1, $2, $3)
                 ON CONFLICT (document) DO UPDATE SET at = excluded.at, body = excluded.body",
                &[&document, &at, &body],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn archived_report(
        &self,
        report_id: &str,
    ) -> Result<Option<ReportRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {REPORT_COLUMNS} FROM ho_reports WHERE report_id = $1"),
                &[&report_id],
            )
            .await?;
        Ok(row.as_ref().map(report_row).transpose()?)
    }

    pub(super) async fn archived_reports(
        &self,
        q: &ReportQuery,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {REPORT_COLUMNS} FROM ho_reports
                     WHERE ($1::text IS NULL OR month = $1)
                       AND ($2::text IS NULL OR customer_id = $2)
                       AND ($3::text IS NULL OR product_type = $3)
                       AND ($4::text IS NULL OR branch_id = $4)
                     ORDER BY signed_at, report_id"
                ),
                &[&q.month, &q.customer_id, &q.product_type, &q.branch_id],
            )
            .await?;
        Ok(rows.iter().map(report_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn reports_for_month_stats(
        &self,
        month: &str,
        look_back_from: i64,
    ) -> Result<Vec<StatsRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(&month_stats_query("$1", "$2"), &[&month, &look_back_from])
            .await?;
        Ok(rows.iter().map(stats_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn settled_report_docs(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT report_doc FROM ho_reports
                 UNION SELECT report_doc FROM ho_reports_aside WHERE status = 'rejected'",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    pub(super) async fn reports_aside(
        &self,
        status: AsideStatus,
    ) -> Result<Vec<AsideRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE status = $1 ORDER BY at, report_doc",
                &[&status.as_str()],
            )
            .await?;
        Ok(rows.iter().map(aside_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn report_aside_by_id(
        &self,
        report_id: &str,
    ) -> Result<Vec<AsideRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE report_id = $1 ORDER BY status DESC, at",
                &[&report_id],
            )
            .await?;
        Ok(rows.iter().map(aside_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn archived_complaint(
        &self,
        key: &str,
    ) -> Result<Option<ComplaintRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT key, branch_id, month, revision, body FROM ho_complaints WHERE key = $1",
                &[&key],
            )
            .await?;
        Ok(row.as_ref().map(complaint_row).transpose()?)
    }

    pub(super) async fn archived_complaints(
        &self,
        month: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Vec<ComplaintRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key, branch_id, month, revision, body FROM ho_complaints
                 WHERE ($1::text IS NULL OR month = $1) AND ($2::text IS NULL OR branch_id = $2)
                 ORDER BY key",
                &[&month, &branch],
            )
            .await?;
        Ok(rows.iter().map(complaint_row).collect::<Result<_, _>>()?)
    }

    pub(super) async fn rejected_complaints(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT body FROM ho_complaints_rejected ORDER BY at, document",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }
}
