//! Parts requisitions and shipping (R17, R18) and the special-tool register (R19).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::ids::{CustomerId, TechnicianId};
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::records::{self, DeskRecord, Stored};
use crate::auth::{Actor, EVERYONE, MANAGERS, STAFF};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_job_id;
use crate::http::query;
use crate::http::wire::{Date, ErrorBody, Instant};
use crate::http::{new_id, nonempty, parse_body};

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// Writes the audit entry of a desk write here: `action` on `target` by `actor`, with the
/// record's revisions before (`None` for a new record) and after.
async fn audit(
    state: &Edge,
    actor: &Actor,
    action: &str,
    target: String,
    before: Option<u64>,
    after: u64,
    detail: String,
) -> Result<(), ApiError> {
    let mut entry = Entry::new(
        state.node.clock.now(),
        actor.name(),
        actor.role.as_str(),
        action,
        target,
    )
    .after(after.to_string())
    .detail(detail);
    if let Some(before) = before {
        entry = entry.before(before.to_string());
    }
    crate::console::audit_api(&state.node, entry).await
}

/// A known job of this branch, as its canonical id; `field` names it in the error.
pub fn known_job(state: &Edge, field: &str, id: &str) -> Result<String, ApiError> {
    let job_id = parse_job_id(id)?;
    if state.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("{field}: no job {job_id} at this branch"),
        ));
    }
    Ok(job_id.to_string())
}

/// R17: one line shipped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippedItem {
    pub part_number: String,
    pub quantity: u32,
}

/// R17: the shipment of a requisition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub address: String,
    pub recipient: String,
    pub contact: String,
    pub items: Vec<ShippedItem>,
    pub shipped_on: Date,
    pub arrives_on: Date,
}

/// R17: a parts requisition, issued against a work order (R18).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Requisition {
    pub id: String,
    /// R18: parts are issued only against a work order.
    pub job_id: String,
    pub part_number: String,
    pub part_name: String,
    pub specification: String,
    pub material: String,
    pub quantity: u32,
    pub needed_by: Date,
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    /// The customer's original order number.
    pub order_number: String,
    pub requested_by: String,
    pub requested_at: Instant,
    pub shipment: Option<Shipment>,
}

impl DeskRecord for Requisition {
    const KIND: &'static str = "requisition";

    fn id(&self) -> &str {
        &self.id
    }

    fn lookup(&self) -> Option<String> {
        Some(self.job_id.clone())
    }

    fn open(&self) -> bool {
        self.shipment.is_none()
    }
}

/// The body of `POST /api/requisitions` (R17).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequisition {
    pub job_id: String,
    pub part_number: String,
    pub part_name: String,
    pub specification: String,
    pub material: String,
    pub quantity: u32,
    pub needed_by: Date,
    #[schema(value_type = String)]
    pub customer_id: CustomerId,
    pub order_number: String,
    pub requested_by: String,
}

/// R17, R18: requisitions parts for a job.
#[utoipa::path(
    post,
    path = "/api/requisitions",
    tag = "parts",
    description = "R17, R18: requisition parts against a job. Roles: dispatcher, manager.",
    request_body = NewRequisition,
    responses(
        (status = 201, body = Requisition),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_job"),
    ),
)]
pub async fn create_requisition(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Requisition>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "requisition parts")?;
    let new: NewRequisition = parse_body(&body)?;
    let requisition = requisition_parts(&state, new, &actor).await?;
    Ok((StatusCode::CREATED, Json(requisition)))
}

