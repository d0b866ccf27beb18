//! The job endpoints of the desk API: create a job and assign it, reassign it, read a job
//! and a signed report (desk tokens only); and `GET /api/me`, which tells a device its
//! technician's assignment index. Errors are JSON with a stable code (see `error.rs`). The
//! routes are mounted with the rest of the desk API in `desk::api`, which also builds the
//! OpenAPI document from the `#[utoipa::path]` of each handler.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use automerge::{AutoCommit, Automerge, ChangeHash};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use fieldsync_shared::ids::{BranchId, CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::init_approvals;
use fieldsync_shared::job::doc::{
    JobDoc, competing, conflicts, init_resolutions, read_job, resolutions,
};
use fieldsync_shared::job::index::INDEX_SCHEMA_VERSION;
use fieldsync_shared::job::index::IndexDoc;
use fieldsync_shared::job::price_list::{MAX_PRICE_ITEMS, PriceItem, write_price_list};
use fieldsync_shared::job::{
    AssignmentIndex, Billing, BillingMode, Channel, Customer, Diagnosis, JOB_SCHEMA_VERSION, Job,
    JobKind, Labour, Product, ServiceRequest, Travel, Visit,
};
use fieldsync_shared::sync::{Input, LocalEdit};
use fieldsync_shared::time::{CalendarDate, Money, Timestamp};
use fieldsync_shared::zone::Zone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::{Actor, EVERYONE, STAFF};
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_body;
use crate::http::parse_job_id;
use crate::http::wire::ErrorBody;
use crate::sync::registry::JobRecord;

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
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (device_id, technician) = state.node.authorize_device(&headers, "`/api/me`")?;
    let index = state.node.registry_read().index_doc(&technician);
    Ok(Json(json!({
        "device_id": device_id,
        "technician": technician,
        "branch_id": state.node.branch_id,
        "assignment_index_url": index.map(|i| i.url()),
    })))
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
    /// Assign a technician no enrolled device belongs to yet (new staff whose device comes
    /// later): accepted with a warning instead of refused as `unknown_technician`.
    #[serde(default)]
    pub pre_assign: bool,
    /// The parts the technician picks the parts used from (issue 20; R10, R18), at most
    /// 200, each with its unit price in the job's currency. Only the desk writes it.
    #[serde(default)]
    pub price_list: Vec<NewPriceItem>,
}

/// One part of a job's price list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPriceItem {
    pub part_number: String,
    pub name: String,
    #[serde(default)]
    pub specification: String,
    /// The unit price as a person writes it (`85`, `85.5`, `85.50`), in the job's currency.
    pub unit_price: String,
}

/// The price list of a new job, checked: named parts, unique part numbers, prices that are
/// amounts, at most [`MAX_PRICE_ITEMS`].
fn price_list(items: &[NewPriceItem]) -> Result<Vec<PriceItem>, ApiError> {
    if items.len() > MAX_PRICE_ITEMS {
        return Err(ApiError::bad_request(
            "price_list_too_long",
            format!(
                "a job's price list holds at most {MAX_PRICE_ITEMS} parts; this one has {}",
                items.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let part_number = item.part_number.trim();
            let name = item.name.trim();
            if part_number.is_empty() || name.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("price_list[{i}]: a part needs a part number and a name"),
                ));
            }
            if !seen.insert(part_number.to_owned()) {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("price_list[{i}]: part number {part_number} is listed twice"),
                ));
            }
            let unit_price = Money::parse_decimal(&item.unit_price)
                .ok()
                .filter(|m| m.0 >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_field",
                        format!(
                            "price_list[{i}].unit_price: {:?} is not an amount (e.g. 85.50)",
                            item.unit_price
                        ),
                    )
                })?;
            Ok(PriceItem {
                part_number: part_number.to_owned(),
                name: name.to_owned(),
                specification: item.specification.trim().to_owned(),
                unit_price,
            })
        })
        .collect()
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

/// A warning in a successful answer: done, but someone should look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Warning {
    /// Stable: `technician_not_enrolled`.
    pub code: String,
    pub message: String,
}

