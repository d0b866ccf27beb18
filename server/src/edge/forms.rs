//! The desk's forms in the console (issue 14): intake of a request (R1, `/intake`), dispatch
//! of a request with its appointment (R3, R16, `/requests/{id}`), reassigning and cancelling
//! a job (forms on `/jobs/{id}`), the approvals waiting with the decide action (R12, R18,
//! R31, R28, `/approvals`) and the day's follow-up calls (R14, `/follow-ups`).
//!
//! Every form is a plain POST (no script) carrying the session's CSRF token, checked after
//! the role and before anything else. Each calls the very function the JSON desk API calls
//! (`desk::intake::register`, `desk::dispatch::dispatch_request`, `jobs::reassign`,
//! `desk::dispatch::cancel_job`, `desk::approvals::decide_request`,
//! `desk::dispatch::record_call_as`), so the rules and the audit entry are the API's; the
//! console only turns the form into the API's input (times typed in the branch's zone) and
//! the rule's refusal into words (`Notice::refused`). Done, the answer is a redirect (303)
//! to the page that shows the result with `?done=…`; refused, the form again with what was
//! typed and the refusal above it, answered with the refusal's status.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fieldsync_shared::ids::{CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::ApprovalKind;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{BillingMode, Channel, JobKind};
use fieldsync_shared::time::{CalendarDate, Money};
use fieldsync_shared::zone::Zone;
use serde::Deserialize;

use super::Edge;
use super::console::{channel_key, done_key, job_response, money};
use super::desk::approvals::{ApprovalView, NewDecision, decide_request, listed};
use super::desk::dispatch::{
    NewAppointment, NewCall, NewJobFromRequest, cancel_job, dispatch_request, follow_ups_on,
    record_call_as,
};
use super::desk::intake::{NewServiceRequest, ServiceRequest, register, require_request};
use super::jobs::{Technicians, enrolled_technicians, reassign};
use crate::auth::{APPROVERS, Actor, DeskRole, EVERYONE, STAFF};
use crate::console::i18n::Lang;
use crate::console::{Chrome, Notice, Signed, error_page, message_page, render};
use crate::http::error::ApiError;
use crate::http::wire::{CustomerIn, Date, Instant, ProductIn};

/// The desk's form routes (the edge's console router gives them its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route("/intake", get(intake_page).post(intake_post))
        .route("/requests/{id}", get(request_page))
        .route("/requests/{id}/dispatch", post(dispatch_post))
        .route("/jobs/{id}/technicians", post(reassign_post))
        .route("/jobs/{id}/cancel", post(cancel_post))
        .route("/approvals", get(approvals_page))
        .route("/approvals/{job}/{approval}", post(decide_post))
        .route("/follow-ups", get(follow_ups_page))
        .route("/follow-ups/{job}/call", post(call_post))
}

/// The person signed in, as the desk's functions record who did it.
pub(super) fn actor(signed: &Signed) -> Actor {
    Actor {
        role: signed.role,
        person: Some(signed.user.name.clone()),
    }
}

/// A form that does not parse (a field of the wrong shape, a forged post): nothing changes.
pub(super) fn bad_form(lang: Lang) -> Response {
    message_page(StatusCode::BAD_REQUEST, lang, "form_expired")
}

/// A form that carries the session's CSRF token.
pub(super) trait Posted {
    fn csrf(&self) -> &str;
}

/// Every form post's opening: the person signed in with one of `roles` (else the sign-in
/// redirect or the 403 page naming the roles), the form parsed (else "the form expired"),
/// and its CSRF token the session's (else refused). Nothing has changed when it answers.
pub(super) async fn posted<T: Posted>(
    edge: &Edge,
    headers: &HeaderMap,
    path: &str,
    roles: &[DeskRole],
    form: Result<Form<T>, FormRejection>,
) -> Result<(Signed, T), Response> {
    let signed = edge.console.require(headers, path, roles).await?;
    let Ok(Form(form)) = form else {
        return Err(bad_form(signed.user.lang));
    };
    match edge.console.csrf_refusal(&signed, form.csrf()) {
        Some(answer) => Err(answer),
        None => Ok((signed, form)),
    }
}

