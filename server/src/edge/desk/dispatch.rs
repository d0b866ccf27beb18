//! Dispatch (R3, R16), repeat repairs (R4) and follow-up calls (R14).
//!
//! Every job the desk creates (`POST /api/jobs`, or `POST /api/requests/{id}/job` from a
//! registered request) gets a desk record next to its document: product serial, fault
//! category, the request it came from, the agreed appointment, the earlier jobs that make it
//! a repeat repair, when its service was done and the follow-up call. Assignment itself is
//! the job machinery of `api` (records, assignment index documents, live access).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::desk::{ReplySource, ServiceVisit, repeat_repairs};
use fieldsync_shared::ids::{CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::job::{BillingMode, Job, JobKind, TimelineEvent};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::intake::{Reply, ServiceRequest, require_request};
use super::records::{self, DeskRecord, Stored};
use crate::auth::{Actor, EVERYONE, STAFF};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::edge::jobs::{NewBilling, NewCustomer, NewJob, NewProduct, NewRequest, make_job};
use crate::http::error::ApiError;
use crate::http::parse_job_id;
use crate::http::query;
use crate::http::wire::{Date, ErrorBody, Instant};
use crate::http::{nonempty, parse_body};

/// What `POST /api/jobs` and `POST /api/requests/{id}/job` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedJob {
    pub job_id: String,
    /// The job document's `automerge:` URL.
    pub url: String,
    pub technician: String,
    pub assignment_index_url: String,
    /// R4: earlier jobs on the same product serial with the same fault category within the
    /// configured window (`[desk] repeat_window_days`, default 90).
    pub repeat_of: Vec<RepeatFlag>,
    /// Done, but look: `technician_not_enrolled` when pre-assigning new staff.
    pub warnings: Vec<crate::edge::jobs::Warning>,
}

/// `POST /api/jobs`: creates a job and assigns it (R3 dispatch), flagging repeat repairs (R4).
#[utoipa::path(
    post,
    path = "/api/jobs",
    tag = "dispatch",
    description = "R1, R3, R4, R16: create a job and assign it. Roles: dispatcher, manager.",
    request_body = NewJob,
    responses(
        (status = 201, body = CreatedJob),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, contract_due_required, unknown_technician"),
        (status = 403, body = ErrorBody),
    ),
)]
pub async fn create_job(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedJob>), ApiError> {
    let actor = state.node.authorize_actor(&headers, STAFF, "create jobs")?;
    let new: NewJob = parse_body(&body)?;
    let created = create_job_with_id(&state, new, DocumentId::random(), None).await?;
    let entry = Entry::new(
        state.node.clock.now(),
        actor.name(),
        actor.role.as_str(),
        "job_create",
        format!("job:{}", created.job_id),
    )
    .after(created.job_id.clone())
    .detail(format!("assigned to {}", created.technician));
    crate::console::audit_api(&state.node, entry).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Makes the job (`jobs::make_job`: document, assignment) and writes its desk record (R4
/// flags, R16 contract date). `request_id` names the service request it was made from.
pub async fn create_job_with_id(
    state: &Edge,
    new: NewJob,
    job_id: DocumentId,
    request_id: Option<String>,
) -> Result<CreatedJob, ApiError> {
    let made = make_job(state, new, job_id).await?;
    let repeat_of = record_new_job(
        state,
        &made.job,
        made.fault_category,
        made.contract_due.map(Date),
        request_id,
    )
    .await?;
    Ok(CreatedJob {
        job_id: job_id.to_string(),
        url: job_id.url(),
        technician: made.technician.to_string(),
        assignment_index_url: made.index_id.url(),
        repeat_of,
        warnings: made.warnings,
    })
}

/// R4: an earlier job on the same product for the same fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepeatFlag {
    pub job_id: String,
    pub fault_category: String,
    /// When that job's fault was reported.
    pub at: Instant,
}

/// R3: the appointment agreed with the customer before the visit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Appointment {
    pub at: Instant,
    /// Who contacted the customer.
    pub contacted_by: String,
    /// The fault as re-checked with the customer (R3).
    pub fault_rechecked: String,
    pub recorded_at: Instant,
}

/// R14: one call to the customer the day after the service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FollowUpCall {
    pub at: Instant,
    pub by: String,
    /// Whether the customer was reached; an unanswered call can be tried again.
    pub reached: bool,
    /// The customer's satisfaction, when reached.
    pub satisfied: Option<bool>,
    pub comments: String,
}

