//! The desk's board (issue 14, point 2): every job of the branch with where it stands,
//! filtered, sorted by urgency and paginated; `GET /api/jobs` answers it as JSON and the
//! console's `/board` as a page (`edge::console`), from the same [`list`].
//!
//! What the board needs from a job document (stage, clocks, conflicts, whether the
//! acknowledgement still matches) is kept per job in [`Board`], read from the stored
//! document. A worker ([`follow`]) marks a job as changed on each of the hub's durable
//! changes; a listing rereads only the jobs marked (and those it has never read), so a
//! listing loads no document that did not change. A feed that lagged marks every job. What
//! is not in the document is read at each listing: approvals waiting (the approvals mirror)
//! and stranded changes (open desk records).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use automerge::Automerge;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use fieldsync_shared::desk::{ClockState, clock_state};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::{completion_pending, conflicts, read_job, unresolved};
use fieldsync_shared::job::{Job, JobKind, ReportOutcome};
use fieldsync_shared::report::{AckMatch, acknowledgement_matches};
use fieldsync_shared::time::CalendarDate;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use super::Edge;
use super::desk::records;
use super::handoff::Stranded;
use crate::auth::EVERYONE;
use crate::http::error::ApiError;
use crate::http::query;
use crate::http::wire::{ErrorBody, Instant};
use crate::sync::hub::ApprovalsChange;

/// Where a job stands, one of these at a time (the `status` of a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Created and assigned; no appointment agreed yet (R3).
    New,
    /// The appointment is agreed (R3); the technician has not arrived.
    Assigned,
    /// The technician arrived; no completion requested yet.
    OnSite,
    /// Completion requested; the edge has not answered yet.
    Completed,
    /// The service report is signed (R13).
    Signed,
    /// The edge refused to sign, with reasons (R7, R8, R11, R16).
    Refused,
    /// The desk cancelled it, with a reason (`POST /api/jobs/{id}/cancel`): the job's
    /// timeline holds a `cancelled` event.
    Cancelled,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::New,
        Stage::Assigned,
        Stage::OnSite,
        Stage::Completed,
        Stage::Signed,
        Stage::Refused,
        Stage::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Assigned => "assigned",
            Stage::OnSite => "on_site",
            Stage::Completed => "completed",
            Stage::Signed => "signed",
            Stage::Refused => "refused",
            Stage::Cancelled => "cancelled",
        }
    }
}

/// What needs the desk besides the stage; a job can have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// An approval request (R12, R18, R31) no manager has decided.
    WaitingApproval,
    /// The customer signed, then the job changed: the acknowledgement must be taken again.
    StaleAcknowledgement,
    /// People set a field to different values at the same time.
    Conflicts,
    /// Changes from a technician unassigned from the job wait for the desk.
    Stranded,
}

impl Flag {
    pub const ALL: [Flag; 4] = [
        Flag::WaitingApproval,
        Flag::StaleAcknowledgement,
        Flag::Conflicts,
        Flag::Stranded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::WaitingApproval => "waiting_approval",
            Flag::StaleAcknowledgement => "stale_acknowledgement",
            Flag::Conflicts => "conflicts",
            Flag::Stranded => "stranded",
        }
    }
}

/// What the board keeps of one stored job document.
#[derive(Debug, Clone)]
struct Facts {
    kind: JobKind,
    customer_id: String,
    customer_name: String,
    model: String,
    serial: String,
    technicians: Vec<String>,
    received_at: Timestamp,
    requested_arrival: Option<Timestamp>,
    appointment: Option<Timestamp>,
    arrival: Option<Timestamp>,
    completion_pending: bool,
    report: Option<ReportOutcome>,
    stale_acknowledgement: bool,
    conflicts: usize,
    cancelled: bool,
}

impl Facts {
    fn of(doc: &Automerge) -> Result<Self, String> {
        let job: Job = read_job(doc).map_err(|e| e.to_string())?;
        let stale = matches!(
            acknowledgement_matches(&job),
            Ok(AckMatch::ContentChanged { .. })
        );
        Ok(Self {
            kind: job.kind,
            customer_id: job.customer.id.to_string(),
            customer_name: job.customer.name,
            model: job.product.model,
            serial: job.product.serial,
            technicians: job.technicians.iter().map(ToString::to_string).collect(),
            received_at: job.request.received_at,
            requested_arrival: job.request.requested_arrival,
            appointment: job.visit.appointment,
            arrival: job.visit.arrival,
            completion_pending: completion_pending(doc),
            report: job.report,
            stale_acknowledgement: stale,
            // Per-field conflicts and what a merge left unresolved (issue 15) both wait for
            // someone to decide.
            conflicts: conflicts(doc).len() + unresolved(doc).len(),
            cancelled: crate::edge::desk::dispatch::cancelled_in(&job.timeline).is_some(),
        })
    }

