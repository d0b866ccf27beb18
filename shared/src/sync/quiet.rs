//! Receiving a sync message that carries no changes, without walking the history (issue 17).
//!
//! A reconnect with nothing new is one such message per document each way. automerge's
//! `receive_sync_message` walks every ancestor of the peer's heads to trim the hashes it
//! has sent and not seen acknowledged, even when it has sent none: a cost that grows with
//! the document's history (2,000 changes per job made a reconnect of 200 jobs three times
//! slower than 10 did, on both the server and the device). When the message carries no
//! changes and nothing we sent is waiting for acknowledgement, that walk trims nothing, and
//! the rest of the receive is a few lookups: [`receive`] does exactly those and leaves the
//! sync state as automerge would (the property test below compares the two on random
//! exchanges). Every other message goes to automerge.

use automerge::sync::{self, Capability, MessageFlags, SyncDoc};
use automerge::{Automerge, AutomergeError, ChangeHash, ReadDoc};

/// `doc.receive_sync_message(state, message)`, without the history walk when the message
/// carries no changes and `state` has no unacknowledged sent hashes.
pub fn receive(
    doc: &mut Automerge,
    state: &mut sync::State,
    message: sync::Message,
) -> Result<(), AutomergeError> {
    match receive_without_changes(doc, state, message) {
        Ok(()) => Ok(()),
        Err(message) => doc.receive_sync_message(state, message),
    }
}

/// The quiet case of [`receive`] alone, for a document automerge's `receive_sync_message`
/// cannot be given as `&mut Automerge` (an `AutoCommit`): the message back when it carries
/// changes or `state` waits for an acknowledgement, for the caller to pass to automerge.
pub fn receive_without_changes(
    doc: &Automerge,
    state: &mut sync::State,
    message: sync::Message,
) -> Result<(), sync::Message> {
    if !message.changes.is_empty() || !state.sent_hashes.is_empty() {
        return Err(message);
    }
    let Some(unknown) = unknown_heads(doc, &message.heads) else {
        return Err(message);
    };
    let sync::Message {
        heads,
        need,
        have,
        flags,
        ..
    } = message;
    state.in_flight = false;
    if let Some(flags) = flags {
        // A peer that sends flags reads v2 messages (the flags came with them).
        let mut capabilities = vec![Capability::MessageV2];
        if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
            capabilities.push(Capability::SyncReset);
        }
        state.their_capabilities = Some(capabilities);
        // A sync reset clears the sent hashes: there are none.
        state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
    }
    if heads == doc.get_heads() {
        state.last_sent_heads.clone_from(&heads);
    }
    let known: Vec<ChangeHash> = heads
        .iter()
        .copied()
        .filter(|h| !unknown.contains(h))
        .collect();
    if known.len() == heads.len() {
        state.shared_heads.clone_from(&heads);
        if heads.is_empty() {
            // The peer lost everything: start over.
            state.last_sent_heads.clear();
        }
    } else {
        let mut shared = std::mem::take(&mut state.shared_heads);
        shared.extend(known);
        shared.sort();
        shared.dedup();
        state.shared_heads = shared;
    }
    state.their_have = Some(have);
    state.their_heads = Some(heads);
    state.their_need = Some(need);
    Ok(())
}

