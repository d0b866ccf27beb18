//! The HTTP plumbing every role's API is built with: JSON errors with stable codes
//! ([`error`]), the wire types ([`wire`]: RFC 3339 instants, dates, the error body), and the
//! small helpers below (bearer tokens, bodies, queries, blocking storage reads, ids, the
//! OpenAPI security scheme). Nothing here knows a role or the sync node; the token checks
//! that need the node's records are `sync::node::Node::authorize_*`.

pub mod error;
pub mod pdf;
pub mod wire;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use fieldsync_shared::ids::DocumentId;
use fieldsync_storage::StorageError;
use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use self::error::ApiError;

/// The bearer token from `Authorization: Bearer …` or, for browsers, `?token=`.
pub fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    header.or_else(|| query.map(str::to_owned))
}

/// Parses a JSON body; every failure (not JSON, a missing field, a wrong type, an unknown
/// field) is a 400 `invalid_body` naming what was wrong.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("request body: {e}")))
}

/// A query string; a bad one is a 400 `invalid_query` naming what was wrong.
pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
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

pub fn parse_job_id(id: &str) -> Result<DocumentId, ApiError> {
    id.parse()
        .or_else(|_| DocumentId::from_url(id))
        .map_err(|e| ApiError::bad_request("invalid_job_id", e.to_string()))
}

/// A fresh record id with a readable prefix, e.g. `req-3f9c0a1b2c3d4e5f`.
pub fn new_id(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("random_error", e))?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

/// Runs a storage read on the blocking pool; a failure is a 500 `storage_error`.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))
}

/// The `token` bearer scheme every role's OpenAPI document declares.
#[derive(Debug)]
pub struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
