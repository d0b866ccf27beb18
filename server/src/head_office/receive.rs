//! Head office's receiver: looks at every document a branch sends as it becomes durable and
//! hands it to the one that keeps it: a report document to the report archive
//! ([`archive::process`]), a complaint document to the complaint archive
//! ([`complaints::process`]); job documents are read by the reports that name them. A report
//! whose job document does not hold the report's heads yet waits here (by job) and is looked
//! at again whenever that job changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fieldsync_shared::complaint_doc::ComplaintDoc;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::report_doc::ReportDoc;
use fieldsync_storage::{AsideStatus, Store};
use tokio::sync::broadcast::error::RecvError;

/// How often the receiver looks for a retry asked by `fieldsync archive retry`.
const RETRY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

use crate::head_office::HeadOffice;
use crate::head_office::archive::{Rejection, load, process, reject};
use crate::head_office::complaints;
use crate::head_office::store::{HeadOfficeStore, StoreError};

/// Runs until the hub stops: looks at every document that changes.
pub async fn run(state: Arc<HeadOffice>) {
    let mut changes = state.node.hub.subscribe_changes();
    // Report documents waiting for their job, by job.
    let mut waiting: HashMap<DocumentId, HashSet<DocumentId>> = HashMap::new();
    match load_pending(&state.store).await {
        Ok(pending) => {
            for (report_doc, job) in pending {
                waiting.entry(job).or_default().insert(report_doc);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the pending reports"),
    }
    // Look at the waiting ones once: their job may have arrived before a restart.
    let jobs: Vec<DocumentId> = waiting.keys().copied().collect();
    for job in jobs {
        recheck(&state, &mut waiting, job).await;
    }
    // A document stored just before a kill was never looked at, yet its branch was told head
    // office holds it and will not offer it again, and nothing need ever change it: look once
    // at every stored document whose report is neither archived nor kept aside.
    match unsettled(&state.store, &state.node.store).await {
        Ok(docs) => {
            for doc in docs {
                consider(&state, &mut waiting, doc).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list the stored documents to verify"),
    }
    // `fieldsync archive retry` (another process, on this archive) took reports out of the
    // rejected list: look at them again. Checked every second, like the records.
    let mut retries = tokio::time::interval(RETRY_POLL);
    let mut retry_seen = state.store.retry_generation().await.unwrap_or(0);
    loop {
        let received = tokio::select! {
            received = changes.recv() => received,
            _ = retries.tick() => {
                let now = state.store.retry_generation().await.unwrap_or(retry_seen);
                if now != retry_seen {
                    retry_seen = now;
                    // A retry often follows a branch key enrolled by the same command: take
                    // the records in first, so the reports are checked against the new key.
                    let node = Arc::clone(&state.node);
                    if let Ok(Err(e)) =
                        tokio::task::spawn_blocking(move || node.reload_registry_if_changed()).await
                    {
                        tracing::warn!(error = %e, "cannot reload the records before a retry");
                    }
                    tracing::info!("retrying the reports taken out of the rejected list");
                    match unsettled(&state.store, &state.node.store).await {
                        Ok(docs) => {
                            for doc in docs {
                                consider(&state, &mut waiting, doc).await;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot list the documents to retry"),
                    }
                }
                continue;
            }
        };
        let doc = match received {
            Ok(doc) => doc,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "verifier fell behind; rescanning stored documents");
                let ids = state.node.store.doc_ids().unwrap_or_default();
                for id in ids.iter().filter_map(|i| i.parse().ok()) {
                    consider(&state, &mut waiting, id).await;
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        consider(&state, &mut waiting, doc).await;
    }
}

/// Every stored document except the report documents already archived or kept aside (a
/// report document never changes once written, so its outcome stands): job documents are
/// loaded and passed over quickly, complaint documents are archived by revision, so looking
/// at them again archives nothing twice.
///
/// With several head-office processes on one archive, a document this process stored may have
/// been archived by another (the branch delivered it twice): it counts as settled here too.
async fn unsettled(
    archive: &HeadOfficeStore,
    documents: &std::sync::Arc<Store>,
) -> Result<Vec<DocumentId>, StoreError> {
    let settled: HashSet<DocumentId> = archive
        .settled_report_docs()
        .await?
        .into_iter()
        .filter_map(|doc| doc.parse().ok())
        .collect();
    let documents = std::sync::Arc::clone(documents);
    let stored = tokio::task::spawn_blocking(move || documents.doc_ids())
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
    Ok(stored
        .iter()
        .filter_map(|d| d.parse::<DocumentId>().ok())
        .filter(|d| !settled.contains(d))
        .collect())
}

/// The reports waiting for their job document. With several processes on one archive this
/// lists the others' too: a report document this process does not hold loads as nothing and
/// is passed over.
async fn load_pending(
    store: &HeadOfficeStore,
) -> Result<Vec<(DocumentId, DocumentId)>, StoreError> {
    Ok(store
        .reports_aside(AsideStatus::Pending)
        .await?
        .into_iter()
        .filter_map(|row| {
            let r: Rejection = serde_json::from_str(&row.body).ok()?;
            Some((r.report_doc, r.job_id?))
        })
        .collect())
}

async fn consider(
    state: &Arc<HeadOffice>,
    waiting: &mut HashMap<DocumentId, HashSet<DocumentId>>,
    doc: DocumentId,
) {
    if waiting.contains_key(&doc) {
        recheck(state, waiting, doc).await;
    }
    let Some(am) = load(state, doc).await else {
        return;
    };
    match ReportDoc::from_document(&am) {
        Ok(Some(report)) => {
            if let Some(job) = process(state, doc, &report).await {
                waiting.entry(job).or_default().insert(doc);
            }
            return;
        }
        Ok(None) => {}
        Err(e) => {
            reject(state, doc, None, &e).await;
            return;
        }
    }
    match ComplaintDoc::from_document(&am) {
        Ok(Some(complaint)) => complaints::process(state, doc, &complaint).await,
        Ok(None) => {}
        Err(e) => complaints::reject_unreadable(state, doc, &e).await,
    }
}

async fn recheck(
    state: &Arc<HeadOffice>,
    waiting: &mut HashMap<DocumentId, HashSet<DocumentId>>,
    job: DocumentId,
) {
    let Some(docs) = waiting.remove(&job) else {
        return;
    };
    for report_doc in docs {
        let Some(am) = load(state, report_doc).await else {
            continue;
        };
        if let Ok(Some(report)) = ReportDoc::from_document(&am)
            && let Some(job) = process(state, report_doc, &report).await
        {
            waiting.entry(job).or_default().insert(report_doc);
        }
    }
}