/// The technicians of the branch: those with an enrolled device that is not revoked. Devices
/// enrolled by the CLI a moment ago are read first.
pub fn enrolled_technicians(state: &Edge) -> BTreeMap<TechnicianId, usize> {
    if let Err(e) = state.node.reload_registry_if_changed() {
        tracing::warn!(error = %e, "cannot re-read the device records");
    }
    let mut out: BTreeMap<TechnicianId, usize> = BTreeMap::new();
    for device in state.node.registry_read().devices() {
        if device.revoked_at.is_none() {
            *out.entry(device.technician.clone()).or_default() += 1;
        }
    }
    out
}

/// Refuses technicians with no enrolled device (`unknown_technician`: no device would ever
/// see the job), unless `pre_assign` says they are new staff: then one warning each.
pub fn check_technicians<'a>(
    state: &Edge,
    technicians: impl IntoIterator<Item = &'a TechnicianId>,
    pre_assign: bool,
) -> Result<Vec<Warning>, ApiError> {
    let enrolled = enrolled_technicians(state);
    let unknown: Vec<&TechnicianId> = technicians
        .into_iter()
        .filter(|t| !enrolled.contains_key(*t))
        .collect();
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let names = |list: &[&TechnicianId]| {
        list.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if pre_assign {
        return Ok(unknown
            .iter()
            .map(|t| Warning {
                code: "technician_not_enrolled".to_owned(),
                message: format!(
                    "technician {t} has no enrolled device yet: the job waits in their \
                     assignment index until one is enrolled (`fieldsync device enroll`)"
                ),
            })
            .collect());
    }
    let known: Vec<&TechnicianId> = enrolled.keys().collect();
    Err(ApiError::bad_request(
        "unknown_technician",
        format!(
            "no enrolled device belongs to technician {} at this branch, so no device would \
             ever see the job; the branch's technicians are: {} (enroll a device first, or \
             send \"pre_assign\": true to assign new staff ahead of their device)",
            names(&unknown),
            if known.is_empty() {
                "none yet".to_owned()
            } else {
                names(&known)
            }
        ),
    ))
}

/// A job made and assigned by [`make_job`]: what the desk's record of it needs.
#[derive(Debug)]
pub struct MadeJob {
    pub warnings: Vec<Warning>,
    pub job: Job,
    pub technician: TechnicianId,
    /// The technician's assignment index document.
    pub index_id: DocumentId,
    /// The desk's classification of the fault (R4 compares it).
    pub fault_category: Option<String>,
    /// R16: the contract's completion date.
    pub contract_due: Option<CalendarDate>,
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
    fn into_job(
        self,
        job_id: DocumentId,
        branch_id: BranchId,
        zone: &Zone,
    ) -> Result<Job, ApiError> {
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
                // The day the call came in, at the branch (its `timezone`).
                let day = zone.date_of(received_at).ok();
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
            attachments: Vec::new(),
            expenses: Vec::new(),
        })
    }
}

fn to_automerge(mut doc: AutoCommit) -> Result<Automerge, ApiError> {
    Automerge::load(&doc.save()).map_err(|e| ApiError::internal("document_error", e))
}

