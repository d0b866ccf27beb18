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
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::{self, SyncDoc};
use automerge::{
    Automerge, Change, ChangeHash, LoadOptions, OnPartialLoad, ReadDoc, VerificationMode,
};

use super::access::{Access, WriteScope};
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
            // automerge 0.12 can panic loading a damaged document chunk (found by the admit
            // fuzzer): contained here, the chunk is refused as unreadable.
            let decoded = catch_unwind(AssertUnwindSafe(|| decode_chunk(doc, chunk)))
                .unwrap_or_else(|_| {
                    Err(Refusal::Malformed(
                        "automerge cannot read a chunk of the changes".to_owned(),
                    ))
                })?;
            out.extend(decoded);
        }
    }
    Ok(out)
}

/// The changes in one chunk that `doc` does not hold.
fn decode_chunk(doc: &Automerge, chunk: &[u8]) -> Result<Vec<Change>, Refusal> {
    match chunk.get(8) {
        Some(0) => {
            let options = LoadOptions::new()
                .on_partial_load(OnPartialLoad::Error)
                .verification_mode(VerificationMode::Check);
            let loaded = Automerge::load_with_options(chunk, options)
                .map_err(|e| Refusal::Malformed(e.to_string()))?;
            Ok(doc.get_changes_added(&loaded))
        }
        _ => {
            let change = Change::try_from(chunk).map_err(|e| Refusal::Malformed(e.to_string()))?;
            Ok(if holds(doc, &change.hash()) {
                Vec::new()
            } else {
                vec![change]
            })
        }
    }
}

