//! Complaints (R20–R23): their categories and the eight steps of R21, which every complaint
//! goes through in order, none skipped.

use serde::{Deserialize, Serialize};

/// R20: what a complaint is about. The source has two lists (§1/§7: product quality,
/// service, suggestion; §9: quality, non-quality (human), other); both are kept so a branch
/// can use either, and `attribution` maps them onto one for the monthly report (R22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ComplaintCategory {
    ProductQuality,
    Service,
    Suggestion,
    /// §9: a problem caused by people rather than the product.
    NonQuality,
    Other,
}

impl ComplaintCategory {
    pub const ALL: [ComplaintCategory; 5] = [
        ComplaintCategory::ProductQuality,
        ComplaintCategory::Service,
        ComplaintCategory::Suggestion,
        ComplaintCategory::NonQuality,
        ComplaintCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintCategory::ProductQuality => "product_quality",
            ComplaintCategory::Service => "service",
            ComplaintCategory::Suggestion => "suggestion",
            ComplaintCategory::NonQuality => "non_quality",
            ComplaintCategory::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// R22: the attribution the monthly complaint report counts: quality, people, other.
    pub fn attribution(self) -> &'static str {
        match self {
            ComplaintCategory::ProductQuality => "quality",
            ComplaintCategory::Service | ComplaintCategory::NonQuality => "non_quality",
            ComplaintCategory::Suggestion | ComplaintCategory::Other => "other",
        }
    }
}

/// R20: how a complaint arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ComplaintChannel {
    Phone,
    Letter,
    InPerson,
    Email,
    Web,
}

impl ComplaintChannel {
    pub const ALL: [ComplaintChannel; 5] = [
        ComplaintChannel::Phone,
        ComplaintChannel::Letter,
        ComplaintChannel::InPerson,
        ComplaintChannel::Email,
        ComplaintChannel::Web,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintChannel::Phone => "phone",
            ComplaintChannel::Letter => "letter",
            ComplaintChannel::InPerson => "in_person",
            ComplaintChannel::Email => "email",
            ComplaintChannel::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// R21: the eight steps, in the order every complaint takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ComplaintStep {
    /// 1. Record who complains, when, against whom and what they ask.
    Record,
    /// 2. Classify and judge whether the complaint is valid.
    Classify,
    /// 3. Assign the responsible unit (contract dispute: senior management; transport:
    ///    logistics; quality: QA).
    AssignUnit,
    /// 4. Investigate.
    Investigate,
    /// 5. Propose a solution.
    ProposeSolution,
    /// 6. Notify the customer (and record their reaction, R23).
    NotifyCustomer,
    /// 7. Assign responsibility and any penalty.
    AssignResponsibility,
    /// 8. Improvement actions; the complaint is then closed.
    Improve,
}

impl ComplaintStep {
    pub const ALL: [ComplaintStep; 8] = [
        ComplaintStep::Record,
        ComplaintStep::Classify,
        ComplaintStep::AssignUnit,
        ComplaintStep::Investigate,
        ComplaintStep::ProposeSolution,
        ComplaintStep::NotifyCustomer,
        ComplaintStep::AssignResponsibility,
        ComplaintStep::Improve,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintStep::Record => "record",
            ComplaintStep::Classify => "classify",
            ComplaintStep::AssignUnit => "assign_unit",
            ComplaintStep::Investigate => "investigate",
            ComplaintStep::ProposeSolution => "propose_solution",
            ComplaintStep::NotifyCustomer => "notify_customer",
            ComplaintStep::AssignResponsibility => "assign_responsibility",
            ComplaintStep::Improve => "improve",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// 1 to 8, as R21 numbers them.
    pub fn number(self) -> usize {
        Self::ALL
            .iter()
            .position(|s| *s == self)
            .map_or(0, |i| i + 1)
    }

    /// The step after this one, or `None` after the last.
    pub fn next(self) -> Option<Self> {
        Self::ALL.get(self.number()).copied()
    }
}

/// Why a step cannot be recorded now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("step {} ({}) is already recorded", .0.number(), .0.as_str())]
    AlreadyDone(ComplaintStep),
    #[error(
        "step {} ({}) cannot be recorded yet: the next step is {} ({}); R21 steps are taken in order, none skipped",
        .got.number(), .got.as_str(), .expected.number(), .expected.as_str()
    )]
    OutOfOrder {
        expected: ComplaintStep,
        got: ComplaintStep,
    },
    #[error("the complaint is closed: all eight R21 steps are recorded")]
    Closed,
}

/// R21: the step that comes next after `done` (the steps recorded so far, in order), or
/// `None` when all eight are done.
pub fn next_step(done: &[ComplaintStep]) -> Option<ComplaintStep> {
    match done.last() {
        None => Some(ComplaintStep::Record),
        Some(last) => last.next(),
    }
}

/// R21: whether `step` may be recorded after `done`: only the next step, never one skipped
/// or repeated.
pub fn check_step(done: &[ComplaintStep], step: ComplaintStep) -> Result<(), StepError> {
    match next_step(done) {
        None => Err(StepError::Closed),
        Some(expected) if expected == step => Ok(()),
        Some(_) if done.contains(&step) => Err(StepError::AlreadyDone(step)),
        Some(expected) => Err(StepError::OutOfOrder {
            expected,
            got: step,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r21_steps_are_taken_in_order_with_none_skipped_or_repeated() {
        let mut done = Vec::new();
        for step in ComplaintStep::ALL {
            assert_eq!(next_step(&done), Some(step));
            if let Some(after) = step.next() {
                assert_eq!(
                    check_step(&done, after),
                    Err(StepError::OutOfOrder {
                        expected: step,
                        got: after
                    })
                );
            }
            check_step(&done, step).expect("the next step is accepted");
            done.push(step);
            // Repeating a step is refused; after the last, everything is (closed).
            let again = if step == ComplaintStep::Improve {
                StepError::Closed
            } else {
                StepError::AlreadyDone(step)
            };
            assert_eq!(check_step(&done, step), Err(again));
        }
        assert_eq!(next_step(&done), None);
        assert_eq!(
            check_step(&done, ComplaintStep::Record),
            Err(StepError::Closed)
        );
    }

    #[test]
    fn r21_steps_are_numbered_one_to_eight_and_named_stably() {
        for (i, step) in ComplaintStep::ALL.into_iter().enumerate() {
            assert_eq!(step.number(), i + 1);
            assert_eq!(ComplaintStep::parse(step.as_str()), Some(step));
        }
    }

    #[test]
    fn r20_categories_map_onto_the_r22_attribution() {
        for category in ComplaintCategory::ALL {
            assert_eq!(ComplaintCategory::parse(category.as_str()), Some(category));
            assert!(["quality", "non_quality", "other"].contains(&category.attribution()));
        }
    }
}
