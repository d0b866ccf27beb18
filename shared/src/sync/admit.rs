//! What of a peer's changes may enter a document whose writes are restricted by a table
//! (`authority`): the changes are decoded, put in dependency order, checked op by op, and
//! the ones whose dependencies have not arrived are held back on the session.
//!
//! Held back, not handed to automerge: automerge queues a change whose dependencies it lacks
//! and applies it later, when they arrive, without anyone looking at it. A held change is
//! checked once its dependencies are in (the engine asks the peer for them), and a change
//! that depends on a refused one is refused too, never asked for.

use std::collections::HashSet;
use std::fmt;

use automerge::{Automerge, Change, ChangeHash, LoadOptions, OnPartialLoad, VerificationMode};

use crate::authority::{Checker, Violation, WriteTable, Writer};

/// Why the changes of a message were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A change writes where the table does not let this writer write.
    Violation(Violation),
    /// A change builds on one refused before.
    DependsOnRefused { change: ChangeHash },
    /// A chunk automerge cannot read as changes.
    Malformed(String),
    /// More changes wait for their dependencies than the limit.
    TooManyWaiting { limit: usize },
    /// The peer may only read this document (and no table names a path).
    ReadOnly,
}

impl Refusal {
    /// A stable name, for metrics and logs.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Refusal::Violation(_) => "write_forbidden",
            Refusal::DependsOnRefused { .. } => "depends_on_refused",
            Refusal::Malformed(_) => "bad_change",
            Refusal::TooManyWaiting { .. } => "too_many_waiting",
            Refusal::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Violation(v) => write!(f, "{v}"),
            Refusal::DependsOnRefused { change } => write!(
                f,
                "change {change} builds on a change this server refused; nothing of it is stored"
            ),
            Refusal::Malformed(e) => write!(f, "a change cannot be read: {e}"),
            Refusal::TooManyWaiting { limit } => write!(
                f,
                "more than {limit} changes wait for changes they depend on (max_changes)"
            ),
            Refusal::ReadOnly => f.write_str("this peer may only read this document"),
        }
    }
}

/// What a restricted session keeps between messages.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// Changes whose dependencies have not arrived yet, not checked yet.
    pub(super) held: Vec<Change>,
    /// Changes refused on this session: what builds on them is refused too.
    pub(super) refused: HashSet<ChangeHash>,
}

/// Whether `doc` holds (has applied) the change `hash`.
pub(super) fn holds(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_change_meta_by_hash(hash).is_some()
}

