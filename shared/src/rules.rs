//! Business rules over a job, from `../shared/DOMAIN.md`.
//!
//! The completeness check is what stands between a job and a signed report (R7, R8, R11, and
//! R16's training for installation jobs): it returns every missing item with its rule id, so
//! the technician can fix them all in one go rather than discovering them one refusal at a
//! time. Charges follow R10: warranty work costs
//! the customer nothing, but its cost is still computed because the monthly statistics (R24)
//! count it.

use serde::Serialize;

use crate::job::{
    Acknowledgement, BillingMode, Job, JobKind, RefusalReason, SignatureMark, Survey,
};
use crate::time::Money;

/// One item a job lacks before it can become a signed report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The rule of DOMAIN.md the item comes from.
    pub rule: &'static str,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// What a person should do about it.
    pub message: String,
}

impl From<Missing> for RefusalReason {
    fn from(m: Missing) -> Self {
        RefusalReason {
            rule: m.rule.to_owned(),
            code: m.code.to_owned(),
            message: m.message,
        }
    }
}

fn blank(s: Option<&str>) -> bool {
    s.is_none_or(|s| s.trim().is_empty())
}

/// Checks a job against R7 (report fields), R8/R9 (customer acknowledgement and survey), R11
/// (check-out) and, for installation and commissioning jobs, R16 (the customer's staff were
/// trained: a training record naming at least one trainee and what was covered). Returns every
/// missing item; an empty list means the job is complete.
///
/// Which items apply depends on the kind of job:
/// - R7's diagnosis (fault cause and solution) is a repair's: a repair job needs both; an
///   installation, maintenance or follow-up visit has no fault to explain and needs neither
///   (what it recorded is still printed).
/// - R7's part names and customer opinion belong to every service report (§1 IV.6 fines a
///   report of any service that lacks them).
/// - R16's training is an installation's; other kinds need none.
/// - R9: the survey may be skipped (a score not answered is `None`), but a score given must
///   be 1 to 5.
///
/// This checks presence and form only. Whether the acknowledgement's signature verifies and
/// still matches the job's content is the signature layer's job (`report`), since it needs the
/// device's key and the document's heads.
pub fn completeness(job: &Job) -> Vec<Missing> {
    let mut missing = Vec::new();
    let mut add = |rule, code, message: String| {
        missing.push(Missing {
            rule,
            code,
            message,
        })
    };

    if job.kind == JobKind::Repair {
        if blank(job.diagnosis.fault_cause.as_deref()) {
            add("R7", "missing_fault_cause", "record the fault cause".into());
        }
        if blank(job.diagnosis.solution.as_deref()) {
            add("R7", "missing_solution", "record the solution".into());
        }
    }
    for part in &job.parts {
        if part.name.trim().is_empty() {
            add(
                "R7",
                "missing_part_name",
                format!("name the replaced part on line {}", part.id.0),
            );
        }
    }
    if blank(job.customer_opinion.as_deref()) {
        add(
            "R7",
            "missing_customer_opinion",
            "record the customer's opinion".into(),
        );
    }

    match &job.acknowledgement {
        None => add(
            "R8",
            "missing_acknowledgement",
            "have the customer sign the report".into(),
        ),
        Some(ack) => {
            if ack.signer_name.trim().is_empty() {
                add(
                    "R8",
                    "missing_signer_name",
                    "record the name of the customer who signed".into(),
                );
            }
            let empty_mark = match &ack.signature {
                SignatureMark::Strokes { strokes } => strokes.iter().all(Vec::is_empty),
                SignatureMark::Image { data, .. } => data.is_empty(),
            };
            if empty_mark {
                add(
                    "R8",
                    "missing_signature",
                    "the customer's signature is empty".into(),
                );
            }
            for (name, score) in ack.survey.scores() {
                if let Some(score) = score
                    && !Survey::SCORES.contains(&score)
                {
                    add(
                        "R9",
                        "invalid_survey_score",
                        format!(
                            "survey score {name} must be 1 to 5 (or not answered), got {score}"
                        ),
                    );
                }
            }
        }
    }

    if job.visit.check_out.is_none() {
        add(
            "R11",
            "missing_check_out",
            "check out with the service desk before leaving the site".into(),
        );
    }

    if job.kind == JobKind::Installation {
        match &job.visit.training {
            None => add(
                "R16",
                "missing_training",
                "record the training given to the customer's staff: who was trained and what it covered"
                    .into(),
            ),
            Some(training) => {
                if training.trainees.iter().all(|t| t.trim().is_empty()) {
                    add(
                        "R16",
                        "missing_trainee",
                        "name at least one of the customer's staff who was trained".into(),
                    );
                }
                if training.topics.trim().is_empty() {
                    add(
                        "R16",
                        "missing_training_topics",
                        "record what the training covered".into(),
                    );
                }
            }
        }
    }
    missing
}

