//! The sync engine's sans-IO core: sessions per (peer, document) speaking the automerge-repo
//! protocol, the durability barrier, eviction and persisted sync state.
//!
//! The engine takes [`Input`]s (a frame arrived, a load or write finished, a peer came or
//! went, the clock ticked) and returns [`Effect`]s (send, close, load, write). It owns the
//! automerge documents it has loaded and nothing else: no sockets, no files, no clock. The
//! tokio glue in `server` and `client-sdk` performs the effects and feeds the results back.
//! See ARCHITECTURE.md for the invariants it keeps.

mod access;
mod admit;
mod engine;
mod quiet;
pub mod shards;
#[cfg(test)]
mod sim;

pub use access::{Access, AccessPolicy, AllowAll, Principal, WriteScope};
pub use admit::{OfflineError, check_offline_changes};
pub use engine::{
    CloseCode, ConnId, EditFn, Effect, Engine, EngineConfig, EngineRole, EngineStats, Input,
    LocalEdit, LocalEditError, Shard, WriteId, WriteOp, edit_via_autocommit,
};
pub use quiet::{receive as receive_sync_message, receive_without_changes};
pub use shards::{Router, Shards, shard_of};