/// [`Posted`] for forms whose CSRF token is their `csrf` field (every form but one).
macro_rules! posted_by_field {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::edge::forms::Posted for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(super) use posted_by_field;

posted_by_field!(
    IntakeForm,
    DispatchForm,
    ReassignForm,
    CancelForm,
    DecideForm,
    CallForm
);

pub(super) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

pub(super) fn field_error(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{name}: {e}"))
}

pub(super) fn optional(v: &str) -> Option<&str> {
    Some(v.trim()).filter(|v| !v.is_empty())
}

/// A wall-clock time typed in the branch's zone.
pub(super) fn local_time(zone: &Zone, name: &str, v: &str) -> Result<Instant, ApiError> {
    zone.parse_local(v)
        .map(Instant)
        .map_err(|e| ApiError::bad_request("bad_time", format!("{name}: {e}")))
}

pub(super) fn date(name: &str, v: &str) -> Result<Option<Date>, ApiError> {
    optional(v)
        .map(|v| v.parse::<CalendarDate>().map(Date))
        .transpose()
        .map_err(|e| field_error(name, e))
}

/// A choice of a `<select>`.
pub(super) struct Choice {
    pub(super) value: &'static str,
    pub(super) label: &'static str,
    pub(super) selected: bool,
}

pub(super) fn choices(
    lang: Lang,
    current: &str,
    options: impl IntoIterator<Item = (&'static str, &'static str)>,
) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, key)| Choice {
            value,
            label: lang.t(key),
            selected: current == value,
        })
        .collect()
}

fn kind_key(k: JobKind) -> &'static str {
    match k {
        JobKind::Repair => "kind_repair",
        JobKind::Installation => "kind_installation",
        JobKind::Maintenance => "kind_maintenance",
        JobKind::FollowUp => "kind_follow_up",
    }
}

// ---- intake (R1) ----

/// The intake form as typed (every field a string, so a half-filled form comes back).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IntakeForm {
    csrf: String,
    channel: String,
    received_at: String,
    customer_id: String,
    customer_name: String,
    contact: String,
    site_address: String,
    model: String,
    serial: String,
    product_type: String,
    purchase_date: String,
    warranty_end: String,
    fault_description: String,
    fault_category: String,
    requested_arrival: String,
}

/// A request not dispatched yet, on the intake page.
struct WaitingRow {
    href: String,
    customer: String,
    product: String,
    received: String,
    fault: String,
}

#[derive(Template)]
#[template(path = "edge/intake.html")]
struct IntakePage {
    chrome: Chrome,
    csrf: String,
    form: IntakeForm,
    channels: Vec<Choice>,
    notice: Option<Notice>,
    waiting: Vec<WaitingRow>,
    /// The desk's fault categories in force (R4, R27), offered as a datalist.
    categories: Vec<String>,
}

/// The form as the API's input (R1): times read in the branch's zone.
fn new_request(zone: &Zone, f: &IntakeForm) -> Result<NewServiceRequest, ApiError> {
    let channel = Channel::parse(f.channel.trim())
        .ok_or_else(|| field_error("channel", format!("{:?} is not a channel", f.channel)))?;
    let received_at = local_time(zone, "received_at", &f.received_at)?;
    let requested_arrival = optional(&f.requested_arrival)
        .map(|v| local_time(zone, "requested_arrival", v))
        .transpose()?;
    let customer = CustomerIn {
        id: CustomerId::new(f.customer_id.trim()).map_err(|e| field_error("customer_id", e))?,
        name: f.customer_name.trim().to_owned(),
        contact: f.contact.trim().to_owned(),
        site_address: f.site_address.trim().to_owned(),
    };
    let product = ProductIn {
        model: f.model.trim().to_owned(),
        serial: f.serial.trim().to_owned(),
        product_type: f.product_type.trim().to_owned(),
        purchase_date: date("purchase_date", &f.purchase_date)?,
        warranty_end: date("warranty_end", &f.warranty_end)?,
    };
    Ok(NewServiceRequest {
        channel,
        received_at,
        customer,
        product,
        fault_description: f.fault_description.trim().to_owned(),
        fault_category: optional(&f.fault_category).map(str::to_owned),
        requested_arrival,
    })
}

