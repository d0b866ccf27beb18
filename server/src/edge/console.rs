//! The edge's console pages (issue 14): the desk's board (`/board`, the same list as
//! `GET /api/jobs`, from `board::list`) and a job in plain language (`/jobs/{id}`), with the
//! desk's reassign and cancel forms for dispatchers and managers (`edge::forms` handles
//! them and the other desk forms). Times are in the branch's zone (`timezone`), money with its currency. The
//! shared frame, sessions and audit log are `crate::console`.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use fieldsync_shared::desk::ClockState;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{Channel, Job, JobKind, ReportOutcome};
use fieldsync_shared::rules::charges;
use fieldsync_shared::time::Timestamp;

use super::Edge;
use super::board::{Flag, JobQuery, JobRow, Stage, list};
use crate::auth::EVERYONE;
use crate::console::i18n::Lang;
use crate::console::{Chrome, Console, Notice, Signed, error_page, message_page, render};
use crate::http::parse_job_id;

/// The edge's pages, on its state.
pub fn router(edge: Arc<Edge>) -> Router {
    Router::new()
        .route("/board", get(board_page))
        .route("/jobs/{id}", get(job_page))
        .with_state(edge)
}

/// The label key of a stage.
fn stage_key(stage: Stage) -> &'static str {
    match stage {
        Stage::New => "status_new",
        Stage::Assigned => "status_assigned",
        Stage::OnSite => "status_on_site",
        Stage::Completed => "status_completed",
        Stage::Signed => "status_signed",
        Stage::Refused => "status_refused",
        Stage::Cancelled => "status_cancelled",
    }
}

fn flag_key(flag: Flag) -> &'static str {
    match flag {
        Flag::WaitingApproval => "flag_waiting_approval",
        Flag::StaleAcknowledgement => "flag_stale_acknowledgement",
        Flag::Conflicts => "flag_conflicts",
        Flag::Stranded => "flag_stranded",
    }
}

fn sla_name(state: Option<ClockState>) -> &'static str {
    match state {
        None => "none",
        Some(ClockState::Running) => "running",
        Some(ClockState::DueSoon) => "due_soon",
        Some(ClockState::Overdue) => "overdue",
        Some(ClockState::Met) => "met",
        Some(ClockState::MetLate) => "met_late",
    }
}

/// The label key of a channel (R1).
pub(super) fn channel_key(channel: Channel) -> &'static str {
    match channel {
        Channel::Phone => "channel_phone",
        Channel::Letter => "channel_letter",
        Channel::Visit => "channel_visit",
        Channel::Email => "channel_email",
        Channel::Web => "channel_web",
    }
}

fn kind_key(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Repair => "kind_repair",
        JobKind::Installation => "kind_installation",
        JobKind::Maintenance => "kind_maintenance",
        JobKind::FollowUp => "kind_follow_up",
    }
}

pub use crate::console::money;

/// A choice of a filter's `<select>`.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// A tag on a row: its class (for colour) and its words.
struct Tag {
    class: &'static str,
    label: &'static str,
}

struct BoardRow {
    href: String,
    customer: String,
    product: String,
    kind: &'static str,
    technicians: String,
    received: String,
    requested_arrival: String,
    status: Tag,
    sla: Tag,
    flags: Vec<Tag>,
}

#[derive(Template)]
#[template(path = "edge/board.html")]
struct BoardPage {
    chrome: Chrome,
    statuses: Vec<Choice>,
    slas: Vec<Choice>,
    technician: String,
    customer: String,
    from: String,
    to: String,
    rows: Vec<BoardRow>,
    total: usize,
    page: usize,
    pages: usize,
    /// The query without `page`, for the page links (already escaped for a URL).
    base_query: String,
    error: Option<String>,
}

fn row(console: &Console, lang: Lang, r: &JobRow) -> BoardRow {
    let time = |t: Option<Timestamp>| t.map(|t| console.time(t)).unwrap_or_default();
    BoardRow {
        href: format!("/jobs/{}", r.job_id),
        customer: r.customer_name.clone(),
        product: format!("{} · {}", r.model, r.serial),
        kind: lang.t(kind_key(r.kind)),
        technicians: r.technicians.join(", "),
        received: console.time(r.received_at.0),
        requested_arrival: time(r.requested_arrival.map(|i| i.0)),
        status: Tag {
            class: r.status.as_str(),
            label: lang.t(stage_key(r.status)),
        },
        sla: Tag {
            class: sla_name(r.sla),
            label: lang.t(match r.sla {
                None => "sla_none",
                Some(ClockState::Running) => "sla_running",
                Some(ClockState::DueSoon) => "sla_due_soon",
                Some(ClockState::Overdue) => "sla_overdue",
                Some(ClockState::Met) => "sla_met",
                Some(ClockState::MetLate) => "sla_met_late",
            }),
        },
        flags: r
            .flags
            .iter()
            .map(|f| Tag {
                class: f.as_str(),
                label: lang.t(flag_key(*f)),
            })
            .collect(),
    }
}