/// What the desk keeps about a job beside its document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobDesk {
    pub job_id: String,
    pub kind: JobKind,
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    pub customer_name: String,
    pub customer_contact: String,
    pub serial: String,
    /// The desk's category at creation (R4 compares it, and the diagnosed one beside it).
    pub fault_category: Option<String>,
    /// The technician's diagnosed category, recorded when the report is signed; kept beside
    /// the desk's, never instead of it (R4 matches on either).
    #[serde(default)]
    pub diagnosed_category: Option<String>,
    /// When the fault was reported (the request's receipt).
    pub received_at: Instant,
    pub created_at: Instant,
    /// The service request the job was made from.
    pub request_id: Option<String>,
    /// R16: installation and commissioning is done by the contract's date.
    pub contract_due: Option<Date>,
    pub appointment: Option<Appointment>,
    /// R4: earlier jobs found when this job was created.
    pub repeat_of: Vec<RepeatFlag>,
    /// R4: earlier jobs found when its report was signed (with the diagnosed category).
    pub repeat_on_signing: Vec<RepeatFlag>,
    /// When the service was done (check-out, else the report's signing): R14's "the day".
    pub served_at: Option<Instant>,
    /// The technician's check-out (R11) as the device recorded it, once the server has it:
    /// a checked-out job was served, so R4 compares later jobs with it.
    #[serde(default)]
    pub checked_out_at: Option<Instant>,
    pub report_id: Option<String>,
    /// When the branch signed the job's (latest) report: R22 counts the month's verified
    /// reports by it.
    #[serde(default)]
    pub signed_at: Option<Instant>,
    /// R14: the follow-up calls, in order.
    pub calls: Vec<FollowUpCall>,
    /// The desk cancelled the job (also a `cancelled` event in the job's timeline).
    #[serde(default)]
    pub cancellation: Option<Cancellation>,
}

/// Why and when the desk cancelled a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cancellation {
    pub at: Instant,
    /// Who cancelled it: the person, or `token:<role>`.
    pub by: String,
    pub reason: String,
}

impl DeskRecord for JobDesk {
    const KIND: &'static str = "job";

    fn id(&self) -> &str {
        &self.job_id
    }

    fn lookup(&self) -> Option<String> {
        Some(serial_key(&self.serial))
    }

    /// Open until the customer has been reached after the service (R14), or cancelled.
    fn open(&self) -> bool {
        self.cancellation.is_none() && !self.calls.iter().any(|c| c.reached)
    }
}

impl JobDesk {
    /// R4: served means checked out or signed; only a served job was a repair.
    pub fn served(&self) -> bool {
        self.checked_out_at.is_some() || self.report_id.is_some()
    }

    /// R4: this job as a visit, with the desk's and the diagnosed category.
    fn visit(&self) -> ServiceVisit {
        ServiceVisit {
            job_id: self.job_id.clone(),
            serial: self.serial.clone(),
            categories: ServiceVisit::categories_of(
                self.fault_category.as_deref(),
                self.diagnosed_category.as_deref(),
            ),
            at: self.received_at.0,
            served: self.served(),
        }
    }
}

/// Serials are typed by people: one spelling for lookups.
fn serial_key(serial: &str) -> String {
    serial.trim().to_ascii_lowercase()
}

/// R4: the earlier served jobs on the visit's serial sharing one of its categories (the
/// desk's or the diagnosed one, on either side) within the configured window before it.
async fn find_repeats(state: &Edge, visit: &ServiceVisit) -> Result<Vec<RepeatFlag>, ApiError> {
    if visit.categories.is_empty() {
        return Ok(Vec::new());
    }
    let filter = RecordFilter {
        lookup: Some(serial_key(&visit.serial)),
        open_only: false,
    };
    let earlier: Vec<ServiceVisit> = records::list::<JobDesk>(state, filter)
        .await?
        .into_iter()
        .map(|s| s.value.visit())
        .collect();
    Ok(
        repeat_repairs(visit, &earlier, state.node.config.repeat_window_ms())
            .into_iter()
            .map(|e| RepeatFlag {
                job_id: e.job_id.clone(),
                fault_category: visit.shared_category(e).unwrap_or_default().to_owned(),
                at: Instant(e.at),
            })
            .collect(),
    )
}

