//! Where head office keeps what it archived (issue 16): verified reports with the columns
//! R25 lists and R24 selects by, report documents kept aside or waiting, archived complaints
//! and complaint documents kept aside, and the statistics query.
//!
//! [`HeadOfficeStore`] is the one interface `receive`, `archive` and `complaints` use. Two
//! backends answer it with the same tables and the same queries:
//! - **SQLite** (the default): the node's own database (`fieldsync-storage`, migration 0003),
//!   or with `[storage] url = "sqlite:/path/archive.db"` a separate file that several
//!   head-office processes on one machine share;
//! - **PostgreSQL** (`[storage] url = "postgres://…"`, [`postgres`]): one database shared by
//!   any number of head-office processes, e.g. behind a TCP load balancer.
//!
//! Either way a report is archived once, by its id (unique; a second delivery, to the same or
//! another process, confirms without a second row), a complaint revision only over a lower
//! one, and every process computes the same statistics from the same rows. The automerge
//! documents themselves (received report and job documents) stay in each process's own store.

pub mod postgres;

use std::path::PathBuf;
use std::sync::Arc;

use fieldsync_storage::{
    ArchivedBrief, AsideRow, AsideStatus, ComplaintRow, ReportQuery, ReportRow, StatsRow,
    StorageError, Store, StoreConfig,
};

use self::postgres::Postgres;

/// Why the archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Sqlite(#[from] StorageError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Schema(String),
    #[error("a blocking read did not finish: {0}")]
    Join(String),
}

/// Where `[storage] url` says head office's archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// The node's own SQLite database (no url).
    NodeStore,
    /// A SQLite file of its own (`sqlite:/path`), which several processes may share.
    SqliteFile(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl StorageUrl {
    /// Reads `[storage] url`; the error says what forms are accepted.
    pub fn parse(url: Option<&str>) -> Result<Self, String> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::NodeStore);
        };
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("storage url sqlite: needs a file path, e.g. sqlite:/srv/ho.db".into());
            }
            return Ok(Self::SqliteFile(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("storage url: {e}"))?;
            return Ok(Self::Postgres(url.to_owned()));
        }
        Err(format!(
            "storage url {url:?}: use postgres://user@host:port/database or sqlite:/path/file.db \
             (or leave it out for the data directory's own database)"
        ))
    }
}

/// Head office's archive, on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub enum HeadOfficeStore {
    Sqlite(Arc<Store>),
    Postgres(Arc<Postgres>),
}

/// Runs a read of the SQLite store on the blocking pool.
async fn read<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
        .map_err(StoreError::from)
}

impl HeadOfficeStore {
    /// Opens the archive `url` names; `node_store` is the data directory's database. For
    /// PostgreSQL this connects and brings the schema up to date, so a wrong url, an
    /// unreachable server or a schema newer than this program stops the start, named. It
    /// blocks briefly; call it at start-up.
    pub fn open(url: &StorageUrl, node_store: &Arc<Store>) -> Result<Self, StoreError> {
        match url {
            StorageUrl::NodeStore => Ok(Self::Sqlite(Arc::clone(node_store))),
            StorageUrl::SqliteFile(path) => Ok(Self::Sqlite(Arc::new(Store::open(
                path,
                StoreConfig::default(),
            )?))),
            StorageUrl::Postgres(url) => Ok(Self::Postgres(Arc::new(Postgres::open(url)?))),
        }
    }

    /// `sqlite` or `postgres`, for logs and figures.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    // ---- writes: each completes once durable (SQLite COMMIT; PostgreSQL's commit) ----

