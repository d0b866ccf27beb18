//! Approvals a technician asks for from the job document (R12 an extension or another
//! solution, R18 a warranty-claim part, R31 a product return) and the desk's decision,
//! written back so the device sees it.
//!
//! They live under the job document's root key `approvals`: a map from a request id (made
//! on the device) to a map of scalars, so two technicians asking offline keep both requests
//! and a decision is a write into its own request's map. The server creates the empty map
//! with the job, so devices never create it concurrently (two concurrent creations would
//! leave one of them a conflict loser); a job made before approvals existed gets it from
//! the first request. The `Job` model does not include them: they are not part of the
//! signed report content.

use std::hash::{DefaultHasher, Hash, Hasher};

use automerge::transaction::Transactable;
use automerge::{
    AutoCommit, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value, ValueRef,
};
use serde::{Deserialize, Serialize};

use crate::time::{CalendarDate, Money, Timestamp};

/// The root key of the approvals map.
pub const APPROVALS: &str = "approvals";

/// What is asked for, and the rule that asks for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApprovalKind {
    /// R12: more time than promised.
    Extension,
    /// R12: the job cannot be finished on site; another solution.
    OtherSolution,
    /// R18: a warranty-claim part (large amounts need the director).
    WarrantyPart,
    /// R31: a product return (the general manager's approval).
    ProductReturn,
    /// R28: a travel expense claim (date, from/to, category, amount, reason), approved at
    /// the desk.
    TravelExpense,
}

impl ApprovalKind {
    pub const ALL: [ApprovalKind; 5] = [
        ApprovalKind::Extension,
        ApprovalKind::OtherSolution,
        ApprovalKind::WarrantyPart,
        ApprovalKind::ProductReturn,
        ApprovalKind::TravelExpense,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::Extension => "extension",
            ApprovalKind::OtherSolution => "other_solution",
            ApprovalKind::WarrantyPart => "warranty_part",
            ApprovalKind::ProductReturn => "product_return",
            ApprovalKind::TravelExpense => "travel_expense",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The rule of `DOMAIN.md` that needs the approval.
    pub fn rule(self) -> &'static str {
        match self {
            ApprovalKind::Extension | ApprovalKind::OtherSolution => "R12",
            ApprovalKind::WarrantyPart => "R18",
            ApprovalKind::ProductReturn => "R31",
            ApprovalKind::TravelExpense => "R28",
        }
    }
}

/// The desk's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    /// Who decided (`desk:manager`).
    pub by: String,
    pub at: Timestamp,
    pub note: String,
}

/// R28: what a travel expense claim names besides its amount and reason, with the receipt
/// photo as the SHA-256 of an attachment of the job (`job::attachments`, kind `receipt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TravelExpense {
    /// The day of travel.
    pub date: CalendarDate,
    pub from: String,
    pub to: String,
    /// Train, bus, taxi, lodging, meals… as the branch names them.
    pub category: String,
    /// The receipt photo: the digest of a `receipt` attachment of the same job (R28 claims
    /// are made "with receipts"); absent in claims made before attachments existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// One request, as read from the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub kind: ApprovalKind,
    pub reason: String,
    /// The technician who asked.
    pub requested_by: String,
    pub requested_at: Timestamp,
    /// R18: the part's amount; R28: the expense's; in minor units.
    pub amount: Option<Money>,
    /// R28: the travel the expense is for (a `TravelExpense` request only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expense: Option<TravelExpense>,
    pub decision: Option<Decision>,
}

/// R28: a travel expense claim the desk approved, as the job carries it (`Job::expenses`) and
/// so as the signed report carries it: head office counts it in the month's after-sales cost
/// (R24) from the report alone. Read from the claim and its decision in the approvals map;
/// claims waiting or refused are not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedExpense {
    /// The request id (the key in the approvals map).
    pub id: String,
    /// The day of travel.
    pub date: CalendarDate,
    pub from: String,
    pub to: String,
    pub category: String,
    pub amount: Money,
    pub reason: String,
    /// The digest of the receipt photo (a `receipt` attachment), when the claim names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// The technician who claimed it, and when.
    pub by: String,
    pub claimed_at: Timestamp,
    /// Who approved it at the desk (`desk:manager`) and when.
    pub approved_by: String,
    pub approved_at: Timestamp,
}