/// Writes the desk record of a job just created and flags repeat repairs (R4). Called by
/// `POST /api/jobs` and `POST /api/requests/{id}/job` once the job document exists.
pub async fn record_new_job(
    state: &Edge,
    job: &Job,
    fault_category: Option<String>,
    contract_due: Option<Date>,
    request_id: Option<String>,
) -> Result<Vec<RepeatFlag>, ApiError> {
    let job_id = job.job_id.to_string();
    let mut record = JobDesk {
        job_id,
        kind: job.kind,
        customer_id: job.customer.id.clone(),
        customer_name: job.customer.name.clone(),
        customer_contact: job.customer.contact.clone(),
        serial: job.product.serial.clone(),
        fault_category,
        diagnosed_category: None,
        received_at: Instant(job.request.received_at),
        created_at: Instant(state.node.clock.now()),
        request_id,
        contract_due,
        appointment: None,
        repeat_of: Vec::new(),
        repeat_on_signing: Vec::new(),
        served_at: None,
        checked_out_at: None,
        report_id: None,
        signed_at: None,
        calls: Vec::new(),
        cancellation: None,
    };
    record.repeat_of = find_repeats(state, &record.visit()).await?;
    records::save(state, 0, &record).await?;
    // R26: the product goes into the customer's file.
    super::products::record_job_product(state, job).await?;
    Ok(record.repeat_of)
}

/// What the report signer calls once a report is signed and its outcome written: the
/// technician's diagnosed fault category is recorded beside the desk's and R4 is checked
/// again with both, the job's service time (its check-out, else `signed_at`) starts R14's
/// follow-up, and the request it came from is marked served (R2: off the overdue list).
/// Returns the repeat flags found; a job the desk has no record of (made before the desk
/// existed) gets one now.
pub async fn on_report_signed(
    state: &Edge,
    job: &Job,
    report_id: &str,
    signed_at: Timestamp,
) -> Result<Vec<RepeatFlag>, ApiError> {
    let job_id = job.job_id.to_string();
    for _attempt in 0..3 {
        let (revision, mut record) = match records::load::<JobDesk>(state, &job_id).await? {
            Some(Stored { revision, value }) => (revision, value),
            None => {
                record_new_job(state, job, None, None, None).await?;
                continue;
            }
        };
        record.diagnosed_category = job
            .diagnosis
            .fault_category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        record.repeat_on_signing = find_repeats(state, &record.visit()).await?;
        let served = job.visit.check_out.as_ref().map_or(signed_at, |c| c.at);
        record.served_at = Some(Instant(served));
        if let Some(out) = &job.visit.check_out {
            record.checked_out_at = Some(Instant(out.at));
        }
        record.report_id = Some(report_id.to_owned());
        record.signed_at = Some(Instant(signed_at));
        match records::save(state, revision, &record).await {
            Ok(_) => {
                if let Some(request) = &record.request_id {
                    super::intake::request_served(state, request, &job_id, signed_at).await?;
                }
                return Ok(record.repeat_on_signing);
            }
            // The desk changed the record meanwhile (an appointment, a call): read again.
            Err(e) if e.status == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("the desk record of job {job_id} kept changing"),
    ))
}

async fn require_job_desk(state: &Edge, id: &str) -> Result<Stored<JobDesk>, ApiError> {
    let job_id = parse_job_id(id)?;
    records::require(state, &job_id.to_string(), "unknown_job", "job").await
}

/// The body of `POST /api/requests/{id}/job`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJobFromRequest {
    pub kind: JobKind,
    /// The technician to assign (more with `PUT /api/jobs/{id}/technicians`).
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    /// R10: warranty or billable; by default warranty while the product is under warranty.
    #[serde(default)]
    pub billing_mode: Option<BillingMode>,
    #[serde(default)]
    pub currency: Option<String>,
    /// R16: required for installation jobs: the contract's completion date.
    #[serde(default)]
    pub contract_due: Option<Date>,
    /// R3: the appointment agreed with the customer while dispatching; it answers the
    /// customer (R2's reply).
    #[serde(default)]
    pub appointment: Option<NewAppointment>,
    /// Assign a technician no enrolled device belongs to yet (new staff): the answer warns.
    #[serde(default)]
    pub pre_assign: bool,
}