    /// Archives a verified report once (unique on its id) and takes its document out of the
    /// aside lists, in one transaction.
    pub async fn archive_report(&self, row: ReportRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.archive_report(row).await?),
            Self::Postgres(p) => p.archive_report(&row).await,
        }
    }

    pub async fn put_report_aside(&self, row: AsideRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.put_report_aside(row).await?),
            Self::Postgres(p) => p.put_report_aside(&row).await,
        }
    }

    pub async fn delete_report_aside(
        &self,
        report_doc: &str,
        status: AsideStatus,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.delete_report_aside(report_doc, status).await?),
            Self::Postgres(p) => p.delete_report_aside(report_doc, status).await,
        }
    }

    /// Takes report documents out of the rejected list and moves the retry generation on, in
    /// one transaction: every receiver on the archive then verifies them again.
    pub async fn retry_rejected(&self, report_docs: Vec<String>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.retry_rejected(report_docs).await?),
            Self::Postgres(p) => p.retry_rejected(&report_docs).await,
        }
    }

    /// Archives a complaint revision over a lower one only, and takes its document out of
    /// the rejected list.
    pub async fn archive_complaint(
        &self,
        row: ComplaintRow,
        document: &str,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.archive_complaint(row, document).await?),
            Self::Postgres(p) => p.archive_complaint(&row, document).await,
        }
    }

    pub async fn reject_complaint(
        &self,
        document: &str,
        at: i64,
        body: String,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => Ok(s.reject_complaint(document, at, body).await?),
            Self::Postgres(p) => p.reject_complaint(document, at, &body).await,
        }
    }

    // ---- reads ----

    pub async fn archived_report(&self, report_id: &str) -> Result<Option<ReportRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let id = report_id.to_owned();
                read(s, move |s| s.archived_report(&id)).await
            }
            Self::Postgres(p) => p.archived_report(report_id).await,
        }
    }

    /// How many retries were asked of this archive (0 before the first).
    pub async fn retry_generation(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, Store::retry_generation).await,
            Self::Postgres(p) => p.retry_generation().await,
        }
    }

    /// The archived reports among `report_ids`: branch and verification time.
    pub async fn archived_briefs(
        &self,
        report_ids: Vec<String>,
    ) -> Result<Vec<ArchivedBrief>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, move |s| s.archived_briefs(&report_ids)).await,
            Self::Postgres(p) => p.archived_briefs(&report_ids).await,
        }
    }

    /// The aside records (rejected or pending) of the report documents `report_docs`.
    pub async fn reports_aside_by_doc(
        &self,
        report_docs: Vec<String>,
    ) -> Result<Vec<AsideRow>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, move |s| s.reports_aside_by_doc(&report_docs)).await,
            Self::Postgres(p) => p.reports_aside_by_doc(&report_docs).await,
        }
    }

    /// Verified reports matching `query`, oldest first.
    pub async fn archived_reports(&self, query: ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, move |s| s.archived_reports(&query)).await,
            Self::Postgres(p) => p.archived_reports(&query).await,
        }
    }

    /// The month's reports no archived report supersedes, and the earlier ones with a fault
    /// from `look_back_from` (epoch ms) on a serial the month has (R4), oldest first: their
    /// statistics columns (`fieldsync_storage::month_stats_query`, the same on both backends).
    pub async fn reports_for_month_stats(
        &self,
        month: &str,
        look_back_from: i64,
    ) -> Result<Vec<StatsRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let month = month.to_owned();
                read(s, move |s| {
                    s.reports_for_month_stats(&month, look_back_from)
                })
                .await
            }
            Self::Postgres(p) => p.reports_for_month_stats(month, look_back_from).await,
        }
    }

    /// Report documents archived or rejected: their outcome stands.
    pub async fn settled_report_docs(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, Store::settled_report_docs).await,
            Self::Postgres(p) => p.settled_report_docs().await,
        }
    }

    pub async fn reports_aside(&self, status: AsideStatus) -> Result<Vec<AsideRow>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, move |s| s.reports_aside(status)).await,
            Self::Postgres(p) => p.reports_aside(status).await,
        }
    }

    /// Aside records naming `report_id`, rejected before pending.
    pub async fn report_aside_by_id(&self, report_id: &str) -> Result<Vec<AsideRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let id = report_id.to_owned();
                read(s, move |s| s.report_aside_by_id(&id)).await
            }
            Self::Postgres(p) => p.report_aside_by_id(report_id).await,
        }
    }

    pub async fn archived_complaint(&self, key: &str) -> Result<Option<ComplaintRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                let key = key.to_owned();
                read(s, move |s| s.archived_complaint(&key)).await
            }
            Self::Postgres(p) => p.archived_complaint(key).await,
        }
    }

    pub async fn archived_complaints(
        &self,
        month: Option<String>,
        branch: Option<String>,
    ) -> Result<Vec<ComplaintRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                read(s, move |s| {
                    s.archived_complaints(month.as_deref(), branch.as_deref())
                })
                .await
            }
            Self::Postgres(p) => {
                p.archived_complaints(month.as_deref(), branch.as_deref())
                    .await
            }
        }
    }

    /// The JSON records of complaint documents kept aside.
    pub async fn rejected_complaints(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => read(s, Store::rejected_complaints).await,
            Self::Postgres(p) => p.rejected_complaints().await,
        }
    }
}
