//! Monthly after-sales statistics (R24) and the quality digest (R27), computed from verified
//! service reports only.
//!
//! Definitions (R24 leaves them to the company; these are ours, stated once here, and the
//! `fieldsync stats` table and CSV print them too: [`DEFINITIONS`]):
//! - A report counts in the month its branch signed it (R25 archives by that month). Months
//!   are read in a time zone given as a [`MonthOf`]: the branch's or head office's configured
//!   zone ([`crate::zone::Zone`], `timezone` in the config; UTC by default).
//! - Installation/commissioning jobs (R16) are one group; every other kind is "service
//!   dispatch". The summary counts those whose report records the training of the
//!   customer's staff.
//! - Person-trips: one per technician on the job. Person-days: technicians × days on site,
//!   where days are counted from arrival to check-out, rounded up, at least one.
//! - Cost of a job: parts + labour + travel (`rules::charges`), whoever pays it, plus the
//!   R28 travel expense claims the desk approved for it (`Job::expenses`, carried in the
//!   signed report): what the company pays its technicians for the trip (the seed's
//!   差旅费, "travel expenses") is part of what the installation or dispatch cost (R24 1, 2)
//!   and of the total (R24 5). They are shown apart too (`travel_expenses`); a claim counts
//!   in the month of the report that carries it, like every other cost.
//! - Materials cost: all parts; transport cost: all travel.
//! - Total after-sales cost excludes contract-specified installation fees, which we take to be
//!   the labour of installation jobs (it is paid for by the sales contract).
//! - Satisfaction (R9): each score's mean is over the reports whose customer answered that
//!   score; a survey the customer skipped counts in `surveys_not_answered` and in no mean. A
//!   month with no answer has no mean (`null`), not 0.
//! - Materials and transport are not extra costs: they are the parts and travel already
//!   inside the installation and service costs, shown apart because R24 asks for them.
//! - R9 suggestions are free text, so they are counted (reports with one).
//! - Repeat repairs (R4): a job in the month on the same product serial with the same fault
//!   (category, or cause when no category was recorded) as an earlier report within
//!   `repeat_window_days`.
//! - The complaint rate (R22), one definition wherever it is shown (the branch's summary,
//!   head office, the CLI): complaints received in the month ÷ service reports verified in
//!   the month (signed by the branch in the month: its signer verified them complete; head
//!   office counts those whose signatures it verified, superseded ones left out), both
//!   months in the same time zone. No reports, no rate ([`complaint_rate`]).

pub mod table;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::{BranchId, DocumentId};
use crate::job::{BillingMode, Job, JobKind};
use crate::rules::{ChargeError, charges};
use crate::time::{Money, Month, TimeError, Timestamp};

const DAY_MS: i64 = 86_400_000;

/// Which calendar month an instant falls in: the time zone the monthly figures (R22, R24,
/// R25) are read in. [`Utc`] is the default; a configured zone (an IANA name at branch and
/// head office) implements this and is passed to [`monthly_in`] and the complaint counts.
pub trait MonthOf {
    fn month_of(&self, at: Timestamp) -> Result<Month, TimeError>;
}

/// Months in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utc;

impl MonthOf for Utc {
    fn month_of(&self, at: Timestamp) -> Result<Month, TimeError> {
        at.month()
    }
}

/// Months in a configured zone (`timezone = "Asia/Shanghai"` at the branch or head office).
impl MonthOf for crate::zone::Zone {
    fn month_of(&self, at: Timestamp) -> Result<Month, TimeError> {
        crate::zone::Zone::month_of(self, at)
    }
}

/// What R22's complaint rate means, in words: printed beside it.
pub const COMPLAINT_RATE_DEFINITION: &str = "complaint rate = complaints received in the month / \
     service reports verified in the month (signed by the branch; head office: signatures \
     verified, superseded reports left out)";

/// R22: complaints received in the month per service report verified in the month (see the
/// module docs); `None` without reports.
#[allow(clippy::cast_precision_loss)] // a month's counts
pub fn complaint_rate(complaints: usize, reports_verified: usize) -> Option<f64> {
    (reports_verified > 0).then(|| complaints as f64 / reports_verified as f64)
}