    fn stage(&self) -> Stage {
        if self.cancelled {
            return Stage::Cancelled;
        }
        if self.completion_pending {
            return Stage::Completed;
        }
        match &self.report {
            Some(ReportOutcome::Signed { .. }) => Stage::Signed,
            Some(ReportOutcome::Refused { .. }) => Stage::Refused,
            None if self.arrival.is_some() => Stage::OnSite,
            None if self.appointment.is_some() => Stage::Assigned,
            None => Stage::New,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    facts: HashMap<DocumentId, Facts>,
    changed: HashSet<DocumentId>,
    /// Reread everything (the feed lagged).
    all_changed: bool,
}

/// The board's per-job facts, following the stored jobs.
#[derive(Debug, Default)]
pub struct Board {
    inner: std::sync::Mutex<Inner>,
    /// True while [`follow`] runs; without it every listing rereads every job.
    following: AtomicBool,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The worker: marks each job the hub reports durably changed. `feed` is subscribed by the
/// caller before the server answers anything, so no change is missed.
pub async fn follow(edge: Arc<Edge>, mut feed: broadcast::Receiver<ApprovalsChange>) {
    edge.board.following.store(true, Ordering::SeqCst);
    loop {
        match feed.recv().await {
            Ok(change) => {
                edge.board.lock().changed.insert(change.doc);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => edge.board.lock().all_changed = true,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    edge.board.following.store(false, Ordering::SeqCst);
}

/// Brings the facts up to the stored jobs: rereads the jobs marked changed and those never
/// read; forgets jobs the records no longer hold.
async fn refresh(edge: &Edge) -> Result<(), ApiError> {
    let jobs: Vec<DocumentId> = edge.node.registry_read().jobs().map(|j| j.job_id).collect();
    let to_read: Vec<DocumentId> = {
        let mut inner = edge.board.lock();
        let everything = inner.all_changed || !edge.board.following.load(Ordering::SeqCst);
        let changed = std::mem::take(&mut inner.changed);
        inner.all_changed = false;
        let known: HashSet<DocumentId> = jobs.iter().copied().collect();
        inner.facts.retain(|id, _| known.contains(id));
        jobs.iter()
            .copied()
            .filter(|id| everything || changed.contains(id) || !inner.facts.contains_key(id))
            .collect()
    };
    if to_read.is_empty() {
        return Ok(());
    }
    let store = Arc::clone(&edge.node.store);
    let strategy = edge.node.doc_load;
    let read = tokio::task::spawn_blocking(move || {
        let mut read = Vec::with_capacity(to_read.len());
        for id in to_read {
            let Some(chunks) = store.load_doc(&id.to_string())? else {
                continue;
            };
            match strategy
                .load(&chunks)
                .map_err(|e| e.to_string())
                .and_then(|d| Facts::of(&d))
            {
                Ok(facts) => read.push((id, facts)),
                Err(e) => tracing::warn!(job = %id, error = %e, "board: cannot read job"),
            }
        }
        Ok::<_, fieldsync_storage::StorageError>(read)
    })
    .await
    .map_err(|e| ApiError::internal("storage_error", e))?
    .map_err(|e| ApiError::internal("storage_error", e))?;
    let mut inner = edge.board.lock();
    for (id, facts) in read {
        inner.facts.insert(id, facts);
    }
    Ok(())
}

/// The query of `GET /api/jobs` and of the board page.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// A stage (new, assigned, on_site, completed, signed, refused, cancelled) or a flag
    /// (waiting_approval, stale_acknowledgement, conflicts, stranded).
    pub status: Option<String>,
    /// A technician id assigned to the job.
    pub technician: Option<String>,
    /// Part of the customer's name, or their id.
    pub customer: Option<String>,
    /// Received on or after this day (YYYY-MM-DD, in the branch's time zone).
    pub from: Option<String>,
    /// Received on or before this day (YYYY-MM-DD, in the branch's time zone).
    pub to: Option<String>,
    /// R2 arrival clock: running, due_soon, overdue, met, met_late, or none (no time asked).
    pub sla: Option<String>,
    /// 1-based page number.
    pub page: Option<usize>,
    /// Jobs per page (default 50, at most 200).
    pub per_page: Option<usize>,
}

/// One job on the board.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobRow {
    pub job_id: String,
    pub url: String,
    pub kind: JobKind,
    pub status: Stage,
    pub flags: Vec<Flag>,
    pub customer_id: String,
    pub customer_name: String,
    pub model: String,
    pub serial: String,
    pub technicians: Vec<String>,
    pub received_at: Instant,
    /// R2: the arrival the customer asked for.
    pub requested_arrival: Option<Instant>,
    pub appointment: Option<Instant>,
    pub arrival: Option<Instant>,
    /// R2 arrival clock; null when the customer asked for no time.
    pub sla: Option<ClockState>,
    /// Fields set differently at once, plus groups a merge left unresolved and possible
    /// duplicate parts (issue 15, `POST /api/jobs/{id}/resolve`).
    pub conflicts: usize,
    pub approvals_waiting: usize,
    pub stranded: usize,
}

/// A page of the board.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobRow>,
    /// Jobs matching the filters, on every page.
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub per_page: usize,
}

/// A query as checked: what [`list`] filters by.
struct Filters {
    stage: Option<Stage>,
    flag: Option<Flag>,
    technician: Option<String>,
    customer: Option<String>,
    from: Option<CalendarDate>,
    to: Option<CalendarDate>,
    sla: Option<Option<ClockState>>,
    page: usize,
    per_page: usize,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn parse_date(name: &str, value: &str) -> Result<CalendarDate, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(format!("{name}: {value:?} is not a date YYYY-MM-DD")))
}

fn nonblank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl JobQuery {
    fn check(&self) -> Result<Filters, ApiError> {
        let (mut stage, mut flag) = (None, None);
        if let Some(s) = nonblank(&self.status) {
            stage = Stage::ALL.into_iter().find(|x| x.as_str() == s);
            flag = Flag::ALL.into_iter().find(|x| x.as_str() == s);
            if stage.is_none() && flag.is_none() {
                let names: Vec<&str> = Stage::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .chain(Flag::ALL.iter().map(|f| f.as_str()))
                    .collect();
                return Err(bad(format!(
                    "status: {s:?} is not one of {}",
                    names.join(", ")
                )));
            }
        }
        let sla = match nonblank(&self.sla) {
            None => None,
            Some("none") => Some(None),
            Some(s) => Some(Some(
                serde_json::from_value::<ClockState>(serde_json::Value::String(s.to_owned()))
                    .map_err(|_| {
                        bad(format!(
                            "sla: {s:?} is not one of running, due_soon, overdue, met, met_late, none"
                        ))
                    })?,
            )),
        };
        let per_page = self.per_page.unwrap_or(50);
        if !(1..=200).contains(&per_page) {
            return Err(bad(format!("per_page: {per_page} is not within 1–200")));
        }
        Ok(Filters {
            stage,
            flag,
            technician: nonblank(&self.technician).map(str::to_owned),
            customer: nonblank(&self.customer).map(str::to_lowercase),
            from: nonblank(&self.from)
                .map(|v| parse_date("from", v))
                .transpose()?,
            to: nonblank(&self.to)
                .map(|v| parse_date("to", v))
                .transpose()?,
            sla,
            page: self.page.unwrap_or(1).max(1),
            per_page,
        })
    }
}

/// How urgent a row is: lower first.
fn urgency(row: &JobRow) -> (u8, Timestamp) {
    let rank = match (row.sla, row.status) {
        (Some(ClockState::Overdue), _) => 0,
        (Some(ClockState::DueSoon), _) => 1,
        _ if row.flags.iter().any(|f| *f != Flag::WaitingApproval) => 2,
        (_, Stage::Refused) => 2,
        _ if row.flags.contains(&Flag::WaitingApproval) => 3,
        (_, Stage::Completed) => 4,
        (_, Stage::New | Stage::Assigned | Stage::OnSite) => 5,
        (_, Stage::Signed) => 6,
        (_, Stage::Cancelled) => 7,
    };
    let when = row.requested_arrival.map_or(row.received_at.0, |i| i.0);
    (rank, when)
}

/// The board at `now`: every job passing `query`, most urgent first, one page of it.
pub async fn list(edge: &Edge, query: &JobQuery, now: Timestamp) -> Result<JobList, ApiError> {
    let filters = query.check()?;
    refresh(edge).await?;
    // The approvals queue is built from the stored jobs at start; a listing waits for it.
    edge.approvals
        .until_built(std::time::Duration::from_secs(5))
        .await;
    let mut approvals: HashMap<DocumentId, usize> = HashMap::new();
    for (job, _) in edge.approvals.approvals(true) {
        *approvals.entry(job).or_default() += 1;
    }
    let open = RecordFilter {
        lookup: None,
        open_only: true,
    };
    let mut stranded: HashMap<String, usize> = HashMap::new();
    for s in records::list::<Stranded>(edge, open).await? {
        *stranded.entry(s.value.job_id).or_default() += 1;
    }
    let soon = edge.node.config.desk.due_soon_ms();
    let zone = &edge.node.config.timezone;
    let facts: BTreeMap<DocumentId, Facts> = edge
        .board
        .lock()
        .facts
        .iter()
        .map(|(id, f)| (*id, f.clone()))
        .collect();
    let mut rows = Vec::new();
    for (id, f) in facts {
        // A cancelled job's arrival is never due.
        let sla = f
            .requested_arrival
            .filter(|_| !f.cancelled)
            .map(|due| clock_state(due, f.arrival, now, soon));
        let waiting = approvals.get(&id).copied().unwrap_or(0);
        let stranded_here = stranded.get(&id.to_string()).copied().unwrap_or(0);
        let mut flags = Vec::new();
        if waiting > 0 {
            flags.push(Flag::WaitingApproval);
        }
        if f.stale_acknowledgement {
            flags.push(Flag::StaleAcknowledgement);
        }
        if f.conflicts > 0 {
            flags.push(Flag::Conflicts);
        }
        if stranded_here > 0 {
            flags.push(Flag::Stranded);
        }
        let stage = f.stage();
        if filters.stage.is_some_and(|s| s != stage)
            || filters.flag.is_some_and(|fl| !flags.contains(&fl))
            || filters.sla.is_some_and(|s| s != sla)
            || filters
                .technician
                .as_ref()
                .is_some_and(|t| !f.technicians.contains(t))
            || filters.customer.as_ref().is_some_and(|c| {
                !(f.customer_name.to_lowercase().contains(c) || f.customer_id.to_lowercase() == *c)
            })
        {
            continue;
        }
        if filters.from.is_some() || filters.to.is_some() {
            let Ok(day) = zone.date_of(f.received_at) else {
                continue;
            };
            if filters.from.is_some_and(|d| day < d) || filters.to.is_some_and(|d| day > d) {
                continue;
            }
        }
        rows.push(JobRow {
            job_id: id.to_string(),
            url: id.url(),
            kind: f.kind,
            status: stage,
            flags,
            customer_id: f.customer_id,
            customer_name: f.customer_name,
            model: f.model,
            serial: f.serial,
            technicians: f.technicians,
            received_at: Instant(f.received_at),
            requested_arrival: f.requested_arrival.map(Instant),
            appointment: f.appointment.map(Instant),
            arrival: f.arrival.map(Instant),
            sla,
            conflicts: f.conflicts,
            approvals_waiting: waiting,
            stranded: stranded_here,
        });
    }
    rows.sort_by(|a, b| {
        urgency(a)
            .cmp(&urgency(b))
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    let total = rows.len();
    let pages = total.div_ceil(filters.per_page).max(1);
    let page = filters.page.min(pages);
    let jobs = rows
        .into_iter()
        .skip((page - 1) * filters.per_page)
        .take(filters.per_page)
        .collect();
    Ok(JobList {
        jobs,
        total,
        page,
        pages,
        per_page: filters.per_page,
    })
}

/// `GET /api/jobs`: the board as JSON.
#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "dispatch",
    description = "Every job of the branch with its stage (new, assigned, on_site, completed, \
        signed, refused, cancelled), flags (waiting_approval, stale_acknowledgement, conflicts, \
        stranded) and R2 arrival clock, filtered by the query, most urgent first (overdue, \
        due soon, needing the desk, waiting approval, completed, in progress, signed), \
        paginated. Roles: dispatcher, manager, analyst.",
    params(JobQuery),
    responses(
        (status = 200, body = JobList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
)]
pub async fn list_jobs(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    edge.node.authorize(&headers, EVERYONE, "list jobs")?;
    let q = query(q)?;
    let now = edge.node.clock.now();
    Ok(Json(list(&edge, &q, now).await?))
}
