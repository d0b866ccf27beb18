//! The technician's app in a real browser (issue 20): the real `fieldsync serve`, a manager
//! added with the CLI, a job for `tech-1` created through the API and an enrollment code for
//! that technician issued through the API, then `tests/e2e/app.mjs` drives Debian's chromium
//! as a phone (390×844, touch, JavaScript on): `/app` opens the enrollment form, an unknown
//! code is refused, the desk's code enrolls the device with a WebCrypto Ed25519 key kept in
//! IndexedDB, the job is listed with its state in words and synced, offline
//! (`context.setOffline(true)`) a reload opens the app from its service worker and lists the
//! job from IndexedDB, and the visit recorded offline (arrival, fault cause, check-out) reaches
//! the server once online, in the job as the SDK would have written it. Then the customer's
//! signature (R8, R9, issue 20 point 4): `request completion` lists what is missing in words,
//! the service report is shown in the customer's language, the customer signs on the pad with
//! touch strokes, offline, and the device signs the acknowledgement with its WebCrypto key
//! (app/src/ack.js) and keeps the pad's PNG as a `signature` attachment. The desk moves the
//! appointment meanwhile (this manager's token, passed to the script), so back online the edge
//! refuses the report (the customer did not acknowledge that content) and the app shows the
//! reason in words; asked again, the customer signs the job as it is now, the edge verifies
//! the acknowledgement like one from the SDK and signs the report, which the app shows. Here the
//! report is read back through the API (signed, the acknowledgement and the signature image
//! in it, the image's bytes a PNG that hashes to its name) and verified as head office would
//! with `fieldsync verify` and the branch's exported trust data, and with the independent
//! Python verifier (`tools/verify-report`, as `report_format` runs it). And head office (a
//! second `fieldsync serve --role head-office`, the branch enrolled with its key, the edge
//! delivering upstream to it) verifies and archives it: `GET /api/archive/reports/{id}`
//! answers `verified`. The parts are picked from the price list the desk gave the job.
//!
//! Besides the browser, every file of the app is fetched from the real server with its content
//! type, and the device the browser enrolled is in the server's records for `tech-1`.
//!
//! Prerequisites as for `console_browser` (Node 20+, `npm ci --prefix tests/e2e`, chromium).
//! `FIELDSYNC_WRITE_SCREENSHOTS=1` writes the screenshots to `docs/app/` (the README's).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, ensure};
use fieldsync_shared::job::attachments::blob_digest;
use fieldsync_tests::{
    SETTLE, ServerProcess, cli, cli_with_stdin, create_job_at, enrollment_code_at, eventually,
    fieldsync_binary, manager_token, sample_job_body, temp_dir,
};
use serde_json::{Value, json};

use crate::console_browser::{chromium, e2e_dir, run_e2e};
use crate::report_format::verify_with_python;

/// Where the run's screenshots go: `docs/app/` with `FIELDSYNC_WRITE_SCREENSHOTS` set.
fn screenshot_dir(scratch: &Path) -> PathBuf {
    if std::env::var_os("FIELDSYNC_WRITE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/app")
    } else {
        scratch.join("screenshots")
    }
}

