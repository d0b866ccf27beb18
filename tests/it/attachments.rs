//! Attachments (issue 15, point 5), against the real `fieldsync` binary and the SDK: photos
//! captured offline, uploaded on sync (resumable, size-limited, checked by SHA-256), listed by
//! digest in the signed report, a tampered blob caught on the device, in transit and on the
//! edge's disk, and nobody but the job's technician and the branch's desk reading them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fieldsync_client::{
    AttachmentKind, ClientError, ClientTls, Device, JobEdit, SyncOptions, UploadOutcome, now,
};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::attachments::blob_digest;
use fieldsync_tests::{
    ServerProcess, cli, eventually, fieldsync_binary, sample_job_body, temp_dir,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::client_sdk::{ack_draft, part};

/// The edge's attachment limit in these tests (a 5 MB photo is over it).
const LIMIT: &str = "4000000";

/// A real edge process and its desk token.
struct Edge {
    server: ServerProcess,
    desk: String,
}

fn start_edge(data: &Path) -> anyhow::Result<Edge> {
    let server =
        ServerProcess::start_with(data, &[], &[("FIELDSYNC_MAX_ATTACHMENT_BYTES", LIMIT)])?;
    let desk = cli(data, &["desk", "token", "--role", "manager"])?;
    Ok(Edge { server, desk })
}

impl Edge {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = reqwest::Client::new()
            .request(method, self.server.http_url(path))
            .bearer_auth(&self.desk);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn create_job(&self, technician: &str) -> anyhow::Result<DocumentId> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/jobs",
                Some(sample_job_body(technician)),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "create job: {status} {body}");
        Ok(DocumentId::from_url(body["url"].as_str().context("url")?)?)
    }

    /// A device enrolled by a one-time code, synced until `job` is on it, then offline.
    async fn device(
        &self,
        dir: &Path,
        technician: &str,
        job: Option<DocumentId>,
    ) -> anyhow::Result<Device> {
        let (status, code) = self
            .call(
                reqwest::Method::POST,
                "/api/enrollment-codes",
                Some(json!({ "technician": technician })),
            )
            .await?;
        ensure!(status == StatusCode::CREATED, "{code}");
        let (device, _) = Device::enroll_with_code(
            dir.join(format!("{technician}.sqlite")),
            dir.join(format!("{technician}.key")),
            &self.server.ws_url(),
            &ClientTls::system(),
            code["code"].as_str().context("code")?,
        )
        .await?;
        if let Some(job) = job {
            self.start(&device);
            eventually(Duration::from_secs(20), "the job arrives", || async {
                device.job(job).await.is_ok().then_some(())
            })
            .await?;
            device.stop_sync();
        }
        Ok(device)
    }

    fn start(&self, device: &Device) {
        let renewal = device.key_renewal(self.server.ws_url(), ClientTls::system());
        device.start_sync(
            SyncOptions::new(self.server.ws_url(), String::new()).with_renewal(renewal),
        );
    }

    async fn status(&self, job: DocumentId, digest: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/jobs/{job}/attachments/{digest}/status"),
                None,
            )
            .await?;
        ensure!(status == StatusCode::OK, "status: {status} {body}");
        Ok(body)
    }
}

async fn device_token(device: &Device) -> anyhow::Result<String> {
    Ok(device.saved_token().await?.context("a saved token")?.token)
}

