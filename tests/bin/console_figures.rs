//! The web console issue's figures (issue 14): the board with 5,000 jobs. A server in this
//! process (its own port, SQLite in a temp dir), `FIGURES_JOBS` jobs (default 5,000) created
//! through `POST /api/jobs` for 50 technicians and 400 customers, then, signed in as a person
//! with a cookie, the time of the first `/board` (every job document read once) and p50/p99
//! of `/board` and `GET /api/jobs` afterwards (as the client sees them on loopback), with the
//! size of each answer.
//!
//! Run: `cargo run --release -p fieldsync-tests --bin console-figures` (prints JSON). Not a
//! test: timing belongs in benchmarks.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use fieldsync_server::accounts::{self, Lang};
use fieldsync_server::auth::DeskRole;
use fieldsync_tests::{TestServer, sample_job_body, temp_dir};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn timed(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    rounds: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut times = Vec::with_capacity(rounds);
    let mut size = 0;
    for _ in 0..rounds {
        let mut request = http.get(url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let started = Instant::now();
        let answer = request.send().await?;
        ensure!(answer.status().is_success(), "{url}: {}", answer.status());
        size = answer.bytes().await?.len();
        times.push(started.elapsed());
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99), size))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::var("FIGURES_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let dir = temp_dir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.timezone = "Asia/Shanghai".parse().expect("a known zone");
    })
    .await?;
    let store = std::sync::Arc::clone(&server.state.store);
    let now = server.now();
    tokio::task::spawn_blocking(move || {
        accounts::add(
            &store,
            "li",
            "李伟",
            DeskRole::Dispatcher,
            Lang::Zh,
            "li-password-1",
            now,
        )
    })
    .await??;
    let token = server.desk_token(DeskRole::Dispatcher)?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..jobs {
        let mut body = sample_job_body(&format!("tech-{:02}", i % 50));
        body["customer"]["id"] = json!(format!("c-{}", i % 400));
        body["customer"]["name"] = json!(format!("客户 {}", i % 400));
        body["product"]["serial"] = json!(format!("SN-{i}"));
        let at = fieldsync_shared::time::Timestamp::from_millis(
            now.as_millis() - 86_400_000 + (i as i64 % 96) * 1_800_000,
        );
        body["request"]["received_at"] = json!(now.plus_millis(-2 * 86_400_000).to_string());
        body["request"]["requested_arrival"] = json!(at.to_string());
        let (http, token, url) = (http.clone(), token.clone(), server.http_url("/api/jobs"));
        batch.push(tokio::spawn(async move {
            let answer = http.post(url).bearer_auth(token).json(&body).send().await?;
            ensure!(answer.status().as_u16() == 201, "{}", answer.text().await?);
            Ok::<(), anyhow::Error>(())
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

    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = browser
        .get(server.http_url("/login"))
        .send()
        .await?
        .text()
        .await?;
    let marker = "name=\"csrf\" value=\"";
    let at = form.find(marker).context("csrf")? + marker.len();
    let csrf = &form[at..at + 64];
    let signed = browser
        .post(server.http_url("/login"))
        .form(&[
            ("name", "li"),
            ("password", "li-password-1"),
            ("csrf", csrf),
            ("next", "/board"),
        ])
        .send()
        .await?;
    ensure!(
        signed.status().as_u16() == 303,
        "sign-in: {}",
        signed.status()
    );

    let first = Instant::now();
    let page = browser
        .get(server.http_url("/board"))
        .send()
        .await?
        .text()
        .await?;
    let first_ms = first.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        page.contains(&format!("{jobs} 个工单")),
        "the board does not count {jobs} jobs"
    );

    let (board_p50, board_p99, board_bytes) =
        timed(&browser, &server.http_url("/board"), None, 200).await?;
    let (filtered_p50, filtered_p99, filtered_bytes) = timed(
        &browser,
        &server.http_url("/board?sla=overdue&customer=%E5%AE%A2%E6%88%B7%2012&page=1"),
        None,
        200,
    )
    .await?;
    let (api_p50, api_p99, api_bytes) =
        timed(&http, &server.http_url("/api/jobs"), Some(&token), 200).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "jobs": jobs,
            "create_jobs_s": created_s,
            "first_board_ms": first_ms,
            "board_page_50": {"p50_ms": board_p50, "p99_ms": board_p99, "html_bytes": board_bytes},
            "board_filtered": {"p50_ms": filtered_p50, "p99_ms": filtered_p99, "html_bytes": filtered_bytes},
            "api_jobs_page_50": {"p50_ms": api_p50, "p99_ms": api_p99, "json_bytes": api_bytes},
        }))?
    );
    server.stop().await
}
