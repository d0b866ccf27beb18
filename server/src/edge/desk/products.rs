//! Products in the customers' files (R26, R6): the products the desk knows and their
//! maintenance plans. A product is one desk record per serial (the id derives from the serial
//! as R4 compares it), found by the customer's id; intake and job creation write it
//! (`record_product`: model, type, purchase date and warranty end as last given). The file
//! read from them and the jobs, and the worker that makes the plans' visits, are
//! `desk::customers`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::desk::maintenance::check_interval;
use fieldsync_shared::ids::TechnicianId;
use fieldsync_shared::job::Job;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::records::{self, DeskRecord};
use crate::auth::{Actor, STAFF};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_body;
use crate::http::wire::{CustomerIn, Date, ErrorBody, Instant, ProductIn};

/// R26: a product in the customer's file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductFile {
    /// `prod-` and 16 hex digits of the SHA-256 of the serial as compared (trimmed, lower case).
    pub id: String,
    pub serial: String,
    pub model: String,
    pub product_type: String,
    /// The customer it belongs to (the latest intake or job naming the serial).
    pub customer: CustomerIn,
    pub purchase_date: Option<Date>,
    pub warranty_end: Option<Date>,
    pub created_at: Instant,
    pub updated_at: Instant,
    /// R26: periodic visits.
    pub plan: Option<MaintenancePlan>,
    /// R26: the visits the plan made, oldest first.
    #[serde(default)]
    pub visits: Vec<PlannedVisit>,
}

/// R26: a product's maintenance plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaintenancePlan {
    /// 1 to 120.
    pub interval_months: u32,
    /// The next visit's date, in the branch's calendar.
    pub next_due: Date,
    /// Who the visits' jobs are assigned to.
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    pub set_by: String,
    pub set_at: Instant,
}

/// R26: a visit the plan made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlannedVisit {
    pub due: Date,
    pub job_id: String,
    pub made_at: Instant,
}

impl DeskRecord for ProductFile {
    const KIND: &'static str = "product";

    fn id(&self) -> &str {
        &self.id
    }

    fn lookup(&self) -> Option<String> {
        Some(self.customer.id.to_string())
    }

    /// With a plan: the maintenance worker lists the open ones.
    fn open(&self) -> bool {
        self.plan.is_some()
    }
}

/// The record id of the product with `serial` (any case, any surrounding spaces).
pub fn product_id(serial: &str) -> String {
    let digest = Sha256::digest(serial.trim().to_lowercase().as_bytes());
    format!("prod-{}", hex::encode(&digest[..8]))
}

/// Writes what intake or a new job says of a product into its file (created on first
/// sight). Blank fields do not erase what was known.
pub async fn record_product(
    state: &Edge,
    customer: &CustomerIn,
    product: &ProductIn,
) -> Result<(), ApiError> {
    let id = product_id(&product.serial);
    let now = Instant(state.node.clock.now());
    let merge = |file: &mut ProductFile| {
        file.customer = customer.clone();
        if !product.model.trim().is_empty() {
            file.model = product.model.trim().to_owned();
        }
        if !product.product_type.trim().is_empty() {
            file.product_type = product.product_type.trim().to_owned();
        }
        file.purchase_date = product.purchase_date.or(file.purchase_date);
        file.warranty_end = product.warranty_end.or(file.warranty_end);
        file.updated_at = now;
    };
    for _attempt in 0..5 {
        let (revision, mut file) = match records::load::<ProductFile>(state, &id).await? {
            Some(found) => (found.revision, found.value),
            None => (
                0,
                ProductFile {
                    id: id.clone(),
                    serial: product.serial.trim().to_owned(),
                    model: String::new(),
                    product_type: String::new(),
                    customer: customer.clone(),
                    purchase_date: None,
                    warranty_end: None,
                    created_at: now,
                    updated_at: now,
                    plan: None,
                    visits: Vec::new(),
                },
            ),
        };
        merge(&mut file);
        match records::save(state, revision, &file).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("product {id} kept changing; try again"),
    ))
}

/// What a job says of its product, for [`record_product`].
pub async fn record_job_product(state: &Edge, job: &Job) -> Result<(), ApiError> {
    let customer = CustomerIn {
        id: job.customer.id.clone(),
        name: job.customer.name.clone(),
        contact: job.customer.contact.clone(),
        site_address: job.customer.site_address.clone(),
    };
    let product = ProductIn {
        model: job.product.model.clone(),
        serial: job.product.serial.clone(),
        product_type: job.product.product_type.clone(),
        purchase_date: job.product.purchase_date.map(Date),
        warranty_end: job.product.warranty_end.map(Date),
    };
    record_product(state, &customer, &product).await
}

