//! TLS (issue 13): HTTPS and `wss://` on the server's listener, devices and the branch link
//! trusting a branch's own CA, and clear errors for a wrong CA, a plain client on the TLS port
//! and a bad certificate file. Certificates are made here (`fieldsync_tests::pki`), valid
//! 2020–2100, so the suite's run with the clock 400 days ahead passes too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fieldsync_client::{ConnectError, ConnectOptions, JobEdit, SyncClient, SyncOptions, SyncState};
use fieldsync_server::auth::DeskRole;
use fieldsync_server::clock::Clock;
use fieldsync_server::config::{Role, Upstream};
use fieldsync_server::edge::upstream::DELIVERED;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::pki::Pki;
use fieldsync_tests::{
    CreatedJob, SETTLE, ServerProcess, TestServer, cli, eventually, fieldsync_binary,
    sample_job_body, temp_dir,
};
use serde_json::Value;

use crate::client_sdk::{has_job, open_device, until};
use crate::head_office::CHAIN_NOW;
use crate::reports::{T0, acknowledge, check_out_and_complete, do_the_work, outcome};

fn wss_url(addr: SocketAddr) -> String {
    format!("wss://127.0.0.1:{}/sync", addr.port())
}

fn https_url(addr: SocketAddr, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", addr.port())
}

fn options(peer: &str) -> ConnectOptions {
    ConnectOptions {
        peer_id: peer.to_owned(),
        storage_id: Some(format!("store-{peer}")),
        max_frame_bytes: 16 * 1024 * 1024,
    }
}

fn store(dir: &Path, name: &str) -> anyhow::Result<Arc<Store>> {
    Ok(Arc::new(Store::open(
        dir.join(format!("{name}.sqlite")),
        StoreConfig::default(),
    )?))
}

/// `POST /api/jobs` over HTTPS with a dispatcher token.
async fn create_job(
    http: &reqwest::Client,
    addr: SocketAddr,
    desk_token: &str,
    technician: &str,
) -> anyhow::Result<CreatedJob> {
    let response = http
        .post(https_url(addr, "/api/jobs"))
        .bearer_auth(desk_token)
        .json(&sample_job_body(technician))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(
        status == reqwest::StatusCode::CREATED,
        "create job: {status}: {body}"
    );
    let id = |key: &str| -> anyhow::Result<DocumentId> {
        Ok(DocumentId::from_url(
            body[key].as_str().context("missing url")?,
        )?)
    };
    Ok(CreatedJob {
        job: id("url")?,
        index: id("assignment_index_url")?,
    })
}

