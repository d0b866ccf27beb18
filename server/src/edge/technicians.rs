//! Technicians' pages (issue 14, point 3): `/technicians` lists the technicians with an
//! enrolled device (`jobs::enrolled_technicians`) and `/technicians/{id}` shows one: their
//! jobs and the violations the seed says are recorded, on-time arrival (R2), repeat repairs
//! (R4), incomplete reports (R7), late check-outs (R11) and complaints about conduct (R15).
//! `GET /api/technicians/{id}/record` answers the same record as JSON.
//!
//! What counts is decided by `fieldsync_shared::desk::technician::technician_record`; here
//! the facts are gathered: the jobs the assignment records give the technician (each
//! document read once), the desk's job records (R4 flags, served, cancelled), the service
//! requests (R2: the late arrival's cause) and the complaints against them. Reading, no
//! change: nothing is audited.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use fieldsync_shared::desk::technician::{
    ConductComplaint, JobFacts, TechnicianRecord, late_check_out, technician_record,
};
use fieldsync_shared::ids::TechnicianId;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{Job, ReportOutcome};
use fieldsync_storage::RecordFilter;
use serde::Serialize;
use utoipa::ToSchema;

use super::Edge;
use super::desk::complaints::Complaint;
use super::desk::dispatch::JobDesk;
use super::desk::intake::ServiceRequest;
use super::desk::records;
use super::jobs::enrolled_technicians;
use crate::auth::EVERYONE;
use crate::console::{Chrome, Signed, error_page, message_page, render};
use crate::http::error::ApiError;
use crate::http::wire::{ErrorBody, Instant};

/// The technicians' pages, on the edge's state.
pub fn router() -> Router<Arc<Edge>> {
    Router::new()
        .route("/technicians", get(list_page))
        .route("/technicians/{id}", get(technician_page))
}

/// One of the technician's jobs as read for the record.
#[derive(Debug, Clone)]
pub struct TechnicianJob {
    pub job: Job,
    pub facts: JobFacts,
}

/// Everything the record is computed from, and the record.
#[derive(Debug)]
pub struct Gathered {
    pub jobs: Vec<TechnicianJob>,
    pub record: TechnicianRecord,
}

/// Reads the technician's jobs (those the assignment records give them, oldest received
/// first), the desk's records about them and the complaints against them, and computes
/// the record at the server's clock.
pub async fn gather(edge: &Edge, technician: &TechnicianId) -> Result<Gathered, ApiError> {
    let ids: Vec<_> = edge
        .node
        .registry_read()
        .jobs()
        .filter(|j| j.technicians.contains(technician))
        .map(|j| j.job_id)
        .collect();
    let all = RecordFilter::default();
    let desk: HashMap<String, JobDesk> = records::list::<JobDesk>(edge, all.clone())
        .await?
        .into_iter()
        .map(|s| (s.value.job_id.clone(), s.value))
        .collect();
    let personal: HashMap<String, bool> = records::list::<ServiceRequest>(edge, all.clone())
        .await?
        .into_iter()
        .filter_map(|s| {
            let r = s.value;
            let violation = r.arrival.as_ref().is_some_and(|a| a.violation);
            r.job_id.map(|job| (job, violation))
        })
        .collect();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let doc = match edge.node.load_document(id).await {
            Ok(Some(doc)) => doc,
            Ok(None) => continue,
            Err(e) => return Err(ApiError::internal("storage_error", e)),
        };
        let job = match read_job(&doc) {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "technician page: cannot read job");
                continue;
            }
        };
        let key = id.to_string();
        let record = desk.get(&key);
        let facts = JobFacts {
            requested_arrival: job.request.requested_arrival,
            arrival: job.visit.arrival,
            late_personal: personal.get(&key).copied().unwrap_or(false),
            cancelled: record.is_some_and(|r| r.cancellation.is_some())
                || super::desk::dispatch::cancelled_in(&job.timeline).is_some(),
            served: record.is_some_and(JobDesk::served)
                || job.visit.check_out.is_some()
                || matches!(job.report, Some(ReportOutcome::Signed { .. })),
            repeat_flagged: record
                .is_some_and(|r| !r.repeat_of.is_empty() || !r.repeat_on_signing.is_empty()),
            completion: job.completion.as_ref().map(|c| c.at),
            check_out: job.visit.check_out.as_ref().map(|c| c.at),
            refused_for: match &job.report {
                Some(ReportOutcome::Refused { reasons, .. }) => {
                    reasons.iter().map(|r| r.rule.clone()).collect()
                }
                _ => Vec::new(),
            },
            job_id: key,
        };
        jobs.push(TechnicianJob { job, facts });
    }
    jobs.sort_by_key(|j| (j.job.request.received_at, j.facts.job_id.clone()));
    let complaints: Vec<ConductComplaint> = records::list::<Complaint>(edge, all)
        .await?
        .into_iter()
        .map(|s| s.value)
        .filter(|c| c.against_technician.as_ref() == Some(technician))
        .map(|c| ConductComplaint {
            about_conduct: c.category.attribution() == "non_quality",
            valid: c.valid,
            complaint_id: c.id,
        })
        .collect();
    let facts: Vec<JobFacts> = jobs.iter().map(|j| j.facts.clone()).collect();
    let record = technician_record(&facts, &complaints, edge.node.clock.now());
    Ok(Gathered { jobs, record })
}

