//! Complaints (R20–R23): registered with channel, category, against whom and what the
//! customer asks (step 1 of R21), then carried through the other seven steps in order, each
//! with who, when and what; the record keeps content, process, result, the customer's
//! reaction and the outcome (R23). The month's rate and attribution (R22) are summed here
//! for the branch: complaints received in the month ÷ service reports verified in the month
//! (here: the jobs whose report this branch signed in the month), the one definition
//! `fieldsync_shared::stats::complaint_rate` documents and head office uses too.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::complaint_doc::ComplaintDoc;
use fieldsync_shared::desk::complaint::{
    ComplaintCategory, ComplaintChannel, ComplaintStep, StepError, check_step, next_step,
};
use fieldsync_shared::ids::{CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::stats::complaint_rate;
use fieldsync_shared::sync::{LocalEdit, LocalEditError, edit_via_autocommit};
use fieldsync_shared::time::Month;
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dispatch::JobDesk;
use super::records::{self, DeskRecord, Stored};
use crate::auth::{Actor, EVERYONE, MANAGERS, STAFF};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_job_id;
use crate::http::query;
use crate::http::wire::{ErrorBody, Instant};
use crate::http::{new_id, nonempty, parse_body};

/// R21: one step as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepRecord {
    pub step: ComplaintStep,
    /// 1 to 8.
    pub number: usize,
    pub by: String,
    pub at: Instant,
    pub what: String,
}

/// A complaint as stored (R23: the full record).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Complaint {
    pub id: String,
    pub channel: ComplaintChannel,
    pub category: ComplaintCategory,
    pub received_at: Instant,
    /// Who complains.
    pub complainant: String,
    pub contact: String,
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
    /// Against which job, if any.
    pub against_job: Option<String>,
    /// Against which technician, if any.
    #[schema(value_type = Option<String>)]
    pub against_technician: Option<TechnicianId>,
    /// R23 content: what happened.
    pub content: String,
    /// R21 step 1: what the customer asks for.
    pub asks: String,
    /// Step 2: whether the complaint is valid.
    pub valid: Option<bool>,
    /// Step 3: the responsible unit (e.g. senior management, logistics, QA).
    pub unit: Option<String>,
    /// Step 5, R23 result: the solution proposed.
    pub solution: Option<String>,
    /// Step 6, R23: the customer's reaction when told.
    pub customer_reaction: Option<String>,
    /// Step 7: who is responsible, and any penalty.
    pub responsible: Option<String>,
    pub penalty: Option<String>,
    /// Step 8, R23 outcome: the improvement actions.
    pub outcome: Option<String>,
    /// R23 process: the steps taken, in order.
    pub steps: Vec<StepRecord>,
}

impl DeskRecord for Complaint {
    const KIND: &'static str = "complaint";

    fn id(&self) -> &str {
        &self.id
    }

    fn open(&self) -> bool {
        next_step(&self.done()).is_some()
    }
}

impl Complaint {
    /// The R21 steps recorded so far, in order.
    pub fn done(&self) -> Vec<ComplaintStep> {
        self.steps.iter().map(|s| s.step).collect()
    }
}

/// A complaint with where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintView {
    #[serde(flatten)]
    pub complaint: Complaint,
    /// The step that must come next (R21), or null once all eight are done.
    pub next_step: Option<ComplaintStep>,
    pub closed: bool,
    /// R22: quality, non_quality or other.
    pub attribution: String,
}

impl From<Complaint> for ComplaintView {
    fn from(complaint: Complaint) -> Self {
        let next = next_step(&complaint.done());
        Self {
            attribution: complaint.category.attribution().to_owned(),
            next_step: next,
            closed: next.is_none(),
            complaint,
        }
    }
}

/// Against whom a complaint is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Against {
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub technician: Option<TechnicianId>,
}

/// The body of `POST /api/complaints`: step 1 of R21.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    pub channel: ComplaintChannel,
    pub category: ComplaintCategory,
    pub received_at: Instant,
    pub complainant: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
    #[serde(default)]
    pub against: Against,
    pub content: String,
    pub asks: String,
    /// Who at the desk recorded it.
    pub recorded_by: String,
}