async fn intake_response(
    edge: &Edge,
    signed: &Signed,
    form: IntakeForm,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let filter = fieldsync_storage::RecordFilter {
        lookup: None,
        open_only: true,
    };
    let requests = match super::desk::records::list::<ServiceRequest>(edge, filter).await {
        Ok(r) => r,
        Err(e) => return error_page(e.status, &e.message),
    };
    let mut waiting: Vec<ServiceRequest> = requests
        .into_iter()
        .map(|s| s.value)
        .filter(|r| r.job_id.is_none())
        .collect();
    waiting.sort_by_key(|r| r.received_at);
    let categories = match super::desk::categories::in_force(edge).await {
        Ok(c) => c,
        Err(e) => return error_page(e.status, &e.message),
    };
    let channel = if form.channel.is_empty() {
        "phone".to_owned()
    } else {
        form.channel.clone()
    };
    let page = IntakePage {
        chrome: console.chrome(signed, lang.t("intake"), "/intake"),
        csrf: signed.csrf.clone(),
        channels: choices(
            lang,
            &channel,
            Channel::ALL.map(|c| (c.as_str(), channel_key(c))),
        ),
        form,
        notice,
        categories,
        waiting: waiting
            .iter()
            .map(|r| WaitingRow {
                href: format!("/requests/{}", r.id),
                customer: r.customer.name.clone(),
                product: format!("{} · {}", r.product.model, r.product.serial),
                received: console.time(r.received_at.0),
                fault: r.fault_description.clone(),
            })
            .collect(),
    };
    render(status, &page)
}

/// `GET /intake`: the intake form, "now" in the branch's zone as the time received, and
/// the requests waiting for dispatch.
async fn intake_page(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let signed = match edge.console.require(&headers, "/intake", STAFF).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let form = IntakeForm {
        received_at: edge.node.config.timezone.local_input(edge.node.clock.now()),
        ..IntakeForm::default()
    };
    intake_response(&edge, &signed, form, StatusCode::OK, None).await
}

/// `POST /intake`: registers the request (R1) and goes to its dispatch form.
async fn intake_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<IntakeForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/intake", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let done = match new_request(&edge.node.config.timezone, &form) {
        Ok(new) => register(&edge, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(request) => see_other(&format!("/requests/{}?done=request_created", request.id)),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            intake_response(&edge, &signed, form, e.status, Some(notice)).await
        }
    }
}

// ---- dispatch (R3, R16) ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct DispatchForm {
    csrf: String,
    kind: String,
    technician: String,
    billing_mode: String,
    contract_due: String,
    appointment_at: String,
    contacted_by: String,
    fault_rechecked: String,
    pre_assign: String,
}

struct Fact {
    label: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "edge/request.html")]
struct RequestPage {
    chrome: Chrome,
    csrf: String,
    id: String,
    heading: String,
    facts: Vec<Fact>,
    /// The job made from it, once dispatched.
    job_href: Option<String>,
    staff: bool,
    form: DispatchForm,
    kinds: Vec<Choice>,
    billing: Vec<Choice>,
    technicians: Vec<String>,
    notice: Option<Notice>,
}

fn new_dispatch(zone: &Zone, f: &DispatchForm) -> Result<NewJobFromRequest, ApiError> {
    let kind = JobKind::parse(f.kind.trim())
        .ok_or_else(|| field_error("kind", format!("{:?} is not a kind of job", f.kind)))?;
    let technician =
        TechnicianId::new(f.technician.trim()).map_err(|e| field_error("technician", e))?;
    let billing_mode = match optional(&f.billing_mode) {
        None => None,
        Some(m) => Some(
            BillingMode::parse(m)
                .ok_or_else(|| field_error("billing_mode", format!("{m:?} is not a mode")))?,
        ),
    };
    let appointment = optional(&f.appointment_at)
        .map(|at| {
            Ok::<_, ApiError>(NewAppointment {
                at: local_time(zone, "appointment_at", at)?,
                contacted_by: f.contacted_by.trim().to_owned(),
                fault_rechecked: f.fault_rechecked.trim().to_owned(),
            })
        })
        .transpose()?;
    Ok(NewJobFromRequest {
        kind,
        technician,
        billing_mode,
        currency: None,
        contract_due: date("contract_due", &f.contract_due)?,
        appointment,
        pre_assign: !f.pre_assign.is_empty(),
    })
}