#[tokio::test]
async fn app_in_chromium_enrolls_by_code_lists_the_job_and_opens_offline() -> anyhow::Result<()> {
    chromium()?;
    let installed = e2e_dir().join("node_modules").join("playwright-core");
    ensure!(
        installed.exists(),
        "{} is missing: run `npm ci --prefix tests/e2e` (or scripts/test, which does it)",
        installed.display()
    );
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    // Head office, with the branch enrolled, and the edge delivering its reports there: the
    // report the app's customer signed must be verified and archived by head office.
    let (head_office, analyst_token, server) = tokio::task::spawn_blocking({
        let (data, ho) = (data.clone(), dir.path().join("head-office"));
        move || head_office_and_edge(&ho, &data)
    })
    .await??;
    let manager_token = tokio::task::spawn_blocking({
        let data = data.clone();
        move || manager_token(&data, "15m")
    })
    .await??;

    let http = reqwest::Client::new();
    // Every file of the app, from the real server, with its type.
    for (path, content_type) in [
        ("/app/", "text/html; charset=utf-8"),
        ("/app/index.html", "text/html; charset=utf-8"),
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/sw.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/manifest.webmanifest", "application/manifest+json"),
        ("/app/automerge.wasm", "application/wasm"),
        ("/app/icon-192.png", "image/png"),
    ] {
        let answer = http.get(server.http_url(path)).send().await?;
        ensure!(answer.status().is_success(), "{path}: {}", answer.status());
        ensure!(
            answer.headers()["content-type"] == content_type,
            "{path}: {:?}",
            answer.headers()["content-type"]
        );
    }
    let missing = http.get(server.http_url("/app/nothing.js")).send().await?;
    ensure!(
        missing.status() == reqwest::StatusCode::NOT_FOUND,
        "{}",
        missing.status()
    );

    let mut body = sample_job_body("tech-1");
    body["customer"]["name"] = json!("华东机械厂");
    // The desk's price list (issue 20): the technician picks the thermostat from it.
    body["price_list"] = json!([
        {"part_number": "TC-220", "name": "温控器", "specification": "220V 10A", "unit_price": "85.00"},
        {"part_number": "FAN-3", "name": "冷凝风扇", "specification": "3 档", "unit_price": "240"},
    ]);
    // The document id, as automerge-repo's handle names it (`documentId`).
    let job = create_job_at(&http, &server.http_url(""), &manager_token, &body).await?;

    // R16: an installation job for the same technician (its contract date is a fixed day:
    // only the desk's appointment is checked against it).
    let mut install = sample_job_body("tech-1");
    install["kind"] = json!("installation");
    install["contract_due"] = json!("2027-06-30");
    install["customer"]["name"] = json!("滨江制药");
    let install_job = create_job_at(&http, &server.http_url(""), &manager_token, &install).await?;
    let code = enrollment_code_at(&http, &server.http_url(""), &manager_token, "tech-1").await?;

    let shots = screenshot_dir(dir.path());
    let started = Instant::now();
    let base = server.http_url("");
    let args = [
        "--base",
        base.as_str(),
        "--code",
        &code,
        "--job",
        &job,
        "--customer",
        "华东机械厂",
        "--fault-cause",
        "压缩机过热保护频繁动作",
        "--check-out-note",
        "已更换温控器，运行正常",
        "--solution",
        "更换温控器并清洗冷凝器",
        "--opinion",
        "维修及时，很满意",
        "--signer",
        "林女士",
        "--desk-token",
        &manager_token,
        "--install-job",
        &install_job,
    ];
    let summary = run_e2e("app.mjs", &args, &shots, || {
        format!("server log:\n{}", server.log())
    })
    .await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(18),
        "{summary}"
    );
    for shot in [
        "appointment-safety.png",
        "parts.png",
        "photo-offline.png",
        "approvals.png",
        "training.png",
        "completion-missing.png",
        "sign-report-en.png",
        "sign.png",
        "signed-offline.png",
        "refused.png",
        "signed.png",
        "enroll.png",
        "jobs.png",
        "offline.png",
        "jobs-en.png",
        "job-offline.png",
        "job.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!(
        "app e2e: {} ms in the browser ({} ms with node's start); offline reload to the job \
         list: {} ms",
        summary["ms"],
        started.elapsed().as_millis(),
        summary["timings"]["offline_reload_to_job_list_ms"]
    );

    // The visit the app recorded offline is in the server's copy of the job, written as the
    // SDK writes it (the desk's reader reads it strictly: R2 arrival, R7 cause, R11 check-out).
    let answer = http
        .get(server.http_url(&format!("/api/jobs/{job}")))
        .bearer_auth(&manager_token)
        .send()
        .await?;
    ensure!(answer.status().is_success(), "get job: {}", answer.status());
    let stored: Value = answer.json().await?;
    let visit = &stored["job"]["visit"];
    ensure!(visit["arrival"].is_number(), "arrival: {stored}");
    ensure!(
        stored["job"]["diagnosis"]["fault_cause"] == "压缩机过热保护频繁动作",
        "fault cause: {stored}"
    );
    ensure!(
        visit["check_out"]["note"] == "已更换温控器，运行正常"
            && visit["check_out"]["by"] == "tech-1",
        "check-out: {stored}"
    );
    check_rest_of_visit(&stored["job"])?;
    // R16: the training recorded on the installation job, as the SDK's `record_training`.
    let answer = http
        .get(server.http_url(&format!("/api/jobs/{install_job}")))
        .bearer_auth(&manager_token)
        .send()
        .await?;
    ensure!(answer.status().is_success(), "get job: {}", answer.status());
    let installed: Value = answer.json().await?;
    let training = &installed["job"]["visit"]["training"];
    ensure!(
        training["trainees"] == json!(["设备科 王工", "操作员 李师傅"])
            && training["topics"] == "开机、停机与日常保养"
            && training["by"] == "tech-1"
            && training["at"].is_number(),
        "R16: {installed}"
    );

    // The browser's device is enrolled for tech-1 (the server says so), and the code is spent.
    let log = server.log();
    ensure!(
        log.lines()
            .any(|l| l.contains("device enrolled by code") && l.contains("tech-1")),
        "no enrollment in the server's log:\n{log}"
    );
    let again = http
        .post(server.http_url("/api/enroll"))
        .json(&json!({"code": code, "public_key": "11".repeat(32)}))
        .send()
        .await?;
    ensure!(
        again.status() == reqwest::StatusCode::FORBIDDEN,
        "the code enrolled a second device: {}",
        again.status()
    );
    let refusal: Value = again.json().await?;
    ensure!(refusal["code"] == "enrollment_code_used", "{refusal}");

    check_signed_report(&http, &server, &data, &manager_token, &job, &summary).await?;

    // Head office received the report from the branch, verified it without trusting the
    // link, and archived it.
    let report_id = summary["report_id"].as_str().context("report_id")?;
    let path = format!("/api/archive/reports/{report_id}");
    let archived = eventually(SETTLE, "the report verified at head office", || async {
        let answer = http
            .get(head_office.http_url(&path))
            .bearer_auth(&analyst_token)
            .send()
            .await
            .ok()?;
        let body: Value = answer.json().await.ok()?;
        (body["status"] == "verified").then_some(body)
    })
    .await
    .with_context(|| format!("head office log:\n{}", head_office.log()))?;
    ensure!(
        archived["report"]["body"]["job_id"] == job.as_str(),
        "head office archived {archived}"
    );
    Ok(())
}