/// What each line of the monthly statistics includes (R24, R9), as the table and the CSV
/// print it.
pub const DEFINITIONS: &[&str] = &[
    "a report counts in the month its branch signed it; only verified reports count",
    "cost of a job = parts + labour + travel, whoever pays it, + the R28 travel expense \
     claims approved for it (in its signed report)",
    "installation cost (R24 1), service cost (R24 2): the cost of those jobs, materials and \
     transport included",
    "materials cost (R24 3): all parts; transport cost (R24 4): all travel; travel expenses \
     (R28): the approved claims; all three are already inside the installation and service \
     costs: do not add them again",
    "total (R24 5): installation + service cost, less installation labour (the contract's \
     installation fee)",
    "person-trips: technicians per job; person-days: technicians x days on site (arrival to \
     check-out, rounded up, at least 1)",
    "survey (R9): mean scores 1-5 over the reports with a customer acknowledgement; \
     suggestions counted",
];

/// A verified report as the statistics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedJob {
    pub report_id: String,
    pub branch_id: BranchId,
    pub signed_at: Timestamp,
    pub job: Job,
}

/// The money of one report's charges the statistics add up (`rules::charges`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactCharges {
    pub parts: Money,
    pub labour: Money,
    pub travel: Money,
    /// Parts + labour + travel + the approved R28 travel expense claims.
    pub cost: Money,
    pub customer_pays: Money,
}

impl FactCharges {
    /// R28: the approved travel expense claims inside `cost` (what it holds beyond parts,
    /// labour and travel; head office keeps no column of its own for them).
    pub fn travel_expenses(&self) -> Money {
        Money(self.cost.0 - self.parts.0 - self.labour.0 - self.travel.0)
    }
}

/// Everything [`monthly`] reads of one verified report, computed once from its job by
/// [`ReportFacts::of`]. Head office keeps these beside the report when it archives it, so a
/// month's statistics read a few columns per report instead of parsing every report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFacts {
    pub report_id: String,
    pub branch_id: BranchId,
    pub signed_at: Timestamp,
    pub job_id: DocumentId,
    pub kind: JobKind,
    pub billing: BillingMode,
    /// Technicians on the job, at least one (person-trips).
    pub people: u32,
    /// Days on site, arrival to check-out rounded up, at least one.
    pub days_on_site: u32,
    /// `None` when the charges overflow the money range: the month's statistics then fail,
    /// naming the report, as they would computing them from the job.
    pub charges: Option<FactCharges>,
    /// The report records the training of the customer's staff (R16).
    pub training: bool,
    /// The R9 scores (attitude, skill, punctuality, service items) when the report carries
    /// the customer's acknowledgement.
    pub survey: Option<[Option<u8>; 4]>,
    /// R9: the customer wrote a suggestion (counted, being free text).
    pub suggestion: bool,
    /// The fault: category, or cause when no category was recorded; trimmed, lower case.
    pub fault: Option<String>,
    pub product_type: String,
    pub serial: String,
}

impl ReportFacts {
    pub fn of(r: &ReportedJob) -> Self {
        let job = &r.job;
        Self {
            report_id: r.report_id.clone(),
            branch_id: r.branch_id.clone(),
            signed_at: r.signed_at,
            job_id: job.job_id,
            kind: job.kind,
            billing: job.billing.mode,
            people: u32::try_from(job.technicians.len().max(1)).unwrap_or(u32::MAX),
            days_on_site: days_on_site(job),
            // None when a sum overflows, like the charges themselves (the month then names
            // the report).
            charges: charges(job).ok().and_then(|c| {
                let claims = job
                    .expenses
                    .iter()
                    .try_fold(Money::ZERO, |sum, e| sum.checked_add(e.amount))?;
                Some(FactCharges {
                    parts: c.parts,
                    labour: c.labour,
                    travel: c.travel,
                    cost: c.cost.checked_add(claims)?,
                    customer_pays: c.customer_pays,
                })
            }),
            training: job.visit.training.is_some(),
            survey: job
                .acknowledgement
                .as_ref()
                .map(|ack| ack.survey.scores().map(|(_, score)| score)),
            suggestion: job
                .acknowledgement
                .as_ref()
                .is_some_and(|ack| !ack.survey.suggestions.trim().is_empty()),
            fault: fault_of(job),
            product_type: job.product.product_type.clone(),
            serial: job.product.serial.clone(),
        }
    }
}

