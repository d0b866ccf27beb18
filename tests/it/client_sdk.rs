//! The client SDK against a real server: offline edits, two devices on one job, restarts of
//! the device and of the server, acknowledgements, refusals (client SDK issue).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fieldsync_client::{
    AckDraft, AckStatus, Backoff, ClientError, Device, DeviceConfig, Event, JobEdit, PartDraft,
    SyncOptions, SyncState, TokenError,
};
use fieldsync_server::auth::Subject;
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::{Labour, SignatureMark, Survey};
use fieldsync_shared::report::verify_acknowledgement_signature;
use fieldsync_shared::sync::{Input, Principal};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{SETTLE, TestServer, installation_job_body, temp_dir};

/// Quick retries, so a test that restarts the server does not wait long.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(500),
};

pub(crate) async fn open_device(
    dir: &Path,
    name: &str,
    technician: &str,
    index: Option<DocumentId>,
) -> anyhow::Result<Device> {
    let mut config = DeviceConfig::new(
        dir.join(format!("{name}.sqlite")),
        dir.join(format!("{name}.key")),
        DeviceId::new(name)?,
        TechnicianId::new(technician)?,
    );
    config.assignment_index = index;
    Ok(Device::open(config).await?)
}

/// Sync options with a token from `server` and a renewal that issues fresh ones.
pub(crate) fn sync_options(server: &TestServer, device: &Device) -> anyhow::Result<SyncOptions> {
    let id = device.device_id().clone();
    let token = server.device_token(&id, Duration::from_secs(600))?;
    let state = Arc::clone(&server.state);
    let renew = move || {
        let issued = state
            .tokens
            .issue(
                &Subject::Device(id.clone()),
                Duration::from_secs(600),
                state.clock.now(),
            )
            .map_err(|e| TokenError::Unavailable(e.to_string()));
        async move { issued }
    };
    Ok(SyncOptions::new(server.ws_url(), token)
        .with_renewal(renew)
        .with_backoff(FAST))
}