async fn request_response(
    edge: &Edge,
    signed: &Signed,
    id: &str,
    form: Option<DispatchForm>,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let request = match require_request(edge, id).await {
        Ok(r) => r.value,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return message_page(StatusCode::NOT_FOUND, lang, "not_found");
        }
        Err(e) => return error_page(e.status, &e.message),
    };
    let form = form.unwrap_or_else(|| DispatchForm {
        kind: "repair".into(),
        contacted_by: signed.user.display_name.clone(),
        fault_rechecked: request.fault_description.clone(),
        ..DispatchForm::default()
    });
    let time = |at: Option<Instant>| {
        at.map(|a| console.time(a.0))
            .unwrap_or_else(|| t("none_yet").to_owned())
    };
    // R4, R27: a category outside the desk's list is marked.
    let listed = super::desk::categories::in_force(edge)
        .await
        .unwrap_or_default();
    let category =
        super::catalogue::category_text(&listed, lang, request.fault_category.as_deref());
    let fact = |label: &'static str, value: String| Fact { label, value };
    let facts = vec![
        fact(t("received"), console.time(request.received_at.0)),
        fact(t("channel"), t(channel_key(request.channel)).to_owned()),
        fact(t("customer"), request.customer.name.clone()),
        fact(t("customer_id"), request.customer.id.to_string()),
        fact(t("contact"), request.customer.contact.clone()),
        fact(t("address"), request.customer.site_address.clone()),
        fact(t("model"), request.product.model.clone()),
        fact(t("serial"), request.product.serial.clone()),
        fact(t("product_type"), request.product.product_type.clone()),
        fact(
            t("warranty_end"),
            request
                .product
                .warranty_end
                .map(|d| d.0.to_string())
                .unwrap_or_else(|| t("none_yet").to_owned()),
        ),
        fact(t("fault"), request.fault_description.clone()),
        fact(t("fault_category"), category),
        fact(t("requested_arrival"), time(request.requested_arrival)),
    ];
    let path = format!("/requests/{id}");
    let page = RequestPage {
        chrome: console.chrome(signed, t("dispatch"), &path),
        csrf: signed.csrf.clone(),
        id: request.id.clone(),
        heading: format!("{} · {}", request.customer.name, request.product.model),
        facts,
        job_href: request.job_id.as_ref().map(|j| format!("/jobs/{j}")),
        staff: STAFF.contains(&signed.role),
        kinds: choices(
            lang,
            &form.kind,
            JobKind::ALL.map(|k| (k.as_str(), kind_key(k))),
        ),
        billing: choices(
            lang,
            &form.billing_mode,
            [
                ("", "billing_default"),
                ("warranty", "billing_warranty"),
                ("billable", "billing_billable"),
            ],
        ),
        technicians: enrolled_technicians(edge)
            .into_keys()
            .map(|t| t.to_string())
            .collect(),
        form,
        notice,
    };
    render(status, &page)
}

/// `GET /requests/{id}`: a request and, until it has a job, the dispatch form.
async fn request_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let path = format!("/requests/{id}");
    let signed = match edge.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let notice = done_notice(signed.user.lang, q);
    request_response(&edge, &signed, &id, None, StatusCode::OK, notice).await
}

/// `POST /requests/{id}/dispatch`: makes the job, assigns it and records the appointment
/// (R3; R16 for installations), then shows the job.
async fn dispatch_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<DispatchForm>, FormRejection>,
) -> Response {
    let path = format!("/requests/{id}");
    let (signed, form) = match posted(&edge, &headers, &path, STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let done = match new_dispatch(&edge.node.config.timezone, &form) {
        Ok(new) => dispatch_request(&edge, &id, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(created) => see_other(&format!("/jobs/{}?done=dispatched", created.job_id)),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            request_response(&edge, &signed, &id, Some(form), e.status, Some(notice)).await
        }
    }
}

// ---- reassign and cancel (on the job page) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReassignForm {
    csrf: String,
    technicians: String,
    pre_assign: String,
}

