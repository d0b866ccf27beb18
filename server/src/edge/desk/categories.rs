//! The desk's list of fault categories (issue 14, point 3; R4, R27): managers add and
//! retire categories; intake offers them; a job or request whose category is not in force
//! is marked "not in the list" (`fieldsync_shared::desk::fault_category::unlisted`).
//!
//! One desk record per category, its id derived from the name as R4 compares it
//! (`fault_category::key`), so the same category cannot be added twice, even by two
//! managers at once (the second write is a compare-and-set on a record that exists). A
//! retired category stays stored (jobs name it) and can be added back. Each change writes
//! its audit entry (`fault_category_add`, `fault_category_retire`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fieldsync_shared::desk::fault_category::{check_name, key};
use fieldsync_storage::RecordFilter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::records::{self, DeskRecord};
use crate::auth::{Actor, EVERYONE, MANAGERS};
use crate::console::audit::Entry;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::parse_body;
use crate::http::wire::{ErrorBody, Instant};

/// A fault category as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FaultCategory {
    /// `cat-` and 16 hex digits of the SHA-256 of the name's comparison key.
    pub id: String,
    pub name: String,
    pub added_by: String,
    pub added_at: Instant,
    /// When a manager took it off the list (it stays readable on the jobs naming it).
    pub retired_at: Option<Instant>,
    pub retired_by: Option<String>,
}

impl DeskRecord for FaultCategory {
    const KIND: &'static str = "fault_category";

    fn id(&self) -> &str {
        &self.id
    }

    /// In force: listed in intake.
    fn open(&self) -> bool {
        self.retired_at.is_none()
    }
}

/// The id of the category named `name` (any case, any surrounding spaces).
pub fn category_id(name: &str) -> String {
    let digest = Sha256::digest(key(name).as_bytes());
    format!("cat-{}", hex::encode(&digest[..8]))
}

/// Every category, those in force first, by name.
pub async fn all(state: &Edge) -> Result<Vec<FaultCategory>, ApiError> {
    let mut list: Vec<FaultCategory> =
        records::list::<FaultCategory>(state, RecordFilter::default())
            .await?
            .into_iter()
            .map(|s| s.value)
            .collect();
    list.sort_by(|a, b| {
        (a.retired_at.is_some(), key(&a.name)).cmp(&(b.retired_at.is_some(), key(&b.name)))
    });
    Ok(list)
}

/// The names of the categories in force, by name.
pub async fn in_force(state: &Edge) -> Result<Vec<String>, ApiError> {
    let filter = RecordFilter {
        lookup: None,
        open_only: true,
    };
    let mut names: Vec<String> = records::list::<FaultCategory>(state, filter)
        .await?
        .into_iter()
        .map(|s| s.value.name)
        .collect();
    names.sort_by_key(|n| key(n));
    Ok(names)
}

/// Adds the category `name` (or puts a retired one back) and writes the audit entry. A
/// category in force already is a 409 `category_exists`.
pub async fn add(state: &Edge, name: &str, actor: &Actor) -> Result<FaultCategory, ApiError> {
    let name = check_name(name)
        .map_err(|e| ApiError::bad_request("invalid_field", format!("name: {e}")))?;
    let id = category_id(&name);
    let now = Instant(state.node.clock.now());
    let exists = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "category_exists",
            format!("the fault category {name:?} is in the list already"),
        )
    };
    let stored = match records::load::<FaultCategory>(state, &id).await? {
        Some(found) if found.value.retired_at.is_none() => return Err(exists()),
        Some(found) => {
            let mut back = found.value;
            back.retired_at = None;
            back.retired_by = None;
            back.name = name.clone();
            back.added_by = actor.name();
            back.added_at = now;
            records::save(state, found.revision, &back).await?;
            back
        }
        None => {
            let new = FaultCategory {
                id: id.clone(),
                name: name.clone(),
                added_by: actor.name(),
                added_at: now,
                retired_at: None,
                retired_by: None,
            };
            records::save(state, 0, &new).await.map_err(|e| {
                if e.code == "already_exists" {
                    exists()
                } else {
                    e
                }
            })?;
            new
        }
    };
    let entry = Entry::new(
        now.0,
        actor.name(),
        actor.role.as_str(),
        "fault_category_add",
        format!("fault_category:{id}"),
    )
    .after(id)
    .detail(name);
    crate::console::audit_api(&state.node, entry).await?;
    Ok(stored)
}