/// R17, R18: checks and stores a requisition and writes the audit entry
/// (`requisition_create`). What `POST /api/requisitions` and the console's form both call.
pub async fn requisition_parts(
    state: &Edge,
    new: NewRequisition,
    actor: &Actor,
) -> Result<Requisition, ApiError> {
    for (name, value) in [
        ("part_number", &new.part_number),
        ("part_name", &new.part_name),
        ("specification", &new.specification),
        ("material", &new.material),
        ("order_number", &new.order_number),
        ("requested_by", &new.requested_by),
    ] {
        nonempty(name, value)?;
    }
    if new.quantity == 0 {
        return Err(ApiError::bad_request(
            "invalid_field",
            "quantity: must be at least 1",
        ));
    }
    let job_id = known_job(state, "job_id", &new.job_id)?;
    let requisition = Requisition {
        id: new_id("rq")?,
        job_id,
        part_number: new.part_number,
        part_name: new.part_name,
        specification: new.specification,
        material: new.material,
        quantity: new.quantity,
        needed_by: new.needed_by,
        customer_id: new.customer_id,
        order_number: new.order_number,
        requested_by: new.requested_by,
        requested_at: Instant(state.node.clock.now()),
        shipment: None,
    };
    let revision = records::save(state, 0, &requisition).await?;
    audit(
        state,
        actor,
        "requisition_create",
        format!("requisition:{}", requisition.id),
        None,
        revision,
        format!(
            "{} × {} · job:{}",
            requisition.part_number, requisition.quantity, requisition.job_id
        ),
    )
    .await?;
    Ok(requisition)
}

/// Query of `GET /api/requisitions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequisitionQuery {
    /// Only those not shipped yet.
    #[serde(default)]
    pub open: Option<bool>,
    /// Only those of this job.
    #[serde(default)]
    pub job_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequisitionList {
    pub requisitions: Vec<Requisition>,
}

/// R17: the branch's requisitions.
#[utoipa::path(
    get,
    path = "/api/requisitions",
    tag = "parts",
    description = "R17: list requisitions. Roles: dispatcher, manager, analyst.",
    params(RequisitionQuery),
    responses(
        (status = 200, body = RequisitionList),
        (status = 400, body = ErrorBody, description = "invalid_query, invalid_job_id"),
    ),
)]
pub async fn list_requisitions(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<RequisitionQuery>, QueryRejection>,
) -> Result<Json<RequisitionList>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list requisitions")?;
    let q = query(q)?;
    let lookup = q
        .job_id
        .as_deref()
        .map(|id| parse_job_id(id).map(|j| j.to_string()))
        .transpose()?;
    let filter = RecordFilter {
        lookup,
        open_only: q.open.unwrap_or(false),
    };
    let requisitions = records::list::<Requisition>(&state, filter)
        .await?
        .into_iter()
        .map(|s| s.value)
        .collect();
    Ok(Json(RequisitionList { requisitions }))
}

/// R17: records the shipment of a requisition.
#[utoipa::path(
    post,
    path = "/api/requisitions/{id}/shipment",
    tag = "parts",
    description = "R17: record how the parts were shipped. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The requisition id")),
    request_body = Shipment,
    responses(
        (status = 200, body = Requisition),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_requisition"),
        (status = 409, body = ErrorBody, description = "already_shipped, conflict"),
    ),
)]
pub async fn record_shipment(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Requisition>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "record shipments")?;
    let shipment: Shipment = parse_body(&body)?;
    Ok(Json(ship_requisition(&state, &id, shipment, &actor).await?))
}

/// R17: checks and records the shipment of requisition `id` and writes the audit entry
/// (`requisition_ship`). What `POST /api/requisitions/{id}/shipment` and the console's
/// form both call.
pub async fn ship_requisition(
    state: &Edge,
    id: &str,
    shipment: Shipment,
    actor: &Actor,
) -> Result<Requisition, ApiError> {
    nonempty("address", &shipment.address)?;
    nonempty("recipient", &shipment.recipient)?;
    nonempty("contact", &shipment.contact)?;
    if shipment.items.is_empty()
        || shipment
            .items
            .iter()
            .any(|i| i.quantity == 0 || i.part_number.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "items: at least one, each with a part number and a quantity of at least 1",
        ));
    }
    if shipment.arrives_on < shipment.shipped_on {
        return Err(ApiError::bad_request(
            "invalid_field",
            "arrives_on: cannot be before shipped_on",
        ));
    }
    let Stored {
        revision,
        mut value,
    } = records::require::<Requisition>(state, id, "unknown_requisition", "requisition").await?;
    if value.shipment.is_some() {
        return Err(conflict(
            "already_shipped",
            format!("requisition {id} is already shipped"),
        ));
    }
    let detail = format!(
        "{} → {} · {}",
        shipment.shipped_on.0, shipment.arrives_on.0, shipment.recipient
    );
    value.shipment = Some(shipment);
    let after = records::save(state, revision, &value).await?;
    audit(
        state,
        actor,
        "requisition_ship",
        format!("requisition:{id}"),
        Some(revision),
        after,
        detail,
    )
    .await?;
    Ok(value)
}

