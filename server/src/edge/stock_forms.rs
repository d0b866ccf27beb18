//! Parts requisitions and shipments (R17, R18) and the special-tool register (R19) in the
//! console (issue 14): `/requisitions` lists the branch's requisitions (those waiting for
//! shipment first), requisitions parts against a job and records a shipment; `/tools` is the
//! register (who holds each tool and since when, overdue ones first) with the register,
//! lend, return and lost forms.
//!
//! The forms follow `edge::forms`: a plain POST with the session's CSRF token, checked after
//! the role and the form; then the very functions the JSON API calls
//! (`desk::stock::requisition_parts`, `ship_requisition`, `add_tool`, `lend`, `take_back`,
//! `record_loss`, `tools_at`), which write the audit entry; a refusal comes back in words on
//! the page, typed values kept, with the refusal's status. A lost tool is charged by a
//! manager (R19).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use fieldsync_shared::ids::{CustomerId, TechnicianId};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::time::Money;
use fieldsync_shared::zone::Zone;
use fieldsync_storage::RecordFilter;
use serde::Deserialize;

use super::Edge;
use super::complaint_forms::{JobChoice, age, job_choices};
use super::console::money;
use super::desk::records;
use super::desk::stock::{
    NewLoan, NewLoss, NewRequisition, NewReturn, NewTool, Requisition, Shipment, ShippedItem,
    ToolView, add_tool, known_job, lend, record_loss, requisition_parts, ship_requisition,
    take_back, tools_at,
};
use super::forms::{
    actor, date, field_error, local_time, optional, posted, posted_by_field, see_other,
};
use super::jobs::enrolled_technicians;
use crate::auth::{EVERYONE, MANAGERS, STAFF};
use crate::console::i18n::Lang;
use crate::console::{Chrome, Notice, Signed, error_page, render};
use crate::http::error::ApiError;
use crate::http::wire::{Date, Instant};

/// The requisition and tool routes (the edge's router gives them its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route(
            "/requisitions",
            get(requisitions_page).post(requisition_post),
        )
        .route("/requisitions/{id}/shipment", post(shipment_post))
        .route("/tools", get(tools_page).post(tool_post))
        .route("/tools/{id}/loans", post(lend_post))
        .route("/tools/{id}/return", post(return_post))
        .route("/tools/{id}/lost", post(lost_post))
}

/// The label of a `?done=` value these forms send.
fn done_key(done: &str) -> Option<&'static str> {
    Some(match done {
        "requisition_created" => "rq_done_created",
        "shipped" => "rq_done_shipped",
        "tool_registered" => "tool_done_registered",
        "lent" => "tool_done_lent",
        "returned" => "tool_done_returned",
        "lost" => "tool_done_lost",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    /// Prefills the requisition form's job (a link from elsewhere).
    job: Option<String>,
    done: Option<String>,
}

fn done_notice(lang: Lang, done: Option<&str>) -> Option<Notice> {
    done.and_then(done_key).map(|k| Notice::done(lang, k))
}

/// A required date typed in a form.
fn required_date(name: &str, v: &str) -> Result<Date, ApiError> {
    date(name, v)?.ok_or_else(|| field_error(name, "a date is needed"))
}

fn quantity(name: &str, v: &str) -> Result<u32, ApiError> {
    v.trim()
        .parse::<u32>()
        .map_err(|_| field_error(name, format!("{v:?} is not a whole number")))
}

// ---- requisitions and shipments (R17, R18) ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RequisitionForm {
    csrf: String,
    job_id: String,
    part_number: String,
    part_name: String,
    specification: String,
    material: String,
    quantity: String,
    needed_by: String,
    customer_id: String,
    order_number: String,
}

posted_by_field!(
    RequisitionForm,
    ShipmentForm,
    ToolForm,
    LendForm,
    ReturnForm,
    LossForm
);

