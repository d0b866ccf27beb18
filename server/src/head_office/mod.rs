//! Head office: receives what branches send ([`receive`]), verifies and archives signed
//! reports ([`archive`]: R25 indexes, R24/R27 statistics) and complaint revisions
//! ([`complaints`]: R22 across branches) in its archive ([`store`]: SQLite or PostgreSQL).
//! [`HeadOffice`] is its state: the sync node, the archive and head office's metrics; its
//! router and workers are built here from it, and nothing in here imports the composition
//! root (`app`).

pub mod archive;
pub mod complaints;
pub mod console;
pub mod receive;
pub mod store;

use std::sync::Arc;

use axum::Router;
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::head_office::store::{HeadOfficeStore, StorageUrl};
use crate::http::BearerToken;
use crate::metrics::Registry;
use crate::sync::node::{Node, StartError};

/// What head office's handlers and workers reach.
#[derive(Debug)]
pub struct HeadOffice {
    pub node: Arc<Node>,
    /// Where the archive lives (`[storage] url`).
    pub store: HeadOfficeStore,
    pub metrics: HeadOfficeMetrics,
    /// The web console's sessions (issue 14; head office's own pages come later).
    pub console: Arc<crate::console::Console>,
}

/// What only head office exports: reports and complaints archived or kept aside.
#[derive(Debug, Clone, Default)]
pub struct HeadOfficeMetrics {
    pub reports_verified: Counter,
    pub reports_rejected: Counter,
    pub complaints_archived: Counter,
    pub complaints_rejected: Counter,
}

impl HeadOfficeMetrics {
    fn registered(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "reports_verified",
            "Reports verified and archived.",
            m.reports_verified.clone(),
        );
        registry.register(
            "reports_rejected",
            "Reports kept aside because a check failed.",
            m.reports_rejected.clone(),
        );
        registry.register(
            "complaints_archived",
            "Complaint revisions verified and archived.",
            m.complaints_archived.clone(),
        );
        registry.register(
            "complaints_rejected",
            "Complaint documents kept aside.",
            m.complaints_rejected.clone(),
        );
        m
    }
}

impl HeadOffice {
    /// Head office on `node`, its archive where `[storage] url` says (opened, and on
    /// PostgreSQL migrated, now); registers its metrics in `registry`.
    pub fn open(node: Arc<Node>, registry: &mut Registry) -> Result<Arc<Self>, StartError> {
        let url =
            StorageUrl::parse(node.config.storage.url.as_deref()).map_err(StartError::Archive)?;
        let store = HeadOfficeStore::open(&url, &node.store)
            .map_err(|e| StartError::Archive(e.to_string()))?;
        tracing::info!(backend = store.backend(), "head office's archive opened");
        Ok(Arc::new(Self {
            console: crate::console::Console::new(Arc::clone(&node)),
            node,
            store,
            metrics: HeadOfficeMetrics::registered(registry),
        }))
    }

    /// Head office's routes (`/api/…`) and the console's, on its state.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::from(api())
            .with_state(Arc::clone(self))
            .merge(crate::console::router(Arc::clone(&self.console)))
            .merge(console::router(Arc::clone(self)))
    }

    /// Starts head office's worker, the receiver. It runs until aborted.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        vec![tokio::spawn(receive::run(Arc::clone(self)))]
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldsync head office API",
        description = "Head office's archive of verified service reports (R25) and complaints \
            (R22), and the monthly statistics (R24, R27). Authenticate with `Authorization: \
            Bearer <token>` from `fieldsync desk token --role analyst` (any desk role may \
            read). Errors are JSON `{\"code\", \"message\"}` with a stable code. Rule ids \
            (R1…) refer to the product's DOMAIN.md.",
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(crate::http::wire::ErrorBody)),
)]
struct ApiDoc;

/// Every `/api` route of head office with its OpenAPI description.
pub fn api() -> OpenApiRouter<Arc<HeadOffice>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(archive::list_reports))
        .routes(routes!(archive::get_report))
        .routes(routes!(archive::export_report))
        .routes(routes!(archive::get_report_pdf))
        .routes(routes!(archive::list_rejected))
        .routes(routes!(archive::verdicts))
        .routes(routes!(archive::get_stats))
        .routes(routes!(complaints::list_archived))
        .routes(routes!(complaints::list_rejected))
        .routes(routes!(complaints::get_archived))
        .routes(routes!(complaints::complaint_stats))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every head-office `/api` route.
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
