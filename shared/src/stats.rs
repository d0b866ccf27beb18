//! Monthly after-sales statistics (R24) and the quality digest (R27), computed from verified
//! service reports only.
//!
//! Definitions (R24 leaves them to the company; these are ours, stated once here):
//! - A report counts in the month (UTC) its branch signed it (R25 archives by that month).
//! - Installation/commissioning jobs (R16) are one group; every other kind is "service
//!   dispatch". The summary counts those whose report records the training of the
//!   customer's staff.
//! - Person-trips: one per technician on the job. Person-days: technicians × days on site,
//!   where days are counted from arrival to check-out, rounded up, at least one.
//! - Cost of a job: parts + labour + travel (`rules::charges`), whoever pays it.
//! - Materials cost: all parts; transport cost: all travel.
//! - Total after-sales cost excludes contract-specified installation fees, which we take to be
//!   the labour of installation jobs (it is paid for by the sales contract).
//! - Satisfaction (R9): each score's mean is over the reports whose customer answered that
//!   score; a survey the customer skipped counts in `surveys_not_answered` and in no mean. A
//!   month with no answer has no mean (`null`), not 0.
//! - Repeat repairs (R4): a job in the month on the same product serial with the same fault
//!   (category, or cause when no category was recorded) as an earlier report within
//!   `repeat_window_days`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::{BranchId, DocumentId};
use crate::job::{BillingMode, Job, JobKind};
use crate::rules::{ChargeError, charges};
use crate::time::{Money, Month, TimeError, Timestamp};

const DAY_MS: i64 = 86_400_000;

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
    pub cost: Money,
    pub customer_pays: Money,
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
            charges: charges(job).ok().map(|c| FactCharges {
                parts: c.parts,
                labour: c.labour,
                travel: c.travel,
                cost: c.cost,
                customer_pays: c.customer_pays,
            }),
            training: job.visit.training.is_some(),
            survey: job
                .acknowledgement
                .as_ref()
                .map(|ack| ack.survey.scores().map(|(_, score)| score)),
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

/// Statistics of `month` per branch, from every verified report known (earlier months are
/// used only to find repeat repairs).
pub fn monthly(
    reports: &[ReportedJob],
    month: Month,
    repeat_window_days: i64,
) -> Result<Vec<MonthlyStats>, StatsError> {
    let facts: Vec<ReportFacts> = reports.iter().map(ReportFacts::of).collect();
    monthly_from_facts(&facts, month, repeat_window_days)
}

/// [`monthly`] from the reports' facts (what head office keeps beside each archived report).
pub fn monthly_from_facts(
    reports: &[ReportFacts],
    month: Month,
    repeat_window_days: i64,
) -> Result<Vec<MonthlyStats>, StatsError> {
    let mut by_branch: BTreeMap<BranchId, MonthlyStats> = BTreeMap::new();
    let mut faults: BTreeMap<(BranchId, String, String), u32> = BTreeMap::new();
    // Per branch and score: (sum, answers).
    let mut survey_sums: BTreeMap<BranchId, [(u32, u32); 4]> = BTreeMap::new();

    for r in reports {
        let in_month = r.signed_at.month().map_err(|source| StatsError::Time {
            report_id: r.report_id.clone(),
            source,
        })? == month;
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
    for repeat in repeat_repairs(reports, month, repeat_window_days)? {
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

/// Repeat repairs whose later job was signed in `month` (R4).
fn repeat_repairs(
    reports: &[ReportFacts],
    month: Month,
    window_days: i64,
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
            let later_month = later.signed_at.month().map_err(|source| StatsError::Time {
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
