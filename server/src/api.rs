//! The job endpoints of the desk API: create a job and assign it, reassign it, read a job
//! and a signed report (desk tokens only); and `GET /api/me`, which tells a device its
//! technician's assignment index. Errors are JSON with a stable code (see `error.rs`). The
//! routes are mounted with the rest of the desk API in `desk::api`, which also builds the
//! OpenAPI document from the `#[utoipa::path]` of each handler.

use std::collections::BTreeSet;
use std::sync::Arc;

use automerge::{AutoCommit, Automerge, ChangeHash};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::init_approvals;
use fieldsync_shared::job::doc::{JobDoc, conflicts, read_job};
use fieldsync_shared::job::index::INDEX_SCHEMA_VERSION;
use fieldsync_shared::job::index::IndexDoc;
use fieldsync_shared::job::{
    AssignmentIndex, Billing, BillingMode, Channel, Customer, Diagnosis, JOB_SCHEMA_VERSION, Job,
    JobKind, Labour, Product, ServiceRequest, Travel, Visit,
};
use fieldsync_shared::sync::{Input, LocalEdit, Principal};
use fieldsync_shared::time::{CalendarDate, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::desk::wire::ErrorBody;
use crate::desk::{EVERYONE, STAFF, authorize, parse_body};
use crate::error::ApiError;
use crate::registry::JobRecord;
use crate::ws::{authenticate, token_from};

/// `GET /api/me` for a device token: who the device is and where its technician's assignment
/// index is, so a device need not be told the index out of band. The index URL is null until
/// the technician's first job is assigned.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "devices",
    description = "A device's technician and assignment index URL. Device tokens only.",
    responses(
        (status = 200, description = "`{device_id, technician, branch_id, assignment_index_url}`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
)]
pub async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (device_id, technician) = authorize_device(&state, &headers, "`/api/me`")?;
    let index = state.registry_read().index_doc(&technician);
    Ok(Json(json!({
        "device_id": device_id,
        "technician": technician,
        "branch_id": state.branch_id,
        "assignment_index_url": index.map(|i| i.url()),
    })))
}

/// Checks that the request carries a device's token (for `what`, named in the 403 a desk
/// token gets) and returns the device and its technician.
pub fn authorize_device(
    state: &AppState,
    headers: &HeaderMap,
    what: &str,
) -> Result<(DeviceId, TechnicianId), ApiError> {
    let principal = authenticate(state, token_from(headers, None)).map_err(|e| {
        state.metrics.refused(e.code());
        ApiError::unauthorized(&e)
    })?;
    match principal {
        Principal::Device {
            device_id,
            technician,
        } => Ok((device_id, technician)),
        Principal::Desk { role } => Err(ApiError::forbidden(format!(
            "{what} answers device tokens only, not a desk token (role {role})"
        ))),
        _ => Err(ApiError::forbidden(format!(
            "{what} answers device tokens only"
        ))),
    }
}

/// The body of `POST /api/jobs`. Times are RFC 3339 strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// repair, installation, maintenance or follow_up.
    pub kind: String,
    pub request: NewRequest,
    pub customer: NewCustomer,
    pub product: NewProduct,
    pub technician: String,
    #[serde(default)]
    pub billing: Option<NewBilling>,
    /// R16: the contract's completion date (YYYY-MM-DD); required for installation jobs.
    #[serde(default)]
    pub contract_due: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// R1: phone, letter, visit, email or web.
    pub channel: String,
    /// RFC 3339.
    pub received_at: String,
    pub fault_description: String,
    /// RFC 3339 (R2).
    #[serde(default)]
    pub requested_arrival: Option<String>,
    /// The desk's classification of the fault; R4 compares it with earlier jobs.
    #[serde(default)]
    pub fault_category: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub site_address: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub model: String,
    pub serial: String,
    pub product_type: String,
    #[serde(default)]
    pub purchase_date: Option<String>,
    #[serde(default)]
    pub warranty_end: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBilling {
    /// warranty or billable (R10).
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
}

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
    pub repeat_of: Vec<crate::desk::dispatch::RepeatFlag>,
}

fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::bad_request("invalid_field", format!("{name}: {e}")))
}

