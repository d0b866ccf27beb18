//! How far a worker has taken in the stored documents (issue 17: a cold branch with years of
//! jobs must not read every one of them at start).
//!
//! The store numbers every document's last stored change in one sequence
//! (`Store::doc_seq`, moved on in the transaction that stores the change). A worker that
//! derives state from stored documents (the desk's approvals queue, the report signer, the
//! desk's follower of the jobs) records, per document, the position it has taken in
//! ([`Progress::took`]): from a read of the stored document (its position read first) or from
//! the hub's feed, whose [`ApprovalsChange`] carries the
//! position read before the hub judged the document in memory. Every couple of seconds
//! [`Progress::checkpoint`] moves the worker's watermark over the leading documents it has
//! taken in and stores it, after whatever the worker stored about them. At start a worker
//! reads only the documents changed after its watermark ([`Progress::open`]).
//!
//! **Invariant:** a watermark `w` is stored only once the worker has taken in every document
//! at its position `≤ w` (and stored what it derived from them, earlier in the writer's
//! queue). A kill loses at most the progress since the last checkpoint: those documents are
//! read again. A document the feed never reports (written outside the engine) holds the
//! watermark back until the next checkpoint but one, which hands it back to be read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fieldsync_shared::ids::DocumentId;
use fieldsync_storage::{StorageError, Store};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::metrics::SyncMetrics;
use crate::sync::hub::ApprovalsChange;

/// How often a worker stores its watermark.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// At most this many documents are looked at per checkpoint; the rest wait for the next.
const CHECKPOINT_ROWS: usize = 10_000;

/// At most this many queued changes are taken together (see [`coalesce`]).
const BURST: usize = 1024;

/// One worker's progress over the stored documents.
#[derive(Debug)]
pub struct Progress {
    worker: &'static str,
    store: Arc<Store>,
    /// Every document at a position up to this one has been taken in (and stored).
    watermark: i64,
    /// Documents taken in above the watermark, at the position taken.
    taken: HashMap<String, i64>,
    /// The documents the last checkpoint found not taken in: found again, they are handed
    /// back to be read (nothing reported them).
    behind: HashSet<(String, i64)>,
    metrics: Option<SyncMetrics>,
}

impl Progress {
    /// The worker's progress as stored, and the documents changed after its watermark (what
    /// it has to read now), in the order of their last change. Reads the store: call it from
    /// the blocking pool.
    pub fn open(
        store: Arc<Store>,
        worker: &'static str,
    ) -> Result<(Self, Vec<DocumentId>), StorageError> {
        let watermark = store.watermark(worker)?;
        let changed = changed_after(&store, watermark)?;
        Ok((
            Self {
                worker,
                store,
                watermark,
                taken: HashMap::new(),
                behind: HashSet::new(),
                metrics: None,
            },
            changed,
        ))
    }

    /// The position of a document's last stored change, read now (`None`: nothing stored,
    /// or the store cannot say; a document taken in at no position is read again later).
    pub fn position(store: &Store, doc: &DocumentId) -> Option<i64> {
        store.doc_seq(&doc.to_string()).ok().flatten()
    }

    /// The worker has taken in `doc` at position `seq` (or later).
    pub fn took(&mut self, doc: &DocumentId, seq: Option<i64>) {
        let Some(seq) = seq else { return };
        if seq <= self.watermark {
            return;
        }
        let at = self.taken.entry(doc.to_string()).or_insert(seq);
        *at = (*at).max(seq);
    }

    /// Moves the watermark over the leading documents taken in and stores it (after every
    /// write the worker submitted before). Returns the documents found not taken in at this
    /// checkpoint and the one before: nothing reported them, so the worker reads them.
    pub async fn checkpoint(&mut self) -> Vec<DocumentId> {
        let store = Arc::clone(&self.store);
        let from = self.watermark;
        let rows =
            tokio::task::spawn_blocking(move || store.docs_changed_since(from, CHECKPOINT_ROWS))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        match rows {
            Ok(rows) => self.advance(rows),
            Err(e) => {
                tracing::warn!(worker = self.worker, error = %e, "cannot look at what changed");
                Vec::new()
            }
        }
    }

    /// [`Progress::checkpoint`] over the rows read (`docs_changed_since` the watermark).
    fn advance(&mut self, rows: Vec<(String, i64)>) -> Vec<DocumentId> {
        let mut moved = self.watermark;
        let mut leading = true;
        let mut behind = HashSet::new();
        for (doc, seq) in rows {
            let taken = self.taken.get(&doc).is_some_and(|&t| t >= seq);
            if taken && leading {
                moved = seq;
            } else if !taken {
                leading = false;
                behind.insert((doc, seq));
            }
        }
        if let Some(m) = &self.metrics {
            m.worker_behind(self.worker, behind.len());
        }
        let again: Vec<DocumentId> = behind
            .intersection(&self.behind)
            .filter_map(|(doc, _)| doc.parse().ok())
            .collect();
        self.behind = behind;
        if moved > self.watermark {
            self.watermark = moved;
            self.taken.retain(|_, seq| *seq > moved);
            // Not waited for: a kill before it commits only means reading a little again.
            let worker = self.worker;
            self.store
                .put_watermark(worker, moved)
                .on_complete(move |r| {
                    if let Err(e) = r {
                        tracing::warn!(worker, error = %e, "cannot store a watermark");
                    }
                });
        }
        again
    }

