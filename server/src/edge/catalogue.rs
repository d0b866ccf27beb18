//! The desk's catalogue in the console (issue 14, point 3): the fault-category list
//! (`/fault-categories`, R4, R27; managers add and retire categories) and the customers'
//! files (`/customers`, `/customers/{id}`, R26, R6: products, their repair history, the
//! maintenance plans that dispatchers and managers set and stop).
//!
//! The forms follow `edge::forms`: a plain POST carrying the session's CSRF token, checked
//! after the role; each calls the function the JSON API calls (`desk::categories::add`,
//! `retire`), so the rules and the audit entry are the API's. Done, a 303 to the page with
//! `?done=…`; refused, the page again with the refusal in words and the refusal's status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use fieldsync_shared::desk::fault_category::unlisted;

use super::Edge;
use super::desk::categories::{self, FaultCategory};
use super::desk::customers::customer_file;
use super::desk::dispatch::JobDesk;
use super::desk::products::{self, NewPlan, ProductFile};
use super::desk::records::{self, DeskRecord};
use crate::auth::{Actor, DeskRole, EVERYONE, MANAGERS, STAFF};
use crate::console::i18n::Lang;
use crate::console::{Chrome, Notice, Signed, error_page, message_page, render};
use crate::http::error::ApiError;
use fieldsync_storage::RecordFilter;

/// The catalogue's pages and forms, on the edge's state.
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route("/fault-categories", get(categories_page).post(add_post))
        .route("/fault-categories/{id}/retire", post(retire_post))
        .route("/customers", get(customers_page))
        .route("/customers/{id}", get(customer_page))
        .route("/products/{id}/plan", post(plan_post))
        .route("/products/{id}/plan/stop", post(stop_post))
}

/// The person signed in, as the desk's functions record who did it.
fn actor(signed: &Signed) -> Actor {
    Actor {
        role: signed.role,
        person: Some(signed.user.name.clone()),
    }
}

/// A form's opening: signed in with one of `roles`, the form parsed, the CSRF token the
/// session's. Nothing has changed when it answers `Err`.
async fn posted<T>(
    edge: &Edge,
    headers: &HeaderMap,
    path: &str,
    roles: &[DeskRole],
    form: Result<Form<T>, FormRejection>,
    csrf: impl FnOnce(&T) -> &str,
) -> Result<(Signed, T), Response> {
    let signed = edge.console.require(headers, path, roles).await?;
    let Ok(Form(form)) = form else {
        return Err(message_page(
            StatusCode::BAD_REQUEST,
            signed.user.lang,
            "form_expired",
        ));
    };
    match edge.console.csrf_refusal(&signed, csrf(&form)) {
        Some(answer) => Err(answer),
        None => Ok((signed, form)),
    }
}