/// R20, R21 step 1: registers a complaint.
#[utoipa::path(
    post,
    path = "/api/complaints",
    tag = "complaints",
    description = "R20, R21 step 1: register a complaint. Roles: dispatcher, manager.",
    request_body = NewComplaint,
    responses(
        (status = 201, body = ComplaintView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn create_complaint(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ComplaintView>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "register complaints")?;
    let new: NewComplaint = parse_body(&body)?;
    let complaint = register_complaint(&state, new, &actor).await?;
    Ok((StatusCode::CREATED, Json(complaint.into())))
}

/// R20, R21 step 1: checks and stores a new complaint, writes its complaint document and the
/// audit entry (`complaint_create`, the complaint's id after). What `POST /api/complaints`
/// and the console's complaint form both call.
pub async fn register_complaint(
    state: &Edge,
    new: NewComplaint,
    actor: &Actor,
) -> Result<Complaint, ApiError> {
    nonempty("complainant", &new.complainant)?;
    nonempty("content", &new.content)?;
    nonempty("asks", &new.asks)?;
    nonempty("recorded_by", &new.recorded_by)?;
    let against_job = match &new.against.job_id {
        Some(id) => {
            let job_id = parse_job_id(id)?;
            if state.node.registry_read().job(&job_id).is_none() {
                return Err(ApiError::not_found(
                    "unknown_job",
                    format!("against.job_id: no job {job_id} at this branch"),
                ));
            }
            Some(job_id.to_string())
        }
        None => None,
    };
    let at = Instant(state.node.clock.now());
    let complaint = Complaint {
        id: new_id("cmp")?,
        channel: new.channel,
        category: new.category,
        received_at: new.received_at,
        complainant: new.complainant,
        contact: new.contact,
        customer_id: new.customer_id,
        against_job,
        against_technician: new.against.technician,
        steps: vec![StepRecord {
            step: ComplaintStep::Record,
            number: ComplaintStep::Record.number(),
            by: new.recorded_by,
            at,
            what: format!("{} (asks: {})", new.content, new.asks),
        }],
        content: new.content,
        asks: new.asks,
        valid: None,
        unit: None,
        solution: None,
        customer_reaction: None,
        responsible: None,
        penalty: None,
        outcome: None,
    };
    let revision = records::save(state, 0, &complaint).await?;
    publish_logged(state, &complaint, revision).await;
    let entry = Entry::new(
        at.0,
        actor.name(),
        actor.role.as_str(),
        "complaint_create",
        format!("complaint:{}", complaint.id),
    )
    .after(complaint.id.clone())
    .detail(format!(
        "{} · {} · {}",
        complaint.complainant,
        complaint.channel.as_str(),
        complaint.category.as_str()
    ));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(complaint)
}

/// Query of `GET /api/complaints`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComplaintQuery {
    /// Only complaints not yet through all eight steps.
    #[serde(default)]
    pub open: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintList {
    pub complaints: Vec<ComplaintView>,
}

/// The branch's complaints.
#[utoipa::path(
    get,
    path = "/api/complaints",
    tag = "complaints",
    description = "R23: list complaints. Roles: dispatcher, manager, analyst.",
    params(ComplaintQuery),
    responses(
        (status = 200, body = ComplaintList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_complaints(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ComplaintQuery>, QueryRejection>,
) -> Result<Json<ComplaintList>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list complaints")?;
    let q = query(q)?;
    let complaints = complaints(&state, q.open.unwrap_or(false))
        .await?
        .into_iter()
        .map(ComplaintView::from)
        .collect();
    Ok(Json(ComplaintList { complaints }))
}

/// The branch's complaints (only those not through all eight steps with `open_only`).
pub async fn complaints(state: &Edge, open_only: bool) -> Result<Vec<Complaint>, ApiError> {
    let filter = RecordFilter {
        lookup: None,
        open_only,
    };
    Ok(records::list::<Complaint>(state, filter)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect())
}

pub async fn require_complaint(state: &Edge, id: &str) -> Result<Stored<Complaint>, ApiError> {
    records::require(state, id, "unknown_complaint", "complaint").await
}

/// R23: the full record of a complaint.
#[utoipa::path(
    get,
    path = "/api/complaints/{id}",
    tag = "complaints",
    description = "R23: a complaint's full record. Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The complaint id")),
    responses(
        (status = 200, body = ComplaintView),
        (status = 404, body = ErrorBody, description = "unknown_complaint"),
    ),
)]
pub async fn get_complaint(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ComplaintView>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "read complaints")?;
    Ok(Json(require_complaint(&state, &id).await?.value.into()))
}