/// What stands between a job and the customer's signature: every item [`completeness`] would
/// list once `ack` is written into the job, that is everything R7, R9, R11 and R16 need and
/// the form of the acknowledgement itself (R8: a signer's name, a mark, scores 1 to 5 or not
/// answered). Asking the customer to sign only when this is empty means a signature is taken
/// once: the completion request that follows is not refused for anything the technician
/// could still change, which would change the acknowledged content and need a new signature.
pub fn acknowledgement_blockers(job: &Job, ack: &Acknowledgement) -> Vec<Missing> {
    let mut with_ack = job.clone();
    with_ack.acknowledgement = Some(ack.clone());
    completeness(&with_ack)
}

/// Why charges could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    #[error("charges overflow the money range")]
    Overflow,
}

/// What a job costs and what the customer pays (R10, R24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Charges {
    /// All parts used, whoever pays for them (materials cost, R24 (3)).
    pub parts: Money,
    /// The part of `parts` replaced free under warranty (R10, R18).
    pub parts_under_warranty: Money,
    pub labour: Money,
    /// Transport cost (R24 (4)).
    pub travel: Money,
    /// The cost of the job to the company: parts + labour + travel.
    pub cost: Money,
    /// What the customer is billed: nothing for a warranty job; for a billable job, parts
    /// not covered by warranty plus labour plus travel.
    pub customer_pays: Money,
}