fn query_string(q: &JobQuery) -> String {
    let pairs = [
        ("status", &q.status),
        ("technician", &q.technician),
        ("customer", &q.customer),
        ("from", &q.from),
        ("to", &q.to),
        ("sla", &q.sla),
    ];
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("{k}={}&", crate::console::encode(v)))
        .collect()
}

/// `GET /board`: the desk's board, filtered like `GET /api/jobs`.
async fn board_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    q: Result<Query<JobQuery>, QueryRejection>,
) -> Response {
    let console = &edge.console;
    let signed = match console.require(&headers, "/board", EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let now = edge.node.clock.now();
    let (listed, error) = match list(&edge, &q, now).await {
        Ok(listed) => (Some(listed), None),
        // A filter that does not parse is said on the page, with the board unfiltered.
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let listed = list(&edge, &JobQuery::default(), now).await.ok();
            (listed, Some(e.message))
        }
        Err(e) => return error_page(e.status, &e.message),
    };
    let Some(listed) = listed else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the board could not be read",
        );
    };
    let status = q.status.clone().unwrap_or_default();
    let mut statuses = vec![Choice {
        value: "",
        label: lang.t("any"),
        selected: status.is_empty(),
    }];
    for s in Stage::ALL {
        statuses.push(Choice {
            value: s.as_str(),
            label: lang.t(stage_key(s)),
            selected: status == s.as_str(),
        });
    }
    for f in Flag::ALL {
        statuses.push(Choice {
            value: f.as_str(),
            label: lang.t(flag_key(f)),
            selected: status == f.as_str(),
        });
    }
    let sla = q.sla.clone().unwrap_or_default();
    let slas = [
        ("", "any"),
        ("overdue", "sla_overdue"),
        ("due_soon", "sla_due_soon"),
        ("running", "sla_running"),
        ("met", "sla_met"),
        ("met_late", "sla_met_late"),
        ("none", "sla_none"),
    ]
    .into_iter()
    .map(|(value, key)| Choice {
        value,
        label: lang.t(key),
        selected: sla == value,
    })
    .collect();
    let mut rows: Vec<BoardRow> = listed.jobs.iter().map(|r| row(console, lang, r)).collect();
    // R4, R27: the page's jobs whose desk category is not in the desk's list are marked.
    let unlisted =
        match super::catalogue::unlisted_jobs(&edge, listed.jobs.iter().map(|r| r.job_id.as_str()))
            .await
        {
            Ok(u) => u,
            Err(e) => return error_page(e.status, &e.message),
        };
    for (row, job) in rows.iter_mut().zip(&listed.jobs) {
        if unlisted.contains(&job.job_id) {
            row.flags.push(Tag {
                class: "unlisted_category",
                label: lang.t("not_in_list"),
            });
        }
    }
    let page = BoardPage {
        chrome: console.chrome(&signed, lang.t("board"), "/board"),
        statuses,
        slas,
        technician: q.technician.clone().unwrap_or_default(),
        customer: q.customer.clone().unwrap_or_default(),
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        rows,
        total: listed.total,
        page: listed.page,
        pages: listed.pages,
        base_query: query_string(&q),
        error,
    };
    render(StatusCode::OK, &page)
}

/// A labelled fact of the job page.
struct Fact {
    label: &'static str,
    value: String,
}

struct PartRow {
    name: String,
    quantity: u32,
    unit_price: String,
    warranty: &'static str,
}

struct EventRow {
    at: String,
    actor: String,
    text: String,
}

#[derive(Template)]
#[template(path = "edge/job.html")]
struct JobPage {
    chrome: Chrome,
    heading: String,
    status: String,
    request: Vec<Fact>,
    customer: Vec<Fact>,
    visit: Vec<Fact>,
    diagnosis: Vec<Fact>,
    parts: Vec<PartRow>,
    charges: Vec<Fact>,
    acknowledgement: Vec<Fact>,
    report: Vec<Fact>,
    refusals: Vec<String>,
    /// What a merge left unresolved, with who wrote which value when (`edge::conflicts`).
    conflicts: Vec<super::conflicts::GroupView>,
    /// The resolutions recorded in the job.
    resolved: Vec<super::conflicts::ResolvedView>,
    timeline: Vec<EventRow>,
    notes: String,
    /// The job's id (the forms post to `/jobs/{id}/…`).
    job_id: String,
    /// A dispatcher or manager: the desk's forms are shown.
    staff: bool,
    /// The session's CSRF token for those forms.
    csrf: String,
    /// The reassign form's value: the technicians, comma-separated.
    technicians_value: String,
    /// The cancellation's words, once cancelled (the forms are gone then).
    cancelled: Option<String>,
    /// The answer of a form: done, or refused in words.
    notice: Option<Notice>,
}