/// The heads the document does not hold, cheaply: `None` when changes wait in automerge's
/// queue for their dependencies (then holding a hash and knowing of it differ, and only
/// automerge can tell). Not `get_change_meta_by_hash`, which rebuilds the change from the
/// document's operations: a cost that grows with the history.
pub(crate) fn unknown_heads(doc: &Automerge, heads: &[ChangeHash]) -> Option<Vec<ChangeHash>> {
    // A queued change always misses something, so no missing dependency means no queue.
    if !doc.get_missing_deps(&[]).is_empty() {
        return None;
    }
    Some(doc.get_missing_deps(heads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};
    use proptest::prelude::*;

    /// Two documents sharing a base, each with its own edits on top.
    fn pair(base: usize, left: usize, right: usize) -> (Automerge, Automerge) {
        let mut a = Automerge::new().with_actor(ActorId::from(&[1u8][..]));
        for i in 0..base {
            let mut tx = a.transaction();
            tx.put(ROOT, "n", i as i64).expect("put");
            tx.commit();
        }
        let mut b = a.fork().with_actor(ActorId::from(&[2u8][..]));
        for (doc, edits, key) in [(&mut a, left, "l"), (&mut b, right, "r")] {
            for i in 0..edits {
                let mut tx = doc.transaction();
                tx.put(ROOT, key, i as i64).expect("put");
                tx.commit();
            }
        }
        (a, b)
    }

    /// The state and document after automerge's own receive, and after ours.
    fn both(
        doc: &Automerge,
        state: &sync::State,
        message: &sync::Message,
    ) -> (
        (sync::State, Vec<ChangeHash>),
        (sync::State, Vec<ChangeHash>),
    ) {
        let (mut theirs, mut their_state) = (doc.clone(), state.clone());
        theirs
            .receive_sync_message(&mut their_state, message.clone())
            .expect("automerge receives");
        let (mut ours, mut our_state) = (doc.clone(), state.clone());
        receive(&mut ours, &mut our_state, message.clone()).expect("we receive");
        (
            (their_state, theirs.get_heads()),
            (our_state, ours.get_heads()),
        )
    }

    proptest! {
        /// Every message of a real exchange (and a reconnect after it, with a persisted
        /// state) leaves the same state and document as automerge's receive.
        #[test]
        fn receive_matches_automerge_on_real_exchanges(
            base in 0usize..40,
            left in 0usize..6,
            right in 0usize..6,
            persisted in any::<bool>(),
            read_only in any::<bool>(),
        ) {
            let (mut a, mut b) = pair(base, left, right);
            let mut sa = sync::State::new();
            let mut sb = if read_only { sync::State::new_read_only() } else { sync::State::new() };
            let mut checked = 0;
            for round in 0..12 {
                if round == 6 && persisted {
                    // A reconnect: only the shared heads persist.
                    sa = sync::State::decode(&sa.encode()).expect("decode");
                    sb = sync::State::decode(&sb.encode()).expect("decode");
                    if read_only { sb.set_read_only(true); }
                }
                let mut quiet = true;
                if let Some(m) = a.generate_sync_message(&mut sa) {
                    quiet = false;
                    let (expected, got) = both(&b, &sb, &m);
                    prop_assert_eq!(&expected, &got);
                    receive(&mut b, &mut sb, m).expect("receive");
                    checked += 1;
                }
                if let Some(m) = b.generate_sync_message(&mut sb) {
                    quiet = false;
                    let (expected, got) = both(&a, &sa, &m);
                    prop_assert_eq!(&expected, &got);
                    receive(&mut a, &mut sa, m).expect("receive");
                    checked += 1;
                }
                if quiet && round > 6 { break; }
            }
            prop_assert!(checked > 0);
            if !read_only {
                prop_assert_eq!(a.get_heads(), b.get_heads());
            }
        }

        /// Messages naming heads we do not have, lost data (no heads) and flags.
        #[test]
        fn receive_matches_automerge_on_unknown_heads_and_flags(
            base in 1usize..20,
            extra in 1usize..4,
            flag_bits in 0u8..8,
            empty_heads in any::<bool>(),
        ) {
            let (a, b) = pair(base, 0, extra);
            let mut state = sync::State::new();
            let hello = a.clone().generate_sync_message(&mut sync::State::new()).expect("hello");
            let mut state_b = sync::State::new();
            let mut b2 = b.clone();
            b2.receive_sync_message(&mut state_b, hello).expect("receive");
            let mut message = b2.generate_sync_message(&mut state_b).expect("answer");
            message.changes = sync::ChunkList::from(Vec::<Vec<u8>>::new());
            if empty_heads {
                message.heads.clear();
            }
            let mut flags = MessageFlags::new();
            flags.set(flag_bits);
            message.flags = Some(flags);
            state.shared_heads = a.get_heads();
            let (expected, got) = both(&a, &state, &message);
            prop_assert_eq!(expected, got);
        }
    }

    /// A change waiting in automerge's queue for its dependency: which heads the document
    /// holds is then automerge's to say (`unknown_heads` declines), and the receive is
    /// automerge's own.
    #[test]
    fn with_a_queued_change_the_receive_is_automerge_s() {
        let (a, b) = pair(2, 0, 2);
        let mut behind = a.clone();
        // b's last change alone: its dependency (b's first) is missing, so it is queued.
        let last = b.get_last_local_change().expect("a change");
        behind.apply_changes([last.clone()]).expect("queued");
        assert!(
            !behind.get_missing_deps(&[]).is_empty(),
            "the change is queued"
        );
        assert_eq!(unknown_heads(&behind, &b.get_heads()), None);
        let message = b
            .clone()
            .generate_sync_message(&mut sync::State::new())
            .expect("hello");
        let mut quiet = message.clone();
        quiet.changes = sync::ChunkList::from(Vec::<Vec<u8>>::new());
        let mut state = sync::State::new();
        assert!(receive_without_changes(&behind, &mut state, quiet.clone()).is_err());
        assert_eq!(
            state,
            sync::State::new(),
            "declined before touching the state"
        );
        let (expected, got) = both(&behind, &sync::State::new(), &quiet);
        assert_eq!(expected, got);
    }

    #[test]
    fn a_message_with_changes_goes_to_automerge() {
        let (a, mut b) = pair(3, 2, 0);
        let mut sa = sync::State::new();
        let mut sb = sync::State::new();
        for _ in 0..6 {
            if let Some(m) = a.generate_sync_message(&mut sa) {
                receive(&mut b, &mut sb, m).expect("receive");
            }
            if let Some(m) = b.generate_sync_message(&mut sb) {
                let mut a2 = a.clone();
                receive(&mut a2, &mut sa, m).expect("receive");
            }
        }
        assert_eq!(a.get_heads(), b.get_heads());
    }
}
