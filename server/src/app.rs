//! The HTTP side of the server: the router and the serve loop with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use fieldsync_shared::keys::KeyPair;
use tokio::net::TcpListener;

use crate::config::Config;

/// What every request handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub branch_key: KeyPair,
}

/// The router, apart from `main` so tests can drive it directly.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<Arc<AppState>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "role": match state.config.role {
            crate::config::Role::Edge => "edge",
            crate::config::Role::HeadOffice => "head-office",
        },
        "key_id": state.branch_key.id().as_str(),
    }))
}

/// Serves until `shutdown` resolves, then stops accepting and lets open requests finish.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
