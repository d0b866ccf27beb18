//! The desk's records in the store: typed values as JSON in versioned records, read on the
//! blocking pool, written by compare-and-set.

use std::sync::Arc;

use fieldsync_storage::{Record, RecordFilter, StorageError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::edge::Edge;
use crate::http::error::ApiError;

/// A record as read, with the revision a write must build on.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub revision: u64,
    pub value: T,
}

/// What a record type says about itself to the store.
pub trait DeskRecord: Serialize + DeserializeOwned + Send + 'static {
    /// The record kind in the store.
    const KIND: &'static str;
    fn id(&self) -> &str;
    /// The secondary key it is found by, if any.
    fn lookup(&self) -> Option<String> {
        None
    }
    /// Whether it still needs attention (indexed: lists of open records are cheap).
    fn open(&self) -> bool;
}

fn decode<T: DeskRecord>(record: Record) -> Result<Stored<T>, ApiError> {
    let value = serde_json::from_slice(&record.body).map_err(|e| {
        ApiError::internal(
            "record_unreadable",
            format!("{}/{}: {e}", record.kind, record.id),
        )
    })?;
    Ok(Stored {
        revision: record.revision,
        value,
    })
}

/// One record of type `T`, if stored.
pub async fn load<T: DeskRecord>(state: &Edge, id: &str) -> Result<Option<Stored<T>>, ApiError> {
    let store = Arc::clone(&state.node.store);
    let id = id.to_owned();
    let found = tokio::task::spawn_blocking(move || store.record(T::KIND, &id))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?;
    found.map(decode).transpose()
}

/// The records of type `T` with these ids (those stored), read in one trip to the blocking
/// pool rather than one per id: what a page listing many jobs needs.
pub async fn load_many<T: DeskRecord>(
    state: &Edge,
    ids: Vec<String>,
) -> Result<Vec<Stored<T>>, ApiError> {
    let store = Arc::clone(&state.node.store);
    let found = tokio::task::spawn_blocking(move || {
        ids.iter()
            .filter_map(|id| store.record(T::KIND, id).transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal("storage_error", e))?
    .map_err(|e| ApiError::internal("storage_error", e))?;
    found.into_iter().map(decode).collect()
}

/// A record that must exist: a 404 with `code` otherwise.
pub async fn require<T: DeskRecord>(
    state: &Edge,
    id: &str,
    code: &'static str,
    what: &str,
) -> Result<Stored<T>, ApiError> {
    load(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(code, format!("no {what} {id:?} at this branch")))
}

/// Every record of type `T` passing `filter`, sorted by id.
pub async fn list<T: DeskRecord>(
    state: &Edge,
    filter: RecordFilter,
) -> Result<Vec<Stored<T>>, ApiError> {
    let store = Arc::clone(&state.node.store);
    let found = tokio::task::spawn_blocking(move || store.records(T::KIND, &filter))
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .map_err(|e| ApiError::internal("storage_error", e))?;
    found.into_iter().map(decode).collect()
}

/// Stores `value` as the revision after `previous` (0 for a new record). Durable when it
/// returns; a record someone else changed meanwhile is a 409 `conflict` and nothing is
/// stored.
pub async fn save<T: DeskRecord>(state: &Edge, previous: u64, value: &T) -> Result<u64, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal("record_error", e))?;
    let revision = previous + 1;
    let record = Record {
        kind: T::KIND.to_owned(),
        id: value.id().to_owned(),
        revision,
        lookup: value.lookup(),
        open: value.open(),
        body,
    };
    match state.node.store.put_record(record).await {
        Ok(()) => Ok(revision),
        Err(StorageError::RevisionConflict { kind, id, .. }) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            if previous == 0 {
                "already_exists"
            } else {
                "conflict"
            },
            format!("{kind} {id} was changed by someone else meanwhile; read it again and retry"),
        )),
        Err(e) => Err(ApiError::internal("storage_error", e)),
    }
}

/// Reads record `id`, lets `change` edit it (returning whether it changed anything) and
/// stores it, reading again when someone else wrote it meanwhile (a few times, then the
/// 409). Answers the record as stored, or `None` when there is no such record.
pub async fn update<T: DeskRecord>(
    state: &Edge,
    id: &str,
    mut change: impl FnMut(&mut T) -> bool,
) -> Result<Option<T>, ApiError> {
    for _attempt in 0..5 {
        let Some(Stored {
            revision,
            mut value,
        }) = load::<T>(state, id).await?
        else {
            return Ok(None);
        };
        if !change(&mut value) {
            return Ok(Some(value));
        }
        match save(state, revision, &value).await {
            Ok(_) => return Ok(Some(value)),
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "conflict",
        format!("{} {id} kept changing; try again", T::KIND),
    ))
}
