//! The web console in a real browser (issue 14): the real `fieldsync serve`, people added with
//! the CLI, jobs created through the API with a person's desk token, a technician's device
//! (the SDK, enrolled by code) raising an approval request on one of them, then
//! `tests/e2e/console.mjs` drives Debian's chromium (playwright-core, JavaScript off in the
//! page): sign-in page, a wrong password refused, the board listing those jobs, a job page, a
//! POST without the CSRF token refused, the dispatcher registering a request and dispatching
//! it, sign-out, and the manager approving the device's request, which the device then sees.
//!
//! Prerequisites (installed by `.ci/run` and `scripts/test`): Node 20+, `npm ci --prefix
//! tests/e2e`, Debian's `chromium` (or `FIELDSYNC_CHROMIUM` naming a Chromium binary) and a
//! CJK font (`fonts-wqy-zenhei`). Missing, the test fails and says what to install.
//! `FIELDSYNC_WRITE_SCREENSHOTS=1` writes the screenshots to `docs/console/` (the README's).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fieldsync_client::{ApprovalDraft, ApprovalKind, ClientTls, Device, SyncOptions};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_shared::zone::Zone;
use fieldsync_tests::{ServerProcess, cli, cli_with_stdin, eventually, sample_job_body, temp_dir};
use serde_json::{Value, json};

pub(crate) fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e")
}

pub(crate) fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("FIELDSYNC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    ensure!(
        path.exists(),
        "no Chromium at {}: apt-get install chromium fonts-wqy-zenhei (Debian), or point \
         FIELDSYNC_CHROMIUM at a Chromium binary",
        path.display()
    );
    Ok(path)
}

/// Where a run's screenshots go: `docs/console/` with `FIELDSYNC_WRITE_SCREENSHOTS` set (the
/// README's), else a folder of the test's own.
pub(crate) fn screenshot_dir(scratch: &Path) -> PathBuf {
    if std::env::var_os("FIELDSYNC_WRITE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console")
    } else {
        scratch.join("screenshots")
    }
}

/// Runs `tests/e2e/<script>` with `args`, `--screenshots shots` and `--chromium`, and
/// returns the summary it prints (`{"ok": true, "steps": [...], "ms": …}`). A failure says the
/// script's output and `context` (e.g. the server's log).
pub(crate) async fn run_e2e(
    script: &str,
    args: &[&str],
    shots: &Path,
    context: impl FnOnce() -> String,
) -> anyhow::Result<Value> {
    let output = tokio::process::Command::new("node")
        // The browser keeps the real clock: what it shows comes from the server (which runs
        // under `scripts/clock-ahead` in that pass), and chromium under libfaketime is slow
        // enough to time out on a loaded machine.
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .arg(e2e_dir().join(script))
        .args(args)
        .arg("--screenshots")
        .arg(shots)
        .arg("--chromium")
        .arg(chromium()?)
        .kill_on_drop(true)
        .output()
        .await
        .context("running node (Node 20 or newer is needed)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{script}: {}\n{}\n{}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr),
            context()
        );
    }
    let summary: Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("{script} summary"))?;
    assert_eq!(summary["ok"], true, "{summary}");
    Ok(summary)
}

