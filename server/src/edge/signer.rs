//! Report signing at the edge (R7, R8, R11, R13, R16).
//!
//! When a job's stored content changes and it carries a completion request the server has
//! not answered yet, the signer checks it: every R7/R9/R11 item present, and the training of
//! the customer's staff on an installation job (R16) (`rules::completeness`), and an
//! acknowledgement (R8) that verifies against an enrolled, unrevoked device of this branch
//! and still matches the job's content (`report::TrustStore`), and nothing a merge left
//! unresolved (issue 15, `job::doc::unresolved`: fields of one group written by people who
//! had not seen each other's, `unresolved_conflict`; a part number possibly added twice,
//! `possible_duplicate_part`), and no R28 travel expense claim still waiting for the desk
//! (`expense_undecided`: the report carries the approved claims; once the desk decides them
//! the same completion request is answered again). If all hold it signs a
//! `SignedReport` with the branch key over the job as stored, keeps it, and writes the outcome
//! into the job; if not, it writes the refusal with every reason, so the technician's device
//! shows it. The same content signed twice is one report (its id derives from the content);
//! a job reopened and completed again gets a new report naming the one it supersedes.
//! `GET /api/reports/{id}` serves the stored reports.

use std::sync::Arc;

use automerge::ChangeHash;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId};
use fieldsync_shared::job::approvals::{
    Approval, EXPENSE_UNDECIDED, claims_decided_since_refusal, read_approvals, waiting_expenses,
};
use fieldsync_shared::job::doc::{Unresolved, read_job, unresolved};
use fieldsync_shared::job::{Job, RefusalReason, ReportOutcome, TimelineEvent};
use fieldsync_shared::keys::PublicKey;
use fieldsync_shared::report::{DeviceRecord, SignedReport, TrustStore};
use fieldsync_shared::rules::{Missing, completeness};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::auth::EVERYONE;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::wire::ErrorBody;
use crate::sync::hub::ApprovalsChange;
use crate::sync::node::Node;
use crate::sync::progress::{self, Follower};

/// Where signed reports are kept: `meta` namespace `reports`, key = report id, value = the
/// report's canonical JSON.
pub const REPORTS: &str = "reports";

/// Per job, the report the signer last signed for it and the completion request it answers
/// (`meta` namespace; key the job id, value JSON `{report_id, requested_at}`). Written before
/// the report itself: a signer killed between storing a report and writing its outcome into
/// the job finds that report after the restart and announces it, rather than signing the job
/// again, which may have changed in between (a note added after completion) and would make a
/// second report of one completion, which head office would archive too.
pub const SIGNED_FOR_JOB: &str = "reports_by_job";

/// Runs until the hub stops: answers completion requests as jobs change.
pub async fn run_signer(state: Arc<Edge>) {
    // Subscribed before the first look, so no change made during it is missed.
    let feed = state.node.hub.subscribe_approvals();
    // A completion stored just before the server was killed was acknowledged to its device
    // but never answered, and no further change need ever come to wake the signer for it:
    // every job changed after the signer's watermark is looked at first (`sync::progress`;
    // not every stored job: issue 17).
    let store = Arc::clone(&state.node.store);
    progress::drive(
        &Signer(&state),
        store,
        state.node.metrics.clone(),
        feed,
        || {},
    )
    .await;
}

/// The signer as `sync::progress` drives it.
struct Signer<'a>(&'a Arc<Edge>);

impl Follower for Signer<'_> {
    const NAME: &'static str = "signer";

    async fn read(&self, doc: DocumentId) -> bool {
        consider(self.0, doc).await
    }

    /// The hub judged from the document in memory whether a completion request waits, so a
    /// storm of edits does not make the signer load every changed job.
    async fn change(&self, change: ApprovalsChange) -> bool {
        !change.completion_pending || consider(self.0, change.doc).await
    }
}

