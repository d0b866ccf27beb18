//! Intake (R1, R2): service requests with their clocks. A request's reply is due 24 hours
//! after receipt and the technician is due at the time the customer asked for; the desk
//! lists what is due soon or overdue.
//!
//! The records follow the job (`desk::follow`): the reply clock stops at the first of the
//! desk's reply, a dispatch or appointment agreed with the customer (R3) and the
//! technician's own contact (an appointment or arrival the device recorded); the arrival
//! clock stops at the job's `visit.arrival` once the device's change reaches the server (an
//! arrival later than that receipt, beyond a small tolerance, is refused and shown). The
//! desk may still correct the arrival, with a reason, kept in the record; an arrival after
//! the asked-for time needs its cause (a personal cause is a recorded violation). A request
//! whose job is signed is served: it is no longer open and never listed as due or overdue.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::desk::{
    ClockState, LateCause, ReplySource, check_arrival, clock_state, replaces_reply, reply_due,
};
use fieldsync_shared::ids::TechnicianId;
use fieldsync_shared::job::Channel;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::records::{self, DeskRecord, Stored};
use crate::auth::{Actor, EVERYONE, STAFF};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::wire::{CustomerIn, ErrorBody, Instant, ProductIn};
use crate::http::{new_id, nonempty, parse_body};

/// A registered service request (R1) as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceRequest {
    pub id: String,
    pub channel: Channel,
    pub received_at: Instant,
    pub customer: CustomerIn,
    pub product: ProductIn,
    pub fault_description: String,
    /// The desk's first classification of the fault; R4 repeat repairs compare it.
    pub fault_category: Option<String>,
    /// R2: the time the customer asked the technician to arrive by.
    pub requested_arrival: Option<Instant>,
    /// The desk role that registered it.
    pub registered_by: String,
    pub registered_at: Instant,
    pub reply: Option<Reply>,
    pub arrival: Option<Arrival>,
    /// R2: the desk's corrections of the arrival, in order, each with its reason.
    #[serde(default)]
    pub arrival_corrections: Vec<ArrivalCorrection>,
    /// R2: the last arrival the device recorded that the server refused (in the future of
    /// its receipt); cleared once an arrival is taken.
    #[serde(default)]
    pub arrival_refused: Option<RefusedArrival>,
    /// The job made from this request (dispatch), if any.
    pub job_id: Option<String>,
    /// When the job's report was signed: the request is served, and off every due list.
    #[serde(default)]
    pub job_signed_at: Option<Instant>,
}

impl DeskRecord for ServiceRequest {
    const KIND: &'static str = "service_request";

    fn id(&self) -> &str {
        &self.id
    }

    fn lookup(&self) -> Option<String> {
        Some(self.product.serial.clone())
    }

    /// Open until it is answered and, if an arrival time was asked for, the technician came;
    /// never open once its job is signed.
    fn open(&self) -> bool {
        self.job_signed_at.is_none()
            && (self.reply.is_none()
                || (self.requested_arrival.is_some() && self.arrival.is_none()))
    }
}

/// R2: the reply to the customer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reply {
    pub at: Instant,
    /// Who answered.
    pub by: String,
    pub text: String,
    /// What answered: the desk, a dispatch with an appointment agreed (R3), or the
    /// technician's contact.
    #[serde(default = "desk_source")]
    pub source: ReplySource,
}

fn desk_source() -> ReplySource {
    ReplySource::Desk
}

/// R2: who recorded an arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalSource {
    /// The technician's device (`visit.arrival` of the job).
    Device,
    /// The desk, by hand.
    Desk,
}

fn desk_arrival() -> ArrivalSource {
    ArrivalSource::Desk
}

/// R2: a correction of the arrival by the desk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArrivalCorrection {
    /// The arrival time before the correction, and who had recorded it.
    pub previous_at: Instant,
    pub previous_source: ArrivalSource,
    /// The corrected time.
    pub at: Instant,
    pub reason: String,
    /// The desk role that corrected it.
    pub by: String,
    pub recorded_at: Instant,
}

/// R2: a device's arrival the server did not take.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusedArrival {
    pub at: Instant,
    /// When the server received it.
    pub received_at: Instant,
    /// The stable code (`arrival_in_future`).
    pub code: String,
    pub message: String,
}

/// R2: when the technician arrived, and why, if after the asked-for time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Arrival {
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    pub at: Instant,
    /// After the customer's requested time.
    pub late: bool,
    pub cause: Option<LateCause>,
    /// R2: late for personal reasons, a recorded violation.
    pub violation: bool,
    pub note: String,
    /// Who recorded it: the device (from the job) or the desk.
    #[serde(default = "desk_arrival")]
    pub source: ArrivalSource,
    /// When the server received it (the device's change or the desk's entry).
    #[serde(default)]
    pub received_at: Option<Instant>,
}