/// The shipment form: up to three lines of part number and quantity.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ShipmentForm {
    csrf: String,
    address: String,
    recipient: String,
    contact: String,
    item1_part: String,
    item1_qty: String,
    item2_part: String,
    item2_qty: String,
    item3_part: String,
    item3_qty: String,
    shipped_on: String,
    arrives_on: String,
}

struct Fact {
    label: &'static str,
    value: String,
}

struct RequisitionRow {
    anchor: String,
    action: String,
    heading: String,
    job_href: String,
    facts: Vec<Fact>,
    /// Shipped: where, to whom, what, when.
    shipment: Vec<Fact>,
    /// Arrives after the date needed (R17), once shipped.
    late: bool,
    form: ShipmentForm,
}

#[derive(Template)]
#[template(path = "edge/requisitions.html")]
struct RequisitionsPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    open: Vec<RequisitionRow>,
    shipped: Vec<RequisitionRow>,
    form: RequisitionForm,
    jobs: Vec<JobChoice>,
    notice: Option<Notice>,
}

/// What a refused per-item form typed, to show it again on its item.
struct Retry<F> {
    id: String,
    form: F,
}

fn requisition_row(
    edge: &Edge,
    lang: Lang,
    r: &Requisition,
    retry: Option<&Retry<ShipmentForm>>,
) -> RequisitionRow {
    let t = |k: &str| lang.t(k);
    let console = &edge.console;
    let fact = |label: &'static str, value: String| Fact { label, value };
    let facts = vec![
        fact(t("rq_specification"), r.specification.clone()),
        fact(t("rq_material"), r.material.clone()),
        fact(t("rq_needed_by"), r.needed_by.0.to_string()),
        fact(t("customer_id"), r.customer_id.to_string()),
        fact(t("rq_order_number"), r.order_number.clone()),
        fact(
            t("requested_by"),
            format!("{} · {}", r.requested_by, console.time(r.requested_at.0)),
        ),
    ];
    let shipment = r
        .shipment
        .as_ref()
        .map(|s| {
            vec![
                fact(t("address"), s.address.clone()),
                fact(
                    t("rq_recipient"),
                    format!("{} · {}", s.recipient, s.contact),
                ),
                fact(
                    t("rq_items"),
                    s.items
                        .iter()
                        .map(|i| format!("{} × {}", i.part_number, i.quantity))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                fact(
                    t("rq_shipped_arrives"),
                    format!("{} → {}", s.shipped_on.0, s.arrives_on.0),
                ),
            ]
        })
        .unwrap_or_default();
    let today = edge
        .node
        .config
        .timezone
        .date_of(edge.node.clock.now())
        .map(|d| d.to_string())
        .unwrap_or_default();
    let form = retry
        .filter(|x| x.id == r.id)
        .map(|x| x.form.clone())
        .unwrap_or_else(|| ShipmentForm {
            item1_part: r.part_number.clone(),
            item1_qty: r.quantity.to_string(),
            shipped_on: today,
            ..ShipmentForm::default()
        });
    RequisitionRow {
        anchor: format!("requisition-{}", r.id),
        action: format!("/requisitions/{}/shipment", r.id),
        heading: format!("{} ({}) × {}", r.part_name, r.part_number, r.quantity),
        job_href: format!("/jobs/{}", r.job_id),
        facts,
        shipment,
        late: r
            .shipment
            .as_ref()
            .is_some_and(|s| s.arrives_on.0 > r.needed_by.0),
        form,
    }
}

async fn requisitions_response(
    edge: &Edge,
    signed: &Signed,
    form: RequisitionForm,
    retry: Option<Retry<ShipmentForm>>,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let lang = signed.user.lang;
    let all = match records::list::<Requisition>(edge, RecordFilter::default()).await {
        Ok(all) => all,
        Err(e) => return error_page(e.status, &e.message),
    };
    let (mut open, mut shipped): (Vec<Requisition>, Vec<Requisition>) = all
        .into_iter()
        .map(|s| s.value)
        .partition(|r| r.shipment.is_none());
    // Waiting: the one needed first on top; shipped: the newest first.
    open.sort_by_key(|r| (r.needed_by.0, r.requested_at));
    shipped.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
    let row = |r: &Requisition| requisition_row(edge, lang, r, retry.as_ref());
    let page = RequisitionsPage {
        chrome: edge
            .console
            .chrome(signed, lang.t("requisitions"), "/requisitions"),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        open: open.iter().map(row).collect(),
        shipped: shipped.iter().map(row).collect(),
        form,
        jobs: if STAFF.contains(&signed.role) {
            job_choices(edge).await
        } else {
            Vec::new()
        },
        notice,
    };
    render(status, &page)
}

/// `GET /requisitions`: the branch's requisitions and the forms.
async fn requisitions_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let signed = match edge
        .console
        .require(&headers, "/requisitions", EVERYONE)
        .await
    {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let notice = done_notice(signed.user.lang, q.done.as_deref());
    let form = RequisitionForm {
        job_id: q.job.unwrap_or_default(),
        quantity: "1".into(),
        ..RequisitionForm::default()
    };
    requisitions_response(&edge, &signed, form, None, StatusCode::OK, notice).await
}

/// The customer of job `id` as its document names it, for a requisition typed without one.
async fn customer_of_job(edge: &Edge, id: &str) -> Option<CustomerId> {
    let id = crate::http::parse_job_id(id).ok()?;
    let doc = edge.node.load_document(id).await.ok()??;
    read_job(&doc).ok().map(|j| j.customer.id)
}

/// The form as the API's input (R17): the customer taken from the job when left empty.
async fn new_requisition(
    edge: &Edge,
    f: &RequisitionForm,
    requested_by: &str,
) -> Result<NewRequisition, ApiError> {
    let customer_id = match optional(&f.customer_id) {
        Some(c) => CustomerId::new(c).map_err(|e| field_error("customer_id", e))?,
        // The API's refusal of a job it does not know comes first.
        None => match customer_of_job(edge, &known_job(edge, "job_id", f.job_id.trim())?).await {
            Some(c) => c,
            None => return Err(field_error("customer_id", "the customer is needed (R17)")),
        },
    };
    Ok(NewRequisition {
        job_id: f.job_id.trim().to_owned(),
        part_number: f.part_number.trim().to_owned(),
        part_name: f.part_name.trim().to_owned(),
        specification: f.specification.trim().to_owned(),
        material: f.material.trim().to_owned(),
        quantity: quantity("quantity", &f.quantity)?,
        needed_by: required_date("needed_by", &f.needed_by)?,
        customer_id,
        order_number: f.order_number.trim().to_owned(),
        requested_by: requested_by.to_owned(),
    })
}

/// `POST /requisitions`: requisitions parts against a job (R17, R18).
async fn requisition_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<RequisitionForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/requisitions", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let done = match new_requisition(&edge, &form, &signed.user.display_name).await {
        Ok(new) => requisition_parts(&edge, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(r) => see_other(&format!(
            "/requisitions?done=requisition_created#requisition-{}",
            r.id
        )),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            requisitions_response(&edge, &signed, form, None, e.status, Some(notice)).await
        }
    }
}

