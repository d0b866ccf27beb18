//! Complaints in the console (issue 14, R20–R23): `/complaints` lists the branch's complaints
//! (open ones first, each at its step of eight, with the customer, the job or technician it
//! is against and its age) under the month's R22 summary, and registers one (R20, R21 step
//! 1); `/complaints/{id}` shows the eight R21 steps as a checklist (done: who, when, what;
//! the next with its form) and the full R23 record.
//!
//! The forms follow `edge::forms`: a plain POST with the session's CSRF token, checked after
//! the role and the form; then the very functions the JSON API calls
//! (`desk::complaints::register_complaint`, `record_complaint_step`, `month_summary`), which
//! write the audit entry; a refusal (a step out of order, step 7 by a dispatcher) comes back
//! in words on the page with the refusal's status.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use fieldsync_shared::desk::complaint::{
    ComplaintCategory, ComplaintChannel, ComplaintStep, next_step,
};
use fieldsync_shared::ids::{CustomerId, TechnicianId};
use fieldsync_shared::time::{Month, Timestamp};
use serde::Deserialize;

use super::Edge;
use super::desk::complaints::{
    Against, Complaint, ComplaintSummary, NewComplaint, NewStep, complaints, month_summary,
    record_complaint_step, register_complaint, require_complaint,
};
use super::forms::{
    Choice, actor, bad_form, choices, field_error, local_time, optional, posted, posted_by_field,
    see_other,
};
use crate::auth::{EVERYONE, MANAGERS, STAFF};
use crate::console::i18n::Lang;
use crate::console::{Chrome, Notice, Signed, error_page, message_page, render};
use crate::http::error::ApiError;

/// The complaint routes (the edge's router gives them its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route("/complaints", get(list_page).post(register_post))
        .route("/complaints/{id}", get(complaint_page).post(step_post))
}

/// The label key of an R20 channel.
fn channel_key(c: ComplaintChannel) -> &'static str {
    match c {
        ComplaintChannel::Phone => "channel_phone",
        ComplaintChannel::Letter => "channel_letter",
        ComplaintChannel::InPerson => "channel_in_person",
        ComplaintChannel::Email => "channel_email",
        ComplaintChannel::Web => "channel_web",
    }
}

/// The label key of an R20 category.
fn category_key(c: ComplaintCategory) -> &'static str {
    match c {
        ComplaintCategory::ProductQuality => "cmp_cat_product_quality",
        ComplaintCategory::Service => "cmp_cat_service",
        ComplaintCategory::Suggestion => "cmp_cat_suggestion",
        ComplaintCategory::NonQuality => "cmp_cat_non_quality",
        ComplaintCategory::Other => "cmp_cat_other",
    }
}

/// The label key of an R22 attribution (`quality`, `non_quality`, `other`).
fn attribution_key(a: &str) -> &'static str {
    match a {
        "quality" => "cmp_attr_quality",
        "non_quality" => "cmp_attr_non_quality",
        _ => "cmp_attr_other",
    }
}

/// The label key of an R21 step.
fn step_key(s: ComplaintStep) -> &'static str {
    match s {
        ComplaintStep::Record => "cmp_step_record",
        ComplaintStep::Classify => "cmp_step_classify",
        ComplaintStep::AssignUnit => "cmp_step_assign_unit",
        ComplaintStep::Investigate => "cmp_step_investigate",
        ComplaintStep::ProposeSolution => "cmp_step_propose_solution",
        ComplaintStep::NotifyCustomer => "cmp_step_notify_customer",
        ComplaintStep::AssignResponsibility => "cmp_step_assign_responsibility",
        ComplaintStep::Improve => "cmp_step_improve",
    }
}

/// The label of a `?done=` value these forms send.
fn done_key(done: &str) -> Option<&'static str> {
    Some(match done {
        "complaint_created" => "cmp_done_created",
        "step_recorded" => "cmp_done_step",
        _ => return None,
    })
}

/// How long ago `since` was, at `now`, in words: minutes, hours, then days.
pub(super) fn age(lang: Lang, since: Timestamp, now: Timestamp) -> String {
    let minutes = (now.as_millis() - since.as_millis()).max(0) / 60_000;
    let (n, key) = if minutes < 60 {
        (minutes, "age_minutes")
    } else if minutes < 48 * 60 {
        (minutes / 60, "age_hours")
    } else {
        (minutes / (24 * 60), "age_days")
    };
    format!("{n} {}", lang.t(key))
}

/// A job offered in a form's job field (an HTML `datalist`: the id is typed for the reader).
pub(super) struct JobChoice {
    pub(super) id: String,
    pub(super) label: String,
}

