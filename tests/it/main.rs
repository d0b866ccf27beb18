//! One integration test binary; a module per area.

mod durability;
mod sync;