/// A request with its clocks at the time asked about.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceRequestView {
    #[serde(flatten)]
    pub request: ServiceRequest,
    /// R2: 24 hours after receipt.
    pub reply_due: Instant,
    /// R2: the customer's requested arrival, if they asked for one.
    pub arrival_due: Option<Instant>,
    pub reply_clock: ClockState,
    pub arrival_clock: Option<ClockState>,
    /// R2: a late arrival whose cause nobody has recorded yet (the device records the time,
    /// the desk the cause).
    pub late_cause_missing: bool,
}

impl ServiceRequestView {
    pub fn of(request: ServiceRequest, at: Instant, soon_ms: i64) -> Self {
        let due = reply_due(request.received_at.0);
        let reply_clock = clock_state(due, request.reply.as_ref().map(|r| r.at.0), at.0, soon_ms);
        let arrival_clock = request.requested_arrival.map(|asked| {
            clock_state(
                asked.0,
                request.arrival.as_ref().map(|a| a.at.0),
                at.0,
                soon_ms,
            )
        });
        Self {
            reply_due: Instant(due),
            arrival_due: request.requested_arrival,
            reply_clock,
            arrival_clock,
            late_cause_missing: request
                .arrival
                .as_ref()
                .is_some_and(|a| a.late && a.cause.is_none()),
            request,
        }
    }

    /// A clock in `state`, on a request not served yet: a signed job's request is never
    /// due or overdue (R2).
    fn any(&self, state: ClockState) -> bool {
        self.request.job_signed_at.is_none()
            && (self.reply_clock == state || self.arrival_clock == Some(state))
    }
}

/// The body of `POST /api/requests` (R1).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceRequest {
    pub channel: Channel,
    pub received_at: Instant,
    pub customer: CustomerIn,
    pub product: ProductIn,
    pub fault_description: String,
    #[serde(default)]
    pub fault_category: Option<String>,
    #[serde(default)]
    pub requested_arrival: Option<Instant>,
}

/// R1: registers a service contact; its reply clock (R2) starts at `received_at`.
#[utoipa::path(
    post,
    path = "/api/requests",
    tag = "intake",
    description = "R1: register a service request. Roles: dispatcher, manager.",
    request_body = NewServiceRequest,
    responses(
        (status = 201, body = ServiceRequestView),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 403, body = ErrorBody),
    ),
)]
pub async fn create_request(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ServiceRequestView>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, STAFF, "register service requests")?;
    let new: NewServiceRequest = parse_body(&body)?;
    let request = register(&state, new, &actor).await?;
    let at = request.registered_at;
    let view = ServiceRequestView::of(request, at, state.node.config.desk.due_soon_ms());
    Ok((StatusCode::CREATED, Json(view)))
}

/// R1: checks and stores a new request and writes the audit entry (`request_create`, the
/// request's id after). What `POST /api/requests` and the console's intake form both call.
pub async fn register(
    state: &Edge,
    new: NewServiceRequest,
    actor: &Actor,
) -> Result<ServiceRequest, ApiError> {
    nonempty("fault_description", &new.fault_description)?;
    nonempty("customer.name", &new.customer.name)?;
    nonempty("product.serial", &new.product.serial)?;
    nonempty("product.product_type", &new.product.product_type)?;
    if let Some(category) = &new.fault_category {
        nonempty("fault_category", category)?;
    }
    let registered_at = Instant(state.node.clock.now());
    let request = ServiceRequest {
        id: new_id("req")?,
        channel: new.channel,
        received_at: new.received_at,
        customer: new.customer,
        product: new.product,
        fault_description: new.fault_description,
        fault_category: new.fault_category,
        requested_arrival: new.requested_arrival,
        registered_by: actor.role.as_str().to_owned(),
        registered_at,
        reply: None,
        arrival: None,
        arrival_corrections: Vec::new(),
        arrival_refused: None,
        job_id: None,
        job_signed_at: None,
    };
    records::save(state, 0, &request).await?;
    // R26: the product goes into the customer's file.
    super::products::record_product(state, &request.customer, &request.product).await?;
    let entry = Entry::new(
        registered_at.0,
        actor.name(),
        actor.role.as_str(),
        "request_create",
        format!("request:{}", request.id),
    )
    .after(request.id.clone())
    .detail(format!(
        "{} · {}",
        request.customer.name, request.product.serial
    ));
    crate::console::audit_api(&state.node, entry).await?;
    Ok(request)
}