    /// The watermark as this worker holds it.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
}

/// Every document changed after position `from`, in the order of their last change.
fn changed_after(store: &Store, from: i64) -> Result<Vec<DocumentId>, StorageError> {
    let mut changed = Vec::new();
    let mut from = from;
    loop {
        let rows = store.docs_changed_since(from, CHECKPOINT_ROWS)?;
        let Some(last) = rows.last().map(|r| r.1) else {
            return Ok(changed);
        };
        from = last;
        changed.extend(
            rows.into_iter()
                .filter_map(|(id, _)| id.parse::<DocumentId>().ok()),
        );
    }
}

/// [`Progress::open`] on the blocking pool.
pub async fn open(
    store: Arc<Store>,
    worker: &'static str,
) -> Result<(Progress, Vec<DocumentId>), String> {
    tokio::task::spawn_blocking(move || Progress::open(store, worker).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// A document as stored with the position it was read at (the position first, so the
/// content holds at least every change up to it). Reads the store: call it from the blocking
/// pool.
pub fn load_at(
    store: &Store,
    strategy: fieldsync_shared::stored::LoadStrategy,
    doc: &DocumentId,
) -> Result<(Option<automerge::Automerge>, Option<i64>), String> {
    let id = doc.to_string();
    let seq = store.doc_seq(&id).map_err(|e| e.to_string())?;
    let Some(chunks) = store.load_doc(&id).map_err(|e| e.to_string())? else {
        return Ok((None, seq));
    };
    let loaded = strategy.load(&chunks).map_err(|e| e.to_string())?;
    Ok((Some(loaded), seq))
}

/// The position of `doc`'s last stored change, read on the blocking pool.
pub async fn position(store: &Arc<Store>, doc: DocumentId) -> Option<i64> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || Progress::position(&store, &doc))
        .await
        .ok()
        .flatten()
}

/// A worker that derives state from the stored documents and follows the hub's feed of
/// durable changes ([`drive`] runs it).
pub trait Follower: Send + Sync {
    /// The name its watermark is stored under.
    const NAME: &'static str;

    /// Takes in `doc` as stored now (read it from the store; not a job: nothing to do).
    /// False if that failed: the document is read again (at the latest at the next start).
    fn read(&self, doc: DocumentId) -> impl Future<Output = bool> + Send;

    /// Takes in a durable change the hub reported (reading the document only if needed);
    /// false as for [`Follower::read`].
    fn change(&self, change: ApprovalsChange) -> impl Future<Output = bool> + Send;
}

/// Runs `follower`: reads the documents changed after its watermark (not every stored
/// document), calls `ready` (e.g. the approvals queue is built), then takes in each change of
/// `feed` and stores its watermark every [`CHECKPOINT_EVERY`]. A lagged feed reads what
/// changed after the watermark. `feed` is subscribed by the caller before anything could be
/// missed. Returns when the hub stops.
pub async fn drive<F: Follower>(
    follower: &F,
    store: Arc<Store>,
    metrics: SyncMetrics,
    mut feed: broadcast::Receiver<ApprovalsChange>,
    ready: impl FnOnce(),
) {
    let (mut progress, changed) = match open(Arc::clone(&store), F::NAME).await {
        Ok(found) => found,
        Err(e) => {
            // Reading what changed failed; so would nearly everything else. Start from
            // nothing taken in, which reads every document.
            tracing::error!(worker = F::NAME, error = %e, "cannot read the worker's progress");
            let every = tokio::task::spawn_blocking({
                let store = Arc::clone(&store);
                move || store.doc_ids()
            })
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
            (
                Progress {
                    worker: F::NAME,
                    store: Arc::clone(&store),
                    watermark: 0,
                    taken: HashMap::new(),
                    behind: HashSet::new(),
                    metrics: None,
                },
                every.iter().filter_map(|d| d.parse().ok()).collect(),
            )
        }
    };
    metrics.worker_read_at_start(F::NAME, changed.len());
    progress.metrics = Some(metrics);
    tracing::debug!(
        worker = F::NAME,
        changed = changed.len(),
        watermark = progress.watermark,
        "reading the documents changed since the last run"
    );
    read_all(follower, &store, &mut progress, changed).await;
    ready();
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = feed.recv() => match received {
                Ok(change) => {
                    let (burst, lagged) = coalesce(change, &mut feed);
                    for change in burst {
                        if follower.change(change).await {
                            progress.took(&change.doc, change.seq);
                        }
                    }
                    if let Some(missed) = lagged {
                        catch_up(follower, &store, &mut progress, missed).await;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    catch_up(follower, &store, &mut progress, missed).await;
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let again = progress.checkpoint().await;
                read_all(follower, &store, &mut progress, again).await;
            }
        }
    }
}