impl ApprovedExpense {
    /// The claim and its decision as [`request_approval`] and [`decide`] write them (a job
    /// written whole, e.g. a copy, carries its approved claims this way).
    pub fn as_approval(&self) -> (Approval, Decision) {
        (
            Approval {
                id: self.id.clone(),
                kind: ApprovalKind::TravelExpense,
                reason: self.reason.clone(),
                requested_by: self.by.clone(),
                requested_at: self.claimed_at,
                amount: Some(self.amount),
                expense: Some(TravelExpense {
                    date: self.date,
                    from: self.from.clone(),
                    to: self.to.clone(),
                    category: self.category.clone(),
                    receipt: self.receipt.clone(),
                }),
                decision: None,
            },
            Decision {
                approved: true,
                by: self.approved_by.clone(),
                at: self.approved_at,
                note: String::new(),
            },
        )
    }
}

/// R28: the travel expense claims of `approvals` still waiting for the desk's decision (the
/// signer does not sign the job's report while one waits: the report carries the approved
/// ones, and head office's month counts them).
pub fn waiting_expenses(approvals: &[Approval]) -> impl Iterator<Item = &Approval> {
    approvals
        .iter()
        .filter(|a| a.kind == ApprovalKind::TravelExpense && a.decision.is_none())
}

/// The refusal code of a report refused because travel expense claims wait (R28).
pub const EXPENSE_UNDECIDED: &str = "expense_undecided";

/// R28: whether a report refused only because travel expense claims waited must be answered
/// again: the desk has decided every claim since. The technician has nothing to change, so
/// the server answers the same completion request again rather than wait for a new one.
pub fn claims_decided_since_refusal(
    previous: &crate::job::ReportOutcome,
    approvals: &[Approval],
) -> bool {
    match previous {
        crate::job::ReportOutcome::Refused { reasons, .. } => {
            !reasons.is_empty()
                && reasons.iter().all(|r| r.code == EXPENSE_UNDECIDED)
                && waiting_expenses(approvals).next().is_none()
        }
        crate::job::ReportOutcome::Signed { .. } => false,
    }
}

/// Why approvals could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
    #[error("approval {id}: {problem}")]
    Malformed { id: String, problem: String },
    #[error("no approval request {0} in this job")]
    Unknown(String),
    #[error("approval request {0} is already decided")]
    Decided(String),
    #[error("approval request {0} already exists")]
    Exists(String),
}

pub(crate) mod key {
    pub const KIND: &str = "kind";
    pub const REASON: &str = "reason";
    pub const REQUESTED_BY: &str = "requested_by";
    pub const REQUESTED_AT: &str = "requested_at";
    pub const AMOUNT: &str = "amount";
    pub const DECISION: &str = "decision";
    pub const APPROVED: &str = "approved";
    pub const BY: &str = "by";
    pub const AT: &str = "at";
    pub const NOTE: &str = "note";
    pub const DATE: &str = "date";
    pub const FROM: &str = "from";
    pub const TO: &str = "to";
    pub const CATEGORY: &str = "category";
    pub const RECEIPT: &str = "receipt";
}

fn map_at<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Result<Option<ObjId>, AutomergeError> {
    Ok(match doc.get(parent, key)? {
        Some((Value::Object(ObjType::Map), id)) => Some(id),
        _ => None,
    })
}

fn scalar<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
) -> Result<Option<ScalarValue>, AutomergeError> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => Some(s.into_owned()),
        _ => None,
    })
}

fn text<R: ReadDoc>(doc: &R, obj: &ObjId, id: &str, key: &str) -> Result<String, ApprovalError> {
    match scalar(doc, obj, key)? {
        Some(ScalarValue::Str(s)) => Ok(s.to_string()),
        other => Err(ApprovalError::Malformed {
            id: id.to_owned(),
            problem: format!("{key} is {other:?}, not a string"),
        }),
    }
}

