//! The service desk's rules (issue #6) as pure functions over values: the R2 clocks, R4
//! repeat-repair detection and the R21 complaint steps. The edge server stores the records
//! and serves the API; what counts as late, repeated or out of order is decided here, so it
//! can be tested without a server and reused at head office.

pub mod complaint;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// R2: a service request is answered within 24 hours of receipt.
pub const REPLY_WITHIN_MS: i64 = 24 * 60 * 60 * 1000;

/// R4: repeat repairs are looked for this far back unless configured otherwise (90 days).
pub const DEFAULT_REPEAT_WINDOW_MS: i64 = 90 * 24 * 60 * 60 * 1000;

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

/// What R4 compares: one job on one product with one fault category, at one time (when the
/// job was created, or when its service was done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVisit {
    pub job_id: String,
    pub serial: String,
    pub fault_category: Option<String>,
    pub at: Timestamp,
}

/// Serials and fault categories are typed by people: compare them without case or spaces
/// around them.
fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// R4: the earlier visits that make `visit` a repeat repair: same product serial, same fault
/// category, no more than `window_ms` before it. A visit without a fault category repeats
/// nothing (the category is what says it is "the same problem").
pub fn repeat_repairs<'a>(
    visit: &ServiceVisit,
    earlier: impl IntoIterator<Item = &'a ServiceVisit>,
    window_ms: i64,
) -> Vec<&'a ServiceVisit> {
    let Some(category) = visit.fault_category.as_deref() else {
        return Vec::new();
    };
    let from = visit.at.plus_millis(window_ms.saturating_neg());
    let mut found: Vec<&ServiceVisit> = earlier
        .into_iter()
        .filter(|e| e.job_id != visit.job_id)
        .filter(|e| same(&e.serial, &visit.serial))
        .filter(|e| {
            e.fault_category
                .as_deref()
                .is_some_and(|c| same(c, category))
        })
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
            fault_category: category.map(Into::into),
            at: at(day * DAY),
        }
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
