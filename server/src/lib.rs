//! The fieldsync server: the branch edge server and head office.
//!
//! `main.rs` only parses the command line; everything a test needs to start a real server on
//! port 0 lives here (`app::run`).

pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod complaint_archive;
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod desk;
pub mod error;
pub mod handoff;
pub mod head_office;
pub mod hub;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod report_pdf;
pub mod reports;
pub mod tls;
pub mod trust;
pub mod upstream;
pub mod ws;