/// A technician's record as `GET /api/technicians/{id}/record` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    pub technician: String,
    /// Devices enrolled and not revoked.
    pub devices: usize,
    /// Jobs assigned to them.
    pub jobs: usize,
    /// R2: arrivals counted (an arrival, or the asked-for time passed) and on time.
    pub arrivals_counted: usize,
    pub arrivals_on_time: usize,
    /// R2: on-time arrivals in whole percent; null when none counted.
    pub on_time_percent: Option<u32>,
    pub late_arrivals: Vec<String>,
    /// R2: late for personal reasons, a recorded violation.
    pub late_personal: Vec<String>,
    /// R4: served jobs the desk flagged as repeat repairs.
    pub repeat_repairs: Vec<String>,
    /// R7: jobs whose completion was refused for a missing report item.
    pub incomplete_reports: Vec<String>,
    /// R11: completion asked for before the check-out.
    pub late_check_outs: Vec<String>,
    /// R15: complaints against them about conduct, and those found valid.
    pub conduct_complaints: Vec<String>,
    pub conduct_verified: Vec<String>,
    /// The recorded violations, all rules together.
    pub violations: usize,
    /// When it was computed (the server's clock).
    pub at: Instant,
}

impl RecordView {
    fn of(technician: &TechnicianId, devices: usize, r: TechnicianRecord, at: Instant) -> Self {
        Self {
            technician: technician.to_string(),
            devices,
            jobs: r.jobs,
            arrivals_counted: r.arrivals.counted,
            arrivals_on_time: r.arrivals.on_time,
            on_time_percent: r.arrivals.percent(),
            violations: r.violations(),
            late_arrivals: r.late_arrivals,
            late_personal: r.late_personal,
            repeat_repairs: r.repeat_repairs,
            incomplete_reports: r.incomplete_reports,
            late_check_outs: r.late_check_outs,
            conduct_complaints: r.conduct_complaints,
            conduct_verified: r.conduct_verified,
            at,
        }
    }
}

/// A technician the branch knows: an enrolled device, or jobs assigned to them.
fn known(edge: &Edge, id: &str) -> Option<(TechnicianId, usize)> {
    let technician = TechnicianId::new(id.to_owned()).ok()?;
    let devices = enrolled_technicians(edge)
        .get(&technician)
        .copied()
        .unwrap_or(0);
    let has_jobs = edge
        .node
        .registry_read()
        .jobs()
        .any(|j| j.technicians.contains(&technician));
    (devices > 0 || has_jobs).then_some((technician, devices))
}

/// `GET /api/technicians/{id}/record`: the technician's record (R2, R4, R7, R11, R15).
#[utoipa::path(
    get,
    path = "/api/technicians/{id}/record",
    tag = "dispatch",
    description = "A technician's record: jobs, on-time arrivals (R2), repeat repairs (R4), \
        incomplete reports (R7), late check-outs (R11), complaints about conduct (R15). \
        Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The technician id")),
    responses(
        (status = 200, body = RecordView),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_technician"),
    ),
)]
pub async fn technician_record_api(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    edge.node
        .authorize_actor(&headers, EVERYONE, "read technicians' records")?;
    let Some((technician, devices)) = known(&edge, &id) else {
        return Err(ApiError::not_found(
            "unknown_technician",
            format!("no technician {id:?} at this branch (no enrolled device, no job)"),
        ));
    };
    let gathered = gather(&edge, &technician).await?;
    let at = Instant(edge.node.clock.now());
    Ok(Json(RecordView::of(
        &technician,
        devices,
        gathered.record,
        at,
    )))
}

// ---- pages ----

struct TechnicianLink {
    id: String,
    href: String,
    devices: usize,
}

#[derive(Template)]
#[template(path = "edge/technicians.html")]
struct ListPage {
    chrome: Chrome,
    technicians: Vec<TechnicianLink>,
}

/// `GET /technicians`: the technicians with an enrolled device.
async fn list_page(State(edge): State<Arc<Edge>>, headers: HeaderMap) -> Response {
    let signed = match edge
        .console
        .require(&headers, "/technicians", EVERYONE)
        .await
    {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let technicians = enrolled_technicians(&edge)
        .into_iter()
        .map(|(t, devices)| TechnicianLink {
            href: format!("/technicians/{}", crate::console::encode(&t.to_string())),
            id: t.to_string(),
            devices,
        })
        .collect();
    let page = ListPage {
        chrome: edge
            .console
            .chrome(&signed, lang.t("technicians"), "/technicians"),
        technicians,
    };
    render(StatusCode::OK, &page)
}

/// A job on the technician's page, with the marks of the rules it broke.
struct JobLine {
    href: String,
    id_short: String,
    customer: String,
    product: String,
    received: String,
    requested_arrival: String,
    arrival: String,
    outcome: &'static str,
    /// Label keys of the violations on this job.
    marks: Vec<&'static str>,
}

/// One figure of the record: a label, the count or rate, and the jobs behind it.
struct Figure {
    id: &'static str,
    label: &'static str,
    rule: &'static str,
    value: String,
    links: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "edge/technician.html")]