/// R19: one loan of a tool.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Loan {
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    pub job_id: Option<String>,
    pub lent_at: Instant,
    pub due_back: Instant,
    pub returned_at: Option<Instant>,
    pub note: String,
}

/// R19: a lost tool is paid for by whoever had it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Loss {
    pub reported_at: Instant,
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    /// What they pay, in the currency's minor unit.
    pub charge: i64,
    pub currency: String,
    pub note: String,
}

/// R19: a special tool in the register.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    pub id: String,
    pub name: String,
    /// R19: bought in the field, and so taken into the store.
    pub bought_in_field: bool,
    pub registered_at: Instant,
    /// Every loan, the current one last.
    pub loans: Vec<Loan>,
    pub loss: Option<Loss>,
}

impl Tool {
    /// The loan not returned yet, if any.
    pub fn current_loan(&self) -> Option<&Loan> {
        self.loans.last().filter(|l| l.returned_at.is_none())
    }
}

impl DeskRecord for Tool {
    const KIND: &'static str = "tool";

    fn id(&self) -> &str {
        &self.id
    }

    /// Open while lent out (and not lost).
    fn open(&self) -> bool {
        self.loss.is_none() && self.current_loan().is_some()
    }
}

/// A tool and where it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolView {
    #[serde(flatten)]
    pub tool: Tool,
    /// available, on_loan or lost.
    pub status: String,
    /// On loan past its due-back time.
    pub overdue: bool,
}

impl ToolView {
    /// `tool` as it stands at `at` (overdue judged then).
    pub fn of(tool: Tool, at: Instant) -> Self {
        let (status, overdue) = match (&tool.loss, tool.current_loan()) {
            (Some(_), _) => ("lost", false),
            (None, Some(loan)) => ("on_loan", loan.due_back < at),
            (None, None) => ("available", false),
        };
        Self {
            status: status.to_owned(),
            overdue,
            tool,
        }
    }
}

/// The body of `POST /api/tools`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTool {
    /// The tool's tag, e.g. `torque-07`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub bought_in_field: bool,
}

/// R19: puts a special tool in the register (also one bought in the field).
#[utoipa::path(
    post,
    path = "/api/tools",
    tag = "tools",
    description = "R19: register a special tool. Roles: dispatcher, manager.",
    request_body = NewTool,
    responses(
        (status = 201, body = ToolView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 409, body = ErrorBody, description = "already_exists"),
    ),
)]
pub async fn register_tool(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ToolView>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "register tools")?;
    let new: NewTool = parse_body(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(add_tool(&state, new, &actor).await?),
    ))
}

/// R19: checks and registers a tool and writes the audit entry (`tool_register`). What
/// `POST /api/tools` and the console's form both call.
pub async fn add_tool(state: &Edge, new: NewTool, actor: &Actor) -> Result<ToolView, ApiError> {
    let ok = !new.id.is_empty()
        && new.id.len() <= 64
        && new
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!(
                "id: {:?} is not a tool tag ([A-Za-z0-9._-], 1 to 64)",
                new.id
            ),
        ));
    }
    nonempty("name", &new.name)?;
    let at = Instant(state.node.clock.now());
    let tool = Tool {
        id: new.id,
        name: new.name,
        bought_in_field: new.bought_in_field,
        registered_at: at,
        loans: Vec::new(),
        loss: None,
    };
    let revision = records::save(state, 0, &tool).await?;
    audit(
        state,
        actor,
        "tool_register",
        format!("tool:{}", tool.id),
        None,
        revision,
        tool.name.clone(),
    )
    .await?;
    Ok(ToolView::of(tool, at))
}

/// Query of `GET /api/tools`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolQuery {
    /// Only tools on loan past their due-back time.
    #[serde(default)]
    pub overdue: Option<bool>,
    /// The instant "overdue" is judged at (RFC 3339); now by default.
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<Instant>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    pub tools: Vec<ToolView>,
}

