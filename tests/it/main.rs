//! One integration test binary; a module per area.

mod js_interop;
mod protocol;
mod registry;
mod sync;
