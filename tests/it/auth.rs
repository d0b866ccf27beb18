//! Who may open `/sync` (edge server issue, "Tests that must exist"): every refused token gets
//! HTTP 401 with a JSON reason before any WebSocket upgrade, and a device cannot pose as
//! another peer once connected.

use std::time::Duration;

use fieldsync_server::auth::{Subject, TokenAuthority};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::protocol::Message;
use fieldsync_shared::protocol::message::{LeaveMessage, PeerId};
use fieldsync_shared::time::Timestamp;
use fieldsync_tests::{RawPeer, SETTLE, TestServer, temp_dir};
use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// Opens `url` as a WebSocket client would and returns the HTTP refusal: status and JSON body.
async fn refused_upgrade(url: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    match RawPeer::connect(url, token, "anyone").await {
        Ok(_) => anyhow::bail!("the server upgraded the connection"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Ok((response.status().as_u16(), serde_json::from_slice(&body)?))
        }
        Err(other) => anyhow::bail!("expected an HTTP refusal, got {other}"),
    }
}

/// Asserts a 401 whose JSON body has `code`, and that no socket was ever opened.
async fn assert_refused(
    server: &TestServer,
    token: Option<&str>,
    code: &str,
) -> anyhow::Result<()> {
    let (status, body) = refused_upgrade(&server.ws_url(), token).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "the refusal says why: {body}"
    );
    assert_eq!(
        server.state.metrics.connections_accepted.get(),
        0,
        "no WebSocket connection was opened"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_401_missing_token_before_any_upgrade() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    assert_refused(&server, None, "missing_token").await?;

    // The same, seen as raw HTTP: a valid upgrade request is answered 401 with JSON, not 101.
    let response = reqwest::Client::new()
        .get(server.http_url("/sync"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(
        response.headers().get("upgrade").is_none(),
        "nothing was upgraded"
    );
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "missing_token", "{body}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_gets_401_expired_token() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let device = server.enroll("tech-wang", "dev-a")?;
    // Issued two hours ago for one hour: the authority takes the time, so nothing sleeps.
    let issued = Timestamp::from_millis(server.now().as_millis() - 2 * 3_600_000);
    let token = server
        .state
        .tokens
        .issue(&Subject::Device(device), Duration::from_secs(3600), issued)
        .map_err(anyhow::Error::msg)?;
    assert_refused(&server, Some(&token), "expired_token").await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_another_key_gets_401_forged_token() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let device = server.enroll("tech-wang", "dev-a")?;
    // Everything right (issuer, subject, lifetime) except the key that signed it.
    let impostor =
        TokenAuthority::new(&KeyPair::generate()?, "north-01").map_err(anyhow::Error::msg)?;
    let token = impostor
        .issue(
            &Subject::Device(device),
            Duration::from_secs(600),
            server.now(),
        )
        .map_err(anyhow::Error::msg)?;
    assert_refused(&server, Some(&token), "forged_token").await?;
    // In the query string, as a browser sends it, too.
    let (status, body) =
        refused_upgrade(&format!("{}?token={token}", server.ws_url()), None).await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("forged_token")));
    server.stop().await
}

/// A device enrolled by another process (the CLI writes the store; the server only polls it
/// once a second) and connecting at once is let in, not refused: the SDK takes a refusal as
/// final and would never retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_enrolled_by_another_process_connects_at_once() -> anyhow::Result<()> {
    use fieldsync_server::sync::registry::Registry;
    use fieldsync_shared::ids::{BranchId, DeviceId, TechnicianId};
    use fieldsync_shared::report::DeviceRecord;
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    for n in 0..5 {
        // What `fieldsync device enroll` does: its own view of the records, the same database.
        let mut other = Registry::load(&server.state.store)?;
        let device = DeviceId::new(format!("dev-cli-{n}"))?;
        other
            .enroll_device(
                &server.state.store,
                DeviceRecord {
                    device_id: device.clone(),
                    branch_id: BranchId::new("north-01")?,
                    technician: TechnicianId::new("tech-wang")?,
                    public_key: KeyPair::generate()?.public().to_hex(),
                    revoked_at: None,
                },
            )?
            .await?;
        let token = server.device_token(&device, Duration::from_secs(600))?;
        let url = format!("{}?token={token}", server.ws_url());
        RawPeer::joined(&url, &token, device.as_str()).await?;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_token_gets_401_revoked() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let device = server.enroll("tech-wang", "dev-a")?;
    let token = server.device_token(&device, Duration::from_secs(600))?;
    // The token itself is valid: it verifies, and it is only the revocation that stops it.
    let url_with_token = format!("{}?token={token}", server.ws_url());
    RawPeer::joined(&url_with_token, &token, device.as_str()).await?;
    let pending =
        server
            .state
            .registry_write()
            .revoke_device(&server.state.store, &device, server.now())?;
    pending.await?;

    let (status, body) = refused_upgrade(&server.ws_url(), Some(&token)).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "revoked", "{body}");
    let (status, body) = refused_upgrade(&url_with_token, None).await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("revoked")));
    // A device that was never enrolled is refused the same way.
    let stranger = server.device_token(
        &fieldsync_shared::ids::DeviceId::new("dev-nobody")?,
        Duration::from_secs(600),
    )?;
    let (status, body) = refused_upgrade(&server.ws_url(), Some(&stranger)).await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("revoked")));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_joining_as_another_peer_is_closed_with_policy_1008() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let a = server.enroll("tech-wang", "dev-a")?;
    server.enroll("tech-wang", "dev-b")?;
    let token = server.device_token(&a, Duration::from_secs(600))?;

    // Another device's id, and an id that only starts like ours.
    for posed in ["dev-b", "dev-a-evil"] {
        let mut peer = RawPeer::connect(&server.ws_url(), Some(&token), posed).await?;
        peer.send(&peer.join_message(&["1"])).await?;
        let refusal = peer.refusal(SETTLE).await?;
        let (code, reason) = refusal.close.clone().unwrap_or_default();
        assert_eq!(code, 1008, "joining as {posed}: {refusal:?}");
        assert!(
            reason.contains("does not belong to this token"),
            "joining as {posed}: {reason}"
        );
        assert!(
            refusal.errors.iter().any(|e| e.contains(posed)),
            "an error message names the id: {refusal:?}"
        );
    }

    // Its own id with a suffix (a second app on the device) is fine, but a later message
    // that claims to come from someone else closes the connection the same way.
    let mut peer = RawPeer::joined(&server.ws_url(), &token, "dev-a:tablet").await?;
    peer.send(&Message::Leave(LeaveMessage {
        sender_id: PeerId::new("dev-b"),
    }))
    .await?;
    let refusal = peer.refusal(SETTLE).await?;
    let (code, reason) = refusal.close.clone().unwrap_or_default();
    assert_eq!(code, 1008, "{refusal:?}");
    assert!(reason.contains("senderId"), "{reason}");
    server.stop().await
}