fn instant<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    id: &str,
    key: &str,
) -> Result<Timestamp, ApprovalError> {
    match scalar(doc, obj, key)? {
        Some(ScalarValue::Timestamp(t) | ScalarValue::Int(t)) => Ok(Timestamp::from_millis(t)),
        other => Err(ApprovalError::Malformed {
            id: id.to_owned(),
            problem: format!("{key} is {other:?}, not a timestamp"),
        }),
    }
}

/// Every approval request of the job, sorted by request time.
pub fn read_approvals<R: ReadDoc>(doc: &R) -> Result<Vec<Approval>, ApprovalError> {
    let Some(map) = map_at(doc, &ROOT, APPROVALS)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for id in doc.keys(&map) {
        let Some(obj) = map_at(doc, &map, &id)? else {
            return Err(ApprovalError::Malformed {
                id,
                problem: "not a map".into(),
            });
        };
        let kind = text(doc, &obj, &id, key::KIND)?;
        let kind = ApprovalKind::parse(&kind).ok_or_else(|| ApprovalError::Malformed {
            id: id.clone(),
            problem: format!("unknown kind {kind:?}"),
        })?;
        let amount = match scalar(doc, &obj, key::AMOUNT)? {
            Some(ScalarValue::Int(v)) => Some(Money(v)),
            _ => None,
        };
        let decision = match map_at(doc, &obj, key::DECISION)? {
            Some(d) => Some(Decision {
                approved: matches!(
                    scalar(doc, &d, key::APPROVED)?,
                    Some(ScalarValue::Boolean(true))
                ),
                by: text(doc, &d, &id, key::BY)?,
                at: instant(doc, &d, &id, key::AT)?,
                note: text(doc, &d, &id, key::NOTE)?,
            }),
            None => None,
        };
        let expense = if kind == ApprovalKind::TravelExpense {
            let date = text(doc, &obj, &id, key::DATE)?;
            Some(TravelExpense {
                date: date.parse().map_err(|_| ApprovalError::Malformed {
                    id: id.clone(),
                    problem: format!("date {date:?} is not YYYY-MM-DD"),
                })?,
                from: text(doc, &obj, &id, key::FROM)?,
                to: text(doc, &obj, &id, key::TO)?,
                category: text(doc, &obj, &id, key::CATEGORY)?,
                receipt: match scalar(doc, &obj, key::RECEIPT)? {
                    None => None,
                    Some(ScalarValue::Str(s)) => Some(s.to_string()),
                    Some(other) => {
                        return Err(ApprovalError::Malformed {
                            id: id.clone(),
                            problem: format!("receipt is {other:?}, not a digest"),
                        });
                    }
                },
            })
        } else {
            None
        };
        found.push(Approval {
            expense,
            kind,
            reason: text(doc, &obj, &id, key::REASON)?,
            requested_by: text(doc, &obj, &id, key::REQUESTED_BY)?,
            requested_at: instant(doc, &obj, &id, key::REQUESTED_AT)?,
            amount,
            decision,
            id,
        });
    }
    found.sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
    Ok(found)
}

/// A digest of everything [`read_approvals`] reads: two documents (or two states of one)
/// with the same stamp have the same approvals. The server takes it of every changed job from
/// the document it holds in memory, so the desk's queue re-reads from disk only a job whose
/// approvals did change.
///
/// It hashes the keys and value ids of the approvals map, of each request's map and of each
/// decision's map, the three levels `read_approvals` reads: any write there is a new value id
/// (a deletion removes a key), while a concurrent write that loses does not change what is
/// read. Value ids name the change's actor by its id, not by its index in the document, so
/// the same content loaded elsewhere has the same stamp. It is not kept anywhere: the hash is
/// only compared within one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApprovalsStamp(u64);

impl ApprovalsStamp {
    /// No approval requests: `read_approvals` answers an empty list.
    pub const NONE: ApprovalsStamp = ApprovalsStamp(0);
}