/// Which requests to list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DueFilter {
    /// Every request still open (the default).
    #[default]
    Open,
    /// A clock due within the configured window (`[desk] due_soon_hours`, default 4).
    Soon,
    /// A clock past due and not met (R2 violated).
    Overdue,
    /// Every request, open or not.
    All,
}

/// Query of `GET /api/requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRequests {
    /// open (default), soon, overdue or all.
    #[serde(default)]
    pub due: Option<DueFilter>,
    /// The instant the clocks are read at (RFC 3339); now by default.
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<Instant>,
}

/// Requests with their clocks.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub at: Instant,
    pub requests: Vec<ServiceRequestView>,
}

pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// R2: the requests due soon, overdue, open or all, each with its clocks.
#[utoipa::path(
    get,
    path = "/api/requests",
    tag = "intake",
    description = "R2: list service requests with their reply and arrival clocks. Roles: \
        dispatcher, manager, analyst.",
    params(ListRequests),
    responses(
        (status = 200, body = RequestList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_requests(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ListRequests>, QueryRejection>,
) -> Result<Json<RequestList>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "list service requests")?;
    let q = query(q)?;
    let due = q.due.unwrap_or_default();
    let at = q.at.unwrap_or(Instant(state.node.clock.now()));
    let filter = RecordFilter {
        lookup: None,
        open_only: !matches!(due, DueFilter::All),
    };
    let soon = state.node.config.desk.due_soon_ms();
    let mut requests: Vec<ServiceRequestView> = records::list::<ServiceRequest>(&state, filter)
        .await?
        .into_iter()
        .map(|s| ServiceRequestView::of(s.value, at, soon))
        .filter(|v| match due {
            DueFilter::Open | DueFilter::All => true,
            DueFilter::Soon => v.any(ClockState::DueSoon),
            DueFilter::Overdue => v.any(ClockState::Overdue),
        })
        .collect();
    // Most urgent first: the earliest reply due.
    requests.sort_by_key(|v| v.reply_due);
    Ok(Json(RequestList { at, requests }))
}

pub async fn require_request(state: &Edge, id: &str) -> Result<Stored<ServiceRequest>, ApiError> {
    records::require(state, id, "unknown_request", "service request").await
}

/// One request with its clocks now.
#[utoipa::path(
    get,
    path = "/api/requests/{id}",
    tag = "intake",
    description = "A service request with its clocks. Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, body = ServiceRequestView),
        (status = 404, body = ErrorBody, description = "unknown_request"),
    ),
)]
pub async fn get_request(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ServiceRequestView>, ApiError> {
    state
        .node
        .authorize(&headers, EVERYONE, "read service requests")?;
    let stored = require_request(&state, &id).await?;
    let soon = state.node.config.desk.due_soon_ms();
    Ok(Json(ServiceRequestView::of(
        stored.value,
        Instant(state.node.clock.now()),
        soon,
    )))
}

/// The body of `POST /api/requests/{id}/reply`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    pub by: String,
    pub text: String,
    /// When the customer was answered; now by default.
    #[serde(default)]
    pub at: Option<Instant>,
}

/// R2: records the reply to the customer; its clock is met or met late.
#[utoipa::path(
    post,
    path = "/api/requests/{id}/reply",
    tag = "intake",
    description = "R2: record the reply to the customer. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The request id")),
    request_body = NewReply,
    responses(
        (status = 200, body = ServiceRequestView),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_request"),
        (status = 409, body = ErrorBody, description = "already_replied, conflict"),
    ),
)]
pub async fn record_reply(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ServiceRequestView>, ApiError> {
    state.node.authorize(&headers, STAFF, "record replies")?;
    let new: NewReply = parse_body(&body)?;
    nonempty("by", &new.by)?;
    nonempty("text", &new.text)?;
    let Stored {
        revision,
        mut value,
    } = require_request(&state, &id).await?;
    if let Some(reply) = &value.reply {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_replied",
            format!(
                "request {id} was answered at {:?} by {} ({}): R2 counts the first reply",
                reply.at,
                reply.by,
                reply.source.as_str()
            ),
        ));
    }
    let at = new.at.unwrap_or(Instant(state.node.clock.now()));
    value.reply = Some(Reply {
        at,
        by: new.by,
        text: new.text,
        source: ReplySource::Desk,
    });
    records::save(&state, revision, &value).await?;
    let soon = state.node.config.desk.due_soon_ms();
    Ok(Json(ServiceRequestView::of(value, at, soon)))
}

/// The body of `POST /api/requests/{id}/arrival`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewArrival {
    #[schema(value_type = String)]
    pub technician: TechnicianId,
    pub at: Instant,
    /// Required when the arrival is after the requested time (R2).
    #[serde(default)]
    pub cause: Option<LateCause>,
    #[serde(default)]
    pub note: String,
    /// Required to change an arrival already recorded (the device's or the desk's): the
    /// correction is kept with it.
    #[serde(default)]
    pub reason: Option<String>,
}

