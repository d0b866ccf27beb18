//! The technician device library: a local SQLite store and sync with the branch server.
//!
//! Today it holds the connection layer that tests and tools use ([`connection`]); the typed
//! job API, reconnects and the `fieldsync-tech` CLI come with the client SDK issue.

pub mod connection;

pub use connection::{ClientEvent, ConnectError, ConnectOptions, SyncClient};