/// Creates the job document `job_id` from `new` and assigns it (records, assignment index):
/// the one way a job is made. The desk's record of it is `desk::dispatch::create_job_with_id`'s.
pub async fn make_job(state: &Edge, new: NewJob, job_id: DocumentId) -> Result<MadeJob, ApiError> {
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
    let pre_assign = new.pre_assign;
    let prices = price_list(&new.price_list)?;
    let job = new.into_job(
        job_id,
        state.node.branch_id.clone(),
        &state.node.config.timezone,
    )?;
    if job.kind == JobKind::Installation && contract_due.is_none() {
        return Err(ApiError::bad_request(
            "contract_due_required",
            "R16: an installation job is done within the contract's time: give contract_due",
        ));
    }
    let technician = job.technicians[0].clone();
    let warnings = check_technicians(state, [&technician], pre_assign)?;
    let doc = JobDoc::create(&job).map_err(|e| ApiError::internal("document_error", e))?;
    let mut doc = doc.into_inner();
    // The server makes the approvals map, so devices never create it concurrently.
    init_approvals(&mut doc).map_err(|e| ApiError::internal("document_error", e))?;
    // And the resolutions map (issue 15), for the same reason.
    init_resolutions(&mut doc).map_err(|e| ApiError::internal("document_error", e))?;
    // And the attachments map, for the same reason (issue 15).
    fieldsync_shared::job::attachments::init_attachments(&mut doc)
        .map_err(|e| ApiError::internal("document_error", e))?;
    if !prices.is_empty() {
        write_price_list(&mut doc, &prices).map_err(|e| ApiError::internal("document_error", e))?;
    }
    let doc = to_automerge(doc)?;

    // One assignment at a time, so two jobs for a technician without an index yet do not
    // create two indexes.
    let _guard = state.assign_lock.lock().await;
    state
        .node
        .hub
        .edit(job_id, LocalEdit::Create(Box::new(doc)))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let record = JobRecord {
        job_id,
        branch_id: state.node.branch_id.clone(),
        technicians: BTreeSet::from([technician.clone()]),
        created_at: state.node.clock.now(),
        former: BTreeSet::new(),
    };
    let pending = state
        .node
        .registry_write()
        .put_job(&state.node.store, record);
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let index_id = add_to_index(state, &technician, job_id).await?;
    drop(_guard);
    Ok(MadeJob {
        warnings,
        job,
        technician,
        index_id,
        fault_category,
        contract_due,
    })
}

/// Removes a job from the technician's assignment index (if they have one).
async fn remove_from_index(
    state: &Edge,
    technician: &TechnicianId,
    job_id: DocumentId,
) -> Result<(), ApiError> {
    let Some(index_id) = state.node.registry_read().index_doc(technician) else {
        return Ok(());
    };
    state
        .node
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
    state: &Edge,
    technician: &TechnicianId,
    job_id: DocumentId,
) -> Result<DocumentId, ApiError> {
    let existing = state.node.registry_read().index_doc(technician);
    match existing {
        Some(index_id) => {
            state
                .node
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
                branch_id: state.node.branch_id.clone(),
                technician: technician.clone(),
                jobs: vec![job_id.url()],
            };
            let doc = IndexDoc::create(&index, None)
                .map_err(|e| ApiError::internal("document_error", e))?;
            let doc = to_automerge(doc.into_inner())?;
            let index_id = DocumentId::random();
            state
                .node
                .hub
                .edit(index_id, LocalEdit::Create(Box::new(doc)))
                .await
                .map_err(|e| ApiError::internal("storage_error", e))?;
            let pending =
                state
                    .node
                    .registry_write()
                    .set_index_doc(&state.node.store, technician, index_id);
            pending
                .await
                .map_err(|e| ApiError::internal("storage_error", e))?;
            Ok(index_id)
        }
    }
}

/// One technician of the branch.
#[derive(Debug, Serialize, ToSchema)]
pub struct TechnicianEntry {
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    /// Enrolled devices not revoked.
    pub devices: usize,
}

/// What `GET /api/technicians` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TechnicianList {
    pub technicians: Vec<TechnicianEntry>,
}

/// The technicians a job can be assigned to: those with an enrolled device.
#[utoipa::path(
    get,
    path = "/api/technicians",
    tag = "dispatch",
    description = "R3: the branch's technicians, from the enrolled devices (revoked ones left \
        out): whom a job can be assigned to. Roles: dispatcher, manager, analyst.",
    responses((status = 200, body = TechnicianList)),
)]
pub async fn list_technicians(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
) -> Result<Json<TechnicianList>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list technicians")?;
    let technicians = enrolled_technicians(&state)
        .into_iter()
        .map(|(technician, devices)| TechnicianEntry {
            technician,
            devices,
        })
        .collect();
    Ok(Json(TechnicianList { technicians }))
}

/// The body of `PUT /api/jobs/{id}/technicians`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Technicians {
    pub technicians: Vec<String>,
    /// Assign technicians with no enrolled device yet (new staff): warned, not refused.
    #[serde(default)]
    pub pre_assign: bool,
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
        (status = 200, description = "`{job_id, technicians, added, removed, warnings}`"),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field, invalid_job_id, unknown_technician"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn set_technicians(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "assign technicians")?;
    let body: Technicians = parse_body(&body)?;
    let done = reassign(&state, &id, body, &actor).await?;
    Ok(Json(json!({
        "job_id": done.job_id,
        "technicians": done.technicians,
        "added": done.added,
        "removed": done.removed,
        "warnings": done.warnings,
    })))
}