/// The change received and those already queued behind it (at most [`BURST`]), one per
/// document: its last announcement, at the highest position announced. A device's upload or
/// a reconnect storm announces the same job once per sync message applied, and a worker reads
/// a job whole for each (the desk's follower loads it from the store): a worker behind by a
/// burst reads each job once for it. Returns, too, the lag the feed reported while drained.
fn coalesce(
    first: ApprovalsChange,
    feed: &mut broadcast::Receiver<ApprovalsChange>,
) -> (Vec<ApprovalsChange>, Option<u64>) {
    let mut burst = vec![first];
    let mut at = HashMap::from([(first.doc, 0)]);
    let mut lagged = None;
    while burst.len() < BURST {
        let next = match feed.try_recv() {
            Ok(next) => next,
            Err(TryRecvError::Lagged(missed)) => {
                lagged = Some(missed);
                break;
            }
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        };
        match at.get(&next.doc) {
            Some(&i) => {
                let seq = burst[i].seq.max(next.seq);
                burst[i] = ApprovalsChange { seq, ..next };
            }
            None => {
                at.insert(next.doc, burst.len());
                burst.push(next);
            }
        }
    }
    (burst, lagged)
}

/// The feed dropped `missed` changes: reads every document changed after the watermark.
async fn catch_up<F: Follower>(
    follower: &F,
    store: &Arc<Store>,
    progress: &mut Progress,
    missed: u64,
) {
    tracing::warn!(
        worker = F::NAME,
        missed,
        "fell behind the changes; reading what changed after the watermark"
    );
    let from = progress.watermark;
    let changed = tokio::task::spawn_blocking({
        let store = Arc::clone(store);
        move || changed_after(&store, from).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let changed = match changed {
        Ok(changed) => changed,
        Err(e) => {
            tracing::warn!(worker = F::NAME, error = %e, "cannot read what changed");
            Vec::new()
        }
    };
    read_all(follower, store, progress, changed).await;
}

/// Reads each document (its position first), with a checkpoint every few hundred.
async fn read_all<F: Follower>(
    follower: &F,
    store: &Arc<Store>,
    progress: &mut Progress,
    docs: Vec<DocumentId>,
) {
    for (i, doc) in docs.into_iter().enumerate() {
        let seq = position(store, doc).await;
        if follower.read(doc).await {
            progress.took(&doc, seq);
        }
        if i % 500 == 499 {
            progress.checkpoint().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(doc: u8, seq: i64, completion_pending: bool) -> ApprovalsChange {
        ApprovalsChange {
            doc: DocumentId::from_bytes([doc; 16]),
            stamp: None,
            seq: Some(seq),
            completion_pending,
        }
    }

    /// A burst of announcements reaches a worker as one per document, in the order each was
    /// first announced, with its last announcement's judgment and the highest position; what
    /// comes after the burst is left for the next.
    #[test]
    fn a_burst_is_taken_once_per_document_at_its_last_announcement() {
        let (tx, mut feed) = broadcast::channel(16);
        for c in [change(1, 5, false), change(2, 6, false), change(1, 7, true)] {
            tx.send(c).expect("a receiver");
        }
        let first = feed.try_recv().expect("queued");
        let (burst, lagged) = coalesce(first, &mut feed);
        assert_eq!(burst, vec![change(1, 7, true), change(2, 6, false)]);
        assert_eq!(lagged, None);
        assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));
    }

    /// A burst stops at [`BURST`] documents: what is queued behind it waits for the next
    /// call, whole.
    #[test]
    fn a_burst_stops_at_its_cap_and_leaves_the_rest_queued() {
        let (tx, mut feed) = broadcast::channel(2 * BURST);
        let doc = |n: usize| {
            let mut bytes = [0; 16];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            DocumentId::from_bytes(bytes)
        };
        for n in 0..=BURST {
            let change = ApprovalsChange {
                doc: doc(n),
                stamp: None,
                seq: Some(n as i64),
                completion_pending: false,
            };
            tx.send(change).expect("a receiver");
        }
        let first = feed.try_recv().expect("queued");
        let (burst, lagged) = coalesce(first, &mut feed);
        assert_eq!(burst.len(), BURST);
        assert_eq!(lagged, None);
        let next = feed.try_recv().expect("the rest stays queued");
        assert_eq!(next.doc, doc(BURST));
        assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));
    }

    /// A feed that dropped changes while drained says so: the worker then reads everything
    /// changed after its watermark, as when `recv` reports the lag.
    #[test]
    fn a_lag_found_while_draining_is_reported() {
        let (tx, mut feed) = broadcast::channel(2);
        tx.send(change(1, 1, false)).expect("a receiver");
        let first = feed.try_recv().expect("queued");
        for seq in 2..6 {
            tx.send(change(2, seq, false)).expect("a receiver");
        }
        let (burst, lagged) = coalesce(first, &mut feed);
        assert_eq!(burst, vec![change(1, 1, false)]);
        assert_eq!(lagged, Some(2));
    }
}
