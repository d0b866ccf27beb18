//! Running the server for real (issue 13): one process per data directory, no directory made
//! by a command run in the wrong folder, logs an operator can read and trust, metrics per role,
//! JSON error bodies, a branch link that reports a configuration problem once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fieldsync_tests::{SETTLE, ServerProcess, TestServer, cli, fieldsync_binary, temp_dir};

/// Runs `fieldsync args…` to its end (killing it after [`SETTLE`], which fails the test).
fn run(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut child = Command::new(fieldsync_binary()?)
        .args(args)
        .env_remove("FIELDSYNC_CONFIG")
        .env_remove("FIELDSYNC_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + SETTLE;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("fieldsync {} did not end", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn a_second_server_on_one_data_directory_exits_naming_the_first_ones_pid() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let first = ServerProcess::start(data.path())?;
    let second = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(data.path()),
        ],
        &[],
    )?;
    assert!(!second.status.success());
    let message = stderr(&second);
    assert!(message.contains("in use"), "{message}");
    assert!(
        message.contains(&format!("pid {}", first.pid())),
        "{message}"
    );
    // Commands that change records still work beside the running server.
    cli(
        data.path(),
        &[
            "device",
            "enroll",
            "--technician",
            "tech-wang",
            "--device",
            "dev-1",
        ],
    )?;
    // SIGKILL leaves the lock file behind; the lock itself dies with the process.
    first.kill()?;
    let again = ServerProcess::start(data.path())?;
    assert_ne!(again.pid(), 0);
    Ok(())
}

#[test]
fn only_serve_and_keygen_create_a_data_directory() -> anyhow::Result<()> {
    let root = temp_dir()?;
    let typo = root.path().join("typo");
    for args in [
        vec!["desk", "token", "--role", "analyst"],
        vec!["stats", "--month", "2026-11"],
        vec!["device", "enroll", "--technician", "tech-wang"],
        vec!["device", "token", "--device", "dev-1"],
        vec!["branch", "enroll", "--branch", "north-01", "--key", "x.pub"],
        vec!["trust", "export", "--out", "trust"],
    ] {
        let mut args = args;
        args.extend(["--data-dir", path(&typo)]);
        let output = run(&args, &[])?;
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(message.contains(path(&typo)), "{args:?}: {message}");
        assert!(message.contains("fieldsync serve"), "{args:?}: {message}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // A folder that exists but was never a data directory is not taken for one.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty)?;
    let output = run(
        &[
            "desk",
            "token",
            "--role",
            "analyst",
            "--data-dir",
            path(&empty),
        ],
        &[],
    )?;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a fieldsync data directory"),
        "{}",
        stderr(&output)
    );
    // keygen makes one, and then the token is the server's.
    let made = run(&["keygen", "--data-dir", path(&typo)], &[])?;
    assert!(made.status.success(), "{}", stderr(&made));
    cli(&typo, &["desk", "token", "--role", "analyst"])?;
    Ok(())
}

#[test]
fn stats_on_an_edge_data_directory_says_they_live_at_head_office() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let edge = ServerProcess::start(data.path())?;
    let output = run(
        &[
            "stats",
            "--month",
            "2026-11",
            "--data-dir",
            path(data.path()),
        ],
        &[],
    )?;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("head office"),
        "{}",
        stderr(&output)
    );
    // And a directory keeps its role: head office cannot start on an edge's.
    edge.kill()?;
    let wrong = run(
        &[
            "serve",
            "--role",
            "head-office",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(data.path()),
        ],
        &[],
    )?;
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("role edge"), "{}", stderr(&wrong));
    Ok(())
}

#[test]
fn a_log_setting_that_cannot_be_read_is_an_error() -> anyhow::Result<()> {
    let data = temp_dir()?;
    for (name, value) in [
        ("FIELDSYNC_LOG", "verbose"),
        ("FIELDSYNC_LOG_FORMAT", "xml"),
    ] {
        let output = run(
            &["keygen", "--data-dir", path(data.path())],
            &[(name, value)],
        )?;
        assert!(!output.status.success(), "{name}={value} was accepted");
        let message = stderr(&output);
        assert!(
            message.contains(name) && message.contains(value),
            "{message}"
        );
    }
    Ok(())
}

