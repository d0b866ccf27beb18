//! A bare samod 0.16 sync server: in-memory storage, no auth, no announcements (it answers
//! what peers ask for, as the reference JavaScript sync server does). fieldsync-bench starts
//! it and reads `listening PORT` from stdout.
//!
//! Usage: `samod-bench-server [PORT]` (0 or nothing: any free port).

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::serve::ListenerExt;
use samod::{AcceptorHandle, Repo, ShareConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(0);
    let repo = Repo::build_tokio()
        .with_share_policy(ShareConfig::read_write().with_announce(false))
        .load()
        .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let acceptor = repo.make_acceptor(format!("ws://{addr}/").parse()?)?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(upgrade))
        .with_state(acceptor);
    println!("listening {}", addr.port());
    // Small protocol frames must not wait for delayed ACKs (Nagle).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    repo.stop().await;
    Ok(())
}

async fn upgrade(ws: WebSocketUpgrade, State(acceptor): State<AcceptorHandle>) -> Response {
    ws.max_message_size(64 << 20)
        .on_upgrade(move |socket| async move {
            // The connection now runs inside the repo, which owns the socket.
            let _ = acceptor.accept_axum(socket, None);
        })
}
