//! Head office's archive tables (migration 0003): verified reports, reports kept aside or
//! waiting, archived complaints and complaint documents kept aside.
//!
//! The rows are plain columns and JSON text; what they mean is the server's
//! (`fieldsync_server::head_office::store`), which keeps the same tables on PostgreSQL. Writes
//! go through the writer thread like every other write, so a `Pending` completes only after
//! COMMIT.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Pending, StorageError, Store};

/// One verified report: the columns the lists and statistics select by, and the signed
/// report's JSON as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub report_id: String,
    pub report_doc: String,
    pub branch_id: String,
    pub job_id: String,
    /// `YYYY-MM` of `signed_at` (UTC).
    pub month: String,
    pub customer_id: String,
    pub product_type: String,
    /// The product's serial number (R4 looks back by it).
    pub serial: String,
    /// The report id this one supersedes, if any.
    pub supersedes: Option<String>,
    /// Epoch milliseconds.
    pub signed_at: i64,
    pub verified_at: i64,
    /// The signed report's JSON.
    pub report: String,
    /// What the month's statistics read of it, computed at archive time; `None` for a row
    /// archived before they were kept (the statistics then read the report).
    pub stats: Option<StatsColumns>,
}

/// What a month's statistics read of one report (the server's `stats::ReportFacts`), kept
/// in columns beside it when it is archived, in the same row: written exactly once with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsColumns {
    /// The job kind (`repair`, `installation`, …).
    pub kind: String,
    /// `warranty` or `billable`.
    pub billing: String,
    pub people: i64,
    pub days_on_site: i64,
    /// Parts, labour, travel, cost, customer pays (money, cents); `None` when they overflow.
    pub charges: Option<[i64; 5]>,
    pub training: bool,
    /// The four R9 scores when the report carries the customer's acknowledgement.
    pub survey: Option<[Option<i64>; 4]>,
    /// R9: the customer wrote a suggestion.
    pub suggestion: bool,
    pub fault: Option<String>,
}

/// One report as a month's statistics read it: its columns, and its JSON only when its
/// statistics columns were not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub report_id: String,
    pub branch_id: String,
    pub job_id: String,
    pub signed_at: i64,
    pub product_type: String,
    pub serial: String,
    pub stats: Option<StatsColumns>,
    pub report: Option<String>,
}

/// The statistics columns, in [`StatsColumns`] order (17).
pub const STATS_COLUMNS: &str = "kind, billing, people, days_on_site, parts, labour, travel, \
    cost, customer_pays, training, acknowledged, attitude, skill, punctuality, service_items, \
    suggestion, fault";

/// The statistics columns' 17 values of `row` as SQL parameters (NULLs when not kept), by
/// field: the backends bind them alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsValues {
    pub kind: Option<String>,
    pub billing: Option<String>,
    pub people: Option<i64>,
    pub days_on_site: Option<i64>,
    pub charges: [Option<i64>; 5],
    pub training: Option<bool>,
    pub acknowledged: Option<bool>,
    pub scores: [Option<i64>; 4],
    pub suggestion: Option<bool>,
    pub fault: Option<String>,
}

impl StatsValues {
    pub fn of(stats: Option<&StatsColumns>) -> Self {
        let Some(c) = stats else {
            return Self::default();
        };
        Self {
            kind: Some(c.kind.clone()),
            billing: Some(c.billing.clone()),
            people: Some(c.people),
            days_on_site: Some(c.days_on_site),
            charges: c.charges.map_or([None; 5], |m| m.map(Some)),
            training: Some(c.training),
            acknowledged: Some(c.survey.is_some()),
            scores: c.survey.unwrap_or([None; 4]),
            suggestion: Some(c.suggestion),
            fault: c.fault.clone(),
        }
    }

    /// The columns back; `None` when the row has none (`kind` is NULL).
    pub fn columns(self) -> Option<StatsColumns> {
        let (kind, billing, people, days_on_site) =
            (self.kind?, self.billing?, self.people?, self.days_on_site?);
        let [a, b, c, d, e] = self.charges;
        Some(StatsColumns {
            kind,
            billing,
            people,
            days_on_site,
            charges: (|| Some([a?, b?, c?, d?, e?]))(),
            training: self.training.unwrap_or(false),
            survey: self.acknowledged.unwrap_or(false).then_some(self.scores),
            suggestion: self.suggestion.unwrap_or(false),
            fault: self.fault,
        })
    }
}

