//! Approvals and expenses from the device (issue 15, point 4): R12, R18 and R31 requests and
//! R28 travel expenses raised with `Device::request_approval` (offline too), decided at the
//! desk, and the decision back on the device as an event and in its reads.

use std::time::Duration;

use anyhow::Context;
use fieldsync_client::{
    ApprovalDraft, ApprovalKind, ClientError, ClientTls, Device, Event, SyncOptions, SyncState,
    TravelExpense,
};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::time::{CalendarDate, Money};
use fieldsync_tests::{TestServer, eventually, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::broadcast;

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    role: DeskRole,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .request(method, server.http_url(path))
        .bearer_auth(server.desk_token(role)?);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

/// A device enrolled by code for `technician`, syncing with `server` until the job is on it.
async fn device_with_job(
    server: &TestServer,
    dir: &std::path::Path,
    technician: &str,
    job: DocumentId,
) -> anyhow::Result<Device> {
    let (status, code) = call(
        server,
        reqwest::Method::POST,
        "/api/enrollment-codes",
        DeskRole::Manager,
        Some(json!({ "technician": technician })),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{code}");
    let tls = ClientTls::system();
    let (device, _) = Device::enroll_with_code(
        dir.join(format!("{technician}.sqlite")),
        dir.join(format!("{technician}.key")),
        &server.ws_url(),
        &tls,
        code["code"].as_str().context("code")?,
    )
    .await?;
    start(&device, server);
    eventually(Duration::from_secs(20), "the job arrives", || async {
        device.job(job).await.is_ok().then_some(())
    })
    .await?;
    Ok(device)
}

fn start(device: &Device, server: &TestServer) {
    let saved = device.key_renewal(server.ws_url(), ClientTls::system());
    device.start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(saved));
}

/// Waits until the server holds every local change of `job`.
async fn synced(device: &Device, job: DocumentId) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(20),
        "the device's changes reach the server",
        || async {
            let status = device.job_status(job).await.ok()?;
            (!status.unsynced).then_some(())
        },
    )
    .await
}

