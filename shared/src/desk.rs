//! The service desk's rules (issue #6) as pure functions over values: the R2 clocks, R4
//! repeat-repair detection and the R21 complaint steps. The edge server stores the records
//! and serves the API; what counts as late, repeated or out of order is decided here, so it
//! can be tested without a server and reused at head office.

pub mod complaint;
pub mod fault_category;
pub mod maintenance;
pub mod technician;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// R2: a service request is answered within 24 hours of receipt.
pub const REPLY_WITHIN_MS: i64 = 24 * 60 * 60 * 1000;

/// R4: repeat repairs are looked for this far back unless configured otherwise (90 days).
pub const DEFAULT_REPEAT_WINDOW_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// R2: how far past the server's receipt time an arrival may lie and still be taken. A
/// device's clock drifts a little; an arrival hours after the server heard of it cannot
/// have happened yet (a wrong clock or a typo), so it is refused rather than recorded.
pub const ARRIVAL_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// R2: an arrival the server will not take as the technician's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArrivalError {
    /// Later than the instant the server received it, beyond [`ARRIVAL_TOLERANCE_MS`].
    #[error(
        "the arrival {arrival} is after the server received it ({received}) by more than \
         {tolerance_minutes} minutes: an arrival cannot be in the future"
    )]
    InFuture {
        arrival: Timestamp,
        received: Timestamp,
        tolerance_minutes: i64,
    },
}

impl ArrivalError {
    /// The stable code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            ArrivalError::InFuture { .. } => "arrival_in_future",
        }
    }
}

/// R2: checks an arrival received at `received` (the server's clock when the device's
/// change, or the desk's entry, reached it).
pub fn check_arrival(arrival: Timestamp, received: Timestamp) -> Result<(), ArrivalError> {
    if arrival > received.plus_millis(ARRIVAL_TOLERANCE_MS) {
        return Err(ArrivalError::InFuture {
            arrival,
            received,
            tolerance_minutes: ARRIVAL_TOLERANCE_MS / 60_000,
        });
    }
    Ok(())
}

/// R2: what answered the customer. The first of them stops the reply clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ReplySource {
    /// The desk recorded its reply (`POST /api/requests/{id}/reply`).
    Desk,
    /// The desk dispatched the job with an appointment agreed with the customer (R3).
    Appointment,
    /// The technician contacted the customer: the device recorded an appointment (R3) or
    /// the arrival on site, taken at the time the server received it.
    TechnicianContact,
}

impl ReplySource {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplySource::Desk => "desk",
            ReplySource::Appointment => "appointment",
            ReplySource::TechnicianContact => "technician_contact",
        }
    }
}

/// R2: whether a candidate reply at `candidate` replaces the one recorded at `recorded` (if
/// any): the first reply counts, so only an earlier one does.
pub fn replaces_reply(recorded: Option<Timestamp>, candidate: Timestamp) -> bool {
    recorded.is_none_or(|at| candidate < at)
}

/// R2: when the reply to a request received at `received_at` is due.
pub fn reply_due(received_at: Timestamp) -> Timestamp {
    received_at.plus_millis(REPLY_WITHIN_MS)
}

/// Where a clock (reply due, arrival due) stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClockState {
    /// Not done, and not due within the "soon" window.
    Running,
    /// Not done, due within the "soon" window.
    DueSoon,
    /// Not done, and the due time has passed (R2 violated).
    Overdue,
    /// Done by the due time.
    Met,
    /// Done, but after the due time (R2 violated).
    MetLate,
}

impl ClockState {
    /// A clock that needs the desk's attention now.
    pub fn needs_attention(self) -> bool {
        matches!(self, ClockState::DueSoon | ClockState::Overdue)
    }

    /// A clock whose due time was missed (R2).
    pub fn late(self) -> bool {
        matches!(self, ClockState::Overdue | ClockState::MetLate)
    }
}

/// R2: the state at `now` of a clock due at `due`, done at `done` (if it is), where "soon"
/// means within `soon_ms` of the due time.
pub fn clock_state(
    due: Timestamp,
    done: Option<Timestamp>,
    now: Timestamp,
    soon_ms: i64,
) -> ClockState {
    match done {
        Some(at) if at <= due => ClockState::Met,
        Some(_) => ClockState::MetLate,
        None if now > due => ClockState::Overdue,
        None if now.plus_millis(soon_ms) >= due => ClockState::DueSoon,
        None => ClockState::Running,
    }
}