/// R2: records when the technician arrived, or corrects it (with a reason; the device's
/// `visit.arrival` is normally taken from the job); after the requested time it needs a
/// cause, and a personal cause is a recorded violation. An arrival later than now (beyond a
/// few minutes' tolerance) is refused.
#[utoipa::path(
    post,
    path = "/api/requests/{id}/arrival",
    tag = "intake",
    description = "R2: record or correct the technician's arrival (the device's is taken from \
        the job; a correction needs a reason); a late arrival needs its cause; an arrival in \
        the future is refused. Roles: dispatcher, manager.",
    params(("id" = String, Path, description = "The request id")),
    request_body = NewArrival,
    responses(
        (status = 200, body = ServiceRequestView),
        (status = 400, body = ErrorBody, description = "invalid_body, late_cause_required, arrival_in_future, invalid_field"),
        (status = 404, body = ErrorBody, description = "unknown_request"),
        (status = 409, body = ErrorBody, description = "already_recorded (give a reason to correct it), conflict"),
    ),
)]
pub async fn record_arrival(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ServiceRequestView>, ApiError> {
    let role = state.node.authorize(&headers, STAFF, "record arrivals")?;
    let new: NewArrival = parse_body(&body)?;
    let now = state.node.clock.now();
    check_arrival(new.at.0, now).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    let reason = new.reason.as_deref().map(str::trim).unwrap_or_default();
    let Stored {
        revision,
        mut value,
    } = require_request(&state, &id).await?;
    if let Some(previous) = &value.arrival {
        // The device recorded the time and the desk only adds the cause: no correction.
        let adds_cause = previous.source == ArrivalSource::Device
            && previous.at == new.at
            && previous.cause.is_none();
        if !adds_cause && reason.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_recorded",
                format!(
                    "the arrival for request {id} is already recorded ({:?}, by the {}): give a \
                     \"reason\" to correct it",
                    previous.at,
                    match previous.source {
                        ArrivalSource::Device => "technician's device",
                        ArrivalSource::Desk => "desk",
                    }
                ),
            ));
        }
        if !reason.is_empty() {
            value.arrival_corrections.push(ArrivalCorrection {
                previous_at: previous.at,
                previous_source: previous.source,
                at: new.at,
                reason: reason.to_owned(),
                by: role.as_str().to_owned(),
                recorded_at: Instant(now),
            });
        }
    }
    let late = value.requested_arrival.is_some_and(|asked| new.at > asked);
    if late && new.cause.is_none() {
        return Err(ApiError::bad_request(
            "late_cause_required",
            format!(
                "the technician arrived after the customer's requested time {:?}: R2 needs the \
                 cause (one of personal, traffic, weather, customer, parts, other)",
                value.requested_arrival.unwrap_or(new.at)
            ),
        ));
    }
    let cause = if late { new.cause } else { None };
    value.arrival = Some(Arrival {
        technician: new.technician,
        at: new.at,
        late,
        violation: cause.is_some_and(LateCause::is_violation),
        cause,
        note: new.note,
        source: ArrivalSource::Desk,
        received_at: Some(Instant(now)),
    });
    records::save(&state, revision, &value).await?;
    let soon = state.node.config.desk.due_soon_ms();
    Ok(Json(ServiceRequestView::of(
        value,
        Instant(state.node.clock.now()),
        soon,
    )))
}

/// R2: records `reply` on request `request_id` if it is the first (an earlier one stays).
pub async fn keep_first_reply(
    state: &Edge,
    request_id: &str,
    reply: Reply,
) -> Result<(), ApiError> {
    records::update::<ServiceRequest>(state, request_id, |r| {
        let first = replaces_reply(r.reply.as_ref().map(|x| x.at.0), reply.at.0);
        if first {
            r.reply = Some(reply.clone());
        }
        first
    })
    .await?;
    Ok(())
}

/// R2: the job made from request `request_id` was signed at `signed_at`: the request is
/// served and leaves every due list.
pub async fn request_served(
    state: &Edge,
    request_id: &str,
    job_id: &str,
    signed_at: Timestamp,
) -> Result<(), ApiError> {
    records::update::<ServiceRequest>(state, request_id, |r| {
        let ours = r.job_id.as_deref() == Some(job_id);
        let changed = ours && r.job_signed_at != Some(Instant(signed_at));
        if changed {
            r.job_signed_at = Some(Instant(signed_at));
        }
        changed
    })
    .await?;
    Ok(())
}