/// `POST /jobs/{id}/technicians`: the job's technicians, comma-separated (R3).
async fn reassign_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ReassignForm>, FormRejection>,
) -> Response {
    let path = format!("/jobs/{id}");
    let (signed, form) = match posted(&edge, &headers, &path, STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    // People type Chinese commas too.
    let technicians: Vec<String> = form
        .technicians
        .split([',', '，', ';', '；'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let done = if technicians.is_empty() {
        Err(field_error(
            "technicians",
            "name at least one technician (R3: a job is dispatched to someone)",
        ))
    } else {
        let body = Technicians {
            technicians,
            pre_assign: !form.pre_assign.is_empty(),
        };
        reassign(&edge, &id, body, &actor(&signed)).await
    };
    match done {
        Ok(_) => see_other(&format!("/jobs/{id}?done=reassigned")),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            job_response(&edge, &signed, &id, e.status, Some(notice)).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CancelForm {
    csrf: String,
    reason: String,
}

/// `POST /jobs/{id}/cancel`: cancels the job with a reason.
async fn cancel_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CancelForm>, FormRejection>,
) -> Response {
    let path = format!("/jobs/{id}");
    let (signed, form) = match posted(&edge, &headers, &path, STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    match cancel_job(&edge, &id, &form.reason, &actor(&signed)).await {
        Ok(_) => see_other(&format!("/jobs/{id}?done=cancelled")),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            job_response(&edge, &signed, &id, e.status, Some(notice)).await
        }
    }
}

// ---- approvals (R12, R18, R31, R28) ----

#[derive(Debug, Default, Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

fn done_notice(lang: Lang, q: Result<Query<DoneQuery>, QueryRejection>) -> Option<Notice> {
    q.ok()
        .and_then(|Query(q)| q.done)
        .and_then(|d| done_key(&d))
        .map(|key| Notice::done(lang, key))
}

fn approval_key(kind: ApprovalKind) -> &'static str {
    match kind {
        ApprovalKind::Extension => "approval_extension",
        ApprovalKind::OtherSolution => "approval_other_solution",
        ApprovalKind::WarrantyPart => "approval_warranty_part",
        ApprovalKind::ProductReturn => "approval_product_return",
        ApprovalKind::TravelExpense => "approval_travel_expense",
    }
}

struct ApprovalRow {
    /// The decide form's action.
    action: String,
    /// An id for the row (tests and the browser find it by it).
    anchor: String,
    job_href: String,
    kind: &'static str,
    reason: String,
    requested_by: String,
    requested_at: String,
    amount: String,
    /// R18: above the director's threshold.
    director: bool,
    decision: String,
    decided: String,
}

#[derive(Template)]
#[template(path = "edge/approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    csrf: String,
    /// A manager or the director: the decide forms are shown.
    approver: bool,
    waiting: Vec<ApprovalRow>,
    decided: Vec<ApprovalRow>,
    notice: Option<Notice>,
}

/// Decided requests shown under the waiting ones (newest first).
const DECIDED_SHOWN: usize = 50;

/// The currency of each job named, read from its document (amounts are in the job's).
async fn currencies(edge: &Edge, jobs: impl Iterator<Item = String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for job in jobs {
        if out.contains_key(&job) {
            continue;
        }
        let Ok(id) = job.parse::<DocumentId>() else {
            continue;
        };
        if let Ok(Some(doc)) = edge.node.load_document(id).await
            && let Ok(j) = read_job(&doc)
        {
            out.insert(job, j.billing.currency);
        }
    }
    out
}

async fn approvals_response(
    edge: &Edge,
    signed: &Signed,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let all = match listed(edge, false).await {
        Ok(all) => all,
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            return message_text(edge, signed, e.status, notice);
        }
    };
    let with_amount = all
        .iter()
        .filter(|a| a.amount.is_some())
        .map(|a| a.job_id.clone());
    let currency = currencies(edge, with_amount).await;
    let row = |a: &ApprovalView| ApprovalRow {
        action: format!("/approvals/{}/{}", a.job_id, a.id),
        anchor: format!("approval-{}", a.id),
        job_href: format!("/jobs/{}", a.job_id),
        kind: t(approval_key(a.kind)),
        reason: a.reason.clone(),
        requested_by: a.requested_by.clone(),
        requested_at: console.time(a.requested_at.0),
        amount: a
            .amount
            .map(|m| {
                money(
                    Money(m),
                    currency.get(&a.job_id).map_or("CNY", String::as_str),
                )
            })
            .unwrap_or_default(),
        director: a.large_amount,
        decision: a
            .decision
            .as_ref()
            .map(|d| {
                let word = if d.approved {
                    t("approved")
                } else {
                    t("refused_decision")
                };
                if d.note.is_empty() {
                    word.to_owned()
                } else {
                    format!("{word}: {}", d.note)
                }
            })
            .unwrap_or_default(),
        decided: a
            .decision
            .as_ref()
            .map(|d| format!("{} · {}", console.time(d.at.0), d.by))
            .unwrap_or_default(),
    };
    let waiting = all
        .iter()
        .filter(|a| a.decision.is_none())
        .map(&row)
        .collect();
    let mut decided: Vec<&ApprovalView> = all.iter().filter(|a| a.decision.is_some()).collect();
    decided.sort_by_key(|a| std::cmp::Reverse(a.decision.as_ref().map(|d| d.at)));
    let page = ApprovalsPage {
        chrome: console.chrome(signed, t("approvals"), "/approvals"),
        csrf: signed.csrf.clone(),
        approver: APPROVERS.contains(&signed.role),
        waiting,
        decided: decided.into_iter().take(DECIDED_SHOWN).map(&row).collect(),
        notice,
    };
    render(status, &page)
}

/// A page that is only a notice (the approvals could not be listed yet).
fn message_text(edge: &Edge, signed: &Signed, status: StatusCode, notice: Notice) -> Response {
    let lang = signed.user.lang;
    let page = crate::console::MessagePage {
        chrome: edge
            .console
            .chrome(signed, lang.t("approvals"), "/approvals"),
        heading: lang.t("approvals"),
        text: format!("{} {}", notice.text, notice.detail),
    };
    render(status, &page)
}

/// `GET /approvals`: the requests waiting for a decision (oldest first) and those decided.
async fn approvals_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let signed = match edge.console.require(&headers, "/approvals", EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let notice = done_notice(signed.user.lang, q);
    approvals_response(&edge, &signed, StatusCode::OK, notice).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DecideForm {
    csrf: String,
    /// `approve` or `refuse` (the button pressed).
    decision: String,
    note: String,
}

/// `POST /approvals/{job}/{approval}`: a manager's or the director's decision, written into
/// the job document (the device shows it).
async fn decide_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path((job, approval)): Path<(String, String)>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/approvals", APPROVERS, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let approved = match form.decision.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => return bad_form(lang),
    };
    let new = NewDecision {
        approved,
        note: form.note.trim().to_owned(),
    };
    match decide_request(&edge, &job, &approval, new, &actor(&signed)).await {
        Ok(_) => see_other("/approvals?done=decided"),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            approvals_response(&edge, &signed, e.status, Some(notice)).await
        }
    }
}