/// Head office in `ho` with branch `north-01` enrolled (its key made in `edge` first, as
/// `fieldsync keygen` makes it) and an analyst's token, then the edge in `edge` delivering its
/// reports upstream to it.
fn head_office_and_edge(
    ho: &Path,
    edge: &Path,
) -> anyhow::Result<(ServerProcess, String, ServerProcess)> {
    let dir = |p: &Path| p.to_str().map(str::to_owned).context("a UTF-8 path");
    cli(edge, &["keygen"])?;
    cli(ho, &["keygen"])?;
    let key = dir(&edge.join("keys").join("server.pub"))?;
    cli(
        ho,
        &["branch", "enroll", "--branch", "north-01", "--key", &key],
    )?;
    let token = cli(ho, &["branch", "token", "--branch", "north-01"])?;
    let token_file = edge.join("upstream.token");
    std::fs::write(&token_file, token.trim())?;
    // Under `FIELDSYNC_TEST_PG` head office's archive is a database of its own, as its CLI
    // commands above opened it.
    let url = fieldsync_tests::pg::test_database_blocking(ho)?;
    let env: Vec<(&str, &str)> = url
        .as_deref()
        .map(|u| ("FIELDSYNC_STORAGE_URL", u))
        .into_iter()
        .collect();
    let head_office = ServerProcess::start_with(ho, &["--role", "head-office"], &env)?;
    cli_with_stdin(
        ho,
        &["user", "add", "--name", "zhao", "--role", "analyst"],
        "zhao-archive-password\n",
    )?;
    let analyst = cli(ho, &["desk", "token", "--user", "zhao", "--ttl", "15m"])?;
    let config = edge.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "branch_id = \"north-01\"\n[upstream]\nurl = {:?}\ntoken_file = {:?}\nretry_max = 1\n",
            head_office.ws_url(),
            dir(&token_file)?
        ),
    )?;
    let server = ServerProcess::start_with(edge, &["--config", &dir(&config)?], &[])?;
    Ok((head_office, analyst.trim().to_owned(), server))
}