/// R3, R4: turns a registered request into a job assigned to a technician (their assignment
/// index document lists it, so their devices get it on the next sync) and flags earlier
/// jobs on the same product for the same fault.
#[utoipa::path(
    post,
    path = "/api/requests/{id}/job",
    tag = "dispatch",
    description = "R3, R4, R16: make the job of a service request and assign it. Roles: \
        dispatcher, manager.",
    params(("id" = String, Path, description = "The request id")),
    request_body = NewJobFromRequest,
    responses(
        (status = 201, body = CreatedJob),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, contract_due_required, unknown_technician, after_contract_due"),
        (status = 404, body = ErrorBody, description = "unknown_request"),
        (status = 409, body = ErrorBody, description = "already_dispatched, conflict"),
    ),
)]
pub async fn create_job_from_request(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedJob>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "dispatch jobs")?;
    let new: NewJobFromRequest = parse_body(&body)?;
    let created = dispatch_request(&state, &id, new, &actor).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// R3, R4, R16: makes the job of request `id` and assigns it, with the appointment if one
/// was agreed, and writes the audit entry (`job_dispatch`: the request before, the job
/// after). What `POST /api/requests/{id}/job` and the console's dispatch form both call.
pub async fn dispatch_request(
    state: &Edge,
    id: &str,
    new: NewJobFromRequest,
    actor: &Actor,
) -> Result<CreatedJob, ApiError> {
    let role = actor.role;
    let id = id.to_owned();
    if let Some(appointment) = &new.appointment {
        check_appointment(appointment)?;
        // R16: refused before anything is made, not after.
        if let Some(due) = new.contract_due
            && (state.node.config.timezone)
                .date_of(appointment.at.0)
                .is_ok_and(|day| day > due.0)
        {
            return Err(ApiError::bad_request(
                "after_contract_due",
                format!(
                    "R16: installation must be done by the contract date {}; the appointment \
                     at {:?} is after it",
                    due.0, appointment.at
                ),
            ));
        }
    }
    let Stored {
        revision,
        mut value,
    } = require_request(state, &id).await?;
    if let Some(job) = &value.job_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_dispatched",
            format!("request {id} already has job {job}"),
        ));
    }
    let request: ServiceRequest = value.clone();
    let new_job = NewJob {
        kind: new.kind.as_str().to_owned(),
        request: NewRequest {
            channel: request.channel.as_str().to_owned(),
            received_at: request.received_at.0.to_string(),
            fault_description: request.fault_description,
            requested_arrival: request.requested_arrival.map(|a| a.0.to_string()),
            fault_category: request.fault_category,
        },
        customer: NewCustomer {
            id: request.customer.id.to_string(),
            name: request.customer.name,
            contact: request.customer.contact,
            site_address: request.customer.site_address,
        },
        product: NewProduct {
            model: request.product.model,
            serial: request.product.serial,
            product_type: request.product.product_type,
            purchase_date: request.product.purchase_date.map(|d| d.0.to_string()),
            warranty_end: request.product.warranty_end.map(|d| d.0.to_string()),
        },
        technician: new.technician.to_string(),
        billing: Some(NewBilling {
            mode: new.billing_mode.map(|m| m.as_str().to_owned()),
            currency: new.currency,
        }),
        contract_due: new.contract_due.map(|d| d.0.to_string()),
        pre_assign: new.pre_assign,
        price_list: Vec::new(),
    };
    // Reserve the request first, so two dispatchers cannot make two jobs of it.
    let job_id = DocumentId::random();
    value.job_id = Some(job_id.to_string());
    let reserved = records::save(state, revision, &value).await?;
    match create_job_with_id(state, new_job, job_id, Some(id.clone())).await {
        Ok(created) => {
            if let Some(appointment) = new.appointment {
                agree_appointment(state, &created.job_id, appointment, role).await?;
            }
            let entry = Entry::new(
                state.node.clock.now(),
                actor.name(),
                role.as_str(),
                "job_dispatch",
                format!("request:{id}"),
            )
            .before(id.clone())
            .after(created.job_id.clone())
            .detail(format!("assigned to {}", created.technician));
            crate::console::audit_api(&state.node, entry).await?;
            Ok(created)
        }
        Err(e) => {
            // Nothing was made: free the request again (best effort; a failure is logged).
            value.job_id = None;
            if let Err(undo) = records::save(state, reserved, &value).await {
                tracing::warn!(
                    request = %id,
                    error = %undo.message,
                    "cannot free a request after a failed dispatch"
                );
            }
            Err(e)
        }
    }
}

