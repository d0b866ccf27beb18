//! A technician's record (issue 14, point 3): the violations the seed says are recorded,
//! computed from their jobs and the complaints against them. Pure: the edge server gathers
//! the facts ([`JobFacts`], [`ConductComplaint`]) from the stored jobs and desk records and
//! this decides what counts.
//!
//! - R2: on-time arrival. A job whose customer asked for a time counts once the technician
//!   arrived or the time has passed: on time when the arrival is at or before it. A late
//!   arrival with a personal cause (the desk's record) is a recorded violation.
//! - R4: repeat repairs. Their served jobs (checked out or signed) that the desk flagged as a
//!   repeat of an earlier repair of the same product for the same fault.
//! - R7: incomplete reports. Jobs whose completion the edge refused for a missing R7 item
//!   (fault cause, solution, replaced parts, customer opinion).
//! - R11: late check-outs. Jobs whose completion was asked for without a check-out (the
//!   edge refused it for R11), or with a check-out recorded after the completion request:
//!   the technician did not report back before leaving.
//! - R15: complaints about conduct: complaints against them about the service or people
//!   (R22's non-quality attribution); once verified (R21 step 2 found them valid), a major
//!   violation.

use crate::time::Timestamp;

/// What the record needs of one of the technician's jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFacts {
    pub job_id: String,
    /// R2: the time the customer asked the technician to arrive by.
    pub requested_arrival: Option<Timestamp>,
    pub arrival: Option<Timestamp>,
    /// R2: the desk recorded the late arrival's cause as personal.
    pub late_personal: bool,
    /// The desk cancelled the job: an arrival that never came is not late.
    pub cancelled: bool,
    /// R4: checked out or signed.
    pub served: bool,
    /// R4: the desk's repeat-repair flags (at creation or signing) are not empty.
    pub repeat_flagged: bool,
    /// The technician's completion request, when made.
    pub completion: Option<Timestamp>,
    /// R11: the check-out, when recorded.
    pub check_out: Option<Timestamp>,
    /// The rules of the reasons the edge refused the completion for (`R7`, `R11`, …), when
    /// the latest answer is a refusal.
    pub refused_for: Vec<String>,
}

/// A complaint naming the technician.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConductComplaint {
    pub complaint_id: String,
    /// R22 attribution `non_quality` (service, people): about conduct.
    pub about_conduct: bool,
    /// R21 step 2: `Some(true)` once found valid.
    pub valid: Option<bool>,
}

/// R2: how many arrivals counted and how many were on time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnTime {
    pub on_time: usize,
    pub counted: usize,
}

impl OnTime {
    /// The rate in whole percent, rounded half up; `None` when nothing counted yet.
    pub fn percent(self) -> Option<u32> {
        let counted = u64::try_from(self.counted).ok().filter(|c| *c > 0)?;
        let on_time = u64::try_from(self.on_time).ok()?;
        u32::try_from((on_time * 200 + counted) / (counted * 2)).ok()
    }
}

/// The technician's record: every list holds job (or complaint) ids, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TechnicianRecord {
    pub jobs: usize,
    pub arrivals: OnTime,
    /// R2: arrivals after the asked-for time (or none by then).
    pub late_arrivals: Vec<String>,
    /// R2: of those, late for personal reasons (a recorded violation).
    pub late_personal: Vec<String>,
    /// R4.
    pub repeat_repairs: Vec<String>,
    /// R7.
    pub incomplete_reports: Vec<String>,
    /// R11.
    pub late_check_outs: Vec<String>,
    /// R15: complaints about conduct, and those verified.
    pub conduct_complaints: Vec<String>,
    pub conduct_verified: Vec<String>,
}

impl TechnicianRecord {
    /// The recorded violations: personal late arrivals (R2), repeat repairs (R4),
    /// incomplete reports (R7), late check-outs (R11) and verified conduct complaints (R15).
    pub fn violations(&self) -> usize {
        self.late_personal.len()
            + self.repeat_repairs.len()
            + self.incomplete_reports.len()
            + self.late_check_outs.len()
            + self.conduct_verified.len()
    }
}

/// R11: the completion was asked for before the technician reported back.
pub fn late_check_out(job: &JobFacts) -> bool {
    if job.refused_for.iter().any(|r| r == "R11") {
        return true;
    }
    match (job.completion, job.check_out) {
        (Some(_), None) => true,
        (Some(done), Some(out)) => out > done,
        (None, _) => false,
    }
}