/// Loads a job as stored and answers its completion request if it has an unanswered one.
/// False if the answer could not be written into the job (it is tried again).
pub async fn consider(state: &Arc<Edge>, doc: DocumentId) -> bool {
    match answer(state, doc).await {
        Some(answer) => announce(state, doc, answer).await,
        None => true,
    }
}

/// The signer's answer to a job's completion request, not yet written into the job.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The job as it was read for the answer.
    pub job: Job,
    pub outcome: ReportOutcome,
}

impl Answer {
    fn at(&self) -> Timestamp {
        match &self.outcome {
            ReportOutcome::Signed { at, .. } | ReportOutcome::Refused { at, .. } => *at,
        }
    }
}

/// Loads a job as stored and, if it carries a completion request not answered yet, answers
/// it: signs the report and stores it (or finds the one signed for this very request before a
/// kill kept it out of the job), or refuses with every reason. Writes nothing into the job;
/// [`consider`] does that. `None` when there is nothing to answer.
pub async fn answer(state: &Arc<Edge>, doc: DocumentId) -> Option<Answer> {
    // Only the branch's jobs: a report or complaint document is nothing to sign.
    state.node.registry_read().job(&doc)?;
    let loaded = state.node.load_document(doc).await.and_then(|am| {
        am.map(|am| {
            read_job(&am)
                .map(|job| (job, am.get_heads(), unresolved(&am), claims(&am)))
                .map_err(|e| e.to_string())
        })
        .transpose()
    });
    let (job, heads, open, claims): (Job, Vec<ChangeHash>, Vec<Unresolved>, Claims) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(%doc, error = %e, "cannot read a job to consider its completion");
            return None;
        }
    };
    let requested_at = job.completion.as_ref()?.at;
    let previous = job.report.clone();
    let answered = match &previous {
        // R28: refused only because travel expense claims waited, and none waits now (the
        // desk has decided them since): answered again, as the technician has nothing to do.
        Some(refused @ ReportOutcome::Refused { .. })
            if claims
                .as_ref()
                .is_ok_and(|all| claims_decided_since_refusal(refused, all)) =>
        {
            false
        }
        Some(ReportOutcome::Signed { at, .. } | ReportOutcome::Refused { at, .. }) => {
            *at >= requested_at
        }
        None => false,
    };
    if answered {
        return None;
    }
    if let Some(report) = signed_before(state, doc, requested_at) {
        // Announced now, unchanged: signing the job again would make a second report of
        // one completion if anything changed since (a note), and both would reach head
        // office.
        tracing::info!(%doc, report = report.body.report_id, "announcing a report signed before a restart");
        let body = report.body;
        let outcome = ReportOutcome::Signed {
            at: body.signed_at,
            supersedes: body.supersedes.filter(|old| *old != body.report_id),
            report_id: body.report_id,
            digest: body.content_digest,
        };
        return Some(Answer { job, outcome });
    }
    let at = state.node.clock.now().max(requested_at);
    let outcome = decide(
        state,
        &job,
        &heads,
        held_back(open, &claims),
        at,
        requested_at,
        previous.as_ref(),
    )
    .await;
    Some(Answer { job, outcome })
}