/// `n` bytes that differ for every `seed` (incompressible, like a JPEG).
fn photo(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Everything the customer's signature needs, then the signature.
async fn ready_and_signed(device: &Device, job: DocumentId) -> anyhow::Result<()> {
    device
        .edit_all(
            job,
            vec![
                JobEdit::FaultCause(Some("Blocked condenser".into())),
                JobEdit::Solution(Some("Cleaned the condenser".into())),
                JobEdit::CustomerOpinion(Some("Satisfied".into())),
            ],
        )
        .await?;
    device.add_part(job, part("Filter", 1)).await?;
    device.check_out(job, "Reported to the desk").await?;
    device.acknowledge(job, ack_draft()).await?;
    Ok(())
}

/// The branch's answer to the latest completion request, once it is there.
async fn outcome(
    device: &Device,
    job: DocumentId,
    after: Option<&ReportOutcome>,
) -> anyhow::Result<ReportOutcome> {
    eventually(
        Duration::from_secs(30),
        "the branch answers the completion",
        || async {
            let report = device.job(job).await.ok()?.report?;
            (Some(&report) != after).then_some(report)
        },
    )
    .await
}

fn codes(outcome: &ReportOutcome) -> Vec<String> {
    match outcome {
        ReportOutcome::Refused { reasons, .. } => reasons.iter().map(|r| r.code.clone()).collect(),
        ReportOutcome::Signed { .. } => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_photos_taken_offline_are_uploaded_on_sync_and_signed_by_digest()
-> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let edge = start_edge(data.path())?;
    let job = edge.create_job("tech-wang").await?;
    let device = edge.device(devices.path(), "tech-wang", Some(job)).await?;

    // Offline: twenty photos of 3 MB, before and after the work.
    let mut digests = Vec::new();
    for i in 0..20u64 {
        let kind = if i < 10 {
            AttachmentKind::Before
        } else {
            AttachmentKind::After
        };
        let bytes = photo(i + 1, 3_000_000);
        let attached = device
            .attach(
                job,
                bytes.clone(),
                kind,
                "image/jpeg",
                &format!("IMG_{i:04}.jpg"),
                now(),
            )
            .await?;
        ensure!(attached.digest == blob_digest(&bytes) && attached.size == 3_000_000);
        digests.push(attached.digest);
    }
    digests.sort();
    ensure!(device.pending_attachments().await.len() == 20);
    ensure!(
        device
            .job(job)
            .await?
            .attachments
            .iter()
            .map(|a| &a.digest)
            .eq(digests.iter())
    );
    ready_and_signed(&device, job).await?;
    device.request_completion(job).await?;

    // Online: the document and the blobs go up; the branch signs once every blob is there.
    edge.start(&device);
    eventually(
        Duration::from_secs(25),
        "every photo is uploaded",
        || async { device.pending_attachments().await.is_empty().then_some(()) },
    )
    .await?;
    let signed = outcome(&device, job, None).await?;
    let report_id = match &signed {
        ReportOutcome::Signed { report_id, .. } => report_id.clone(),
        // Signed before the last photo arrived it could not be: refused for that reason only,
        // then signed on the next request.
        ReportOutcome::Refused { reasons, .. } => {
            ensure!(
                reasons.iter().all(|r| r.code == "attachment_missing"),
                "{reasons:?}"
            );
            device.edit(job, JobEdit::Reopen).await?;
            device.request_completion(job).await?;
            match outcome(&device, job, Some(&signed)).await? {
                ReportOutcome::Signed { report_id, .. } => report_id,
                other => bail!("not signed: {other:?}"),
            }
        }
    };
    device.stop_sync();

    // The signed report lists every digest, and the branch's signature covers them.
    let (status, report) = edge
        .call(
            reqwest::Method::GET,
            &format!("/api/reports/{report_id}"),
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{report}");
    let listed: Vec<&str> = report["body"]["content"]["attachments"]
        .as_array()
        .context("attachments in the report")?
        .iter()
        .filter_map(|a| a["digest"].as_str())
        .collect();
    ensure!(
        listed == digests.iter().map(String::as_str).collect::<Vec<_>>(),
        "{listed:?}"
    );
    let trust = data.path().join("trust");
    cli(
        data.path(),
        &["trust", "export", "--out", trust.to_str().context("path")?],
    )?;
    let genuine = data.path().join("report.json");
    let raw = reqwest::Client::new()
        .get(edge.server.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(&edge.desk)
        .send()
        .await?
        .bytes()
        .await?;
    std::fs::write(&genuine, &raw)?;
    let verify = |file: &Path| -> anyhow::Result<(bool, String)> {
        let out = Command::new(fieldsync_binary()?)
            .arg("verify")
            .arg(file)
            .arg("--trust")
            .arg(&trust)
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let (ok, out) = verify(&genuine)?;
    ensure!(ok, "{out}");
    // One photo swapped for other bytes: the report no longer verifies.
    let mut swapped = report.clone();
    swapped["body"]["content"]["attachments"][0]["digest"] = json!(blob_digest(b"another photo"));
    let swapped_file = data.path().join("swapped.json");
    std::fs::write(&swapped_file, serde_json::to_vec(&swapped)?)?;
    let (ok, out) = verify(&swapped_file)?;
    ensure!(!ok && out.contains("bad_branch_signature"), "{out}");

    // The desk reads a photo back, byte for byte.
    let bytes = reqwest::Client::new()
        .get(
            edge.server
                .http_url(&format!("/api/jobs/{job}/attachments/{}", digests[3])),
        )
        .bearer_auth(&edge.desk)
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(blob_digest(&bytes) == digests[3]);

    // What the edge acknowledged survives SIGKILL.
    let addr = edge.server.addr;
    edge.server.kill()?;
    let server = ServerProcess::start_at(
        &fieldsync_binary()?,
        data.path(),
        addr,
        &[],
        &[("FIELDSYNC_MAX_ATTACHMENT_BYTES", LIMIT)],
    )?;
    let edge = Edge {
        server,
        desk: edge.desk,
    };
    for digest in &digests {
        let status = edge.status(job, digest).await?;
        ensure!(
            status["complete"] == json!(true) && status["received"] == json!(3_000_000),
            "{status}"
        );
    }
    device.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_blob_is_caught_on_the_device_in_transit_and_on_the_edge() -> anyhow::Result<()>
{
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let edge = start_edge(data.path())?;
    let job = edge.create_job("tech-wang").await?;
    let device = edge.device(devices.path(), "tech-wang", Some(job)).await?;
    let token = device_token(&device).await?;
    let tls = ClientTls::system();

    let original = photo(7, 200_000);
    let after = device
        .attach(
            job,
            original.clone(),
            AttachmentKind::After,
            "image/jpeg",
            "after.jpg",
            now(),
        )
        .await?;
    ready_and_signed(&device, job).await?;

    // Changed on the device's disk: never sent.
    let local = device.blobs().path(&after.digest);
    let mut bad = original.clone();
    bad[100] ^= 0xff;
    std::fs::write(&local, &bad)?;
    let outcomes = device
        .upload_attachments(&edge.server.ws_url(), &token, &tls)
        .await;
    ensure!(
        matches!(outcomes.as_slice(), [UploadOutcome::Corrupt { .. }]),
        "{outcomes:?}"
    );
    ensure!(edge.status(job, &after.digest).await?["received"] == json!(0));

    // Bytes that do not match their name, sent by hand: refused, nothing kept.
    let response = reqwest::Client::new()
        .put(
            edge.server
                .http_url(&format!("/api/jobs/{job}/attachments/{}", after.digest)),
        )
        .bearer_auth(&token)
        .body(bad.clone())
        .send()
        .await?;
    ensure!(response.status() == StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await?;
    ensure!(body["code"] == "digest_mismatch", "{body}");
    ensure!(edge.status(job, &after.digest).await?["received"] == json!(0));

    // The job references a photo the branch does not have: no report.
    edge.start(&device);
    device.request_completion(job).await?;
    let refused = outcome(&device, job, None).await?;
    ensure!(codes(&refused) == ["attachment_missing"], "{refused:?}");

    // Put right on the device, it goes up.
    std::fs::write(&local, &original)?;
    let outcomes = device
        .upload_attachments(&edge.server.ws_url(), &token, &tls)
        .await;
    ensure!(
        matches!(outcomes.as_slice(), [UploadOutcome::Uploaded { .. }]),
        "{outcomes:?}"
    );

    // Changed on the edge's disk: neither served nor signed.
    let stored = data.path().join("attachments").join(&after.digest);
    std::fs::write(&stored, &bad)?;
    let (status, body) = edge
        .call(
            reqwest::Method::GET,
            &format!("/api/jobs/{job}/attachments/{}", after.digest),
            None,
        )
        .await?;
    ensure!(
        status == StatusCode::INTERNAL_SERVER_ERROR && body["code"] == "attachment_corrupt",
        "{status} {body}"
    );
    device.edit(job, JobEdit::Reopen).await?;
    device.request_completion(job).await?;
    let corrupt = outcome(&device, job, Some(&refused)).await?;
    ensure!(codes(&corrupt) == ["attachment_corrupt"], "{corrupt:?}");

    // Restored, the report is signed.
    std::fs::write(&stored, &original)?;
    device.edit(job, JobEdit::Reopen).await?;
    device.request_completion(job).await?;
    let signed = outcome(&device, job, Some(&corrupt)).await?;
    ensure!(matches!(signed, ReportOutcome::Signed { .. }), "{signed:?}");
    device.stop_sync();
    device.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_size_limited_resumable_and_only_for_the_jobs_technician() -> anyhow::Result<()>
{
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let edge = start_edge(data.path())?;
    let job = edge.create_job("tech-wang").await?;
    let device = edge.device(devices.path(), "tech-wang", Some(job)).await?;
    let token = device_token(&device).await?;
    let tls = ClientTls::system();

    // Over `[limits] max_attachment_bytes`: refused, saying which limit.
    let big = device
        .attach(
            job,
            photo(1, 5_000_000),
            AttachmentKind::Before,
            "image/jpeg",
            "big.jpg",
            now(),
        )
        .await?;
    let outcomes = device
        .upload_attachments(&edge.server.ws_url(), &token, &tls)
        .await;
    match outcomes.as_slice() {
        [UploadOutcome::Refused { code, message, .. }] => {
            ensure!(code == "attachment_too_large", "{code}");
            ensure!(
                message.contains("max_attachment_bytes") && message.contains(LIMIT),
                "{message}"
            );
        }
        other => bail!("expected a refusal, got {other:?}"),
    }
    ensure!(edge.status(job, &big.digest).await?["received"] == json!(0));

    // An upload cut off half-way keeps what arrived; the device resumes from there.
    let bytes = photo(2, 3_000_000);
    let digest = blob_digest(&bytes);
    // A raw connection that sends the headers and half the body, then drops: what a device
    // driving out of coverage does to a PUT.
    {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(edge.server.addr).await?;
        let head = format!(
            "PUT /api/jobs/{job}/attachments/{digest} HTTP/1.1\r\nhost: {}\r\n\
             authorization: Bearer {token}\r\ncontent-type: application/octet-stream\r\n\
             content-range: bytes 0-2999999/3000000\r\ncontent-length: 3000000\r\n\r\n",
            edge.server.addr
        );
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(&bytes[..1_500_000]).await?;
        socket.flush().await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(socket);
    }
    let held = eventually(
        Duration::from_secs(10),
        "the edge keeps the first half",
        || async {
            let status = edge.status(job, &digest).await.ok()?;
            let received = status["received"].as_u64()?;
            (received > 0 && received < 3_000_000).then_some(received)
        },
    )
    .await?;
    let attached = device
        .attach(
            job,
            bytes.clone(),
            AttachmentKind::After,
            "image/jpeg",
            "after.jpg",
            now(),
        )
        .await?;
    ensure!(attached.digest == digest);
    // (The edge may still be closing the cut request: its upload is then busy a moment.)
    eventually(
        Duration::from_secs(10),
        "the device resumes the upload",
        || async {
            let outcomes = device
                .upload_attachments(&edge.server.ws_url(), &token, &tls)
                .await;
            outcomes
                .iter()
                .any(|o| matches!(o, UploadOutcome::Uploaded { digest: d, .. } if *d == digest))
                .then_some(())
        },
    )
    .await
    .with_context(|| format!("resumed from {held}"))?;
    let status = edge.status(job, &digest).await?;
    ensure!(
        status["complete"] == json!(true) && status["received"] == json!(3_000_000),
        "{status}"
    );

    // Another technician's device of the same branch: not its job, neither way.
    let other_job = edge.create_job("tech-li").await?;
    let other = edge
        .device(devices.path(), "tech-li", Some(other_job))
        .await?;
    let other_token = device_token(&other).await?;
    let put = reqwest::Client::new()
        .put(edge.server.http_url(&format!(
            "/api/jobs/{job}/attachments/{}",
            blob_digest(b"x")
        )))
        .bearer_auth(&other_token)
        .body(b"x".to_vec())
        .send()
        .await?;
    ensure!(put.status() == StatusCode::FORBIDDEN);
    let body: Value = put.json().await?;
    ensure!(body["code"] == "not_your_job", "{body}");
    let get = reqwest::Client::new()
        .get(
            edge.server
                .http_url(&format!("/api/jobs/{job}/attachments/{digest}")),
        )
        .bearer_auth(&other_token)
        .send()
        .await?;
    ensure!(get.status() == StatusCode::FORBIDDEN);
    // Nor may a device name a receipt that is not a receipt of the job.
    let claim = fieldsync_client::ApprovalDraft {
        kind: fieldsync_client::ApprovalKind::TravelExpense,
        reason: "to the plant".into(),
        amount: Some(fieldsync_shared::time::Money(4_000)),
        expense: Some(fieldsync_client::TravelExpense {
            date: "2026-11-20".parse()?,
            from: "Branch".into(),
            to: "Plant 3".into(),
            category: "taxi".into(),
            receipt: Some(digest.clone()),
        }),
    };
    let refused = device.request_approval(job, claim.clone()).await;
    ensure!(
        matches!(refused, Err(ClientError::InvalidApproval(_))),
        "{refused:?}"
    );
    // A receipt photo attached to the job is what a travel expense (R28) names.
    let receipt = device
        .attach(
            job,
            photo(9, 50_000),
            AttachmentKind::Receipt,
            "image/jpeg",
            "taxi.jpg",
            now(),
        )
        .await?;
    let mut claim = claim;
    if let Some(e) = claim.expense.as_mut() {
        e.receipt = Some(receipt.digest.clone());
    }
    let approval = device.request_approval(job, claim).await?;
    ensure!(approval.expense.and_then(|e| e.receipt) == Some(receipt.digest));

    // Another branch's credentials open nothing here.
    let elsewhere = temp_dir()?;
    cli(elsewhere.path(), &["keygen"])?;
    let foreign = cli(elsewhere.path(), &["desk", "token", "--role", "manager"])?;
    let get = reqwest::Client::new()
        .get(
            edge.server
                .http_url(&format!("/api/jobs/{job}/attachments/{digest}")),
        )
        .bearer_auth(&foreign)
        .send()
        .await?;
    ensure!(get.status() == StatusCode::UNAUTHORIZED, "{}", get.status());
    device.close().await;
    other.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_technician_attaches_from_the_command_line_and_sync_once_uploads() -> anyhow::Result<()>
{
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let edge = start_edge(data.path())?;
    let job = edge.create_job("tech-wang").await?;
    let device = edge.device(devices.path(), "tech-wang", Some(job)).await?;
    let store = device.store_path().to_owned();
    device.close().await;

    let before = devices.path().join("pump-before.jpg");
    std::fs::write(&before, photo(3, 400_000))?;
    let receipt = devices.path().join("taxi.png");
    std::fs::write(&receipt, photo(4, 30_000))?;
    let job_arg = job.to_string();
    let before_arg = before.to_str().context("path")?;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        fieldsync_tests::tech_cli(
            &store,
            &["attach", &job_arg, before_arg, "--kind", "before"],
        )
    })?;
    ensure!(ok, "{err}");
    let attached: Value = serde_json::from_str(&out)?;
    ensure!(
        attached["digest"] == json!(blob_digest(&std::fs::read(&before)?)),
        "{out}"
    );
    ensure!(
        attached["media_type"] == "image/jpeg" && attached["kind"] == "before",
        "{out}"
    );
    // R28: the expense names its receipt photo (attached as a receipt on the way).
    let (ok, out, err) = tokio::task::block_in_place(|| {
        fieldsync_tests::tech_cli(
            &store,
            &[
                "approval",
                "expense",
                &job_arg,
                "--date",
                "2026-11-20",
                "--from",
                "Branch",
                "--to",
                "Plant 3",
                "--category",
                "taxi",
                "--amount",
                "40.00",
                "--reason",
                "to the customer's plant",
                "--receipt",
                receipt.to_str().unwrap_or_default(),
            ],
        )
    })?;
    ensure!(ok, "{err}");
    ensure!(
        out.contains(&blob_digest(&std::fs::read(&receipt)?)),
        "{out}"
    );
    // A kind the CLI does not know is refused with the ones it does.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        fieldsync_tests::tech_cli(
            &store,
            &["attach", &job_arg, before_arg, "--kind", "selfie"],
        )
    })?;
    ensure!(!ok && err.contains("before, after, receipt"), "{err}");

    // `sync --once` ends only when the photos are up.
    let url = edge.server.ws_url();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        fieldsync_tests::tech_cli(
            &store,
            &["sync", "--once", "--server", &url, "--timeout", "30"],
        )
    })?;
    ensure!(ok, "{out}{err}");
    for file in [&before, &receipt] {
        let digest = blob_digest(&std::fs::read(file)?);
        let status = edge.status(job, &digest).await?;
        ensure!(status["complete"] == json!(true), "{status}");
    }
    Ok(())
}