/// Why statistics could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("report {report_id}: {source}")]
    Charges {
        report_id: String,
        source: ChargeError,
    },
    #[error("report {report_id}: {source}")]
    Time {
        report_id: String,
        source: TimeError,
    },
    #[error("a sum overflowed the money range")]
    Overflow,
}

/// Trips, days and cost of one group of jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    pub jobs: u32,
    pub person_trips: u32,
    pub person_days: u32,
    pub cost: Money,
}

/// One fault cause seen on a product type (R27).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultCount {
    pub product_type: String,
    pub fault: String,
    pub count: u32,
}

/// A product repaired again for the same fault (R4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepeatRepair {
    pub serial: String,
    pub product_type: String,
    pub fault: String,
    pub earlier_job: DocumentId,
    pub repeat_job: DocumentId,
    pub days_between: i64,
}

/// The month's service summary (R24 (6)).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub reports: u32,
    pub by_kind: BTreeMap<String, u32>,
    pub warranty_jobs: u32,
    pub billable_jobs: u32,
    pub billed_to_customers: Money,
    /// R16: installation jobs whose report records the training of the customer's staff
    /// (required of every installation signed since the record exists; older ones lack it).
    pub installations_with_training: u32,
    /// Reports whose customer answered at least one R9 score.
    pub surveys_answered: u32,
    /// Reports whose customer skipped the survey (no score answered).
    pub surveys_not_answered: u32,
    /// Mean R9 survey scores (1–5), each over the reports that answered it; `None` when no
    /// customer answered it this month.
    pub mean_attitude: Option<f64>,
    pub mean_skill: Option<f64>,
    pub mean_punctuality: Option<f64>,
    pub mean_service_items: Option<f64>,
    /// R9: surveys with a suggestion written in.
    pub surveys_with_suggestions: u32,
}

/// R24 and R27 for one branch and month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyStats {
    pub month: Month,
    pub branch_id: BranchId,
    pub installation: Dispatch,
    pub service: Dispatch,
    pub materials_cost: Money,
    pub transport_cost: Money,
    /// R28: the travel expense claims approved for the month's jobs (inside the costs above).
    pub travel_expenses: Money,
    pub total_cost_excluding_installation_fees: Money,
    pub summary: Summary,
    pub fault_causes: Vec<FaultCount>,
    pub repeat_repairs: Vec<RepeatRepair>,
}

fn add(a: Money, b: Money) -> Result<Money, StatsError> {
    a.checked_add(b).ok_or(StatsError::Overflow)
}

fn fault_of(job: &Job) -> Option<String> {
    job.diagnosis
        .fault_category
        .clone()
        .or_else(|| job.diagnosis.fault_cause.clone())
        .map(|f| f.trim().to_lowercase())
        .filter(|f| !f.is_empty())
}

fn days_on_site(job: &Job) -> u32 {
    match (
        job.visit.arrival,
        job.visit.check_out.as_ref().map(|c| c.at),
    ) {
        (Some(arrival), Some(out)) if out > arrival => {
            let ms = out.as_millis() - arrival.as_millis();
            u32::try_from((ms + DAY_MS - 1) / DAY_MS)
                .unwrap_or(u32::MAX)
                .max(1)
        }
        _ => 1,
    }
}

/// Statistics of `month` (UTC) per branch, from every verified report known (earlier months
/// are used only to find repeat repairs).
pub fn monthly(
    reports: &[ReportedJob],
    month: Month,
    repeat_window_days: i64,
) -> Result<Vec<MonthlyStats>, StatsError> {
    monthly_in(reports, month, repeat_window_days, &Utc)
}

