//! The I/O-free core of fieldsync.
//!
//! Every tier (technician device, branch edge server, head office) links this crate. It holds
//! the job document schema and its typed access, the business rules of `../shared/DOMAIN.md`,
//! the canonical report form (RFC 8785), the ed25519 signatures of the trust chain, and the
//! sans-IO core of the sync engine (protocol codec and sessions). It does no I/O of its own
//! apart from reading and writing key files on request: no async runtime, no database, no
//! network (see ARCHITECTURE.md).

pub mod authority;
pub mod canonical;
pub mod complaint_doc;
pub mod desk;
#[cfg(test)]
mod fuzz_seeds;
pub mod ids;
pub mod job;
pub mod keys;
pub mod protocol;
pub mod report;
pub mod report_doc;
pub mod rules;
pub mod stats;
pub mod stored;
pub mod sync;
pub mod time;