// ---- follow-up calls (R14) ----

#[derive(Debug, Default, Deserialize)]
struct FollowQuery {
    date: Option<String>,
    done: Option<String>,
}

struct CallRow {
    action: String,
    anchor: String,
    job_href: String,
    customer: String,
    contact: String,
    served: String,
    calls: Vec<String>,
    /// Reached already: no form.
    finished: bool,
}

#[derive(Template)]
#[template(path = "edge/follow_ups.html")]
struct FollowUpsPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    date: String,
    rows: Vec<CallRow>,
    notice: Option<Notice>,
}

async fn follow_ups_response(
    edge: &Edge,
    signed: &Signed,
    date: Option<&str>,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let (date, notice) = match date.and_then(optional).map(str::parse::<CalendarDate>) {
        None => (None, notice),
        Some(Ok(d)) => (Some(Date(d)), notice),
        Some(Err(e)) => (None, Some(Notice::refused(lang, &field_error("date", e)))),
    };
    let list = match follow_ups_on(edge, date).await {
        Ok(l) => l,
        Err(e) => return message_text(edge, signed, e.status, Notice::refused(lang, &e)),
    };
    let rows = list
        .jobs
        .iter()
        .map(|j| CallRow {
            action: format!("/follow-ups/{}/call", j.job_id),
            anchor: format!("call-{}", j.job_id),
            job_href: format!("/jobs/{}", j.job_id),
            customer: j.customer_name.clone(),
            contact: j.customer_contact.clone(),
            served: j.served_at.map(|s| console.time(s.0)).unwrap_or_default(),
            calls: j
                .calls
                .iter()
                .map(|c| {
                    let outcome = match (c.reached, c.satisfied) {
                        (false, _) => t("not_reached"),
                        (true, Some(true)) => t("satisfied"),
                        (true, _) => t("not_satisfied"),
                    };
                    let mut line = format!("{} · {} · {outcome}", console.time(c.at.0), c.by);
                    if !c.comments.is_empty() {
                        line.push_str(" — ");
                        line.push_str(&c.comments);
                    }
                    line
                })
                .collect(),
            finished: j.calls.iter().any(|c| c.reached),
        })
        .collect();
    let page = FollowUpsPage {
        chrome: console.chrome(signed, t("follow_ups"), "/follow-ups"),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        date: list.date.0.to_string(),
        rows,
        notice,
    };
    render(status, &page)
}

