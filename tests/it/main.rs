//! One integration test binary; a module per area.

mod protocol;
mod registry;
mod sync;