/// The body of `PUT /api/jobs/{id}/appointment`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppointment {
    pub at: Instant,
    pub contacted_by: String,
    /// R3: the fault as re-checked with the customer.
    pub fault_rechecked: String,
}

/// R3: records the appointment agreed with the customer, in the desk record and in the job
/// document (so the technician's device shows it). R16: an installation job's appointment
/// cannot be after its contract date.
#[utoipa::path(
    put,
    path = "/api/jobs/{id}/appointment",
    tag = "dispatch",
    description = "R3, R16: record the agreed appointment. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    request_body = NewAppointment,
    responses(
        (status = 200, body = JobDesk),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, after_contract_due"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn set_appointment(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobDesk>, ApiError> {
    let role = state
        .node
        .authorize(&headers, STAFF, "record appointments")?;
    let new: NewAppointment = parse_body(&body)?;
    check_appointment(&new)?;
    let id = parse_job_id(&id)?.to_string();
    Ok(Json(agree_appointment(&state, &id, new, role).await?))
}

fn check_appointment(new: &NewAppointment) -> Result<(), ApiError> {
    nonempty("appointment.contacted_by", &new.contacted_by)?;
    nonempty("appointment.fault_rechecked", &new.fault_rechecked)
}

/// R3: records the appointment in the desk record, answers the customer on the request the
/// job came from (R2: an appointment agreed is a reply, if it is the first), then writes it
/// into the job document. The desk record is written first, so the desk's follower of the
/// jobs (`desk::follow`) knows this appointment is the desk's when the job changes.
async fn agree_appointment(
    state: &Edge,
    job_id: &str,
    new: NewAppointment,
    role: crate::auth::DeskRole,
) -> Result<JobDesk, ApiError> {
    let Stored {
        revision,
        mut value,
    } = require_job_desk(state, job_id).await?;
    if let Some(due) = value.contract_due {
        let day = (state.node.config.timezone)
            .date_of(new.at.0)
            .map_err(|e| ApiError::bad_request("invalid_field", format!("at: {e}")))?;
        if day > due.0 {
            return Err(ApiError::bad_request(
                "after_contract_due",
                format!(
                    "R16: installation must be done by the contract date {}; the appointment \
                     on {day} is after it",
                    due.0
                ),
            ));
        }
    }
    let recorded_at = Instant(state.node.clock.now());
    value.appointment = Some(Appointment {
        at: new.at,
        contacted_by: new.contacted_by.clone(),
        fault_rechecked: new.fault_rechecked.clone(),
        recorded_at,
    });
    records::save(state, revision, &value).await?;
    if let Some(request) = &value.request_id {
        let reply = Reply {
            at: recorded_at,
            by: new.contacted_by.clone(),
            text: format!(
                "appointment agreed for {:?}; fault re-checked: {}",
                new.at, new.fault_rechecked
            ),
            source: ReplySource::Appointment,
        };
        super::intake::keep_first_reply(state, request, reply).await?;
    }
    let job_id = parse_job_id(&value.job_id)?;
    let event = TimelineEvent {
        at: recorded_at.0,
        actor: format!("desk:{}", role.as_str()),
        kind: "appointment".into(),
        text: format!(
            "appointment agreed for {:?} by {}; fault re-checked: {}",
            new.at, new.contacted_by, new.fault_rechecked
        ),
    };
    let at = new.at.0;
    state
        .node
        .hub
        .edit(
            job_id,
            LocalEdit::job(move |job| {
                job.set_appointment(Some(at))?;
                job.add_timeline_event(&event)
            }),
        )
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    Ok(value)
}

/// The desk record of a job: request, appointment, repeat repairs, service and calls.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/desk",
    tag = "dispatch",
    description = "R3, R4, R14: what the desk keeps about a job. Roles: dispatcher, manager, \
        analyst.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    responses(
        (status = 200, body = JobDesk),
        (status = 400, body = ErrorBody, description = "invalid_job_id"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn job_desk_record(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobDesk>, ApiError> {
    state.node.authorize(&headers, EVERYONE, "read jobs")?;
    Ok(Json(require_job_desk(&state, &id).await?.value))
}

/// Query of `GET /api/follow-ups`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FollowUpQuery {
    /// The day of the calls (YYYY-MM-DD, UTC); today by default. Lists the jobs served the
    /// day before.
    #[serde(default)]
    #[param(value_type = Option<String>, format = Date)]
    pub date: Option<Date>,
}

/// R14: the customers to call on a day.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowUpList {
    pub date: Date,
    /// Jobs served the day before `date`, with the calls made so far.
    pub jobs: Vec<JobDesk>,
}