struct TechnicianPage {
    chrome: Chrome,
    technician: String,
    devices: usize,
    figures: Vec<Figure>,
    violations: usize,
    jobs: Vec<JobLine>,
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn job_links(ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| (format!("/jobs/{id}"), short(id)))
        .collect()
}

fn page(
    edge: &Edge,
    signed: &Signed,
    technician: &TechnicianId,
    devices: usize,
    g: Gathered,
) -> TechnicianPage {
    let console = &edge.console;
    let lang = signed.user.lang;
    let t = |k: &str| lang.t(k);
    let r = &g.record;
    let count = |v: &[String]| v.len().to_string();
    let rate = match r.arrivals.percent() {
        Some(p) => format!("{p}% ({}/{})", r.arrivals.on_time, r.arrivals.counted),
        None => t("none_yet").to_owned(),
    };
    let complaints_value = format!(
        "{} · {} {}",
        r.conduct_complaints.len(),
        t("tech_verified"),
        r.conduct_verified.len()
    );
    let figures = vec![
        Figure {
            id: "on-time",
            label: t("tech_on_time"),
            rule: "R2",
            value: rate,
            links: job_links(&r.late_arrivals),
        },
        Figure {
            id: "late-personal",
            label: t("tech_late_personal"),
            rule: "R2",
            value: count(&r.late_personal),
            links: job_links(&r.late_personal),
        },
        Figure {
            id: "repeat-repairs",
            label: t("tech_repeat_repairs"),
            rule: "R4",
            value: count(&r.repeat_repairs),
            links: job_links(&r.repeat_repairs),
        },
        Figure {
            id: "incomplete-reports",
            label: t("tech_incomplete_reports"),
            rule: "R7",
            value: count(&r.incomplete_reports),
            links: job_links(&r.incomplete_reports),
        },
        Figure {
            id: "late-check-outs",
            label: t("tech_late_check_outs"),
            rule: "R11",
            value: count(&r.late_check_outs),
            links: job_links(&r.late_check_outs),
        },
        Figure {
            id: "conduct-complaints",
            label: t("tech_conduct_complaints"),
            rule: "R15",
            value: complaints_value,
            links: r
                .conduct_complaints
                .iter()
                .map(|c| (String::new(), short(c)))
                .collect(),
        },
    ];
    let has = |list: &[String], id: &str| list.iter().any(|x| x == id);
    let jobs = g
        .jobs
        .iter()
        .map(|j| {
            let id = &j.facts.job_id;
            let mut marks = Vec::new();
            if has(&r.late_arrivals, id) {
                marks.push("tech_mark_late");
            }
            if has(&r.repeat_repairs, id) {
                marks.push("tech_mark_repeat");
            }
            if has(&r.incomplete_reports, id) {
                marks.push("tech_mark_incomplete");
            }
            if late_check_out(&j.facts) {
                marks.push("tech_mark_check_out");
            }
            let when = |at: Option<fieldsync_shared::time::Timestamp>| {
                at.map(|a| console.time(a)).unwrap_or_else(|| "—".into())
            };
            JobLine {
                href: format!("/jobs/{id}"),
                id_short: short(id),
                customer: j.job.customer.name.clone(),
                product: format!("{} · {}", j.job.product.model, j.job.product.serial),
                received: console.time(j.job.request.received_at),
                requested_arrival: when(j.facts.requested_arrival),
                arrival: when(j.facts.arrival),
                outcome: match (&j.job.report, j.facts.cancelled) {
                    (_, true) => "status_cancelled",
                    (Some(ReportOutcome::Signed { .. }), _) => "status_signed",
                    (Some(ReportOutcome::Refused { .. }), _) => "status_refused",
                    (None, _) if j.job.completion.is_some() => "status_completed",
                    (None, _) if j.facts.arrival.is_some() => "status_on_site",
                    // The board's stages: assigned once the appointment is agreed (R3).
                    (None, _) if j.job.visit.appointment.is_some() => "status_assigned",
                    (None, _) => "status_new",
                },
                marks,
            }
        })
        .collect();
    let title = format!("{} {technician}", t("technician"));
    TechnicianPage {
        chrome: console.chrome(signed, &title, &format!("/technicians/{technician}")),
        technician: technician.to_string(),
        devices,
        violations: r.violations(),
        figures,
        jobs,
    }
}

/// `GET /technicians/{id}`: a technician's jobs and record.
async fn technician_page(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/technicians/{}", crate::console::encode(&id));
    let signed = match edge.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let Some((technician, devices)) = known(&edge, &id) else {
        return message_page(StatusCode::NOT_FOUND, lang, "not_found");
    };
    match gather(&edge, &technician).await {
        Ok(g) => render(
            StatusCode::OK,
            &page(&edge, &signed, &technician, devices, g),
        ),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    }
}
