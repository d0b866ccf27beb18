//! Head office's console pages (issue 14, point 4), for any desk role signed in at head
//! office: the archive by month, branch, customer and product type (R25), a report in plain
//! language with its printable PDF, the reports kept aside with their reasons, and the month's
//! statistics (R24, R9, R27) per branch as a table, a month-over-month chart (SVG drawn here,
//! no script) and CSV, and complaints across branches with R22's rate; and R27's quality
//! digest: the month's fault causes across branches against the month before, the repeat
//! repairs (R4) and the complaints attributed to quality. Everything is read through the same functions as head office's JSON
//! API (`archive::archived`, `archive::month_stats`, `archive::set_aside`); times are in head
//! office's zone (`timezone`). The frame, sessions and audit log are `crate::console`.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldsync_shared::stats::MonthlyStats;
use fieldsync_shared::time::{Money, Month};
use fieldsync_storage::AsideStatus;
use serde::Deserialize;

use super::HeadOffice;
use super::archive::{self, Filter};
use crate::auth::EVERYONE;
use crate::console::i18n::Lang;
use crate::console::{Chrome, Signed, error_page, render};

/// How many months the statistics chart shows, the asked month last.
const CHART_MONTHS: usize = 6;
/// At most this many reports are listed on one archive page (the filters narrow it).
const LIST_LIMIT: usize = 500;

/// Head office's pages, on its state.
pub fn router(state: Arc<HeadOffice>) -> Router {
    Router::new()
        .route("/archive", get(archive_page))
        .route("/archive/{id}", get(report_page))
        .route("/archive/{id}/report.pdf", get(report_pdf))
        .route("/rejected", get(rejected_page))
        .route("/statistics", get(statistics_page))
        .route("/statistics.csv", get(statistics_csv))
        .route("/quality", get(quality_page))
        .route("/quality.csv", get(quality_csv))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
struct ArchiveQuery {
    month: Option<String>,
    branch: Option<String>,
    customer: Option<String>,
    product_type: Option<String>,
}

/// A filter's text: trimmed, `None` when empty.
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The month asked for, or the current month in head office's zone; a month that does not
/// parse is said in words (and the current month shown). Err: the clock is outside the
/// calendar.
fn month_asked(
    state: &HeadOffice,
    asked: Option<&str>,
    lang: Lang,
) -> Result<(Month, Option<String>), String> {
    let now = state
        .node
        .config
        .timezone
        .month_of(state.node.clock.now())
        .map_err(|e| e.to_string())?;
    Ok(match asked.map(str::trim).filter(|m| !m.is_empty()) {
        None => (now, None),
        Some(text) => match text.parse::<Month>() {
            Ok(m) => (m, None),
            Err(e) => (
                now,
                Some(format!("{} {text:?}: {e}", lang.t("not_a_month"))),
            ),
        },
    })
}

/// A month's page for a signed-in person: who, which month (asked or current), and the
/// words for a month that did not parse.
struct MonthView {
    signed: Signed,
    month: Month,
    error: Option<String>,
}

impl MonthView {
    /// Signs the person in (or answers with the sign-in redirect) and reads `?month=`.
    async fn open(
        state: &HeadOffice,
        headers: &HeaderMap,
        path: &str,
        asked: Option<&str>,
    ) -> Result<Self, Response> {
        let signed = state.console.require(headers, path, EVERYONE).await?;
        let (month, error) = month_asked(state, asked, signed.user.lang)
            .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e))?;
        Ok(Self {
            signed,
            month,
            error,
        })
    }

    /// [`MonthView::open`] for a download: a month that did not parse is a 400 with the
    /// words, not a page.
    async fn download(
        state: &HeadOffice,
        headers: &HeaderMap,
        path: &str,
        asked: Option<&str>,
    ) -> Result<Month, Response> {
        let view = Self::open(state, headers, path, asked).await?;
        match view.error {
            Some(error) => Err((StatusCode::BAD_REQUEST, error).into_response()),
            None => Ok(view.month),
        }
    }
}

