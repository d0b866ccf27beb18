//! Coherent merges (issue 15, point 3): two technicians offline on one job, each on their own
//! device, write parts of the work group and the same part; after they sync the edge signer
//! refuses with `unresolved_conflict` naming the fields and `possible_duplicate_part`, until a
//! technician (`fieldsync-tech resolve`, the real binary) and the desk
//! (`POST /api/jobs/{id}/resolve`) resolve them; then the report is signed. The rule for each
//! field: docs/MERGE-RULES.md.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use fieldsync_client::{AckDraft, ClientTls, Device, JobEdit, PartDraft, SyncOptions};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::Resolution;
use fieldsync_shared::job::{
    Job, Labour, PartLineId, RefusalReason, ReportOutcome, SignatureMark, Survey,
};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{TestServer, eventually, tech_cli, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn call(
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

/// A device enrolled by code for `technician` (not syncing yet).
pub(crate) async fn enroll(
    server: &TestServer,
    dir: &Path,
    technician: &str,
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
    let (device, _) = Device::enroll_with_code(
        dir.join(format!("{technician}.sqlite")),
        dir.join(format!("{technician}.key")),
        &server.ws_url(),
        &ClientTls::system(),
        code["code"].as_str().context("code")?,
    )
    .await?;
    Ok(device)
}

pub(crate) fn start(device: &Device, server: &TestServer) {
    let saved = device.key_renewal(server.ws_url(), ClientTls::system());
    device.start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(saved));
}

pub(crate) async fn holds(device: &Device, job: DocumentId) -> anyhow::Result<()> {
    eventually(WAIT, "the job arrives on the device", || async {
        device.job(job).await.is_ok().then_some(())
    })
    .await
}

pub(crate) async fn synced(device: &Device, job: DocumentId) -> anyhow::Result<()> {
    eventually(WAIT, "the device's changes reach the server", || async {
        let status = device.job_status(job).await.ok()?;
        (!status.unsynced).then_some(())
    })
    .await
}

/// Two technicians, each with a device holding one job assigned to both; both offline.
struct TwoOnOneJob {
    server: TestServer,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    job: DocumentId,
    wang: Device,
    li: Device,
}

async fn two_on_one_job() -> anyhow::Result<TwoOnOneJob> {
    let dir = temp_dir()?;
    let path = dir.path().to_path_buf();
    let server = TestServer::start_in(&path.join("edge")).await?;
    let job = server.create_job("tech-wang").await?.job;
    let wang = enroll(&server, &path, "tech-wang").await?;
    let li = enroll(&server, &path, "tech-li").await?;
    let (status, body) = call(
        &server,
        reqwest::Method::PUT,
        &format!("/api/jobs/{job}/technicians"),
        DeskRole::Dispatcher,
        Some(json!({ "technicians": ["tech-wang", "tech-li"] })),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    for device in [&wang, &li] {
        start(device, &server);
        holds(device, job).await?;
        device.stop_sync();
    }
    Ok(TwoOnOneJob {
        server,
        _dir: dir,
        dir: path,
        job,
        wang,
        li,
    })
}

fn relay(number: &str) -> PartDraft {
    PartDraft {
        part_number: number.into(),
        name: "Relay".into(),
        specification: "24 V".into(),
        quantity: 1,
        unit_price: Money(2500),
        warranty: false,
    }
}

pub(crate) fn ack() -> AckDraft {
    AckDraft {
        signer_name: "Ms Chen".into(),
        signature: SignatureMark::Strokes {
            strokes: vec![vec![[0, 0], [10, 4], [20, 9]]],
        },
        signed_at: Timestamp::from_millis(1_790_000_000_000),
        survey: Survey::answered(5, 4, 5, 4, ""),
    }
}

pub(crate) async fn outcome(device: &Device, job: DocumentId, after: usize) -> anyhow::Result<Job> {
    eventually(WAIT, "the branch answers the completion", || async {
        let read = device.job(job).await.ok()?;
        let answers = read
            .timeline
            .iter()
            .filter(|e| e.kind == "report_signed" || e.kind == "report_refused")
            .count();
        (answers > after).then_some(read)
    })
    .await
}

pub(crate) fn reasons(job: &Job) -> Vec<RefusalReason> {
    match &job.report {
        Some(ReportOutcome::Refused { reasons, .. }) => reasons.clone(),
        other => panic!("expected a refusal, found {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incoherent_merge_is_refused_until_resolved_then_signed() -> anyhow::Result<()> {
    let TwoOnOneJob {
        server,
        _dir,
        dir,
        job,
        wang,
        li,
    } = two_on_one_job().await?;
    let server = &server;

    // Offline, Wang does the whole job, gets the customer's signature and completes it.
    let wang_line = wang.add_part(job, relay("PN-7")).await?;
    wang.edit_all(
        job,
        vec![
            JobEdit::FaultCause(Some("Worn relay contacts".into())),
            JobEdit::Solution(Some("Replaced the relay".into())),
            JobEdit::Labour(Labour {
                minutes: 45,
                rate_per_hour: Money(12000),
            }),
            JobEdit::CustomerOpinion(Some("Quick and tidy".into())),
        ],
    )
    .await?;
    wang.check_out(job, "leaving site").await?;
    wang.acknowledge(job, ack()).await?;
    wang.request_completion(job).await?;

    // Offline too, Li writes another cause, solution and labour, and adds the relay he also
    // fitted.
    let li_line = li.add_part(job, relay("pn-7")).await?;
    li.edit_all(
        job,
        vec![
            JobEdit::FaultCause(Some("Low refrigerant".into())),
            JobEdit::Solution(Some("Recharged the refrigerant".into())),
            JobEdit::Labour(Labour {
                minutes: 90,
                rate_per_hour: Money(12000),
            }),
        ],
    )
    .await?;

    // Li syncs first, then Wang's completion reaches a server that holds both.
    start(&li, server);
    synced(&li, job).await?;
    start(&wang, server);
    synced(&wang, job).await?;
    let refused = outcome(&wang, job, 0).await?;
    let why = reasons(&refused);
    let conflict = why
        .iter()
        .find(|r| r.code == "unresolved_conflict")
        .with_context(|| format!("no unresolved_conflict in {why:?}"))?;
    assert_eq!(conflict.rule, "R7");
    for field in [
        "diagnosis.fault_cause",
        "diagnosis.solution",
        "labour.minutes",
    ] {
        assert!(
            conflict.message.contains(field),
            "{field} named: {}",
            conflict.message
        );
    }
    assert!(
        why.iter().any(|r| r.code == "possible_duplicate_part"),
        "{why:?}"
    );
    // The desk sees the same through the API.
    let (status, seen) = call(
        server,
        reqwest::Method::GET,
        &format!("/api/jobs/{job}"),
        DeskRole::Manager,
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let groups: Vec<&str> = seen["unresolved"]
        .as_array()
        .context("unresolved")?
        .iter()
        .filter_map(|u| u["group"].as_str())
        .collect();
    assert_eq!(groups, vec!["work", "duplicate_part:PN-7"], "{seen}");

    // Wang resolves the work with the real CLI, on his device's store.
    let store = dir.join("tech-wang.sqlite");
    wang.stop_sync();
    wang.close().await;
    let (ok, listed, err) = tech_cli(&store, &["resolve", &job.to_string()])?;
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&listed)?;
    assert_eq!(
        listed["unresolved"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let (ok, _, err) = tech_cli(&store, &["resolve", &job.to_string(), "part", &wang_line.0])?;
    assert!(!ok, "a coherent part line has nothing to resolve");
    assert!(err.contains("nothing to resolve"), "{err}");
    let (ok, out, err) = tech_cli(
        &store,
        &[
            "resolve",
            &job.to_string(),
            "work",
            "--cause",
            "Worn relay contacts",
            "--solution",
            "Replaced the relay",
            "--minutes",
            "45",
        ],
    )?;
    assert!(ok, "{err}");
    let out: Value = serde_json::from_str(&out)?;
    assert_eq!(out["resolution"]["by"], "tech-wang");
    assert_eq!(out["resolution"]["group"], "work");

    // The desk confirms the duplicate: one relay was fitted, Wang's line stays.
    let (status, body) = call(
        server,
        reqwest::Method::POST,
        &format!("/api/jobs/{job}/resolve"),
        DeskRole::Dispatcher,
        Some(json!({ "group": "duplicate_part:PN-7", "values": { "keep": [wang_line.0] } })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Wang's resolution of the work is on his device only, not synced yet.
    let left: Vec<&str> = body["unresolved"]
        .as_array()
        .context("unresolved")?
        .iter()
        .filter_map(|u| u["group"].as_str())
        .collect();
    assert_eq!(left, vec!["work"], "{body}");
    assert!(
        body["resolution"]["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("desk:")),
        "{body}"
    );

    // Wang's device gets the desk's resolution and sends its own; Li's device sees both.
    let wang = Device::reopen(&store).await?;
    start(&wang, server);

    synced(&wang, job).await?;
    eventually(WAIT, "both resolutions reach both devices", || async {
        let (w, l) = (
            wang.resolutions(job).await.ok()?,
            li.resolutions(job).await.ok()?,
        );
        (w.len() == 2 && l.len() == 2).then_some(())
    })
    .await?;
    assert!(wang.unresolved(job).await?.is_empty());
    let now = wang.job(job).await?;
    assert_eq!(
        now.diagnosis.solution.as_deref(),
        Some("Replaced the relay")
    );
    assert_eq!(now.labour.minutes, 45);
    let lines: Vec<&PartLineId> = now.parts.iter().map(|p| &p.id).collect();
    assert_eq!(lines, vec![&wang_line]);
    assert_ne!(wang_line, li_line);

    // The job changed since the customer signed: the customer signs the resolved job.
    wang.acknowledge(job, ack()).await?;
    wang.request_completion(job).await?;
    let signed = outcome(&wang, job, 1).await?;
    assert!(
        matches!(signed.report, Some(ReportOutcome::Signed { .. })),
        "{:?}",
        signed.report
    );
    wang.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_part_added_on_two_devices_is_flagged_until_a_technician_confirms()
-> anyhow::Result<()> {
    let t = two_on_one_job().await?;
    let (job, server) = (t.job, &t.server);
    let a = t.wang.add_part(job, relay("PN-9")).await?;
    let b = t.li.add_part(job, relay("PN-9")).await?;
    start(&t.wang, server);
    start(&t.li, server);
    synced(&t.wang, job).await?;
    synced(&t.li, job).await?;
    eventually(WAIT, "both devices see both lines", || async {
        let (w, l) = (t.wang.job(job).await.ok()?, t.li.job(job).await.ok()?);
        (w.parts.len() == 2 && l.parts.len() == 2).then_some(())
    })
    .await?;
    let flagged = t.li.unresolved(job).await?;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0].code, "possible_duplicate_part");
    let mut lines = flagged[0].lines.clone();
    lines.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(lines, both);
    // The desk's board flags the job.
    let (status, board) = call(
        server,
        reqwest::Method::GET,
        "/api/jobs?status=conflicts",
        DeskRole::Dispatcher,
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{board}");
    assert_eq!(board["total"], 1, "{board}");
    assert_eq!(board["jobs"][0]["conflicts"], 1, "{board}");
    // The customer is not asked to sign over it.
    let missing = t.li.missing(job).await?;
    assert!(missing.iter().any(|m| m.code == "possible_duplicate_part"));

    // The desk's refusals are clear: nothing to resolve in the work, a field of another group.
    let path = format!("/api/jobs/{job}/resolve");
    let post = |body: Value| {
        call(
            server,
            reqwest::Method::POST,
            &path,
            DeskRole::Manager,
            Some(body),
        )
    };
    let (status, body) = post(json!({ "group": "work" })).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("nothing_to_resolve"))
    );
    let (status, body) =
        post(json!({ "group": "duplicate_part:PN-9", "values": { "quantity": 2 } })).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_field"))
    );
    let (status, body) = post(json!({ "group": "everything" })).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_group"))
    );
    let (status, body) =
        post(json!({ "group": "duplicate_part:PN-9", "values": { "keep": ["nope"] } })).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_resolution")),
        "{body}"
    );
    let (status, _) = call(
        server,
        reqwest::Method::POST,
        &path,
        DeskRole::Analyst,
        Some(json!({ "group": "work" })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Li confirms: two relays were really fitted. Both lines stay and the flag goes everywhere.
    let record =
        t.li.resolve(
            job,
            Resolution::DuplicatePart {
                part_number: "PN-9".into(),
                keep: vec![a.clone(), b.clone()],
            },
        )
        .await?;
    assert_eq!(record.by, "tech-li");
    eventually(WAIT, "Wang's device sees the confirmation", || async {
        let open = t.wang.unresolved(job).await.ok()?;
        let done = t.wang.resolutions(job).await.ok()?;
        (open.is_empty() && done.len() == 1).then_some(())
    })
    .await?;
    assert_eq!(t.wang.job(job).await?.parts.len(), 2);
    Ok(())
}