/// R14: the customers to call about their satisfaction on `date`: those served the day
/// before.
#[utoipa::path(
    get,
    path = "/api/follow-ups",
    tag = "follow-up",
    description = "R14: customers to call the day after their service. Roles: dispatcher, \
        manager, analyst.",
    params(FollowUpQuery),
    responses(
        (status = 200, body = FollowUpList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_follow_ups(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<FollowUpQuery>, QueryRejection>,
) -> Result<Json<FollowUpList>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list follow-up calls")?;
    let q = query(q)?;
    Ok(Json(follow_ups_on(&state, q.date).await?))
}

/// R14: the jobs served the day before `date` (today in the branch's zone by default), with
/// their calls: what `GET /api/follow-ups` and the console's follow-up page list.
pub async fn follow_ups_on(state: &Edge, date: Option<Date>) -> Result<FollowUpList, ApiError> {
    let date = match date {
        Some(d) => d,
        None => Date(
            (state.node.config.timezone)
                .date_of(state.node.clock.now())
                .map_err(|e| ApiError::internal("clock_error", e))?,
        ),
    };
    let served_on = date.0.previous_day();
    let jobs = records::list::<JobDesk>(state, RecordFilter::default())
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|j| {
            j.served_at
                .and_then(|at| state.node.config.timezone.date_of(at.0).ok())
                .is_some_and(|d| Some(d) == served_on)
        })
        .collect();
    Ok(FollowUpList { date, jobs })
}

/// The body of `POST /api/follow-ups/{id}/call`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCall {
    pub by: String,
    pub reached: bool,
    /// Required when the customer was reached.
    #[serde(default)]
    pub satisfied: Option<bool>,
    #[serde(default)]
    pub comments: String,
    /// When the call was made; now by default.
    #[serde(default)]
    pub at: Option<Instant>,
}

/// R14: records a follow-up call and its outcome. A call is made after the service; once
/// the customer is reached the follow-up is done.
#[utoipa::path(
    post,
    path = "/api/follow-ups/{id}/call",
    tag = "follow-up",
    description = "R14: record the outcome of a follow-up call. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The job id")),
    request_body = NewCall,
    responses(
        (status = 200, body = JobDesk),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, satisfaction_required"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
        (status = 409, body = ErrorBody, description = "not_served, already_called, conflict"),
    ),
)]
pub async fn record_call(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobDesk>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "record follow-up calls")?;
    let new: NewCall = parse_body(&body)?;
    Ok(Json(record_call_as(&state, &id, new, &actor).await?))
}

/// R14: records a follow-up call on job `id` and writes the audit entry (`follow_up_call`).
/// What `POST /api/follow-ups/{id}/call` and the console's follow-up form both call.
pub async fn record_call_as(
    state: &Edge,
    id: &str,
    new: NewCall,
    actor: &Actor,
) -> Result<JobDesk, ApiError> {
    nonempty("by", &new.by)?;
    if new.reached && new.satisfied.is_none() {
        return Err(ApiError::bad_request(
            "satisfaction_required",
            "R14: the customer was reached: record whether they are satisfied",
        ));
    }
    let Stored {
        revision,
        mut value,
    } = require_job_desk(state, id).await?;
    if value.served_at.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_served",
            format!(
                "R14: job {} has no signed service report yet; the call follows the service",
                value.job_id
            ),
        ));
    }
    if value.calls.iter().any(|c| c.reached) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_called",
            format!("the customer of job {} was already reached", value.job_id),
        ));
    }
    let call = FollowUpCall {
        at: new.at.unwrap_or(Instant(state.node.clock.now())),
        by: new.by,
        reached: new.reached,
        satisfied: if new.reached { new.satisfied } else { None },
        comments: new.comments,
    };
    let outcome = match (call.reached, call.satisfied) {
        (false, _) => "not_reached",
        (true, Some(true)) => "satisfied",
        (true, _) => "not_satisfied",
    };
    let before = value.calls.len();
    value.calls.push(call);
    records::save(state, revision, &value).await?;
    let entry = Entry::new(
        state.node.clock.now(),
        actor.name(),
        actor.role.as_str(),
        "follow_up_call",
        format!("job:{}", value.job_id),
    )
    .before(format!("calls:{before}"))
    .after(format!("calls:{}", value.calls.len()))
    .detail(outcome);
    crate::console::audit_api(&state.node, entry).await?;
    Ok(value)
}