/// Head office's R24 statistics of `month`, as `GET /api/stats` computes them.
async fn stats_of(state: &HeadOffice, month: Month) -> Result<Vec<MonthlyStats>, String> {
    archive::month_stats(
        &state.store,
        month,
        state.node.config.repeat_window_days,
        &state.node.config.timezone,
    )
    .await
    .map_err(|e| e.to_string())
}

/// A CSV download named `file`.
fn csv_download(file: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

struct ReportRow {
    href: String,
    signed_at: String,
    branch: String,
    customer: String,
    product_type: String,
    kind: String,
    report_id: String,
}

#[derive(Template)]
#[template(path = "head_office/archive.html")]
struct ArchivePage {
    chrome: Chrome,
    month: String,
    branch: String,
    customer: String,
    product_type: String,
    rows: Vec<ReportRow>,
    total: usize,
    shown: usize,
    error: Option<String>,
}

/// `GET /archive`: the verified reports of a month (R25), filtered like
/// `GET /api/archive/reports`.
async fn archive_page(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<ArchiveQuery>, QueryRejection>,
) -> Response {
    let console = &state.console;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let MonthView {
        signed,
        month,
        error,
    } = match MonthView::open(&state, &headers, "/archive", q.month.as_deref()).await {
        Ok(view) => view,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let filter = Filter {
        month: Some(month),
        customer: given(&q.customer),
        product_type: given(&q.product_type),
        branch: given(&q.branch),
    };
    let reports = match archive::archived(&state.store, &filter).await {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let zone = &state.node.config.timezone;
    let total = reports.len();
    // Newest first: the month's latest reports are what people look for.
    let rows: Vec<ReportRow> = reports
        .iter()
        .rev()
        .take(LIST_LIMIT)
        .map(|r| ReportRow {
            href: format!("/archive/{}", r.report_id),
            signed_at: zone.format(r.signed_at),
            branch: r.branch_id.to_string(),
            customer: r.report["job"]["customer"]["name"]
                .as_str()
                .map_or_else(|| r.customer_id.clone(), str::to_owned),
            product_type: r.product_type.clone(),
            kind: r.report["job"]["kind"]
                .as_str()
                .map(|k| lang.t(&format!("kind_{k}")).to_owned())
                .unwrap_or_default(),
            report_id: r.report_id.clone(),
        })
        .collect();
    let page = ArchivePage {
        chrome: console.chrome(&signed, lang.t("archive"), "/archive"),
        month: month.to_string(),
        branch: given(&q.branch).unwrap_or_default(),
        customer: given(&q.customer).unwrap_or_default(),
        product_type: given(&q.product_type).unwrap_or_default(),
        shown: rows.len(),
        rows,
        total,
        error,
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "head_office/report.html")]
struct ReportPage {
    chrome: Chrome,
    report_id: String,
    branch: String,
    signed_at: String,
    verified_at: String,
    month: String,
    text: String,
    pdf_href: String,
}

/// The options a report is printed with on this console: the reader's language, head
/// office's zone.
fn print_options(state: &HeadOffice, lang: Lang) -> fieldsync_report_print::PrintOptions {
    let language = match lang {
        Lang::Zh => fieldsync_report_print::Language::Zh,
        Lang::En => fieldsync_report_print::Language::En,
    };
    fieldsync_report_print::PrintOptions::new(language, state.node.config.timezone.clone())
}

/// The archived report `id` as its canonical JSON (what was signed), or the page to answer.
async fn archived_json(
    state: &HeadOffice,
    id: &str,
    lang: Lang,
) -> Result<(fieldsync_storage::ReportRow, Vec<u8>), Response> {
    let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let row = if well_formed {
        match state.store.archived_report(id).await {
            Ok(row) => row,
            Err(e) => return Err(error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
        }
    } else {
        None
    };
    let Some(row) = row else {
        return Err(crate::console::message_page(
            StatusCode::NOT_FOUND,
            lang,
            "unknown_report",
        ));
    };
    let json = serde_json::from_str::<serde_json::Value>(&row.report)
        .ok()
        .and_then(|v| fieldsync_shared::canonical::to_canonical_bytes(&v).ok());
    match json {
        Some(json) => Ok((row, json)),
        None => Err(error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the archived report cannot be read",
        )),
    }
}

/// `GET /archive/{id}`: one verified report in plain language, in the reader's language.
async fn report_page(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/archive/{id}");
    let console = &state.console;
    let signed = match console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let (row, json) = match archived_json(&state, &id, lang).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let options = print_options(&state, lang);
    let printed =
        tokio::task::spawn_blocking(move || fieldsync_report_print::report_text(&json, &options))
            .await;
    let text = match printed {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let zone = &state.node.config.timezone;
    let page = ReportPage {
        chrome: console.chrome(&signed, lang.t("report"), &path),
        pdf_href: format!("{path}/report.pdf"),
        report_id: row.report_id,
        branch: row.branch_id,
        signed_at: zone.format(fieldsync_shared::time::Timestamp::from_millis(
            row.signed_at,
        )),
        verified_at: zone.format(fieldsync_shared::time::Timestamp::from_millis(
            row.verified_at,
        )),
        month: row.month,
        text,
    };
    render(StatusCode::OK, &page)
}

/// `GET /archive/{id}/report.pdf`: the printable report with the signed JSON attached, in the
/// reader's language (as `GET /api/archive/reports/{id}/pdf`, for a signed-in person).
async fn report_pdf(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/archive/{id}/report.pdf");
    let signed = match state.console.require(&headers, &path, EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let (_, json) = match archived_json(&state, &id, lang).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let options = print_options(&state, lang);
    let printed =
        tokio::task::spawn_blocking(move || fieldsync_report_print::report_pdf(&json, &options))
            .await;
    match printed {
        Ok(Ok(printed)) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"report-{id}.pdf\""),
                ),
            ],
            printed.pdf,
        )
            .into_response(),
        Ok(Err(e)) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

struct AsideRow {
    at: String,
    branch: String,
    report_id: String,
    code: String,
    message: String,
}

#[derive(Template)]
#[template(path = "head_office/rejected.html")]
struct RejectedPage {
    chrome: Chrome,
    rejected: Vec<AsideRow>,
    pending: Vec<AsideRow>,
}

/// `GET /rejected`: reports kept aside (a check failed) and reports waiting for their job
/// document, each with its reason; `fieldsync archive retry` checks them again.
async fn rejected_page(State(state): State<Arc<HeadOffice>>, headers: HeaderMap) -> Response {
    let console = &state.console;
    let signed = match console.require(&headers, "/rejected", EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let zone = &state.node.config.timezone;
    let mut lists = Vec::new();
    for status in [AsideStatus::Rejected, AsideStatus::Pending] {
        match archive::set_aside(&state.store, status).await {
            Ok(list) => lists.push(
                list.into_iter()
                    .rev()
                    .map(|r| AsideRow {
                        at: zone.format(r.at),
                        branch: r
                            .from_branch
                            .map_or_else(|| "?".to_owned(), |b| b.to_string()),
                        report_id: r.report_id.unwrap_or_else(|| r.report_doc.to_string()),
                        code: r.code,
                        message: r.message,
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }
    let pending = lists.pop().unwrap_or_default();
    let rejected = lists.pop().unwrap_or_default();
    let page = RejectedPage {
        chrome: console.chrome(&signed, lang.t("rejected_reports"), "/rejected"),
        rejected,
        pending,
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Default, Deserialize)]
struct StatsQuery {
    month: Option<String>,
}

/// One labelled figure of a branch's month.
struct Figure {
    label: &'static str,
    value: String,
}

struct BranchTable {
    branch: String,
    figures: Vec<Figure>,
    faults: Vec<(String, u32)>,
}

/// One bar of the month-over-month chart.
struct Bar {
    month: String,
    reports: usize,
    x: u32,
    y: u32,
    height: u32,
    label_x: u32,
}

#[derive(Template)]
#[template(path = "head_office/statistics.html")]
struct StatisticsPage {
    chrome: Chrome,
    month: String,
    branches: Vec<BranchTable>,
    bars: Vec<Bar>,
    months: Vec<MonthRow>,
    complaints: Vec<ComplaintRow>,
    chart_title: String,
    csv_href: String,
    error: Option<String>,
}

/// An amount as the statistics add it up (the jobs' currency, two decimals), as in the CSV.
fn money(amount: Money) -> String {
    amount.to_string()
}

/// The figures of one branch's month a person reads first, in their language (the CSV
/// holds every line with its definition).
fn figures(s: &MonthlyStats, lang: Lang) -> Vec<Figure> {
    let m = &s.summary;
    let score =
        |x: Option<f64>| x.map_or_else(|| lang.t("not_answered").to_owned(), |x| format!("{x:.2}"));
    let f = |key: &str, value: String| Figure {
        label: lang.t(key),
        value,
    };
    vec![
        f("stat_reports", m.reports.to_string()),
        f("stat_installation_jobs", s.installation.jobs.to_string()),
        f("stat_installation_cost", money(s.installation.cost)),
        f("stat_service_jobs", s.service.jobs.to_string()),
        f("stat_service_cost", money(s.service.cost)),
        f("stat_materials_cost", money(s.materials_cost)),
        f("stat_transport_cost", money(s.transport_cost)),
        f("stat_travel_expenses", money(s.travel_expenses)),
        f("stat_warranty_jobs", m.warranty_jobs.to_string()),
        f("stat_billable_jobs", m.billable_jobs.to_string()),
        f("stat_billed", money(m.billed_to_customers)),
        f("stat_repeat_repairs", s.repeat_repairs.len().to_string()),
        f("stat_mean_attitude", score(m.mean_attitude)),
        f("stat_mean_skill", score(m.mean_skill)),
        f("stat_mean_punctuality", score(m.mean_punctuality)),
        f("stat_mean_service_items", score(m.mean_service_items)),
    ]
}

/// One month of the month-over-month table: R24's reports and R22's complaints and rate.
struct MonthRow {
    month: String,
    reports: usize,
    complaints: usize,
    rate: String,
}

/// One branch's R22 complaints of the month.
struct ComplaintRow {
    branch: String,
    complaints: usize,
    reports: usize,
    rate: String,
    open: usize,
    valid: usize,
    not_valid: usize,
    attribution: String,
}

/// R22's rate as a person reads it: a percentage, or a dash without reports.
fn rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn complaint_row(
    branch: String,
    s: &crate::edge::desk::complaints::ComplaintSummary,
) -> ComplaintRow {
    ComplaintRow {
        branch,
        complaints: s.complaints,
        reports: s.reports_verified,
        rate: rate(s.rate),
        open: s.open,
        valid: s.valid,
        not_valid: s.not_valid,
        attribution: s
            .by_attribution
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The `CHART_MONTHS` months up to `month`: their reports drawn as bars, each month's R22
/// figures, and the asked month's complaints per branch and in total.
async fn month_over_month(
    state: &HeadOffice,
    month: Month,
    stats: &[MonthlyStats],
) -> Result<(Vec<Bar>, Vec<MonthRow>, Vec<ComplaintRow>), String> {
    let mut months = vec![month];
    while months.len() < CHART_MONTHS {
        match months.last().and_then(|m| m.previous()) {
            Some(m) => months.push(m),
            None => break,
        }
    }
    months.reverse();
    let mut rows = Vec::new();
    let mut last = None;
    for m in &months {
        // The asked month's statistics are the page's; the months before are read here.
        let report = if *m == month {
            super::complaints::complaint_report_for(&state.store, month, stats).await
        } else {
            super::complaints::complaint_report(
                &state.store,
                *m,
                state.node.config.repeat_window_days,
                &state.node.config.timezone,
            )
            .await
        }
        .map_err(|e| e.to_string())?;
        rows.push(MonthRow {
            month: m.to_string(),
            reports: report.total.reports_verified,
            complaints: report.total.complaints,
            rate: rate(report.total.rate),
        });
        last = Some(report);
    }
    let mut complaints: Vec<ComplaintRow> = Vec::new();
    if let Some(report) = last {
        for b in &report.branches {
            complaints.push(complaint_row(b.branch_id.to_string(), &b.summary));
        }
        complaints.push(complaint_row("Σ".to_owned(), &report.total));
    }
    // A 620 × 230 drawing: bars 60 wide on a 100 pitch, 160 high at most.
    let top = rows.iter().map(|r| r.reports).max().unwrap_or(0).max(1);
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let height = u32::try_from(r.reports * 160 / top).unwrap_or(160);
            let x = 20 + 100 * u32::try_from(i).unwrap_or(0);
            Bar {
                month: r.month.clone(),
                reports: r.reports,
                x,
                y: 190 - height,
                height,
                label_x: x + 30,
            }
        })
        .collect();
    Ok((bars, rows, complaints))
}

/// `GET /statistics`: the month's statistics per branch (R24, R9, R27) and the reports of the
/// last six months as a chart.
async fn statistics_page(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let console = &state.console;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let MonthView {
        signed,
        month,
        error,
    } = match MonthView::open(&state, &headers, "/statistics", q.month.as_deref()).await {
        Ok(view) => view,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let stats = match stats_of(&state, month).await {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let (bars, months, complaints) = match month_over_month(&state, month, &stats).await {
        Ok(found) => found,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let branches = stats
        .iter()
        .map(|s| BranchTable {
            branch: s.branch_id.to_string(),
            figures: figures(s, lang),
            faults: s
                .fault_causes
                .iter()
                .map(|f| (format!("{} / {}", f.product_type, f.fault), f.count))
                .collect(),
        })
        .collect();
    let page = StatisticsPage {
        chrome: console.chrome(&signed, lang.t("statistics"), "/statistics"),
        month: month.to_string(),
        branches,
        chart_title: format!(
            "{} {} – {}",
            lang.t("reports_per_month"),
            bars.first().map(|b| b.month.as_str()).unwrap_or_default(),
            month
        ),
        bars,
        months,
        complaints,
        csv_href: format!("/statistics.csv?month={month}"),
        error,
    };
    render(StatusCode::OK, &page)
}

/// `GET /statistics.csv?month=`: every line of the month's statistics with its definition,
/// as `GET /api/stats?format=csv` answers it.
async fn statistics_csv(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let month = match MonthView::download(&state, &headers, "/statistics", q.month.as_deref()).await
    {
        Ok(month) => month,
        Err(answer) => return answer,
    };
    let stats = match stats_of(&state, month).await {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    match fieldsync_shared::stats::render(&stats, "csv") {
        Ok(csv) => csv_download(&format!("statistics-{month}.csv"), csv),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// One line of the quality digest: a fault on a product type, this month and the month before.
struct FaultLine {
    product_type: String,
    fault: String,
    count: u32,
    previous: u32,
    branches: String,
}

struct RepeatLine {
    branch: String,
    serial: String,
    product_type: String,
    fault: String,
    days_between: i64,
}

/// R27 for a month: the faults found in the verified reports of every branch (with the count
/// of the month before, so a rising cause shows), the repeat repairs, and the complaints
/// attributed to quality.
struct Digest {
    faults: Vec<FaultLine>,
    repeats: Vec<RepeatLine>,
    quality_complaints: usize,
    reports: usize,
}

async fn digest(state: &HeadOffice, month: Month) -> Result<Digest, String> {
    let now = stats_of(state, month).await?;
    let before = match month.previous() {
        Some(m) => stats_of(state, m).await?,
        None => Vec::new(),
    };
    let key = |t: &str, f: &str| (t.to_owned(), f.to_owned());
    let mut previous = std::collections::BTreeMap::new();
    for s in &before {
        for f in &s.fault_causes {
            *previous
                .entry(key(&f.product_type, &f.fault))
                .or_insert(0u32) += f.count;
        }
    }
    let mut faults: std::collections::BTreeMap<(String, String), (u32, Vec<String>)> =
        std::collections::BTreeMap::new();
    let mut repeats = Vec::new();
    for s in &now {
        for f in &s.fault_causes {
            let line = faults.entry(key(&f.product_type, &f.fault)).or_default();
            line.0 += f.count;
            line.1.push(format!("{} {}", s.branch_id, f.count));
        }
        for r in &s.repeat_repairs {
            repeats.push(RepeatLine {
                branch: s.branch_id.to_string(),
                serial: r.serial.clone(),
                product_type: r.product_type.clone(),
                fault: r.fault.clone(),
                days_between: r.days_between,
            });
        }
    }
    let mut faults: Vec<FaultLine> = faults
        .into_iter()
        .map(|((product_type, fault), (count, branches))| FaultLine {
            previous: previous
                .get(&(product_type.clone(), fault.clone()))
                .copied()
                .unwrap_or(0),
            product_type,
            fault,
            count,
            branches: branches.join(", "),
        })
        .collect();
    // The most frequent first; ties by rise against the month before.
    faults.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| {
                (b.count.saturating_sub(b.previous)).cmp(&a.count.saturating_sub(a.previous))
            })
            .then_with(|| a.product_type.cmp(&b.product_type))
            .then_with(|| a.fault.cmp(&b.fault))
    });
    let complaints = super::complaints::complaint_report_for(&state.store, month, &now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Digest {
        faults,
        repeats,
        quality_complaints: complaints
            .total
            .by_attribution
            .get("quality")
            .copied()
            .unwrap_or(0),
        reports: complaints.total.reports_verified,
    })
}

#[derive(Template)]
#[template(path = "head_office/quality.html")]
struct QualityPage {
    chrome: Chrome,
    month: String,
    previous_month: String,
    digest: Digest,
    csv_href: String,
    error: Option<String>,
}

/// `GET /quality?month=`: R27's quality digest of the month across branches.
async fn quality_page(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let console = &state.console;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let MonthView {
        signed,
        month,
        error,
    } = match MonthView::open(&state, &headers, "/quality", q.month.as_deref()).await {
        Ok(view) => view,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let digest = match digest(&state, month).await {
        Ok(d) => d,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let page = QualityPage {
        chrome: console.chrome(&signed, lang.t("quality_digest"), "/quality"),
        month: month.to_string(),
        previous_month: month.previous().map(|m| m.to_string()).unwrap_or_default(),
        digest,
        csv_href: format!("/quality.csv?month={month}"),
        error,
    };
    render(StatusCode::OK, &page)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `GET /quality.csv?month=`: the digest's fault lines, for the responsible departments.
async fn quality_csv(
    State(state): State<Arc<HeadOffice>>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let month = match MonthView::download(&state, &headers, "/quality", q.month.as_deref()).await {
        Ok(month) => month,
        Err(answer) => return answer,
    };
    let digest = match digest(&state, month).await {
        Ok(d) => d,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let mut csv = String::from("month,product_type,fault,reports,previous_month,branches\n");
    for f in &digest.faults {
        csv.push_str(&format!(
            "{month},{},{},{},{},{}\n",
            csv_field(&f.product_type),
            csv_field(&f.fault),
            f.count,
            f.previous,
            csv_field(&f.branches)
        ));
    }
    csv_download(&format!("quality-{month}.csv"), csv)
}
