//! Jobs (work orders): the typed model, its automerge document form, and conflicts.

pub mod approvals;
pub mod attachments;
pub mod doc;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod index;
pub mod model;
pub mod price_list;

pub use model::*;