/// What a reassignment did.
#[derive(Debug, Clone)]
pub struct Reassigned {
    pub job_id: DocumentId,
    pub technicians: BTreeSet<TechnicianId>,
    pub added: Vec<TechnicianId>,
    pub removed: Vec<TechnicianId>,
    pub warnings: Vec<Warning>,
}

/// R3: sets job `id`'s technicians (access first, then the assignment indexes and the job
/// document) and writes the audit entry (`job_reassign`: the technicians before and after).
/// What `PUT /api/jobs/{id}/technicians` and the console's reassign form both call.
pub async fn reassign(
    state: &Edge,
    id: &str,
    body: Technicians,
    actor: &Actor,
) -> Result<Reassigned, ApiError> {
    let job_id = parse_job_id(id)?;
    let wanted: BTreeSet<TechnicianId> = body
        .technicians
        .into_iter()
        .map(|t| field("technicians", TechnicianId::new(t.trim())))
        .collect::<Result<_, _>>()?;
    let _guard = state.assign_lock.lock().await;
    let Some(mut record) = state.node.registry_read().job(&job_id).cloned() else {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    };
    let before: Vec<String> = record.technicians.iter().map(ToString::to_string).collect();
    let removed: Vec<TechnicianId> = record.technicians.difference(&wanted).cloned().collect();
    let added: Vec<TechnicianId> = wanted.difference(&record.technicians).cloned().collect();
    // Only those newly assigned are checked: one already on the job stays whatever happened
    // to their device.
    let warnings = check_technicians(state, &added, body.pre_assign)?;
    // Access first: the records decide, and live sessions are re-checked at once.
    record.technicians = wanted.clone();
    record.former.extend(removed.iter().cloned());
    record.former.retain(|t| !wanted.contains(t));
    let pending = state
        .node
        .registry_write()
        .put_job(&state.node.store, record);
    pending
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    state.node.hub.engine_input(Input::AccessChanged {
        doc: Some(job_id),
        principal: None,
    });
    for tech in &removed {
        remove_from_index(state, tech, job_id).await?;
    }
    for tech in &added {
        add_to_index(state, tech, job_id).await?;
    }
    let list: Vec<TechnicianId> = wanted.iter().cloned().collect();
    state
        .node
        .hub
        .edit(
            job_id,
            LocalEdit::job(move |job| job.set_technicians(&list)),
        )
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let after: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let entry = crate::console::audit::Entry::new(
        state.node.clock.now(),
        actor.name(),
        actor.role.as_str(),
        "job_reassign",
        format!("job:{job_id}"),
    )
    .before(before.join(" "))
    .after(after.join(" "));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(Reassigned {
        job_id,
        technicians: wanted,
        added,
        removed,
        warnings,
    })
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "dispatch",
    description = "A job as stored, with its heads and conflicts. Roles: dispatcher, manager, \
        analyst.",
    params(("id" = String, Path, description = "The job id (bs58 or automerge: URL)")),
    responses(
        (status = 200, description = "`{job, url, heads, conflicts, unresolved, resolutions, \
            stranded}`: `unresolved` lists what a merge left for someone to resolve (issue 15, \
            `POST /api/jobs/{id}/resolve`), each group with `values` (per field in \
            disagreement, every value with the change that wrote it: `by` the technician or \
            desk person it names, `at` its time) or `added` (who added each possible \
            duplicate line); `resolutions` who resolved what; `stranded` \
            lists changes devices handed over after they were unassigned (`/api/stranded`)"),
        (status = 400, body = ErrorBody, description = "invalid_job_id"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn get_job(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.node.authorize(&headers, EVERYONE, "read jobs")?;
    let job_id = parse_job_id(&id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    // The stored document is what the server has promised; read it from disk.
    let store = Arc::clone(&state.node.store);
    let chunks = tokio::task::spawn_blocking(move || store.load_doc(&job_id.to_string()))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    let doc = state
        .node
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
        "unresolved": competing(&doc),
        "resolutions": resolutions(&doc),
        "stranded": crate::edge::handoff::for_job(&state, job_id).await?,
    })))
}