fn nonempty(name: &str, value: String) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::bad_request(
            "invalid_field",
            format!("{name}: must not be empty"),
        ))
    } else {
        Ok(value)
    }
}

impl NewJob {
    fn into_job(self, job_id: DocumentId, branch_id: BranchId) -> Result<Job, ApiError> {
        let kind = JobKind::parse(&self.kind).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_field",
                format!(
                    "kind: {:?} is not one of repair, installation, maintenance, follow_up",
                    self.kind
                ),
            )
        })?;
        let channel = Channel::parse(&self.request.channel).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_field",
                format!(
                    "request.channel: {:?} is not one of phone, letter, visit, email, web (R1)",
                    self.request.channel
                ),
            )
        })?;
        let received_at: Timestamp =
            field("request.received_at", self.request.received_at.parse())?;
        let requested_arrival = self
            .request
            .requested_arrival
            .map(|s| field("request.requested_arrival", s.parse::<Timestamp>()))
            .transpose()?;
        let date = |name: &str, v: Option<String>| {
            v.map(|s| field(name, s.parse::<CalendarDate>()))
                .transpose()
        };
        let purchase_date = date("product.purchase_date", self.product.purchase_date)?;
        let warranty_end = date("product.warranty_end", self.product.warranty_end)?;
        let technician = field("technician", TechnicianId::new(self.technician))?;
        let billing = self.billing.unwrap_or(NewBilling {
            mode: None,
            currency: None,
        });
        // R10: without an explicit mode, a product still under warranty on the day the call
        // came in is repaired free.
        let mode = match billing.mode {
            Some(m) => BillingMode::parse(&m).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_field",
                    format!("billing.mode: {m:?} is not warranty or billable"),
                )
            })?,
            None => {
                let day = received_at.date().ok();
                match (warranty_end, day) {
                    (Some(end), Some(day)) if day <= end => BillingMode::Warranty,
                    _ => BillingMode::Billable,
                }
            }
        };
        Ok(Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id,
            branch_id,
            kind,
            request: ServiceRequest {
                channel,
                received_at,
                fault_description: nonempty(
                    "request.fault_description",
                    self.request.fault_description,
                )?,
                requested_arrival,
            },
            customer: Customer {
                id: field("customer.id", CustomerId::new(self.customer.id))?,
                name: nonempty("customer.name", self.customer.name)?,
                contact: self.customer.contact,
                site_address: self.customer.site_address,
            },
            product: Product {
                model: self.product.model,
                serial: nonempty("product.serial", self.product.serial)?,
                product_type: nonempty("product.product_type", self.product.product_type)?,
                purchase_date,
                warranty_end,
            },
            technicians: vec![technician],
            visit: Visit::default(),
            diagnosis: Diagnosis::default(),
            parts: Vec::new(),
            labour: Labour::default(),
            travel: Travel::default(),
            billing: Billing {
                mode,
                currency: billing.currency.unwrap_or_else(|| "CNY".into()),
                invoice_number: None,
            },
            handover: None,
            customer_opinion: None,
            acknowledgement: None,
            completion: None,
            report: None,
            timeline: Vec::new(),
            notes: String::new(),
        })
    }
}