/// R2: why a technician arrived after the time the customer asked for. Only a personal
/// reason is a recorded violation of the technician.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LateCause {
    /// The technician's own doing (overslept, detour, ...): a recorded violation (R2).
    Personal,
    Traffic,
    Weather,
    /// The customer moved the time or was not there.
    Customer,
    /// Parts or tools were not ready in time.
    Parts,
    Other,
}

impl LateCause {
    pub const ALL: [LateCause; 6] = [
        LateCause::Personal,
        LateCause::Traffic,
        LateCause::Weather,
        LateCause::Customer,
        LateCause::Parts,
        LateCause::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LateCause::Personal => "personal",
            LateCause::Traffic => "traffic",
            LateCause::Weather => "weather",
            LateCause::Customer => "customer",
            LateCause::Parts => "parts",
            LateCause::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// R2: a late arrival for personal reasons is a recorded violation.
    pub fn is_violation(self) -> bool {
        self == LateCause::Personal
    }
}

/// What R4 compares: one job on one product, with the fault categories it is known by (the
/// desk's at intake and the technician's diagnosis, either or both), reported at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVisit {
    pub job_id: String,
    pub serial: String,
    /// The desk's category and the diagnosed one; a match on either is the same problem.
    pub categories: Vec<String>,
    /// When the job's fault was reported.
    pub at: Timestamp,
    /// Whether the job was served (checked out or signed). Only a served job was a repair:
    /// an open duplicate nobody worked on repeats nothing.
    pub served: bool,
}

impl ServiceVisit {
    /// The categories of a job: the desk's and the diagnosed one, blanks left out.
    pub fn categories_of(desk: Option<&str>, diagnosed: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in [desk, diagnosed].into_iter().flatten() {
            if !c.trim().is_empty() && !out.iter().any(|o| same(o, c)) {
                out.push(c.trim().to_owned());
            }
        }
        out
    }

    /// The first of this visit's categories that `other` shares, if any.
    pub fn shared_category<'a>(&self, other: &'a ServiceVisit) -> Option<&'a str> {
        other
            .categories
            .iter()
            .find(|c| self.categories.iter().any(|mine| same(mine, c)))
            .map(String::as_str)
    }
}