/// Writes the answer into the job (with a timeline event) and does the desk's part of a
/// signed report.
async fn announce(state: &Arc<Edge>, doc: DocumentId, answer: Answer) -> bool {
    let at = answer.at();
    let Answer { job, outcome } = answer;
    let event = match &outcome {
        ReportOutcome::Signed { report_id, .. } => TimelineEvent {
            at,
            actor: "server".into(),
            kind: "report_signed".into(),
            text: format!(
                "service report {report_id} signed by branch {}",
                job.branch_id
            ),
        },
        ReportOutcome::Refused { reasons, .. } => TimelineEvent {
            at,
            actor: "server".into(),
            kind: "report_refused".into(),
            text: reasons
                .iter()
                .map(|r| format!("{}: {}", r.rule, r.message))
                .collect::<Vec<_>>()
                .join("; "),
        },
    };
    let signed = match &outcome {
        ReportOutcome::Signed { report_id, .. } => Some(report_id.clone()),
        ReportOutcome::Refused { .. } => None,
    };
    let written = state
        .node
        .hub
        .edit(
            doc,
            LocalEdit::job(move |job| {
                job.set_report_outcome(&outcome)?;
                job.add_timeline_event(&event)
            }),
        )
        .await;
    if let Err(e) = written {
        tracing::error!(%doc, error = %e, "cannot write the report outcome into the job");
        return false;
    }
    // The desk's part of a signed report: R4 with the diagnosed fault, R14's follow-up day.
    if let Some(report_id) = signed {
        match crate::edge::desk::dispatch::on_report_signed(state, &job, &report_id, at).await {
            Ok(repeats) if !repeats.is_empty() => {
                tracing::info!(%doc, repeats = repeats.len(), "R4: signed job repeats an earlier repair");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%doc, error = %e.message, "cannot update the desk record of a signed job")
            }
        }
    }
    true
}

/// Which report the signer signed for a job's completion request: the value of
/// [`SIGNED_FOR_JOB`].
#[derive(Debug, Serialize, Deserialize)]
struct SignedFor {
    report_id: String,
    /// The completion request's time: the report answers that request and no other.
    requested_at: Timestamp,
}

/// The report stored for the job's completion request of `requested_at`, if the signer
/// signed one that never made it into the job.
fn signed_before(state: &Edge, doc: DocumentId, requested_at: Timestamp) -> Option<SignedReport> {
    let pointer = state
        .node
        .store
        .meta(SIGNED_FOR_JOB, &doc.to_string())
        .ok()??;
    let pointer: SignedFor = serde_json::from_slice(&pointer).ok()?;
    if pointer.requested_at != requested_at {
        return None;
    }
    let bytes = state.node.store.meta(REPORTS, &pointer.report_id).ok()??;
    let report: SignedReport = serde_json::from_slice(&bytes).ok()?;
    (report.body.job_id == doc).then_some(report)
}

/// Signs or refuses; a signed report is stored before its outcome is written.
async fn decide(
    state: &Edge,
    job: &Job,
    heads: &[ChangeHash],
    held: Vec<RefusalReason>,
    at: Timestamp,
    requested_at: Timestamp,
    previous: Option<&ReportOutcome>,
) -> ReportOutcome {
    let mut reasons: Vec<RefusalReason> = completeness(job)
        .into_iter()
        .map(RefusalReason::from)
        .collect();
    reasons.extend(held);
    if job.acknowledgement.is_some() {
        let trust = trust_store_for(
            &state.node,
            job.acknowledgement.as_ref().map(|a| &a.device_id),
        );
        if let Err(e) = trust.check_acknowledgement(job, at) {
            reasons.push(RefusalReason {
                rule: "R8".into(),
                code: e.code().into(),
                message: e.to_string(),
            });
        }
    }
    // Issue 15: the signature covers the attachments' digests, so their bytes must be here
    // and intact first.
    reasons.extend(crate::edge::attachments::check_for_report(&state.attachments, job).await);
    if !reasons.is_empty() {
        return ReportOutcome::Refused { at, reasons };
    }
    let supersedes = match previous {
        Some(ReportOutcome::Signed { report_id, .. }) => Some(report_id.clone()),
        _ => None,
    };
    let heads: Vec<String> = heads.iter().map(ChangeHash::to_string).collect();
    // The stored bytes are the body as signed, not a second canonicalisation (issue 17).
    let signed = SignedReport::sign_exported(
        job,
        heads.clone(),
        at,
        supersedes.clone(),
        &state.node.server_key,
    );
    let (report, bytes) = match signed {
        Ok(found) => found,
        Err(e) => {
            return ReportOutcome::Refused {
                at,
                reasons: vec![RefusalReason {
                    rule: "R7".into(),
                    code: "report_not_signable".into(),
                    message: format!("the report could not be signed: {e}"),
                }],
            };
        }
    };
    // The same content was signed before (reopened, nothing changed): one report, not two.
    let supersedes = supersedes.filter(|old| *old != report.body.report_id);
    // Which report answers this request goes first: a kill after the report is stored then
    // finds it (see `signed_before`), and one before leaves a pointer to nothing.
    let pointer = SignedFor {
        report_id: report.body.report_id.clone(),
        requested_at,
    };
    let pointed = state
        .node
        .store
        .put_meta(
            SIGNED_FOR_JOB,
            &job.job_id.to_string(),
            serde_json::to_vec(&pointer).unwrap_or_default(),
        )
        .await;
    let stored = match (
        pointed,
        state.node.store.meta(REPORTS, &report.body.report_id),
    ) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(()), Ok(Some(_))) => Ok(()),
        (Ok(()), Ok(None)) => {
            state
                .node
                .store
                .put_meta(REPORTS, &report.body.report_id, bytes)
                .await
        }
    };
    if stored.is_ok() {
        // The upstream outbox (if any) takes it from here; it reads the stored copy.
        let _ = state.reports_signed.send(report.body.report_id.clone());
    }
    if let Err(e) = stored {
        return ReportOutcome::Refused {
            at,
            reasons: vec![RefusalReason {
                rule: "R13".into(),
                code: "report_not_stored".into(),
                message: format!("the signed report could not be stored; complete again: {e}"),
            }],
        };
    }
    ReportOutcome::Signed {
        at,
        report_id: report.body.report_id.clone(),
        digest: report.body.content_digest.clone(),
        supersedes,
    }
}

