//! The job page's conflicts over HTTP (issue 14, point 2; issue 15's coherent merges): two
//! technicians write the work (R7 fault cause and solution, R10 labour) offline on their own
//! devices (the SDK, real sync); the signer refuses with `unresolved_conflict`; the job page
//! shows each competing value with the technician who wrote it and when; an analyst reads it
//! without a form and is refused the POST; a post without the CSRF token changes nothing; a
//! dispatcher resolves with the form (the API's function: recorded in the job and the audit
//! log); the page then shows the resolution and no conflict, and the report is signed.

use std::time::Duration;

use anyhow::Context;
use fieldsync_client::{Device, JobEdit, PartDraft};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::PartUpdate;
use fieldsync_shared::job::{Labour, ReportOutcome};
use fieldsync_shared::time::Money;
use fieldsync_tests::{TestServer, eventually, temp_dir};
use reqwest::StatusCode;
use serde_json::json;

use crate::coherent_merges::{ack, call, enroll, holds, outcome, reasons, start, synced};
use crate::console::{Browser, audit_actions, console_server};

const WAIT: Duration = Duration::from_secs(30);

/// Two technicians, Wang and Li, on one job of a console server; both devices hold it and
/// are offline.
pub(crate) struct Conflicted {
    pub server: TestServer,
    pub _dir: tempfile::TempDir,
    pub job: DocumentId,
    pub wang: Device,
    pub li: Device,
}

