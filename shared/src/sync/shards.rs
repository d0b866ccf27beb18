//! Hub shards (issue 17): the server's engine split by document across several engines, so
//! the work of a reconnect storm spreads over every core.
//!
//! Each shard is a whole [`Engine`] that owns the documents whose id hashes to it
//! ([`shard_of`]) and every session on them; every shard knows every connection. The
//! [`Router`] says where each input goes:
//! - what concerns one document (a sync message, `doc-unavailable`, an ephemeral message, a
//!   load, an edit, a subscription) goes to that document's shard only, and that shard alone
//!   answers it;
//! - a write's completion goes back to the shard that issued it (its [`WriteId`] is numbered
//!   `index, index + count, …`);
//! - what concerns a connection (it opened, closed, was kicked; the handshake, `leave`,
//!   `error`) goes to every shard, in order with the connection's other messages, and only
//!   the home shard (0) answers, counts or refuses it: the peer hears once;
//! - a frame that does not decode goes to the home shard, which refuses it as one engine
//!   would.
//!
//! So each document's invariants are those of one engine (the durability barrier, access,
//! the write check: they never look past the document), and a connection's handshake is
//! seen by every shard before any message routed after it. A shard that closes a connection
//! closes the socket; the others hear `Disconnected` when the connection's task ends (the
//! server's hub), or at once ([`Shards`], which runs the shards on one thread for the
//! simulator and tests).
//!
//! The hub runs one shard per thread (`server::sync::hub`); with one shard the router passes
//! every input through untouched and the engine behaves as before shards.

use automerge::Automerge;

use super::access::AccessPolicy;
use super::engine::{ConnId, Effect, Engine, EngineConfig, EngineStats, Input, Shard};
use crate::ids::DocumentId;
use crate::protocol::{self, Message};

/// The shard that owns `doc`, of `count`: FNV-1a over the id's bytes, the same on every
/// platform and in every build (ids are random, so they spread evenly).
pub fn shard_of(doc: &DocumentId, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in doc.as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
    }
    (hash % count as u64) as usize
}

/// Each shard's share of a limit on the whole node (`max_loaded_documents`,
/// `max_document_memory`): an even split, at least one.
pub fn share_of(total: usize, count: usize) -> usize {
    (total / count.max(1)).max(1)
}

/// The engine configuration of shard `index` of `count`, from the node's.
pub fn shard_config(config: &EngineConfig, index: usize, count: usize) -> EngineConfig {
    let mut config = config.clone();
    config.shard = Shard { index, count };
    config.max_loaded_documents = if count > 1 {
        share_of(config.max_loaded_documents, count)
    } else {
        config.max_loaded_documents
    };
    config.max_document_memory = config
        .max_document_memory
        .map(|budget| share_of(budget, count));
    config
}

/// Where each input goes (see the module docs).
#[derive(Debug, Clone)]
pub struct Router {
    count: usize,
    limits: protocol::Limits,
}

