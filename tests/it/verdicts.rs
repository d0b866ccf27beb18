//! Issue 16: the branch learns head office's verdict on each report it delivered, and a
//! report rejected for want of the branch's key recovers once the key is enrolled.

use fieldsync_server::auth::DeskRole;
use fieldsync_tests::{SETTLE, cli, eventually};
use serde_json::Value;

use crate::head_office::{CHAIN_NOW, Chain};

/// The branch's `GET /api/reports?verdict=…` as a dispatcher reads it.
async fn branch_reports(chain: &Chain, verdict: &str) -> anyhow::Result<Vec<Value>> {
    let response = reqwest::Client::new()
        .get(
            chain
                .branch
                .http_url(&format!("/api/reports?verdict={verdict}")),
        )
        .bearer_auth(chain.branch.desk_token(DeskRole::Dispatcher)?)
        .send()
        .await?
        .error_for_status()?;
    let body: Value = response.json().await?;
    Ok(body["reports"].as_array().cloned().unwrap_or_default())
}

/// One line of the branch's `/metrics`.
async fn branch_metric(chain: &Chain, line_start: &str) -> anyhow::Result<Option<String>> {
    let text = reqwest::get(chain.branch.http_url("/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_rejected_for_a_wrong_branch_key_recovers_once_the_key_is_enrolled()
-> anyhow::Result<()> {
    // Head office enrolled another key for north-01: it keeps the branch's report aside.
    let chain = Chain::start_enrolling(false).await?;
    let (_job, report_id) = chain.complete_a_job(CHAIN_NOW - 60_000).await?;
    let rejected = eventually(
        SETTLE,
        "the branch hears the report was rejected",
        || async {
            let found = branch_reports(&chain, "rejected").await.ok()?;
            found
                .into_iter()
                .find(|r| r["report_id"] == report_id.as_str())
        },
    )
    .await?;
    let code = rejected["verdict"]["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "the verdict names why: {rejected}");
    assert!(rejected["delivered_at"].is_string(), "{rejected}");
    assert_eq!(
        branch_metric(
            &chain,
            "fieldsync_reports_at_head_office{verdict=\"rejected\"} "
        )
        .await?
        .as_deref(),
        Some("1")
    );
    assert!(branch_reports(&chain, "verified").await?.is_empty());
    // Head office's own keys do not vouch for it either: `verify --head-office` says which
    // check failed, with exit status 1.
    let exported = reqwest::Client::new()
        .get(chain.branch.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(chain.branch.desk_token(DeskRole::Analyst)?)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let out = fieldsync_tests::temp_dir()?;
    let file = out.path().join("report.json");
    std::fs::write(&file, &exported)?;
    let output = std::process::Command::new(fieldsync_tests::fieldsync_binary()?)
        .arg("verify")
        .arg(&file)
        .arg("--head-office")
        .arg(&chain.head_office.data_dir)
        .output()?;
    let said: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(said["valid"], false, "{said}");
    assert!(
        said["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{said}"
    );

    // The operator enrolls the branch's real key (the README's command, the real binary):
    // head office verifies the report again by itself, and the branch hears it.
    let key = chain.branch.data_dir.join("keys").join("server.pub");
    let key = key.to_str().ok_or_else(|| anyhow::anyhow!("path"))?;
    let enrolled: Value = serde_json::from_str(&cli(
        &chain.head_office.data_dir,
        &["branch", "enroll", "--branch", "north-01", "--key", key],
    )?)?;
    assert_eq!(enrolled["retried"], serde_json::json!([report_id]));
    chain.wait_verified(&report_id).await?;
    eventually(
        SETTLE,
        "the branch hears the report was archived",
        || async {
            let found = branch_reports(&chain, "verified").await.ok()?;
            found
                .iter()
                .any(|r| r["report_id"] == report_id.as_str())
                .then_some(())
        },
    )
    .await?;
    assert!(branch_reports(&chain, "rejected").await?.is_empty());
    assert_eq!(
        branch_metric(
            &chain,
            "fieldsync_reports_at_head_office{verdict=\"verified\"} "
        )
        .await?
        .as_deref(),
        Some("1")
    );
    chain.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_retry_verifies_a_rejected_report_again_and_refuses_an_edge() -> anyhow::Result<()>
{
    let chain = Chain::start_enrolling(false).await?;
    let (_job, report_id) = chain.complete_a_job(CHAIN_NOW - 60_000).await?;
    eventually(SETTLE, "head office keeps the report aside", || async {
        let (_, aside) = chain.get("/api/archive/rejected").await.ok()?;
        (aside["rejected"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await?;
    // Nothing changed: a retry rejects it again, for the same reason.
    let retried: Value = serde_json::from_str(&cli(
        &chain.head_office.data_dir,
        &["archive", "retry", "--report", &report_id],
    )?)?;
    assert_eq!(retried["retried"], serde_json::json!([report_id]));
    eventually(SETTLE, "the retried report is kept aside again", || async {
        let (_, aside) = chain.get("/api/archive/rejected").await.ok()?;
        (aside["rejected"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await?;
    let (status, body) = chain
        .get(&format!("/api/archive/reports/{report_id}"))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rejected", "{body}");
    // A retry with nothing to retry says so; an edge's directory is refused.
    let none: Value = serde_json::from_str(&cli(
        &chain.head_office.data_dir,
        &[
            "archive",
            "retry",
            "--report",
            "0123456789abcdef0123456789abcdef",
        ],
    )?)?;
    assert_eq!(none["retried"], serde_json::json!([]));
    let at_edge = cli(&chain.branch.data_dir, &["archive", "retry", "--rejected"]);
    let message = at_edge.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("lives at head office"), "{message}");
    chain.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_answer_branch_tokens_only_and_never_another_branchs_report() -> anyhow::Result<()>
{
    let chain = Chain::start().await?;
    let (_job, report_id) = chain.complete_a_job(CHAIN_NOW - 60_000).await?;
    chain.wait_verified(&report_id).await?;
    let url = chain.head_office.http_url("/api/archive/verdicts");
    let http = reqwest::Client::new();
    let ask = |token: String, ids: Vec<String>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "reports": ids }))
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            anyhow::Ok((status, body))
        }
    };
    let own = std::fs::read_to_string(chain.branch.data_dir.join("upstream.token"))?;
    let (status, body) = ask(own.trim().to_owned(), vec![report_id.clone()]).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdicts"][0]["status"], "verified", "{body}");
    // Another enrolled branch asks about north-01's report: head office knows nothing of it
    // for them.
    let other_dir = fieldsync_tests::temp_dir()?;
    let other = chain
        .head_office
        .enroll_branch("south-02", other_dir.path())?;
    let (status, body) = ask(
        std::fs::read_to_string(other)?.trim().to_owned(),
        vec![report_id.clone()],
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verdicts"][0]["status"], "unknown", "{body}");
    // A desk token is not a branch token; too many ids is a clear error.
    let desk = chain.head_office.desk_token(DeskRole::Analyst)?;
    let (status, body) = ask(desk, vec![report_id.clone()]).await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let many: Vec<String> = (0..1001).map(|i| format!("{i:032x}")).collect();
    let (status, body) = ask(own.trim().to_owned(), many).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("too_many_reports"))
    );
    chain.stop().await
}

/// `fieldsync archive audit [--full]` against a head office's data directory: its JSON
/// summary and whether it exited 0.
fn audit(dir: &std::path::Path, full: bool) -> anyhow::Result<(bool, Value)> {
    let mut command = std::process::Command::new(fieldsync_tests::fieldsync_binary()?);
    if let Some(url) = fieldsync_tests::pg::test_database_blocking(dir)? {
        command.env("FIELDSYNC_STORAGE_URL", url);
    }
    command.args(["archive", "audit", "--data-dir"]).arg(dir);
    if full {
        command.arg("--full");
    }
    let out = command
        .env_remove("FIELDSYNC_CONFIG")
        .env("FIELDSYNC_LOG", "warn")
        .output()?;
    let summary = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.success(), summary))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_audit_verifies_the_archive_again_from_the_stored_content_or_the_documents()
-> anyhow::Result<()> {
    // Issue 17: re-verifying the archive (an audit) at both depths of REPORT-FORMAT.md §6.
    let chain = Chain::start().await?;
    let (_job, report_id) = chain.complete_a_job(CHAIN_NOW - 60_000).await?;
    chain.wait_verified(&report_id).await?;
    let dir = chain.head_office.data_dir.clone();
    for (full, depth) in [(false, "stored"), (true, "full")] {
        let (ok, summary) = audit(&dir, full)?;
        assert!(ok, "{summary}");
        assert_eq!(summary["depth"], depth, "{summary}");
        assert_eq!(
            (summary["reports"].as_u64(), summary["verified"].as_u64()),
            (Some(1), Some(1)),
            "{summary}"
        );
        assert_eq!(summary["failed"], serde_json::json!([]), "{summary}");
    }
    let db = rusqlite::Connection::open(dir.join("fieldsync.sqlite"))?;
    // The attestation kept when the report was archived is what the audit read; without it
    // the audit reads the report document instead, and still verifies.
    let removed = db.execute(
        "DELETE FROM meta WHERE namespace = ?1 AND key = ?2",
        [
            fieldsync_server::head_office::archive::ATTESTATIONS,
            &report_id,
        ],
    )?;
    assert_eq!(removed, 1, "head office kept the report's attestation");
    let (ok, summary) = audit(&dir, false)?;
    assert!(ok && summary["verified"] == 1, "{summary}");
    // An archive column changed behind head office's back: the signed report disagrees
    // (SQLite archive: the row is in this file).
    if fieldsync_tests::pg::test_database_blocking(&dir)?.is_none() {
        db.execute(
            "UPDATE ho_reports SET customer_id = 'c-9999' WHERE report_id = ?1",
            [&report_id],
        )?;
        let (ok, summary) = audit(&dir, false)?;
        assert!(!ok, "{summary}");
        assert_eq!(summary["failed"][0]["code"], "column_mismatch", "{summary}");
        assert_eq!(summary["failed"][0]["report_id"], report_id.as_str());
    }
    chain.stop().await
}