/// The body of `POST /api/complaints/{id}/steps`: one R21 step, with what it needs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStep {
    pub step: ComplaintStep,
    pub by: String,
    /// What was done or found.
    pub what: String,
    /// When; now by default.
    #[serde(default)]
    pub at: Option<Instant>,
    /// classify: required, whether the complaint is valid.
    #[serde(default)]
    pub valid: Option<bool>,
    /// classify: a corrected category.
    #[serde(default)]
    pub category: Option<ComplaintCategory>,
    /// assign_unit: required, the responsible unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// notify_customer: required, the customer's reaction (R23).
    #[serde(default)]
    pub customer_reaction: Option<String>,
    /// assign_responsibility: required, who is responsible.
    #[serde(default)]
    pub responsible: Option<String>,
    /// assign_responsibility: the penalty, if any.
    #[serde(default)]
    pub penalty: Option<String>,
}

fn required(step: ComplaintStep, name: &str, value: Option<String>) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "{name}: step {} ({}) needs it (R21)",
                step.number(),
                step.as_str()
            ),
        )),
    }
}

/// R21: records the next step of a complaint. Steps are taken in order, none skipped or
/// repeated; assigning responsibility and penalties (step 7) is for managers.
#[utoipa::path(
    post,
    path = "/api/complaints/{id}/steps",
    tag = "complaints",
    description = "R21: record the next of the eight steps. Roles: dispatcher, manager; step \
        assign_responsibility: manager.",
    params(("id" = String, Path, description = "The complaint id")),
    request_body = NewStep,
    responses(
        (status = 200, body = ComplaintView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_complaint"),
        (status = 409, body = ErrorBody, description = "step_out_of_order, step_already_recorded, complaint_closed, conflict"),
    ),
)]
pub async fn record_step(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ComplaintView>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "record complaint steps")?;
    let new: NewStep = parse_body(&body)?;
    if new.step == ComplaintStep::AssignResponsibility {
        state.node.authorize(
            &headers,
            MANAGERS,
            "assign responsibility or penalties for a complaint (R21 step 7)",
        )?;
    }
    Ok(Json(
        record_complaint_step(&state, &id, new, &actor)
            .await?
            .into(),
    ))
}