#[tokio::test]
async fn console_in_chromium_a_dispatcher_registers_and_dispatches_and_a_manager_approves_what_a_device_asked()
-> anyhow::Result<()> {
    // Said at once, with what to install, when chromium is missing.
    chromium()?;
    let installed = e2e_dir().join("node_modules").join("playwright-core");
    ensure!(
        installed.exists(),
        "{} is missing: run `npm ci --prefix tests/e2e` (or scripts/test, which does it)",
        installed.display()
    );
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let server = tokio::task::spawn_blocking({
        let data = data.clone();
        move || ServerProcess::start_with(&data, &[], &[("FIELDSYNC_TIMEZONE", "Asia/Shanghai")])
    })
    .await??;
    let base = server.http_url("");
    let (token, manager_token) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            cli_with_stdin(
                &data,
                &[
                    "user",
                    "add",
                    "--name",
                    "li",
                    "--role",
                    "dispatcher",
                    "--display-name",
                    "李伟",
                ],
                "li-console-password\n",
            )?;
            cli_with_stdin(
                &data,
                &[
                    "user",
                    "add",
                    "--name",
                    "wang",
                    "--role",
                    "manager",
                    "--display-name",
                    "王芳",
                ],
                "wang-console-password\n",
            )?;
            Ok::<_, anyhow::Error>((
                cli(&data, &["desk", "token", "--user", "li", "--ttl", "15m"])?,
                cli(&data, &["desk", "token", "--user", "wang", "--ttl", "15m"])?,
            ))
        }
    })
    .await??;

    let http = reqwest::Client::new();
    let mut jobs = Vec::new();
    for (customer, technician) in [("华东机械厂", "tech-1"), ("Lotus Foods Ltd", "tech-2")] {
        let mut body = sample_job_body(technician);
        body["customer"]["name"] = json!(customer);
        let answer = http
            .post(server.http_url("/api/jobs"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        ensure!(
            answer.status() == reqwest::StatusCode::CREATED,
            "create job: {}",
            answer.text().await?
        );
        let created: Value = answer.json().await?;
        jobs.push(
            created["job_id"]
                .as_str()
                .context("job_id")?
                .parse::<DocumentId>()?,
        );
    }

    // tech-1's device, enrolled by code, takes its job and asks for a warranty part (R18).
    let answer = http
        .post(server.http_url("/api/enrollment-codes"))
        .bearer_auth(&manager_token)
        .json(&json!({"technician": "tech-1"}))
        .send()
        .await?;
    ensure!(
        answer.status() == reqwest::StatusCode::CREATED,
        "enrollment code"
    );
    let code: Value = answer.json().await?;
    let tls = ClientTls::system();
    let (device, _) = Device::enroll_with_code(
        dir.path().join("tech-1.sqlite"),
        dir.path().join("tech-1.key"),
        &server.ws_url(),
        &tls,
        code["code"].as_str().context("code")?,
    )
    .await?;
    let renewal = device.key_renewal(server.ws_url(), ClientTls::system());
    device.start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(renewal));
    let job = jobs[0];
    eventually(
        Duration::from_secs(30),
        "the job reaches the device",
        || async { device.job(job).await.is_ok().then_some(()) },
    )
    .await?;
    let reason = "压缩机保修更换（e2e）";
    let approval = device
        .request_approval(
            job,
            ApprovalDraft {
                kind: ApprovalKind::WarrantyPart,
                reason: reason.into(),
                // 450.00 CNY: under the director's threshold, the manager's to decide.
                amount: Some(Money(45_000)),
                expense: None,
            },
        )
        .await?;
    eventually(Duration::from_secs(30), "the desk's queue lists it", || {
        let (http, token, url) = (
            http.clone(),
            manager_token.clone(),
            server.http_url("/api/approvals?pending=true"),
        );
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            body["approvals"]
                .as_array()?
                .iter()
                .any(|a| a["reason"] == reason)
                .then_some(())
        }
    })
    .await?;
    // An appointment tomorrow, typed as the branch (Shanghai) reads time.
    let tomorrow = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?,
    )
    .plus_millis(86_400_000);
    let appointment = Zone::china().local_input(tomorrow);

    let shots = screenshot_dir(dir.path());
    let started = Instant::now();
    let args = [
        "--base",
        &base,
        "--user",
        "li",
        "--password",
        "li-console-password",
        "--customers",
        "华东机械厂,Lotus Foods Ltd",
        "--job-customer",
        "华东机械厂",
        "--technician",
        "tech-1",
        "--appointment",
        &appointment,
        "--manager",
        "wang",
        "--manager-password",
        "wang-console-password",
        "--approval-reason",
        reason,
        "--zone",
        "Asia/Shanghai",
    ];
    let summary = run_e2e("console.mjs", &args, &shots, || {
        format!("server log:\n{}", server.log())
    })
    .await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(10),
        "{summary}"
    );
    for shot in [
        "login.png",
        "board.png",
        "job.png",
        "intake.png",
        "approvals.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!(
        "console e2e: {} ms in the browser, {} ms with node's start",
        summary["ms"],
        started.elapsed().as_millis()
    );

    // The manager's decision reached the device (R18), in the job document it syncs.
    eventually(
        Duration::from_secs(30),
        "the device sees the decision",
        || async {
            let approvals = device.approvals(job).await.ok()?;
            approvals
                .iter()
                .find(|a| a.id == approval.id)
                .and_then(|a| a.decision.as_ref())
                .filter(|d| d.approved && d.note == "同意，按保修处理")
                .map(|_| ())
        },
    )
    .await?;
    device.stop_sync();

    // The browser's refused and accepted sign-ins, its forms and its sign-out are in the
    // audit log, under the person who did each.
    let store = fieldsync_storage::Store::open(
        data.join("fieldsync.sqlite"),
        fieldsync_storage::StoreConfig::without_maintenance(),
    )?;
    let actions: Vec<(String, String)> = fieldsync_server::console::audit::list(&store)?
        .into_iter()
        .map(|e| (e.actor, e.action))
        .collect();
    for (actor, action) in [
        ("li", "login_refused"),
        ("li", "login"),
        ("li", "logout"),
        ("li", "job_create"),
        ("li", "request_create"),
        ("li", "job_dispatch"),
        ("wang", "login"),
        ("wang", "approval_decide"),
    ] {
        assert!(
            actions.contains(&(actor.to_owned(), action.to_owned())),
            "{actor} {action}: {actions:?}"
        );
    }
    server.kill()
}