/// [`monthly`] with months read in `zone`.
pub fn monthly_in(
    reports: &[ReportedJob],
    month: Month,
    repeat_window_days: i64,
    zone: &dyn MonthOf,
) -> Result<Vec<MonthlyStats>, StatsError> {
    let facts: Vec<ReportFacts> = reports.iter().map(ReportFacts::of).collect();
    monthly_from_facts(&facts, month, repeat_window_days, zone)
}

/// [`monthly_in`] from the reports' facts (what head office keeps beside each archived
/// report).
pub fn monthly_from_facts(
    reports: &[ReportFacts],
    month: Month,
    repeat_window_days: i64,
    zone: &dyn MonthOf,
) -> Result<Vec<MonthlyStats>, StatsError> {
    let mut by_branch: BTreeMap<BranchId, MonthlyStats> = BTreeMap::new();
    let mut faults: BTreeMap<(BranchId, String, String), u32> = BTreeMap::new();
    // Per branch and score: (sum, answers).
    let mut survey_sums: BTreeMap<BranchId, [(u32, u32); 4]> = BTreeMap::new();

    for r in reports {
        let in_month = zone
            .month_of(r.signed_at)
            .map_err(|source| StatsError::Time {
                report_id: r.report_id.clone(),
                source,
            })?
            == month;
        if !in_month {
            continue;
        }
        let c = r.charges.ok_or_else(|| StatsError::Charges {
            report_id: r.report_id.clone(),
            source: ChargeError::Overflow,
        })?;
        let stats = by_branch
            .entry(r.branch_id.clone())
            .or_insert_with(|| MonthlyStats {
                month,
                branch_id: r.branch_id.clone(),
                installation: Dispatch::default(),
                service: Dispatch::default(),
                materials_cost: Money::ZERO,
                transport_cost: Money::ZERO,
                travel_expenses: Money::ZERO,
                total_cost_excluding_installation_fees: Money::ZERO,
                summary: Summary::default(),
                fault_causes: Vec::new(),
                repeat_repairs: Vec::new(),
            });
        let group = if r.kind == JobKind::Installation {
            &mut stats.installation
        } else {
            &mut stats.service
        };
        group.jobs += 1;
        group.person_trips += r.people;
        group.person_days += r.people * r.days_on_site;
        group.cost = add(group.cost, c.cost)?;
        stats.materials_cost = add(stats.materials_cost, c.parts)?;
        stats.transport_cost = add(stats.transport_cost, c.travel)?;
        stats.travel_expenses = add(stats.travel_expenses, c.travel_expenses())?;
        let counted = if r.kind == JobKind::Installation {
            Money(c.cost.0 - c.labour.0)
        } else {
            c.cost
        };
        stats.total_cost_excluding_installation_fees =
            add(stats.total_cost_excluding_installation_fees, counted)?;

        let summary = &mut stats.summary;
        summary.reports += 1;
        *summary
            .by_kind
            .entry(r.kind.as_str().to_owned())
            .or_default() += 1;
        match r.billing {
            BillingMode::Warranty => summary.warranty_jobs += 1,
            BillingMode::Billable => summary.billable_jobs += 1,
        }
        summary.billed_to_customers = add(summary.billed_to_customers, c.customer_pays)?;
        summary.installations_with_training +=
            u32::from(r.kind == JobKind::Installation && r.training);
        if let Some(scores) = &r.survey {
            if scores.iter().any(Option::is_some) {
                summary.surveys_answered += 1;
            } else {
                summary.surveys_not_answered += 1;
            }
            let sums = survey_sums.entry(r.branch_id.clone()).or_default();
            for (sum, score) in sums.iter_mut().zip(scores) {
                if let Some(score) = score {
                    sum.0 += u32::from(*score);
                    sum.1 += 1;
                }
            }
            summary.surveys_with_suggestions += u32::from(r.suggestion);
        }
        if let Some(fault) = &r.fault {
            *faults
                .entry((r.branch_id.clone(), r.product_type.clone(), fault.clone()))
                .or_default() += 1;
        }
    }

    for ((branch, product_type, fault), count) in faults {
        if let Some(stats) = by_branch.get_mut(&branch) {
            stats.fault_causes.push(FaultCount {
                product_type,
                fault,
                count,
            });
        }
    }
    for (branch, sums) in survey_sums {
        if let Some(stats) = by_branch.get_mut(&branch) {
            let mean = |(sum, n): (u32, u32)| (n > 0).then(|| f64::from(sum) / f64::from(n));
            stats.summary.mean_attitude = mean(sums[0]);
            stats.summary.mean_skill = mean(sums[1]);
            stats.summary.mean_punctuality = mean(sums[2]);
            stats.summary.mean_service_items = mean(sums[3]);
        }
    }
    for repeat in repeat_repairs(reports, month, repeat_window_days, zone)? {
        let (branch, repeat) = repeat;
        if let Some(stats) = by_branch.get_mut(&branch) {
            stats.repeat_repairs.push(repeat);
        }
    }
    for stats in by_branch.values_mut() {
        stats
            .fault_causes
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.fault.cmp(&b.fault)));
    }
    Ok(by_branch.into_values().collect())
}

