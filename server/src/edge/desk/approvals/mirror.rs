//! The approvals queue in memory: job id → the approval requests read from its stored job
//! document, so `GET /api/approvals` loads no document.
//!
//! An edge builds it from the stored jobs when it starts ([`run`]) and keeps it current from
//! the hub's approvals feed (`Hub::subscribe_approvals`): for each durable change of a
//! document the hub passes the [`ApprovalsStamp`] of its approvals, taken from the document it
//! holds in memory, and a job whose stamp differs from the one here is read again from the
//! store. Edits that leave approvals alone (nearly all of them) load nothing. A feed that
//! lagged rereads every job from the store. The decide endpoint reads its job again right
//! after writing the decision, so a decision is in the queue when the call returns.
//!
//! Invariant: every entry is what `read_approvals` answers for a stored state of its job, and
//! an entry is replaced only by a read of a document that holds every change the entry was
//! read from (stored documents only grow), so concurrent reads never put an older state back.
//! The queue can differ from the stored documents only while a change is on its way through
//! the feed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::approvals::{Approval, ApprovalsStamp, approvals_stamp, read_approvals};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::edge::Edge;
use crate::sync::hub::ApprovalsChange;
use prometheus_client::metrics::gauge::Gauge;

/// The approvals of every job of the branch, as last read from the store.
#[derive(Debug)]
pub struct ApprovalMirror {
    inner: RwLock<Inner>,
    /// True once the mirror holds every stored job (after the first build).
    built: watch::Sender<bool>,
    /// `fieldsync_approvals_waiting`.
    waiting_gauge: Gauge,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<DocumentId, Entry>,
    /// Requests not decided yet, over every job.
    waiting: usize,
}

/// One job's approvals. Kept for every job read, with or without requests: its heads are
/// what a later read is checked against.
#[derive(Debug)]
struct Entry {
    /// The heads of the stored document the approvals were read from.
    heads: Vec<ChangeHash>,
    stamp: ApprovalsStamp,
    approvals: Vec<Approval>,
}

fn undecided(approvals: &[Approval]) -> usize {
    approvals.iter().filter(|a| a.decision.is_none()).count()
}

impl ApprovalMirror {
    /// An empty mirror, not built yet: readers wait for [`ApprovalMirror::mark_built`].
    pub fn new(waiting: Gauge) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            built: watch::channel(false).0,
            waiting_gauge: waiting,
        }
    }

    /// Says the mirror holds every stored job: [`run`] after its first build; head office,
    /// which keeps no jobs of its own, at once.
    pub fn mark_built(&self) {
        self.built.send_replace(true);
    }

    /// Waits until the mirror is built, at most `wait`; false if it is not built by then.
    pub async fn until_built(&self, wait: Duration) -> bool {
        let mut built = self.built.subscribe();
        matches!(
            tokio::time::timeout(wait, built.wait_for(|b| *b)).await,
            Ok(Ok(_))
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the mirror already holds approvals with this stamp for the job (a job not
    /// read yet holds none).
    pub fn is_current(&self, job: &DocumentId, stamp: ApprovalsStamp) -> bool {
        match self.read().jobs.get(job) {
            Some(entry) => entry.stamp == stamp,
            None => stamp == ApprovalsStamp::NONE,
        }
    }

    /// Puts the approvals of `doc`, the job as just read from the store, in the mirror,
    /// unless the mirror holds a later state of the job already (a read that overtook this
    /// one). A request the server cannot read leaves the job's approvals out, with a warning:
    /// a device wrote it, and the rest of the queue must not suffer for it.
    pub fn update(&self, job: DocumentId, doc: &Automerge) {
        let approvals = read_approvals(doc).unwrap_or_else(|e| {
            tracing::warn!(%job, error = %e, "unreadable approvals left out of the queue");
            Vec::new()
        });
        let entry = Entry {
            heads: doc.get_heads(),
            stamp: approvals_stamp(doc),
            approvals,
        };
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = inner.jobs.get(&job)
            && !doc.get_missing_deps(&held.heads).is_empty()
        {
            return;
        }
        let added = undecided(&entry.approvals);
        let removed = inner
            .jobs
            .insert(job, entry)
            .map_or(0, |old| undecided(&old.approvals));
        inner.waiting = inner.waiting + added - removed;
        crate::metrics::set_count(&self.waiting_gauge, inner.waiting);
    }

    /// Every request (or only those not decided yet), with its job, in no particular order.
    pub fn approvals(&self, pending_only: bool) -> Vec<(DocumentId, Approval)> {
        let inner = self.read();
        inner
            .jobs
            .iter()
            .flat_map(|(job, entry)| entry.approvals.iter().map(move |a| (*job, a)))
            .filter(|(_, a)| !pending_only || a.decision.is_none())
            .map(|(job, a)| (job, a.clone()))
            .collect()
    }

    /// How many requests wait for a decision.
    pub fn waiting(&self) -> usize {
        self.read().waiting
    }
}

/// Reads a job as stored and puts its approvals in the mirror. Nothing stored: nothing to do.
pub async fn reread(state: &Edge, job: DocumentId) -> Result<(), String> {
    if let Some(doc) = state.node.load_document(job).await? {
        state.approvals.update(job, &doc);
    }
    Ok(())
}

/// Reads every job of the branch from the store.
async fn rebuild(state: &Edge) {
    let jobs: Vec<DocumentId> = state
        .node
        .registry_read()
        .jobs()
        .map(|j| j.job_id)
        .collect();
    for job in jobs {
        if let Err(e) = reread(state, job).await {
            tracing::warn!(%job, error = %e, "cannot read a job's approvals");
        }
    }
}

/// An edge's worker: builds the mirror from the stored jobs, then follows the hub's approvals
/// feed until the hub stops.
pub async fn run(state: Arc<Edge>) {
    // Subscribed before the build, so no change made during it is missed.
    let mut feed = state.node.hub.subscribe_approvals();
    rebuild(&state).await;
    state.approvals.mark_built();
    tracing::debug!(waiting = state.approvals.waiting(), "approvals queue built");
    loop {
        match feed.recv().await {
            Ok(ApprovalsChange { doc, stamp }) => {
                if stamp.is_some_and(|s| state.approvals.is_current(&doc, s))
                    || state.node.registry_read().job(&doc).is_none()
                {
                    continue;
                }
                if let Err(e) = reread(&state, doc).await {
                    tracing::warn!(%doc, error = %e, "cannot read a changed job's approvals");
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "approvals queue fell behind; rereading every job");
                rebuild(&state).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}