/// The shipment form as the API's input (R17): the lines filled in.
fn new_shipment(f: &ShipmentForm) -> Result<Shipment, ApiError> {
    let mut items = Vec::new();
    for (n, part, qty) in [
        (1, &f.item1_part, &f.item1_qty),
        (2, &f.item2_part, &f.item2_qty),
        (3, &f.item3_part, &f.item3_qty),
    ] {
        if optional(part).is_none() && optional(qty).is_none() {
            continue;
        }
        items.push(ShippedItem {
            part_number: part.trim().to_owned(),
            quantity: quantity(&format!("item {n} quantity"), qty)?,
        });
    }
    Ok(Shipment {
        address: f.address.trim().to_owned(),
        recipient: f.recipient.trim().to_owned(),
        contact: f.contact.trim().to_owned(),
        items,
        shipped_on: required_date("shipped_on", &f.shipped_on)?,
        arrives_on: required_date("arrives_on", &f.arrives_on)?,
    })
}

/// `POST /requisitions/{id}/shipment`: records how the parts were shipped (R17).
async fn shipment_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ShipmentForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/requisitions", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let done = match new_shipment(&form) {
        Ok(shipment) => ship_requisition(&edge, &id, shipment, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => see_other(&format!("/requisitions?done=shipped#requisition-{id}")),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            let retry = Some(Retry { id, form });
            let blank = RequisitionForm {
                quantity: "1".into(),
                ..RequisitionForm::default()
            };
            requisitions_response(&edge, &signed, blank, retry, e.status, Some(notice)).await
        }
    }
}