/// Every R24 line and every R9 survey dimension of one branch's month, labelled for a
/// person (what each includes is in [`DEFINITIONS`]), then the R27 fault causes.
pub fn stat_rows(s: &MonthlyStats) -> Vec<(String, String)> {
    let i = &s.installation;
    let v = &s.service;
    let m = &s.summary;
    // A score nobody answered this month has no mean (R9: a skipped survey is no 5).
    let score = |x: Option<f64>| x.map_or_else(|| "not answered".to_owned(), |x| format!("{x:.2}"));
    let named: Vec<(&str, String)> = vec![
        ("reports", m.reports.to_string()),
        ("R24 (1) installation jobs", i.jobs.to_string()),
        (
            "R24 (1) installation person-trips",
            i.person_trips.to_string(),
        ),
        (
            "R24 (1) installation person-days",
            i.person_days.to_string(),
        ),
        ("R24 (1) installation cost", i.cost.to_string()),
        (
            "R24 (1) installation jobs with training (R16)",
            m.installations_with_training.to_string(),
        ),
        ("R24 (2) service jobs", v.jobs.to_string()),
        ("R24 (2) service person-trips", v.person_trips.to_string()),
        ("R24 (2) service person-days", v.person_days.to_string()),
        ("R24 (2) service cost", v.cost.to_string()),
        (
            "R24 (3) materials cost (in costs above)",
            s.materials_cost.to_string(),
        ),
        (
            "R24 (4) transport cost (in costs above)",
            s.transport_cost.to_string(),
        ),
        (
            "R28 travel expenses approved (in costs above)",
            s.travel_expenses.to_string(),
        ),
        (
            "R24 (5) total cost excl. installation fees",
            s.total_cost_excluding_installation_fees.to_string(),
        ),
        ("R24 (6) warranty jobs", m.warranty_jobs.to_string()),
        ("R24 (6) billable jobs", m.billable_jobs.to_string()),
        (
            "R24 (6) billed to customers",
            m.billed_to_customers.to_string(),
        ),
        (
            "R24 (6) repeat repairs (R4)",
            s.repeat_repairs.len().to_string(),
        ),
        ("R9 surveys answered", m.surveys_answered.to_string()),
        (
            "R9 surveys not answered",
            m.surveys_not_answered.to_string(),
        ),
        ("R9 mean attitude", score(m.mean_attitude)),
        ("R9 mean technical skill", score(m.mean_skill)),
        ("R9 mean punctuality", score(m.mean_punctuality)),
        ("R9 mean service items", score(m.mean_service_items)),
        (
            "R9 surveys with suggestions",
            m.surveys_with_suggestions.to_string(),
        ),
    ];
    let mut rows: Vec<(String, String)> = named
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for (kind, n) in &m.by_kind {
        rows.push((format!("R24 (6) jobs of kind {kind}"), n.to_string()));
    }
    for f in &s.fault_causes {
        rows.push((
            format!("R27 fault cause: {} / {}", f.product_type, f.fault),
            f.count.to_string(),
        ));
    }
    rows
}