/// R19: the register.
#[utoipa::path(
    get,
    path = "/api/tools",
    tag = "tools",
    description = "R19: the tool register; `overdue=true` lists tools not returned in time. \
        Roles: dispatcher, manager, analyst.",
    params(ToolQuery),
    responses(
        (status = 200, body = ToolList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_tools(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ToolQuery>, QueryRejection>,
) -> Result<Json<ToolList>, ApiError> {
    state.node.authorize(&headers, EVERYONE, "list tools")?;
    let q = query(q)?;
    let at = q.at.unwrap_or(Instant(state.node.clock.now()));
    let tools = tools_at(&state, at, q.overdue.unwrap_or(false)).await?;
    Ok(Json(ToolList { tools }))
}

/// R19: the register as it stands at `at` (only the tools overdue then with
/// `overdue_only`). What `GET /api/tools` and the console's tools page both call.
pub async fn tools_at(
    state: &Edge,
    at: Instant,
    overdue_only: bool,
) -> Result<Vec<ToolView>, ApiError> {
    let filter = RecordFilter {
        lookup: None,
        open_only: overdue_only,
    };
    Ok(records::list::<Tool>(state, filter)
        .await?
        .into_iter()
        .map(|s| ToolView::of(s.value, at))
        .filter(|t| !overdue_only || t.overdue)
        .collect())
}

async fn require_tool(state: &Edge, id: &str) -> Result<Stored<Tool>, ApiError> {
    records::require(state, id, "unknown_tool", "tool").await
}

/// The body of `POST /api/tools/{id}/loans`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLoan {
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    pub due_back: Instant,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub note: String,
}

/// R19: lends a tool against the register.
#[utoipa::path(
    post,
    path = "/api/tools/{id}/loans",
    tag = "tools",
    description = "R19: lend a tool to a technician. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The tool's tag")),
    request_body = NewLoan,
    responses(
        (status = 200, body = ToolView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_tool, unknown_job"),
        (status = 409, body = ErrorBody, description = "tool_on_loan, tool_lost, conflict"),
    ),
)]
pub async fn lend_tool(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ToolView>, ApiError> {
    let actor = state.node.authorize_actor(&headers, STAFF, "lend tools")?;
    let new: NewLoan = parse_body(&body)?;
    Ok(Json(lend(&state, &id, new, &actor).await?))
}

/// R19: checks and records the loan of tool `id` and writes the audit entry (`tool_lend`).
/// What `POST /api/tools/{id}/loans` and the console's form both call.
pub async fn lend(
    state: &Edge,
    id: &str,
    new: NewLoan,
    actor: &Actor,
) -> Result<ToolView, ApiError> {
    let job_id = new
        .job_id
        .as_deref()
        .map(|j| known_job(state, "job_id", j))
        .transpose()?;
    let Stored {
        revision,
        mut value,
    } = require_tool(state, id).await?;
    if value.loss.is_some() {
        return Err(conflict("tool_lost", format!("tool {id} is lost")));
    }
    if let Some(loan) = value.current_loan() {
        return Err(conflict(
            "tool_on_loan",
            format!(
                "tool {id} is on loan to {} until {:?}",
                loan.technician, loan.due_back
            ),
        ));
    }
    let at = Instant(state.node.clock.now());
    if new.due_back <= at {
        return Err(ApiError::bad_request(
            "invalid_field",
            "due_back: must be in the future",
        ));
    }
    let detail = format!("{} · {}", new.technician, new.due_back.0);
    value.loans.push(Loan {
        technician: new.technician,
        job_id,
        lent_at: at,
        due_back: new.due_back,
        returned_at: None,
        note: new.note,
    });
    let after = records::save(state, revision, &value).await?;
    audit(
        state,
        actor,
        "tool_lend",
        format!("tool:{id}"),
        Some(revision),
        after,
        detail,
    )
    .await?;
    Ok(ToolView::of(value, at))
}

/// The body of `POST /api/tools/{id}/return`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReturn {
    #[serde(default)]
    pub note: String,
}