/// Waits until `condition` holds, re-checking on every device event and at least every 100 ms
/// (some conditions are about the server, which sends the device no event).
pub(crate) async fn until<F, Fut>(
    device: &Device,
    what: &str,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut events = device.events();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if condition().await {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => bail!("timed out waiting until {what}"),
            _ = events.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

pub(crate) async fn has_job(device: &Device, job: DocumentId) -> bool {
    device.job(job).await.is_ok()
}

async fn synced(device: &Device, job: DocumentId) -> bool {
    device.job_status(job).await.is_ok_and(|s| !s.unsynced)
}

/// The device and the server hold the same job.
async fn same_on_server(server: &TestServer, device: &Device, job: DocumentId) -> bool {
    match (server.fetch_job(job).await, device.job(job).await) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(crate) fn part(name: &str, quantity: u32) -> PartDraft {
    PartDraft {
        part_number: format!("PN-{name}"),
        name: name.into(),
        specification: "standard".into(),
        quantity,
        unit_price: Money(12_50),
        warranty: false,
    }
}

pub(crate) fn ack_draft() -> AckDraft {
    AckDraft {
        signer_name: "Ms Chen".into(),
        signature: SignatureMark::Strokes {
            strokes: vec![vec![[0, 0], [10, 4], [20, 9]]],
        },
        signed_at: Timestamp::from_millis(1_790_000_000_000),
        survey: Survey::answered(5, 4, 5, 4, "Call before coming"),
    }
}

/// Starts a server with one job for `technician` and a device of that technician that has
/// synced the job and stopped syncing again (so what follows happens offline).
pub(crate) struct Setup {
    pub(crate) server: TestServer,
    pub(crate) data: tempfile::TempDir,
    pub(crate) devices: tempfile::TempDir,
}

pub(crate) async fn setup() -> anyhow::Result<Setup> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    Ok(Setup {
        server,
        data,
        devices,
    })
}

/// Opens a device, enrolls its own key, syncs until it holds `job`.
pub(crate) async fn online_device(
    s: &Setup,
    name: &str,
    technician: &str,
    index: Option<DocumentId>,
    job: DocumentId,
) -> anyhow::Result<Device> {
    let device = open_device(s.devices.path(), name, technician, index).await?;
    s.server
        .enroll_key(technician, device.device_id(), device.public_key())?;
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "the device holds the job", || {
        has_job(&device, job)
    })
    .await?;
    Ok(device)
}

pub(crate) async fn go_offline(device: &Device) -> anyhow::Result<()> {
    device.stop_sync();
    device
        .wait_for_state(SETTLE, |s| *s == SyncState::Offline)
        .await
        .context("sync did not stop")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_with_no_server_running_sync_when_it_starts() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let device = online_device(&s, "dev-a", "tech-wang", Some(created.index), created.job).await?;
    ensure!(synced(&device, created.job).await, "fresh job is synced");

    // The server goes away; the device keeps retrying in the background.
    let addr = s.server.addr;
    let Setup {
        server,
        data,
        devices,
    } = s;
    server.stop().await?;
    device
        .wait_for_state(SETTLE, |s| matches!(s, SyncState::Disconnected { .. }))
        .await
        .context("the device notices the server is gone")?;

    let job = created.job;
    let line = device.add_part(job, part("Start capacitor", 1)).await?;
    device
        .edit_all(
            job,
            vec![
                JobEdit::FaultCause(Some("Worn start capacitor".into())),
                JobEdit::Solution(Some("Replaced the capacitor".into())),
                JobEdit::Labour(Labour {
                    minutes: 45,
                    rate_per_hour: Money(80_00),
                }),
                JobEdit::SetPartQuantity {
                    id: line.clone(),
                    quantity: 2,
                },
            ],
        )
        .await?;
    device.record_safety_briefing(job, "Ear protection").await?;
    let status = device.job_status(job).await?;
    ensure!(status.unsynced, "offline edits are unsynced: {status:?}");
    let local = device.job(job).await?;
    ensure!(local.parts.len() == 1 && local.parts[0].quantity == 2);

    // The server comes back on its old port; the device finds it on its own.
    let server = TestServer::start_at(data.path(), addr).await?;
    until(&device, "the edits reach the server", || {
        same_on_server(&server, &device, job)
    })
    .await?;
    until(&device, "the device knows they did", || {
        synced(&device, job)
    })
    .await?;
    let on_server = server.fetch_job(job).await?;
    ensure!(on_server.diagnosis.fault_cause.as_deref() == Some("Worn start capacitor"));
    ensure!(on_server.parts[0].id == line && on_server.visit.safety_briefing.is_some());
    ensure!(device.job_status(job).await?.last_synced.is_some());
    device.close().await;
    server.stop().await?;
    drop(devices);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_editing_one_job_offline_lose_nothing() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let job = created.job;
    let a = online_device(&s, "dev-a", "tech-wang", Some(created.index), job).await?;
    let b = online_device(&s, "dev-b", "tech-wang", Some(created.index), job).await?;
    go_offline(&a).await?;
    go_offline(&b).await?;

    a.add_part(job, part("Fan motor", 1)).await?;
    a.edit(job, JobEdit::FaultCause(Some("Seized fan motor".into())))
        .await?;
    a.edit(job, JobEdit::AppendNotes("A: motor hot to touch. ".into()))
        .await?;
    b.add_part(job, part("Fan belt", 2)).await?;
    b.edit(
        job,
        JobEdit::Solution(Some("Replaced motor and belt".into())),
    )
    .await?;
    b.edit(job, JobEdit::AppendNotes("B: belt frayed. ".into()))
        .await?;

    a.start_sync(sync_options(&s.server, &a)?);
    b.start_sync(sync_options(&s.server, &b)?);
    let converged = || async {
        let (Ok(ja), Ok(jb), Ok(js)) = (
            a.job(job).await,
            b.job(job).await,
            s.server.fetch_job(job).await,
        ) else {
            return false;
        };
        ja == jb && jb == js && ja.parts.len() == 2
    };
    until(
        &a,
        "both devices and the server hold the same job",
        converged,
    )
    .await?;
    let merged = s.server.fetch_job(job).await?;
    let mut names: Vec<&str> = merged.parts.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Fan belt", "Fan motor"]);
    assert_eq!(
        merged.diagnosis.fault_cause.as_deref(),
        Some("Seized fan motor")
    );
    assert_eq!(
        merged.diagnosis.solution.as_deref(),
        Some("Replaced motor and belt")
    );
    assert!(
        merged.notes.contains("A: motor hot to touch. "),
        "{}",
        merged.notes
    );
    assert!(
        merged.notes.contains("B: belt frayed. "),
        "{}",
        merged.notes
    );
    until(&a, "device A knows the server holds its edits", || {
        synced(&a, job)
    })
    .await?;
    until(&b, "device B knows the server holds its edits", || {
        synced(&b, job)
    })
    .await?;
    a.close().await;
    b.close().await;
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_changes_survive_a_device_restart_and_sync_after_it() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-li").await?;
    let job = created.job;
    let device = online_device(&s, "dev-c", "tech-li", Some(created.index), job).await?;
    go_offline(&device).await?;
    device
        .edit(job, JobEdit::CustomerOpinion(Some("Quick and tidy".into())))
        .await?;
    let store = device.store_path().to_owned();
    device.close().await;

    // The app restarts: same store file, identity read back from it.
    let device = Device::reopen(&store).await?;
    ensure!(device.device_id().as_str() == "dev-c");
    ensure!(
        device.job_status(job).await?.unsynced,
        "the restarted device still knows the change is unsynced"
    );
    ensure!(device.assignment_index().await == Some(created.index));
    ensure!(
        device
            .jobs()
            .await
            .iter()
            .any(|j| j.id == job && j.job.is_some())
    );
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "the change syncs after the restart", || {
        synced(&device, job)
    })
    .await?;
    let on_server = s.server.fetch_job(job).await?;
    assert_eq!(
        on_server.customer_opinion.as_deref(),
        Some("Quick and tidy")
    );
    device.close().await;
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_mid_sync_and_returns_gets_everything() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut jobs = Vec::new();
    let mut index = None;
    for _ in 0..12 {
        let created = s.server.create_job("tech-zhao").await?;
        index = Some(created.index);
        jobs.push(created.job);
    }
    let device = open_device(s.devices.path(), "dev-z", "tech-zhao", index).await?;
    s.server
        .enroll_key("tech-zhao", device.device_id(), device.public_key())?;
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "every job arrives", || async {
        let list = device.jobs().await;
        list.len() == jobs.len() && list.iter().all(|j| j.job.is_some())
    })
    .await?;
    go_offline(&device).await?;
    for (i, job) in jobs.iter().enumerate() {
        for n in 0..8 {
            device
                .edit(*job, JobEdit::AppendNotes(format!("edit {i}.{n}; ")))
                .await?;
        }
        device.add_part(*job, part(&format!("Part {i}"), 1)).await?;
    }

    // Reconnect, and take the server down as soon as the device is back in.
    device.start_sync(sync_options(&s.server, &device)?);
    device
        .wait_for_state(SETTLE, |s| *s == SyncState::Connected)
        .await
        .context("the device reconnects")?;
    let addr = s.server.addr;
    let Setup {
        server,
        data,
        devices,
    } = s;
    server.stop().await?;
    let server = TestServer::start_at(data.path(), addr).await?;
    for job in &jobs {
        until(&device, "every job converges on the server", || {
            same_on_server(&server, &device, *job)
        })
        .await?;
        until(&device, "the device sees every job synced", || {
            synced(&device, *job)
        })
        .await?;
        let on_server = server.fetch_job(*job).await?;
        ensure!(on_server.notes.matches("edit ").count() == 8 && on_server.parts.len() == 1);
    }
    device.close().await;
    server.stop().await?;
    drop(devices);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_stops_matching_when_a_part_is_added() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let job = created.job;
    let device = online_device(&s, "dev-a", "tech-wang", Some(created.index), job).await?;
    go_offline(&device).await?;
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
    ensure!(matches!(
        device.acknowledgement_status(job).await?,
        AckStatus::None
    ));
    // R11 before R8: the customer signs only once nothing else is missing.
    device.check_out(job, "Reported to the desk").await?;

    let ack = device.acknowledge(job, ack_draft()).await?;
    let current = device.job(job).await?;
    verify_acknowledgement_signature(&job, &current.branch_id, &ack, device.public_key())
        .context("the device signature verifies with the enrolled key")?;
    ensure!(matches!(
        device.acknowledgement_status(job).await?,
        AckStatus::Matches(_)
    ));
    // Notes are recorded after the customer signs and do not void it.
    device
        .edit(job, JobEdit::AppendNotes("left site 16:05".into()))
        .await?;
    ensure!(matches!(
        device.acknowledgement_status(job).await?,
        AckStatus::Matches(_)
    ));

    device.add_part(job, part("Gasket", 1)).await?;
    match device.acknowledgement_status(job).await? {
        AckStatus::Stale { changed, .. } => assert_eq!(changed, ["parts"]),
        other => bail!("expected a stale acknowledgement, got {other:?}"),
    }
    match device.request_completion(job).await {
        Err(ClientError::Incomplete(missing)) => {
            assert_eq!(
                missing.iter().map(|m| m.code).collect::<Vec<_>>(),
                ["stale_acknowledgement"]
            );
        }
        other => bail!("completion must be refused, got {other:?}"),
    }
    ensure!(device.job(job).await?.completion.is_none());

    // Taken again, it matches and the job can be completed.
    device.acknowledge(job, ack_draft()).await?;
    device.request_completion(job).await?;
    ensure!(device.job(job).await?.completion.is_some());
    device.close().await;
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_told_so_and_stops_retrying() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let device = open_device(s.devices.path(), "dev-r", "tech-wang", Some(created.index)).await?;
    s.server
        .enroll_key("tech-wang", device.device_id(), device.public_key())?;
    let renewals = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&renewals);
    let token = s
        .server
        .device_token(device.device_id(), Duration::from_secs(600))?;
    let options = SyncOptions::new(s.server.ws_url(), token)
        .with_backoff(FAST)
        .with_renewal(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err(TokenError::Unavailable("not needed".into())) }
        });
    device.start_sync(options);
    until(&device, "the job arrives", || has_job(&device, created.job)).await?;

    let state = &s.server.state;
    let id = device.device_id().clone();
    state
        .registry_write()
        .revoke_device(&state.store, &id, state.clock.now())?
        .wait()?;
    state.hub.engine_input(Input::Kick {
        principal: Principal::Device {
            device_id: id.clone(),
            technician: TechnicianId::new("tech-wang")?,
        },
        reason: format!("device {id} was revoked"),
    });
    let refused = device
        .wait_for_state(SETTLE, |s| matches!(s, SyncState::Refused { .. }))
        .await
        .context("the device reports the refusal")?;
    let SyncState::Refused { code, .. } = refused else {
        unreachable!()
    };
    assert_eq!(code, "revoked");
    assert_eq!(
        renewals.load(Ordering::SeqCst),
        0,
        "no renewal for a revoked device"
    );

    // Proving an absence takes a window: at 50–500 ms backoff a retrying device would be
    // refused again several times within it.
    let refusals = state.metrics.refusals("revoked");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        state.metrics.refusals("revoked"),
        refusals,
        "no further attempts"
    );
    assert!(matches!(device.sync_state(), SyncState::Refused { .. }));
    // Work on the device goes on.
    device
        .edit(created.job, JobEdit::Arrival(Some(s.server.now())))
        .await?;
    ensure!(device.job_status(created.job).await?.unsynced);
    device.close().await;
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_and_a_denied_renewal_stops_sync() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-wang").await?;
    let device = open_device(s.devices.path(), "dev-t", "tech-wang", Some(created.index)).await?;
    s.server
        .enroll_key("tech-wang", device.device_id(), device.public_key())?;
    let id = device.device_id().clone();
    let an_hour_ago = Timestamp::from_millis(s.server.now().as_millis() - 3_600_000);
    let expired = s
        .server
        .state
        .tokens
        .issue(
            &Subject::Device(id.clone()),
            Duration::from_secs(60),
            an_hour_ago,
        )
        .map_err(anyhow::Error::msg)?;
    let renewals = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&renewals);
    let state = Arc::clone(&s.server.state);
    let options = SyncOptions::new(s.server.ws_url(), expired)
        .with_backoff(FAST)
        .with_renewal(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let fresh = state
                .tokens
                .issue(
                    &Subject::Device(id.clone()),
                    Duration::from_secs(600),
                    state.clock.now(),
                )
                .map_err(|e| TokenError::Unavailable(e.to_string()));
            async move { fresh }
        });
    device.start_sync(options);
    until(&device, "the job arrives with a renewed token", || {
        has_job(&device, created.job)
    })
    .await?;
    assert_eq!(renewals.load(Ordering::SeqCst), 1);

    // A token the server never issued, and an app that cannot renew it: sync stops.
    let options = SyncOptions::new(s.server.ws_url(), "v4.public.forged")
        .with_backoff(FAST)
        .with_renewal(|| async { Err(TokenError::Denied("signed out".into())) });
    device.start_sync(options);
    let refused = device
        .wait_for_state(SETTLE, |s| matches!(s, SyncState::Refused { .. }))
        .await
        .context("the refusal is reported")?;
    assert!(
        matches!(&refused, SyncState::Refused { code, .. } if code == "renewal_denied"),
        "{refused:?}"
    );
    device.close().await;
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_finds_its_index_and_follows_new_assignments() -> anyhow::Result<()> {
    let s = setup().await?;
    let first = s.server.create_job("tech-sun").await?;
    let device = open_device(s.devices.path(), "dev-s", "tech-sun", None).await?;
    s.server
        .enroll_key("tech-sun", device.device_id(), device.public_key())?;
    let mut events = device.events();
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "the first job is listed", || async {
        device
            .jobs()
            .await
            .iter()
            .any(|j| j.id == first.job && j.job.is_some())
    })
    .await?;
    ensure!(device.assignment_index().await == Some(first.index));

    let second = s.server.create_job("tech-sun").await?;
    until(&device, "the second job arrives", || {
        has_job(&device, second.job)
    })
    .await?;
    let mut assigned = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::JobAssigned { job } = event {
            assigned.push(job);
        }
    }
    assert_eq!(assigned, [first.job, second.job]);
    device.close().await;
    s.server.stop().await?;
    Ok(())
}