/// The rest of the visit the app recorded offline (issue 20 point 3, `VISIT` in app.mjs), as
/// the SDK writes it: the R3 call on the timeline (the desk's appointment replaced the app's
/// time later in the run), the R32 briefing by the technician, the one part line left after
/// the other was removed (R7, R10, R18), labour and travel in minor units and metres, and the
/// photo taken offline referenced as a `before` attachment.
fn check_rest_of_visit(job: &Value) -> anyhow::Result<()> {
    let call = job["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .find(|e| e["kind"] == "appointment" && e["actor"] == "tech-1")
        .with_context(|| format!("no R3 call by tech-1 on the timeline: {}", job["timeline"]))?;
    ensure!(
        call["text"]
            .as_str()
            .is_some_and(|t| t.contains("压缩机频繁跳闸，客户确认")),
        "the R3 call: {call}"
    );
    let briefing = &job["visit"]["safety_briefing"];
    ensure!(
        briefing["notes"] == "车间动火须办证；进入前已签安全协议"
            && briefing["by"] == "tech-1"
            && briefing["at"].is_number(),
        "R32: {briefing}"
    );
    let parts = job["parts"].as_array().context("parts")?;
    ensure!(parts.len() == 1, "one part line left: {}", job["parts"]);
    let part = &parts[0];
    ensure!(
        part["name"] == "温控器"
            && part["part_number"] == "TC-220"
            && part["specification"] == "220V 10A"
            && part["quantity"] == 2
            && part["unit_price"] == 8500
            && part["warranty"] == false
            && part["id"].as_str().is_some_and(|id| id.len() == 32),
        "the part line: {part}"
    );
    ensure!(
        job["labour"] == json!({"minutes": 90, "rate_per_hour": 12000})
            && job["travel"] == json!({"distance_m": 12500, "cost": 3000}),
        "labour {} travel {}",
        job["labour"],
        job["travel"]
    );
    let photos: Vec<&Value> = job["attachments"]
        .as_array()
        .context("attachments")?
        .iter()
        .filter(|a| a["kind"] == "before")
        .collect();
    ensure!(
        photos.len() == 1
            && photos[0]["name"] == "before.png"
            && photos[0]["media_type"] == "image/png"
            && photos[0]["by"] == "tech-1",
        "the photo: {}",
        job["attachments"]
    );
    Ok(())
}

/// The report the app had signed (R8, R9, R13): the job says signed with the id the app
/// showed, the edge serves the report with the customer's acknowledgement as the app made it
/// and the pad's image among its attachments, and it verifies with `fieldsync verify`.
async fn check_signed_report(
    http: &reqwest::Client,
    server: &ServerProcess,
    data: &Path,
    manager_token: &str,
    job: &str,
    summary: &Value,
) -> anyhow::Result<()> {
    let shown = summary["report_id"].as_str().context("report_id")?;
    let stored: Value = http
        .get(server.http_url(&format!("/api/jobs/{job}")))
        .bearer_auth(manager_token)
        .send()
        .await?
        .json()
        .await?;
    let report = &stored["job"]["report"];
    ensure!(
        report["status"] == "signed" && report["report_id"] == shown,
        "the job's report outcome: {report}"
    );
    let answer = http
        .get(server.http_url(&format!("/api/reports/{shown}")))
        .bearer_auth(manager_token)
        .send()
        .await?;
    ensure!(answer.status().is_success(), "report: {}", answer.status());
    let raw = answer.bytes().await?;
    let signed: Value = serde_json::from_slice(&raw)?;
    let body = &signed["body"];
    let ack = &body["acknowledgement"];
    ensure!(ack["signer_name"] == "林女士", "{ack}");
    ensure!(
        ack["survey"]
            == json!({"attitude": 5, "skill": 4, "punctuality": 5, "suggestions": "下次请提前打电话"}),
        "the survey, service_items not answered: {}",
        ack["survey"]
    );
    let strokes = ack["signature"]["strokes"].as_array().context("strokes")?;
    ensure!(
        ack["signature"]["type"] == "strokes" && strokes.len() == 2,
        "the mark: {}",
        ack["signature"]
    );
    ensure!(
        body["content"]["diagnosis"]["solution"] == "更换温控器并清洗冷凝器"
            && body["content"]["customer_opinion"] == "维修及时，很满意",
        "{}",
        body["content"]
    );
    // The pad's image: a `signature` attachment whose bytes (a PNG) the branch holds.
    let images: Vec<&Value> = body["content"]["attachments"]
        .as_array()
        .context("attachments")?
        .iter()
        .filter(|a| a["kind"] == "signature")
        .collect();
    // One per signing, or one for both when the two drawings gave the same bytes.
    ensure!(
        (1..=2).contains(&images.len()),
        "{}",
        body["content"]["attachments"]
    );
    for image in images {
        let digest = image["digest"].as_str().context("digest")?;
        ensure!(image["media_type"] == "image/png", "{image}");
        let bytes = http
            .get(server.http_url(&format!("/api/jobs/{job}/attachments/{digest}")))
            .bearer_auth(manager_token)
            .send()
            .await?
            .bytes()
            .await?;
        ensure!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && blob_digest(&bytes) == digest,
            "the signature image: {} bytes",
            bytes.len()
        );
        ensure!(
            image["size"] == bytes.len(),
            "size {} for {} bytes",
            image["size"],
            bytes.len()
        );
    }
    // The photo taken offline: in the signed content, its bytes held by the branch; the
    // part line and the charges of the visit on the report.
    let photo = body["content"]["attachments"]
        .as_array()
        .context("attachments")?
        .iter()
        .find(|a| a["kind"] == "before")
        .with_context(|| format!("no photo: {}", body["content"]["attachments"]))?;
    let digest = photo["digest"].as_str().context("digest")?;
    let bytes = http
        .get(server.http_url(&format!("/api/jobs/{job}/attachments/{digest}")))
        .bearer_auth(manager_token)
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n")
            && blob_digest(&bytes) == digest
            && photo["size"] == bytes.len(),
        "the photo's bytes: {} bytes for {photo}",
        bytes.len()
    );
    let parts = &body["content"]["parts"];
    ensure!(
        parts.as_array().map(Vec::len) == Some(1)
            && parts[0]["name"] == "温控器"
            && parts[0]["quantity"] == 2
            && parts[0]["unit_price"] == 8500,
        "the parts on the signed report: {parts}"
    );
    ensure!(
        body["content"]["labour"]["minutes"] == 90
            && body["content"]["travel"]["distance_m"] == 12500,
        "{}",
        body["content"]
    );
    // R28: the claim the desk approved is on the report, with its receipt photo's digest,
    // whose bytes the branch holds as a `receipt` attachment.
    let expenses = body["content"]["expenses"].as_array().context("expenses")?;
    ensure!(
        expenses.len() == 1
            && expenses[0]["amount"] == 4600
            && expenses[0]["category"] == "出租车"
            && expenses[0]["by"] == "tech-1",
        "the expenses on the signed report: {expenses:?}"
    );
    let receipt = expenses[0]["receipt"].as_str().context("receipt")?;
    let held = http
        .get(server.http_url(&format!("/api/jobs/{job}/attachments/{receipt}")))
        .bearer_auth(manager_token)
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(
        blob_digest(&held) == receipt && held.ends_with(b"receipt"),
        "the receipt's bytes: {} bytes",
        held.len()
    );
    // The content the customer signed the second time: with the desk's appointment.
    ensure!(
        body["content"]["visit"]["appointment"].is_number(),
        "{}",
        body["content"]["visit"]
    );

    // Head office's check: the exported report verifies against the branch's trust data.
    let trust = data.join("trust");
    let report_file = data.join("app-report.json");
    std::fs::write(&report_file, &raw)?;
    let verified = tokio::task::spawn_blocking({
        let data = data.to_owned();
        move || -> anyhow::Result<std::process::Output> {
            cli(
                &data,
                &["trust", "export", "--out", trust.to_str().context("path")?],
            )?;
            Ok(std::process::Command::new(fieldsync_binary()?)
                .arg("verify")
                .arg(&report_file)
                .arg("--trust")
                .arg(&trust)
                .output()?)
        }
    })
    .await??;
    ensure!(
        verified.status.success(),
        "fieldsync verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    // And with the independent verifier, written from docs/REPORT-FORMAT.md alone.
    let report_file = data.join("app-report.json");
    let trust = data.join("trust");
    let verdict =
        tokio::task::spawn_blocking(move || verify_with_python(&report_file, &trust)).await??;
    ensure!(
        verdict.success && verdict.out["valid"] == true && verdict.out["report_id"] == shown,
        "the independent verifier: {verdict:?}"
    );
    Ok(())
}