/// What the document holds back beyond the job's own completeness: fields a merge left in
/// disagreement or a part possibly billed twice (issue 15: never a report over them), and
/// travel expense claims still waiting (R28: the report carries the approved ones).
fn held_back(open: Vec<Unresolved>, claims: &Claims) -> Vec<RefusalReason> {
    open.into_iter()
        .map(|u| RefusalReason::from(Missing::from(u)))
        .chain(waiting_claims(claims))
        .collect()
}

/// The job's approval requests, or why they cannot be read.
type Claims = Result<Vec<Approval>, String>;

fn claims(doc: &automerge::Automerge) -> Claims {
    read_approvals(doc).map_err(|e| e.to_string())
}

/// R28: one refusal per travel expense claim of the job still waiting for the desk. A
/// malformed approvals map is the device's fault and refuses the report too (its claims
/// cannot be known).
fn waiting_claims(claims: &Claims) -> Vec<RefusalReason> {
    match claims {
        Ok(approvals) => waiting_expenses(approvals)
            .map(|a| RefusalReason {
                rule: "R28".into(),
                code: EXPENSE_UNDECIDED.into(),
                message: format!(
                    "travel expense claim {} ({}) waits for the desk's decision: the report \
                     carries the approved claims, so it is signed once every claim is decided",
                    a.id, a.reason
                ),
            })
            .collect(),
        Err(e) => vec![RefusalReason {
            rule: "R28".into(),
            code: "malformed_approval".into(),
            message: format!("the job's approval requests cannot be read: {e}"),
        }],
    }
}

/// The keys this branch trusts: its own key and its enrolled devices.
pub fn trust_store(node: &Node) -> TrustStore {
    let mut trust = trust_of(&node.branch_id, node.server_key.public(), None);
    for device in node.registry_read().devices() {
        add_device(&mut trust, device);
    }
    trust
}

/// What the R8 check of one acknowledgement needs of [`trust_store`]: the branch's key and,
/// when enrolled, the acknowledging `device` (`check_acknowledgement` looks up no other).
/// Issue 17: parsing every enrolled device's key for every report cost a point
/// decompression per device.
pub fn trust_store_for(node: &Node, device: Option<&DeviceId>) -> TrustStore {
    let record = device.and_then(|d| node.registry_read().device(d).cloned());
    trust_of(&node.branch_id, node.server_key.public(), record.as_ref())
}

