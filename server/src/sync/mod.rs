//! The sync endpoint and everything under it, whatever the role: the node's state
//! ([`node::Node`]: keys, store, records, hub), the hub thread that runs the sans-IO engine
//! ([`hub`]), the records that are its access policy ([`registry`]) and the `/sync` WebSocket
//! endpoint ([`endpoint`]).

pub mod endpoint;
pub mod hub;
pub mod node;
pub mod registry;
