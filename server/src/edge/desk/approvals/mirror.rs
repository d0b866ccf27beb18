//! The approvals queue in memory: job id → the approval requests read from its stored job
//! document, so `GET /api/approvals` loads no document.
//!
//! The queue is kept in the store too (`meta` namespace [`QUEUE`], one entry per job with
//! requests: the approvals and the heads they were read at), written as each job is read.
//! An edge starts from what is kept there and reads only the jobs stored since its worker's
//! watermark (`sync::progress`; issue 17: a branch keeps years of jobs, and start-up must not
//! read them all); the first start of this version has no watermark and reads every job
//! once. It keeps the queue current from the hub's approvals feed
//! (`Hub::subscribe_approvals`): for each durable change of a document the hub passes the
//! [`ApprovalsStamp`] of its approvals, taken from the document it holds in memory, and a job
//! whose stamp differs from the one here is read again from the store. Edits that leave
//! approvals alone (nearly all of them) load nothing. A feed that lagged rereads the jobs
//! changed after the watermark. The decide endpoint reads its job again right after writing
//! the decision, so a decision is in the queue when the call returns. Jobs without requests
//! are not kept, in memory or in the store.
//!
//! Invariant: every entry is what `read_approvals` answers for a stored state of its job, and
//! an entry is replaced only by a read of a document that holds every change the entry was
//! read from (stored documents only grow), so concurrent reads never put an older state back.
//! The queue can differ from the stored documents only while a change is on its way through
//! the feed. What is kept in the store for a job is written before the worker's watermark
//! passes the job's change (the writer's order), so a restart finds every job either kept
//! as last read or above the watermark, to be read again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::approvals::{Approval, ApprovalsStamp, approvals_stamp, read_approvals};
use fieldsync_storage::Store;
use tokio::sync::watch;

use crate::edge::Edge;
use crate::sync::hub::ApprovalsChange;
use crate::sync::progress::{self, Follower};
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

/// Where the queue is kept in the store: `meta` namespace, key the job id, value a [`Kept`].
pub const QUEUE: &str = "approvals_queue";

/// One job's approvals. Kept for every job read with requests (requests are never removed
/// from a job): its heads are what a later read is checked against.
#[derive(Debug)]
struct Entry {
    /// The heads of the stored document the approvals were read from.
    heads: Vec<ChangeHash>,
    /// `None` for an entry read back from the store: the stamp is only compared within one
    /// process, so the next change of the job reads it again.
    stamp: Option<ApprovalsStamp>,
    approvals: Vec<Approval>,
}

