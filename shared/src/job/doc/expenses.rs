//! Reading the job's approved R28 travel expense claims (`job::approvals::ApprovedExpense`)
//! from the approvals map, strictly, like every field the report carries. Other requests
//! (R12, R18, R31) and claims waiting or refused are not read here: they are not part of the
//! job's content (`job::approvals::read_approvals` reads them all for the desk).

use automerge::ReadDoc;

use super::SchemaError;
use super::read::MapView;
use crate::job::approvals::{APPROVALS, ApprovalKind, ApprovedExpense, key};
use crate::time::Money;

/// The approved travel expense claims under the root key `approvals`, sorted by request id;
/// none when the map is absent (a job made before approvals existed).
pub(super) fn read_expenses<R: ReadDoc>(
    root: &MapView<'_, R>,
) -> Result<Vec<ApprovedExpense>, SchemaError> {
    let Some(map) = root.opt_map(APPROVALS)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for id in map.keys() {
        let Some(claim) = map.opt_map(&id)? else {
            continue;
        };
        if claim.opt_string(key::KIND)?.as_deref() != Some(ApprovalKind::TravelExpense.as_str()) {
            continue;
        }
        let Some(decision) = claim.opt_map(key::DECISION)? else {
            continue;
        };
        if !decision.bool(key::APPROVED)? {
            continue;
        }
        found.push(ApprovedExpense {
            date: claim.parse(key::DATE)?,
            from: claim.string(key::FROM)?,
            to: claim.string(key::TO)?,
            category: claim.string(key::CATEGORY)?,
            amount: Money(claim.int(key::AMOUNT)?),
            reason: claim.string(key::REASON)?,
            receipt: claim.opt_string(key::RECEIPT)?,
            by: claim.string(key::REQUESTED_BY)?,
            claimed_at: claim.timestamp(key::REQUESTED_AT)?,
            approved_by: decision.string(key::BY)?,
            approved_at: decision.timestamp(key::AT)?,
            id,
        });
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}
