//! One integration test binary; a module per area.

mod reports;
mod sync;
