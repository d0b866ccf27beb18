//! One integration test binary; a module per area.

mod access;
mod auth;
mod durability;
mod reports;
mod sync;
