//! The branch edge server: the service desk's API ([`desk`]) and the job endpoints ([`jobs`]),
//! stranded edits ([`handoff`]), the report signer ([`signer`]) and the link to head office
//! ([`upstream`]). [`Edge`] is its state: the sync node plus what only an edge keeps; its
//! router and workers are built here from it, and nothing in here imports the composition
//! root (`app`).

pub mod attachments;
pub mod audit_writes;
pub mod board;
pub mod catalogue;
pub mod complaint_forms;
pub mod conflict_forms;
pub mod conflicts;
pub mod console;
pub mod desk;
pub mod devices;
pub mod enrollment;
pub mod forms;
pub mod handoff;
pub mod jobs;
pub mod pwa;
pub mod resolve;
pub mod signer;
pub mod stock_forms;
pub mod technicians;
pub mod upstream;
pub mod verdicts;

use std::sync::Arc;

use axum::Router;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::report_doc::VerdictStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::BearerToken;
use crate::metrics::Registry;
use crate::sync::node::Node;

use self::desk::approvals::mirror::ApprovalMirror;

/// What an edge's handlers and workers reach.
#[derive(Debug)]
pub struct Edge {
    pub node: Arc<Node>,
    pub metrics: EdgeMetrics,
    /// Serialises assignment changes (see `jobs::make_job`).
    pub assign_lock: tokio::sync::Mutex<()>,
    /// Ids of reports as the signer stores them (the upstream outbox listens).
    pub reports_signed: tokio::sync::broadcast::Sender<String>,
    /// Ids of reports as head office confirms holding them (the verdicts worker listens).
    pub reports_delivered: tokio::sync::broadcast::Sender<String>,
    /// Complaint documents as the desk writes them (the upstream outbox listens).
    pub complaints_published: tokio::sync::broadcast::Sender<DocumentId>,
    /// The desk's approvals queue (R12, R18, R31), mirrored from the stored jobs.
    pub approvals: ApprovalMirror,
    /// Token renewal challenges handed out and not answered yet (`enrollment`).
    pub challenges: enrollment::Challenges,
    /// What the board shows of each job, read from the stored jobs (`board`).
    pub board: board::Board,
    /// The web console's sessions and frame (issue 14); the edge's pages are `console`.
    pub console: Arc<crate::console::Console>,
    /// Photos, receipts and signature images by SHA-256 (`attachments`, issue 15).
    pub attachments: attachments::Blobs,
    /// One maintenance pass at a time (R26, `desk::customers::maintenance_pass`).
    pub maintenance_lock: tokio::sync::Mutex<()>,
}

/// What only an edge exports: the link to head office and the approvals queue.
#[derive(Debug, Clone, Default)]
pub struct EdgeMetrics {
    /// 1 while the link to head office is up.
    pub upstream_connected: Gauge,
    pub upstream_dial_failures: Counter,
    /// Reports head office confirmed holding, and those still waiting.
    pub upstream_delivered: Counter,
    pub upstream_undelivered: Gauge,
    /// Complaint documents with a revision head office has not confirmed.
    pub upstream_complaints_undelivered: Gauge,
    /// Approval requests (R12, R18, R31) no manager has decided yet.
    pub approvals_waiting: Gauge,
    /// Delivered reports by head office's verdict (`verdicts`).
    at_head_office: Family<VerdictLabel, Gauge>,
}

/// The label of `fieldsync_reports_at_head_office`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

impl EdgeMetrics {
    fn registered(registry: &mut Registry, upstream_configured: bool) -> Self {
        let m = Self::default();
        let configured: Gauge = Gauge::default();
        configured.set(i64::from(upstream_configured));
        registry.register(
            "upstream_configured",
            "1 when this edge has an [upstream] link to head office.",
            configured,
        );
        registry.register(
            "upstream_connected",
            "1 while the link to head office is up.",
            m.upstream_connected.clone(),
        );
        registry.register(
            "upstream_dial_failures",
            "Failed attempts to reach head office.",
            m.upstream_dial_failures.clone(),
        );
        registry.register(
            "upstream_delivered",
            "Reports head office confirmed holding.",
            m.upstream_delivered.clone(),
        );
        registry.register(
            "upstream_undelivered",
            "Signed reports not yet confirmed by head office.",
            m.upstream_undelivered.clone(),
        );
        registry.register(
            "upstream_complaints_undelivered",
            "Complaints whose latest revision head office has not confirmed.",
            m.upstream_complaints_undelivered.clone(),
        );
        registry.register(
            "approvals_waiting",
            "Approval requests (R12, R18, R31) not decided yet.",
            m.approvals_waiting.clone(),
        );
        registry.register(
            "reports_at_head_office",
            "Delivered reports by head office's verdict (verified, rejected, pending, unknown).",
            m.at_head_office.clone(),
        );
        m
    }

    /// Sets how many delivered reports have head office's verdict `status`.
    pub fn set_at_head_office(&self, status: VerdictStatus, count: usize) {
        crate::metrics::set_count(
            &self.at_head_office.get_or_create(&VerdictLabel {
                verdict: status.as_str(),
            }),
            count,
        );
    }
}

