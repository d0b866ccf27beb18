//! Report signing at the edge (R7, R8, R11, R13, R16).
//!
//! When a job's stored content changes and it carries a completion request the server has
//! not answered yet, the signer checks it: every R7/R9/R11 item present, and the training of
//! the customer's staff on an installation job (R16) (`rules::completeness`), and an
//! acknowledgement (R8) that verifies against an enrolled, unrevoked device of this branch
//! and still matches the job's content (`report::TrustStore`). If all hold it signs a
//! `SignedReport` with the branch key over the job as stored, keeps it, and writes the outcome
//! into the job; if not, it writes the refusal with every reason, so the technician's device
//! shows it. The same content signed twice is one report (its id derives from the content);
//! a job reopened and completed again gets a new report naming the one it supersedes.

use std::sync::Arc;

use automerge::ChangeHash;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::job::{Job, RefusalReason, ReportOutcome, TimelineEvent};
use fieldsync_shared::report::{SignedReport, TrustStore};
use fieldsync_shared::rules::completeness;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::Timestamp;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;

/// Where signed reports are kept: `meta` namespace `reports`, key = report id, value = the
/// report's canonical JSON.
pub const REPORTS: &str = "reports";

/// Runs until the hub stops: answers completion requests as jobs change.
pub async fn run_signer(state: Arc<AppState>) {
    // Subscribed before the first look, so no change made during it is missed.
    let mut changes = state.hub.subscribe_completions();
    // A completion stored just before the server was killed was acknowledged to its device
    // but never answered, and no further change need ever come to wake the signer for it.
    consider_every_job(&state).await;
    loop {
        let doc = match changes.recv().await {
            Ok(doc) => doc,
            Err(RecvError::Lagged(missed)) => {
                // Some notifications were dropped: look at every job once, so no completion
                // request is left unanswered.
                tracing::warn!(missed, "signer fell behind; rescanning jobs");
                consider_every_job(&state).await;
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        consider(&state, doc).await;
    }
}

/// Answers every stored job's unanswered completion request.
async fn consider_every_job(state: &Arc<AppState>) {
    let jobs: Vec<DocumentId> = state.registry_read().jobs().map(|j| j.job_id).collect();
    for job in jobs {
        consider(state, job).await;
    }
}


/// Loads a job as stored and answers its completion request if it has an unanswered one.
pub async fn consider(state: &Arc<AppState>, doc: DocumentId) {
    if state.registry_read().job(&doc).is_none() {
        return;
    }
    let loaded = state.load_document(doc).await.and_then(|am| {
        am.map(|am| {
            read_job(&am)
                .map(|job| (job, am.get_heads()))
                .map_err(|e| e.to_string())
        })
        .transpose()
    });
    let (job, heads): (Job, Vec<ChangeHash>) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(%doc, error = %e, "cannot read a job to consider its completion");
            return;
        }
    };
    let Some(completion) = &job.completion else {
        return;
    };
    let previous = job.report.clone();
    let answered = match &previous {
        Some(ReportOutcome::Signed { at, .. } | ReportOutcome::Refused { at, .. }) => {
            *at >= completion.at
        }
        None => false,
    };
    if answered {
        return;
    }
    let at = state.clock.now().max(completion.at);
    let outcome = decide(state, &job, &heads, at, previous.as_ref()).await;
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
        return;
    }
    // The desk's part of a signed report: R4 with the diagnosed fault, R14's follow-up day.
    if let Some(report_id) = signed {
        match crate::desk::dispatch::on_report_signed(state, &job, &report_id, at).await {
            Ok(repeats) if !repeats.is_empty() => {
                tracing::info!(%doc, repeats = repeats.len(), "R4: signed job repeats an earlier repair");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%doc, error = %e.message, "cannot update the desk record of a signed job")
            }
        }
    }
}

/// Signs or refuses; a signed report is stored before its outcome is written.
async fn decide(
    state: &AppState,
    job: &Job,
    heads: &[ChangeHash],
    at: Timestamp,
    previous: Option<&ReportOutcome>,
) -> ReportOutcome {
    let mut reasons: Vec<RefusalReason> = completeness(job)
        .into_iter()
        .map(RefusalReason::from)
        .collect();
    if job.acknowledgement.is_some() {
        let trust = trust_store(state);
        if let Err(e) = trust.check_acknowledgement(job, at) {
            reasons.push(RefusalReason {
                rule: "R8".into(),
                code: e.code().into(),
                message: e.to_string(),
            });
        }
    }
    if !reasons.is_empty() {
        return ReportOutcome::Refused { at, reasons };
    }
    let supersedes = match previous {
        Some(ReportOutcome::Signed { report_id, .. }) => Some(report_id.clone()),
        _ => None,
    };
    let heads: Vec<String> = heads.iter().map(ChangeHash::to_string).collect();
    let signed = SignedReport::sign(
        job,
        heads.clone(),
        at,
        supersedes.clone(),
        &state.server_key,
    )
    .and_then(|r| r.to_canonical_json().map(|bytes| (r, bytes)));
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
    let stored = match state.store.meta(REPORTS, &report.body.report_id) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            state
                .store
                .put_meta(REPORTS, &report.body.report_id, bytes)
                .await
        }
        Err(e) => Err(e),
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

/// The keys this branch trusts: its own key and its enrolled devices.
pub fn trust_store(state: &AppState) -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add_branch_key(state.branch_id.clone(), state.server_key.public().clone());
    for device in state.registry_read().devices() {
        if let Err(e) = trust.add_device(device.clone()) {
            tracing::warn!(device = %device.device_id, error = %e, "enrolled device has a bad key");
        }
    }
    trust
}
