//! The wire protocol that every fieldsync link speaks: the automerge-repo WebSocket protocol,
//! version "1".
//!
//! Technician devices, branch servers and head office all talk this protocol, and so can an
//! unmodified JavaScript `@automerge/automerge-repo` 2.x client (see `../shared/DESIGN.md`,
//! "Three tiers, one protocol"). This module holds only the codec and the validation of peer
//! input; the sessions that use them live elsewhere in the sync engine.
//!
//! Two layers of input reach a server from a peer, and both are checked here before anything
//! else looks at them:
//!
//! - [`message`]: the CBOR envelope of every WebSocket frame (`join`, `sync`, ...). Decoding is
//!   strict and bounded, so a hostile frame costs at most a linear scan of its own bytes.
//! - [`sync_check`]: the automerge sync message carried in the `data` of a `request` or `sync`
//!   envelope. automerge 0.12 panics or allocates without bound on some malformed sync
//!   messages, so their structure is validated before automerge decodes them.

pub mod message;
pub mod sync_check;

pub use message::{
    DecodeError, Limits, Message, MessageType, PROTOCOL_VERSION, decode, encode,
    select_protocol_version,
};
pub use sync_check::{
    CheckedSync, SyncCheckError, SyncLimits, check_chunk_sequence, check_sync_message,
};
