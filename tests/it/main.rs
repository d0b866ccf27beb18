//! One integration test binary; a module per area.

mod client_sdk;
mod sync;
