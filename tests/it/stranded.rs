//! No stranded edits (issue 12): Wang edits a job offline, the desk reassigns it to Li, and
//! Wang's device syncs. His changes are not lost and the device never calls them synced: they
//! are handed to the desk, kept aside (not in the job), shown on the job, and merged into it
//! (then Li's device gets them and the report is signed with them) or discarded with a reason.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use fieldsync_client::{ClientError, Device, Event, Handoff, JobEdit};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::JobDoc;
use fieldsync_tests::{CreatedJob, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client_sdk::{
    Setup, ack_draft, go_offline, online_device, part, setup, sync_options, until,
};

/// A desk call with a dispatcher's token; returns the status and the JSON body.
async fn desk(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let token = server.desk_token(DeskRole::Dispatcher)?;
    let mut request = reqwest::Client::new()
        .request(method, server.http_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn reassign(server: &TestServer, job: DocumentId, to: &str) -> anyhow::Result<()> {
    let (status, body) = desk(
        server,
        reqwest::Method::PUT,
        &format!("/api/jobs/{job}/technicians"),
        // The new assignee may have no device yet (issue 18: pre-assigning new staff).
        Some(json!({ "technicians": [to], "pre_assign": true })),
    )
    .await?;
    ensure!(status == StatusCode::OK, "reassign: {status}: {body}");
    Ok(())
}

/// Wang's device holds the job, goes offline and records the diagnosis, a part and labour.
async fn wang_works_offline(s: &Setup, created: CreatedJob) -> anyhow::Result<Device> {
    let wang = online_device(s, "dev-wang", "tech-wang", Some(created.index), created.job).await?;
    go_offline(&wang).await?;
    wang.edit_all(
        created.job,
        vec![
            JobEdit::FaultCause(Some("Seized compressor bearing".into())),
            JobEdit::Solution(Some("Replaced the bearing".into())),
        ],
    )
    .await?;
    wang.add_part(created.job, part("Bearing 6204", 1)).await?;
    ensure!(wang.job_status(created.job).await?.unsynced);
    Ok(wang)
}

/// Wang's device syncs after the reassignment: the job is handed to the desk. Returns how
/// many changes the server says it holds.
async fn wang_syncs_and_hands_over(
    s: &Setup,
    wang: &Device,
    job: DocumentId,
) -> anyhow::Result<usize> {
    let mut events = wang.events();
    wang.start_sync(sync_options(&s.server, wang)?);
    until(wang, "the job is handed to the desk", || async {
        matches!(
            wang.job_status(job).await.map(|st| st.unassigned),
            Ok(Some(Handoff::HandedToDesk { .. }))
        )
    })
    .await?;
    let status = wang.job_status(job).await?;
    let Some(Handoff::HandedToDesk { changes, .. }) = status.unassigned else {
        bail!("not handed over: {status:?}");
    };
    let mut told = Vec::new();
    while let Ok(event) = events.try_recv() {
        match event {
            Event::JobUnassigned { job: j } if j == job => told.push("unassigned".to_owned()),
            Event::JobHandedOver { job: j, changes } if j == job => {
                told.push(format!("handed over {changes}"))
            }
            Event::Synced { doc } if doc == job => told.push("synced".to_owned()),
            _ => {}
        }
    }
    assert_eq!(
        told,
        ["unassigned".to_owned(), format!("handed over {changes}")],
        "the device is told it was unassigned and how much went to the desk, never synced"
    );
    // Still listed, with where its changes went.
    let listed = wang.jobs().await;
    ensure!(
        listed
            .iter()
            .any(|j| j.id == job && j.status.unassigned.is_some()),
        "the job stays listed as unassigned: {listed:?}"
    );
    // And no longer the device's to edit.
    let refused = wang
        .edit(job, JobEdit::FaultCause(Some("later".into())))
        .await;
    ensure!(
        matches!(refused, Err(ClientError::Unassigned(j)) if j == job),
        "{refused:?}"
    );
    Ok(changes)
}

fn stranded_of(job_body: &Value) -> anyhow::Result<Vec<Value>> {
    Ok(job_body["stranded"]
        .as_array()
        .context("no stranded list on the job")?
        .clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassigned_offline_work_goes_to_the_desk_which_merges_it_and_the_report_is_signed_with_it()
-> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let wang = wang_works_offline(&s, created).await?;

    reassign(&s.server, created.job, "tech-li").await?;
    let changes = wang_syncs_and_hands_over(&s, &wang, created.job).await?;
    ensure!(
        changes >= 2,
        "the fault, solution and part edits: {changes}"
    );

    // Kept aside: shown on the job and in the list, not in the job.
    let body = s.server.get_job(created.job).await?;
    let stranded = stranded_of(&body)?;
    assert_eq!(stranded.len(), 1, "{body}");
    let handover = &stranded[0];
    assert_eq!(handover["status"], "waiting");
    assert_eq!(handover["device_id"], "dev-wang");
    assert_eq!(handover["technician"], "tech-wang");
    assert_eq!(handover["changes"], changes);
    assert!(handover["made_from"].is_string() && handover["received_at"].is_string());
    assert_eq!(body["job"]["diagnosis"]["fault_cause"], Value::Null);
    let (_, waiting) = desk(&s.server, reqwest::Method::GET, "/api/stranded", None).await?;
    assert_eq!(waiting[0]["id"], handover["id"]);

    // The desk merges: the job holds Wang's work, and Li's device gets it.
    let id = handover["id"].as_str().context("id")?.to_owned();
    let (status, merged) = desk(
        &s.server,
        reqwest::Method::POST,
        &format!("/api/stranded/{id}/merge"),
        None,
    )
    .await?;
    ensure!(status == StatusCode::OK, "merge: {status}: {merged}");
    assert_eq!(merged["status"], "merged");
    assert_eq!(merged["decided_by"], "desk:dispatcher");
    let job = s.server.fetch_job(created.job).await?;
    assert_eq!(
        job.diagnosis.fault_cause.as_deref(),
        Some("Seized compressor bearing")
    );
    assert_eq!(job.parts.len(), 1);
    let (status, again) = desk(
        &s.server,
        reqwest::Method::POST,
        &format!("/api/stranded/{id}/merge"),
        None,
    )
    .await?;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_decided"))
    );

    let li = online_device(&s, "dev-li", "tech-li", None, created.job).await?;
    until(&li, "Li's device has Wang's diagnosis", || async {
        li.job(created.job)
            .await
            .is_ok_and(|j| j.diagnosis.fault_cause.as_deref() == Some("Seized compressor bearing"))
    })
    .await?;
    li.edit_all(
        created.job,
        vec![
            JobEdit::Arrival(Some(s.server.now())),
            JobEdit::CustomerOpinion(Some("Runs quietly again".into())),
        ],
    )
    .await?;
    li.check_out(created.job, "Called the desk").await?;
    li.acknowledge(created.job, ack_draft()).await?;
    li.request_completion(created.job).await?;
    until(&li, "the report is signed", || async {
        matches!(
            li.job(created.job).await.map(|j| j.report),
            Ok(Some(ReportOutcome::Signed { .. }))
        )
    })
    .await?;
    let Some(ReportOutcome::Signed { report_id, .. }) = li.job(created.job).await?.report else {
        bail!("not signed");
    };
    let token = s.server.desk_token(DeskRole::Analyst)?;
    let report: Value = reqwest::Client::new()
        .get(s.server.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let text = report.to_string();
    ensure!(
        text.contains("Seized compressor bearing") && text.contains("Bearing 6204"),
        "the signed report carries the merged work: {text}"
    );
    wang.close().await;
    li.close().await;
    s.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_discards_handed_over_work_with_a_reason_and_the_job_is_unchanged()
-> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let wang = wang_works_offline(&s, created).await?;
    reassign(&s.server, created.job, "tech-li").await?;
    wang_syncs_and_hands_over(&s, &wang, created.job).await?;
    let before = s.server.get_job(created.job).await?;
    let id = stranded_of(&s.server.get_job(created.job).await?)?[0]["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let path = format!("/api/stranded/{id}/discard");
    let (status, body) = desk(
        &s.server,
        reqwest::Method::POST,
        &path,
        Some(json!({"reason": " "})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_field"))
    );
    let (status, body) = desk(
        &s.server,
        reqwest::Method::POST,
        &path,
        Some(json!({"reason": "Li re-diagnosed on site: the bearing was fine"})),
    )
    .await?;
    ensure!(status == StatusCode::OK, "discard: {status}: {body}");
    let after = s.server.get_job(created.job).await?;
    assert_eq!(after["heads"], before["heads"], "the job is unchanged");
    let kept = &stranded_of(&after)?[0];
    assert_eq!(kept["status"], "discarded");
    assert_eq!(
        kept["reason"],
        "Li re-diagnosed on site: the bearing was fine"
    );
    let (_, waiting) = desk(&s.server, reqwest::Method::GET, "/api/stranded", None).await?;
    assert_eq!(waiting, json!([]));
    let (_, all) = desk(
        &s.server,
        reqwest::Method::GET,
        "/api/stranded?status=all",
        None,
    )
    .await?;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (status, body) = desk(
        &s.server,
        reqwest::Method::POST,
        &format!("/api/stranded/{id}/merge"),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_decided"))
    );
    wang.close().await;
    s.server.stop().await
}

/// The handover endpoint itself: only a former assignee's device, only what a device may
/// write, only changes that build on the job; a retried handover is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_is_checked_like_sync_and_stored_once() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let wang = s.server.enroll("tech-wang", "dev-w")?;
    let zhao = s.server.enroll("tech-zhao", "dev-z")?;
    let stored = s.server.stored_doc(created.job)?;
    let post = |device: &fieldsync_shared::ids::DeviceId, bytes: Vec<u8>| {
        let token = s.server.device_token(device, Duration::from_secs(600));
        let url = s.server.http_url(&format!("/api/handoffs/{}", created.job));
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token?)
                .body(bytes)
                .send()
                .await?;
            let status = response.status();
            anyhow::Ok((
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            ))
        }
    };
    let edit = |f: &dyn Fn(&mut AutoCommit)| -> anyhow::Result<Vec<u8>> {
        let mut doc = AutoCommit::load(&stored.save())?;
        doc.set_actor(automerge::ActorId::from([7u8; 16]));
        let heads = doc.get_heads();
        f(&mut doc);
        Ok(doc.save_after(&heads))
    };
    let legit = edit(&|d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_fault_cause(Some("worn belt")).expect("edit");
        *d = job.into_inner();
    })?;

    let (status, body) = post(&wang, legit.clone()).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("still_assigned"))
    );
    reassign(&s.server, created.job, "tech-li").await?;
    let (status, body) = post(&zhao, legit.clone()).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_job"))
    );
    let forbidden = edit(&|d| {
        d.put(ROOT, "bonus", 1).expect("put");
    })?;
    let (status, body) = post(&wang, forbidden).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("write_forbidden"))
    );
    assert!(
        body["message"].as_str().unwrap_or("").contains("bonus"),
        "{body}"
    );
    let (status, body) = post(&wang, b"not automerge".to_vec()).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_changes"))
    );

    let (status, first) = post(&wang, legit.clone()).await?;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["changes"], 1);
    let (status, again) = post(&wang, legit).await?;
    assert_eq!(
        (status, &again["id"]),
        (StatusCode::OK, &first["id"]),
        "stored once"
    );
    let listed = stranded_of(&s.server.get_job(created.job).await?)?;
    assert_eq!(listed.len(), 1);
    s.server.stop().await
}