// ---- the tool register (R19) ----

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ToolForm {
    csrf: String,
    id: String,
    name: String,
    /// A checkbox: `on` when ticked.
    bought_in_field: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct LendForm {
    csrf: String,
    technician: String,
    due_back: String,
    job_id: String,
    note: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ReturnForm {
    csrf: String,
    note: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct LossForm {
    csrf: String,
    /// In the currency's major unit, as a person writes it: `350` or `350.00`.
    charge: String,
    currency: String,
    note: String,
}

/// A refused tool form, typed values kept.
enum ToolRetry {
    Lend(LendForm),
    Return(ReturnForm),
    Loss(LossForm),
}

struct ToolRow {
    anchor: String,
    id: String,
    name: String,
    bought_in_field: bool,
    /// available, on_loan, overdue or lost (the tag's class).
    status: &'static str,
    status_label: &'static str,
    /// On loan: to whom, since when, due back, for which job, how long.
    holder: String,
    since: String,
    held_for: String,
    due_back: String,
    job_href: Option<String>,
    note: String,
    /// Lost: who pays what.
    loss: String,
    lend: Option<LendForm>,
    give_back: Option<ReturnForm>,
    lose: Option<LossForm>,
}

#[derive(Template)]
#[template(path = "edge/tools.html")]
struct ToolsPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    tools: Vec<ToolRow>,
    on_loan: usize,
    overdue: usize,
    technicians: Vec<String>,
    jobs: Vec<JobChoice>,
    form: ToolForm,
    notice: Option<Notice>,
}

fn tool_row(
    edge: &Edge,
    signed: &Signed,
    v: &ToolView,
    now: Instant,
    retry: Option<&Retry<ToolRetry>>,
) -> ToolRow {
    let lang = signed.user.lang;
    let console = &edge.console;
    let tool = &v.tool;
    let loan = tool.current_loan().filter(|_| tool.loss.is_none());
    let (status, status_label) = match (v.status.as_str(), v.overdue) {
        ("lost", _) => ("lost", lang.t("tool_lost")),
        ("on_loan", true) => ("overdue", lang.t("tool_overdue")),
        ("on_loan", false) => ("on_loan", lang.t("tool_on_loan")),
        _ => ("available", lang.t("tool_available")),
    };
    let staff = STAFF.contains(&signed.role);
    let retry = retry.filter(|r| r.id == tool.id).map(|r| &r.form);
    let default_due = edge
        .node
        .config
        .timezone
        .local_input(now.0.plus_millis(24 * 3_600_000));
    ToolRow {
        anchor: format!("tool-{}", tool.id),
        id: tool.id.clone(),
        name: tool.name.clone(),
        bought_in_field: tool.bought_in_field,
        status,
        status_label,
        holder: loan.map(|l| l.technician.to_string()).unwrap_or_default(),
        since: loan.map(|l| console.time(l.lent_at.0)).unwrap_or_default(),
        held_for: loan
            .map(|l| age(lang, l.lent_at.0, now.0))
            .unwrap_or_default(),
        due_back: loan.map(|l| console.time(l.due_back.0)).unwrap_or_default(),
        job_href: loan
            .and_then(|l| l.job_id.as_ref())
            .map(|j| format!("/jobs/{j}")),
        note: loan.map(|l| l.note.clone()).unwrap_or_default(),
        loss: tool
            .loss
            .as_ref()
            .map(|l| {
                format!(
                    "{} {} {} · {}",
                    l.technician,
                    lang.t("tool_pays"),
                    money(Money(l.charge), &l.currency),
                    console.time(l.reported_at.0)
                )
            })
            .unwrap_or_default(),
        lend: (staff && status == "available").then(|| match retry {
            Some(ToolRetry::Lend(f)) => f.clone(),
            _ => LendForm {
                due_back: default_due,
                ..LendForm::default()
            },
        }),
        give_back: (staff && loan.is_some()).then(|| match retry {
            Some(ToolRetry::Return(f)) => f.clone(),
            _ => ReturnForm::default(),
        }),
        lose: (MANAGERS.contains(&signed.role) && loan.is_some()).then(|| match retry {
            Some(ToolRetry::Loss(f)) => f.clone(),
            _ => LossForm {
                currency: "CNY".into(),
                ..LossForm::default()
            },
        }),
    }
}

async fn tools_response(
    edge: &Edge,
    signed: &Signed,
    form: ToolForm,
    retry: Option<Retry<ToolRetry>>,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let lang = signed.user.lang;
    let now = Instant(edge.node.clock.now());
    let mut all = match tools_at(edge, now, false).await {
        Ok(all) => all,
        Err(e) => return error_page(e.status, &e.message),
    };
    // Overdue first, then on loan (due back soonest first), available, lost.
    let rank = |v: &ToolView| match (v.status.as_str(), v.overdue) {
        ("on_loan", true) => 0,
        ("on_loan", false) => 1,
        ("available", _) => 2,
        _ => 3,
    };
    all.sort_by(|a, b| {
        let due = |v: &ToolView| v.tool.current_loan().map(|l| l.due_back);
        (rank(a), due(a), &a.tool.id).cmp(&(rank(b), due(b), &b.tool.id))
    });
    let page = ToolsPage {
        chrome: edge.console.chrome(signed, lang.t("tools"), "/tools"),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        on_loan: all.iter().filter(|v| v.status == "on_loan").count(),
        overdue: all.iter().filter(|v| v.overdue).count(),
        tools: all
            .iter()
            .map(|v| tool_row(edge, signed, v, now, retry.as_ref()))
            .collect(),
        jobs: if STAFF.contains(&signed.role) {
            job_choices(edge).await
        } else {
            Vec::new()
        },
        technicians: enrolled_technicians(edge)
            .into_keys()
            .map(|t| t.to_string())
            .collect(),
        form,
        notice,
    };
    render(status, &page)
}

/// `GET /tools`: the register, who holds each tool and since when, overdue first (R19).
async fn tools_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let signed = match edge.console.require(&headers, "/tools", EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let notice = done_notice(signed.user.lang, q.done.as_deref());
    tools_response(
        &edge,
        &signed,
        ToolForm::default(),
        None,
        StatusCode::OK,
        notice,
    )
    .await
}

/// `POST /tools`: puts a tool in the register (R19; one bought in the field too).
async fn tool_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<ToolForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/tools", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let new = NewTool {
        id: form.id.trim().to_owned(),
        name: form.name.trim().to_owned(),
        bought_in_field: !form.bought_in_field.is_empty(),
    };
    match add_tool(&edge, new, &actor(&signed)).await {
        Ok(v) => see_other(&format!("/tools?done=tool_registered#tool-{}", v.tool.id)),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            tools_response(&edge, &signed, form, None, e.status, Some(notice)).await
        }
    }
}

