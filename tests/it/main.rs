//! One integration test binary; a module per area.

mod registry;
mod sync;
