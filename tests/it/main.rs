//! One integration test binary; a module per area.

mod access;
mod auth;
mod bad_input;
mod bench_smoke;
mod client_sdk;
mod durability;
mod js_interop;
mod protocol;
mod registry;
mod reports;
mod samod_interop;
mod sync;