/// The job's fault cause as the server stored it.
fn stored_fault_cause(server: &TestServer, job: DocumentId) -> Option<String> {
    let doc = server.stored_doc(job).ok()?;
    read_job(&doc).ok()?.diagnosis.fault_cause
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_syncs_a_job_over_wss_trusting_its_branch_ca() -> anyhow::Result<()> {
    let pki = Pki::generate("north-01 branch CA")?;
    let (data, devices) = (temp_dir()?, temp_dir()?);
    let server = TestServer::start_with(data.path(), |c| c.tls = Some(pki.tls_files())).await?;
    let tls = pki.client_tls()?;
    let desk = server.desk_token(DeskRole::Dispatcher)?;
    let created = create_job(&tls.http()?, server.addr, &desk, "tech-ma").await?;

    // No index given: the device asks `GET /api/me` over HTTPS, then syncs over wss://.
    let device = open_device(devices.path(), "dev-m", "tech-ma", None).await?;
    server.enroll_key("tech-ma", device.device_id(), device.public_key())?;
    let token = server.device_token(device.device_id(), Duration::from_secs(600))?;
    device.start_sync(SyncOptions::new(wss_url(server.addr), token).with_ca_file(&pki.ca_file)?);
    until(&device, "the job reaches the device over wss://", || {
        has_job(&device, created.job)
    })
    .await?;
    assert_eq!(device.assignment_index().await, Some(created.index));
    assert_eq!(device.sync_state(), SyncState::Connected);

    device
        .edit(
            created.job,
            JobEdit::FaultCause(Some("Worn start capacitor".into())),
        )
        .await?;
    until(&device, "the edit is stored on the server", || async {
        stored_fault_cause(&server, created.job).as_deref() == Some("Worn start capacitor")
    })
    .await?;
    device.stop_sync();
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_delivers_a_signed_report_to_head_office_over_wss() -> anyhow::Result<()> {
    let pki = Pki::generate("head office CA")?;
    let (ho_dir, branch_dir, device_dir) = (temp_dir()?, temp_dir()?, temp_dir()?);
    let clock = Clock::manual(Timestamp::from_millis(CHAIN_NOW));
    let head_office = TestServer::start_with_clock(ho_dir.path(), clock.clone(), |c| {
        c.role = Role::HeadOffice;
        c.branch_id = Some("head-office".into());
        c.tls = Some(pki.tls_files());
    })
    .await?;
    let token_file = head_office.enroll_branch("north-01", branch_dir.path())?;
    let upstream = Upstream {
        url: wss_url(head_office.addr),
        token_file,
        retry_max: Duration::from_secs(1),
        verdict_poll: Duration::from_secs(1),
        ca_file: Some(pki.ca_file.clone()),
    };
    let branch = TestServer::start_with_clock(branch_dir.path(), clock, move |c| {
        c.upstream = Some(upstream);
    })
    .await?;

    // A job done, acknowledged and completed on a device: the branch signs its report.
    let (device, key) = branch.enroll_with_key("tech-wang", "dev-a")?;
    let client = branch.connect_device(&device, device_dir.path()).await?;
    let created = branch.create_job("tech-wang").await?;
    client.subscribe(created.job);
    ensure!(
        client
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "the job did not reach the device"
    );
    do_the_work(&client, created.job).await?;
    acknowledge(&client, created.job, &device, &key).await?;
    check_out_and_complete(&client, created.job, true, T0 + 60_000).await?;
    let report_id = match outcome(&client, created.job).await {
        Some(ReportOutcome::Signed { report_id, .. }) => report_id,
        other => bail!("the branch did not sign: {other:?}"),
    };

    // Head office holds it (the branch records the delivery only then) and verified it.
    eventually(SETTLE, "the branch records the delivery", || async {
        branch
            .state
            .store
            .meta(DELIVERED, &report_id)
            .ok()
            .flatten()
    })
    .await?;
    let http = pki.client_tls()?.http()?;
    let analyst = head_office.desk_token(DeskRole::Analyst)?;
    let url = https_url(
        head_office.addr,
        &format!("/api/archive/reports/{report_id}"),
    );
    let archived: Value = eventually(SETTLE, "head office verified the report", || async {
        let response = http.get(&url).bearer_auth(&analyst).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "verified").then_some(body)
    })
    .await?;
    assert_eq!(archived["branch_id"], "north-01");
    assert_eq!(archived["job_id"], created.job.to_string());

    client.close();
    branch.stop().await?;
    head_office.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_another_ca_is_refused_naming_the_certificate_problem()
-> anyhow::Result<()> {
    let pki = Pki::generate("north-01 branch CA")?;
    let other = Pki::generate("some other CA")?;
    let (data, devices) = (temp_dir()?, temp_dir()?);
    let server = TestServer::start_with(data.path(), |c| c.tls = Some(pki.tls_files())).await?;
    let desk = server.desk_token(DeskRole::Dispatcher)?;
    let created = create_job(&pki.client_tls()?.http()?, server.addr, &desk, "tech-ma").await?;
    let url = wss_url(server.addr);

    // A connection whose handshake never starts stays open through all of this: it costs the
    // other clients nothing.
    let stalled = tokio::net::TcpStream::connect(server.addr).await?;

    // The bare client: refused at once, saying what is wrong and whom it trusted.
    let enrolled = server.enroll("tech-ma", "dev-raw")?;
    let token = server.device_token(&enrolled, Duration::from_secs(600))?;
    let refused = SyncClient::connect_with_tls(
        &url,
        &token,
        options("dev-raw"),
        &other.client_tls()?,
        store(devices.path(), "raw")?,
    )
    .await
    .err()
    .context("a client trusting another CA connected")?;
    let ConnectError::Tls(reason) = &refused else {
        bail!("expected a TLS error, got {refused:?}");
    };
    assert!(reason.contains("UnknownIssuer"), "{refused}");
    assert!(
        reason.contains(&other.ca_file.display().to_string()),
        "{refused}"
    );
    assert!(refused.to_string().starts_with("TLS: "), "{refused}");

    // The system's trust store does not hold a branch's own CA either.
    let refused = SyncClient::connect(
        &url,
        &token,
        options("dev-raw"),
        store(devices.path(), "raw2")?,
    )
    .await
    .err()
    .context("a client trusting the system store connected")?;
    assert!(
        matches!(&refused, ConnectError::Tls(r) if r.contains("UnknownIssuer")),
        "{refused:?}"
    );

    // A device with the wrong CA: sync keeps failing with that reason, and nothing crossed
    // either way (no index from `/api/me`, no job).
    let device = open_device(devices.path(), "dev-w", "tech-ma", None).await?;
    server.enroll_key("tech-ma", device.device_id(), device.public_key())?;
    let token = server.device_token(device.device_id(), Duration::from_secs(600))?;
    device.start_sync(SyncOptions::new(url.clone(), token.clone()).with_ca_file(&other.ca_file)?);
    let state = device
        .wait_for_state(SETTLE, |s| matches!(s, SyncState::Disconnected { .. }))
        .await
        .context("the device never reported the failure")?;
    let SyncState::Disconnected { reason, .. } = state else {
        bail!("unexpected state {state:?}");
    };
    assert!(ConnectError::is_tls_reason(&reason), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    device.stop_sync();
    assert!(device.jobs().await.is_empty());
    assert_eq!(device.assignment_index().await, None);

    // The CLI says so at once with --once.
    let cli_store = devices.path().join("cli.sqlite");
    tech(
        &cli_store,
        &[
            "init",
            "--device",
            "dev-c",
            "--technician",
            "tech-ma",
            "--server",
            &url,
        ],
    )
    .await?;
    let other_ca = other.ca_file.display().to_string();
    let failed = tech(
        &cli_store,
        &[
            "sync",
            "--once",
            "--timeout",
            "20",
            "--token",
            &token,
            "--ca-file",
            &other_ca,
        ],
    )
    .await
    .err()
    .context("the CLI synced trusting another CA")?;
    let text = format!("{failed:#}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains(&other_ca), "{text}");

    // Meanwhile the right CA works, the stalled handshake still pending.
    let good = SyncClient::connect_with_tls(
        &url,
        &server.device_token(&enrolled, Duration::from_secs(600))?,
        options("dev-raw"),
        &pki.client_tls()?,
        store(devices.path(), "good")?,
    )
    .await?;
    good.subscribe(created.job);
    ensure!(
        good.wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "the job did not reach the client that trusts the right CA"
    );
    good.close();
    drop(stalled);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_to_a_tls_port_and_wss_to_a_plain_port_fail_clearly() -> anyhow::Result<()> {
    let pki = Pki::generate("north-01 branch CA")?;
    let (tls_data, plain_data, devices) = (temp_dir()?, temp_dir()?, temp_dir()?);
    let tls_server =
        TestServer::start_with(tls_data.path(), |c| c.tls = Some(pki.tls_files())).await?;
    let device = tls_server.enroll("tech-ma", "dev-p")?;
    let token = tls_server.device_token(&device, Duration::from_secs(600))?;
    // ws:// to the TLS port: the server answers in plain HTTP that it wants TLS.
    let refused = SyncClient::connect(
        &format!("ws://{}/sync", tls_server.addr),
        &token,
        options("dev-p"),
        store(devices.path(), "p1")?,
    )
    .await
    .err()
    .context("plain ws:// connected to the TLS port")?;
    match &refused {
        ConnectError::Refused {
            status,
            code,
            reason,
        } => {
            assert_eq!((*status, code.as_str()), (400, "tls_required"), "{refused}");
            assert!(reason.contains("wss://"), "{refused}");
        }
        other => bail!("expected a refusal naming TLS, got {other:?}"),
    }
    // And so does http:// for the API.
    let response = reqwest::get(format!("http://{}/healthz", tls_server.addr)).await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], "tls_required");

    // wss:// to a server without TLS: the client says the port does not speak TLS.
    let plain_server = TestServer::start_in(plain_data.path()).await?;
    let refused = SyncClient::connect_with_tls(
        &wss_url(plain_server.addr),
        &token,
        options("dev-p"),
        &pki.client_tls()?,
        store(devices.path(), "p2")?,
    )
    .await
    .err()
    .context("wss:// connected to a plain port")?;
    assert!(
        matches!(&refused, ConnectError::Tls(r) if r.contains("does not speak TLS")),
        "{refused:?}"
    );
    plain_server.stop().await?;
    tls_server.stop().await
}

/// The real binary with `[tls]` in its config file: every route over TLS, a device through
/// the technician CLI, and a plain client told to use TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_sync_and_every_route_over_tls() -> anyhow::Result<()> {
    let pki = Pki::generate("north-01 branch CA")?;
    let (data, devices) = (temp_dir()?, temp_dir()?);
    let config = data.path().join("fieldsync.toml");
    std::fs::write(&config, pki.toml())?;
    let server = ServerProcess::start_with(data.path(), &["--config", path_str(&config)?], &[])?;
    assert!(server.log().contains("tls=true"), "{}", server.log());
    let http = pki.client_tls()?.http()?;
    let health: Value = http
        .get(https_url(server.addr, "/healthz"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");
    let metrics = http
        .get(https_url(server.addr, "/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert!(metrics.contains("fieldsync_"), "{metrics}");

    // A job from the desk over HTTPS; a technician's CLI device syncs it over wss://.
    let desk = cli(data.path(), &["desk", "token", "--role", "dispatcher"])?;
    let created = create_job(&http, server.addr, &desk, "tech-ma").await?;
    let store_file = devices.path().join("tech.sqlite");
    let url = wss_url(server.addr);
    let init: Value = serde_json::from_str(
        &tech(
            &store_file,
            &[
                "init",
                "--device",
                "dev-m",
                "--technician",
                "tech-ma",
                "--server",
                &url,
            ],
        )
        .await?,
    )?;
    let public_key = init["public_key_file"]
        .as_str()
        .context("public key file")?;
    cli(
        data.path(),
        &[
            "device",
            "enroll",
            "--technician",
            "tech-ma",
            "--device",
            "dev-m",
            "--public-key",
            public_key,
        ],
    )?;
    let token = cli(data.path(), &["device", "token", "--device", "dev-m"])?;
    let ca = pki.ca_file.display().to_string();
    tech(
        &store_file,
        &[
            "sync",
            "--once",
            "--timeout",
            "20",
            "--token",
            &token,
            "--ca-file",
            &ca,
        ],
    )
    .await?;
    let jobs = tech(&store_file, &["jobs"]).await?;
    ensure!(jobs.contains(&created.job.to_string()), "{jobs}");

    // ws:// to the binary's TLS port: told to use wss://.
    let refused = SyncClient::connect(
        &format!("ws://{}/sync", server.addr),
        &token,
        options("dev-m"),
        store(devices.path(), "plain")?,
    )
    .await
    .err()
    .context("plain ws:// connected to the TLS port")?;
    assert!(
        matches!(&refused, ConnectError::Refused { status: 400, code, .. } if code == "tls_required"),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_link_that_does_not_trust_head_office_logs_the_certificate_problem()
-> anyhow::Result<()> {
    let pki = Pki::generate("head office CA")?;
    let other = Pki::generate("some other CA")?;
    let (ho_dir, branch_dir) = (temp_dir()?, temp_dir()?);
    let head_office = TestServer::start_with(ho_dir.path(), |c| {
        c.role = Role::HeadOffice;
        c.branch_id = Some("head-office".into());
        c.tls = Some(pki.tls_files());
    })
    .await?;
    let token_file = head_office.enroll_branch("north-01", branch_dir.path())?;
    let config = branch_dir.path().join("fieldsync.toml");
    std::fs::write(
        &config,
        format!(
            "branch_id = \"north-01\"\n[upstream]\nurl = {:?}\ntoken_file = {:?}\nca_file = {:?}\n",
            wss_url(head_office.addr),
            token_file.display().to_string(),
            other.ca_file.display().to_string(),
        ),
    )?;
    let branch =
        ServerProcess::start_with(branch_dir.path(), &["--config", path_str(&config)?], &[])?;
    let line = eventually(SETTLE, "the branch logs the failed dial", || async {
        branch
            .log()
            .lines()
            .find(|l| l.contains("cannot reach head office"))
            .map(str::to_owned)
    })
    .await?;
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(
        line.contains(&other.ca_file.display().to_string()),
        "{line}"
    );
    drop(branch);
    head_office.stop().await
}

#[test]
fn a_bad_certificate_or_key_stops_the_binary_naming_the_file() -> anyhow::Result<()> {
    let pki = Pki::generate("north-01 branch CA")?;
    let other = Pki::generate("some other CA")?;
    let data = temp_dir()?;
    let serve = |toml: String| -> anyhow::Result<String> {
        let config = data.path().join("fieldsync.toml");
        std::fs::write(&config, toml)?;
        let output = std::process::Command::new(fieldsync_binary()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data.path())
            .env("FIELDSYNC_LOG", "warn")
            .output()?;
        ensure!(!output.status.success(), "the server started");
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    };
    // Not a certificate.
    let garbage = data.path().join("garbage.pem");
    std::fs::write(&garbage, "hello")?;
    let stderr = serve(format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        garbage.display().to_string(),
        pki.key_file.display().to_string()
    ))?;
    assert!(stderr.contains("garbage.pem"), "{stderr}");
    assert!(stderr.contains("no certificate"), "{stderr}");
    // A missing key file.
    let missing = data.path().join("missing.key");
    let stderr = serve(format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        pki.cert_file.display().to_string(),
        missing.display().to_string()
    ))?;
    assert!(stderr.contains("missing.key"), "{stderr}");
    // A key that is not the certificate's.
    let stderr = serve(format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        pki.cert_file.display().to_string(),
        other.key_file.display().to_string()
    ))?;
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    assert!(
        stderr.contains(&other.key_file.display().to_string()),
        "{stderr}"
    );
    // An unreadable upstream CA.
    let stderr = serve(format!(
        "[upstream]\nurl = \"wss://127.0.0.1:1/sync\"\ntoken_file = \"t\"\nca_file = {:?}\n",
        garbage.display().to_string()
    ))?;
    assert!(stderr.contains("garbage.pem"), "{stderr}");
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a temp path that is not UTF-8")
}

/// Runs `fieldsync-tech --store <store> <args>` in-process.
async fn tech(store: &Path, args: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    let store = store.to_str().context("utf-8 path")?;
    let argv = ["fieldsync-tech", "--store", store]
        .into_iter()
        .chain(args.iter().copied());
    let cli = fieldsync_client::cli::Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    fieldsync_client::cli::run(cli, &mut out).await?;
    Ok(String::from_utf8(out)?)
}