/// Which verified reports to list; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportQuery {
    pub month: Option<String>,
    pub customer_id: Option<String>,
    pub product_type: Option<String>,
    pub branch_id: Option<String>,
}

/// Why a report document is not archived: kept aside, or waiting for its job document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsideStatus {
    Pending,
    Rejected,
}

impl AsideStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AsideStatus::Pending => "pending",
            AsideStatus::Rejected => "rejected",
        }
    }
}

/// A report document set aside (one row per document: rejected or pending, never both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsideRow {
    pub report_doc: String,
    pub status: AsideStatus,
    pub report_id: Option<String>,
    /// Epoch milliseconds.
    pub at: i64,
    /// The server's JSON record of why.
    pub body: String,
}

/// An archived complaint: its latest verified revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintRow {
    /// `<branch>/<complaint id>`.
    pub key: String,
    pub branch_id: String,
    /// `YYYY-MM` of receipt.
    pub month: String,
    pub revision: i64,
    pub body: String,
}

/// What a branch's verdict needs of an archived report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedBrief {
    pub report_id: String,
    pub branch_id: String,
    /// Epoch milliseconds.
    pub verified_at: i64,
}

/// A write to head office's tables.
#[derive(Debug)]
pub(crate) enum Write {
    /// Archives a report (nothing if its id is archived already) and takes its document out
    /// of the aside list.
    ArchiveReport(Box<ReportRow>),
    PutAside(AsideRow),
    DeleteAside {
        report_doc: String,
        status: AsideStatus,
    },
    /// Stores a complaint revision over a lower one only, and takes its document out of the
    /// rejected list.
    ArchiveComplaint {
        row: ComplaintRow,
        document: String,
    },
    RejectComplaint {
        document: String,
        at: i64,
        body: String,
    },
    Unarchive {
        report_id: String,
    },
    /// Takes report documents out of the rejected list and moves the retry generation on.
    RetryRejected {
        report_docs: Vec<String>,
    },
}

/// The month's statistics query, the same on both backends (`month`, `look_back_from`: their
/// parameters' placeholders): the month's reports by `ho_reports_by_month`, no superseded one
/// (`ho_reports_superseding`), and R4's look-back by `ho_reports_by_serial`, only rows with a
/// fault (or none recorded), since only those can pair.
pub fn month_stats_query(month: &str, look_back_from: &str) -> String {
    let columns = "r.report_id, r.branch_id, r.job_id, r.signed_at, r.product_type, r.serial, \
         r.kind, r.billing, r.people, r.days_on_site, r.parts, r.labour, r.travel, r.cost, \
         r.customer_pays, r.training, r.acknowledged, r.attitude, r.skill, r.punctuality, \
         r.service_items, r.suggestion, r.fault, CASE WHEN r.kind IS NULL THEN r.report END";
    format!(
        "SELECT {columns} FROM ho_reports r
         WHERE r.month = {month}
           AND NOT EXISTS (SELECT 1 FROM ho_reports s WHERE s.supersedes = r.report_id)
         UNION ALL
         SELECT {columns} FROM ho_reports r
         WHERE r.signed_at >= {look_back_from} AND r.month < {month}
           AND (r.fault IS NOT NULL OR r.kind IS NULL)
           AND r.serial IN (SELECT serial FROM ho_reports WHERE month = {month})
           AND NOT EXISTS (SELECT 1 FROM ho_reports s WHERE s.supersedes = r.report_id)
         ORDER BY 4, 1"
    )
}