/// Checks one change against the table. automerge 0.12 parses a change whose ops name an
/// actor its header does not list, then panics expanding it (`Change::decode`, which the
/// check needs; found by the `admit` fuzzer): such a change is unreadable, and refused as
/// malformed rather than left to panic (a 500 for a device's hand-over, a closed connection
/// in sync).
fn check(checker: &mut Checker<'_>, change: &Change) -> Result<(), Refusal> {
    match catch_unwind(AssertUnwindSafe(|| checker.check(change))) {
        Ok(result) => result.map_err(Refusal::Violation),
        Err(_) => Err(Refusal::Malformed(format!(
            "change {} cannot be expanded into operations",
            change.hash()
        ))),
    }
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
            if let Err(refusal) = check(&mut checker, &change) {
                return refuse(waiting, refusal);
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

/// What became of a message's changes at the gate.
pub(super) enum Gated {
    /// Give automerge the message as it came (unrestricted, or nothing new in it).
    AsIs,
    /// The message now carries just the changes to apply, in order; these are their hashes.
    Rewritten(Vec<ChangeHash>),
    /// The message was applied to a copy of the document (automerge 0.12 clones one in
    /// microseconds) and what it added passed the checks: the engine adopts the copy and the
    /// sync state instead of applying the message again.
    Applied {
        doc: Box<Automerge>,
        state: sync::State,
        carried: Vec<ChangeHash>,
    },
}

/// Lets through what of a message's changes a session may write: everything for an
/// unrestricted one; for one its table restricts, only changes whose every op the table
/// allows, in dependency order, holding back those whose dependencies have not arrived. On a
/// refusal the message carries no changes any more, and its heads no longer name refused
/// changes (so they are never asked for).
///
/// Change chunks are parsed and checked, then handed to automerge. A whole document is
/// applied to a copy whose gain is checked ([`apply_to_copy`]); a change missing a
/// dependency goes the first way, which holds it. The engine does not advertise v2 messages
/// to restricted peers, so they send change chunks, the cheaper of the two to check.
pub(super) fn gate(
    doc: &Automerge,
    access: Access,
    scope: WriteScope,
    waiting: &mut Waiting,
    sync_state: &sync::State,
    message: &mut sync::Message,
    max_held: usize,
) -> Result<Gated, Refusal> {
    let result = match (access, scope) {
        (Access::ReadWrite, WriteScope::Any) => return Ok(Gated::AsIs),
        // Read-only: every change is refused; the table, if any, names the first path.
        (_, scope) if access != Access::ReadWrite => Err(match scope {
            WriteScope::Table(table, writer) => match decode_changes(doc, message.changes.iter()) {
                Ok(incoming) => {
                    let mut checker = Checker::new(doc, table, writer);
                    incoming
                        .iter()
                        .find_map(|c| check(&mut checker, c).err())
                        .unwrap_or(Refusal::ReadOnly)
                }
                Err(refusal) => refusal,
            },
            WriteScope::Any => Refusal::ReadOnly,
        }),
        (_, WriteScope::Table(table, writer)) => {
            let carries_document = message
                .changes
                .iter()
                .any(|entry| chunks(entry).iter().any(|c| c.get(8) == Some(&0)));
            if carries_document
                && waiting.held.is_empty()
                && let Some(fast) = apply_to_copy(doc, table, writer, waiting, sync_state, message)
            {
                return fast;
            }
            match decode_changes(doc, message.changes.iter()) {
                // Only changes the document holds: nothing to check, and automerge must see
                // the message as it came (one that carries changes is answered; one without,
                // naming our heads, may be taken as needing no answer).
                Ok(incoming) if incoming.is_empty() => return Ok(Gated::AsIs),
                Ok(incoming) => admit(doc, table, writer, incoming, waiting, max_held),
                Err(refusal) => Err(refusal),
            }
        }
        (_, WriteScope::Any) => return Ok(Gated::AsIs),
    };
    match result {
        Ok(accepted) => {
            let hashes = accepted.iter().map(Change::hash).collect();
            let entries: Vec<Vec<u8>> = accepted.iter().map(|c| c.raw_bytes().to_vec()).collect();
            message.changes = sync::ChunkList::from(entries);
            Ok(Gated::Rewritten(hashes))
        }
        Err(refusal) => Err(strip(message, waiting, sync_state, refusal)),
    }
}

/// The path of [`gate`] for a message that carries a whole document (a v2 message, or a
/// peer's first message to a server it knew nothing of): decoding the document into changes
/// costs as much as automerge's own work, so the message is applied to a copy (automerge 0.12
/// clones a document in microseconds) and what the copy gained is checked. `None` when it
/// cannot decide (automerge failed on the copy, or
/// queued a change for a missing dependency); the slow path then takes the message.
fn apply_to_copy(
    doc: &Automerge,
    table: &'static WriteTable,
    writer: Writer,
    waiting: &mut Waiting,
    sync_state: &sync::State,
    message: &mut sync::Message,
) -> Option<Result<Gated, Refusal>> {
    let before = doc.get_heads();
    let mut copy = doc.clone();
    let mut state = sync_state.clone();
    copy.receive_sync_message(&mut state, message.clone())
        .ok()?;
    // A queued change would be applied later, unchecked, when its dependency arrives.
    if !copy.get_missing_deps(&[]).is_empty() {
        return None;
    }
    let added = causal_order(copy.get_changes(&before));
    let hashes: Vec<ChangeHash> = added.iter().map(Change::hash).collect();
    let mut checker = Checker::new(doc, table, writer);
    let verdict = added.iter().try_for_each(|change| {
        if change.deps().iter().any(|d| waiting.refused.contains(d)) {
            return Err(Refusal::DependsOnRefused {
                change: change.hash(),
            });
        }
        check(&mut checker, change)
    });
    Some(match verdict {
        Ok(()) => Ok(Gated::Applied {
            doc: Box::new(copy),
            state,
            carried: hashes,
        }),
        Err(refusal) => {
            waiting.refused.extend(hashes);
            Err(strip(message, waiting, sync_state, refusal))
        }
    })
}

/// Changes in an order where each comes after the ones of the set it depends on.
fn causal_order(changes: Vec<Change>) -> Vec<Change> {
    let mut pending = changes;
    let mut placed: HashSet<ChangeHash> = HashSet::new();
    let all: HashSet<ChangeHash> = pending.iter().map(Change::hash).collect();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for change in pending {
            let ready = change
                .deps()
                .iter()
                .all(|d| !all.contains(d) || placed.contains(d));
            if ready {
                placed.insert(change.hash());
                out.push(change);
            } else {
                rest.push(change);
            }
        }
        if rest.len() == before {
            // A cycle cannot happen (hashes); keep whatever is left rather than loop.
            out.extend(rest);
            break;
        }
        pending = rest;
    }
    out
}

/// A refused message keeps none of its changes, and its heads no longer name refused
/// changes: the peer is answered, and never asked for them.
fn strip(
    message: &mut sync::Message,
    waiting: &Waiting,
    sync_state: &sync::State,
    refusal: Refusal,
) -> Refusal {
    message.changes = sync::ChunkList::empty();
    let refused = &waiting.refused;
    if message.heads.iter().any(|h| refused.contains(h)) {
        message.heads.retain(|h| !refused.contains(h));
        if message.heads.is_empty() {
            // Heads that name nothing we hold: the ones we share stand in, or the peer
            // would look as if it had lost everything and be sent it all.
            message.heads.clone_from(&sync_state.shared_heads);
        }
    }
    refusal
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

    /// The sync message a device with `edits` of its own sends a server that advertised v2
    /// messages: a whole document, when the edits are over a third of its history.
    fn v2_message(server: &Automerge, device: &Automerge) -> sync::Message {
        let (mut ours, mut theirs) = (sync::State::new(), sync::State::new());
        let hello = server.generate_sync_message(&mut ours).expect("a message");
        let mut device = device.clone();
        device
            .receive_sync_message(&mut theirs, hello)
            .expect("received");
        device
            .generate_sync_message(&mut theirs)
            .expect("a message")
    }

    fn device_with(edit: impl FnOnce(&mut JobDoc)) -> (Automerge, Automerge) {
        let mut server = JobDoc::create_with_actor(&new_job(), actor(0)).expect("create");
        let mut device = server.fork();
        device.set_actor(actor(1));
        edit(&mut device);
        (
            server.inner_mut().document().clone(),
            device.inner_mut().document().clone(),
        )
    }

    #[test]
    fn a_whole_document_is_applied_to_a_copy_and_adopted_only_if_its_changes_pass() {
        let (server, device) = device_with(|d| {
            for i in 0..10 {
                d.set_fault_cause(Some(&format!("cause {i}")))
                    .expect("edit");
            }
        });
        let mut message = v2_message(&server, &device);
        assert_eq!(
            message.changes.iter().next().and_then(|c| c.get(8)),
            Some(&0)
        );
        let gated = gate(
            &server,
            Access::ReadWrite,
            WriteScope::Table(&JOB, Writer::Device),
            &mut Waiting::default(),
            &sync::State::new(),
            &mut message,
            10,
        );
        let Ok(Gated::Applied { doc, carried, .. }) = gated else {
            panic!("not applied");
        };
        assert_eq!(carried.len(), 10);
        assert_eq!(doc.get_heads(), device.get_heads());

        let (server, device) = device_with(|d| {
            for i in 0..10 {
                d.set_fault_cause(Some(&format!("cause {i}")))
                    .expect("edit");
            }
            d.inner_mut().put(automerge::ROOT, "bonus", 1).expect("put");
        });
        let mut message = v2_message(&server, &device);
        let mut waiting = Waiting::default();
        let gated = gate(
            &server,
            Access::ReadWrite,
            WriteScope::Table(&JOB, Writer::Device),
            &mut waiting,
            &sync::State::new(),
            &mut message,
            10,
        );
        let Err(Refusal::Violation(v)) = gated else {
            panic!("not refused");
        };
        assert_eq!(v.path, "bonus");
        assert!(message.changes.is_empty(), "nothing of it is left to apply");
        assert_eq!(
            waiting.refused.len(),
            11,
            "its changes are remembered as refused"
        );
    }
}
