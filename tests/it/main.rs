//! One integration test binary; a module per area.

mod access;
mod auth;
mod authority;
mod bad_input;
mod bench_smoke;
mod client_sdk;
mod crash_loop;
mod demo;
mod desk;
mod durability;
mod head_office;
mod head_office_complaints;
mod head_office_scale;
mod js_interop;
mod operations;
mod protocol;
mod registry;
mod report_format;
mod reports;
mod samod_interop;
mod stranded;
mod sync;
mod tls;
