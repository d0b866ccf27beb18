//! The server's answers on the wire, seen through a bare WebSocket peer that speaks the
//! protocol by hand (so these run without Node; `js_interop` runs the real JavaScript client).

use std::time::Duration;

use anyhow::{Context, bail};
use automerge::Automerge;
use automerge::sync::{self, SyncDoc};
use fieldsync_shared::protocol::message::{JoinMessage, PeerId, PeerMetadata, SyncMessage};
use fieldsync_shared::protocol::{Limits, Message, PROTOCOL_VERSION, decode, encode};
use fieldsync_tests::{TestServer, temp_dir};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A request for a job that the server holds in memory and has already announced (it was
/// just created through the desk API) must still get a `sync` answer. It used to get nothing,
/// because only a change to the document made the server generate messages, and the
/// JavaScript repo's `find()` then waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_loaded_idle_job_is_answered() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let device = server.enroll("tech-wang", "dev-raw")?;
    let created = server.create_job("tech-wang").await?;
    let token = server.device_token(&device, Duration::from_secs(600))?;

    let url = format!("{}?token={token}", server.ws_url());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let join = Message::Join(JoinMessage {
        sender_id: PeerId::new("dev-raw"),
        supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
        peer_metadata: PeerMetadata::default(),
    });
    socket.send(WsMessage::Binary(encode(&join).into())).await?;
    let server_peer = match next_message(&mut socket).await? {
        Message::Peer(peer) => peer.sender_id,
        other => bail!("expected peer, got {other:?}"),
    };

    // What automerge-repo sends for a document it does not have yet.
    let empty = Automerge::new();
    let mut state = sync::State::new();
    let first = empty
        .generate_sync_message(&mut state)
        .context("an empty document still asks")?;
    let request = Message::Request(SyncMessage {
        sender_id: PeerId::new("dev-raw"),
        target_id: server_peer,
        document_id: created.job,
        data: first.encode(),
    });
    socket
        .send(WsMessage::Binary(encode(&request).into()))
        .await?;
    match next_message(&mut socket).await? {
        Message::Sync(answer) => {
            assert_eq!(answer.document_id, created.job);
            let message = sync::Message::decode(&answer.data)?;
            assert!(!message.heads.is_empty(), "the server says what it has");
        }
        other => bail!("expected sync, got {other:?}"),
    }
    server.stop().await?;
    Ok(())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next protocol message, skipping pings; fails after five seconds.
async fn next_message(socket: &mut Socket) -> anyhow::Result<Message> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .context("no answer within 5 s")?
            .context("the server closed the socket")??;
        match frame {
            WsMessage::Binary(bytes) => return Ok(decode(&bytes, &Limits::default())?),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => bail!("unexpected frame {other:?}"),
        }
    }
}
