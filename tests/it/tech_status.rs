//! Status and errors a person can act on (issue 15, point 6), through the real
//! `fieldsync-tech` binary: each job's state in words, times in the device's zone, money as
//! decimals, a connection error at once, the outcomes a sync received, and a `--server` given
//! once that does not replace the remembered one.

use std::time::{Duration, Instant};

use anyhow::Context;
use fieldsync_server::auth::DeskRole;
use fieldsync_tests::{TestServer, tech_cli, temp_dir};
use serde_json::{Value, json};

/// Runs the binary and insists it succeeded; returns stdout.
fn tech(store: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let (ok, stdout, stderr) = tech_cli(store, args)?;
    anyhow::ensure!(ok, "fieldsync-tech {}: {stderr}", args.join(" "));
    Ok(stdout)
}

/// A loopback address nothing listens on.
fn closed_port() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("ws://{addr}/sync"))
}

/// A device enrolled by code through the binary, in zone +08:00.
async fn enrolled(server: &TestServer, store: &std::path::Path) -> anyhow::Result<()> {
    let body: Value = reqwest::Client::new()
        .post(server.http_url("/api/enrollment-codes"))
        .bearer_auth(server.desk_token(DeskRole::Dispatcher)?)
        .json(&json!({ "technician": "tech-wang" }))
        .send()
        .await?
        .json()
        .await?;
    let code = body["code"].as_str().context("code")?;
    tech(
        store,
        &[
            "init",
            "--server",
            &server.ws_url(),
            "--code",
            code,
            "--zone",
            "+08:00",
        ],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_show_say_where_each_job_stands_in_words() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_in(&dir.path().join("edge")).await?;
    let job = server.create_job("tech-wang").await?.job.to_string();
    let store = dir.path().join("wang.sqlite");
    enrolled(&server, &store).await?;
    tech(&store, &["sync", "--once", "--timeout", "30"])?;
    let prefix = &job[..8];
    tech(
        &store,
        &["part", "add", prefix, "--name", "Relay", "--price", "12050"],
    )?;
    tech(
        &store,
        &[
            "edit",
            prefix,
            "--arrival",
            "2026-11-20T01:30:00Z",
            "--fault-cause",
            "Burnt relay",
            "--solution",
            "Replaced the relay",
            "--opinion",
            "Good",
            "--check-out",
            "Called",
        ],
    )?;
    tech(
        &store,
        &[
            "ack",
            prefix,
            "--signer",
            "Mr Lin",
            "--at",
            "2026-11-20T02:00:00Z",
        ],
    )?;
    tech(
        &store,
        &[
            "approval",
            "request",
            prefix,
            "--kind",
            "extension",
            "--reason",
            "parts on order",
        ],
    )?;
    // The diagnosis changes after the customer signed: the signature is stale.
    tech(
        &store,
        &["edit", prefix, "--fault-cause", "Burnt relay and fuse"],
    )?;

    let jobs = tech(&store, &["jobs"])?;
    for words in [
        "unsynced edits",
        "waiting for approval: extension (R12)",
        "stale signature",
        "diagnosis.fault_cause",
    ] {
        assert!(jobs.contains(words), "jobs lacks {words:?}: {jobs}");
    }
    let shown: Value = serde_json::from_str(&tech(&store, &["show", prefix])?)?;
    let state = shown["state"].to_string();
    assert!(
        state.contains(
            "stale signature: the job changed after Mr Lin signed (diagnosis.fault_cause)"
        ),
        "{state}"
    );
    // Times in the device's zone, RFC 3339; money as decimals.
    assert_eq!(
        shown["job"]["visit"]["arrival"],
        "2026-11-20T09:30:00+08:00"
    );
    assert_eq!(
        shown["job"]["acknowledgement"]["signed_at"],
        "2026-11-20T10:00:00+08:00"
    );
    assert_eq!(shown["job"]["parts"][0]["unit_price"], "120.50");
    assert_eq!(shown["zone"], "UTC+08:00");
    // Another zone for one command.
    let utc: Value = serde_json::from_str(&tech(&store, &["show", prefix, "--zone", "UTC"])?)?;
    assert_eq!(utc["job"]["visit"]["arrival"], "2026-11-20T01:30:00Z");

    // Signed again and completed: after the sync the branch's answer is in words.
    tech(&store, &["ack", prefix, "--signer", "Mr Lin"])?;
    tech(&store, &["complete", prefix])?;
    let out = tech(&store, &["sync", "--once", "--timeout", "30"])?;
    let synced: Value = serde_json::from_str(&out)?;
    let first = &synced["jobs"][0]["state"];
    assert!(
        first.to_string().contains("completion requested")
            || first.to_string().contains("report signed"),
        "{first}"
    );
    let jobs = fieldsync_tests::eventually(Duration::from_secs(30), "the report is signed", || {
        let store = store.clone();
        async move {
            tech(&store, &["sync", "--once", "--timeout", "30"]).ok()?;
            let jobs = tech(&store, &["jobs"]).ok()?;
            jobs.contains("report signed by the branch").then_some(jobs)
        }
    })
    .await?;
    assert!(jobs.contains("signed by the customer (Mr Lin)"), "{jobs}");
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_reports_a_connection_error_at_once_and_keeps_the_remembered_server()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_in(&dir.path().join("edge")).await?;
    let job = server.create_job("tech-wang").await?.job.to_string();
    let store = dir.path().join("wang.sqlite");
    enrolled(&server, &store).await?;

    // Nothing listens there: said at once, in words, not after the 60 s timeout.
    let nowhere = closed_port()?;
    let started = Instant::now();
    let (ok, _, stderr) = tech_cli(&store, &["sync", "--once", "--server", &nowhere])?;
    assert!(!ok);
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("this time only"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    // The remembered server is still the edge: a plain sync works and reports what it got.
    let out: Value = serde_json::from_str(&tech(&store, &["sync", "--once", "--timeout", "30"])?)?;
    assert_eq!(out["server"], server.ws_url());
    let received = out["received"].to_string();
    assert!(
        received.contains(&job) && received.contains("assigned to you"),
        "{received}"
    );

    // --remember replaces it (and says so).
    let (ok, _, stderr) = tech_cli(
        &store,
        &["sync", "--once", "--server", &nowhere, "--remember"],
    )?;
    assert!(!ok);
    assert!(stderr.contains("now the remembered server"), "{stderr}");
    let (ok, _, stderr) = tech_cli(&store, &["sync", "--once"])?;
    assert!(!ok && stderr.contains("connection refused"), "{stderr}");
    server.stop().await?;
    Ok(())
}