/// The [`ApprovalsStamp`] of the document as it is now.
pub fn approvals_stamp<R: ReadDoc>(doc: &R) -> ApprovalsStamp {
    /// Hashes the entries of `obj`, and of the maps under it down to `depth` more levels.
    fn walk<R: ReadDoc>(doc: &R, obj: &ObjId, depth: u8, hasher: &mut DefaultHasher) -> usize {
        let mut entries = 0;
        for item in doc.map_range(obj, ..) {
            let id = item.id();
            item.key.hash(hasher);
            id.hash(hasher);
            entries += 1;
            if depth > 0 && matches!(item.value, ValueRef::Object(ObjType::Map)) {
                // Hashed as a nested level, so entries cannot pass for their parent's.
                depth.hash(hasher);
                walk(doc, &id, depth - 1, hasher);
                depth.hash(hasher);
            }
        }
        entries
    }
    let Ok(Some(map)) = map_at(doc, &ROOT, APPROVALS) else {
        return ApprovalsStamp::NONE;
    };
    let mut hasher = DefaultHasher::new();
    // Requests, then each request's fields, then each decision's fields.
    if walk(doc, &map, 2, &mut hasher) == 0 {
        return ApprovalsStamp::NONE;
    }
    // 0 is NONE; a hash that happens to be 0 must still differ from it.
    ApprovalsStamp(hasher.finish().max(1))
}

/// Creates the empty approvals map (the server does it when it creates the job).
pub fn init_approvals(doc: &mut AutoCommit) -> Result<(), AutomergeError> {
    if map_at(doc, &ROOT, APPROVALS)?.is_none() {
        doc.put_object(ROOT, APPROVALS, ObjType::Map)?;
    }
    Ok(())
}

/// The device asks for an approval (a new request under its own id).
pub fn request_approval(doc: &mut AutoCommit, approval: &Approval) -> Result<(), ApprovalError> {
    init_approvals(doc)?;
    let map = map_at(doc, &ROOT, APPROVALS)?
        .ok_or_else(|| ApprovalError::Unknown(approval.id.clone()))?;
    if doc.get(&map, &approval.id)?.is_some() {
        return Err(ApprovalError::Exists(approval.id.clone()));
    }
    write_request(doc, &map, approval)?;
    Ok(())
}

/// Writes a request's map under the approvals map `map` (no decision); returns it.
pub(crate) fn write_request<T: Transactable>(
    doc: &mut T,
    map: &ObjId,
    approval: &Approval,
) -> Result<ObjId, AutomergeError> {
    let obj = doc.put_object(map, &approval.id, ObjType::Map)?;
    doc.put(&obj, key::KIND, approval.kind.as_str())?;
    doc.put(&obj, key::REASON, approval.reason.as_str())?;
    doc.put(&obj, key::REQUESTED_BY, approval.requested_by.as_str())?;
    doc.put(
        &obj,
        key::REQUESTED_AT,
        ScalarValue::Timestamp(approval.requested_at.as_millis()),
    )?;
    if let Some(amount) = approval.amount {
        doc.put(&obj, key::AMOUNT, amount.0)?;
    }
    if let Some(expense) = &approval.expense {
        doc.put(&obj, key::DATE, expense.date.to_string())?;
        doc.put(&obj, key::FROM, expense.from.as_str())?;
        doc.put(&obj, key::TO, expense.to.as_str())?;
        doc.put(&obj, key::CATEGORY, expense.category.as_str())?;
        if let Some(receipt) = &expense.receipt {
            doc.put(&obj, key::RECEIPT, receipt.as_str())?;
        }
    }
    Ok(obj)
}

/// The desk writes its decision into the request.
pub fn decide(doc: &mut AutoCommit, id: &str, decision: &Decision) -> Result<(), ApprovalError> {
    let map =
        map_at(doc, &ROOT, APPROVALS)?.ok_or_else(|| ApprovalError::Unknown(id.to_owned()))?;
    let obj = map_at(doc, &map, id)?.ok_or_else(|| ApprovalError::Unknown(id.to_owned()))?;
    if map_at(doc, &obj, key::DECISION)?.is_some() {
        return Err(ApprovalError::Decided(id.to_owned()));
    }
    write_decision(doc, &obj, decision)?;
    Ok(())
}