/// The monthly statistics as `table` (with the definitions under the figures), `csv` (the
/// definitions as `#` lines) or `json`.
pub fn render(stats: &[MonthlyStats], format: &str) -> Result<String, table::RenderError> {
    if format == "json" {
        return serde_json::to_string_pretty(stats)
            .map_err(|e| table::RenderError::Json(e.to_string()));
    }
    let blocks: Vec<table::MetricBlock> = stats
        .iter()
        .map(|s| table::MetricBlock {
            branch: s.branch_id.to_string(),
            month: s.month,
            heading: format!("branch {}, {}", s.branch_id, s.month),
            rows: stat_rows(s),
        })
        .collect();
    table::render_blocks(
        &blocks,
        format,
        "no verified reports in this month\n",
        DEFINITIONS,
    )
}

/// Repeat repairs whose later job was signed in `month` (R4).
fn repeat_repairs(
    reports: &[ReportFacts],
    month: Month,
    window_days: i64,
    zone: &dyn MonthOf,
) -> Result<Vec<(BranchId, RepeatRepair)>, StatsError> {
    let mut by_product: BTreeMap<(String, String), Vec<&ReportFacts>> = BTreeMap::new();
    for r in reports {
        if let Some(fault) = &r.fault {
            by_product
                .entry((r.serial.clone(), fault.clone()))
                .or_default()
                .push(r);
        }
    }
    let mut found = Vec::new();
    for ((serial, fault), mut list) in by_product {
        list.sort_by_key(|r| (r.signed_at, r.report_id.clone()));
        for pair in list.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            if earlier.job_id == later.job_id {
                continue;
            }
            let later_month =
                zone.month_of(later.signed_at)
                    .map_err(|source| StatsError::Time {
                        report_id: later.report_id.clone(),
                        source,
                    })?;
            let days = (later.signed_at.as_millis() - earlier.signed_at.as_millis()) / DAY_MS;
            if later_month == month && days <= window_days {
                found.push((
                    later.branch_id.clone(),
                    RepeatRepair {
                        serial: serial.clone(),
                        product_type: later.product_type.clone(),
                        fault: fault.clone(),
                        earlier_job: earlier.job_id,
                        repeat_job: later.job_id,
                        days_between: days,
                    },
                ));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{CheckOut, Labour, Survey, Training, Travel};
    use crate::rules::tests::sample_job;

    fn report(id: &str, day: i64, f: impl FnOnce(&mut Job)) -> ReportedJob {
        let mut job = sample_job();
        job.job_id = DocumentId::from_bytes([id.len() as u8 + day as u8; 16]);
        f(&mut job);
        ReportedJob {
            report_id: id.into(),
            branch_id: job.branch_id.clone(),
            // 2026-11-01T00:00:00Z plus `day` days.
            signed_at: Timestamp::from_millis(1_793_491_200_000 + day * DAY_MS),
            job,
        }
    }

    /// A small month computed by hand.
    #[test]
    fn r24_a_hand_computed_month() {
        let month: Month = "2026-11".parse().expect("valid");
        let reports = vec![
            // The sample job: billable repair, one technician, parts 28.00 (3.00 under
            // warranty), labour 90.00, travel 25.00 → cost 143.00, customer pays 140.00.
            report("r1", 2, |_| {}),
            // An installation by two technicians over two days: parts 28.00, labour 120.00
            // (the contract fee, excluded from the total), travel 10.00.
            report("r2", 5, |j| {
                j.kind = JobKind::Installation;
                j.technicians
                    .push(crate::ids::TechnicianId::new("tech-li").expect("valid"));
                j.labour = Labour {
                    minutes: 120,
                    rate_per_hour: Money(6000),
                };
                j.travel = Travel {
                    distance_m: 5000,
                    cost: Money(1000),
                };
                let arrival = j.visit.arrival.expect("sample has one");
                j.visit.check_out = Some(CheckOut {
                    at: arrival.plus_millis(DAY_MS + 3_600_000),
                    by: j.technicians[0].clone(),
                    note: String::new(),
                });
                j.diagnosis.fault_category = None;
                j.diagnosis.fault_cause = None;
                j.visit.training = Some(Training {
                    at: arrival.plus_millis(DAY_MS),
                    by: j.technicians[0].clone(),
                    trainees: vec!["line operators".into()],
                    topics: "start-up and shutdown".into(),
                });
            }),
            // A warranty repeat repair of the same chiller for the same fault, 10 days later.
            report("r3", 12, |j| j.billing.mode = BillingMode::Warranty),
            // Last month, on another product: counted nowhere this month.
            report("r0", -20, |j| j.product.serial = "SN-OTHER".into()),
        ];
        let stats = monthly(&reports, month, 90).expect("computable");
        assert_eq!(stats.len(), 1);
        let s = &stats[0];
        assert_eq!(
            s.service,
            Dispatch {
                jobs: 2,
                person_trips: 2,
                person_days: 2,
                cost: Money(28600)
            }
        );
        assert_eq!(
            s.installation,
            Dispatch {
                jobs: 1,
                person_trips: 2,
                person_days: 4,
                cost: Money(2800 + 12000 + 1000)
            }
        );
        assert_eq!(s.materials_cost, Money(2800 * 3));
        assert_eq!(s.transport_cost, Money(2500 + 1000 + 2500));
        assert_eq!(
            s.total_cost_excluding_installation_fees,
            Money(14300 + (15800 - 12000) + 14300)
        );
        assert_eq!(s.summary.reports, 3);
        assert_eq!(s.summary.warranty_jobs, 1);
        assert_eq!(
            s.summary.billed_to_customers,
            Money(14000 + (2500 + 12000 + 1000))
        );
        assert_eq!(s.summary.by_kind.get("installation"), Some(&1));
        assert_eq!(s.summary.installations_with_training, 1);
        assert_eq!(s.summary.mean_attitude, Some(5.0));
        assert_eq!(s.summary.surveys_answered, 3);
        assert_eq!(
            s.fault_causes,
            vec![FaultCount {
                product_type: "chiller".into(),
                fault: "electrical".into(),
                count: 2
            }]
        );
        assert_eq!(s.repeat_repairs.len(), 1);
        assert_eq!(s.repeat_repairs[0].days_between, 10);
        assert_eq!(s.repeat_repairs[0].serial, "SN-88812");
    }

    /// R9: every survey dimension, means computed by hand: the sample's scores are attitude
    /// 5, skill 4, punctuality 5, service items 4, no suggestion; a second report scores
    /// 3, 2, 4, 1 with a suggestion; a third has no acknowledgement and counts in no mean.
    #[test]
    fn r9_every_survey_dimension_is_averaged_over_the_surveys() {
        let month: Month = "2026-11".parse().expect("valid");
        let reports = vec![
            report("s1", 1, |_| {}),
            report("s2", 2, |j| {
                let survey = &mut j.acknowledgement.as_mut().expect("sample has one").survey;
                survey.attitude = Some(3);
                survey.skill = Some(2);
                survey.punctuality = Some(4);
                survey.service_items = Some(1);
                survey.suggestions = "call before coming".into();
            }),
            report("s3", 3, |j| j.acknowledgement = None),
        ];
        let stats = monthly(&reports, month, 90).expect("computable");
        let m = &stats[0].summary;
        assert_eq!(
            (m.reports, m.surveys_answered, m.surveys_with_suggestions),
            (3, 2, 1)
        );
        let near = |mean: Option<f64>, want: f64| mean.is_some_and(|v| (v - want).abs() < 1e-9);
        assert!(near(m.mean_attitude, 4.0), "{m:?}");
        assert!(near(m.mean_skill, 3.0), "{m:?}");
        assert!(near(m.mean_punctuality, 4.5), "{m:?}");
        assert!(near(m.mean_service_items, 2.5), "{m:?}");
        let rows = stat_rows(&stats[0]);
        let row = |name: &str| {
            rows.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
        };
        assert_eq!(row("R9 mean attitude"), "4.00");
        assert_eq!(row("R9 mean technical skill"), "3.00");
        assert_eq!(row("R9 mean punctuality"), "4.50");
        assert_eq!(row("R9 mean service items"), "2.50");
        assert_eq!(row("R9 surveys with suggestions"), "1");
    }

    /// R24: the table and the CSV carry every line (1)–(6) and say what the costs include.
    #[test]
    fn r24_table_and_csv_show_every_line_and_the_definitions() {
        let month: Month = "2026-11".parse().expect("valid");
        let stats = monthly(&[report("t1", 1, |_| {})], month, 90).expect("computable");
        for format in ["table", "csv"] {
            let text = render(&stats, format).expect("renders");
            for n in 1..=6 {
                assert!(text.contains(&format!("R24 ({n})")), "{format}: {text}");
            }
            for dim in [
                "attitude",
                "technical skill",
                "punctuality",
                "service items",
            ] {
                assert!(text.contains(&format!("R9 mean {dim}")), "{format}: {text}");
            }
            assert!(text.contains("do not add them again"), "{format}: {text}");
        }
        let csv = render(&stats, "csv").expect("renders");
        assert!(csv.starts_with("# a report counts"), "{csv}");
        // The sample: parts 28.00, labour 90.00, travel 25.00.
        assert!(
            csv.contains("north-01,2026-11,R24 (2) service cost,143.00\n"),
            "{csv}"
        );
        assert!(
            csv.contains("R24 (3) materials cost (in costs above),28.00\n"),
            "{csv}"
        );
    }

    /// R22: one rate, complaints over verified reports; none without reports.
    #[test]
    fn r22_the_complaint_rate_is_complaints_over_reports_verified() {
        assert_eq!(complaint_rate(3, 0), None);
        assert_eq!(complaint_rate(0, 4), Some(0.0));
        assert_eq!(complaint_rate(3, 4), Some(0.75));
    }

    /// Months are read in the zone given: a report signed at 23:30 UTC on 31 October is
    /// November's in Shanghai, eight hours ahead.
    #[test]
    fn r24_months_follow_the_zone_passed_in() {
        let month: Month = "2026-11".parse().expect("valid");
        let mut late = report("z1", 0, |_| {});
        late.signed_at = late.signed_at.plus_millis(-30 * 60_000);
        let reports = vec![late];
        assert!(monthly(&reports, month, 90).expect("computable").is_empty());
        let shanghai: crate::zone::Zone = "Asia/Shanghai".parse().expect("a known zone");
        let in_plus8 = monthly_in(&reports, month, 90, &shanghai).expect("computable");
        assert_eq!(in_plus8[0].summary.reports, 1);
    }

    #[test]
    fn r9_a_skipped_survey_is_counted_as_not_answered_never_as_a_score() {
        let month: Month = "2026-11".parse().expect("valid");
        let set = |survey: Survey| {
            move |j: &mut Job| {
                j.acknowledgement.as_mut().expect("sample has one").survey = survey;
            }
        };
        let reports = vec![
            report("a", 1, set(Survey::answered(2, 3, 4, 1, ""))),
            report("bb", 2, set(Survey::not_answered())),
            // Only attitude answered: the other means are over the first report alone.
            report(
                "ccc",
                3,
                set(Survey {
                    attitude: Some(4),
                    ..Survey::not_answered()
                }),
            ),
        ];
        let s = &monthly(&reports, month, 90).expect("computable")[0].summary;
        assert_eq!((s.surveys_answered, s.surveys_not_answered), (2, 1));
        assert_eq!(s.mean_attitude, Some(3.0));
        assert_eq!(s.mean_skill, Some(3.0));
        assert_eq!(s.mean_punctuality, Some(4.0));
        assert_eq!(s.mean_service_items, Some(1.0));

        let skipped = vec![report("d", 1, set(Survey::not_answered()))];
        let s = &monthly(&skipped, month, 90).expect("computable")[0].summary;
        assert_eq!((s.surveys_answered, s.surveys_not_answered), (0, 1));
        assert_eq!(s.mean_attitude, None);
        assert_eq!(s.mean_service_items, None);
    }

    #[test]
    fn r4_repeats_outside_the_window_are_not_flagged() {
        let month: Month = "2026-11".parse().expect("valid");
        let reports = vec![report("a", -100, |_| {}), report("b", 3, |_| {})];
        let stats = monthly(&reports, month, 90).expect("computable");
        assert!(stats[0].repeat_repairs.is_empty());
    }
}