/// A fresh edge server on `data` with one job for tech-1 made at its desk: the server, the
/// manager's desk token, an HTTP client and the job's id.
async fn edge_with_a_job(
    data: &std::path::Path,
) -> anyhow::Result<(ServerProcess, String, reqwest::Client, String)> {
    let server = tokio::task::spawn_blocking({
        let data = data.to_owned();
        move || ServerProcess::start_with(&data, &[], &[])
    })
    .await??;
    let manager_token = tokio::task::spawn_blocking({
        let data = data.to_owned();
        move || manager_token(&data, "15m")
    })
    .await??;
    let http = reqwest::Client::new();
    let job = create_job_at(
        &http,
        &server.http_url(""),
        &manager_token,
        &sample_job_body("tech-1"),
    )
    .await?;
    Ok((server, manager_token, http, job))
}

/// Two technicians, one job (issue 20; R7, issue 15's coherent merges): the job created for
/// `tech-1` is also assigned to `tech-2` through the dispatch API (`pre_assign`: neither has
/// a device yet), each technician gets their own desk code, and `tests/e2e/app_pair.mjs`
/// enrolls two app instances (two chromium profiles, phones) by them; both go offline, each
/// records a different fault cause, both come back online: the two documents converge and
/// both apps show the conflict with who wrote each value, `request completion` lists it as
/// missing, and technician 1 keeps technician 2's cause. Here the server's copy (the API)
/// holds what both apps ended on: the same heads, the kept cause, no unresolved group, and
/// the resolution recorded under tech-1 as the SDK records it.
#[tokio::test]
async fn app_in_chromium_two_technicians_offline_on_one_job_converge_and_resolve_the_conflict()
-> anyhow::Result<()> {
    chromium()?;
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let (server, manager_token, http, job) = edge_with_a_job(&data).await?;
    let answer = http
        .put(server.http_url(&format!("/api/jobs/{job}/technicians")))
        .bearer_auth(&manager_token)
        .json(&json!({"technicians": ["tech-1", "tech-2"], "pre_assign": true}))
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "assign tech-2: {}",
        answer.text().await?
    );
    let mut codes = Vec::new();
    for technician in ["tech-1", "tech-2"] {
        codes.push(
            enrollment_code_at(&http, &server.http_url(""), &manager_token, technician).await?,
        );
    }

    let shots = screenshot_dir(dir.path());
    let base = server.http_url("");
    let (cause_1, cause_2) = ("继电器触点磨损", "制冷剂不足");
    let args = [
        "--base",
        base.as_str(),
        "--code-1",
        &codes[0],
        "--code-2",
        &codes[1],
        "--tech-1",
        "tech-1",
        "--tech-2",
        "tech-2",
        "--job",
        &job,
        "--cause-1",
        cause_1,
        "--cause-2",
        cause_2,
    ];
    let summary = run_e2e("app_pair.mjs", &args, &shots, || {
        format!("server log:\n{}", server.log())
    })
    .await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(6),
        "{summary}"
    );
    for shot in ["conflict.png", "conflict-resolved.png"] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }

    // The server's copy: what both apps ended on, resolved as the SDK resolves it.
    let stored: Value = http
        .get(server.http_url(&format!("/api/jobs/{job}")))
        .bearer_auth(&manager_token)
        .send()
        .await?
        .json()
        .await?;
    let mut at_server: Vec<&str> = stored["heads"]
        .as_array()
        .context("heads")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    at_server.sort_unstable();
    let mut in_apps: Vec<&str> = summary["heads"]
        .as_array()
        .context("the apps' heads")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    in_apps.sort_unstable();
    ensure!(
        at_server == in_apps,
        "server {at_server:?}, apps {in_apps:?}"
    );
    ensure!(
        stored["job"]["diagnosis"]["fault_cause"] == cause_2,
        "the kept cause: {}",
        stored["job"]["diagnosis"]
    );
    ensure!(
        stored["unresolved"] == json!([]),
        "unresolved at the server: {}",
        stored["unresolved"]
    );
    let resolutions = stored["resolutions"].as_array().context("resolutions")?;
    ensure!(
        resolutions.len() == 1
            && resolutions[0]["group"] == "work"
            && resolutions[0]["by"] == "tech-1"
            && resolutions[0]["resolution"]["fault_cause"] == cause_2,
        "the resolution: {}",
        stored["resolutions"]
    );
    Ok(())
}