/// `?done=…` on a catalogue page: the notice's label key.
fn done_key(done: &str) -> Option<&'static str> {
    Some(match done {
        "category_added" => "done_category_added",
        "category_retired" => "done_category_retired",
        "plan_set" => "done_plan_set",
        "plan_stopped" => "done_plan_stopped",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DoneQuery {
    done: Option<String>,
}

// ---- fault categories (R4, R27) ----

/// Of `jobs`, those whose desk category (the job's desk record) is not in the desk's list.
pub async fn unlisted_jobs<'a>(
    edge: &Edge,
    jobs: impl Iterator<Item = &'a str>,
) -> Result<HashSet<String>, ApiError> {
    let listed = categories::in_force(edge).await?;
    let ids: Vec<String> = jobs.map(str::to_owned).collect();
    // One trip to the store for the page's jobs (a page of 50 made 50 before).
    let desks = records::load_many::<JobDesk>(edge, ids).await?;
    Ok(desks
        .into_iter()
        .filter(|desk| {
            desk.value
                .fault_category
                .as_deref()
                .is_some_and(|c| unlisted(c, listed.iter().map(String::as_str)))
        })
        .map(|desk| desk.value.id().to_owned())
        .collect())
}

/// A job's or request's fault category as people read it: the name, marked "not in the
/// list" when the desk's list (`listed`, `categories::in_force`) does not have it (R4, R27);
/// "none yet" without one.
pub fn category_text(listed: &[String], lang: Lang, category: Option<&str>) -> String {
    let Some(category) = category.map(str::trim).filter(|c| !c.is_empty()) else {
        return lang.t("none_yet").to_owned();
    };
    if unlisted(category, listed.iter().map(String::as_str)) {
        format!("{category} ({})", lang.t("not_in_list"))
    } else {
        category.to_owned()
    }
}

struct CategoryRow {
    id: String,
    name: String,
    added: String,
    retired: Option<String>,
    retire_action: String,
}

#[derive(Template)]
#[template(path = "edge/fault_categories.html")]
struct CategoriesPage {
    chrome: Chrome,
    csrf: String,
    manager: bool,
    name: String,
    rows: Vec<CategoryRow>,
    notice: Option<Notice>,
}

async fn categories_response(
    edge: &Edge,
    signed: &Signed,
    status: StatusCode,
    notice: Option<Notice>,
    name: String,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let list = match categories::all(edge).await {
        Ok(list) => list,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let rows = list
        .into_iter()
        .map(|c: FaultCategory| CategoryRow {
            retire_action: format!("/fault-categories/{}/retire", c.id),
            added: format!("{} · {}", console.time(c.added_at.0), c.added_by),
            retired: c.retired_at.map(|at| {
                format!(
                    "{} · {}",
                    console.time(at.0),
                    c.retired_by.unwrap_or_default()
                )
            }),
            id: c.id,
            name: c.name,
        })
        .collect();
    let page = CategoriesPage {
        chrome: console.chrome(signed, lang.t("fault_categories"), "/fault-categories"),
        csrf: signed.csrf.clone(),
        manager: MANAGERS.contains(&signed.role),
        name,
        rows,
        notice,
    };
    render(status, &page)
}

/// `GET /fault-categories`: the list, with the managers' forms.
async fn categories_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let signed = match edge
        .console
        .require(&headers, "/fault-categories", EVERYONE)
        .await
    {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang: Lang = signed.user.lang;
    let notice = q
        .ok()
        .and_then(|Query(q)| q.done)
        .as_deref()
        .and_then(done_key)
        .map(|k| Notice::done(lang, k));
    categories_response(&edge, &signed, StatusCode::OK, notice, String::new()).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CategoryForm {
    csrf: String,
    name: String,
}

/// `POST /fault-categories`: a manager adds a category.
async fn add_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<CategoryForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/fault-categories", MANAGERS, form, |f| {
        &f.csrf
    })
    .await
    {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    match categories::add(&edge, &form.name, &actor(&signed)).await {
        Ok(_) => Redirect::to("/fault-categories?done=category_added").into_response(),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            categories_response(&edge, &signed, e.status, Some(notice), form.name).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RetireForm {
    csrf: String,
}

/// `POST /fault-categories/{id}/retire`: a manager takes a category off the list.
async fn retire_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RetireForm>, FormRejection>,
) -> Response {
    let (signed, _form) = match posted(&edge, &headers, "/fault-categories", MANAGERS, form, |f| {
        &f.csrf
    })
    .await
    {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    match categories::retire(&edge, &id, &actor(&signed)).await {
        Ok(_) => Redirect::to("/fault-categories?done=category_retired").into_response(),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            categories_response(&edge, &signed, e.status, Some(notice), String::new()).await
        }
    }
}

// ---- customer files (R26, R6) ----

struct CustomerLink {
    href: String,
    id: String,
    name: String,
    products: usize,
}

#[derive(Template)]
#[template(path = "edge/customers.html")]
struct CustomersPage {
    chrome: Chrome,
    customers: Vec<CustomerLink>,
}

/// `GET /customers`: the customers with a product on file.
async fn customers_page(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let signed = match edge.console.require(&headers, "/customers", EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let files = match records::list::<ProductFile>(&edge, RecordFilter::default()).await {
        Ok(f) => f,
        Err(e) => return error_page(e.status, &e.message),
    };
    let mut by_customer: BTreeMap<String, CustomerLink> = BTreeMap::new();
    for file in files.into_iter().map(|s| s.value) {
        let id = file.customer.id.to_string();
        let link = by_customer
            .entry(id.clone())
            .or_insert_with(|| CustomerLink {
                href: format!("/customers/{}", crate::console::encode(&id)),
                id,
                name: file.customer.name.clone(),
                products: 0,
            });
        link.products += 1;
    }
    let page = CustomersPage {
        chrome: edge
            .console
            .chrome(&signed, lang.t("customers"), "/customers"),
        customers: by_customer.into_values().collect(),
    };
    render(StatusCode::OK, &page)
}

struct RepairLine {
    href: String,
    received: String,
    kind: &'static str,
    status: &'static str,
    technicians: String,
    /// R6: what was done: cause, solution, parts.
    content: String,
    signed: String,
}

struct ProductBlock {
    id: String,
    serial: String,
    model: String,
    product_type: String,
    purchase_date: String,
    warranty_end: String,
    /// Under warranty today (R10), when the end is known.
    in_warranty: Option<bool>,
    plan: Option<String>,
    visits: Vec<(String, String)>,
    plan_action: String,
    stop_action: String,
    /// The form's values (a refused form comes back with what was typed).
    interval: String,
    next_due: String,
    technician: String,
    jobs: Vec<RepairLine>,
}

#[derive(Template)]
#[template(path = "edge/customer.html")]
struct CustomerPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    name: String,
    id: String,
    contact: String,
    address: String,
    products: Vec<ProductBlock>,
    notice: Option<Notice>,
}

fn status_key(status: &str) -> &'static str {
    match status {
        "signed" => "status_signed",
        "refused" => "status_refused",
        "cancelled" => "status_cancelled",
        "completed" => "status_completed",
        "on_site" => "status_on_site",
        _ => "status_new",
    }
}

fn job_kind_key(kind: fieldsync_shared::job::JobKind) -> &'static str {
    use fieldsync_shared::job::JobKind;
    match kind {
        JobKind::Repair => "kind_repair",
        JobKind::Installation => "kind_installation",
        JobKind::Maintenance => "kind_maintenance",
        JobKind::FollowUp => "kind_follow_up",
    }
}