/// The branch's key and at most one device record.
fn trust_of(branch: &BranchId, key: &PublicKey, device: Option<&DeviceRecord>) -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add_branch_key(branch.clone(), key.clone());
    if let Some(record) = device {
        add_device(&mut trust, record);
    }
    trust
}

fn add_device(trust: &mut TrustStore, device: &DeviceRecord) {
    if let Err(e) = trust.add_device(device.clone()) {
        tracing::warn!(device = %device.device_id, error = %e, "enrolled device has a bad key");
    }
}

/// `GET /api/reports/{id}`: a signed report as its canonical JSON, the export format that
/// `fieldsync verify` checks offline.
#[utoipa::path(
    get,
    path = "/api/reports/{id}",
    tag = "reports",
    description = "A signed service report's canonical JSON. Roles: dispatcher, manager, analyst.",
    params(("id" = String, Path, description = "The report id (32 hex digits)")),
    responses(
        (status = 200, description = "The report (RFC 8785 JSON)", content_type = "application/json"),
        (status = 400, body = ErrorBody, description = "invalid_report_id"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn get_report(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;

    state.node.authorize(&headers, EVERYONE, "read reports")?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_report_id",
            "a report id is 32 hex digits",
        ));
    }
    let store = Arc::clone(&state.node.store);
    let key = id.clone();
    let bytes = tokio::task::spawn_blocking(move || store.meta(REPORTS, &key))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no report {id}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