/// Computes the charges of a job. Labour is `minutes × rate / 60`, rounded half up to the
/// minor unit.
pub fn charges(job: &Job) -> Result<Charges, ChargeError> {
    let mut parts: i128 = 0;
    let mut warranty_parts: i128 = 0;
    for p in &job.parts {
        let line = i128::from(p.quantity) * i128::from(p.unit_price.0);
        parts += line;
        if p.warranty {
            warranty_parts += line;
        }
    }
    let labour_num = i128::from(job.labour.minutes) * i128::from(job.labour.rate_per_hour.0);
    let labour = (labour_num * 2 + 60).div_euclid(120);
    let travel = i128::from(job.travel.cost.0);
    let cost = parts + labour + travel;
    let customer_pays = match job.billing.mode {
        BillingMode::Warranty => 0,
        BillingMode::Billable => parts - warranty_parts + labour + travel,
    };
    let m = |v: i128| {
        i64::try_from(v)
            .map(Money)
            .map_err(|_| ChargeError::Overflow)
    };
    Ok(Charges {
        parts: m(parts)?,
        parts_under_warranty: m(warranty_parts)?,
        labour: m(labour)?,
        travel: m(travel)?,
        cost: m(cost)?,
        customer_pays: m(customer_pays)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
    use crate::job::*;
    use crate::time::Timestamp;

    /// A complete billable repair job, used across the crate's tests.
    pub(crate) fn sample_job() -> Job {
        let tech = TechnicianId::new("tech-wang").expect("valid");
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: DocumentId::from_bytes([7; 16]),
            branch_id: BranchId::new("north-01").expect("valid"),
            kind: JobKind::Repair,
            request: ServiceRequest {
                channel: Channel::Phone,
                received_at: Timestamp::from_millis(1_790_000_000_000),
                fault_description: "Compressor trips after ten minutes".into(),
                requested_arrival: Some(Timestamp::from_millis(1_790_050_000_000)),
            },
            customer: Customer {
                id: CustomerId::new("c-1001").expect("valid"),
                name: "Lotus Foods Ltd".into(),
                contact: "Ms Chen, 555-0101".into(),
                site_address: "12 Harbour Road".into(),
            },
            product: Product {
                model: "CH-500".into(),
                serial: "SN-88812".into(),
                product_type: "chiller".into(),
                purchase_date: "2023-04-01".parse().ok(),
                warranty_end: "2025-04-01".parse().ok(),
            },
            technicians: vec![tech.clone()],
            visit: Visit {
                appointment: Some(Timestamp::from_millis(1_790_040_000_000)),
                arrival: Some(Timestamp::from_millis(1_790_049_000_000)),
                safety_briefing: None,
                check_out: Some(CheckOut {
                    at: Timestamp::from_millis(1_790_060_000_000),
                    by: tech.clone(),
                    note: "done".into(),
                }),
                training: None,
            },
            diagnosis: Diagnosis {
                fault_cause: Some("Worn start capacitor".into()),
                fault_category: Some("electrical".into()),
                solution: Some("Replaced capacitor, tested 30 minutes".into()),
            },
            parts: vec![
                PartUsed {
                    id: PartLineId("p1".into()),
                    part_number: "CAP-45".into(),
                    name: "Start capacitor".into(),
                    specification: "45 µF 450 V".into(),
                    quantity: 2,
                    unit_price: Money(1250),
                    warranty: false,
                },
                PartUsed {
                    id: PartLineId("p2".into()),
                    part_number: "FUSE-10".into(),
                    name: "Fuse".into(),
                    specification: "10 A".into(),
                    quantity: 1,
                    unit_price: Money(300),
                    warranty: true,
                },
            ],
            labour: Labour {
                minutes: 90,
                rate_per_hour: Money(6000),
            },
            travel: Travel {
                distance_m: 18_000,
                cost: Money(2500),
            },
            billing: Billing {
                mode: BillingMode::Billable,
                currency: "CNY".into(),
                invoice_number: Some("INV-1".into()),
            },
            handover: None,
            customer_opinion: Some("Quick and tidy".into()),
            acknowledgement: Some(Acknowledgement {
                signer_name: "Chen Li".into(),
                signature: SignatureMark::Strokes {
                    strokes: vec![vec![[0, 0], [10, 12]]],
                },
                signed_at: Timestamp::from_millis(1_790_059_000_000),
                survey: Survey::answered(5, 4, 5, 4, ""),
                device_id: DeviceId::new("dev-1").expect("valid"),
                job_digest: String::new(),
                heads: Vec::new(),
                device_signature: String::new(),
            }),
            completion: None,
            report: None,
            timeline: Vec::new(),
            notes: String::new(),
            attachments: Vec::new(),
            expenses: Vec::new(),
        }
    }

    fn codes(job: &Job) -> Vec<(&'static str, &'static str)> {
        completeness(job).iter().map(|m| (m.rule, m.code)).collect()
    }

    #[test]
    fn complete_job_has_nothing_missing() {
        assert_eq!(codes(&sample_job()), vec![]);
    }

    #[test]
    fn r7_each_missing_report_field_is_reported() {
        let mut job = sample_job();
        job.diagnosis.fault_cause = None;
        assert_eq!(codes(&job), vec![("R7", "missing_fault_cause")]);
        let mut job = sample_job();
        job.diagnosis.solution = Some("  ".into());
        assert_eq!(codes(&job), vec![("R7", "missing_solution")]);
        let mut job = sample_job();
        job.parts[1].name = String::new();
        assert_eq!(codes(&job), vec![("R7", "missing_part_name")]);
        let mut job = sample_job();
        job.customer_opinion = None;
        assert_eq!(codes(&job), vec![("R7", "missing_customer_opinion")]);
    }

    #[test]
    fn r8_r9_acknowledgement_items_are_reported() {
        let mut job = sample_job();
        job.acknowledgement = None;
        assert_eq!(codes(&job), vec![("R8", "missing_acknowledgement")]);
        let mut job = sample_job();
        let ack = job.acknowledgement.as_mut().expect("sample has one");
        ack.signer_name = String::new();
        ack.signature = SignatureMark::Image {
            mime: "image/png".into(),
            data: Vec::new(),
        };
        ack.survey.skill = Some(0);
        ack.survey.service_items = Some(6);
        assert_eq!(
            codes(&job),
            vec![
                ("R8", "missing_signer_name"),
                ("R8", "missing_signature"),
                ("R9", "invalid_survey_score"),
                ("R9", "invalid_survey_score"),
            ]
        );
    }

    #[test]
    fn r11_missing_check_out_is_reported() {
        let mut job = sample_job();
        job.visit.check_out = None;
        assert_eq!(codes(&job), vec![("R11", "missing_check_out")]);
    }

    /// The sample job as an installation, with the training given and recorded.
    pub(crate) fn trained_installation() -> Job {
        let mut job = sample_job();
        job.kind = JobKind::Installation;
        job.visit.training = Some(Training {
            at: Timestamp::from_millis(1_790_058_000_000),
            by: TechnicianId::new("tech-wang").expect("valid"),
            trainees: vec!["Ms Chen (shift lead)".into(), "cold-room operators".into()],
            topics: "start-up, alarms, weekly filter cleaning".into(),
        });
        job
    }

    #[test]
    fn r16_installation_without_training_lists_it_as_missing() {
        let mut job = trained_installation();
        job.visit.training = None;
        assert_eq!(codes(&job), vec![("R16", "missing_training")]);
        let missing = completeness(&job);
        assert!(missing[0].message.contains("training"), "{missing:?}");
        let reason = RefusalReason::from(missing[0].clone());
        assert_eq!(
            (reason.rule.as_str(), reason.code.as_str()),
            ("R16", "missing_training")
        );
    }

    #[test]
    fn r16_installation_with_training_recorded_is_complete() {
        assert_eq!(codes(&trained_installation()), vec![]);
    }

    #[test]
    fn r16_training_must_name_a_trainee_and_what_it_covered() {
        let mut job = trained_installation();
        let training = job.visit.training.as_mut().expect("recorded");
        training.trainees = vec![" ".into()];
        training.topics = String::new();
        assert_eq!(
            codes(&job),
            vec![
                ("R16", "missing_trainee"),
                ("R16", "missing_training_topics")
            ]
        );
        job.visit
            .training
            .as_mut()
            .expect("recorded")
            .trainees
            .clear();
        assert_eq!(codes(&job)[0], ("R16", "missing_trainee"));
    }

    #[test]
    fn r16_service_jobs_need_no_training() {
        for kind in [JobKind::Repair, JobKind::Maintenance, JobKind::FollowUp] {
            let mut job = sample_job();
            job.kind = kind;
            assert_eq!(job.visit.training, None);
            assert_eq!(codes(&job), vec![], "{kind:?}");
            // A training record on a service job is fine as it is, even an incomplete one.
            job.visit.training = Some(Training {
                at: Timestamp::from_millis(1_790_058_000_000),
                by: TechnicianId::new("tech-wang").expect("valid"),
                trainees: Vec::new(),
                topics: String::new(),
            });
            assert_eq!(codes(&job), vec![], "{kind:?}");
        }
    }

    #[test]
    fn every_missing_item_is_reported_at_once_not_just_the_first() {
        let mut job = sample_job();
        job.diagnosis = Diagnosis::default();
        job.customer_opinion = None;
        job.acknowledgement = None;
        job.visit.check_out = None;
        assert_eq!(
            codes(&job),
            vec![
                ("R7", "missing_fault_cause"),
                ("R7", "missing_solution"),
                ("R7", "missing_customer_opinion"),
                ("R8", "missing_acknowledgement"),
                ("R11", "missing_check_out"),
            ]
        );
        job.kind = JobKind::Installation;
        assert_eq!(
            codes(&job),
            vec![
                ("R7", "missing_customer_opinion"),
                ("R8", "missing_acknowledgement"),
                ("R11", "missing_check_out"),
                ("R16", "missing_training"),
            ]
        );
    }

    #[test]
    fn r7_fault_cause_and_solution_are_a_repairs_not_an_installations() {
        for kind in [
            JobKind::Installation,
            JobKind::Maintenance,
            JobKind::FollowUp,
        ] {
            let mut job = trained_installation();
            job.kind = kind;
            job.diagnosis = Diagnosis::default();
            assert_eq!(codes(&job), vec![], "{kind:?}");
        }
        // Part names and the customer's opinion belong to every report.
        let mut job = trained_installation();
        job.parts[0].name = " ".into();
        job.customer_opinion = None;
        assert_eq!(
            codes(&job),
            vec![
                ("R7", "missing_part_name"),
                ("R7", "missing_customer_opinion")
            ]
        );
    }

    #[test]
    fn r9_a_skipped_survey_is_complete_and_a_score_given_must_be_1_to_5() {
        let mut job = sample_job();
        let ack = job.acknowledgement.as_mut().expect("sample has one");
        ack.survey = Survey::not_answered();
        assert!(!ack.survey.any_answered());
        assert_eq!(codes(&job), vec![]);
        let ack = job.acknowledgement.as_mut().expect("sample has one");
        ack.survey.attitude = Some(7);
        ack.survey.skill = Some(5);
        let missing = completeness(&job);
        assert_eq!(
            missing.iter().map(|m| (m.rule, m.code)).collect::<Vec<_>>(),
            vec![("R9", "invalid_survey_score")]
        );
        assert!(missing[0].message.contains("attitude"), "{missing:?}");
        assert!(missing[0].message.contains('7'), "{missing:?}");
    }

    #[test]
    fn acknowledgement_blockers_list_everything_but_the_acknowledgement_at_once() {
        let mut job = sample_job();
        let mut ack = job.acknowledgement.take().expect("sample has one");
        // A complete job with a well-formed acknowledgement: nothing blocks the signature.
        assert_eq!(acknowledgement_blockers(&job, &ack), vec![]);
        // What the issue saw: no cause, solution or opinion, a score of 7, no check-out.
        job.diagnosis = Diagnosis::default();
        job.customer_opinion = None;
        job.visit.check_out = None;
        ack.survey.attitude = Some(7);
        ack.signer_name = " ".into();
        let blockers: Vec<_> = acknowledgement_blockers(&job, &ack)
            .iter()
            .map(|m| (m.rule, m.code))
            .collect();
        assert_eq!(
            blockers,
            vec![
                ("R7", "missing_fault_cause"),
                ("R7", "missing_solution"),
                ("R7", "missing_customer_opinion"),
                ("R8", "missing_signer_name"),
                ("R9", "invalid_survey_score"),
                ("R11", "missing_check_out"),
            ]
        );
        // An installation asks for R16's training instead of a fault cause.
        let mut job = trained_installation();
        job.diagnosis = Diagnosis::default();
        job.visit.training = None;
        let ack = job.acknowledgement.take().expect("sample has one");
        let blockers: Vec<_> = acknowledgement_blockers(&job, &ack)
            .iter()
            .map(|m| (m.rule, m.code))
            .collect();
        assert_eq!(blockers, vec![("R16", "missing_training")]);
    }

    #[test]
    fn r10_billable_job_charges_parts_not_under_warranty_labour_and_travel() {
        let c = charges(&sample_job()).expect("in range");
        // Parts: 2 × 12.50 + 1 × 3.00 (warranty); labour 1.5 h × 60.00; travel 25.00.
        assert_eq!(c.parts, Money(2800));
        assert_eq!(c.parts_under_warranty, Money(300));
        assert_eq!(c.labour, Money(9000));
        assert_eq!(c.travel, Money(2500));
        assert_eq!(c.cost, Money(14300));
        assert_eq!(c.customer_pays, Money(2500 + 9000 + 2500));
    }

    #[test]
    fn r10_r24_warranty_job_is_free_for_the_customer_but_its_cost_is_counted() {
        let mut job = sample_job();
        job.billing.mode = BillingMode::Warranty;
        let c = charges(&job).expect("in range");
        assert_eq!(c.customer_pays, Money::ZERO);
        assert_eq!(c.cost, Money(14300));
    }

    #[test]
    fn labour_rounds_half_up_to_the_minor_unit() {
        let mut job = sample_job();
        job.labour = Labour {
            minutes: 1,
            rate_per_hour: Money(90),
        };
        // 90 / 60 = 1.5 → 2.
        assert_eq!(charges(&job).expect("in range").labour, Money(2));
        job.labour.rate_per_hour = Money(89);
        assert_eq!(charges(&job).expect("in range").labour, Money(1));
    }

    #[test]
    fn charges_overflow_is_an_error_not_a_wrap() {
        let mut job = sample_job();
        job.parts[0].unit_price = Money(i64::MAX);
        assert_eq!(charges(&job), Err(ChargeError::Overflow));
    }
}