/// A plan form as typed, to show again with a refusal.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PlanForm {
    csrf: String,
    interval_months: String,
    next_due: String,
    technician: String,
}

async fn customer_response(
    edge: &Edge,
    signed: &Signed,
    id: &str,
    status: StatusCode,
    notice: Option<Notice>,
    typed: Option<(&str, &PlanForm)>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let file = match customer_file(edge, id).await {
        Ok(Some(f)) => f,
        Ok(None) => return message_page(StatusCode::NOT_FOUND, lang, "not_found"),
        Err(e) => return error_page(e.status, &e.message),
    };
    let today = edge
        .node
        .config
        .timezone
        .date_of(edge.node.clock.now())
        .ok();
    let date = |d: Option<crate::http::wire::Date>| {
        d.map(|d| d.0.to_string())
            .unwrap_or_else(|| t("none_yet").to_owned())
    };
    let products = file
        .products
        .into_iter()
        .map(|h| {
            let p = h.product;
            let typed = typed.filter(|(pid, _)| *pid == p.id).map(|(_, f)| f);
            let plan = p.plan.as_ref().map(|plan| {
                format!(
                    "{} {} · {} {} · {}",
                    plan.interval_months,
                    t("months"),
                    t("next_visit"),
                    plan.next_due.0,
                    plan.technician
                )
            });
            ProductBlock {
                plan_action: format!("/products/{}/plan", p.id),
                stop_action: format!("/products/{}/plan/stop", p.id),
                interval: typed.map_or_else(
                    || {
                        p.plan
                            .as_ref()
                            .map_or("6".to_owned(), |x| x.interval_months.to_string())
                    },
                    |f| f.interval_months.clone(),
                ),
                next_due: typed.map_or_else(
                    || {
                        p.plan
                            .as_ref()
                            .map(|x| x.next_due.0.to_string())
                            .unwrap_or_default()
                    },
                    |f| f.next_due.clone(),
                ),
                technician: typed.map_or_else(
                    || {
                        p.plan
                            .as_ref()
                            .map(|x| x.technician.to_string())
                            .unwrap_or_default()
                    },
                    |f| f.technician.clone(),
                ),
                in_warranty: p.warranty_end.zip(today).map(|(end, today)| today <= end.0),
                plan,
                visits: p
                    .visits
                    .iter()
                    .map(|v| (format!("/jobs/{}", v.job_id), v.due.0.to_string()))
                    .collect(),
                purchase_date: date(p.purchase_date),
                warranty_end: date(p.warranty_end),
                jobs: h
                    .jobs
                    .iter()
                    .map(|j| {
                        let mut content: Vec<String> = Vec::new();
                        content.push(j.fault_description.clone());
                        if let Some(c) = &j.fault_cause {
                            content.push(format!("{}: {c}", t("fault_cause")));
                        }
                        if let Some(s) = &j.solution {
                            content.push(format!("{}: {s}", t("solution")));
                        }
                        if !j.parts.is_empty() {
                            content.push(format!("{}: {}", t("parts"), j.parts.join(", ")));
                        }
                        RepairLine {
                            href: format!("/jobs/{}", j.job_id),
                            received: console.time(j.received_at.0),
                            kind: t(job_kind_key(j.kind)),
                            status: t(status_key(&j.status)),
                            technicians: j.technicians.join(", "),
                            content: content.join(" · "),
                            signed: j.signed_at.map(|s| console.time(s.0)).unwrap_or_default(),
                        }
                    })
                    .collect(),
                id: p.id,
                serial: p.serial,
                model: p.model,
                product_type: p.product_type,
            }
        })
        .collect();
    let path = format!("/customers/{}", crate::console::encode(id));
    let page = CustomerPage {
        chrome: console.chrome(signed, &file.customer.name, &path),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        name: file.customer.name,
        id: file.customer.id.to_string(),
        contact: file.customer.contact,
        address: file.customer.site_address,
        products,
        notice,
    };
    render(status, &page)
}

