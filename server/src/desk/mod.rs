//! The service desk API (issue #6): intake and clocks (R1, R2), dispatch (R3, R16), repeat
//! repairs (R4), approvals (R12, R18, R31), follow-up calls (R14), complaints (R20–R23), parts requisitions (R17) and
//! the special-tool register (R19), next to the job endpoints of `api`.
//!
//! Every handler carries a `#[utoipa::path]` and is mounted through `utoipa_axum`, so the
//! router and the OpenAPI document served at `/api/openapi.json` are built from the same
//! list: a route cannot exist without being documented. Bodies are read as bytes and parsed
//! here, so a bad body is a 400 with a stable code (`invalid_body`, `invalid_field`), never
//! axum's plain-text rejection. Records that are not automerge documents are versioned
//! records of `fieldsync-storage` ([`records`]); each write is a compare-and-set, so a
//! concurrent change is a 409 `conflict` and never a lost update.

pub mod approvals;
pub mod complaints;
pub mod dispatch;
pub mod intake;
pub mod records;
pub mod stock;
pub mod wire;

use std::sync::Arc;

use axum::http::HeaderMap;
use fieldsync_shared::sync::Principal;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::DeskRole;
use crate::error::ApiError;
use crate::ws::{authenticate, token_from};

/// Roles that may read everything at the desk (head office's analyst included).
pub const EVERYONE: &[DeskRole] = &[DeskRole::Dispatcher, DeskRole::Manager, DeskRole::Analyst];
/// Roles that run the branch's daily work.
pub const STAFF: &[DeskRole] = &[DeskRole::Dispatcher, DeskRole::Manager];
/// Decisions that need a manager.
pub const MANAGERS: &[DeskRole] = &[DeskRole::Manager];

fn role_named(name: &str) -> Option<DeskRole> {
    EVERYONE.iter().copied().find(|r| r.as_str() == name)
}

fn role_list(roles: &[DeskRole]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    match names.as_slice() {
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        [] => "no role".to_owned(),
    }
}

/// Checks the desk token and that its role may do `action`; a role that may not gets 403
/// saying which roles may.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    allowed: &[DeskRole],
    action: &str,
) -> Result<DeskRole, ApiError> {
    let principal = authenticate(state, token_from(headers, None)).map_err(|e| {
        state.metrics.refused(e.code());
        ApiError::unauthorized(&e)
    })?;
    let Principal::Desk { role } = principal else {
        return Err(ApiError::forbidden(
            "the desk API needs a desk token (`fieldsync desk token --role …`)",
        ));
    };
    let role = role_named(&role)
        .ok_or_else(|| ApiError::forbidden(format!("unknown desk role {role:?}")))?;
    if !allowed.contains(&role) {
        return Err(ApiError::forbidden(format!(
            "role {} may not {action}: that needs {}",
            role.as_str(),
            role_list(allowed)
        )));
    }
    Ok(role)
}

/// Parses a JSON body; every failure (not JSON, a missing field, a wrong type, an unknown
/// field) is a 400 `invalid_body` naming what was wrong.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))
}

/// A required free-text field: present is not enough, it must say something.
pub fn nonempty(name: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        Err(ApiError::bad_request(
            "invalid_field",
            format!("{name}: must not be empty"),
        ))
    } else {
        Ok(())
    }
}

/// A fresh record id with a readable prefix, e.g. `req-3f9c0a1b2c3d4e5f`.
pub fn new_id(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("random_error", e))?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldsync service desk API",
        description = "The branch edge server's desk API (issue #6). Authenticate with \
            `Authorization: Bearer <token>` from `fieldsync desk token --role \
            dispatcher|manager|analyst` (`/api/me` takes a device token). Errors are JSON \
            `{\"code\", \"message\"}` with a stable code; a role that may not do something \
            gets 403 `forbidden` saying which roles may. Rule ids (R1…) refer to the \
            product's DOMAIN.md.",
    ),
    modifiers(&Security),
    security(("token" = [])),
    components(schemas(wire::ErrorBody, intake::DueFilter)),
)]
struct ApiDoc;

/// Every `/api` route with its OpenAPI description. The router and the document come from
/// this one list.
pub fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(crate::api::create_job))
        .routes(routes!(crate::api::get_job))
        .routes(routes!(crate::api::set_technicians))
        .routes(routes!(crate::api::get_report))
        .routes(routes!(crate::api::me))
        .routes(routes!(crate::handoff::hand_over))
        .routes(routes!(crate::handoff::list_stranded))
        .routes(routes!(crate::handoff::merge))
        .routes(routes!(crate::handoff::discard))
        .routes(routes!(intake::create_request, intake::list_requests))
        .routes(routes!(intake::get_request))
        .routes(routes!(intake::record_reply))
        .routes(routes!(intake::record_arrival))
        .routes(routes!(dispatch::create_job_from_request))
        .routes(routes!(dispatch::set_appointment))
        .routes(routes!(dispatch::job_desk_record))
        .routes(routes!(dispatch::list_follow_ups))
        .routes(routes!(dispatch::record_call))
        .routes(routes!(
            complaints::create_complaint,
            complaints::list_complaints
        ))
        .routes(routes!(complaints::complaint_summary))
        .routes(routes!(complaints::get_complaint))
        .routes(routes!(complaints::record_step))
        .routes(routes!(stock::create_requisition, stock::list_requisitions))
        .routes(routes!(stock::record_shipment))
        .routes(routes!(stock::register_tool, stock::list_tools))
        .routes(routes!(stock::lend_tool))
        .routes(routes!(stock::return_tool))
        .routes(routes!(stock::report_tool_lost))
        .routes(routes!(approvals::list_approvals))
        .routes(routes!(approvals::decide_approval))
        .routes(routes!(crate::head_office::list_reports))
        .routes(routes!(crate::head_office::get_report))
        .routes(routes!(crate::head_office::export_report))
        .routes(routes!(crate::head_office::list_rejected))
        .routes(routes!(crate::head_office::get_stats))
        .routes(routes!(crate::complaint_archive::list_archived))
        .routes(routes!(crate::complaint_archive::list_rejected))
        .routes(routes!(crate::complaint_archive::get_archived))
        .routes(routes!(crate::complaint_archive::complaint_stats))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every `/api` route (built once per request: it is small).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// `GET /api/openapi.json`: the OpenAPI 3.1 document of this API, generated from the code.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    description = "This document. No token needed.",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
)]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}