pub(crate) fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::ArchiveReport(r) => {
            conn.prepare_cached("DELETE FROM ho_reports_aside WHERE report_doc = ?1")?
                .execute([&r.report_doc])?;
            let v = StatsValues::of(r.stats.as_ref());
            conn.prepare_cached(&format!(
                "INSERT INTO ho_reports (report_id, report_doc, branch_id, job_id, month,
                     customer_id, product_type, serial, supersedes, signed_at, verified_at,
                     report, {STATS_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)
                 ON CONFLICT (report_id) DO NOTHING"
            ))?
            .execute(params![
                r.report_id,
                r.report_doc,
                r.branch_id,
                r.job_id,
                r.month,
                r.customer_id,
                r.product_type,
                r.serial,
                r.supersedes,
                r.signed_at,
                r.verified_at,
                r.report,
                v.kind,
                v.billing,
                v.people,
                v.days_on_site,
                v.charges[0],
                v.charges[1],
                v.charges[2],
                v.charges[3],
                v.charges[4],
                v.training,
                v.acknowledged,
                v.scores[0],
                v.scores[1],
                v.scores[2],
                v.scores[3],
                v.suggestion,
                v.fault
            ])?;
        }
        Write::PutAside(a) => {
            conn.prepare_cached(
                "INSERT INTO ho_reports_aside (report_doc, status, report_id, at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (report_doc) DO UPDATE SET status = excluded.status,
                     report_id = excluded.report_id, at = excluded.at, body = excluded.body",
            )?
            .execute(params![
                a.report_doc,
                a.status.as_str(),
                a.report_id,
                a.at,
                a.body
            ])?;
        }
        Write::DeleteAside { report_doc, status } => {
            conn.prepare_cached(
                "DELETE FROM ho_reports_aside WHERE report_doc = ?1 AND status = ?2",
            )?
            .execute([report_doc.as_str(), status.as_str()])?;
        }
        Write::ArchiveComplaint { row, document } => {
            conn.prepare_cached(
                "INSERT INTO ho_complaints (key, branch_id, month, revision, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET branch_id = excluded.branch_id,
                     month = excluded.month, revision = excluded.revision, body = excluded.body
                 WHERE excluded.revision > ho_complaints.revision",
            )?
            .execute(params![
                row.key,
                row.branch_id,
                row.month,
                row.revision,
                row.body
            ])?;
            conn.prepare_cached("DELETE FROM ho_complaints_rejected WHERE document = ?1")?
                .execute([document])?;
        }
        Write::RejectComplaint { document, at, body } => {
            conn.prepare_cached(
                "INSERT INTO ho_complaints_rejected (document, at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (document) DO UPDATE SET at = excluded.at, body = excluded.body",
            )?
            .execute(params![document, at, body])?;
        }
        Write::Unarchive { report_id } => {
            conn.prepare_cached("DELETE FROM ho_reports WHERE report_id = ?1")?
                .execute([report_id])?;
        }
        Write::RetryRejected { report_docs } => {
            let mut delete = conn.prepare_cached(
                "DELETE FROM ho_reports_aside WHERE report_doc = ?1 AND status = 'rejected'",
            )?;
            for doc in report_docs {
                delete.execute([doc])?;
            }
            conn.prepare_cached("UPDATE ho_retry SET generation = generation + 1")?
                .execute([])?;
        }
    }
    Ok(())
}

const REPORT_COLUMNS: &str = "report_id, report_doc, branch_id, job_id, month, customer_id, \
    product_type, serial, supersedes, signed_at, verified_at, report, kind, billing, people, \
    days_on_site, parts, labour, travel, cost, customer_pays, training, acknowledged, attitude, \
    skill, punctuality, service_items, suggestion, fault";