/// `GET /customers/{id}`: the customer's file (R26): products, each with its repair
/// history (R6) and maintenance plan, the plan forms for dispatchers and managers.
async fn customer_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let path = format!("/customers/{}", crate::console::encode(&id));
    let signed = match edge.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let notice = q
        .ok()
        .and_then(|Query(q)| q.done)
        .as_deref()
        .and_then(done_key)
        .map(|k| Notice::done(lang, k));
    customer_response(&edge, &signed, &id, StatusCode::OK, notice, None).await
}

/// The customer whose file holds product `id`, or the 404 page.
async fn owner(edge: &Edge, signed: &Signed, id: &str) -> Result<String, Response> {
    match records::load::<ProductFile>(edge, id).await {
        Ok(Some(p)) => Ok(p.value.customer.id.to_string()),
        Ok(None) => Err(message_page(
            StatusCode::NOT_FOUND,
            signed.user.lang,
            "not_found",
        )),
        Err(e) => Err(error_page(e.status, &e.message)),
    }
}

/// `POST /products/{id}/plan`: sets the product's maintenance plan (R26).
async fn plan_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<PlanForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/customers", STAFF, form, |f| &f.csrf).await
    {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let customer = match owner(&edge, &signed, &id).await {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    let parsed = (|| {
        let interval_months = form.interval_months.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "invalid_field",
                format!(
                    "interval_months: {:?} is not a number of months",
                    form.interval_months
                ),
            )
        })?;
        let next_due = form
            .next_due
            .trim()
            .parse()
            .map(crate::http::wire::Date)
            .map_err(|e| ApiError::bad_request("invalid_field", format!("next_due: {e}")))?;
        Ok::<_, ApiError>(NewPlan {
            interval_months,
            next_due,
            technician: form.technician.clone(),
        })
    })();
    let result = match parsed {
        Ok(new) => products::set_plan(&edge, &id, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to(&format!(
            "/customers/{}?done=plan_set",
            crate::console::encode(&customer)
        ))
        .into_response(),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            customer_response(
                &edge,
                &signed,
                &customer,
                e.status,
                Some(notice),
                Some((&id, &form)),
            )
            .await
        }
    }
}

/// `POST /products/{id}/plan/stop`: ends the product's maintenance plan (R26).
async fn stop_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RetireForm>, FormRejection>,
) -> Response {
    let (signed, _form) =
        match posted(&edge, &headers, "/customers", STAFF, form, |f| &f.csrf).await {
            Ok(p) => p,
            Err(answer) => return answer,
        };
    let customer = match owner(&edge, &signed, &id).await {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    match products::stop_plan(&edge, &id, &actor(&signed)).await {
        Ok(_) => Redirect::to(&format!(
            "/customers/{}?done=plan_stopped",
            crate::console::encode(&customer)
        ))
        .into_response(),
        Err(e) => {
            let notice = Notice::refused(signed.user.lang, &e);
            customer_response(&edge, &signed, &customer, e.status, Some(notice), None).await
        }
    }
}
