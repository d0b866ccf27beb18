//! The audit of the desk API's other writes (issue 14): every successful write (`POST`,
//! `PUT`, `PATCH`, `DELETE` under `/api`) made with a desk token is written to the audit log
//! under the person the token names (`token:<role>` otherwise), before the answer goes out.
//! The writes whose desk function writes its own, more precise entry (with the ids before
//! and after) are in [`SELF_AUDITED`] and left to it; device and branch tokens, and calls
//! without a token (enrollment), are not the desk's and are not audited here.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Edge;
use crate::auth::{EVERYONE, Subject, unverified_claims};
use crate::console::audit::Entry;
use crate::http::token_from;

/// The action code of these entries.
pub const ACTION: &str = "api_write";

/// Routes whose handler's desk function writes its own entry (`job_create`,
/// `request_create`, `job_dispatch`, `job_reassign`, `job_cancel`, `approval_decide`,
/// `follow_up_call`, `merge_resolve`, `enrollment_code_issue`, `fault_category_add`, `fault_category_retire`,
/// `maintenance_plan_set`, `maintenance_plan_stop`; complaints: `complaint_create`,
/// `complaint_step`; parts and tools: `requisition_create`, `requisition_ship`,
/// `tool_register`, `tool_lend`, `tool_return`, `tool_lost`).
pub const SELF_AUDITED: &[(&str, &str)] = &[
    ("POST", "/api/jobs"),
    ("POST", "/api/requests"),
    ("POST", "/api/requests/{id}/job"),
    ("PUT", "/api/jobs/{id}/technicians"),
    ("POST", "/api/jobs/{id}/cancel"),
    ("POST", "/api/jobs/{id}/approvals/{approval}/decision"),
    ("POST", "/api/follow-ups/{id}/call"),
    ("POST", "/api/jobs/{id}/resolve"),
    ("POST", "/api/enrollment-codes"),
    ("POST", "/api/complaints"),
    ("POST", "/api/complaints/{id}/steps"),
    ("POST", "/api/requisitions"),
    ("POST", "/api/requisitions/{id}/shipment"),
    ("POST", "/api/tools"),
    ("POST", "/api/tools/{id}/loans"),
    ("POST", "/api/tools/{id}/return"),
    ("POST", "/api/tools/{id}/lost"),
    ("POST", "/api/fault-categories"),
    ("POST", "/api/fault-categories/{id}/retire"),
    ("PUT", "/api/products/{id}/plan"),
    ("DELETE", "/api/products/{id}/plan"),
];

/// The middleware (a route layer on the edge's `/api` router).
pub async fn audit_writes(
    State(edge): State<Arc<Edge>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let writes = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let template = matched.map(|m| m.as_str().to_owned()).unwrap_or_default();
    let own = SELF_AUDITED
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == template);
    if !writes || own {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if !response.status().is_success() {
        return response;
    }
    // Only a desk token is the desk's (devices, branches and enrollment are not audited
    // here). The handler accepted the token, so checking it again refuses nothing and
    // counts nothing; it names the person.
    let desk = token_from(&headers, None)
        .and_then(|t| unverified_claims(&t))
        .is_some_and(|c| matches!(c.subject, Subject::Desk(_)));
    if !desk {
        return response;
    }
    let Ok(actor) = edge.node.authorize_actor(&headers, EVERYONE, "write") else {
        return response;
    };
    let entry = Entry::new(
        edge.node.clock.now(),
        actor.name(),
        actor.role.as_str(),
        ACTION,
        path,
    )
    .after(response.status().as_u16().to_string())
    .detail(format!("{method} {template}"));
    match crate::console::audit_api(&edge.node, entry).await {
        Ok(()) => response,
        // The change is made; not being able to say so is ours to fix, and said.
        Err(e) => e.into_response(),
    }
}