fn fact(label: &'static str, value: impl Into<String>) -> Fact {
    Fact {
        label,
        value: value.into(),
    }
}

fn job_view(console: &Console, lang: Lang, job: &Job, path: &str, chrome: Chrome) -> JobPage {
    let t = |k: &str| lang.t(k);
    let time = |at: Option<Timestamp>| match at {
        Some(at) => console.time(at),
        None => t("none_yet").to_owned(),
    };
    let text = |s: &Option<String>| s.clone().unwrap_or_else(|| t("none_yet").to_owned());
    let currency = job.billing.currency.as_str();
    let cancelled = super::desk::dispatch::cancelled_in(&job.timeline).is_some();
    let stage = match (&job.completion, &job.report) {
        _ if cancelled => Stage::Cancelled,
        (_, Some(ReportOutcome::Signed { .. })) => Stage::Signed,
        (_, Some(ReportOutcome::Refused { .. })) => Stage::Refused,
        (Some(_), None) => Stage::Completed,
        (None, None) if job.visit.arrival.is_some() => Stage::OnSite,
        (None, None) if job.visit.appointment.is_some() => Stage::Assigned,
        (None, None) => Stage::New,
    };
    let charges_facts = match charges(job) {
        Ok(c) => vec![
            fact(t("parts"), money(c.parts, currency)),
            fact(t("under_warranty"), money(c.parts_under_warranty, currency)),
            fact(t("labour"), money(c.labour, currency)),
            fact(t("travel"), money(c.travel, currency)),
            fact(t("customer_pays"), money(c.customer_pays, currency)),
        ],
        Err(e) => vec![fact(t("charges"), e.to_string())],
    };
    let (report, refusals) = match &job.report {
        Some(ReportOutcome::Signed { at, report_id, .. }) => (
            vec![
                fact(t("status"), t("status_signed")),
                fact(t("when"), console.time(*at)),
                fact(t("report"), report_id.clone()),
            ],
            Vec::new(),
        ),
        Some(ReportOutcome::Refused { at, reasons }) => (
            vec![
                fact(t("status"), t("status_refused")),
                fact(t("when"), console.time(*at)),
            ],
            reasons
                .iter()
                .map(|r| format!("{} ({}): {}", r.rule, r.code, r.message))
                .collect(),
        ),
        None => (vec![fact(t("status"), t("none_yet"))], Vec::new()),
    };
    let acknowledgement = match &job.acknowledgement {
        Some(a) => {
            let s = &a.survey;
            let score = |v: Option<u8>| v.map_or("–".to_owned(), |v| format!("{v}/5"));
            vec![
                fact(t("signed_by"), a.signer_name.clone()),
                fact(t("when"), console.time(a.signed_at)),
                fact(
                    t("survey"),
                    format!(
                        "{} · {} · {} · {}{}",
                        score(s.attitude),
                        score(s.skill),
                        score(s.punctuality),
                        score(s.service_items),
                        if s.suggestions.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", s.suggestions)
                        }
                    ),
                ),
            ]
        }
        None => vec![fact(t("acknowledgement"), t("none_yet"))],
    };
    JobPage {
        heading: format!("{} · {}", job.customer.name, job.product.model),
        status: t(stage_key(stage)).to_owned(),
        request: vec![
            fact(t("kind"), t(kind_key(job.kind))),
            fact(t("received"), console.time(job.request.received_at)),
            fact(t("channel"), t(channel_key(job.request.channel))),
            fact(t("fault"), job.request.fault_description.clone()),
            fact(t("requested_arrival"), time(job.request.requested_arrival)),
            fact(
                t("technician"),
                job.technicians
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ],
        customer: vec![
            fact(t("customer"), job.customer.name.clone()),
            fact(t("contact"), job.customer.contact.clone()),
            fact(t("address"), job.customer.site_address.clone()),
            fact(t("model"), job.product.model.clone()),
            fact(t("serial"), job.product.serial.clone()),
            fact(
                t("warranty_end"),
                job.product
                    .warranty_end
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| t("none_yet").to_owned()),
            ),
        ],
        visit: vec![
            fact(t("appointment"), time(job.visit.appointment)),
            fact(t("arrival"), time(job.visit.arrival)),
            fact(
                t("check_out"),
                time(job.visit.check_out.as_ref().map(|c| c.at)),
            ),
        ],
        diagnosis: vec![
            fact(t("fault_cause"), text(&job.diagnosis.fault_cause)),
            fact(t("solution"), text(&job.diagnosis.solution)),
        ],
        parts: job
            .parts
            .iter()
            .map(|p| PartRow {
                name: if p.specification.is_empty() {
                    p.name.clone()
                } else {
                    format!("{} ({})", p.name, p.specification)
                },
                quantity: p.quantity,
                unit_price: money(p.unit_price, currency),
                warranty: if p.warranty { t("yes") } else { t("no") },
            })
            .collect(),
        charges: charges_facts,
        acknowledgement,
        report,
        refusals,
        conflicts: Vec::new(),
        resolved: Vec::new(),
        timeline: job
            .timeline
            .iter()
            .map(|e| EventRow {
                at: console.time(e.at),
                actor: e.actor.clone(),
                text: if e.text.is_empty() {
                    e.kind.clone()
                } else {
                    e.text.clone()
                },
            })
            .collect(),
        notes: job.notes.clone(),
        job_id: job.job_id.to_string(),
        staff: false,
        csrf: String::new(),
        technicians_value: job
            .technicians
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        cancelled: super::desk::dispatch::cancelled_in(&job.timeline).map(|e| e.text.clone()),
        notice: None,
        chrome: Chrome {
            path: path.to_owned(),
            ..chrome
        },
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// `GET /jobs/{id}`: one job in plain language; `?done=<what>` says what a form just did.
async fn job_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DoneQuery>, QueryRejection>,
) -> Response {
    let path = format!("/jobs/{id}");
    let signed = match edge.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let notice = q
        .ok()
        .and_then(|Query(q)| q.done)
        .and_then(|d| done_key(&d))
        .map(|key| Notice::done(lang, key));
    job_response(&edge, &signed, &id, StatusCode::OK, notice).await
}