/// The record of a technician with `jobs` and `complaints` against them, at `now`.
pub fn technician_record(
    jobs: &[JobFacts],
    complaints: &[ConductComplaint],
    now: Timestamp,
) -> TechnicianRecord {
    let mut r = TechnicianRecord {
        jobs: jobs.len(),
        ..TechnicianRecord::default()
    };
    for job in jobs {
        if let Some(asked) = job.requested_arrival {
            let on_time = match job.arrival {
                Some(at) => Some(at <= asked),
                // Not there yet: late once the time has passed, unless cancelled.
                None if now > asked && !job.cancelled => Some(false),
                None => None,
            };
            if let Some(on_time) = on_time {
                r.arrivals.counted += 1;
                if on_time {
                    r.arrivals.on_time += 1;
                } else {
                    r.late_arrivals.push(job.job_id.clone());
                    if job.late_personal {
                        r.late_personal.push(job.job_id.clone());
                    }
                }
            }
        }
        if job.served && job.repeat_flagged {
            r.repeat_repairs.push(job.job_id.clone());
        }
        if job.refused_for.iter().any(|rule| rule == "R7") {
            r.incomplete_reports.push(job.job_id.clone());
        }
        if late_check_out(job) {
            r.late_check_outs.push(job.job_id.clone());
        }
    }
    for c in complaints.iter().filter(|c| c.about_conduct) {
        r.conduct_complaints.push(c.complaint_id.clone());
        if c.valid == Some(true) {
            r.conduct_verified.push(c.complaint_id.clone());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000 * HOUR + hours * HOUR)
    }

    fn job(id: &str) -> JobFacts {
        JobFacts {
            job_id: id.into(),
            ..JobFacts::default()
        }
    }

    #[test]
    fn r2_on_time_rate_counts_arrivals_and_missed_times_only() {
        let jobs = [
            // Asked for 10:00, came at 9:00 and at 10:00: on time (at the time is on time).
            JobFacts {
                requested_arrival: Some(at(10)),
                arrival: Some(at(9)),
                ..job("early")
            },
            JobFacts {
                requested_arrival: Some(at(10)),
                arrival: Some(at(10)),
                ..job("exact")
            },
            // Came at 11:00, personal cause: late, a violation.
            JobFacts {
                requested_arrival: Some(at(10)),
                arrival: Some(at(11)),
                late_personal: true,
                ..job("late-personal")
            },
            // Not there, time passed (now is 20:00): late, no cause recorded.
            JobFacts {
                requested_arrival: Some(at(12)),
                ..job("missed")
            },
            // Not there, time to come: not counted. Cancelled: not counted.
            JobFacts {
                requested_arrival: Some(at(30)),
                ..job("future")
            },
            JobFacts {
                requested_arrival: Some(at(12)),
                cancelled: true,
                ..job("cancelled")
            },
            // No time asked: not counted.
            JobFacts {
                arrival: Some(at(15)),
                ..job("no-time")
            },
        ];
        let r = technician_record(&jobs, &[], at(20));
        assert_eq!(r.jobs, 7);
        // 2 on time of 4 counted: 50 %.
        assert_eq!(
            r.arrivals,
            OnTime {
                on_time: 2,
                counted: 4
            }
        );
        assert_eq!(r.arrivals.percent(), Some(50));
        assert_eq!(r.late_arrivals, ["late-personal", "missed"]);
        assert_eq!(r.late_personal, ["late-personal"]);
        assert_eq!(r.violations(), 1);
    }

    #[test]
    fn r2_the_rate_rounds_half_up_and_is_none_without_arrivals() {
        assert_eq!(OnTime::default().percent(), None);
        // 2 of 3 = 66.67 % → 67; 1 of 8 = 12.5 % → 13; 1 of 3 = 33.3 % → 33.
        let rate = |on_time, counted| OnTime { on_time, counted }.percent();
        assert_eq!(rate(2, 3), Some(67));
        assert_eq!(rate(1, 8), Some(13));
        assert_eq!(rate(1, 3), Some(33));
        assert_eq!(rate(5, 5), Some(100));
    }

    #[test]
    fn r4_r7_r11_repeat_repairs_incomplete_reports_and_late_check_outs() {
        let jobs = [
            // Served and flagged: a repeat repair. Flagged but never served: not yet one.
            JobFacts {
                served: true,
                repeat_flagged: true,
                completion: Some(at(3)),
                check_out: Some(at(2)),
                ..job("repeat")
            },
            JobFacts {
                repeat_flagged: true,
                ..job("flagged-open")
            },
            // Refused for R7 (and R8): incomplete report; checked out before: not late.
            JobFacts {
                completion: Some(at(5)),
                check_out: Some(at(4)),
                refused_for: vec!["R7".into(), "R8".into()],
                ..job("incomplete")
            },
            // Completion without check-out: late check-out (R11).
            JobFacts {
                completion: Some(at(5)),
                ..job("no-check-out")
            },
            // Check-out after the completion request: late.
            JobFacts {
                completion: Some(at(5)),
                check_out: Some(at(6)),
                ..job("after")
            },
            // Refused for R11 earlier, checked out since (the latest answer still says so).
            JobFacts {
                completion: Some(at(5)),
                check_out: Some(at(4)),
                refused_for: vec!["R11".into()],
                ..job("refused-r11")
            },
            // On site, no completion yet: nothing to say about the check-out.
            JobFacts {
                arrival: Some(at(1)),
                ..job("on-site")
            },
        ];
        let r = technician_record(&jobs, &[], at(20));
        assert_eq!(r.repeat_repairs, ["repeat"]);
        assert_eq!(r.incomplete_reports, ["incomplete"]);
        assert_eq!(r.late_check_outs, ["no-check-out", "after", "refused-r11"]);
        assert_eq!(r.violations(), 1 + 1 + 3);
        assert_eq!(r.arrivals.percent(), None);
    }

    #[test]
    fn r15_conduct_complaints_count_and_verified_ones_are_violations() {
        let complaints = [
            ConductComplaint {
                complaint_id: "c-rude".into(),
                about_conduct: true,
                valid: Some(true),
            },
            ConductComplaint {
                complaint_id: "c-open".into(),
                about_conduct: true,
                valid: None,
            },
            ConductComplaint {
                complaint_id: "c-invalid".into(),
                about_conduct: true,
                valid: Some(false),
            },
            ConductComplaint {
                complaint_id: "c-product".into(),
                about_conduct: false,
                valid: Some(true),
            },
        ];
        let r = technician_record(&[], &complaints, at(0));
        assert_eq!(r.conduct_complaints, ["c-rude", "c-open", "c-invalid"]);
        assert_eq!(r.conduct_verified, ["c-rude"]);
        assert_eq!(r.violations(), 1);
    }
}