impl Router {
    /// A router over `count` shards (at least one), decoding frames with the engine's wire
    /// limits.
    pub fn new(count: usize, limits: protocol::Limits) -> Self {
        Self {
            count: count.max(1),
            limits,
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard that owns `doc`.
    pub fn shard_of(&self, doc: &DocumentId) -> usize {
        shard_of(doc, self.count)
    }

    /// The inputs each shard gets for `input`, in shard order. With one shard, `input`
    /// itself. A frame is decoded here (in the caller's thread, with the engine's limits) to
    /// find its document, and handed on decoded.
    pub fn route(&self, input: Input) -> Vec<(usize, Input)> {
        if self.count == 1 {
            return vec![(0, input)];
        }
        match input {
            Input::Frame { conn, bytes } => match protocol::decode(&bytes, &self.limits) {
                Ok(message) => self.route_message(conn, message, bytes.len()),
                // The home shard decodes it again and refuses it as one engine would.
                Err(_) => vec![(0, Input::Frame { conn, bytes })],
            },
            Input::Message {
                conn,
                message,
                size,
            } => self.route_message(conn, message, size),
            Input::DocLoaded { doc, chunks } => {
                vec![(self.shard_of(&doc), Input::DocLoaded { doc, chunks })]
            }
            Input::SyncStateLoaded {
                doc,
                storage_id,
                state,
            } => vec![(
                self.shard_of(&doc),
                Input::SyncStateLoaded {
                    doc,
                    storage_id,
                    state,
                },
            )],
            Input::WriteDone { id, result } => {
                vec![(
                    (id.0 % self.count as u64) as usize,
                    Input::WriteDone { id, result },
                )]
            }
            Input::Edit { doc, edit, token } => {
                vec![(self.shard_of(&doc), Input::Edit { doc, edit, token })]
            }
            Input::Subscribe { doc } => vec![(self.shard_of(&doc), Input::Subscribe { doc })],
            Input::Unsubscribe { doc } => {
                vec![(self.shard_of(&doc), Input::Unsubscribe { doc })]
            }
            Input::AccessChanged {
                doc: Some(doc),
                principal: None,
            } => vec![(
                self.shard_of(&doc),
                Input::AccessChanged {
                    doc: Some(doc),
                    principal: None,
                },
            )],
            Input::AccessChanged { doc, principal } => self.every(|| Input::AccessChanged {
                doc,
                principal: principal.clone(),
            }),
            Input::Connected { conn, principal } => self.every(|| Input::Connected {
                conn,
                principal: principal.clone(),
            }),
            Input::Dialed { conn, principal } => self.every(|| Input::Dialed {
                conn,
                principal: principal.clone(),
            }),
            Input::Disconnected { conn } => self.every(|| Input::Disconnected { conn }),
            Input::Kick { principal, reason } => self.every(|| Input::Kick {
                principal: principal.clone(),
                reason: reason.clone(),
            }),
            Input::Tick => self.every(|| Input::Tick),
        }
    }

    fn route_message(&self, conn: ConnId, message: Message, size: usize) -> Vec<(usize, Input)> {
        match message.document_id() {
            Some(doc) => vec![(
                self.shard_of(&doc),
                Input::Message {
                    conn,
                    message,
                    size,
                },
            )],
            None => self.every(|| Input::Message {
                conn,
                message: message.clone(),
                size,
            }),
        }
    }

    fn every(&self, mut make: impl FnMut() -> Input) -> Vec<(usize, Input)> {
        (0..self.count).map(|shard| (shard, make())).collect()
    }
}

/// The shards of one node run on one thread, one input at a time: the arrangement the hub
/// runs on threads, for the simulator and tests. A connection a shard closes is
/// disconnected from the others at once, as the end of its task does in the hub.
pub struct Shards {
    router: Router,
    engines: Vec<Engine>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("count", &self.engines.len())
            .finish()
    }
}

impl Shards {
    /// `count` shards (at least one) of a node configured as `config`.
    pub fn new(config: &EngineConfig, count: usize) -> Self {
        let count = count.max(1);
        Self {
            router: Router::new(count, config.wire_limits.clone()),
            engines: (0..count)
                .map(|index| Engine::new(shard_config(config, index, count)))
                .collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.engines.len()
    }

    /// Handles one input on the shards it goes to; the effects of all of them.
    pub fn handle(&mut self, input: Input, now: i64, access: &dyn AccessPolicy) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut closed = Vec::new();
        for (shard, input) in self.router.route(input) {
            let effects = self.engines[shard].handle(input, now, access);
            for effect in &effects {
                if let Effect::Close { conn, .. } = effect {
                    closed.push((shard, *conn));
                }
            }
            out.extend(effects);
        }
        for (closer, conn) in closed {
            for shard in (0..self.engines.len()).filter(|s| *s != closer) {
                let effects = self.engines[shard].handle(Input::Disconnected { conn }, now, access);
                out.extend(effects);
            }
        }
        out
    }

    /// Documents held in memory, over every shard.
    pub fn loaded_documents(&self) -> usize {
        self.engines.iter().map(Engine::loaded_documents).sum()
    }

    /// Of those, the ones held as their saved bytes only, over every shard.
    pub fn dormant_documents(&self) -> usize {
        self.engines.iter().map(Engine::dormant_documents).sum()
    }

    /// What the documents held take, as `max_document_memory` counts it, over every shard.
    pub fn document_memory(&self) -> usize {
        self.engines.iter().map(Engine::document_memory).sum()
    }

    /// The shards' engines, for the simulator's checks of each one's counts.
    #[cfg(test)]
    pub(crate) fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// Connections known (every shard knows every connection): the most any shard knows.
    pub fn connections(&self) -> usize {
        self.engines
            .iter()
            .map(Engine::connections)
            .max()
            .unwrap_or(0)
    }

    /// A loaded, ready document, from the shard that owns it.
    pub fn document(&self, doc: &DocumentId) -> Option<&Automerge> {
        self.engines[self.router.shard_of(doc)].document(doc)
    }