/// Runs `fieldsync-tech --store <store> <args>` in-process and returns what it printed.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tech_cli_takes_a_job_from_assignment_to_completion() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-ma").await?;
    let job = created.job.to_string();
    let store = s.devices.path().join("cli.sqlite");
    let url = s.server.ws_url();
    let init: serde_json::Value = serde_json::from_str(
        &tech(
            &store,
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
    let public = init["public_key_file"]
        .as_str()
        .context("public key file")?;
    let public = fieldsync_shared::keys::PublicKey::load(Path::new(public))?;
    let device_id = DeviceId::new("dev-m")?;
    s.server.enroll_key("tech-ma", &device_id, &public)?;
    let token = s
        .server
        .device_token(&device_id, Duration::from_secs(600))?;

    tech(
        &store,
        &["sync", "--once", "--timeout", "20", "--token", &token],
    )
    .await?;
    let jobs = tech(&store, &["jobs"]).await?;
    ensure!(jobs.contains(&job), "{jobs}");
    let prefix = &job[..8];
    tech(
        &store,
        &["part", "add", prefix, "--name", "Relay", "--price", "900"],
    )
    .await?;
    tech(
        &store,
        &[
            "edit",
            prefix,
            "--arrival",
            "now",
            "--fault-cause",
            "Burnt relay",
            "--solution",
            "Replaced the relay",
            "--opinion",
            "Good",
            "--check-out",
            "Called the desk",
        ],
    )
    .await?;
    tech(&store, &["ack", prefix, "--signer", "Mr Lin"]).await?;
    tech(&store, &["complete", prefix]).await?;
    let shown: serde_json::Value = serde_json::from_str(&tech(&store, &["show", prefix]).await?)?;
    assert_eq!(shown["acknowledgement"]["state"], "matches");
    assert_eq!(shown["missing"], serde_json::json!([]));
    assert_eq!(shown["status"]["unsynced"], true);

    tech(
        &store,
        &["sync", "--once", "--timeout", "20", "--token", &token],
    )
    .await?;
    let on_server = s.server.fetch_job(created.job).await?;
    ensure!(on_server.completion.is_some() && on_server.acknowledgement.is_some());
    assert_eq!(on_server.parts[0].name, "Relay");
    let shown: serde_json::Value = serde_json::from_str(&tech(&store, &["show", prefix]).await?)?;
    assert_eq!(shown["status"]["unsynced"], false);
    s.server.stop().await?;
    Ok(())
}

/// R16 on the device: the customer of an installation job cannot sign before the training of
/// the customer's staff is recorded (`edit --trained … --training-topics …`), and an
/// installation needs no fault cause (R7's diagnosis is a repair's); once it is recorded the
/// customer signs once, the job completes, and the edge signs the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_the_tech_cli_records_training_before_the_customer_of_an_installation_signs()
-> anyhow::Result<()> {
    let s = setup().await?;
    let created = s
        .server
        .create_job_from(&installation_job_body("tech-ma", s.server.now()))
        .await?;
    let store = s.devices.path().join("cli.sqlite");
    let url = s.server.ws_url();
    tech(
        &store,
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
    .await?;
    let public = fieldsync_shared::keys::PublicKey::load(&store.with_extension("pub"))?;
    let device_id = DeviceId::new("dev-m")?;
    s.server.enroll_key("tech-ma", &device_id, &public)?;
    let token = s
        .server
        .device_token(&device_id, Duration::from_secs(600))?;
    let sync = ["sync", "--once", "--timeout", "20", "--token", &token];
    tech(&store, &sync).await?;
    let job = created.job.to_string();
    let prefix = &job[..8];

    tech(
        &store,
        &[
            "edit",
            prefix,
            "--arrival",
            "now",
            "--solution",
            "Installed and commissioned the chiller",
            "--opinion",
            "Runs quietly",
            "--check-out",
            "Called the desk",
        ],
    )
    .await?;
    let refused = tech(&store, &["ack", prefix, "--signer", "Ms Chen"])
        .await
        .expect_err("the customer of an installation cannot sign before the training");
    ensure!(
        refused.to_string().contains("cannot sign yet") && refused.to_string().contains("training"),
        "the refusal names the training: {refused:#}"
    );
    ensure!(
        !refused.to_string().contains("fault cause"),
        "an installation needs no fault cause: {refused:#}"
    );
    let shown: serde_json::Value = serde_json::from_str(&tech(&store, &["show", prefix]).await?)?;
    assert_eq!(shown["acknowledgement"]["state"], "none");
    assert_eq!(
        shown["missing"],
        serde_json::json!([
            {
                "rule": "R8",
                "code": "missing_acknowledgement",
                "message": "have the customer sign the report",
            },
            {
                "rule": "R16",
                "code": "missing_training",
                "message": "record the training given to the customer's staff: who was trained and what it covered",
            }
        ])
    );

    // Who was trained needs what it covered, and the other way round.
    ensure!(
        tech(&store, &["edit", prefix, "--trained", "Ms Chen"])
            .await
            .is_err()
    );
    tech(
        &store,
        &[
            "edit",
            prefix,
            "--trained",
            "Ms Chen (shift lead)",
            "--trained",
            "cold-room operators",
            "--training-topics",
            "Start-up, alarm reset, weekly filter cleaning",
        ],
    )
    .await?;
    tech(&store, &["ack", prefix, "--signer", "Ms Chen"]).await?;
    tech(&store, &["complete", prefix]).await?;
    tech(&store, &sync).await?;

    let report = fieldsync_tests::eventually(SETTLE, "the edge signs the report", || async {
        match s.server.fetch_job(created.job).await.ok()?.report? {
            fieldsync_shared::job::ReportOutcome::Signed { report_id, .. } => Some(report_id),
            _ => None,
        }
    })
    .await?;
    let on_server = s.server.fetch_job(created.job).await?;
    let training = on_server.visit.training.context("training on the server")?;
    assert_eq!(
        training.trainees,
        ["Ms Chen (shift lead)", "cold-room operators"]
    );
    assert_eq!(training.by.as_str(), "tech-ma");
    ensure!(!report.is_empty());
    s.server.stop().await?;
    Ok(())
}

/// Issue 15, "signing once": the customer is not asked to sign while the job still lacks
/// anything the completion request would be refused for. `ack` lists every reason at once (R7
/// for a repair, R9's score out of range, R11) and writes nothing; once the technician has
/// recorded them, the customer signs once, skipping the survey, which is stored as not
/// answered (never as 5s), and the job completes and is signed by the edge at the first try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_signs_once_and_a_skipped_survey_stays_not_answered() -> anyhow::Result<()> {
    let s = setup().await?;
    let created = s.server.create_job("tech-ma").await?;
    let store = s.devices.path().join("cli.sqlite");
    let url = s.server.ws_url();
    tech(
        &store,
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
    .await?;
    let public = fieldsync_shared::keys::PublicKey::load(&store.with_extension("pub"))?;
    let device_id = DeviceId::new("dev-m")?;
    s.server.enroll_key("tech-ma", &device_id, &public)?;
    let token = s
        .server
        .device_token(&device_id, Duration::from_secs(600))?;
    let sync = ["sync", "--once", "--timeout", "20", "--token", &token];
    tech(&store, &sync).await?;
    let job = created.job.to_string();
    let prefix = &job[..8];

    // What the issue saw accepted: nothing recorded, an attitude of 7.
    let refused = tech(
        &store,
        &["ack", prefix, "--signer", "Mr Lin", "--attitude", "7"],
    )
    .await
    .expect_err("the customer cannot sign an empty repair");
    let text = refused.to_string();
    for expected in [
        "cannot sign yet",
        "record the fault cause",
        "record the solution",
        "record the customer's opinion",
        "survey score attitude must be 1 to 5 (or not answered), got 7",
        "check out with the service desk",
    ] {
        ensure!(text.contains(expected), "{expected:?} missing from: {text}");
    }
    let shown: serde_json::Value = serde_json::from_str(&tech(&store, &["show", prefix]).await?)?;
    assert_eq!(shown["acknowledgement"]["state"], "none");
    assert_eq!(shown["job"]["acknowledgement"], serde_json::Value::Null);

    tech(
        &store,
        &[
            "edit",
            prefix,
            "--arrival",
            "now",
            "--fault-cause",
            "Burnt relay",
            "--solution",
            "Replaced the relay",
            "--opinion",
            "Good",
            "--check-out",
            "Called the desk",
        ],
    )
    .await?;
    // A score out of range alone is still refused, named.
    let refused = tech(
        &store,
        &["ack", prefix, "--signer", "Mr Lin", "--skill", "0"],
    )
    .await
    .expect_err("a score of 0 is refused");
    ensure!(
        refused
            .to_string()
            .ends_with("survey score skill must be 1 to 5 (or not answered), got 0"),
        "{refused:#}"
    );
    // The customer skips the survey and signs, once.
    tech(&store, &["ack", prefix, "--signer", "Mr Lin"]).await?;
    let shown: serde_json::Value = serde_json::from_str(&tech(&store, &["show", prefix]).await?)?;
    assert_eq!(shown["missing"], serde_json::json!([]));
    assert_eq!(
        shown["job"]["acknowledgement"]["survey"],
        serde_json::json!({ "suggestions": "" }),
        "a skipped survey has no score, not 5s"
    );
    tech(&store, &["complete", prefix]).await?;
    tech(&store, &sync).await?;

    let report = fieldsync_tests::eventually(SETTLE, "the edge signs the report", || async {
        match s.server.fetch_job(created.job).await.ok()?.report? {
            fieldsync_shared::job::ReportOutcome::Signed { report_id, .. } => Some(report_id),
            _ => None,
        }
    })
    .await?;
    ensure!(!report.is_empty());
    let on_server = s.server.fetch_job(created.job).await?;
    let survey = on_server
        .acknowledgement
        .context("acknowledgement on the server")?
        .survey;
    assert_eq!(survey, Survey::not_answered());
    s.server.stop().await?;
    Ok(())
}
