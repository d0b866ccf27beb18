//! The sync endpoint and everything under it, whatever the role: the node's state
//! ([`node::Node`]: keys, store, records, hub), the hub thread that runs the sans-IO engine
//! ([`hub`]), the records that are its access policy ([`registry`]) and the `/sync` WebSocket
//! endpoint ([`endpoint`]); how far a worker has taken in the stored documents ([`progress`]).

pub mod endpoint;
pub mod hub;
pub mod node;
pub mod progress;
pub mod registry;