#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines_on_request() -> anyhow::Result<()> {
    // Without NO_COLOR: a pipe is not a terminal, so no escape codes.
    let text = ServerProcess::start_with(temp_dir()?.path(), &[], &[("NO_COLOR", "")])?;
    assert!(!text.log().contains('\u{1b}'), "{}", text.log());
    let json_dir = temp_dir()?;
    let json = run(
        &["keygen", "--data-dir", path(json_dir.path())],
        &[("FIELDSYNC_LOG_FORMAT", "json"), ("FIELDSYNC_LOG", "info")],
    )?;
    assert!(json.status.success(), "{}", stderr(&json));
    let server =
        ServerProcess::start_with(json_dir.path(), &[], &[("FIELDSYNC_LOG_FORMAT", "json")])?;
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "{log}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line)?;
        assert!(value["level"].is_string(), "{line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_are_json_with_a_code() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let server =
        TestServer::start_with(data.path(), |c| c.limits.max_frame_bytes = 64 * 1024).await?;
    let http = reqwest::Client::new();
    let cases = [
        (
            http.get(server.http_url("/no/such/thing")),
            404,
            "not_found",
        ),
        (
            http.delete(server.http_url("/healthz")),
            405,
            "method_not_allowed",
        ),
        (
            http.post(server.http_url("/api/jobs"))
                .header("content-type", "application/json")
                .body(vec![b' '; 100 * 1024]),
            413,
            "payload_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await?;
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await?;
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_shows_only_its_own_metrics() -> anyhow::Result<()> {
    let (edge_dir, ho_dir) = (temp_dir()?, temp_dir()?);
    let edge = TestServer::start_in(edge_dir.path()).await?;
    let head_office =
        TestServer::start_head_office(ho_dir.path(), fieldsync_server::clock::Clock::system())
            .await?;
    let get = |url: String| async move { reqwest::get(url).await?.text().await };
    let edge_text = get(edge.http_url("/metrics")).await?;
    assert!(
        edge_text.contains("fieldsync_upstream_configured 0"),
        "{edge_text}"
    );
    assert!(!edge_text.contains("fieldsync_reports_verified_total"));
    let ho_text = get(head_office.http_url("/metrics")).await?;
    assert!(
        ho_text.contains("fieldsync_reports_verified_total 0"),
        "{ho_text}"
    );
    assert!(!ho_text.contains("fieldsync_upstream"), "{ho_text}");
    Ok(())
}

/// A token for another branch can never work: the link says so once, as an error, and checks
/// again only at its longest wait, instead of a warning every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branch_link_reports_a_token_for_another_branch_once() -> anyhow::Result<()> {
    let (ho, edge) = (temp_dir()?, temp_dir()?);
    run(&["keygen", "--data-dir", path(ho.path())], &[])?;
    let key = ho.path().join("keys/server.pub");
    cli(
        ho.path(),
        &[
            "branch",
            "enroll",
            "--branch",
            "south-02",
            "--key",
            path(&key),
        ],
    )?;
    let token = cli(ho.path(), &["branch", "token", "--branch", "south-02"])?;
    let token_file = edge.path().join("upstream.token");
    std::fs::write(&token_file, token)?;
    let config = edge.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "branch_id = \"north-01\"\n[upstream]\nurl = \"ws://127.0.0.1:9/sync\"\n\
             token_file = {:?}\nretry_max = 1\n",
            path(&token_file)
        ),
    )?;
    let server =
        ServerProcess::start_with(&edge.path().join("data"), &["--config", path(&config)], &[])?;
    // Wait for several attempts, then count what the log said.
    let deadline = Instant::now() + SETTLE;
    let failures = async || -> anyhow::Result<u64> {
        let text = reqwest::get(server.http_url("/metrics"))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("fieldsync_upstream_dial_failures_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    while failures().await? < 3 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no dial attempts: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot work until this is fixed"))
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains("south-02") && said[0].contains("north-01"),
        "{log}"
    );
    assert!(said[0].contains("ERROR"), "{log}");
    Ok(())
}

#[test]
fn an_upstream_url_that_is_not_a_websocket_stops_the_server_at_start() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let output = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(data.path()),
        ],
        &[
            ("FIELDSYNC_UPSTREAM_URL", "http://127.0.0.1:3040/sync"),
            ("FIELDSYNC_UPSTREAM_TOKEN_FILE", "upstream.token"),
        ],
    )?;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("ws:// or wss://"),
        "{}",
        stderr(&output)
    );
    Ok(())
}

/// `fieldsync verify … | head`: the reader is gone before anything is written. The command
/// ends with its own status (1: the report is not valid), not a panic (101).
#[test]
fn verify_into_a_closed_pipe_ends_with_its_own_status() -> anyhow::Result<()> {
    let data = temp_dir()?;
    run(&["keygen", "--data-dir", path(data.path())], &[])?;
    let trust = data.path().join("trust");
    cli(data.path(), &["trust", "export", "--out", path(&trust)])?;
    let report = data.path().join("report.json");
    std::fs::write(&report, "{\"not\": \"a report\"}")?;
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let output = Command::new(fieldsync_binary()?)
        .args(["verify", path(&report), "--trust", path(&trust)])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()?;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    Ok(())
}

/// Issue 16: an edge's branch id is chosen at its first start and recorded; a later start
/// naming another is refused, and `fieldsync branch rename` is the way to change it.
#[test]
fn an_edge_needs_a_branch_id_at_first_start_and_keeps_the_one_it_recorded() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let data = dir.path().join("edge");
    let serve = |branch: Option<&str>| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
        ];
        if let Some(branch) = branch {
            args.extend(["--branch-id", branch]);
        }
        run(&args, &[])
    };
    // No id anywhere (the harness's FIELDSYNC_BRANCH_ID is not set here): refused, naming
    // the ways to give one.
    let none = serve(None)?;
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("no branch id yet"),
        "{}",
        stderr(&none)
    );

    // The first start records north-01; a start naming south-02 is refused.
    let first = ServerProcess::start_with(&data, &["--branch-id", "north-01"], &[])?;
    first.kill()?;
    let other = serve(Some("south-02"))?;
    assert!(!other.status.success());
    let said = stderr(&other);
    assert!(
        said.contains("serves branch north-01") && said.contains("branch rename"),
        "{said}"
    );

    // Renamed (server stopped), it starts as south-02, and commands sign for south-02.
    let renamed: serde_json::Value =
        serde_json::from_str(&cli(&data, &["branch", "rename", "--to", "south-02"])?)?;
    assert_eq!(
        (renamed["from"].as_str(), renamed["to"].as_str()),
        (Some("north-01"), Some("south-02"))
    );
    let again = ServerProcess::start_with(&data, &["--branch-id", "south-02"], &[])?;
    let trust = dir.path().join("trust");
    cli(&data, &["trust", "export", "--out", path(&trust)])?;
    assert!(trust.join("branches").join("south-02.pub").exists());
    // A rename while the server runs is refused (it holds the old id in memory).
    assert!(cli(&data, &["branch", "rename", "--to", "east-03"]).is_err());
    again.kill()
}