/// A revoked device is told so and stops syncing (issue 20; ARCHITECTURE.md "A device never
/// retries a refusal forever"): `tests/e2e/app_revoked.mjs` enrolls the app by a desk code,
/// revokes the device with the real CLI while the app is connected, and checks the app says
/// so in words (zh, en) and opens no WebSocket over fake-clock timers, offline/online and a
/// reload; then, with the kept mark removed, that its next connection is refused and the
/// renewal's `revoked` stops it again. Here: the server refuses the device's renewal too.
#[tokio::test]
async fn app_in_chromium_a_revoked_device_is_told_so_and_stops_syncing() -> anyhow::Result<()> {
    chromium()?;
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let (server, manager_token, http, job) = edge_with_a_job(&data).await?;
    let code = enrollment_code_at(&http, &server.http_url(""), &manager_token, "tech-1").await?;

    let shots = screenshot_dir(dir.path());
    let base = server.http_url("");
    let binary = fieldsync_binary()?;
    let args = [
        "--base",
        base.as_str(),
        "--code",
        &code,
        "--job",
        &job,
        "--fieldsync",
        binary.to_str().context("binary path")?,
        "--data-dir",
        data.to_str().context("data path")?,
    ];
    let summary = run_e2e("app_revoked.mjs", &args, &shots, || {
        format!("server log:\n{}", server.log())
    })
    .await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(4),
        "{summary}"
    );
    assert_eq!(summary["sockets"]["after_all_steps"], 0, "{summary}");
    assert_eq!(summary["sockets"]["second_path_after"], 0, "{summary}");
    let size = std::fs::metadata(shots.join("revoked.png"))?.len();
    assert!(size > 10_000, "revoked.png: {size} bytes");

    // The server's side of it: the device's renewal is refused with `revoked`.
    let device = summary["device"].as_str().context("device")?;
    let answer = http
        .post(server.http_url("/api/token/challenge"))
        .json(&json!({ "device_id": device }))
        .send()
        .await?;
    ensure!(
        answer.status() == reqwest::StatusCode::FORBIDDEN,
        "challenge for a revoked device: {}",
        answer.status()
    );
    let refusal: Value = answer.json().await?;
    ensure!(refusal["code"] == "revoked", "{refusal}");
    Ok(())
}