fn to_automerge(mut doc: AutoCommit) -> Result<Automerge, ApiError> {
    Automerge::load(&doc.save()).map_err(|e| ApiError::internal("document_error", e))
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
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, contract_due_required"),
        (status = 403, body = ErrorBody),
    ),
)]
pub async fn create_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedJob>), ApiError> {
    authorize(&state, &headers, STAFF, "create jobs")?;
    let new: NewJob = parse_body(&body)?;
    let created = create_job_with_id(&state, new, DocumentId::random(), None).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates the job document `job_id` from `new`, assigns it (records, assignment index) and
/// writes its desk record (R4 flags). `request_id` names the service request it was made
/// from.
pub async fn create_job_with_id(
    state: &AppState,
    new: NewJob,
    job_id: DocumentId,
    request_id: Option<String>,
) -> Result<CreatedJob, ApiError> {
    let fault_category = new
        .request
        .fault_category
        .clone()
        .filter(|c| !c.trim().is_empty());
    let contract_due = new
        .contract_due
        .as_deref()
        .map(|d| field("contract_due", d.parse::<CalendarDate>()))
        .transpose()?;
    let job = new.into_job(job_id, state.branch_id.clone())?;
    if job.kind == JobKind::Installation && contract_due.is_none() {
        return Err(ApiError::bad_request(
            "contract_due_required",
            "R16: an installation job is done within the contract's time: give contract_due",
        ));
    }
    let technician = job.technicians[0].clone();
    let doc = JobDoc::create(&job).map_err(|e| ApiError::internal("document_error", e))?;
    let mut doc = doc.into_inner();
    // The server makes the approvals map, so devices never create it concurrently.
    init_approvals(&mut doc).map_err(|e| ApiError::internal("document_error", e))?;
    let doc = to_automerge(doc)?;

    // One assignment at a time, so two jobs for a technician without an index yet do not
    // create two indexes.
    let _guard = state.assign_lock.lock().await;
    state
        .hub
        .edit(job_id, LocalEdit::Create(Box::new(doc)))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let record = JobRecord {
        job_id,
        branch_id: state.branch_id.clone(),
        technicians: BTreeSet::from([technician.clone()]),
        created_at: state.clock.now(),
        former: BTreeSet::new(),
    };
    let pending = state.registry_write().put_job(&state.store, record);
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let index_id = add_to_index(state, &technician, job_id).await?;
    drop(_guard);
    let repeat_of = crate::desk::dispatch::record_new_job(
        state,
        &job,
        fault_category,
        contract_due.map(crate::desk::wire::Date),
        request_id,
    )
    .await?;
    Ok(CreatedJob {
        job_id: job_id.to_string(),
        url: job_id.url(),
        technician: technician.to_string(),
        assignment_index_url: index_id.url(),
        repeat_of,
    })
}

/// Removes a job from the technician's assignment index (if they have one).
async fn remove_from_index(
    state: &AppState,
    technician: &TechnicianId,
    job_id: DocumentId,
) -> Result<(), ApiError> {
    let Some(index_id) = state.registry_read().index_doc(technician) else {
        return Ok(());
    };
    state
        .hub
        .edit(
            index_id,
            LocalEdit::index(move |index| index.remove_job(&job_id)),
        )
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    Ok(())
}

/// Adds a job to the technician's assignment index, creating the index on first use.
async fn add_to_index(
    state: &AppState,
    technician: &TechnicianId,
    job_id: DocumentId,
) -> Result<DocumentId, ApiError> {
    let existing = state.registry_read().index_doc(technician);
    match existing {
        Some(index_id) => {
            state
                .hub
                .edit(
                    index_id,
                    LocalEdit::index(move |index| index.add_job(&job_id)),
                )
                .await
                .map_err(|e| ApiError::internal("storage_error", e))?;
            Ok(index_id)
        }
        None => {
            let index = AssignmentIndex {
                schema_version: INDEX_SCHEMA_VERSION,
                branch_id: state.branch_id.clone(),
                technician: technician.clone(),
                jobs: vec![job_id.url()],
            };
            let doc = IndexDoc::create(&index, None)
                .map_err(|e| ApiError::internal("document_error", e))?;
            let doc = to_automerge(doc.into_inner())?;
            let index_id = DocumentId::random();
            state
                .hub
                .edit(index_id, LocalEdit::Create(Box::new(doc)))
                .await
                .map_err(|e| ApiError::internal("storage_error", e))?;
            let pending = state
                .registry_write()
                .set_index_doc(&state.store, technician, index_id);
            pending
                .await
                .map_err(|e| ApiError::internal("storage_error", e))?;
            Ok(index_id)
        }
    }
}

/// The body of `PUT /api/jobs/{id}/technicians`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Technicians {
    pub technicians: Vec<String>,
}

pub fn parse_job_id(id: &str) -> Result<DocumentId, ApiError> {
    id.parse()
        .or_else(|_| DocumentId::from_url(id))
        .map_err(|e| ApiError::bad_request("invalid_job_id", e.to_string()))
}

