//! The desk API, as much as the edge server issue needs: create a job and assign it, read a
//! job (desk tokens only); and `GET /api/me`, which tells a device its technician's assignment
//! index. Errors are JSON with a stable code (see `error.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use automerge::{AutoCommit, Automerge, ChangeHash};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use fieldsync_shared::ids::{BranchId, CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{JobDoc, conflicts, read_job};
use fieldsync_shared::job::index::INDEX_SCHEMA_VERSION;
use fieldsync_shared::job::index::IndexDoc;
use fieldsync_shared::job::{
    AssignmentIndex, Billing, BillingMode, Channel, Customer, Diagnosis, JOB_SCHEMA_VERSION, Job,
    JobKind, Labour, Product, ServiceRequest, Travel, Visit,
};
use fieldsync_shared::sync::{Input, LocalEdit, Principal};
use fieldsync_shared::time::{CalendarDate, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{AppState, now};
use crate::error::ApiError;
use crate::registry::JobRecord;
use crate::ws::{authenticate, token_from};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/api/jobs", post(create_job))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/me", get(me))
        .route("/api/jobs/{id}/technicians", put(set_technicians))
        .route("/api/reports/{id}", get(get_report))
}

/// `GET /api/me` for a device token: who the device is and where its technician's assignment
/// index is, so a device need not be told the index out of band. The index URL is null until
/// the technician's first job is assigned.
async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(&state, token_from(&headers, None)).map_err(|e| {
        state.metrics.refused(e.code());
        ApiError::unauthorized(&e)
    })?;
    let Principal::Device {
        device_id,
        technician,
    } = principal
    else {
        return Err(ApiError::forbidden("`/api/me` answers device tokens only"));
    };
    let index = state.registry_read().index_doc(&technician);
    Ok(Json(json!({
        "device_id": device_id,
        "technician": technician,
        "branch_id": state.branch_id,
        "assignment_index_url": index.map(|i| i.url()),
    })))
}

/// Who may do what at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Dispatch,
}

pub(crate) fn desk(state: &AppState, headers: &HeaderMap, need: Need) -> Result<String, ApiError> {
    let principal = authenticate(state, token_from(headers, None)).map_err(|e| {
        state.metrics.refused(e.code());
        ApiError::unauthorized(&e)
    })?;
    let Principal::Desk { role } = principal else {
        return Err(ApiError::forbidden(
            "the desk API needs a desk token (`fieldsync desk token --role …`)",
        ));
    };
    if need == Need::Dispatch && role == "analyst" {
        return Err(ApiError::forbidden(
            "role analyst may read jobs but not create them (needs dispatcher or manager)",
        ));
    }
    Ok(role)
}

/// The body of `POST /api/jobs`. Times are RFC 3339 strings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    kind: String,
    request: NewRequest,
    customer: NewCustomer,
    product: NewProduct,
    technician: String,
    #[serde(default)]
    billing: Option<NewBilling>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    channel: String,
    received_at: String,
    fault_description: String,
    #[serde(default)]
    requested_arrival: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    id: String,
    name: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    site_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    model: String,
    serial: String,
    product_type: String,
    #[serde(default)]
    purchase_date: Option<String>,
    #[serde(default)]
    warranty_end: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBilling {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    currency: Option<String>,
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

async fn create_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    desk(&state, &headers, Need::Dispatch)?;
    let new: NewJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))?;
    let job_id = DocumentId::random();
    let job = new.into_job(job_id, state.branch_id.clone())?;
    let technician = job.technicians[0].clone();
    let doc = JobDoc::create(&job).map_err(|e| ApiError::internal("document_error", e))?;
    let doc = to_automerge(doc.into_inner())?;

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
        created_at: now(),
    };
    let pending = state.registry_write().put_job(&state.store, record);
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let index_id = add_to_index(&state, &technician, job_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "job_id": job_id,
            "url": job_id.url(),
            "technician": technician,
            "assignment_index_url": index_id.url(),
        })),
    ))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Technicians {
    technicians: Vec<String>,
}

fn parse_job_id(id: &str) -> Result<DocumentId, ApiError> {
    id.parse()
        .or_else(|_| DocumentId::from_url(id))
        .map_err(|e| ApiError::bad_request("invalid_job_id", e.to_string()))
}

/// `PUT /api/jobs/{id}/technicians`: assign and unassign (R3 dispatch). Access changes take
/// effect on live connections: a device that lost the job gets `doc-unavailable` for it and
/// its assignment index no longer lists it.
async fn set_technicians(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    desk(&state, &headers, Need::Dispatch)?;
    let job_id = parse_job_id(&id)?;
    let body: Technicians = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))?;
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
async fn get_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;

    desk(&state, &headers, Need::Read)?;
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

async fn get_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    desk(&state, &headers, Need::Read)?;
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
    let mut doc = Automerge::new();
    for chunk in &chunks {
        doc.load_incremental(chunk)
            .map_err(|e| ApiError::internal("document_error", e))?;
    }
    let job = read_job(&doc).map_err(|e| ApiError::internal("document_error", e))?;
    let heads: Vec<String> = doc.get_heads().iter().map(ChangeHash::to_string).collect();
    Ok(Json(json!({
        "job": job,
        "url": job_id.url(),
        "heads": heads,
        "conflicts": conflicts(&doc),
    })))
}