/// The timeline event kind a cancellation writes into the job document.
pub const CANCELLED_EVENT: &str = "cancelled";

/// The cancellation in a job's timeline, if the desk cancelled it: what the board and the
/// device read (the event's text carries the reason).
pub fn cancelled_in(timeline: &[TimelineEvent]) -> Option<&TimelineEvent> {
    timeline.iter().find(|e| e.kind == CANCELLED_EVENT)
}

/// The body of `POST /api/jobs/{id}/cancel`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelJob {
    /// Why, in the desk's words: kept in the job's timeline and the desk record.
    pub reason: String,
}

/// Cancels a job with a reason: a `cancelled` event in the job document's timeline (the
/// technician's device shows it), the reason in the desk record, and the board shows the
/// job as cancelled. A job whose report is signed, or already cancelled, cannot be.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/cancel",
    tag = "dispatch",
    description = "Cancel a job with a reason, written into the job's timeline (the device \
        sees it) and the desk record. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    request_body = CancelJob,
    responses(
        (status = 200, body = JobDesk),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, invalid_job_id"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
        (status = 409, body = ErrorBody, description = "already_cancelled, already_signed, conflict"),
    ),
)]
pub async fn cancel_job_api(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JobDesk>, ApiError> {
    let actor = state.node.authorize_actor(&headers, STAFF, "cancel jobs")?;
    let new: CancelJob = parse_body(&body)?;
    Ok(Json(cancel_job(&state, &id, &new.reason, &actor).await?))
}

/// Cancels job `id` for `reason` (see [`cancel_job_api`]) and writes the audit entry
/// (`job_cancel`: the stage before, `cancelled` after). The console's form calls it too.
pub async fn cancel_job(
    state: &Edge,
    id: &str,
    reason: &str,
    actor: &Actor,
) -> Result<JobDesk, ApiError> {
    nonempty("reason", reason)?;
    let reason = reason.trim().to_owned();
    let job_id = parse_job_id(id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    let doc = state
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    let job = fieldsync_shared::job::doc::read_job(&doc)
        .map_err(|e| ApiError::internal("document_error", e))?;
    if cancelled_in(&job.timeline).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_cancelled",
            format!("job {job_id} is already cancelled"),
        ));
    }
    let before = match &job.report {
        Some(fieldsync_shared::job::ReportOutcome::Signed { report_id, .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_signed",
                format!(
                    "job {job_id} has a signed service report ({report_id}): a served job \
                     cannot be cancelled"
                ),
            ));
        }
        Some(fieldsync_shared::job::ReportOutcome::Refused { .. }) => "refused",
        None if job.visit.arrival.is_some() => "on_site",
        None if job.visit.appointment.is_some() => "assigned",
        None => "new",
    };
    let now = state.node.clock.now();
    let by = actor.name();
    let Stored {
        revision,
        mut value,
    } = require_job_desk(state, &job_id.to_string()).await?;
    value.cancellation = Some(Cancellation {
        at: Instant(now),
        by: by.clone(),
        reason: reason.clone(),
    });
    records::save(state, revision, &value).await?;
    let event = TimelineEvent {
        at: now,
        actor: format!("desk:{}", actor.role.as_str()),
        kind: CANCELLED_EVENT.into(),
        text: format!("cancelled by {by}: {reason}"),
    };
    state
        .node
        .hub
        .edit(
            job_id,
            LocalEdit::job(move |job| job.add_timeline_event(&event)),
        )
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let entry = Entry::new(
        now,
        by,
        actor.role.as_str(),
        "job_cancel",
        format!("job:{job_id}"),
    )
    .before(before)
    .after("cancelled")
    .detail(reason);
    crate::console::audit_api(&state.node, entry).await?;
    Ok(value)
}