/// `GET /api/reports/{id}/pdf`: the signed service report as the customer's printable PDF (issue 15),
/// carrying the report's JSON as an attachment (`fieldsync verify report.pdf`).
#[utoipa::path(
    get,
    path = "/api/reports/{id}/pdf",
    tag = "reports",
    description = "The signed service report as a printable PDF in Chinese or English, with the \
        signed report JSON attached (so `fieldsync verify report.pdf` checks it). Roles: \
        dispatcher, manager, analyst.",
    params(
        ("id" = String, Path, description = "The report id (32 hex digits)"),
        ("lang" = Option<String>, Query, description = "zh (default) or en"),
        ("zone" = Option<String>, Query, description = "Time zone of the times shown: an IANA name or an offset (Asia/Shanghai by default)"),
    ),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf"),
        (status = 400, body = ErrorBody, description = "invalid_report_id, invalid_query"),
        (status = 404, body = ErrorBody, description = "unknown_report"),
    ),
)]
pub async fn get_report_pdf(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    asked: Result<
        axum::extract::Query<crate::http::pdf::PdfQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<axum::response::Response, ApiError> {
    state.node.authorize(&headers, EVERYONE, "read reports")?;
    let store = Arc::clone(&state.node.store);
    let key = id.clone();
    crate::http::pdf::download(id, asked, "report", move || store.meta(REPORTS, &key)).await
}

#[cfg(test)]
mod tests {
    use fieldsync_shared::job::approvals::{ApprovalKind, Decision};
    use fieldsync_shared::time::Money;

    use super::*;

    fn claim(id: &str, decided: bool) -> Approval {
        Approval {
            id: id.into(),
            kind: ApprovalKind::TravelExpense,
            reason: "taxi to the plant".into(),
            requested_by: "tech-wang".into(),
            requested_at: Timestamp::from_millis(1),
            amount: Some(Money(8_600)),
            expense: None,
            decision: decided.then(|| Decision {
                approved: true,
                by: "desk:manager".into(),
                at: Timestamp::from_millis(2),
                note: String::new(),
            }),
        }
    }

    fn codes(reasons: &[RefusalReason]) -> Vec<(&str, &str)> {
        reasons
            .iter()
            .map(|r| (r.rule.as_str(), r.code.as_str()))
            .collect()
    }

    #[test]
    fn r28_each_waiting_claim_holds_the_report_back_and_unreadable_claims_do_too() {
        let claims: Claims = Ok(vec![claim("a", true), claim("b", false), claim("c", false)]);
        let held = waiting_claims(&claims);
        assert_eq!(
            codes(&held),
            [("R28", EXPENSE_UNDECIDED), ("R28", EXPENSE_UNDECIDED)]
        );
        assert!(held[0].message.contains("claim b") && held[1].message.contains("claim c"));
        assert!(waiting_claims(&Ok(vec![claim("a", true)])).is_empty());
        // A device wrote something the approvals cannot be read from: its claims are unknown,
        // so no report is signed over them.
        let unreadable: Claims = Err("approval x: kind is 7, not a string".into());
        assert_eq!(
            codes(&waiting_claims(&unreadable)),
            [("R28", "malformed_approval")]
        );
    }

    /// Issue 17: the R8 check with only the acknowledging device's record answers as with
    /// every enrolled device: accepted, revoked, another branch's, unknown, forged.
    #[test]
    fn r8_with_only_the_acknowledging_device_answers_as_with_every_device() {
        use fieldsync_shared::ids::TechnicianId;
        use fieldsync_shared::job::{SignatureMark, Survey};
        use fieldsync_shared::keys::KeyPair;
        use fieldsync_shared::report::{AckDraft, sign_acknowledgement};

        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/report-vectors/report.json"))
                .expect("vector");
        let mut job: Job = serde_json::from_value(vector["job"].clone()).expect("job");
        let branch = job.branch_id.clone();
        let branch_key = KeyPair::from_seed(&[1; 32]);
        let record = |id: &str, seed: u8, at: &BranchId, revoked: Option<i64>| DeviceRecord {
            device_id: DeviceId::new(id).expect("id"),
            branch_id: at.clone(),
            technician: TechnicianId::new("tech-wang").expect("id"),
            public_key: KeyPair::from_seed(&[seed; 32]).public().to_hex(),
            revoked_at: revoked.map(Timestamp::from_millis),
        };
        let south = BranchId::new("south-02").expect("id");
        let devices = [
            record("dev-ok", 2, &branch, None),
            record("dev-revoked", 3, &branch, Some(5)),
            record("dev-south", 4, &south, None),
        ];
        let mut every = trust_of(&branch, branch_key.public(), None);
        for d in &devices {
            add_device(&mut every, d);
        }
        let now = Timestamp::from_millis(1_793_095_000_000);
        // Signed by each enrolled device's own key, by an unknown device, and one forged.
        let mut cases: Vec<(DeviceId, u8)> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.device_id.clone(), 2 + i as u8))
            .collect();
        cases.push((DeviceId::new("dev-unknown").expect("id"), 5));
        cases.push((DeviceId::new("dev-ok").expect("id"), 6));
        let mut codes = Vec::new();
        for (device, seed) in cases {
            job.acknowledgement = None;
            let ack = sign_acknowledgement(
                &job,
                ["aa".to_owned()],
                AckDraft {
                    signer_name: "Chen".into(),
                    signature: SignatureMark::Strokes { strokes: vec![] },
                    signed_at: now,
                    survey: Survey::answered(5, 5, 5, 5, ""),
                },
                device.clone(),
                &KeyPair::from_seed(&[seed; 32]),
            )
            .expect("signed");
            job.acknowledgement = Some(ack);
            let one = devices.iter().find(|d| d.device_id == device);
            let alone =
                trust_of(&branch, branch_key.public(), one).check_acknowledgement(&job, now);
            assert_eq!(alone, every.check_acknowledgement(&job, now), "{device}");
            codes.push(alone.err().map(|e| e.code()));
        }
        assert_eq!(
            codes,
            [
                None,
                Some("revoked_device"),
                Some("device_not_for_branch"),
                Some("unknown_device"),
                Some("bad_device_signature"),
            ]
        );
    }
}