/// The 17 statistics columns from `first` on.
fn stats_values(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StatsValues> {
    Ok(StatsValues {
        kind: row.get(first)?,
        billing: row.get(first + 1)?,
        people: row.get(first + 2)?,
        days_on_site: row.get(first + 3)?,
        charges: [
            row.get(first + 4)?,
            row.get(first + 5)?,
            row.get(first + 6)?,
            row.get(first + 7)?,
            row.get(first + 8)?,
        ],
        training: row.get(first + 9)?,
        acknowledged: row.get(first + 10)?,
        scores: [
            row.get(first + 11)?,
            row.get(first + 12)?,
            row.get(first + 13)?,
            row.get(first + 14)?,
        ],
        suggestion: row.get(first + 15)?,
        fault: row.get(first + 16)?,
    })
}

fn stats_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StatsRow> {
    Ok(StatsRow {
        report_id: row.get(0)?,
        branch_id: row.get(1)?,
        job_id: row.get(2)?,
        signed_at: row.get(3)?,
        product_type: row.get(4)?,
        serial: row.get(5)?,
        stats: stats_values(row, 6)?.columns(),
        report: row.get(23)?,
    })
}

fn report_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReportRow> {
    Ok(ReportRow {
        report_id: row.get(0)?,
        report_doc: row.get(1)?,
        branch_id: row.get(2)?,
        job_id: row.get(3)?,
        month: row.get(4)?,
        customer_id: row.get(5)?,
        product_type: row.get(6)?,
        serial: row.get(7)?,
        supersedes: row.get(8)?,
        signed_at: row.get(9)?,
        verified_at: row.get(10)?,
        report: row.get(11)?,
        stats: stats_values(row, 12)?.columns(),
    })
}

fn aside_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AsideRow> {
    let status: String = row.get(1)?;
    Ok(AsideRow {
        report_doc: row.get(0)?,
        status: if status == "pending" {
            AsideStatus::Pending
        } else {
            AsideStatus::Rejected
        },
        report_id: row.get(2)?,
        at: row.get(3)?,
        body: row.get(4)?,
    })
}

fn complaint_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ComplaintRow> {
    Ok(ComplaintRow {
        key: row.get(0)?,
        branch_id: row.get(1)?,
        month: row.get(2)?,
        revision: row.get(3)?,
        body: row.get(4)?,
    })
}

impl Store {
    /// Archives a verified report once: a second report with the same id stores nothing.
    pub fn archive_report(&self, row: ReportRow) -> Pending<()> {
        self.submit_head_office(Write::ArchiveReport(Box::new(row)))
    }

    /// Sets a report document aside (replacing whatever aside record it had).
    pub fn put_report_aside(&self, row: AsideRow) -> Pending<()> {
        self.submit_head_office(Write::PutAside(row))
    }

    /// Takes a report document out of one aside list.
    pub fn delete_report_aside(&self, report_doc: &str, status: AsideStatus) -> Pending<()> {
        self.submit_head_office(Write::DeleteAside {
            report_doc: report_doc.to_owned(),
            status,
        })
    }

    /// Archives a complaint revision over a lower one only.
    pub fn archive_complaint(&self, row: ComplaintRow, document: &str) -> Pending<()> {
        self.submit_head_office(Write::ArchiveComplaint {
            row,
            document: document.to_owned(),
        })
    }

    pub fn reject_complaint(&self, document: &str, at: i64, body: String) -> Pending<()> {
        self.submit_head_office(Write::RejectComplaint {
            document: document.to_owned(),
            at,
            body,
        })
    }

    /// Takes a report out of the archive, so that the next start verifies its document again
    /// (what a kill between storing a document and archiving it leaves).
    pub fn unarchive_report(&self, report_id: &str) -> Pending<()> {
        self.submit_head_office(Write::Unarchive {
            report_id: report_id.to_owned(),
        })
    }

    /// Takes report documents out of the rejected list and moves the retry generation on (one
    /// transaction), so that every receiver on this archive verifies them again.
    pub fn retry_rejected(&self, report_docs: Vec<String>) -> Pending<()> {
        self.submit_head_office(Write::RetryRejected { report_docs })
    }

    /// How many retries were asked (0 before the first).
    pub fn retry_generation(&self) -> Result<i64, StorageError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT generation FROM ho_retry")?
                .query_row([], |row| row.get(0))
        })
    }

    /// The archived reports among `report_ids`, briefly.
    pub fn archived_briefs(
        &self,
        report_ids: &[String],
    ) -> Result<Vec<ArchivedBrief>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT report_id, branch_id, verified_at FROM ho_reports WHERE report_id = ?1",
            )?;
            let mut found = Vec::new();
            for id in report_ids {
                if let Some(brief) = stmt
                    .query_row([id], |row| {
                        Ok(ArchivedBrief {
                            report_id: row.get(0)?,
                            branch_id: row.get(1)?,
                            verified_at: row.get(2)?,
                        })
                    })
                    .optional()?
                {
                    found.push(brief);
                }
            }
            Ok(found)
        })
    }

    /// The aside records of the report documents `report_docs` (each in at most one list).
    pub fn reports_aside_by_doc(
        &self,
        report_docs: &[String],
    ) -> Result<Vec<AsideRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE report_doc = ?1",
            )?;
            let mut found = Vec::new();
            for doc in report_docs {
                if let Some(row) = stmt.query_row([doc], aside_row).optional()? {
                    found.push(row);
                }
            }
            Ok(found)
        })
    }

    pub fn archived_report(&self, report_id: &str) -> Result<Option<ReportRow>, StorageError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM ho_reports WHERE report_id = ?1"
            ))?
            .query_row([report_id], report_row)
            .optional()
        })
    }

    /// Verified reports matching `query`, oldest first.
    pub fn archived_reports(&self, query: &ReportQuery) -> Result<Vec<ReportRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM ho_reports
                 WHERE (?1 IS NULL OR month = ?1) AND (?2 IS NULL OR customer_id = ?2)
                   AND (?3 IS NULL OR product_type = ?3) AND (?4 IS NULL OR branch_id = ?4)
                 ORDER BY signed_at, report_id"
            ))?;
            let rows = stmt.query_map(
                params![
                    query.month,
                    query.customer_id,
                    query.product_type,
                    query.branch_id
                ],
                report_row,
            )?;
            rows.collect()
        })
    }

    /// What the month's statistics read: every report of `month` that no archived report
    /// supersedes, and the earlier ones with a fault (signed at or after `look_back_from`,
    /// epoch ms) on a serial the month has, for R4's repeat repairs. Oldest first. The
    /// statistics columns only; a report's JSON only where they were not kept.
    pub fn reports_for_month_stats(
        &self,
        month: &str,
        look_back_from: i64,
    ) -> Result<Vec<StatsRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&month_stats_query("?1", "?2"))?;
            let rows = stmt.query_map(params![month, look_back_from], stats_row)?;
            rows.collect()
        })
    }

    /// Report documents whose outcome stands: archived or rejected.
    pub fn settled_report_docs(&self) -> Result<Vec<String>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT report_doc FROM ho_reports
                 UNION SELECT report_doc FROM ho_reports_aside WHERE status = 'rejected'",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            rows.collect()
        })
    }

    /// Report documents set aside with `status`, oldest first.
    pub fn reports_aside(&self, status: AsideStatus) -> Result<Vec<AsideRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE status = ?1 ORDER BY at, report_doc",
            )?;
            let rows = stmt.query_map([status.as_str()], aside_row)?;
            rows.collect()
        })
    }

    /// The aside records naming `report_id`, rejected before pending.
    pub fn report_aside_by_id(&self, report_id: &str) -> Result<Vec<AsideRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT report_doc, status, report_id, at, body FROM ho_reports_aside
                 WHERE report_id = ?1 ORDER BY status DESC, at",
            )?;
            let rows = stmt.query_map([report_id], aside_row)?;
            rows.collect()
        })
    }

    pub fn archived_complaint(&self, key: &str) -> Result<Option<ComplaintRow>, StorageError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT key, branch_id, month, revision, body FROM ho_complaints WHERE key = ?1",
            )?
            .query_row([key], complaint_row)
            .optional()
        })
    }

    /// Archived complaints, of `month` and `branch` when given.
    pub fn archived_complaints(
        &self,
        month: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Vec<ComplaintRow>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, branch_id, month, revision, body FROM ho_complaints
                 WHERE (?1 IS NULL OR month = ?1) AND (?2 IS NULL OR branch_id = ?2)
                 ORDER BY key",
            )?;
            let rows = stmt.query_map(params![month, branch], complaint_row)?;
            rows.collect()
        })
    }

    /// The JSON records of complaint documents kept aside.
    pub fn rejected_complaints(&self) -> Result<Vec<String>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT body FROM ho_complaints_rejected ORDER BY at, document")?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            rows.collect()
        })
    }
}