/// R21: checks and records the next step of complaint `id` for `actor` (step 7 is a
/// manager's), writes the complaint document and the audit entry (`complaint_step`, the
/// record's revisions before and after). What `POST /api/complaints/{id}/steps` and the
/// console's step form both call.
pub async fn record_complaint_step(
    state: &Edge,
    id: &str,
    new: NewStep,
    actor: &Actor,
) -> Result<Complaint, ApiError> {
    if new.step == ComplaintStep::AssignResponsibility && !MANAGERS.contains(&actor.role) {
        return Err(ApiError::forbidden(format!(
            "assign responsibility or penalties for a complaint (R21 step 7) needs the role \
             {}; this is {}",
            crate::auth::role_list(MANAGERS),
            actor.role.as_str()
        )));
    }
    nonempty("by", &new.by)?;
    nonempty("what", &new.what)?;
    let Stored {
        revision,
        mut value,
    } = require_complaint(state, id).await?;
    check_step(&value.done(), new.step).map_err(|e| {
        let code = match e {
            StepError::OutOfOrder { .. } => "step_out_of_order",
            StepError::AlreadyDone(_) => "step_already_recorded",
            StepError::Closed => "complaint_closed",
        };
        ApiError::new(StatusCode::CONFLICT, code, format!("complaint {id}: {e}"))
    })?;
    match new.step {
        ComplaintStep::Record => {}
        ComplaintStep::Classify => {
            value.valid = Some(new.valid.ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_field",
                    "valid: step 2 (classify) judges validity (R21)",
                )
            })?);
            if let Some(category) = new.category {
                value.category = category;
            }
        }
        ComplaintStep::AssignUnit => value.unit = Some(required(new.step, "unit", new.unit)?),
        ComplaintStep::Investigate => {}
        ComplaintStep::ProposeSolution => value.solution = Some(new.what.clone()),
        ComplaintStep::NotifyCustomer => {
            value.customer_reaction = Some(required(
                new.step,
                "customer_reaction",
                new.customer_reaction,
            )?);
        }
        ComplaintStep::AssignResponsibility => {
            value.responsible = Some(required(new.step, "responsible", new.responsible)?);
            value.penalty = new.penalty;
        }
        ComplaintStep::Improve => value.outcome = Some(new.what.clone()),
    }
    let now = Instant(state.node.clock.now());
    value.steps.push(StepRecord {
        step: new.step,
        number: new.step.number(),
        by: new.by,
        at: new.at.unwrap_or(now),
        what: new.what,
    });
    let after = records::save(state, revision, &value).await?;
    publish_logged(state, &value, after).await;
    let entry = Entry::new(
        now.0,
        actor.name(),
        actor.role.as_str(),
        "complaint_step",
        format!("complaint:{id}"),
    )
    .before(revision.to_string())
    .after(after.to_string())
    .detail(format!(
        "R21 step {} ({})",
        new.step.number(),
        new.step.as_str()
    ));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(value)
}

/// Writes revision `revision` of a complaint, signed by the branch, into its complaint
/// document (`shared::complaint_doc`), which the upstream link carries to head office (R22).
/// A document already at that revision or a later one is left alone, so two requests
/// finishing out of order never put an older revision back.
pub async fn publish(
    state: &Edge,
    complaint: &Complaint,
    revision: u64,
) -> Result<DocumentId, String> {
    let record = serde_json::to_value(complaint).map_err(|e| e.to_string())?;
    let signed = ComplaintDoc::sign(
        state.node.branch_id.clone(),
        complaint.id.clone(),
        revision,
        &record,
        &state.node.server_key,
    )
    .map_err(|e| e.to_string())?;
    let doc = signed.doc_id();
    for _ in 0..2 {
        let update = signed.clone();
        let change = LocalEdit::Change(Box::new(move |am: &mut automerge::Automerge| {
            let current = ComplaintDoc::from_document(am).map_err(|e| e.to_string())?;
            if current.is_some_and(|c| c.revision >= update.revision) {
                return Ok(());
            }
            edit_via_autocommit(am, |ac| update.write(ac).map_err(|e| e.to_string()))
        }));
        match state.node.hub.edit(doc, change).await {
            Ok(_) => {
                let _ = state.complaints_published.send(doc);
                return Ok(doc);
            }
            Err(LocalEditError::NotFound(_)) => {}
            Err(e) => return Err(format!("complaint document {doc}: {e}")),
        }
        let created = signed.to_document().map_err(|e| e.to_string())?;
        match state
            .node
            .hub
            .edit(doc, LocalEdit::Create(Box::new(created)))
            .await
        {
            Ok(_) => {
                let _ = state.complaints_published.send(doc);
                return Ok(doc);
            }
            // Created meanwhile by a concurrent step: change it instead.
            Err(LocalEditError::Exists(_)) => {}
            Err(e) => return Err(format!("complaint document {doc}: {e}")),
        }
    }
    Err(format!(
        "complaint document {doc}: created and removed concurrently"
    ))
}

/// [`publish`] from a request that already stored the complaint: a failure is logged, and
/// the upstream outbox writes the document again at its next start (the record is the truth).
async fn publish_logged(state: &Edge, complaint: &Complaint, revision: u64) {
    if state.node.config.role != crate::config::Role::Edge {
        return;
    }
    if let Err(e) = publish(state, complaint, revision).await {
        tracing::error!(complaint = complaint.id, revision, error = %e, "cannot write the complaint document");
    }
}

