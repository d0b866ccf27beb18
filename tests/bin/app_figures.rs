//! The technician app's figures (issue 20): app start to the job list with 200 jobs stored,
//! Chromium's CPU throttled 4× (a mid-range phone); the sync of 200 jobs after a day offline;
//! the size of the app's download. A real `fieldsync serve` from this build's target
//! directory (SQLite in a temp dir, the wall clock), `FIGURES_JOBS` jobs (default 200)
//! created through `POST /api/jobs` for one technician, an enrollment code for that
//! technician, then `tests/e2e/app_figures.mjs` in Debian's chromium, which does the rest
//! (what it measures and how: its header).
//!
//! Run: `cargo build --release --bin fieldsync --bin app-figures &&
//! target/release/app-figures` (prints JSON; `FIGURES_RUNS`, default 5, app starts per
//! network state; `FIGURES_THROTTLE`, default 4; `FIGURES_ARRIVE`, default 10, jobs the
//! technician records arrival on while offline). Arguments are passed on to the script (its
//! profiling aids). Not a test: timing belongs in benchmarks.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use fieldsync_tests::{
    ServerProcess, create_job_at, enrollment_code_at, manager_token, sample_job_body, temp_dir,
};
use serde_json::{Value, json};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs = setting("FIGURES_JOBS", 200);
    let runs = setting("FIGURES_RUNS", 5);
    let throttle = setting("FIGURES_THROTTLE", 4);
    let arrive = setting("FIGURES_ARRIVE", 10).min(jobs);
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let server = tokio::task::spawn_blocking({
        let data = data.clone();
        move || ServerProcess::start_with(&data, &[], &[])
    })
    .await??;
    let token = tokio::task::spawn_blocking({
        let data = data.clone();
        move || manager_token(&data, "2h")
    })
    .await??;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..jobs {
        let mut body = sample_job_body("tech-1");
        body["customer"]["id"] = json!(format!("c-{i}"));
        body["customer"]["name"] = json!(format!("客户 {i}"));
        body["product"]["serial"] = json!(format!("SN-{i}"));
        let (http, token, base) = (http.clone(), token.clone(), server.http_url(""));
        batch.push(tokio::spawn(async move {
            create_job_at(&http, &base, &token, &body).await
        }));
        if batch.len() == 16 {
            for task in batch.drain(..) {
                task.await??;
            }
        }
    }
    for task in batch.drain(..) {
        task.await??;
    }
    let created_s = started.elapsed().as_secs_f64();

    let code = enrollment_code_at(&http, &server.http_url(""), &token, "tech-1").await?;

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e")
        .join("app_figures.mjs");
    let shots = dir.path().join("shots");
    let chromium =
        std::env::var("FIELDSYNC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .args(["--base", &server.http_url(""), "--code", &code])
        .args(["--jobs", &jobs.to_string(), "--runs", &runs.to_string()])
        .args([
            "--throttle",
            &throttle.to_string(),
            "--arrive",
            &arrive.to_string(),
        ])
        .args(["--desk-token", &token, "--chromium", &chromium])
        .arg("--screenshots")
        .arg(&shots)
        // The script's profiling aids (`--dev-bundle FILE`, `--profile FILE`), passed on.
        .args(std::env::args_os().skip(1))
        .kill_on_drop(true)
        .output()
        .await
        .context("running node (Node 20 or newer; `npm ci --prefix tests/e2e`)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "app_figures.mjs: {}\n{stdout}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            server.log()
        );
    }
    let mut figures: Value = serde_json::from_str(stdout.trim()).context("the script's JSON")?;
    figures["create_jobs_s"] = json!(created_s);
    figures["server_rss_bytes"] = json!(server.memory("VmRSS").ok());
    println!("{}", serde_json::to_string_pretty(&figures)?);
    if let Ok(to) = std::env::var("FIGURES_SCREENSHOT") {
        std::fs::copy(shots.join("jobs-200.png"), &to)
            .with_context(|| format!("copying the screenshot to {to}"))?;
    }
    server.kill()
}
