//! One integration test binary; a module per area.

mod access;
mod auth;
mod authority;
mod bad_input;
mod bench_smoke;
mod client_sdk;
mod compaction;
mod crash_loop;
mod demo;
mod desk;
mod durability;
mod head_office;
mod head_office_complaints;
mod js_interop;
mod operations;
mod protocol;
mod readme_setup;
mod registry;
mod report_format;
mod report_print;
mod reports;
mod samod_interop;
mod stranded;
mod sync;
mod tls;
mod verdicts;