/// R19: a tool comes back after use.
#[utoipa::path(
    post,
    path = "/api/tools/{id}/return",
    tag = "tools",
    description = "R19: record a tool's return. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The tool's tag")),
    request_body = NewReturn,
    responses(
        (status = 200, body = ToolView),
        (status = 404, body = ErrorBody, description = "unknown_tool"),
        (status = 409, body = ErrorBody, description = "not_on_loan, conflict"),
    ),
)]
pub async fn return_tool(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ToolView>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "take tools back")?;
    let new: NewReturn = parse_body(&body)?;
    Ok(Json(take_back(&state, &id, new, &actor).await?))
}

/// R19: records the return of tool `id` and writes the audit entry (`tool_return`). What
/// `POST /api/tools/{id}/return` and the console's form both call.
pub async fn take_back(
    state: &Edge,
    id: &str,
    new: NewReturn,
    actor: &Actor,
) -> Result<ToolView, ApiError> {
    let Stored {
        revision,
        mut value,
    } = require_tool(state, id).await?;
    let at = Instant(state.node.clock.now());
    match value.loans.last_mut() {
        Some(loan) if loan.returned_at.is_none() && value.loss.is_none() => {
            loan.returned_at = Some(at);
            if !new.note.is_empty() {
                loan.note = format!("{} / returned: {}", loan.note, new.note);
            }
        }
        _ => return Err(conflict("not_on_loan", format!("tool {id} is not on loan"))),
    }
    let after = records::save(state, revision, &value).await?;
    audit(
        state,
        actor,
        "tool_return",
        format!("tool:{id}"),
        Some(revision),
        after,
        new.note,
    )
    .await?;
    Ok(ToolView::of(value, at))
}

/// The body of `POST /api/tools/{id}/lost`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLoss {
    /// What the technician pays, in minor units (R19).
    pub charge: i64,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub note: String,
}

/// R19: a tool on loan is lost; the technician who had it pays for it. A manager decides.
#[utoipa::path(
    post,
    path = "/api/tools/{id}/lost",
    tag = "tools",
    description = "R19: record a lost tool and what is charged. Roles: manager.",
    params(("id" = String, Path, description = "The tool's tag")),
    request_body = NewLoss,
    responses(
        (status = 200, body = ToolView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_tool"),
        (status = 409, body = ErrorBody, description = "not_on_loan, conflict"),
    ),
)]
pub async fn report_tool_lost(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ToolView>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, MANAGERS, "charge for lost tools (R19)")?;
    let new: NewLoss = parse_body(&body)?;
    Ok(Json(record_loss(&state, &id, new, &actor).await?))
}

/// R19: records tool `id` as lost by whoever has it, with what they pay (a manager's
/// decision), and writes the audit entry (`tool_lost`). What `POST /api/tools/{id}/lost` and
/// the console's form both call.
pub async fn record_loss(
    state: &Edge,
    id: &str,
    new: NewLoss,
    actor: &Actor,
) -> Result<ToolView, ApiError> {
    if !MANAGERS.contains(&actor.role) {
        return Err(ApiError::forbidden(format!(
            "charge for lost tools (R19) needs the role {}; this is {}",
            crate::auth::role_list(MANAGERS),
            actor.role.as_str()
        )));
    }
    if new.charge <= 0 {
        return Err(ApiError::bad_request(
            "invalid_field",
            "charge: a lost tool is paid for (R19): give a positive amount in minor units",
        ));
    }
    let Stored {
        revision,
        mut value,
    } = require_tool(state, id).await?;
    let Some(loan) = value.current_loan().filter(|_| value.loss.is_none()) else {
        return Err(conflict(
            "not_on_loan",
            format!("tool {id} is not on loan: only a lent tool can be lost by someone"),
        ));
    };
    let at = Instant(state.node.clock.now());
    value.loss = Some(Loss {
        reported_at: at,
        technician: loan.technician.clone(),
        charge: new.charge,
        currency: new.currency.unwrap_or_else(|| "CNY".into()),
        note: new.note,
    });
    let detail = value
        .loss
        .as_ref()
        .map(|l| format!("{} · {} {}", l.technician, l.charge, l.currency))
        .unwrap_or_default();
    let after = records::save(state, revision, &value).await?;
    audit(
        state,
        actor,
        "tool_lost",
        format!("tool:{id}"),
        Some(revision),
        after,
        detail,
    )
    .await?;
    Ok(ToolView::of(value, at))
}