/// The lend form as the API's input: the due-back time typed in the branch's zone.
fn new_loan(zone: &Zone, f: &LendForm) -> Result<NewLoan, ApiError> {
    Ok(NewLoan {
        technician: TechnicianId::new(f.technician.trim())
            .map_err(|e| field_error("technician", e))?,
        due_back: local_time(zone, "due_back", &f.due_back)?,
        job_id: optional(&f.job_id).map(str::to_owned),
        note: f.note.trim().to_owned(),
    })
}

/// A tool form's answer: back to the register, or the register with the refusal.
async fn tool_answer<T>(
    edge: &Edge,
    signed: &Signed,
    id: String,
    done: Result<T, ApiError>,
    what: &str,
    retry: ToolRetry,
) -> Response {
    match done {
        Ok(_) => see_other(&format!("/tools?done={what}#tool-{id}")),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            let retry = Some(Retry { id, form: retry });
            let blank = ToolForm::default();
            tools_response(edge, signed, blank, retry, e.status, Some(notice)).await
        }
    }
}

/// `POST /tools/{id}/loans`: lends a tool to a technician (R19).
async fn lend_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<LendForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/tools", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let done = match new_loan(&edge.node.config.timezone, &form) {
        Ok(new) => lend(&edge, &id, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    tool_answer(&edge, &signed, id, done, "lent", ToolRetry::Lend(form)).await
}