/// Query of `GET /api/complaints/summary`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// The month (YYYY-MM) of the complaints' receipt, in the branch's time zone (`timezone`).
    #[param(value_type = String, example = "2026-11")]
    pub month: Month,
}

/// R22: a month's complaints at this branch, their rate and attribution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintSummary {
    #[schema(value_type = String)]
    pub month: Month,
    /// Complaints received in the month.
    pub complaints: usize,
    /// Service reports verified in the month, what the rate is per. At a branch: jobs whose
    /// report the branch signed in the month (its signer verified them complete). At head
    /// office: reports whose signatures it verified, signed in the month, superseded ones
    /// left out (as R24 counts them).
    pub reports_verified: usize,
    /// R22: complaints received in the month ÷ service reports verified in the month
    /// (`fieldsync_shared::stats::complaint_rate`), or null without reports.
    pub rate: Option<f64>,
    /// Counts by R22 attribution: quality, non_quality, other.
    pub by_attribution: BTreeMap<String, usize>,
    /// Counts by R20 category.
    pub by_category: BTreeMap<String, usize>,
    /// Still going through the R21 steps.
    pub open: usize,
    /// Judged valid at step 2 (classify), and judged not valid; the rest are not judged yet.
    pub valid: usize,
    pub not_valid: usize,
}

/// R22: the month's complaint rate and attribution at this branch (head office adds the
/// branches up once complaints reach it).
#[utoipa::path(
    get,
    path = "/api/complaints/summary",
    tag = "complaints",
    description = "R22: a month's complaint count, rate and attribution. The rate is \
        complaints received in the month / service reports verified (signed) in the month. \
        Roles: dispatcher, manager, analyst.",
    params(SummaryQuery),
    responses(
        (status = 200, body = ComplaintSummary),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn complaint_summary(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<SummaryQuery>, QueryRejection>,
) -> Result<Json<ComplaintSummary>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "read complaint statistics")?;
    let month = query(q)?.month;
    Ok(Json(month_summary(&state, month).await?))
}

/// R22: the branch's summary of `month`, both counts read in the branch's time zone
/// (`timezone`, UTC by default). What `GET /api/complaints/summary` and the console's
/// complaints page both call.
pub async fn month_summary(state: &Edge, month: Month) -> Result<ComplaintSummary, ApiError> {
    let zone = &state.node.config.timezone;
    let in_month = |at: Instant| zone.month_of(at.0).is_ok_and(|m| m == month);
    let complaints: Vec<Complaint> = records::list::<Complaint>(state, RecordFilter::default())
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|c| in_month(c.received_at))
        .collect();
    // R22: the reports this branch signed in the month (a job reopened and signed again
    // counts once, in the month of its latest report).
    let reports_verified = records::list::<JobDesk>(state, RecordFilter::default())
        .await?
        .into_iter()
        .filter(|j| j.value.signed_at.is_some_and(in_month))
        .count();
    Ok(summarize(month, &complaints, reports_verified))
}

/// R22: counts, rate and attribution of `complaints` (those received in `month`) against
/// the `reports_verified` in the month. The branch's summary and head office's per-branch
/// summary both come from here, so the rate means one thing.
pub fn summarize(
    month: Month,
    complaints: &[Complaint],
    reports_verified: usize,
) -> ComplaintSummary {
    let mut by_attribution: BTreeMap<String, usize> = ["quality", "non_quality", "other"]
        .into_iter()
        .map(|a| (a.to_owned(), 0))
        .collect();
    let mut by_category = BTreeMap::new();
    for c in complaints {
        *by_attribution
            .entry(c.category.attribution().to_owned())
            .or_default() += 1;
        *by_category
            .entry(c.category.as_str().to_owned())
            .or_default() += 1;
    }
    ComplaintSummary {
        month,
        complaints: complaints.len(),
        reports_verified,
        rate: complaint_rate(complaints.len(), reports_verified),
        by_attribution,
        by_category,
        open: complaints.iter().filter(|c| c.open()).count(),
        valid: complaints.iter().filter(|c| c.valid == Some(true)).count(),
        not_valid: complaints.iter().filter(|c| c.valid == Some(false)).count(),
    }
}