// ---- maintenance plans (R26) ----

/// The body of `PUT /api/products/{id}/plan`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    /// 1 to 120.
    pub interval_months: u32,
    /// The first visit's date (YYYY-MM-DD, the branch's calendar).
    pub next_due: Date,
    /// Who the visits' jobs go to.
    pub technician: String,
}

/// R26: sets (or replaces) a product's plan and writes the audit entry
/// (`maintenance_plan_set`).
pub async fn set_plan(
    state: &Edge,
    id: &str,
    new: NewPlan,
    actor: &Actor,
) -> Result<ProductFile, ApiError> {
    check_interval(new.interval_months).map_err(|e| ApiError::bad_request("invalid_field", e))?;
    let technician = TechnicianId::new(new.technician.trim().to_owned())
        .map_err(|e| ApiError::bad_request("invalid_field", format!("technician: {e}")))?;
    records::require::<ProductFile>(state, id, "unknown_product", "product").await?;
    let now = Instant(state.node.clock.now());
    let plan = MaintenancePlan {
        interval_months: new.interval_months,
        next_due: new.next_due,
        technician,
        set_by: actor.name(),
        set_at: now,
    };
    let detail = format!(
        "every {} months from {} to {}",
        plan.interval_months, plan.next_due.0, plan.technician
    );
    let stored = records::update::<ProductFile>(state, id, |file| {
        file.plan = Some(plan.clone());
        file.updated_at = now;
        true
    })
    .await?
    .ok_or_else(|| ApiError::not_found("unknown_product", format!("no product {id:?}")))?;
    let entry = Entry::new(
        now.0,
        actor.name(),
        actor.role.as_str(),
        "maintenance_plan_set",
        format!("product:{id}"),
    )
    .after(id.to_owned())
    .detail(detail);
    crate::console::audit_api(&state.node, entry).await?;
    Ok(stored)
}

/// R26: ends a product's plan (`maintenance_plan_stop`); 409 `no_plan` without one.
pub async fn stop_plan(state: &Edge, id: &str, actor: &Actor) -> Result<ProductFile, ApiError> {
    let found = records::require::<ProductFile>(state, id, "unknown_product", "product").await?;
    if found.value.plan.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_plan",
            format!("product {} has no maintenance plan", found.value.serial),
        ));
    }
    let now = Instant(state.node.clock.now());
    let stored = records::update::<ProductFile>(state, id, |file| {
        let had = file.plan.take().is_some();
        file.updated_at = now;
        had
    })
    .await?
    .ok_or_else(|| ApiError::not_found("unknown_product", format!("no product {id:?}")))?;
    let entry = Entry::new(
        now.0,
        actor.name(),
        actor.role.as_str(),
        "maintenance_plan_stop",
        format!("product:{id}"),
    )
    .before(id.to_owned());
    crate::console::audit_api(&state.node, entry).await?;
    Ok(stored)
}

/// `PUT /api/products/{id}/plan`: sets the product's maintenance plan (R26).
#[utoipa::path(
    put,
    path = "/api/products/{id}/plan",
    tag = "customers",
    description = "R26: set a product's maintenance plan; the server makes a maintenance job \
        on each visit's date. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The product id (`prod-…`)")),
    request_body = NewPlan,
    responses(
        (status = 200, body = ProductFile),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_product"),
    ),
)]
pub async fn put_plan(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ProductFile>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "plan periodic visits")?;
    let new: NewPlan = parse_body(&body)?;
    Ok(Json(set_plan(&state, &id, new, &actor).await?))
}

/// `DELETE /api/products/{id}/plan`: ends the product's maintenance plan (R26).
#[utoipa::path(
    delete,
    path = "/api/products/{id}/plan",
    tag = "customers",
    description = "R26: end a product's maintenance plan. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The product id (`prod-…`)")),
    responses(
        (status = 200, body = ProductFile),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_product"),
        (status = 409, body = ErrorBody, description = "no_plan"),
    ),
)]
pub async fn delete_plan(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ProductFile>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "plan periodic visits")?;
    Ok(Json(stop_plan(&state, &id, &actor).await?))
}