/// The jobs the board lists first (most urgent first, at most 200), for the job fields: a
/// board that cannot be read leaves the field without suggestions.
pub(super) async fn job_choices(edge: &Edge) -> Vec<JobChoice> {
    let query = super::board::JobQuery {
        per_page: Some(200),
        ..super::board::JobQuery::default()
    };
    match super::board::list(edge, &query, edge.node.clock.now()).await {
        Ok(list) => list
            .jobs
            .into_iter()
            .map(|j| JobChoice {
                label: format!("{} · {} {}", j.customer_name, j.model, j.serial),
                id: j.job_id,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e.message, "no job suggestions");
            Vec::new()
        }
    }
}

/// R22's rate as a person reads it: a percentage, or a dash without reports.
fn rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

// ---- the list and the registration (R20, R21 step 1, R22) ----

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    month: Option<String>,
    /// Prefills the registration form's job (a link from elsewhere).
    job: Option<String>,
    done: Option<String>,
}

/// The registration form as typed (every field a string, so a refused form comes back).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ComplaintForm {
    csrf: String,
    channel: String,
    category: String,
    received_at: String,
    complainant: String,
    contact: String,
    customer_id: String,
    against_job: String,
    against_technician: String,
    content: String,
    asks: String,
}

posted_by_field!(ComplaintForm, StepForm);

struct ComplaintRow {
    href: String,
    anchor: String,
    /// `3/8 · Assign the responsible unit`, or closed.
    step: String,
    open: bool,
    customer: String,
    category: &'static str,
    job_href: Option<String>,
    technician: String,
    received: String,
    age: String,
}

/// The month's R22 summary in words.
struct SummaryView {
    month: String,
    complaints: usize,
    reports: usize,
    rate: String,
    open: usize,
    valid: usize,
    not_valid: usize,
    by_attribution: Vec<Count>,
    by_category: Vec<Count>,
}

/// A count with its label.
struct Count {
    label: &'static str,
    n: usize,
}

#[derive(Template)]
#[template(path = "edge/complaints.html")]
struct ComplaintsPage {
    chrome: Chrome,
    csrf: String,
    staff: bool,
    summary: SummaryView,
    rows: Vec<ComplaintRow>,
    form: ComplaintForm,
    channels: Vec<Choice>,
    categories: Vec<Choice>,
    jobs: Vec<JobChoice>,
    notice: Option<Notice>,
}

fn summary_view(lang: Lang, s: &ComplaintSummary) -> SummaryView {
    SummaryView {
        month: s.month.to_string(),
        complaints: s.complaints,
        reports: s.reports_verified,
        rate: rate(s.rate),
        open: s.open,
        valid: s.valid,
        not_valid: s.not_valid,
        by_attribution: s
            .by_attribution
            .iter()
            .map(|(a, n)| Count {
                label: lang.t(attribution_key(a)),
                n: *n,
            })
            .collect(),
        by_category: s
            .by_category
            .iter()
            .filter_map(|(c, n)| {
                ComplaintCategory::parse(c).map(|c| Count {
                    label: lang.t(category_key(c)),
                    n: *n,
                })
            })
            .collect(),
    }
}

/// The step a complaint stands at, in words.
fn step_words(lang: Lang, c: &Complaint) -> (String, bool) {
    match next_step(&c.done()) {
        Some(next) => (
            format!("{}/8 · {}", next.number(), lang.t(step_key(next))),
            true,
        ),
        None => (lang.t("cmp_closed").to_owned(), false),
    }
}