    /// The counters of every shard, added up.
    pub fn stats(&self) -> EngineStats {
        let mut total = EngineStats::default();
        for engine in &self.engines {
            let s = engine.stats();
            total.frames_in += s.frames_in;
            total.bytes_in += s.bytes_in;
            total.frames_out += s.frames_out;
            total.bytes_out += s.bytes_out;
            total.changes_applied_batches += s.changes_applied_batches;
            total.writes_issued += s.writes_issued;
            total.docs_loaded_total += s.docs_loaded_total;
            total.docs_evicted_total += s.docs_evicted_total;
            total.docs_slept_total += s.docs_slept_total;
            total.docs_woken_total += s.docs_woken_total;
            total.panics_caught += s.panics_caught;
            total.changes_held += s.changes_held;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{JoinMessage, PeerId, PeerMetadata, SyncMessage};
    use crate::sync::AllowAll;
    use crate::sync::engine::{EngineRole, LocalEdit, WriteId};

    fn limits() -> protocol::Limits {
        protocol::Limits::default()
    }

    fn docs(n: u8) -> Vec<DocumentId> {
        (0..n).map(|i| DocumentId::from_bytes([i; 16])).collect()
    }

    fn sync_bytes(doc: DocumentId) -> Vec<u8> {
        protocol::encode(&Message::Sync(SyncMessage {
            sender_id: PeerId::new("dev-1"),
            target_id: PeerId::new("server"),
            document_id: doc,
            data: vec![0x42],
        }))
    }

    fn join_bytes() -> Vec<u8> {
        protocol::encode(&Message::Join(JoinMessage {
            sender_id: PeerId::new("dev-1"),
            supported_protocol_versions: vec![protocol::PROTOCOL_VERSION.to_owned()],
            peer_metadata: PeerMetadata::default(),
        }))
    }

    fn shards_of(routed: &[(usize, Input)]) -> Vec<usize> {
        routed.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn one_shard_gets_every_input_untouched() {
        let router = Router::new(1, limits());
        let routed = router.route(Input::Frame {
            conn: ConnId(1),
            bytes: b"not cbor".to_vec(),
        });
        assert!(matches!(routed[..], [(0, Input::Frame { .. })]));
        let routed = router.route(Input::Frame {
            conn: ConnId(1),
            bytes: sync_bytes(docs(1)[0]),
        });
        assert!(
            matches!(routed[..], [(0, Input::Frame { .. })]),
            "not decoded"
        );
    }

    #[test]
    fn a_document_goes_to_its_shard_and_a_connection_to_every_shard() {
        let router = Router::new(3, limits());
        let mut owners = std::collections::BTreeSet::new();
        for doc in docs(30) {
            let shard = shard_of(&doc, 3);
            owners.insert(shard);
            let routed = router.route(Input::Frame {
                conn: ConnId(1),
                bytes: sync_bytes(doc),
            });
            assert_eq!(shards_of(&routed), vec![shard]);
            assert!(matches!(&routed[0].1, Input::Message { size, .. } if *size > 0));
            let edit = router.route(Input::Edit {
                doc,
                edit: LocalEdit::Change(Box::new(|_| Ok(()))),
                token: 1,
            });
            assert_eq!(shards_of(&edit), vec![shard]);
            let loaded = router.route(Input::DocLoaded {
                doc,
                chunks: Ok(None),
            });
            assert_eq!(shards_of(&loaded), vec![shard]);
        }
        assert_eq!(owners.len(), 3, "thirty ids spread over every shard");
        let join = router.route(Input::Frame {
            conn: ConnId(1),
            bytes: join_bytes(),
        });
        assert_eq!(shards_of(&join), vec![0, 1, 2]);
        let gone = router.route(Input::Disconnected { conn: ConnId(1) });
        assert_eq!(shards_of(&gone), vec![0, 1, 2]);
        let bad = router.route(Input::Frame {
            conn: ConnId(1),
            bytes: b"not cbor".to_vec(),
        });
        assert!(
            matches!(bad[..], [(0, Input::Frame { .. })]),
            "refused by the home shard"
        );
        for id in 0..9u64 {
            let done = router.route(Input::WriteDone {
                id: WriteId(id),
                result: Ok(()),
            });
            assert_eq!(shards_of(&done), vec![(id % 3) as usize]);
        }
    }

    #[test]
    fn a_shard_numbers_its_writes_so_they_come_back_to_it() {
        use automerge::transaction::Transactable;
        let config = EngineConfig::new(EngineRole::Server, "server");
        let mut shards = Shards::new(&config, 3);
        let router = Router::new(3, limits());
        let mut writes = 0;
        for (token, doc) in docs(12).into_iter().enumerate() {
            let mut content = Automerge::new();
            let mut tx = content.transaction();
            tx.put(automerge::ROOT, "k", 1).expect("put");
            tx.commit();
            let mut effects = shards.handle(
                Input::Edit {
                    doc,
                    edit: LocalEdit::Create(Box::new(content)),
                    token: token as u64,
                },
                0,
                &AllowAll,
            );
            assert!(matches!(effects[..], [Effect::LoadDoc { .. }]));
            effects = shards.handle(
                Input::DocLoaded {
                    doc,
                    chunks: Ok(None),
                },
                0,
                &AllowAll,
            );
            for effect in effects {
                if let Effect::Write { id, .. } = effect {
                    assert_eq!((id.0 % 3) as usize, router.shard_of(&doc));
                    writes += 1;
                    let done = shards.handle(Input::WriteDone { id, result: Ok(()) }, 0, &AllowAll);
                    assert!(
                        done.iter()
                            .any(|e| matches!(e, Effect::EditDone { result: Ok(_), .. })),
                        "the completion reached the shard that holds the edit"
                    );
                }
            }
        }
        assert_eq!(writes, 12);
        assert_eq!(shards.loaded_documents(), 12);
    }
}
