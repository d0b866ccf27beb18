//! Customer files (R26, R6): the customer's file read from the products and the jobs on
//! them, and the maintenance worker that makes periodic visits' jobs.
//!
//! The history is read from the jobs: every job on the customer's products with its report
//! (date, fault cause, solution, parts: R6's date and content of each repair).
//!
//! The maintenance worker ([`run_maintenance`]) looks at the products with a plan on the
//! server's clock (`Node::clock`): when the plan's date has come in the branch's calendar
//! (`fieldsync_shared::desk::maintenance::due_visit`), it makes the visit's job and moves the
//! plan on. The job's id derives from the product and the visit's date, and the pass runs
//! under the edge's `maintenance_lock` and makes the job only if the assignment records do
//! not hold that id yet, before the plan moves on (a compare-and-set); so a restart between
//! the two, or two passes at once, never make the same visit twice.
//!
//! Apart from `products` (the records and plans, which intake and dispatch write) so that
//! this, which creates jobs through `dispatch`, is above them, not in a circle with them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use fieldsync_shared::desk::maintenance::due_visit;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{Job, JobKind, ReportOutcome};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::RecordFilter;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::dispatch::{JobDesk, create_job_with_id};
use super::records;
use crate::auth::EVERYONE;
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::edge::jobs::{NewCustomer, NewJob, NewProduct, NewRequest};
use crate::http::error::ApiError;
use crate::http::wire::{CustomerIn, Date, ErrorBody, Instant};

use super::products::{MaintenancePlan, PlannedVisit, ProductFile, product_id};

/// How often the maintenance worker looks (a monotonic timer; what is due is decided on
/// the server's clock).
pub const MAINTENANCE_TICK: Duration = Duration::from_secs(2);

/// R26: the job id of the plan's visit of `product` due `due`: the same visit, the same id.
fn visit_job_id(branch: &str, product: &str, due: Date) -> DocumentId {
    let digest = Sha256::digest(format!(
        "fieldsync R26 visit\n{branch}\n{product}\n{}",
        due.0
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // A UUID v4 shape, as the other job ids have.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    DocumentId::from_bytes(bytes)
}

// ---- the customer's file (R26, R6) ----

/// R6: one job on a product, with its report: the warranty card's line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RepairEntry {
    pub job_id: String,
    #[schema(value_type = String)]
    pub kind: JobKind,
    pub received_at: Instant,
    /// new, on_site, completed, signed, refused or cancelled.
    pub status: String,
    pub technicians: Vec<String>,
    pub fault_description: String,
    pub fault_cause: Option<String>,
    pub solution: Option<String>,
    /// Names of the replaced parts (R7).
    pub parts: Vec<String>,
    pub report_id: Option<String>,
    /// R6: the date of the repair: the signed report's.
    pub signed_at: Option<Instant>,
}

/// A product with its history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductHistory {
    pub product: ProductFile,
    /// Oldest first.
    pub jobs: Vec<RepairEntry>,
}

/// R26: what `GET /api/customers/{id}` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerFile {
    pub customer: CustomerIn,
    pub products: Vec<ProductHistory>,
}

fn entry_of(job: &Job, cancelled: bool) -> RepairEntry {
    let (status, report_id, signed_at) = match &job.report {
        _ if cancelled => ("cancelled", None, None),
        Some(ReportOutcome::Signed { at, report_id, .. }) => {
            ("signed", Some(report_id.clone()), Some(Instant(*at)))
        }
        Some(ReportOutcome::Refused { .. }) => ("refused", None, None),
        None if job.completion.is_some() => ("completed", None, None),
        None if job.visit.arrival.is_some() => ("on_site", None, None),
        None => ("new", None, None),
    };
    RepairEntry {
        job_id: job.job_id.to_string(),
        kind: job.kind,
        received_at: Instant(job.request.received_at),
        status: status.to_owned(),
        technicians: job.technicians.iter().map(ToString::to_string).collect(),
        fault_description: job.request.fault_description.clone(),
        fault_cause: job.diagnosis.fault_cause.clone(),
        solution: job.diagnosis.solution.clone(),
        parts: job.parts.iter().map(|p| p.name.clone()).collect(),
        report_id,
        signed_at,
    }
}