/// Writes the decision's map into the request's map `request`.
pub(crate) fn write_decision<T: Transactable>(
    doc: &mut T,
    request: &ObjId,
    decision: &Decision,
) -> Result<(), AutomergeError> {
    let d = doc.put_object(request, key::DECISION, ObjType::Map)?;
    doc.put(&d, key::APPROVED, decision.approved)?;
    doc.put(&d, key::BY, decision.by.as_str())?;
    doc.put(&d, key::AT, ScalarValue::Timestamp(decision.at.as_millis()))?;
    doc.put(&d, key::NOTE, decision.note.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(id: &str, kind: ApprovalKind, at: i64) -> Approval {
        Approval {
            id: id.into(),
            kind,
            reason: "compressor on back order".into(),
            requested_by: "tech-wang".into(),
            requested_at: Timestamp::from_millis(at),
            amount: (kind == ApprovalKind::WarrantyPart).then_some(Money(250_000)),
            expense: None,
            decision: None,
        }
    }

    #[test]
    fn r12_r18_r31_requests_made_offline_on_two_devices_are_both_kept_and_decided()
    -> Result<(), ApprovalError> {
        let mut server = AutoCommit::new();
        init_approvals(&mut server)?;
        let mut a = server.fork();
        let mut b = server.fork();
        request_approval(&mut a, &ask("a-1", ApprovalKind::Extension, 10))?;
        request_approval(&mut b, &ask("b-1", ApprovalKind::WarrantyPart, 20))?;
        request_approval(&mut b, &ask("b-2", ApprovalKind::ProductReturn, 30))?;
        server.merge(&mut a)?;
        server.merge(&mut b)?;
        let found = read_approvals(&server)?;
        let kinds: Vec<(&str, &str)> = found
            .iter()
            .map(|x| (x.id.as_str(), x.kind.rule()))
            .collect();
        assert_eq!(kinds, [("a-1", "R12"), ("b-1", "R18"), ("b-2", "R31")]);
        assert_eq!(found[1].amount, Some(Money(250_000)));

        let decision = Decision {
            approved: true,
            by: "desk:manager".into(),
            at: Timestamp::from_millis(40),
            note: "ok until Friday".into(),
        };
        decide(&mut server, "a-1", &decision)?;
        assert!(matches!(
            decide(&mut server, "a-1", &decision),
            Err(ApprovalError::Decided(_))
        ));
        assert!(matches!(
            decide(&mut server, "zz", &decision),
            Err(ApprovalError::Unknown(_))
        ));
        a.merge(&mut server)?;
        assert_eq!(read_approvals(&a)?[0].decision.as_ref(), Some(&decision));
        Ok(())
    }

    #[test]
    fn the_stamp_follows_what_read_approvals_reads_and_nothing_else() -> Result<(), ApprovalError> {
        let mut a = AutoCommit::new();
        assert_eq!(approvals_stamp(&a), ApprovalsStamp::NONE);
        init_approvals(&mut a)?;
        assert_eq!(approvals_stamp(&a), ApprovalsStamp::NONE, "an empty map");
        let mut b = a.fork();

        request_approval(&mut a, &ask("a-1", ApprovalKind::Extension, 10))?;
        let asked = approvals_stamp(&a);
        assert_ne!(asked, ApprovalsStamp::NONE);
        a.put(ROOT, "notes", "unrelated")?;
        assert_eq!(approvals_stamp(&a), asked, "an edit elsewhere in the job");

        // The same content in another document, whose actors are numbered the other way.
        request_approval(&mut b, &ask("b-1", ApprovalKind::WarrantyPart, 20))?;
        let mut a2 = a.fork();
        a2.merge(&mut b)?;
        b.merge(&mut a)?;
        assert_eq!(read_approvals(&a2)?, read_approvals(&b)?);
        assert_eq!(approvals_stamp(&a2), approvals_stamp(&b));
        let loaded = automerge::Automerge::load(&b.save())?;
        assert_eq!(approvals_stamp(&loaded), approvals_stamp(&b));
        let both = approvals_stamp(&b);
        assert_ne!(both, asked);

        // A decision, a changed field and a removed request each change it.
        let decision = Decision {
            approved: false,
            by: "desk:manager".into(),
            at: Timestamp::from_millis(30),
            note: String::new(),
        };
        decide(&mut b, "a-1", &decision)?;
        let decided = approvals_stamp(&b);
        assert_ne!(decided, both);
        let map = map_at(&b, &ROOT, APPROVALS)?.ok_or(ApprovalError::Unknown("map".into()))?;
        let request = map_at(&b, &map, "b-1")?.ok_or(ApprovalError::Unknown("b-1".into()))?;
        b.put(&request, key::REASON, "a different part")?;
        let edited = approvals_stamp(&b);
        assert_ne!(edited, decided);
        b.delete(&map, "b-1")?;
        assert_ne!(approvals_stamp(&b), edited);
        b.delete(&map, "a-1")?;
        assert_eq!(
            approvals_stamp(&b),
            ApprovalsStamp::NONE,
            "every request removed"
        );
        Ok(())
    }

    fn claim(id: &str, amount: i64) -> Approval {
        Approval {
            id: id.into(),
            kind: ApprovalKind::TravelExpense,
            reason: "to the plant".into(),
            requested_by: "tech-wang".into(),
            requested_at: Timestamp::from_millis(5),
            amount: Some(Money(amount)),
            expense: Some(TravelExpense {
                date: CalendarDate::from_ymd(2026, 11, 20).expect("a date"),
                from: "north-01".into(),
                to: "Plant 3".into(),
                category: "train".into(),
                receipt: Some("ab".repeat(32)),
            }),
            decision: None,
        }
    }

    fn decision(approved: bool) -> Decision {
        Decision {
            approved,
            by: "desk:manager".into(),
            at: Timestamp::from_millis(40),
            note: String::new(),
        }
    }

    #[test]
    fn r28_the_job_carries_only_the_approved_travel_expense_claims()
    -> Result<(), Box<dyn std::error::Error>> {
        let job = crate::job::fixtures::new_job();
        let mut doc = crate::job::doc::create_job(&job, None)?;
        init_approvals(&mut doc)?;
        request_approval(&mut doc, &claim("b-approved", 12_050))?;
        request_approval(&mut doc, &claim("a-refused", 9_900))?;
        request_approval(&mut doc, &claim("c-waiting", 30_000))?;
        request_approval(&mut doc, &ask("d-extension", ApprovalKind::Extension, 7))?;
        decide(&mut doc, "b-approved", &decision(true))?;
        decide(&mut doc, "a-refused", &decision(false))?;
        decide(&mut doc, "d-extension", &decision(true))?;
        let read = crate::job::doc::read_job(&doc)?;
        let ids: Vec<&str> = read.expenses.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["b-approved"]);
        let e = &read.expenses[0];
        assert_eq!(
            (e.amount, e.claimed_at, e.approved_at),
            (
                Money(12_050),
                Timestamp::from_millis(5),
                Timestamp::from_millis(40)
            )
        );
        assert_eq!(e.receipt, Some("ab".repeat(32)));
        let all = read_approvals(&doc)?;
        let waiting: Vec<&str> = waiting_expenses(&all).map(|a| a.id.as_str()).collect();
        assert_eq!(waiting, ["c-waiting"]);

        // A job written whole with its approved claims reads back the same.
        let copy = crate::job::doc::create_job(&read, None)?;
        assert_eq!(crate::job::doc::read_job(&copy)?, read);
        Ok(())
    }

    #[test]
    fn r28_a_refusal_for_waiting_claims_only_is_answered_again_once_they_are_decided() {
        use crate::job::{RefusalReason, ReportOutcome};
        let reason = |code: &str| RefusalReason {
            rule: "R28".into(),
            code: code.into(),
            message: String::new(),
        };
        let refused = |codes: &[&str]| ReportOutcome::Refused {
            at: Timestamp::from_millis(50),
            reasons: codes.iter().map(|c| reason(c)).collect(),
        };
        let mut decided = claim("a", 100);
        decided.decision = Some(decision(true));
        let waiting = claim("b", 100);
        assert!(claims_decided_since_refusal(
            &refused(&[EXPENSE_UNDECIDED]),
            std::slice::from_ref(&decided)
        ));
        assert!(!claims_decided_since_refusal(
            &refused(&[EXPENSE_UNDECIDED]),
            &[decided.clone(), waiting]
        ));
        assert!(!claims_decided_since_refusal(
            &refused(&[EXPENSE_UNDECIDED, "missing_fault_cause"]),
            std::slice::from_ref(&decided)
        ));
        assert!(!claims_decided_since_refusal(&refused(&[]), &[]));
    }
}