async fn decided(
    events: &mut broadcast::Receiver<Event>,
    approval: &str,
) -> anyhow::Result<(bool, String)> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::ApprovalDecided {
                    approval: id,
                    approved,
                    by,
                    ..
                }) if id == approval => return Ok((approved, by)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => anyhow::bail!("events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .context("no ApprovalDecided event")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_raised_offline_is_decided_at_the_desk_and_the_device_sees_it()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_in(&dir.path().join("edge")).await?;
    let job = server.create_job("tech-wang").await?.job;
    let device = device_with_job(&server, dir.path(), "tech-wang", job).await?;

    // Offline: the technician asks for an extension (R12) and a large warranty part (R18).
    device.stop_sync();
    assert_eq!(device.sync_state(), SyncState::Offline);
    let extension = device
        .request_approval(
            job,
            ApprovalDraft {
                kind: ApprovalKind::Extension,
                reason: "compressor on back order until Friday".into(),
                amount: None,
                expense: None,
            },
        )
        .await?;
    let part = device
        .request_approval(
            job,
            ApprovalDraft {
                kind: ApprovalKind::WarrantyPart,
                reason: "compressor replaced under warranty".into(),
                // Above the default director_approval_above (1000.00).
                amount: Some(Money(250_000)),
                expense: None,
            },
        )
        .await?;
    // Bad requests are refused on the device, in words, before anything is written.
    for (kind, reason, amount) in [
        (ApprovalKind::ProductReturn, "  ", None),
        (ApprovalKind::WarrantyPart, "no amount", None),
        (ApprovalKind::WarrantyPart, "negative", Some(Money(-5))),
    ] {
        let refused = device
            .request_approval(
                job,
                ApprovalDraft {
                    kind,
                    reason: reason.into(),
                    amount,
                    expense: None,
                },
            )
            .await;
        assert!(
            matches!(refused, Err(ClientError::InvalidApproval(_))),
            "{refused:?}"
        );
    }
    assert_eq!(device.approvals(job).await?.len(), 2);
    assert!(device.job_status(job).await?.unsynced);

    // Back online: the requests reach the desk's queue.
    let mut events = device.events();
    start(&device, &server);
    synced(&device, job).await?;
    let queue = eventually(
        Duration::from_secs(20),
        "the desk's queue lists both",
        || async {
            let (_, body) = call(
                &server,
                reqwest::Method::GET,
                "/api/approvals?pending=true",
                DeskRole::Manager,
                None,
            )
            .await
            .ok()?;
            let list = body["approvals"].as_array().cloned().unwrap_or_default();
            (list.len() == 2).then_some(list)
        },
    )
    .await?;
    let of = |id: &str| {
        queue
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(of(&extension.id)["approver"], "manager");
    assert_eq!(of(&part.id)["approver"], "director");
    assert_eq!(of(&part.id)["large_amount"], true);

    // A manager decides the extension; the large part is the director's.
    let decide = |id: &str| format!("/api/jobs/{job}/approvals/{id}/decision");
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &decide(&extension.id),
        DeskRole::Manager,
        Some(json!({ "approved": true, "note": "until Friday" })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &decide(&part.id),
        DeskRole::Manager,
        Some(json!({ "approved": true })),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("director_approval"))
    );
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &decide(&part.id),
        DeskRole::Director,
        Some(json!({ "approved": false, "note": "claim the supplier first" })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The device hears both decisions and shows them.
    assert_eq!(
        decided(&mut events, &extension.id).await?,
        (true, "desk:manager".into())
    );
    assert_eq!(
        decided(&mut events, &part.id).await?,
        (false, "desk:director".into())
    );
    let seen = device.approvals(job).await?;
    let note = |id: &str| {
        seen.iter()
            .find(|a| a.id == id)
            .and_then(|a| a.decision.as_ref())
            .map(|d| d.note.clone())
    };
    assert_eq!(note(&extension.id).as_deref(), Some("until Friday"));
    assert_eq!(note(&part.id).as_deref(), Some("claim the supplier first"));
    device.close().await;
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r28_travel_expenses_are_approved_at_the_desk_and_counted_in_the_month()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_in(&dir.path().join("edge")).await?;
    let job = server.create_job("tech-wang").await?.job;
    let device = device_with_job(&server, dir.path(), "tech-wang", job).await?;
    let claim = |day: u8, category: &str, amount: i64| ApprovalDraft {
        kind: ApprovalKind::TravelExpense,
        reason: "to the customer's plant".into(),
        amount: Some(Money(amount)),
        expense: CalendarDate::from_ymd(2026, 11, day)
            .ok()
            .map(|date| TravelExpense {
                date,
                from: "Branch north-01".into(),
                to: "Plant 3".into(),
                category: category.into(),
                receipt: None,
            }),
    };
    let train = device
        .request_approval(job, claim(20, "train", 12_050))
        .await?;
    let taxi = device
        .request_approval(job, claim(21, "taxi", 4_000))
        .await?;
    let refused_one = device
        .request_approval(job, claim(22, "taxi", 9_900))
        .await?;
    let _waiting = device
        .request_approval(job, claim(23, "lodging", 30_000))
        .await?;
    // October's claim is not November's.
    let mut october = claim(1, "train", 1_000);
    if let Some(e) = october.expense.as_mut() {
        e.date = CalendarDate::from_ymd(2026, 10, 31)?;
    }
    device.request_approval(job, october).await?;
    let mut no_travel = claim(20, "train", 100);
    no_travel.expense = None;
    assert!(matches!(
        device.request_approval(job, no_travel).await,
        Err(ClientError::InvalidApproval(_))
    ));
    synced(&device, job).await?;
    eventually(
        Duration::from_secs(20),
        "the claims are in the queue",
        || async {
            let (_, body) = call(
                &server,
                reqwest::Method::GET,
                "/api/approvals",
                DeskRole::Manager,
                None,
            )
            .await
            .ok()?;
            (body["approvals"].as_array().map_or(0, Vec::len) >= 5).then_some(())
        },
    )
    .await?;
    for (id, approved) in [
        (&train.id, true),
        (&taxi.id, true),
        (&refused_one.id, false),
    ] {
        let (status, body) = call(
            &server,
            reqwest::Method::POST,
            &format!("/api/jobs/{job}/approvals/{id}/decision"),
            DeskRole::Manager,
            Some(json!({ "approved": approved })),
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rule"], "R28");
        assert_eq!(body["travel"]["to"], "Plant 3");
    }
    let (status, month) = call(
        &server,
        reqwest::Method::GET,
        "/api/expenses?month=2026-11",
        DeskRole::Analyst,
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{month}");
    assert_eq!(month["approved_amount"], 16_050);
    assert_eq!(month["approved"].as_array().map(Vec::len), Some(2));
    assert_eq!(month["waiting"], 1);
    assert_eq!(month["refused"], 1);
    assert_eq!(
        month["by_category"],
        json!([
            { "key": "taxi", "claims": 1, "amount": 4_000 },
            { "key": "train", "claims": 1, "amount": 12_050 },
        ])
    );
    assert_eq!(
        month["by_technician"],
        json!([{ "key": "tech-wang", "claims": 2, "amount": 16_050 }])
    );
    let (status, body) = call(
        &server,
        reqwest::Method::GET,
        "/api/expenses?month=November",
        DeskRole::Analyst,
        None,
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_month"))
    );
    device.close().await;
    server.stop().await?;
    Ok(())
}