/// The customer's file, or `None` when the branch knows no product or job of theirs.
pub async fn customer_file(state: &Edge, id: &str) -> Result<Option<CustomerFile>, ApiError> {
    let filter = RecordFilter {
        lookup: Some(id.to_owned()),
        open_only: false,
    };
    let mut products: BTreeMap<String, ProductHistory> =
        records::list::<ProductFile>(state, filter)
            .await?
            .into_iter()
            .map(|s| {
                (
                    s.value.id.clone(),
                    ProductHistory {
                        product: s.value,
                        jobs: Vec::new(),
                    },
                )
            })
            .collect();
    let desk: Vec<JobDesk> = records::list::<JobDesk>(state, RecordFilter::default())
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|d| d.customer_id.to_string() == id)
        .collect();
    let mut customer = products.values().next().map(|p| p.product.customer.clone());
    for d in desk {
        let Ok(job_id) = d.job_id.parse::<DocumentId>() else {
            continue;
        };
        let doc = match state.node.load_document(job_id).await {
            Ok(Some(doc)) => doc,
            Ok(None) => continue,
            Err(e) => return Err(ApiError::internal("storage_error", e)),
        };
        let Ok(job) = read_job(&doc) else {
            tracing::warn!(job = %job_id, "customer file: cannot read job");
            continue;
        };
        let cancelled = d.cancellation.is_some();
        let key = product_id(&job.product.serial);
        let now = Instant(job.request.received_at);
        let history = products
            .entry(key.clone())
            .or_insert_with(|| ProductHistory {
                // A product only jobs name (made before product files existed).
                product: ProductFile {
                    id: key,
                    serial: job.product.serial.clone(),
                    model: job.product.model.clone(),
                    product_type: job.product.product_type.clone(),
                    customer: CustomerIn {
                        id: job.customer.id.clone(),
                        name: job.customer.name.clone(),
                        contact: job.customer.contact.clone(),
                        site_address: job.customer.site_address.clone(),
                    },
                    purchase_date: job.product.purchase_date.map(Date),
                    warranty_end: job.product.warranty_end.map(Date),
                    created_at: now,
                    updated_at: now,
                    plan: None,
                    visits: Vec::new(),
                },
                jobs: Vec::new(),
            });
        if customer.is_none() {
            customer = Some(history.product.customer.clone());
        }
        history.jobs.push(entry_of(&job, cancelled));
    }
    let Some(customer) = customer else {
        return Ok(None);
    };
    let mut products: Vec<ProductHistory> = products.into_values().collect();
    for p in &mut products {
        p.jobs
            .sort_by(|a, b| (a.received_at, &a.job_id).cmp(&(b.received_at, &b.job_id)));
    }
    products.sort_by(|a, b| a.product.serial.cmp(&b.product.serial));
    Ok(Some(CustomerFile { customer, products }))
}

