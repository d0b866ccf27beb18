//! The client SDK issue's figures: opening a device store that holds 200 jobs, and syncing
//! 200 jobs with 50 edits each made offline to a local edge server (median of several runs).
//!
//! The server runs in this process on loopback (`TestServer`), each run in fresh temp dirs.
//! Run: `cargo run --release -p fieldsync-tests --bin sdk-figures [-- RUNS]` (prints JSON).
//! Not a test: timing belongs in benchmarks.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fieldsync_client::{Device, DeviceConfig, JobEdit, PartDraft, SyncOptions, SyncState};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::Labour;
use fieldsync_shared::time::Money;
use fieldsync_tests::{TestServer, temp_dir};
use serde_json::json;

const JOBS: usize = 200;
const EDITS: usize = 50;
const WAIT: Duration = Duration::from_secs(600);

struct Run {
    open_ms: f64,
    edit_ms: f64,
    sync_ms: f64,
}

async fn wait_until<F, Fut>(what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        if Instant::now() > deadline {
            bail!("timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn all_synced(device: &Device, jobs: &[DocumentId]) -> bool {
    let list = device.jobs().await;
    list.len() == jobs.len() && list.iter().all(|j| j.job.is_some() && !j.status.unsynced)
}

async fn one_run() -> anyhow::Result<Run> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let mut jobs = Vec::with_capacity(JOBS);
    let mut index = None;
    for _ in 0..JOBS {
        let created = server.create_job("tech-bench").await?;
        index = Some(created.index);
        jobs.push(created.job);
    }
    let store = devices.path().join("bench.sqlite");
    let mut config = DeviceConfig::new(
        &store,
        devices.path().join("bench.key"),
        DeviceId::new("dev-bench")?,
        TechnicianId::new("tech-bench")?,
    );
    config.assignment_index = index;
    let device = Device::open(config).await?;
    server.enroll_key("tech-bench", device.device_id(), device.public_key())?;
    let token = server.device_token(device.device_id(), Duration::from_secs(3600))?;
    let options = SyncOptions::new(server.ws_url(), token);
    device.start_sync(options.clone());
    wait_until("the jobs arrive", || all_synced(&device, &jobs)).await?;
    device.stop_sync();

    // Offline: 50 edits per job, each durable before the next.
    let started = Instant::now();
    for job in &jobs {
        let line = device
            .add_part(
                *job,
                PartDraft {
                    part_number: "PN-1".into(),
                    name: "Relay".into(),
                    specification: String::new(),
                    quantity: 1,
                    unit_price: Money(900),
                    warranty: false,
                },
            )
            .await?;
        for n in 1..EDITS {
            let edit = match n % 3 {
                0 => JobEdit::FaultCause(Some(format!("cause {n}"))),
                1 => JobEdit::SetPartQuantity {
                    id: line.clone(),
                    quantity: u32::try_from(n)?,
                },
                _ => JobEdit::Labour(Labour {
                    minutes: u32::try_from(n)?,
                    rate_per_hour: Money(8000),
                }),
            };
            device.edit(*job, edit).await?;
        }
    }
    let edit_ms = started.elapsed().as_secs_f64() * 1e3;

    // Reopen: what an app restart costs with 200 jobs in the store.
    device.close().await;
    let started = Instant::now();
    let device = Device::reopen(&store).await?;
    let listed = device.jobs().await;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    if listed.len() != JOBS || !listed.iter().all(|j| j.status.unsynced) {
        bail!("the reopened store lists {} jobs", listed.len());
    }

    // Sync everything to the server: until the device knows the server holds it all.
    let started = Instant::now();
    device.start_sync(options);
    wait_until("everything syncs", || all_synced(&device, &jobs)).await?;
    let sync_ms = started.elapsed().as_secs_f64() * 1e3;
    if !matches!(device.sync_state(), SyncState::Connected) {
        bail!("not connected at the end: {:?}", device.sync_state());
    }
    for job in [jobs[0], jobs[JOBS - 1]] {
        if server.fetch_job(job).await? != device.job(job).await? {
            bail!("the server's copy of {job} differs from the device's");
        }
    }
    device.close().await;
    server.stop().await.context("stop server")?;
    Ok(Run {
        open_ms,
        edit_ms,
        sync_ms,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let mut results = Vec::new();
    for i in 0..runs {
        let run = one_run().await?;
        eprintln!(
            "run {i}: open {:.0} ms, {} offline edits {:.0} ms, sync {:.0} ms",
            run.open_ms,
            JOBS * EDITS,
            run.edit_ms,
            run.sync_ms
        );
        results.push(run);
    }
    let figures = json!({
        "jobs": JOBS,
        "edits_per_job": EDITS,
        "runs": runs,
        "open_store_and_list_jobs_ms_median": median(results.iter().map(|r| r.open_ms).collect()),
        "offline_edits_total_ms_median": median(results.iter().map(|r| r.edit_ms).collect()),
        "sync_all_ms_median": median(results.iter().map(|r| r.sync_ms).collect()),
    });
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
