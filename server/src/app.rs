//! The composition root: opens the sync node, puts the role on it (an edge or head office),
//! builds the router from the role's own and serves until shutdown. `main.rs` binds and passes
//! ctrl-c; tests bind port 0 and call [`serve`]. Nothing imports this module but `main`, the
//! demo and the tests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, Role};
use crate::edge::Edge;
use crate::head_office::HeadOffice;
use crate::metrics::Registry;
pub use crate::sync::node::{BASELINE_ENV, Node, StartError};

/// The role a server plays, with its state.
#[derive(Debug, Clone)]
pub enum RoleState {
    Edge(Arc<Edge>),
    HeadOffice(Arc<HeadOffice>),
}

/// One server: the sync node, its role and the metrics registry both registered in.
#[derive(Debug, Clone)]
pub struct Server {
    pub node: Arc<Node>,
    pub role: RoleState,
    metrics: Arc<Registry>,
}

impl Server {
    /// Opens the data directory (creating keys and database on first run) and starts the hub.
    pub fn open(config: Config, runtime: tokio::runtime::Handle) -> Result<Self, StartError> {
        Self::open_with_clock(config, Clock::system(), runtime)
    }

    /// [`open`](Self::open) with a given clock (tests run servers on a manual one).
    pub fn open_with_clock(
        config: Config,
        clock: Clock,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, StartError> {
        let mut metrics = crate::metrics::registry();
        let role = config.role;
        // Checked here rather than in the config: `--role` on the command line comes after it.
        if role == Role::Edge && config.storage.url.is_some() {
            return Err(StartError::Archive(
                "[storage] url is where head office keeps its archive; an edge server keeps \
                 everything in its data directory"
                    .into(),
            ));
        }
        let node = Node::open(config, clock, runtime, &mut metrics)?;
        let role = match role {
            Role::Edge => RoleState::Edge(Edge::new(Arc::clone(&node), &mut metrics)),
            Role::HeadOffice => {
                RoleState::HeadOffice(HeadOffice::open(Arc::clone(&node), &mut metrics)?)
            }
        };
        Ok(Self {
            node,
            role,
            metrics: Arc::new(metrics),
        })
    }

    /// The edge's state; `None` at head office.
    pub fn edge(&self) -> Option<&Arc<Edge>> {
        match &self.role {
            RoleState::Edge(edge) => Some(edge),
            RoleState::HeadOffice(_) => None,
        }
    }

    /// Head office's state; `None` at an edge.
    pub fn head_office(&self) -> Option<&Arc<HeadOffice>> {
        match &self.role {
            RoleState::HeadOffice(head_office) => Some(head_office),
            RoleState::Edge(_) => None,
        }
    }

    /// The metrics text, as `/metrics` answers it.
    pub fn render_metrics(&self) -> String {
        crate::metrics::render(&self.metrics)
    }

    fn spawn_workers(&self) -> Vec<JoinHandle<()>> {
        match &self.role {
            RoleState::Edge(edge) => edge.spawn_workers(),
            RoleState::HeadOffice(head_office) => head_office.spawn_workers(),
        }
    }
}

/// The router, apart from [`serve`] so tests can drive it directly: the node's own routes
/// (`/healthz`, `/metrics`, `/sync`) and the role's.
pub fn app(server: &Server) -> Router {
    let node = &server.node;
    // Request bodies up to the frame limit: a device's handover carries changes as big as a
    // sync message may (the desk's JSON bodies are far smaller).
    let max_body = node.config.limits.max_frame_bytes;
    let body_limit = axum::extract::DefaultBodyLimit::max(max_body);
    let role = match &server.role {
        RoleState::Edge(edge) => edge.router(),
        RoleState::HeadOffice(head_office) => head_office.router(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(server.clone())
        .merge(crate::sync::endpoint::router(Arc::clone(node)))
        .merge(role)
        .layer(body_limit)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                crate::http::error::json_errors(max_body, request, next)
            },
        ))
}

async fn healthz(State(server): State<Server>) -> axum::Json<serde_json::Value> {
    let node = &server.node;
    axum::Json(serde_json::json!({
        "status": "ok",
        "role": node.config.role.as_str(),
        "branch_id": node.branch_id,
        "key_id": node.server_key.id().as_str(),
    }))
}

async fn metrics(State(server): State<Server>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        server.render_metrics(),
    )
}

/// Listens on `addr` with `backlog` connections queued in the kernel before they are
/// accepted (`limits.accept_backlog`). Like tokio's `TcpListener::bind`, it sets
/// `SO_REUSEADDR` (a restart does not wait out TIME_WAIT). Warns when the kernel's
/// `net.core.somaxconn` is lower, since the kernel then silently uses that.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    if let Some(cap) = somaxconn()
        && cap < backlog
    {
        tracing::warn!(
            backlog,
            somaxconn = cap,
            "the kernel caps the accept backlog at net.core.somaxconn; raise it (sysctl) for \
             reconnect storms"
        );
    }
    socket.listen(backlog)
}

/// The kernel's cap on listen backlogs, where it can be read (Linux).
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Serves until `shutdown` resolves, then drains: no new connections, open ones are told the
/// server is going away and get `shutdown_grace` to finish, every queued write is flushed.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::clone(&server.node);
    let poller = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let state = Arc::clone(&state);
                let result =
                    tokio::task::spawn_blocking(move || state.reload_registry_if_changed()).await;
                if let Ok(Err(e)) = result {
                    tracing::warn!(error = %e, "cannot reload records");
                }
            }
        })
    };
    let workers = server.spawn_workers();
    let signal = state.shutdown.clone();
    let router = app(&server);
    let graceful = async move {
        shutdown.await;
        let _ = signal.send(true);
    };
    let result = match &state.tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, Arc::clone(config))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(graceful)
                .await
        }
        None => {
            if let Some(warning) = crate::tls::clear_text_warning(listener.local_addr()?) {
                tracing::warn!("{warning}");
            }
            // Sync frames are small and answered at once: without TCP_NODELAY a reply that
            // follows a send waits for the peer's delayed ACK (about 40 ms on Linux) on every
            // round trip.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "set TCP_NODELAY");
                }
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(graceful)
                .await
        }
    };
    poller.abort();
    for worker in workers {
        worker.abort();
    }
    let _ = state.shutdown.send(true);
    let deadline = Instant::now() + state.config.limits.shutdown_grace;
    while state.metrics.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.hub.shutdown().await;
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || store.flush().wait()).await {
        Ok(Ok(())) => tracing::info!("storage flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "flushing storage failed"),
        Err(e) => tracing::error!(error = %e, "flushing storage failed"),
    }
    result
}