async fn list_response(
    edge: &Edge,
    signed: &Signed,
    month: Option<&str>,
    form: ComplaintForm,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let now = edge.node.clock.now();
    let zone = &edge.node.config.timezone;
    let (month, notice) = match month.and_then(optional).map(str::parse::<Month>) {
        Some(Ok(m)) => (m, notice),
        parsed => {
            let notice = match parsed {
                Some(Err(e)) => Some(Notice::refused(lang, &field_error("month", e))),
                _ => notice,
            };
            match zone.month_of(now) {
                Ok(m) => (m, notice),
                Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
    };
    let summary = match month_summary(edge, month).await {
        Ok(s) => s,
        Err(e) => return error_page(e.status, &e.message),
    };
    let mut all = match complaints(edge, false).await {
        Ok(c) => c,
        Err(e) => return error_page(e.status, &e.message),
    };
    // Open first, the oldest of them first; then the closed ones, newest first.
    all.sort_by_key(|c| {
        let open = next_step(&c.done()).is_some();
        let at = c.received_at.0.as_millis();
        (!open, if open { at } else { -at })
    });
    let rows = all
        .iter()
        .map(|c| {
            let (step, open) = step_words(lang, c);
            let mut customer = c.complainant.clone();
            if let Some(id) = &c.customer_id {
                customer.push_str(&format!(" ({id})"));
            }
            ComplaintRow {
                href: format!("/complaints/{}", c.id),
                anchor: format!("complaint-{}", c.id),
                step,
                open,
                customer,
                category: lang.t(category_key(c.category)),
                job_href: c.against_job.as_ref().map(|j| format!("/jobs/{j}")),
                technician: c
                    .against_technician
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                received: console.time(c.received_at.0),
                age: age(lang, c.received_at.0, now),
            }
        })
        .collect();
    let channel = if form.channel.is_empty() {
        "phone".to_owned()
    } else {
        form.channel.clone()
    };
    let category = if form.category.is_empty() {
        "service".to_owned()
    } else {
        form.category.clone()
    };
    let page = ComplaintsPage {
        chrome: console.chrome(signed, lang.t("complaints"), "/complaints"),
        csrf: signed.csrf.clone(),
        staff: STAFF.contains(&signed.role),
        summary: summary_view(lang, &summary),
        rows,
        jobs: if STAFF.contains(&signed.role) {
            job_choices(edge).await
        } else {
            Vec::new()
        },
        channels: choices(
            lang,
            &channel,
            ComplaintChannel::ALL.map(|c| (c.as_str(), channel_key(c))),
        ),
        categories: choices(
            lang,
            &category,
            ComplaintCategory::ALL.map(|c| (c.as_str(), category_key(c))),
        ),
        form,
        notice,
    };
    render(status, &page)
}

/// `GET /complaints?month=YYYY-MM`: the branch's complaints and the month's R22 summary
/// (this month in the branch's zone by default); the registration form for the staff.
async fn list_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let signed = match edge
        .console
        .require(&headers, "/complaints", EVERYONE)
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
    let form = ComplaintForm {
        received_at: edge.node.config.timezone.local_input(edge.node.clock.now()),
        against_job: q.job.unwrap_or_default(),
        ..ComplaintForm::default()
    };
    list_response(
        &edge,
        &signed,
        q.month.as_deref(),
        form,
        StatusCode::OK,
        notice,
    )
    .await
}

/// The registration form as the API's input (R20, R21 step 1): the time read in the
/// branch's zone, the person signed in as who recorded it.
fn new_complaint(
    zone: &fieldsync_shared::zone::Zone,
    f: &ComplaintForm,
    recorded_by: &str,
) -> Result<NewComplaint, ApiError> {
    let channel = ComplaintChannel::parse(f.channel.trim())
        .ok_or_else(|| field_error("channel", format!("{:?} is not a channel", f.channel)))?;
    let category = ComplaintCategory::parse(f.category.trim())
        .ok_or_else(|| field_error("category", format!("{:?} is not a category", f.category)))?;
    let customer_id = optional(&f.customer_id)
        .map(CustomerId::new)
        .transpose()
        .map_err(|e| field_error("customer_id", e))?;
    let technician = optional(&f.against_technician)
        .map(TechnicianId::new)
        .transpose()
        .map_err(|e| field_error("against_technician", e))?;
    Ok(NewComplaint {
        channel,
        category,
        received_at: local_time(zone, "received_at", &f.received_at)?,
        complainant: f.complainant.trim().to_owned(),
        contact: f.contact.trim().to_owned(),
        customer_id,
        against: Against {
            job_id: optional(&f.against_job).map(str::to_owned),
            technician,
        },
        content: f.content.trim().to_owned(),
        asks: f.asks.trim().to_owned(),
        recorded_by: recorded_by.to_owned(),
    })
}

/// `POST /complaints`: registers a complaint (R20, R21 step 1) and goes to its page.
async fn register_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    form: Result<Form<ComplaintForm>, FormRejection>,
) -> Response {
    let (signed, form) = match posted(&edge, &headers, "/complaints", STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let done = match new_complaint(&edge.node.config.timezone, &form, &signed.user.display_name) {
        Ok(new) => register_complaint(&edge, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(c) => see_other(&format!("/complaints/{}?done=complaint_created", c.id)),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            list_response(&edge, &signed, None, form, e.status, Some(notice)).await
        }
    }
}

// ---- one complaint: the eight steps (R21) and the record (R23) ----

/// The step form as typed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct StepForm {
    csrf: String,
    /// The step the form was for (a form left open while someone else recorded it is
    /// refused as already recorded, not taken as the next one).
    step: String,
    what: String,
    at: String,
    /// `yes` or `no` (step 2).
    valid: String,
    category: String,
    unit: String,
    customer_reaction: String,
    responsible: String,
    penalty: String,
}