/// Retires the category `id` and writes the audit entry: 404 `unknown_category`, 409
/// `category_retired` when it is off the list already.
pub async fn retire(state: &Edge, id: &str, actor: &Actor) -> Result<FaultCategory, ApiError> {
    let found =
        records::require::<FaultCategory>(state, id, "unknown_category", "fault category").await?;
    if found.value.retired_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "category_retired",
            format!(
                "the fault category {:?} is retired already",
                found.value.name
            ),
        ));
    }
    let now = Instant(state.node.clock.now());
    let mut retired = found.value;
    retired.retired_at = Some(now);
    retired.retired_by = Some(actor.name());
    records::save(state, found.revision, &retired).await?;
    let entry = Entry::new(
        now.0,
        actor.name(),
        actor.role.as_str(),
        "fault_category_retire",
        format!("fault_category:{id}"),
    )
    .before(id.to_owned())
    .detail(retired.name.clone());
    crate::console::audit_api(&state.node, entry).await?;
    Ok(retired)
}

/// What `GET /api/fault-categories` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryList {
    /// In force first, then retired; by name.
    pub categories: Vec<FaultCategory>,
}

/// The body of `POST /api/fault-categories`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// At most 60 characters; compared without case or surrounding spaces.
    pub name: String,
}

/// `GET /api/fault-categories`: the desk's list (R4, R27).
#[utoipa::path(
    get,
    path = "/api/fault-categories",
    tag = "dispatch",
    description = "R4, R27: the desk's fault categories, in force and retired. Roles: \
        dispatcher, manager, analyst.",
    responses((status = 200, body = CategoryList), (status = 403, body = ErrorBody)),
)]
pub async fn list_categories(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
) -> Result<Json<CategoryList>, ApiError> {
    state
        .node
        .authorize_actor(&headers, EVERYONE, "read the fault categories")?;
    Ok(Json(CategoryList {
        categories: all(&state).await?,
    }))
}

/// `POST /api/fault-categories`: adds a category (or puts a retired one back).
#[utoipa::path(
    post,
    path = "/api/fault-categories",
    tag = "dispatch",
    description = "R4, R27: add a fault category to the desk's list. Roles: manager.",
    request_body = NewCategory,
    responses(
        (status = 201, body = FaultCategory),
        (status = 400, body = ErrorBody, description = "invalid_body, invalid_field"),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "category_exists"),
    ),
)]
pub async fn add_category(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<FaultCategory>), ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, MANAGERS, "maintain the fault categories")?;
    let new: NewCategory = parse_body(&body)?;
    let added = add(&state, &new.name, &actor).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// `POST /api/fault-categories/{id}/retire`: takes a category off the list.
#[utoipa::path(
    post,
    path = "/api/fault-categories/{id}/retire",
    tag = "dispatch",
    description = "R4, R27: retire a fault category (jobs naming it keep it). Roles: manager.",
    params(("id" = String, Path, description = "The category id (`cat-…`)")),
    responses(
        (status = 200, body = FaultCategory),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown_category"),
        (status = 409, body = ErrorBody, description = "category_retired"),
    ),
)]
pub async fn retire_category(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<FaultCategory>, ApiError> {
    let actor = state
        .node
        .authorize_actor(&headers, MANAGERS, "maintain the fault categories")?;
    Ok(Json(retire(&state, &id, &actor).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_one_id_per_category_whatever_the_spelling() {
        assert_eq!(category_id("Compressor"), category_id("  compressor "));
        assert_ne!(category_id("Compressor"), category_id("Fan"));
        let id = category_id("压缩机");
        assert!(id.starts_with("cat-") && id.len() == 20, "{id}");
    }
}
