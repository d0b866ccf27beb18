//! Enrollment over the network (issue 15, point 7): a one-time code from the desk, the device
//! enrolling its own key with it, and token renewal by a challenge signed with the device key.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use fieldsync_client::{ClientTls, Device, EnrollError, SyncOptions, SyncState, TokenError};
use fieldsync_server::auth::DeskRole;
use fieldsync_server::clock::Clock;
use fieldsync_shared::enrollment::renewal_message;
use fieldsync_shared::ids::DeviceId;
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::time::Timestamp;
use fieldsync_tests::{TestServer, cli, tech_cli, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// 2026-11-20T08:00:00Z: the servers here run on a manual clock.
const START: i64 = 1_795_161_600_000;

async fn post(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .post(server.http_url(path))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

/// A code for `technician`, issued by a dispatcher through the desk API.
async fn issue_code(server: &TestServer, technician: &str) -> anyhow::Result<Value> {
    let token = server.desk_token(DeskRole::Dispatcher)?;
    let (status, body) = post(
        server,
        "/api/enrollment-codes",
        Some(&token),
        &json!({ "technician": technician }),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "issue code: {status} {body}");
    Ok(body)
}

async fn manual_server(dir: &Path) -> anyhow::Result<(TestServer, Clock)> {
    let clock = Clock::manual(Timestamp::from_millis(START));
    let server = TestServer::start_with_clock(dir, clock.clone(), |_| {}).await?;
    Ok((server, clock))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_by_code_end_to_end_with_the_real_binaries() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_in(&dir.path().join("edge")).await?;
    let created = server.create_job("tech-wang").await?;
    // An analyst may not issue codes; a dispatcher may.
    let analyst = server.desk_token(DeskRole::Analyst)?;
    let (status, _) = post(
        &server,
        "/api/enrollment-codes",
        Some(&analyst),
        &json!({ "technician": "tech-wang" }),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let issued = issue_code(&server, "tech-wang").await?;
    let code = issued["code"].as_str().context("code")?.to_owned();
    assert_eq!(code.len(), 14, "XXXX-XXXX-XXXX: {code}");
    // Only the digest is stored: the code itself is in no record.
    let stored = server.state.store.records(
        fieldsync_server::edge::enrollment::CODE_KIND,
        &fieldsync_storage::RecordFilter::default(),
    )?;
    assert_eq!(stored.len(), 1);
    let raw = String::from_utf8_lossy(&stored[0].body).into_owned();
    assert!(!raw.contains(&code) && !raw.contains(&code.replace('-', "")));

    // The technician's device: the real binary, typed in lower case with spaces.
    let devices = temp_dir()?;
    let store = devices.path().join("wang.sqlite");
    let typed = code.to_lowercase().replace('-', " ");
    let (ok, stdout, stderr) = tech_cli(
        &store,
        &["init", "--server", &server.ws_url(), "--code", &typed],
    )?;
    assert!(ok, "init: {stderr}");
    let init: Value = serde_json::from_str(&stdout)?;
    assert_eq!(init["enrolled"], true);
    assert_eq!(init["technician"], "tech-wang");
    let device_id = DeviceId::new(init["device_id"].as_str().context("device id")?)?;
    let record = server
        .state
        .registry_read()
        .device(&device_id)
        .cloned()
        .context("the device is enrolled")?;
    assert_eq!(record.technician.as_str(), "tech-wang");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.with_extension("key"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the device key is private");
    }

    // It syncs with the token it received: no shell on the server, no token command.
    let (ok, stdout, stderr) = tech_cli(&store, &["sync", "--once", "--timeout", "30"])?;
    assert!(ok, "sync: {stderr}");
    assert!(stdout.contains(&created.job.to_string()), "{stdout}");

    // The code enrolled one device: a second try is refused, in words.
    let (ok, _, stderr) = tech_cli(
        &devices.path().join("again.sqlite"),
        &["init", "--server", &server.ws_url(), "--code", &code],
    )?;
    assert!(!ok);
    assert!(stderr.contains("enrollment_code_used"), "{stderr}");

    // The server's CLI issues codes too (beside the running server).
    let out: Value = serde_json::from_str(&cli(
        &server.data_dir,
        &["device", "code", "--technician", "tech-li", "--ttl", "1h"],
    )?)?;
    let cli_code = out["code"].as_str().context("code")?;
    let (ok, stdout, stderr) = tech_cli(
        &devices.path().join("li.sqlite"),
        &["init", "--server", &server.ws_url(), "--code", cli_code],
    )?;
    assert!(ok, "init with the CLI's code: {stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout)?["technician"],
        "tech-li"
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_malformed_or_expired_code_is_refused() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let (server, clock) = manual_server(dir.path()).await?;
    let tls = ClientTls::system();
    let key = KeyPair::generate()?;
    let refused = |e: Result<_, EnrollError>| e.err().and_then(|e| e.code().map(str::to_owned));

    let code = issue_code(&server, "tech-wang").await?;
    let code = code["code"].as_str().context("code")?.to_owned();
    // The default lifetime is a day, by the server's clock.
    clock.advance(24 * 3600 * 1000);
    let expired = fieldsync_client::enroll(&server.ws_url(), &tls, &code, key.public()).await;
    assert_eq!(refused(expired).as_deref(), Some("enrollment_code_expired"));

    let fresh = issue_code(&server, "tech-wang").await?;
    let fresh = fresh["code"].as_str().context("code")?.to_owned();
    clock.advance(24 * 3600 * 1000 - 1);
    let unknown =
        fieldsync_client::enroll(&server.ws_url(), &tls, "0000-0000-0000", key.public()).await;
    assert_eq!(refused(unknown).as_deref(), Some("unknown_enrollment_code"));
    let malformed =
        fieldsync_client::enroll(&server.ws_url(), &tls, "0000-0000", key.public()).await;
    assert_eq!(
        refused(malformed).as_deref(),
        Some("invalid_enrollment_code")
    );
    let (status, body) = post(
        &server,
        "/api/enroll",
        None,
        &json!({ "code": fresh, "public_key": "not hex" }),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_public_key"))
    );
    // None of those used the code: a millisecond before it ends, it still enrolls.
    let enrolled = fieldsync_client::enroll(&server.ws_url(), &tls, &fresh, key.public()).await?;
    assert_eq!(enrolled.technician.as_str(), "tech-wang");
    let again = fieldsync_client::enroll(&server.ws_url(), &tls, &fresh, key.public()).await;
    assert_eq!(refused(again).as_deref(), Some("enrollment_code_used"));
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_renews_with_the_device_key_and_a_revoked_device_cannot() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let (server, clock) = manual_server(&dir.path().join("edge")).await?;
    let job = server.create_job("tech-wang").await?;
    let code = issue_code(&server, "tech-wang").await?;
    let code = code["code"].as_str().context("code")?.to_owned();
    let tls = ClientTls::system();
    let (device, enrollment) = Device::enroll_with_code(
        dir.path().join("device.sqlite"),
        dir.path().join("device.key"),
        &server.ws_url(),
        &tls,
        &code,
    )
    .await?;
    assert_eq!(
        device.saved_token().await?.as_ref(),
        Some(&enrollment.token)
    );

    // Thirteen hours later by the server's clock the first token has expired; the device's
    // own clock says nothing of it. Sync is refused `expired_token`, renews with the key and
    // connects.
    clock.advance(13 * 3600 * 1000);
    let renewal = device
        .key_renewal(server.ws_url(), tls.clone())
        .with_token(enrollment.token.clone());
    device
        .start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(renewal.clone()));
    let state = device
        .wait_for_state(Duration::from_secs(20), |s| {
            matches!(s, SyncState::Connected | SyncState::Refused { .. })
        })
        .await;
    assert_eq!(state, Some(SyncState::Connected));
    let renewed = renewal.current().context("a renewed token")?;
    assert_ne!(renewed.token, enrollment.token.token);
    fieldsync_tests::eventually(Duration::from_secs(20), "the job arrives", || async {
        device.job(job.job).await.is_ok().then_some(())
    })
    .await?;
    device.stop_sync();

    // The renewed token is a working device token.
    let me: Value = reqwest::Client::new()
        .get(server.http_url("/api/me"))
        .bearer_auth(&renewed.token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["device_id"], enrollment.device_id.as_str());

    // Revoked: renewal is refused for good, and sync stops saying so.
    server
        .state
        .registry_write()
        .revoke_device(&server.state.store, &enrollment.device_id, server.now())?
        .wait()?;
    match renewal.renew_now().await {
        Err(TokenError::Denied(reason)) => assert!(reason.contains("revoked"), "{reason}"),
        other => anyhow::bail!("a revoked device renewed: {other:?}"),
    }
    let renewal = device.key_renewal(server.ws_url(), tls);
    device.start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(renewal));
    let state = device
        .wait_for_state(Duration::from_secs(20), |s| {
            matches!(s, SyncState::Refused { .. })
        })
        .await;
    match state {
        Some(SyncState::Refused { reason, .. }) => assert!(reason.contains("revoked"), "{reason}"),
        other => anyhow::bail!("sync of a revoked device: {other:?}"),
    }
    device.close().await;
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_replayed_challenge_signature_is_refused() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let (server, clock) = manual_server(dir.path()).await?;
    let key = KeyPair::generate()?;
    let code = issue_code(&server, "tech-wang").await?;
    let code = code["code"].as_str().context("code")?.to_owned();
    let enrolled =
        fieldsync_client::enroll(&server.ws_url(), &ClientTls::system(), &code, key.public())
            .await?;
    let device = enrolled.device_id.as_str();
    let challenge = |server: &TestServer| {
        let body = json!({ "device_id": device });
        let server_url = server.http_url("/api/token/challenge");
        async move {
            let response = reqwest::Client::new()
                .post(server_url)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(response.status() == StatusCode::OK);
            let body: Value = response.json().await?;
            anyhow::Ok(body["nonce"].as_str().context("nonce")?.to_owned())
        }
    };
    let sign = |key: &KeyPair, nonce: &str| {
        hex::encode(
            key.sign(&renewal_message("north-01", device, nonce))
                .to_bytes(),
        )
    };
    let renew = |nonce: &str, signature: String| json!({ "device_id": device, "nonce": nonce, "signature": signature });

    // Signed by another key: refused.
    let forger = KeyPair::generate()?;
    let nonce = challenge(&server).await?;
    let (status, body) = post(
        &server,
        "/api/token/renew",
        None,
        &renew(&nonce, sign(&forger, &nonce)),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature"))
    );
    // The challenge was spent by that answer: the right signature now comes too late.
    let (status, body) = post(
        &server,
        "/api/token/renew",
        None,
        &renew(&nonce, sign(&key, &nonce)),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_challenge"))
    );
    // The device key's signature over another purpose (another branch's message): refused.
    let nonce = challenge(&server).await?;
    let elsewhere = hex::encode(
        key.sign(&renewal_message("south-02", device, &nonce))
            .to_bytes(),
    );
    let (status, body) = post(&server, "/api/token/renew", None, &renew(&nonce, elsewhere)).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature"))
    );
    // Not hex: a clear 400.
    let nonce = challenge(&server).await?;
    let (status, body) = post(
        &server,
        "/api/token/renew",
        None,
        &renew(&nonce, "zz".into()),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_signature"))
    );
    // A challenge answered after its two minutes: refused.
    let nonce = challenge(&server).await?;
    clock.advance(120_000);
    let (status, body) = post(
        &server,
        "/api/token/renew",
        None,
        &renew(&nonce, sign(&key, &nonce)),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_challenge"))
    );
    // A made-up device gets no challenge.
    let (status, body) = post(
        &server,
        "/api/token/challenge",
        None,
        &json!({ "device_id": "dev-nobody" }),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_device"))
    );
    // And the genuine answer works: a token the server accepts.
    let nonce = challenge(&server).await?;
    let (status, body) = post(
        &server,
        "/api/token/renew",
        None,
        &renew(&nonce, sign(&key, &nonce)),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().context("token")?;
    assert_eq!(body["expires_in_secs"], 12 * 3600);
    let me = reqwest::Client::new()
        .get(server.http_url("/api/me"))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(me.status(), StatusCode::OK);
    server.stop().await?;
    Ok(())
}