/// The chunks of one entry of a message's changes. The entry was checked whole by
/// `protocol::check_sync_message`, so every header is complete.
fn chunks(entry: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = entry;
    // magic (4), checksum (4), type (1), then the data's length.
    while rest.len() > 9 {
        let mut len = 0u64;
        let mut shift = 0;
        let mut at = 9;
        while let Some(&byte) = rest.get(at) {
            at += 1;
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .unwrap_or(usize::MAX)
            .min(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// Decodes the changes in a message's entries that `doc` does not hold yet: each change
/// chunk as it is, each document (a v2 message, or a peer sending much of its history)
/// loaded and reduced to the changes `doc` lacks.
pub(super) fn decode_changes<'a>(
    doc: &Automerge,
    entries: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<Change>, Refusal> {
    let mut out = Vec::new();
    for entry in entries {
        for chunk in chunks(entry) {
            match chunk.get(8) {
                Some(0) => {
                    let options = LoadOptions::new()
                        .on_partial_load(OnPartialLoad::Error)
                        .verification_mode(VerificationMode::Check);
                    let loaded = Automerge::load_with_options(chunk, options)
                        .map_err(|e| Refusal::Malformed(e.to_string()))?;
                    out.extend(doc.get_changes_added(&loaded));
                }
                _ => {
                    let change =
                        Change::try_from(chunk).map_err(|e| Refusal::Malformed(e.to_string()))?;
                    if !holds(doc, &change.hash()) {
                        out.push(change);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Admits what of `incoming` (and of the changes held before) the table lets `writer`
/// write: returns the changes to apply, in dependency order. Changes still missing a
/// dependency stay held. Any refusal refuses every incoming change and leaves `doc` as it is.
pub(super) fn admit(
    doc: &Automerge,
    table: &'static WriteTable,
    writer: Writer,
    incoming: Vec<Change>,
    waiting: &mut Waiting,
    max_held: usize,
) -> Result<Vec<Change>, Refusal> {
    let incoming_hashes: Vec<ChangeHash> = incoming.iter().map(Change::hash).collect();
    let refuse = |waiting: &mut Waiting, refusal: Refusal| {
        waiting.refused.extend(incoming_hashes.iter().copied());
        Err(refusal)
    };
    let mut seen = HashSet::new();
    let mut pending: Vec<Change> = Vec::new();
    for change in waiting.held.iter().cloned().chain(incoming) {
        if seen.insert(change.hash()) && !holds(doc, &change.hash()) {
            pending.push(change);
        }
    }
    let mut checker = Checker::new(doc, table, writer);
    let mut accepted: Vec<Change> = Vec::new();
    let mut accepted_hashes: HashSet<ChangeHash> = HashSet::new();
    loop {
        let mut progress = false;
        let mut still = Vec::new();
        for change in pending {
            if change.deps().iter().any(|d| waiting.refused.contains(d)) {
                let refusal = Refusal::DependsOnRefused {
                    change: change.hash(),
                };
                return refuse(waiting, refusal);
            }
            let ready = change
                .deps()
                .iter()
                .all(|d| accepted_hashes.contains(d) || holds(doc, d));
            if !ready {
                still.push(change);
                continue;
            }
            if let Err(v) = checker.check(&change) {
                return refuse(waiting, Refusal::Violation(v));
            }
            accepted_hashes.insert(change.hash());
            accepted.push(change);
            progress = true;
        }
        pending = still;
        if !progress || pending.is_empty() {
            break;
        }
    }
    if pending.len() > max_held {
        return refuse(waiting, Refusal::TooManyWaiting { limit: max_held });
    }
    waiting.held = pending;
    Ok(accepted)
}

/// Why a device's offline changes were not accepted for the desk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineError {
    /// Not whole, checksummed automerge changes within the limits.
    #[error("{0}")]
    Malformed(String),
    /// A change writes where the device may not.
    #[error(transparent)]
    Forbidden(crate::authority::Violation),
    /// A change builds on changes the document does not hold.
    #[error(
        "{count} changes build on changes this server does not hold; they are not all the \
         device's unsynced changes"
    )]
    MissingDependencies { count: usize },
}

impl OfflineError {
    /// A stable name, for the HTTP error.
    pub fn code(&self) -> &'static str {
        match self {
            OfflineError::Malformed(_) => "invalid_changes",
            OfflineError::Forbidden(_) => "write_forbidden",
            OfflineError::MissingDependencies { .. } => "missing_dependencies",
        }
    }
}

/// Checks changes a device made offline and hands over outside sync (a job it was unassigned
/// from: the desk keeps them aside, see the server's `handoff`): whole chunks within the
/// inflation caps, each change building on `doc` or on another one handed over, each op
/// within what `table` lets `writer` write. Returns the changes `doc` does not hold yet, in
/// dependency order.
pub fn check_offline_changes(
    doc: &Automerge,
    bytes: &[u8],
    limits: &crate::protocol::SyncLimits,
    table: &'static WriteTable,
    writer: Writer,
) -> Result<Vec<Change>, OfflineError> {
    let checked = crate::protocol::check_chunk_sequence(bytes, limits)
        .map_err(|e| OfflineError::Malformed(e.to_string()))?;
    let inflated = checked.inflated.into_iter().next().map(|(_, bytes)| bytes);
    let entry = inflated.as_deref().unwrap_or(bytes);
    let incoming = decode_changes(doc, std::iter::once(entry))
        .map_err(|e| OfflineError::Malformed(e.to_string()))?;
    let count = incoming.len();
    let mut waiting = Waiting::default();
    match admit(doc, table, writer, incoming, &mut waiting, 0) {
        Ok(accepted) => Ok(accepted),
        Err(Refusal::Violation(v)) => Err(OfflineError::Forbidden(v)),
        Err(Refusal::TooManyWaiting { .. }) => Err(OfflineError::MissingDependencies { count }),
        Err(other) => Err(OfflineError::Malformed(other.to_string())),
    }
}

/// The changes the held ones still wait for and nobody has sent: what to ask the peer for.
pub(super) fn wanted(doc: &Automerge, waiting: &Waiting) -> Vec<ChangeHash> {
    let held: HashSet<ChangeHash> = waiting.held.iter().map(Change::hash).collect();
    let mut want: Vec<ChangeHash> = waiting
        .held
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .filter(|d| !held.contains(d) && !holds(doc, d))
        .collect();
    want.sort();
    want.dedup();
    want
}

#[cfg(test)]
mod tests {
    use automerge::AutoCommit;
    use automerge::transaction::Transactable;

    use super::*;
    use crate::authority::JOB;
    use crate::job::doc::JobDoc;
    use crate::job::fixtures::{actor, new_job};

    /// The server's job, and a device's replica that made `n` edits of the fault cause, one
    /// change each.
    fn edits(n: usize) -> (Automerge, Vec<Change>) {
        let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
        let mut device = server.fork();
        device.set_actor(actor(1));
        let before = device.heads();
        for i in 0..n {
            device
                .set_fault_cause(Some(&format!("cause {i}")))
                .expect("edit");
        }
        let changes = device.inner_mut().get_changes(&before);
        assert_eq!(changes.len(), n);
        (server.inner_mut().document().clone(), changes)
    }

    #[test]
    fn a_change_whose_dependency_is_missing_is_held_until_it_arrives() {
        let (doc, changes) = edits(3);
        let mut waiting = Waiting::default();
        // The second and third arrive first (the first was lost to a bloom filter's false
        // positive): nothing is applied, and the first is what to ask for.
        let admitted = admit(
            &doc,
            &JOB,
            Writer::Device,
            changes[1..].to_vec(),
            &mut waiting,
            10,
        );
        assert_eq!(admitted.map(|a| a.len()), Ok(0));
        assert_eq!(waiting.held.len(), 2);
        assert_eq!(wanted(&doc, &waiting), vec![changes[0].hash()]);
        // The first arrives: all three, in order.
        let admitted = admit(
            &doc,
            &JOB,
            Writer::Device,
            vec![changes[0].clone()],
            &mut waiting,
            10,
        )
        .expect("admitted");
        let order: Vec<ChangeHash> = admitted.iter().map(Change::hash).collect();
        let expected: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
        assert_eq!(order, expected);
        assert!(waiting.held.is_empty());
    }

    #[test]
    fn a_change_built_on_a_refused_one_is_refused_and_never_asked_for() {
        let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
        let mut device = server.fork();
        device.set_actor(actor(1));
        let before = device.heads();
        device
            .inner_mut()
            .put(automerge::ROOT, "bonus", 1)
            .expect("put");
        device.inner_mut().commit();
        device.set_fault_cause(Some("relay")).expect("edit");
        let changes = device.inner_mut().get_changes(&before);
        let doc = server.inner_mut().document().clone();
        let mut waiting = Waiting::default();
        let first = admit(
            &doc,
            &JOB,
            Writer::Device,
            vec![changes[0].clone()],
            &mut waiting,
            10,
        );
        assert!(matches!(first, Err(Refusal::Violation(_))), "{first:?}");
        let second = admit(
            &doc,
            &JOB,
            Writer::Device,
            vec![changes[1].clone()],
            &mut waiting,
            10,
        );
        assert_eq!(
            second,
            Err(Refusal::DependsOnRefused {
                change: changes[1].hash()
            })
        );
        assert!(wanted(&doc, &waiting).is_empty());
    }

    #[test]
    fn too_many_waiting_changes_are_refused() {
        let (doc, changes) = edits(4);
        let mut waiting = Waiting::default();
        let result = admit(
            &doc,
            &JOB,
            Writer::Device,
            changes[1..].to_vec(),
            &mut waiting,
            2,
        );
        assert_eq!(result, Err(Refusal::TooManyWaiting { limit: 2 }));
    }

    #[test]
    fn documents_and_concatenated_chunks_decode_to_the_changes_the_document_lacks() {
        let (doc, changes) = edits(2);
        let mut replica = AutoCommit::load(&doc.save()).expect("load");
        for change in &changes {
            replica.apply_changes([change.clone()]).expect("apply");
        }
        // A whole document: only the two new changes.
        let saved = replica.save();
        let decoded = decode_changes(&doc, [saved.as_slice()].into_iter()).expect("decodes");
        assert_eq!(decoded.len(), 2);
        // Two change chunks in one entry.
        let joined = [changes[0].raw_bytes(), changes[1].raw_bytes()].concat();
        let decoded = decode_changes(&doc, [joined.as_slice()].into_iter()).expect("decodes");
        assert_eq!(decoded.len(), 2);
        // A chunk with a valid header and garbage inside.
        let mut garbage = changes[0].raw_bytes().to_vec();
        let last = garbage.len() - 1;
        garbage[last] ^= 0xff;
        assert!(matches!(
            decode_changes(&doc, [garbage.as_slice()].into_iter()),
            Err(Refusal::Malformed(_))
        ));
    }
}