/// Head office's pages in chromium (issue 14 point 4): a report the branch signed and head
/// office verified, found in the month's archive, read, counted on the statistics chart.
/// Head office and the branch run in this process on their manual clock (the report is
/// signed in December 2026 in Shanghai); the browser talks to head office's real port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_office_pages_in_chromium_find_read_and_count_a_verified_report() -> anyhow::Result<()>
{
    // Said at once, with what to install, when chromium is missing.
    chromium()?;
    let chain = crate::head_office::Chain::start_with(true, |c| {
        c.timezone = "Asia/Shanghai".parse().expect("a known zone");
    })
    .await?;
    let signing: fieldsync_shared::time::Timestamp = "2026-12-03T02:00:00Z".parse()?;
    chain.clock.set(signing);
    let (_, report_id) = chain.complete_a_job(signing.as_millis() - 60_000).await?;
    chain.wait_verified(&report_id).await?;
    let store = std::sync::Arc::clone(&chain.head_office.state.store);
    let now = chain.clock.now();
    tokio::task::spawn_blocking(move || {
        fieldsync_server::accounts::add(
            &store,
            "zhao",
            "赵敏",
            fieldsync_server::auth::DeskRole::Analyst,
            fieldsync_server::console::i18n::Lang::Zh,
            "zhao-console-password",
            now,
        )
    })
    .await??;
    let dir = temp_dir()?;
    let shots = screenshot_dir(dir.path());
    let base = chain.head_office.http_url("");
    let args = [
        "--base",
        &base,
        "--user",
        "zhao",
        "--password",
        "zhao-console-password",
        "--month",
        "2026-12",
        "--report",
        &report_id,
        "--branch",
        "north-01",
    ];
    let summary = run_e2e("head_office.mjs", &args, &shots, String::new).await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(6),
        "{summary}"
    );
    for shot in [
        "archive.png",
        "ho-report.png",
        "statistics.png",
        "quality.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    chain.stop().await
}

/// A real `fieldsync serve` on `data` in Shanghai time, with the dispatcher `li` (李伟,
/// password `li-console-password`) and a 15-minute desk token naming them.
async fn shanghai_server_with_li(data: &Path) -> anyhow::Result<(ServerProcess, String)> {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let server =
            ServerProcess::start_with(&data, &[], &[("FIELDSYNC_TIMEZONE", "Asia/Shanghai")])?;
        cli_with_stdin(
            &data,
            &[
                "user",
                "add",
                "--name",
                "li",
                "--role",
                "dispatcher",
                "--display-name",
                "李伟",
            ],
            "li-console-password\n",
        )?;
        let token = cli(&data, &["desk", "token", "--user", "li", "--ttl", "15m"])?;
        Ok((server, token))
    })
    .await?
}

