//! The service desk API (issue #6): intake and clocks (R1, R2), dispatch (R3, R16), repeat
//! repairs (R4), approvals (R12, R18, R31), follow-up calls (R14), complaints (R20–R23), parts requisitions (R17) and
//! the special-tool register (R19), next to the job endpoints of `edge::jobs`. [`follow`] keeps
//! the desk's records up to what the technicians' devices record in the jobs (R2, R4).
//!
//! Every handler carries a `#[utoipa::path]` and is mounted through `utoipa_axum` (`edge::api`), so the
//! router and the OpenAPI document served at `/api/openapi.json` are built from the same
//! list: a route cannot exist without being documented. Bodies are read as bytes and parsed
//! here, so a bad body is a 400 with a stable code (`invalid_body`, `invalid_field`), never
//! axum's plain-text rejection. Records that are not automerge documents are versioned
//! records of `fieldsync-storage` ([`records`]); each write is a compare-and-set, so a
//! concurrent change is a 409 `conflict` and never a lost update.

pub mod approvals;
pub mod categories;
pub mod complaints;
pub mod customers;
pub mod dispatch;
pub mod follow;
pub mod intake;
pub mod products;
pub mod records;
pub mod stock;