impl Edge {
    /// An edge on `node`; registers its metrics in `registry`.
    pub fn new(node: Arc<Node>, registry: &mut Registry) -> Arc<Self> {
        let metrics = EdgeMetrics::registered(registry, node.config.upstream.is_some());
        let approvals = ApprovalMirror::new(metrics.approvals_waiting.clone());
        Arc::new(Self {
            console: crate::console::Console::new(Arc::clone(&node)),
            board: board::Board::default(),
            attachments: attachments::Blobs::new(node.data_dir.root().join("attachments")),
            node,
            metrics,
            assign_lock: tokio::sync::Mutex::new(()),
            reports_signed: tokio::sync::broadcast::channel(1024).0,
            reports_delivered: tokio::sync::broadcast::channel(1024).0,
            complaints_published: tokio::sync::broadcast::channel(1024).0,
            approvals,
            challenges: enrollment::Challenges::default(),
            maintenance_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The edge's routes (`/api/…`) and console pages, on its state.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::from(api())
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                audit_writes::audit_writes,
            ))
            .with_state(Arc::clone(self))
            .merge(crate::console::router(Arc::clone(&self.console)))
            .merge(console::router(Arc::clone(self)))
            // The desk's forms (they use the pages' helpers, so they are not routed from there).
            .merge(forms::router().with_state(Arc::clone(self)))
            // Complaints (R20–R23), requisitions (R17) and tools (R19): the same pattern.
            .merge(complaint_forms::router().with_state(Arc::clone(self)))
            .merge(stock_forms::router().with_state(Arc::clone(self)))
            .merge(conflict_forms::router().with_state(Arc::clone(self)))
            .merge(devices::router().with_state(Arc::clone(self)))
            .merge(technicians::router().with_state(Arc::clone(self)))
            .merge(catalogue::router().with_state(Arc::clone(self)))
            // The technician's app (issue 20): static files, no state.
            .merge(pwa::router())
    }

    /// Starts the edge's workers: the report signer, the approvals mirror, the desk's
    /// follower of the jobs (`desk::follow`) and, with an `[upstream]`, the link to head
    /// office. They run until aborted.
    pub fn spawn_workers(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut workers = vec![
            // Subscribed here, before the server answers anything (`board::follow`).
            tokio::spawn(board::follow(
                Arc::clone(self),
                self.node.hub.subscribe_approvals(),
            )),
            tokio::spawn(signer::run_signer(Arc::clone(self))),
            tokio::spawn(desk::approvals::mirror::run(Arc::clone(self))),
            tokio::spawn(desk::follow::run(Arc::clone(self))),
            // R26: periodic visits on the server's clock.
            tokio::spawn(desk::customers::run_maintenance(Arc::clone(self))),
        ];
        if let Some(upstream) = self.node.config.upstream.clone() {
            workers.push(tokio::spawn(verdicts::run(
                Arc::clone(self),
                upstream.clone(),
            )));
            workers.push(tokio::spawn(upstream::run(Arc::clone(self), upstream)));
        }
        workers
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldsync branch edge API",
        description = "The branch edge server's API: the service desk (issue #6) and the job \
            endpoints. Authenticate with `Authorization: Bearer <token>` from `fieldsync desk \
            token --role dispatcher|manager|analyst` (`/api/me`, `/api/handoffs/{job}` and attachment uploads take \
            a device token; `/api/enroll` and `/api/token/*` take none: a one-time code or a \
            signature by the device key is the credential). Errors are JSON `{\"code\", \"message\"}` with a stable code; a \
            role that may not do something gets 403 `forbidden` saying which roles may. Rule \
            ids (R1…) refer to the product's DOMAIN.md.",
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(crate::http::wire::ErrorBody, desk::intake::DueFilter)),
)]
struct ApiDoc;

/// Every `/api` route of an edge with its OpenAPI description. The router and the document
/// come from this one list: a route cannot exist without being documented.
pub fn api() -> OpenApiRouter<Arc<Edge>> {
    use desk::{approvals, complaints, dispatch, intake, stock};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(dispatch::create_job, board::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(resolve::resolve))
        .routes(routes!(jobs::set_technicians))
        .routes(routes!(jobs::list_technicians))
        .routes(routes!(signer::get_report))
        .routes(routes!(signer::get_report_pdf))
        .routes(routes!(verdicts::list_reports))
        .routes(routes!(jobs::me))
        .routes(routes!(handoff::hand_over))
        .routes(routes!(attachments::upload, attachments::download))
        .routes(routes!(attachments::status))
        .routes(routes!(attachments::list))
        .routes(routes!(handoff::list_stranded))
        .routes(routes!(handoff::merge))
        .routes(routes!(handoff::discard))
        .routes(routes!(intake::create_request, intake::list_requests))
        .routes(routes!(intake::get_request))
        .routes(routes!(intake::record_reply))
        .routes(routes!(intake::record_arrival))
        .routes(routes!(dispatch::create_job_from_request))
        .routes(routes!(dispatch::set_appointment))
        .routes(routes!(dispatch::cancel_job_api))
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
        .routes(routes!(approvals::month_expenses))
        .routes(routes!(enrollment::create_code))
        .routes(routes!(enrollment::enroll))
        .routes(routes!(enrollment::challenge))
        .routes(routes!(enrollment::renew))
        .routes(routes!(technicians::technician_record_api))
        .routes(routes!(
            desk::categories::list_categories,
            desk::categories::add_category
        ))
        .routes(routes!(desk::categories::retire_category))
        .routes(routes!(desk::customers::get_customer))
        .routes(routes!(
            desk::products::put_plan,
            desk::products::delete_plan
        ))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every edge `/api` route.
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