/// The desk's records in chromium (issue 14 point 2): a complaint registered through the API
/// by a person's token, taken one R21 step further on its page by the dispatcher; the
/// requisitions (R17) and the tool register (R19) with who holds a tool. The real `fieldsync
/// serve` in Shanghai time; `tests/e2e/desk_records.mjs` drives the browser.
#[tokio::test]
async fn desk_records_in_chromium_a_dispatcher_takes_a_complaint_a_step_and_reads_parts_and_tools()
-> anyhow::Result<()> {
    // Said at once, with what to install, when chromium is missing.
    chromium()?;
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let (server, token) = shanghai_server_with_li(&data).await?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(server.http_url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let answer = post("/api/jobs", sample_job_body("tech-1")).await?;
    ensure!(
        answer.status() == reqwest::StatusCode::CREATED,
        "create job"
    );
    let job = answer.json::<Value>().await?["job_id"]
        .as_str()
        .context("job_id")?
        .to_owned();
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
            .try_into()?,
    );
    let writes = [
        (
            "/api/complaints",
            json!({
                "channel": "phone",
                "category": "service",
                "received_at": now.plus_millis(-3_600_000).to_string(),
                "complainant": "陈女士",
                "contact": "138 0000 0000",
                "customer_id": "c-1001",
                "against": {"job_id": job, "technician": "tech-1"},
                "content": "技术员未测试就离开",
                "asks": "再次上门并道歉",
                "recorded_by": "李伟",
            }),
        ),
        (
            "/api/requisitions",
            json!({
                "job_id": job,
                "part_number": "CMP-7",
                "part_name": "压缩机",
                "specification": "ZR-72",
                "material": "钢",
                "quantity": 1,
                "needed_by": Zone::china().date_of(now.plus_millis(3 * 86_400_000))?.to_string(),
                "customer_id": "c-1001",
                "order_number": "PO-5521",
                "requested_by": "李伟",
            }),
        ),
        ("/api/tools", json!({"id": "torque-07", "name": "扭力扳手"})),
        ("/api/tools", json!({"id": "meter-2", "name": "万用表"})),
        (
            "/api/tools/torque-07/loans",
            json!({
                "technician": "tech-1",
                "due_back": now.plus_millis(86_400_000).to_string(),
                "job_id": job,
                "note": "现场用",
            }),
        ),
    ];
    for (path, body) in writes {
        let answer = post(path, body).await?;
        ensure!(
            answer.status().is_success(),
            "{path}: {}",
            answer.text().await?
        );
    }

    let shots = screenshot_dir(dir.path());
    let base = server.http_url("");
    let args = [
        "--base",
        &base,
        "--user",
        "li",
        "--password",
        "li-console-password",
        "--complainant",
        "陈女士",
        "--part",
        "CMP-7",
        "--tool",
        "torque-07",
        "--holder",
        "tech-1",
    ];
    let summary = run_e2e("desk_records.mjs", &args, &shots, || {
        format!("server log:\n{}", server.log())
    })
    .await?;
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(5),
        "{summary}"
    );
    for shot in [
        "complaints.png",
        "complaint.png",
        "requisitions.png",
        "tools.png",
    ] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    // The browser's step is in the audit log under the dispatcher, beside the API's writes.
    let store = fieldsync_storage::Store::open(
        data.join("fieldsync.sqlite"),
        fieldsync_storage::StoreConfig::without_maintenance(),
    )?;
    let actions: Vec<(String, String)> = fieldsync_server::console::audit::list(&store)?
        .into_iter()
        .map(|e| (e.actor, e.action))
        .collect();
    for action in [
        "complaint_create",
        "complaint_step",
        "requisition_create",
        "tool_register",
        "tool_lend",
    ] {
        assert!(
            actions.contains(&("li".to_owned(), action.to_owned())),
            "li {action}: {actions:?}"
        );
    }
    server.kill()
}

/// Customer files and technicians in chromium (issue 14 point 3): a customer's file with its
/// repair history, a maintenance plan set with the form (R26), a technician's record (R2,
/// R4, R7, R11, R15). Writes `customer.png` and `technician.png`.
#[tokio::test]
async fn customer_file_and_technician_pages_in_chromium_r26_r6_r2_r15() -> anyhow::Result<()> {
    chromium()?;
    let installed = e2e_dir().join("node_modules").join("playwright-core");
    ensure!(
        installed.exists(),
        "{} is missing: run `npm ci --prefix tests/e2e` (or scripts/test, which does it)",
        installed.display()
    );
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let (server, token) = shanghai_server_with_li(&data).await?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let (http, token, url) = (http.clone(), token.clone(), server.http_url(path));
        async move {
            let answer = http.post(url).bearer_auth(token).json(&body).send().await?;
            ensure!(answer.status().is_success(), "{}", answer.text().await?);
            Ok::<Value, anyhow::Error>(answer.json().await?)
        }
    };
    // Two visits to the customer's chiller by tech-1, the first long past its asked-for
    // arrival; a complaint about tech-1's conduct.
    for (received, category) in [
        ("2026-11-02T08:30:00Z", "压缩机"),
        ("2026-11-10T08:30:00Z", "风扇"),
    ] {
        let mut body = sample_job_body("tech-1");
        body["customer"]["name"] = json!("华东机械厂");
        body["product"]["purchase_date"] = json!("2024-04-01");
        body["request"]["received_at"] = json!(received);
        body["request"]["fault_category"] = json!(category);
        post("/api/jobs", body).await?;
    }
    post(
        "/api/complaints",
        json!({
            "channel": "phone", "category": "service", "received_at": "2026-11-12T02:00:00Z",
            "complainant": "王工", "against": {"technician": "tech-1"},
            "content": "与操作工争吵", "asks": "道歉", "recorded_by": "李伟",
        }),
    )
    .await?;
    // The plan's first visit: two months from the server's today, so it is still to come.
    let zone: Zone = "Asia/Shanghai".parse()?;
    let due = zone
        .date_of(fieldsync_server::clock::system_now().plus_millis(60 * 86_400_000))?
        .to_string();
    let shots = screenshot_dir(dir.path());
    let base = server.http_url("");
    run_e2e(
        "customers.mjs",
        &[
            "--base",
            &base,
            "--user",
            "li",
            "--password",
            "li-console-password",
            "--customer",
            "c-1001",
            "--technician",
            "tech-1",
            "--due",
            &due,
        ],
        &shots,
        || server.log(),
    )
    .await?;
    for shot in ["customer.png", "technician.png"] {
        ensure!(shots.join(shot).exists(), "{shot} was not written");
    }
    server.kill()
}
