//! The fieldsync server: the branch edge server and head office.
//!
//! `main.rs` only parses the command line; everything a test needs to start a real server on
//! port 0 lives here (`app::Server::open`, `app::serve`). The layout follows the roles:
//! `sync` (the node, hub and `/sync` endpoint every server has), `edge` (the desk, the signer,
//! the link to head office), `head_office` (receiver, archives, statistics), `http` (errors
//! and helpers every API uses); `app` composes them and nothing imports it back.

pub mod accounts;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod data_dir;
pub mod demo;
pub mod edge;
pub mod head_office;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod sync;
pub mod tls;
pub mod trust;