/// `GET /follow-ups?date=YYYY-MM-DD`: the customers to call on the day (today in the
/// branch's zone by default): those served the day before (R14).
async fn follow_ups_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<FollowQuery>, QueryRejection>,
) -> Response {
    let signed = match edge
        .console
        .require(&headers, "/follow-ups", EVERYONE)
        .await
    {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let lang = signed.user.lang;
    let notice = q
        .done
        .as_deref()
        .and_then(done_key)
        .map(|k| Notice::done(lang, k));
    follow_ups_response(&edge, &signed, q.date.as_deref(), StatusCode::OK, notice).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CallForm {
    csrf: String,
    /// `satisfied`, `not_satisfied` or `not_reached` (the button pressed).
    outcome: String,
    comments: String,
    /// The day the list was for, to come back to it.
    date: String,
}

/// `POST /follow-ups/{job}/call`: the outcome of a call (R14).
async fn call_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(job): Path<String>,
    form: Result<Form<CallForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/follow-ups", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let (reached, satisfied) = match form.outcome.as_str() {
        "satisfied" => (true, Some(true)),
        "not_satisfied" => (true, Some(false)),
        "not_reached" => (false, None),
        _ => return bad_form(lang),
    };
    let new = NewCall {
        by: signed.user.display_name.clone(),
        reached,
        satisfied,
        comments: form.comments.trim().to_owned(),
        at: None,
    };
    let date = optional(&form.date).map(str::to_owned);
    match record_call_as(&edge, &job, new, &actor(&signed)).await {
        Ok(_) => {
            let mut to = "/follow-ups?done=called".to_owned();
            if let Some(d) = &date {
                to.push_str("&date=");
                to.push_str(&crate::console::encode(d));
            }
            see_other(&to)
        }
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            follow_ups_response(&edge, &signed, date.as_deref(), e.status, Some(notice)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_form_becomes_the_apis_request_with_times_in_the_branchs_zone() {
        let zone = Zone::china();
        let form = IntakeForm {
            channel: "phone".into(),
            received_at: "2026-11-20T10:00".into(),
            customer_id: "c-1".into(),
            customer_name: "华东机械厂".into(),
            serial: "SN-1".into(),
            product_type: "chiller".into(),
            fault_description: "不制冷".into(),
            requested_arrival: "2026-11-21 09:30".into(),
            ..IntakeForm::default()
        };
        let new = new_request(&zone, &form).expect("a request");
        assert_eq!(new.received_at.0.to_string(), "2026-11-20T02:00:00Z");
        assert_eq!(
            new.requested_arrival.map(|a| a.0.to_string()).as_deref(),
            Some("2026-11-21T01:30:00Z")
        );
        assert_eq!(new.fault_category, None);
        let bad = IntakeForm {
            received_at: "yesterday".into(),
            ..form.clone()
        };
        assert_eq!(
            new_request(&zone, &bad)
                .map(|_| ())
                .expect_err("refused")
                .code,
            "bad_time"
        );
        let bad = IntakeForm {
            channel: "fax".into(),
            ..form
        };
        assert_eq!(
            new_request(&zone, &bad)
                .map(|_| ())
                .expect_err("refused")
                .code,
            "invalid_field"
        );
    }
}