/// The label of a `?done=` value, for the ones the forms send.
pub(super) fn done_key(done: &str) -> Option<&'static str> {
    Some(match done {
        "request_created" => "done_request_created",
        "dispatched" => "done_dispatched",
        "reassigned" => "done_reassigned",
        "cancelled" => "done_cancelled",
        "decided" => "done_decided",
        "called" => "done_called",
        "resolved" => "done_resolved",
        _ => return None,
    })
}

/// The job page of `id` for `signed`, with `notice` above it (a form's answer), answered
/// with `status`.
pub(super) async fn job_response(
    edge: &Edge,
    signed: &Signed,
    id: &str,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let console = &edge.console;
    let path = format!("/jobs/{id}");
    let lang = signed.user.lang;
    let not_found = || message_page(StatusCode::NOT_FOUND, lang, "not_found");
    let Ok(job_id) = parse_job_id(id) else {
        return not_found();
    };
    if edge.node.registry_read().job(&job_id).is_none() {
        return not_found();
    }
    let doc = match edge.node.load_document(job_id).await {
        Ok(Some(doc)) => doc,
        Ok(None) => return not_found(),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let job = match read_job(&doc) {
        Ok(job) => job,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let chrome = console.chrome(signed, lang.t("job"), &path);
    let mut page = job_view(console, lang, &job, &path, chrome);
    page.chrome.title = page.heading.clone();
    page.staff = crate::auth::STAFF.contains(&signed.role);
    page.csrf = signed.csrf.clone();
    page.notice = notice;
    // R4, R27: the desk's category and the diagnosed one, marked when not in the list.
    let desk_category = match super::desk::records::load::<super::desk::dispatch::JobDesk>(
        edge,
        &job_id.to_string(),
    )
    .await
    {
        Ok(found) => found.and_then(|d| d.value.fault_category),
        Err(e) => return error_page(e.status, &e.message),
    };
    // The list is read once for both.
    let listed = super::desk::categories::in_force(edge)
        .await
        .unwrap_or_default();
    for (label, category) in [
        ("fault_category", desk_category.as_deref()),
        (
            "diagnosed_category",
            job.diagnosis.fault_category.as_deref(),
        ),
    ] {
        page.diagnosis.push(Fact {
            label: lang.t(label),
            value: super::catalogue::category_text(&listed, lang, category),
        });
    }
    (page.conflicts, page.resolved) = super::conflicts::views(console, lang, &job, &doc);
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use fieldsync_shared::time::Money;

    use super::*;

    #[test]
    fn money_reads_as_money() {
        assert_eq!(money(Money(123_450), "CNY"), "1,234.50 CNY");
        assert_eq!(money(Money(5), "CNY"), "0.05 CNY");
        assert_eq!(money(Money(-100_000_000), "USD"), "-1,000,000.00 USD");
        assert_eq!(money(Money(1500), "JPY"), "1,500 JPY");
    }
}