/// `POST /tools/{id}/return`: the tool is back (R19).
async fn return_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ReturnForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/tools", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let new = NewReturn {
        note: form.note.trim().to_owned(),
    };
    let done = take_back(&edge, &id, new, &actor(&signed)).await;
    tool_answer(
        &edge,
        &signed,
        id,
        done,
        "returned",
        ToolRetry::Return(form),
    )
    .await
}

/// The lost form as the API's input: the charge typed in major units (R19).
fn new_loss(f: &LossForm) -> Result<NewLoss, ApiError> {
    let charge = Money::parse_decimal(&f.charge).map_err(|e| field_error("charge", e))?;
    Ok(NewLoss {
        charge: charge.0,
        currency: optional(&f.currency).map(str::to_uppercase),
        note: f.note.trim().to_owned(),
    })
}

/// `POST /tools/{id}/lost`: a lent tool is lost and paid for by whoever had it (R19; a
/// manager's decision).
async fn lost_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<LossForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/tools", MANAGERS, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let done = match new_loss(&form) {
        Ok(new) => record_loss(&edge, &id, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    tool_answer(&edge, &signed, id, done, "lost", ToolRetry::Loss(form)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r17_the_shipment_form_keeps_the_lines_filled_in() {
        let form = ShipmentForm {
            address: "上海市嘉定区 8 号".into(),
            recipient: "陈先生".into(),
            contact: "138".into(),
            item1_part: "CMP-7".into(),
            item1_qty: "2".into(),
            item3_part: "SEAL-1".into(),
            item3_qty: " 4 ".into(),
            shipped_on: "2026-11-20".into(),
            arrives_on: "2026-11-22".into(),
            ..ShipmentForm::default()
        };
        let s = new_shipment(&form).expect("a shipment");
        let lines: Vec<(&str, u32)> = s
            .items
            .iter()
            .map(|i| (i.part_number.as_str(), i.quantity))
            .collect();
        assert_eq!(lines, [("CMP-7", 2), ("SEAL-1", 4)]);
        let bad = ShipmentForm {
            item2_part: "X".into(),
            item2_qty: "two".into(),
            ..form.clone()
        };
        assert_eq!(
            new_shipment(&bad).map(|_| ()).expect_err("refused").code,
            "invalid_field"
        );
        let undated = ShipmentForm {
            arrives_on: String::new(),
            ..form
        };
        assert!(new_shipment(&undated).is_err());
    }

    #[test]
    fn r19_a_lost_tools_charge_is_typed_as_money() {
        let form = LossForm {
            charge: "350.5".into(),
            currency: "cny".into(),
            ..LossForm::default()
        };
        let loss = new_loss(&form).expect("a loss");
        assert_eq!(
            (loss.charge, loss.currency.as_deref()),
            (35_050, Some("CNY"))
        );
        let bad = LossForm {
            charge: "3.505".into(),
            ..form
        };
        assert!(new_loss(&bad).is_err());
    }
}