/// Wang's and Li's devices (enrolled by code) both holding one job assigned to both, offline.
async fn two_devices_offline(
    server: &TestServer,
    dir: &std::path::Path,
) -> anyhow::Result<(DocumentId, Device, Device)> {
    let job = server.create_job("tech-wang").await?.job;
    let wang = enroll(server, dir, "tech-wang").await?;
    let li = enroll(server, dir, "tech-li").await?;
    let (status, body) = call(
        server,
        reqwest::Method::PUT,
        &format!("/api/jobs/{job}/technicians"),
        DeskRole::Dispatcher,
        Some(json!({ "technicians": ["tech-wang", "tech-li"] })),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    for device in [&wang, &li] {
        start(device, server);
        holds(device, job).await?;
        device.stop_sync();
    }
    Ok((job, wang, li))
}

/// R7, R10: Wang completes the job offline (cause, solution, 45 minutes, the customer's
/// signature, completion); Li, offline too, writes another cause, solution and 90 minutes.
/// Both sync; the signer refuses the completion with `unresolved_conflict`.
pub(crate) async fn two_technicians_in_conflict(
    server: TestServer,
    dir: tempfile::TempDir,
) -> anyhow::Result<Conflicted> {
    let (job, wang, li) = two_devices_offline(&server, dir.path()).await?;
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
    start(&li, &server);
    synced(&li, job).await?;
    start(&wang, &server);
    synced(&wang, job).await?;
    let refused = outcome(&wang, job, 0).await?;
    let why = reasons(&refused);
    anyhow::ensure!(
        why.iter().any(|r| r.code == "unresolved_conflict"),
        "the signer refuses the conflict first: {why:?}"
    );
    Ok(Conflicted {
        server,
        _dir: dir,
        job,
        wang,
        li,
    })
}

/// The groups `GET /api/jobs/{id}` lists as unresolved.
async fn unresolved_groups(server: &TestServer, job: DocumentId) -> anyhow::Result<Vec<String>> {
    let seen = server.get_job(job).await?;
    Ok(seen["unresolved"]
        .as_array()
        .context("unresolved")?
        .iter()
        .filter_map(|u| u["group"].as_str().map(str::to_owned))
        .collect())
}

/// The text of the `<section id="conflicts">` of a job page, or "" when there is none.
fn conflicts_section(body: &str) -> &str {
    body.find("id=\"conflicts\"")
        .map(|at| {
            let rest = &body[at..];
            &rest[..rest.find("</section>").unwrap_or(rest.len())]
        })
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_r10_the_desk_sees_who_wrote_which_value_when_and_resolves_it_with_the_form()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let Conflicted {
        server,
        _dir,
        job,
        wang,
        li: li_device,
    } = two_technicians_in_conflict(server, dir).await?;
    let page_path = format!("/jobs/{job}");
    let resolve = format!("/jobs/{job}/resolve");

    // The dispatcher (Chinese) sees both values of each field, both technicians, and when.
    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get(&page_path).await?;
    assert_eq!(page.status, StatusCode::OK);
    let section = conflicts_section(&page.body);
    for shown in [
        "Worn relay contacts",
        "Low refrigerant",
        "Replaced the relay",
        "Recharged the refrigerant",
        "45 分钟",
        "90 分钟",
        "tech-wang",
        "tech-li",
        "工作（故障原因、解决方法、工时）",
        "action=\"/jobs/",
    ] {
        assert!(section.contains(shown), "{shown:?} in {section}");
    }
    // Every value has its change's time (the device's clock), in the branch's zone.
    assert!(section.contains("<time>"), "{section}");
    assert!(!section.contains("时间不详"), "{section}");
    assert!(!section.contains("未知设备"), "{section}");

    // The API lists the same writers (`GET /api/jobs/{id}`, `unresolved[].values`).
    let seen = server.get_job(job).await?;
    let writers: Vec<&str> = seen["unresolved"][0]["values"]
        .as_array()
        .context("values")?
        .iter()
        .flat_map(|f| f["values"].as_array().into_iter().flatten())
        .filter_map(|w| w["by"].as_str())
        .collect();
    assert!(
        writers.contains(&"tech-wang") && writers.contains(&"tech-li"),
        "{seen}"
    );

    // An analyst reads the same, with no form, and is refused the post.
    let zhao = Browser::signed_in(&server, "zhao").await?;
    let read = zhao.get(&page_path).await?;
    let read_section = conflicts_section(&read.body);
    assert!(
        read_section.contains("tech-li") && read_section.contains("Low refrigerant"),
        "{read_section}"
    );
    assert!(
        !read.body.contains("action=\"/jobs/"),
        "no form for an analyst"
    );
    assert!(read.body.contains("id=\"resolve-read-only\""));
    let zhao_csrf = zhao.get("/board").await?.csrf()?;
    let refused = zhao
        .post(
            &resolve,
            &[
                ("csrf", &zhao_csrf),
                ("group", "work"),
                ("fault_cause", "Low refrigerant"),
            ],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("调度员"), "{}", refused.body);

    // Without the form's CSRF token: refused, nothing changes.
    let refused = li
        .post(
            &resolve,
            &[("group", "work"), ("fault_cause", "Worn relay contacts")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(unresolved_groups(&server, job).await?, vec!["work"]);

    // Refusals in words: a value that does not read, a group that does not exist.
    let csrf = page.csrf()?;
    let refused = li
        .post(
            &resolve,
            &[
                ("csrf", &csrf),
                ("group", "work"),
                ("labour_minutes", "__other"),
                ("labour_minutes__other", "an hour"),
            ],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("输入的值无法识别"),
        "{}",
        refused.body
    );
    let refused = li
        .post(&resolve, &[("csrf", &csrf), ("group", "labour")])
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("没有这个冲突组"), "{}", refused.body);
    assert_eq!(unresolved_groups(&server, job).await?, vec!["work"]);

    // The dispatcher picks Wang's account of the work.
    let done = li
        .post(
            &resolve,
            &[
                ("csrf", &csrf),
                ("group", "work"),
                ("fault_cause", "Worn relay contacts"),
                ("solution", "Replaced the relay"),
                ("labour_minutes", "45"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/jobs/{job}?done=resolved").as_str())
    );
    let page = li
        .get(done.location.as_deref().context("location")?)
        .await?;
    assert!(page.body.contains("冲突已解决"), "{}", page.body);
    assert_eq!(conflicts_section(&page.body), "", "no conflict left");
    let resolutions = page
        .body
        .find("id=\"resolutions\"")
        .map(|at| &page.body[at..])
        .context("the resolutions are listed")?;
    for shown in [
        "desk:li",
        "Worn relay contacts",
        "Replaced the relay",
        "45 分钟",
    ] {
        assert!(resolutions.contains(shown), "{shown:?} in {resolutions}");
    }
    assert!(unresolved_groups(&server, job).await?.is_empty());
    // Recorded in the job: what the devices read.
    let seen = server.get_job(job).await?;
    assert_eq!(
        seen["job"]["diagnosis"]["fault_cause"],
        "Worn relay contacts"
    );
    assert_eq!(seen["job"]["labour"]["minutes"], 45);
    assert_eq!(seen["resolutions"][0]["by"], "desk:li", "{seen}");
    // A second post finds nothing left to resolve.
    let again = li
        .post(
            &resolve,
            &[("csrf", &csrf), ("group", "work"), ("labour_minutes", "45")],
        )
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body.contains("已经没有需要解决的冲突"),
        "{}",
        again.body
    );

    // The devices get the resolution; the customer signs the resolved job; the report is
    // signed.
    eventually(WAIT, "the resolution reaches both devices", || async {
        let (w, l) = (
            wang.unresolved(job).await.ok()?,
            li_device.unresolved(job).await.ok()?,
        );
        (w.is_empty() && l.is_empty()).then_some(())
    })
    .await?;
    wang.acknowledge(job, ack()).await?;
    wang.request_completion(job).await?;
    let signed = outcome(&wang, job, 1).await?;
    assert!(
        matches!(signed.report, Some(ReportOutcome::Signed { .. })),
        "{:?}",
        signed.report
    );
    eventually(WAIT, "the job page says signed", || async {
        let page = li.get(&page_path).await.ok()?;
        page.body.contains("id=\"job-status\">已签发").then_some(())
    })
    .await?;

    // The audit log names the dispatcher, the action and the job.
    let manager = Browser::signed_in(&server, "wang").await?;
    let csv = manager.get("/audit.csv").await?.body;
    assert!(
        audit_actions(&csv).contains(&("li".into(), "merge_resolve".into())),
        "{csv}"
    );
    assert!(csv.contains(&format!(",merge_resolve,job:{job},")), "{csv}");
    assert_eq!(
        csv.matches(",merge_resolve,").count(),
        1,
        "one resolution, refusals write nothing: {csv}"
    );
    wang.close().await;
    li_device.close().await;
    server.stop().await
}

/// The end-to-end case in chromium (`tests/e2e/conflict.mjs`, JavaScript off): a
/// device completes the job offline while another technician's device wrote other work
/// (R7, R10); the dispatcher sees the conflict with both authors and times, resolves it with
/// the form; the device gets the resolution, the customer signs the resolved job, and the
/// page shows the report signed. Screenshots `conflict.png` and `conflict-signed.png`
/// (`docs/console/` with `FIELDSYNC_WRITE_SCREENSHOTS=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_r10_in_chromium_the_dispatcher_resolves_two_technicians_conflict_and_the_report_is_signed()
-> anyhow::Result<()> {
    use crate::console_browser::{chromium, e2e_dir, run_e2e, screenshot_dir};
    // Said at once, with what to install, when chromium or the package is missing.
    chromium()?;
    let installed = e2e_dir().join("node_modules").join("playwright-core");
    anyhow::ensure!(
        installed.exists(),
        "{} is missing: run `npm ci --prefix tests/e2e` (or scripts/test, which does it)",
        installed.display()
    );
    let dir = temp_dir()?;
    let shots = screenshot_dir(dir.path());
    let server = console_server(dir.path()).await?;
    let Conflicted {
        server,
        _dir,
        job,
        wang,
        li,
    } = two_technicians_in_conflict(server, dir).await?;
    let base = server.http_url("");
    let job_text = job.to_string();
    let args = [
        "--base",
        &base,
        "--user",
        "li",
        "--password",
        "li-password",
        "--job",
        &job_text,
        "--authors",
        "tech-wang,tech-li",
        "--values",
        "Worn relay contacts,Low refrigerant,Replaced the relay,Recharged the refrigerant",
        "--keep",
        "Worn relay contacts",
    ];
    // The browser resolves, then waits for the signed report; meanwhile Wang's device takes
    // the resolution, has the customer sign the resolved job and completes it.
    let device = async {
        eventually(WAIT, "the desk's resolution reaches the device", || async {
            let resolved = wang.resolutions(job).await.ok()?;
            let open = wang.unresolved(job).await.ok()?;
            (!resolved.is_empty() && open.is_empty()).then_some(())
        })
        .await?;
        wang.acknowledge(job, ack()).await?;
        wang.request_completion(job).await?;
        outcome(&wang, job, 1).await
    };
    let (summary, signed) =
        tokio::join!(run_e2e("conflict.mjs", &args, &shots, String::new), device);
    let summary = summary?;
    let signed = signed?;
    assert!(
        matches!(signed.report, Some(ReportOutcome::Signed { .. })),
        "{:?}",
        signed.report
    );
    assert_eq!(
        signed.diagnosis.fault_cause.as_deref(),
        Some("Worn relay contacts")
    );
    assert_eq!(
        signed.labour.minutes, 45,
        "Wang's labour kept with his cause"
    );
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(5),
        "{summary}"
    );
    for shot in ["conflict.png", "conflict-signed.png"] {
        let size = std::fs::metadata(shots.join(shot))?.len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    eprintln!("conflict e2e: {} ms in the browser", summary["ms"]);
    // The resolution is the dispatcher's, in the job (what the devices read).
    let seen = server.get_job(job).await?;
    assert_eq!(seen["resolutions"][0]["by"], "desk:li", "{seen}");
    wang.close().await;
    li.close().await;
    server.stop().await
}

fn part(number: &str, name: &str) -> PartDraft {
    PartDraft {
        part_number: number.into(),
        name: name.into(),
        specification: String::new(),
        quantity: 1,
        unit_price: Money(2500),
        warranty: false,
    }
}

/// R10, R18: a part line whose quantity Wang changed while Li changed its price and warranty,
/// and a part both added (possibly billed twice). A manager (English) sees each value with its
/// technician, resolves the line with a typed price and keeps one of the duplicates; ticking
/// no line is refused in words; both resolutions are in the job and the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_r18_a_part_line_and_a_duplicate_part_resolved_from_the_job_page() -> anyhow::Result<()>
{
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let (job, wang, li) = two_devices_offline(&server, dir.path()).await?;
    // A line both devices hold before they go offline again.
    let line = wang.add_part(job, part("PN-1", "Fan motor")).await?;
    start(&wang, &server);
    synced(&wang, job).await?;
    wang.stop_sync();
    start(&li, &server);
    eventually(WAIT, "Li's device holds the line", || async {
        let read = li.job(job).await.ok()?;
        read.parts.iter().any(|p| p.id == line).then_some(())
    })
    .await?;
    li.stop_sync();
    // Offline: Wang fitted two; Li re-priced the one under warranty. Both add the same relay.
    wang.edit(
        job,
        JobEdit::SetPartQuantity {
            id: line.clone(),
            quantity: 2,
        },
    )
    .await?;
    li.edit(
        job,
        JobEdit::UpdatePart {
            id: line.clone(),
            update: PartUpdate {
                unit_price: Some(Money(3000)),
                warranty: Some(true),
                ..PartUpdate::default()
            },
        },
    )
    .await?;
    let wang_relay = wang.add_part(job, part("PN-9", "Relay")).await?;
    let li_relay = li.add_part(job, part("pn-9", "Relay")).await?;
    for device in [&wang, &li] {
        start(device, &server);
        synced(device, job).await?;
    }
    let part_group = format!("part:{}", line.0);
    eventually(WAIT, "the server holds both devices' changes", || async {
        let open = unresolved_groups(&server, job).await.ok()?;
        (open == vec![part_group.clone(), "duplicate_part:PN-9".to_owned()]).then_some(())
    })
    .await?;

    let manager = Browser::signed_in(&server, "wang").await?;
    let page_path = format!("/jobs/{job}");
    let resolve = format!("/jobs/{job}/resolve");
    let page = manager.get(&page_path).await?;
    let section = conflicts_section(&page.body);
    for shown in [
        "Part line · PN-1 Fan motor",
        "Possibly duplicated part · PN-9",
        "30.00 CNY",
        "Yes",
        "Relay × 1 · 25.00 CNY",
    ] {
        assert!(section.contains(shown), "{shown:?} in {section}");
    }
    // Each value and each duplicate line names the technician who wrote it.
    let part_form = &section[section.find("Part line").context("part group")?
        ..section
            .find("Possibly duplicated")
            .context("duplicate group")?];
    assert!(
        part_form.contains("tech-wang") && part_form.contains("tech-li"),
        "{part_form}"
    );
    let duplicate = &section[section.find("Possibly duplicated").context("duplicate")?..];
    for relay in [&wang_relay, &li_relay] {
        assert!(duplicate.contains(&relay.0), "{duplicate}");
    }
    assert!(
        duplicate.contains("tech-wang") && duplicate.contains("tech-li"),
        "{duplicate}"
    );
    let csrf = page.csrf()?;

    // The line: Wang's quantity, a price typed by the manager, not under warranty.
    let done = manager
        .post(
            &resolve,
            &[
                ("csrf", csrf.as_str()),
                ("group", part_group.as_str()),
                ("quantity", "2"),
                ("unit_price", "__other"),
                ("unit_price__other", "27.50"),
                ("warranty", "no"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // The duplicate: ticking no line is refused in words; keeping Wang's removes Li's.
    let refused = manager
        .post(
            &resolve,
            &[("csrf", csrf.as_str()), ("group", "duplicate_part:PN-9")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("This resolution does not stand"),
        "{}",
        refused.body
    );
    let done = manager
        .post(
            &resolve,
            &[
                ("csrf", csrf.as_str()),
                ("group", "duplicate_part:PN-9"),
                ("keep", wang_relay.0.as_str()),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = manager.get(&page_path).await?;
    assert_eq!(conflicts_section(&page.body), "", "no conflict left");
    let listed = &page.body[page
        .body
        .find("id=\"resolutions\"")
        .context("resolutions")?..];
    for shown in ["desk:wang", "27.50 CNY", "Lines kept", "PN-9 Relay"] {
        assert!(listed.contains(shown), "{shown:?} in {listed}");
    }

    let seen = server.get_job(job).await?;
    let parts = seen["job"]["parts"].as_array().context("parts")?;
    let ids: Vec<&str> = parts.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, vec![line.0.as_str(), wang_relay.0.as_str()], "{seen}");
    assert_eq!(parts[0]["quantity"], 2);
    assert_eq!(parts[0]["unit_price"], 2750);
    assert_eq!(parts[0]["warranty"], false);
    let csv = manager.get("/audit.csv").await?.body;
    assert_eq!(
        audit_actions(&csv)
            .iter()
            .filter(|a| *a == &("wang".to_owned(), "merge_resolve".to_owned()))
            .count(),
        2,
        "{csv}"
    );
    wang.close().await;
    li.close().await;
    server.stop().await
}