/// Serials and fault categories are typed by people: compare them without case or spaces
/// around them.
fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// R4: the earlier visits that make `visit` a repeat repair: served (checked out or
/// signed), same product serial, a fault category in common (the desk's or the diagnosed
/// one, on either side), reported no more than `window_ms` before it. A visit without a
/// fault category repeats nothing (the category is what says it is "the same problem").
pub fn repeat_repairs<'a>(
    visit: &ServiceVisit,
    earlier: impl IntoIterator<Item = &'a ServiceVisit>,
    window_ms: i64,
) -> Vec<&'a ServiceVisit> {
    if visit.categories.is_empty() {
        return Vec::new();
    }
    let from = visit.at.plus_millis(window_ms.saturating_neg());
    let mut found: Vec<&ServiceVisit> = earlier
        .into_iter()
        .filter(|e| e.job_id != visit.job_id && e.served)
        .filter(|e| same(&e.serial, &visit.serial))
        .filter(|e| visit.shared_category(e).is_some())
        .filter(|e| e.at >= from && e.at <= visit.at)
        .collect();
    found.sort_by_key(|e| e.at);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 60 * 60 * 1000;
    const DAY: i64 = 24 * HOUR;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn r2_reply_is_due_a_day_after_receipt_and_its_clock_runs_until_answered() {
        let received = at(1_000 * DAY);
        let due = reply_due(received);
        assert_eq!(due, at(1_001 * DAY));
        let soon = 4 * HOUR;
        assert_eq!(clock_state(due, None, received, soon), ClockState::Running);
        assert_eq!(
            clock_state(due, None, due.plus_millis(-HOUR), soon),
            ClockState::DueSoon
        );
        assert_eq!(clock_state(due, None, due, soon), ClockState::DueSoon);
        assert_eq!(
            clock_state(due, None, due.plus_millis(1), soon),
            ClockState::Overdue
        );
        assert_eq!(
            clock_state(due, Some(due), due.plus_millis(DAY), soon),
            ClockState::Met
        );
        let late = clock_state(due, Some(due.plus_millis(1)), due, soon);
        assert_eq!(late, ClockState::MetLate);
        assert!(late.late() && !late.needs_attention());
    }

    #[test]
    fn r2_only_a_personal_late_cause_is_a_violation() {
        for cause in LateCause::ALL {
            assert_eq!(LateCause::parse(cause.as_str()), Some(cause));
            assert_eq!(cause.is_violation(), cause == LateCause::Personal);
        }
    }

    fn visit(job: &str, serial: &str, category: Option<&str>, day: i64) -> ServiceVisit {
        ServiceVisit {
            job_id: job.into(),
            serial: serial.into(),
            categories: ServiceVisit::categories_of(category, None),
            at: at(day * DAY),
            served: true,
        }
    }

    #[test]
    fn r2_an_arrival_after_its_receipt_beyond_the_tolerance_is_refused() {
        let received = at(1_000 * DAY);
        assert_eq!(
            check_arrival(received.plus_millis(-3 * HOUR), received),
            Ok(())
        );
        assert_eq!(
            check_arrival(received.plus_millis(ARRIVAL_TOLERANCE_MS), received),
            Ok(())
        );
        let refused =
            check_arrival(received.plus_millis(3 * HOUR), received).expect_err("three hours ahead");
        assert_eq!(refused.code(), "arrival_in_future");
        assert!(refused.to_string().contains("cannot be in the future"));
        assert!(check_arrival(received.plus_millis(ARRIVAL_TOLERANCE_MS + 1), received).is_err());
    }

    #[test]
    fn r2_the_first_reply_counts() {
        assert!(replaces_reply(None, at(5)));
        assert!(replaces_reply(Some(at(5)), at(4)));
        assert!(!replaces_reply(Some(at(5)), at(5)));
        assert!(!replaces_reply(Some(at(5)), at(6)));
    }

    #[test]
    fn r4_either_category_matches_and_only_served_jobs_count() {
        // Desk said "compressor", the technician diagnosed "start relay".
        let earlier = ServiceVisit {
            job_id: "j-1".into(),
            serial: "SN-1".into(),
            categories: ServiceVisit::categories_of(Some("compressor"), Some("start relay")),
            at: at(100 * DAY),
            served: true,
        };
        let duplicate = ServiceVisit {
            job_id: "j-dup".into(),
            served: false,
            ..visit("j-dup", "SN-1", Some("compressor"), 101)
        };
        let by_desk = visit("j-2", "SN-1", Some("Compressor "), 120);
        let by_diagnosis = ServiceVisit {
            categories: ServiceVisit::categories_of(Some("noise"), Some("start relay")),
            ..visit("j-3", "SN-1", None, 120)
        };
        let history = [earlier.clone(), duplicate];
        for now in [&by_desk, &by_diagnosis] {
            let found: Vec<&str> = repeat_repairs(now, &history, DEFAULT_REPEAT_WINDOW_MS)
                .into_iter()
                .map(|v| v.job_id.as_str())
                .collect();
            assert_eq!(found, ["j-1"], "{now:?}");
        }
        assert_eq!(by_diagnosis.shared_category(&earlier), Some("start relay"));
        assert_eq!(
            ServiceVisit::categories_of(Some("fan"), Some(" FAN ")),
            vec!["fan".to_owned()]
        );
    }

    #[test]
    fn r4_repeat_repairs_are_same_serial_same_category_within_the_window() {
        let now = visit("j-now", "SN-1", Some("compressor"), 200);
        let history = [
            visit("j-in", "sn-1 ", Some("Compressor"), 120),
            visit("j-too-old", "SN-1", Some("compressor"), 109),
            visit("j-other-fault", "SN-1", Some("fan"), 150),
            visit("j-other-product", "SN-2", Some("compressor"), 150),
            visit("j-no-category", "SN-1", None, 150),
            visit("j-edge", "SN-1", Some("compressor"), 110),
            now.clone(),
        ];
        let found: Vec<&str> = repeat_repairs(&now, &history, DEFAULT_REPEAT_WINDOW_MS)
            .into_iter()
            .map(|v| v.job_id.as_str())
            .collect();
        assert_eq!(found, ["j-edge", "j-in"]);
        let uncategorised = visit("j-x", "SN-1", None, 200);
        assert!(repeat_repairs(&uncategorised, &history, DEFAULT_REPEAT_WINDOW_MS).is_empty());
    }
}