struct Fact {
    label: &'static str,
    value: String,
}

/// One of the eight steps on the checklist.
struct StepRow {
    number: usize,
    name: &'static str,
    label: &'static str,
    /// done, next or later.
    state: &'static str,
    /// Done: who, when, what.
    by: String,
    at: String,
    what: String,
}

/// The next step's form, when the reader may record it.
struct NextForm {
    step: &'static str,
    label: &'static str,
    number: usize,
    form: StepForm,
    categories: Vec<Choice>,
    valid_yes: bool,
    valid_no: bool,
}

#[derive(Template)]
#[template(path = "edge/complaint.html")]
struct ComplaintPage {
    chrome: Chrome,
    csrf: String,
    action: String,
    heading: String,
    facts: Vec<Fact>,
    job_href: Option<String>,
    steps: Vec<StepRow>,
    next: Option<NextForm>,
    /// The next step needs a role the reader does not have (step 7: a manager).
    needs_manager: bool,
    closed: bool,
    notice: Option<Notice>,
}

async fn complaint_response(
    edge: &Edge,
    signed: &Signed,
    id: &str,
    form: Option<StepForm>,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let c = match require_complaint(edge, id).await {
        Ok(c) => c.value,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return message_page(StatusCode::NOT_FOUND, lang, "not_found");
        }
        Err(e) => return error_page(e.status, &e.message),
    };
    let yes_no = |v: bool| t(if v { "yes" } else { "no" }).to_owned();
    let mut facts = vec![
        Fact {
            label: t("received"),
            value: console.time(c.received_at.0),
        },
        Fact {
            label: t("channel"),
            value: t(channel_key(c.channel)).to_owned(),
        },
        Fact {
            label: t("cmp_category"),
            value: format!(
                "{} · {} {}",
                t(category_key(c.category)),
                t("attribution"),
                t(attribution_key(c.category.attribution()))
            ),
        },
        Fact {
            label: t("cmp_complainant"),
            value: c.complainant.clone(),
        },
    ];
    let mut push = |label: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            facts.push(Fact { label, value });
        }
    };
    push(t("contact"), Some(c.contact.clone()));
    push(
        t("customer_id"),
        c.customer_id.as_ref().map(|i| i.to_string()),
    );
    push(
        t("cmp_against_technician"),
        c.against_technician.as_ref().map(|i| i.to_string()),
    );
    push(t("cmp_content"), Some(c.content.clone()));
    push(t("cmp_asks"), Some(c.asks.clone()));
    push(t("cmp_valid"), c.valid.map(yes_no));
    push(t("cmp_unit"), c.unit.clone());
    push(t("cmp_solution"), c.solution.clone());
    push(t("cmp_reaction"), c.customer_reaction.clone());
    push(t("cmp_responsible"), c.responsible.clone());
    push(t("cmp_penalty"), c.penalty.clone());
    push(t("cmp_outcome"), c.outcome.clone());
    let next = next_step(&c.done());
    let steps = ComplaintStep::ALL
        .iter()
        .map(|s| {
            let done = c.steps.iter().find(|r| r.step == *s);
            StepRow {
                number: s.number(),
                name: s.as_str(),
                label: t(step_key(*s)),
                state: if done.is_some() {
                    "done"
                } else if next == Some(*s) {
                    "next"
                } else {
                    "later"
                },
                by: done.map(|r| r.by.clone()).unwrap_or_default(),
                at: done.map(|r| console.time(r.at.0)).unwrap_or_default(),
                what: done.map(|r| r.what.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let staff = STAFF.contains(&signed.role);
    let needs_manager = staff
        && next == Some(ComplaintStep::AssignResponsibility)
        && !MANAGERS.contains(&signed.role);
    let next_form = next.filter(|_| staff && !needs_manager).map(|step| {
        let form = form.unwrap_or_else(|| StepForm {
            at: edge.node.config.timezone.local_input(edge.node.clock.now()),
            ..StepForm::default()
        });
        let category = if form.category.is_empty() {
            c.category.as_str().to_owned()
        } else {
            form.category.clone()
        };
        NextForm {
            step: step.as_str(),
            label: t(step_key(step)),
            number: step.number(),
            categories: choices(
                lang,
                &category,
                ComplaintCategory::ALL.map(|c| (c.as_str(), category_key(c))),
            ),
            valid_yes: form.valid == "yes",
            valid_no: form.valid == "no",
            form,
        }
    });
    let page = ComplaintPage {
        chrome: console.chrome(signed, t("complaint"), &format!("/complaints/{id}")),
        csrf: signed.csrf.clone(),
        action: format!("/complaints/{id}"),
        heading: format!("{} · {}", t("complaint"), c.complainant),
        facts,
        job_href: c.against_job.as_ref().map(|j| format!("/jobs/{j}")),
        steps,
        next: next_form,
        needs_manager,
        closed: next.is_none(),
        notice,
    };
    render(status, &page)
}

#[derive(Debug, Default, Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// `GET /complaints/{id}`: the eight steps as a checklist and the full record (R21, R23).
async fn complaint_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let path = format!("/complaints/{id}");
    let signed = match edge.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let notice = q
        .ok()
        .and_then(|Query(q)| q.done)
        .and_then(|d| done_key(&d))
        .map(|k| Notice::done(lang, k));
    complaint_response(&edge, &signed, &id, None, StatusCode::OK, notice).await
}

fn text(v: &str) -> Option<String> {
    optional(v).map(str::to_owned)
}

/// The step form as the API's input (R21).
fn new_step(
    zone: &fieldsync_shared::zone::Zone,
    f: &StepForm,
    by: &str,
) -> Result<NewStep, ApiError> {
    let step = ComplaintStep::parse(f.step.trim())
        .ok_or_else(|| field_error("step", format!("{:?} is not an R21 step", f.step)))?;
    let valid = match f.valid.as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    };
    let category = optional(&f.category)
        .map(|c| {
            ComplaintCategory::parse(c)
                .ok_or_else(|| field_error("category", format!("{c:?} is not a category")))
        })
        .transpose()?;
    let at = optional(&f.at)
        .map(|at| local_time(zone, "at", at))
        .transpose()?;
    Ok(NewStep {
        step,
        by: by.to_owned(),
        what: f.what.trim().to_owned(),
        at,
        valid,
        category: category.filter(|_| step == ComplaintStep::Classify),
        unit: text(&f.unit),
        customer_reaction: text(&f.customer_reaction),
        responsible: text(&f.responsible),
        penalty: text(&f.penalty),
    })
}

/// `POST /complaints/{id}`: records the next R21 step.
async fn step_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<StepForm>, FormRejection>,
) -> Response {
    let path = format!("/complaints/{id}");
    let (signed, form) = match posted(&edge, &headers, &path, STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    if ComplaintStep::parse(form.step.trim()).is_none() {
        return bad_form(lang);
    }
    let done = match new_step(&edge.node.config.timezone, &form, &signed.user.display_name) {
        Ok(new) => record_complaint_step(&edge, &id, new, &actor(&signed)).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => see_other(&format!("{path}?done=step_recorded")),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            complaint_response(&edge, &signed, &id, Some(form), e.status, Some(notice)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r21_the_step_form_becomes_the_apis_step_with_its_time_in_the_branchs_zone() {
        let zone = fieldsync_shared::zone::Zone::china();
        let form = StepForm {
            step: "classify".into(),
            what: "查看了记录".into(),
            at: "2026-11-20T10:00".into(),
            valid: "yes".into(),
            category: "product_quality".into(),
            unit: "  ".into(),
            ..StepForm::default()
        };
        let step = new_step(&zone, &form, "李伟").expect("a step");
        assert_eq!(step.step, ComplaintStep::Classify);
        assert_eq!(step.valid, Some(true));
        assert_eq!(step.category, Some(ComplaintCategory::ProductQuality));
        assert_eq!(step.unit, None);
        assert_eq!(
            step.at.map(|a| a.0.to_string()).as_deref(),
            Some("2026-11-20T02:00:00Z")
        );
        // A corrected category belongs to step 2 only.
        let later = StepForm {
            step: "investigate".into(),
            ..form
        };
        assert_eq!(
            new_step(&zone, &later, "李伟").expect("a step").category,
            None
        );
    }

    #[test]
    fn ages_read_in_minutes_hours_then_days() {
        let t0 = Timestamp::from_millis(1_795_140_000_000);
        let at = |minutes: i64| t0.plus_millis(minutes * 60_000);
        assert_eq!(age(Lang::En, t0, at(5)), "5 min");
        assert_eq!(age(Lang::En, t0, at(5 * 60)), "5 h");
        assert_eq!(age(Lang::Zh, t0, at(3 * 24 * 60)), "3 天");
        // A time in the future (typed ahead) reads as none, not negative.
        assert_eq!(age(Lang::En, at(10), t0), "0 min");
    }
}