/// `PUT /api/jobs/{id}/technicians`: assign and unassign (R3 dispatch). Access changes take
/// effect on live connections: a device that lost the job gets `doc-unavailable` for it and
/// its assignment index no longer lists it.
#[utoipa::path(
    put,
    path = "/api/jobs/{id}/technicians",
    tag = "dispatch",
    description = "R3: assign and reassign a job's technicians; their assignment index \
        documents change. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    request_body = Technicians,
    responses(
        (status = 200, description = "`{job_id, technicians, added, removed}`"),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, invalid_job_id"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn set_technicians(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, STAFF, "assign technicians")?;
    let job_id = parse_job_id(&id)?;
    let body: Technicians = parse_body(&body)?;
    let wanted: BTreeSet<TechnicianId> = body
        .technicians
        .into_iter()
        .map(|t| field("technicians", TechnicianId::new(t)))
        .collect::<Result<_, _>>()?;
    let _guard = state.assign_lock.lock().await;
    let Some(mut record) = state.registry_read().job(&job_id).cloned() else {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    };
    let removed: Vec<TechnicianId> = record.technicians.difference(&wanted).cloned().collect();
    let added: Vec<TechnicianId> = wanted.difference(&record.technicians).cloned().collect();
    // Access first: the records decide, and live sessions are re-checked at once.
    record.technicians = wanted.clone();
    record.former.extend(removed.iter().cloned());
    record.former.retain(|t| !wanted.contains(t));
    let pending = state.registry_write().put_job(&state.store, record);
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    state.hub.engine_input(Input::AccessChanged {
        doc: Some(job_id),
        principal: None,
    });
    for tech in &removed {
        remove_from_index(&state, tech, job_id).await?;
    }
    for tech in &added {
        add_to_index(&state, tech, job_id).await?;
    }
    let list: Vec<TechnicianId> = wanted.iter().cloned().collect();
    state
        .hub
        .edit(
            job_id,
            LocalEdit::job(move |job| job.set_technicians(&list)),
        )
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    Ok(Json(json!({
        "job_id": job_id,
        "technicians": wanted,
        "added": added,
        "removed": removed,
    })))
}

/// `GET /api/reports/{id}`: a signed report as its canonical JSON, the export format that
/// `fieldsync verify` checks offline.
#[utoipa::path(
    get,
    path = "/api/reports/{id}",
    tag = "reports",
    description = "A signed service report's canonical JSON. Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The report id (32 hex digits)")),
    responses(
        (status = 200, description = "The report (RFC 8785 JSON)", content_type = "application/json"),
        (status = 400, body = ErrorBody, description = "invalid_report_id"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn get_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;

    authorize(&state, &headers, EVERYONE, "read reports")?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_report_id",
            "a report id is 32 hex digits",
        ));
    }
    let store = Arc::clone(&state.store);
    let key = id.clone();
    let bytes = tokio::task::spawn_blocking(move || store.meta(crate::reports::REPORTS, &key))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no report {id}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "dispatch",
    description = "A job as stored, with its heads and conflicts. Roles: dispatcher, manager, \
        analyst.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    responses(
        (status = 200, description = "`{job, url, heads, conflicts, stranded}`: `stranded` \
            lists changes devices handed over after they were unassigned (`/api/stranded`)"),
        (status = 400, body = ErrorBody, description = "invalid_job_id"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, EVERYONE, "read jobs")?;
    let job_id = parse_job_id(&id)?;
    if state.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    // The stored document is what the server has promised; read it from disk.
    let store = Arc::clone(&state.store);
    let chunks = tokio::task::spawn_blocking(move || store.load_doc(&job_id.to_string()))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    let doc = state
        .doc_load
        .load(&chunks)
        .map_err(|e| ApiError::internal("document_error", e))?;
    let job = read_job(&doc).map_err(|e| ApiError::internal("document_error", e))?;
    let heads: Vec<String> = doc.get_heads().iter().map(ChangeHash::to_string).collect();
    Ok(Json(json!({
        "job": job,
        "url": job_id.url(),
        "heads": heads,
        "conflicts": conflicts(&doc),
        "stranded": crate::handoff::for_job(&state, job_id).await?,
    })))
}