/// `GET /api/customers/{id}`: the customer's file (R26) with each product's repair history
/// (R6) and maintenance plan.
#[utoipa::path(
    get,
    path = "/api/customers/{id}",
    tag = "customers",
    description = "R26, R6: a customer's file: products (serial, model, purchase date, \
        warranty end), every job and report on each, and the maintenance plans. Roles: \
        dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The customer's file number")),
    responses(
        (status = 200, body = CustomerFile),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_customer"),
    ),
)]
pub async fn get_customer(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CustomerFile>, ApiError> {
    state
        .node
        .authorize_actor(&headers, EVERYONE, "read customer files")?;
    customer_file(&state, &id).await?.map(Json).ok_or_else(|| {
        ApiError::not_found(
            "unknown_customer",
            format!("no customer {id:?} at this branch"),
        )
    })
}

/// The maintenance job of `file`'s visit due `due`.
fn visit_job(state: &Edge, file: &ProductFile, plan: &MaintenancePlan, now: Timestamp) -> NewJob {
    let zone = &state.node.config.timezone;
    NewJob {
        kind: JobKind::Maintenance.as_str().to_owned(),
        request: NewRequest {
            channel: "visit".to_owned(),
            received_at: zone.rfc3339(now),
            fault_description: format!(
                "R26 periodic visit due {} (every {} months)",
                plan.next_due.0, plan.interval_months
            ),
            requested_arrival: None,
            fault_category: None,
        },
        customer: NewCustomer {
            id: file.customer.id.to_string(),
            name: file.customer.name.clone(),
            contact: file.customer.contact.clone(),
            site_address: file.customer.site_address.clone(),
        },
        product: NewProduct {
            model: file.model.clone(),
            serial: file.serial.clone(),
            product_type: file.product_type.clone(),
            purchase_date: file.purchase_date.map(|d| d.0.to_string()),
            warranty_end: file.warranty_end.map(|d| d.0.to_string()),
        },
        technician: plan.technician.to_string(),
        billing: None,
        contract_due: None,
        // The plan's technician may be new staff whose device comes later.
        pre_assign: true,
        price_list: Vec::new(),
    }
}

/// R26: one look at the plans at `now`: makes each visit due and moves its plan on.
/// Returns the jobs made.
pub async fn maintenance_pass(state: &Edge, now: Timestamp) -> Result<Vec<String>, ApiError> {
    let _one_at_a_time = state.maintenance_lock.lock().await;
    let today = state
        .node
        .config
        .timezone
        .date_of(now)
        .map_err(|e| ApiError::internal("clock_error", e))?;
    let filter = RecordFilter {
        lookup: None,
        open_only: true,
    };
    let branch = state.node.branch_id.to_string();
    let mut made = Vec::new();
    for stored in records::list::<ProductFile>(state, filter).await? {
        let file = stored.value;
        let Some(plan) = file.plan.clone() else {
            continue;
        };
        let Some((due, next)) = due_visit(plan.next_due.0, plan.interval_months, today) else {
            continue;
        };
        let due = Date(due);
        let job_id = visit_job_id(&branch, &file.id, due);
        // Made already (a pass stopped before moving the plan on): not again.
        let exists = state.node.registry_read().job(&job_id).is_some();
        if !exists {
            create_job_with_id(state, visit_job(state, &file, &plan, now), job_id, None).await?;
            made.push(job_id.to_string());
            let entry = Entry::new(
                now,
                "server",
                "server",
                "maintenance_job_create",
                format!("job:{job_id}"),
            )
            .after(job_id.to_string())
            .detail(format!("R26 visit of {} due {}", file.serial, due.0));
            crate::console::audit_api(&state.node, entry).await?;
        }
        let made_at = Instant(now);
        records::update::<ProductFile>(state, &file.id, |f| {
            // Only the plan this pass read: one changed meanwhile is left as it is now.
            match &mut f.plan {
                Some(p) if p.next_due == plan.next_due => {
                    p.next_due = Date(next);
                    if !f.visits.iter().any(|v| v.due == due) {
                        f.visits.push(PlannedVisit {
                            due,
                            job_id: job_id.to_string(),
                            made_at,
                        });
                    }
                    true
                }
                _ => false,
            }
        })
        .await?;
    }
    Ok(made)
}

/// The maintenance worker: a pass every [`MAINTENANCE_TICK`] on the server's clock, until
/// aborted. A failed pass is logged and tried again at the next tick.
pub async fn run_maintenance(state: Arc<Edge>) {
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.node.clock.now();
        if let Err(e) = maintenance_pass(&state, now).await {
            tracing::warn!(code = e.code, error = %e.message, "maintenance pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r26_one_product_id_per_serial_and_one_job_id_per_visit() {
        assert_eq!(product_id("SN-1"), product_id(" sn-1 "));
        assert_ne!(product_id("SN-1"), product_id("SN-2"));
        let due = Date("2026-12-01".parse().expect("date"));
        let later = Date("2027-06-01".parse().expect("date"));
        let a = visit_job_id("north-01", "prod-1", due);
        assert_eq!(a, visit_job_id("north-01", "prod-1", due));
        assert_ne!(a, visit_job_id("north-01", "prod-1", later));
        assert_ne!(a, visit_job_id("north-01", "prod-2", due));
        assert_ne!(a, visit_job_id("south-02", "prod-1", due));
    }
}