/// An entry as kept in the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Kept {
    /// The heads, as hex.
    heads: Vec<String>,
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
    /// held has none).
    pub fn is_current(&self, job: &DocumentId, stamp: ApprovalsStamp) -> bool {
        match self.read().jobs.get(job) {
            Some(entry) => entry.stamp == Some(stamp),
            None => stamp == ApprovalsStamp::NONE,
        }
    }

    /// Puts what the store keeps of the queue in the mirror (at start, before the jobs
    /// changed since are read). An entry that does not read is left out, with a warning: its
    /// job is read again at its next change.
    pub fn load_kept(&self, store: &Store) -> Result<usize, fieldsync_storage::StorageError> {
        let kept = store.meta_entries(QUEUE)?;
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, value) in &kept {
            let read = key.parse::<DocumentId>().ok().zip(
                serde_json::from_slice::<Kept>(value).ok().and_then(|k| {
                    let heads = k
                        .heads
                        .iter()
                        .map(|h| h.parse::<ChangeHash>())
                        .collect::<Result<Vec<_>, _>>()
                        .ok()?;
                    Some((heads, k.approvals))
                }),
            );
            let Some((job, (heads, approvals))) = read else {
                tracing::warn!(key, "an approvals queue entry in the store does not read");
                continue;
            };
            let added = undecided(&approvals);
            let entry = Entry {
                heads,
                stamp: None,
                approvals,
            };
            if let Some(old) = inner.jobs.insert(job, entry) {
                inner.waiting -= undecided(&old.approvals);
            }
            inner.waiting += added;
        }
        crate::metrics::set_count(&self.waiting_gauge, inner.waiting);
        Ok(kept.len())
    }

    /// Puts the approvals of `doc`, the job as just read from the store, in the mirror and
    /// keeps them in `store` (a job with requests), unless the mirror holds a later state of
    /// the job already (a read that overtook this one). A request the server cannot read
    /// leaves the job's approvals out, with a warning: a device wrote it, and the rest of the
    /// queue must not suffer for it.
    pub fn update(&self, store: &Store, job: DocumentId, doc: &Automerge) {
        let approvals = read_approvals(doc).unwrap_or_else(|e| {
            tracing::warn!(%job, error = %e, "unreadable approvals left out of the queue");
            Vec::new()
        });
        let entry = Entry {
            heads: doc.get_heads(),
            stamp: Some(approvals_stamp(doc)),
            approvals,
        };
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = inner.jobs.get(&job);
        if let Some(held) = held
            && !doc.get_missing_deps(&held.heads).is_empty()
        {
            return;
        }
        if entry.approvals.is_empty() && held.is_none() {
            // Most jobs: nothing to keep.
            return;
        }
        if held.is_none_or(|h| h.approvals != entry.approvals) {
            // Submitted under the lock, so two reads of one job are kept in the order they
            // are held, and before the worker's watermark passes this state.
            let kept = Kept {
                heads: entry.heads.iter().map(ToString::to_string).collect(),
                approvals: entry.approvals.clone(),
            };
            match serde_json::to_vec(&kept) {
                Ok(bytes) => store
                    .put_meta(QUEUE, &job.to_string(), bytes)
                    .on_complete(move |r| {
                        if let Err(e) = r {
                            tracing::warn!(%job, error = %e, "cannot keep a job's approvals");
                        }
                    }),
                Err(e) => tracing::warn!(%job, error = %e, "cannot keep a job's approvals"),
            }
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

/// Reads a job as stored and puts its approvals in the mirror. Nothing stored, or not a
/// job: nothing to do.
pub async fn reread(state: &Edge, job: DocumentId) -> Result<(), String> {
    if state.node.registry_read().job(&job).is_none() {
        return Ok(());
    }
    if let Some(doc) = state.node.load_document(job).await? {
        state.approvals.update(&state.node.store, job, &doc);
    }
    Ok(())
}

/// The mirror's worker, as `sync::progress` drives it.
struct Mirror<'a>(&'a Edge);

impl Follower for Mirror<'_> {
    const NAME: &'static str = "approvals";

    async fn read(&self, doc: DocumentId) -> bool {
        match reread(self.0, doc).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%doc, error = %e, "cannot read a job's approvals");
                false
            }
        }
    }

    async fn change(&self, change: ApprovalsChange) -> bool {
        let ApprovalsChange { doc, stamp, .. } = change;
        if stamp.is_some_and(|s| self.0.approvals.is_current(&doc, s)) {
            return true;
        }
        self.read(doc).await
    }
}

/// An edge's worker: starts from the queue kept in the store, reads the jobs changed since
/// the last run, then follows the hub's approvals feed until the hub stops.
pub async fn run(state: Arc<Edge>) {
    // Subscribed before anything is read, so no change made meanwhile is missed.
    let feed = state.node.hub.subscribe_approvals();
    let store = Arc::clone(&state.node.store);
    let kept = tokio::task::spawn_blocking({
        let state = Arc::clone(&state);
        move || state.approvals.load_kept(&state.node.store)
    })
    .await;
    match kept {
        Ok(Ok(n)) => tracing::debug!(jobs = n, "approvals queue read from the store"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the kept approvals queue"),
        Err(e) => tracing::warn!(error = %e, "cannot read the kept approvals queue"),
    }
    progress::drive(
        &Mirror(&state),
        store,
        state.node.metrics.clone(),
        feed,
        || {
            state.approvals.mark_built();
            tracing::debug!(waiting = state.approvals.waiting(), "approvals queue built");
        },
    )
    .await;
}
