//! Issue 5's figures: the time from a technician's completion (device back online) to the
//! report verified at head office, on loopback; and reports signed and verified per second on
//! one core.
//!
//! Run: `cargo run --release -p fieldsync-tests --bin report-figures [-- JOBS]` (prints JSON).
//! Not a test: timing belongs in benchmarks.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fieldsync_client::{Device, DeviceConfig, JobEdit, SyncOptions};
use fieldsync_server::clock::Clock;
use fieldsync_server::head_office::archive::{self as head_office, Filter};
use fieldsync_server::head_office::store::HeadOfficeStore;
use fieldsync_shared::ids::{DeviceId, TechnicianId};
use fieldsync_shared::job::doc::PartDraft;
use fieldsync_shared::job::{ReportOutcome, SignatureMark, Survey};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::{
    AckDraft, DeviceRecord, SignedReport, TrustStore, sign_acknowledgement,
};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{LinkProxy, TestServer, temp_dir};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        if Instant::now() > deadline {
            bail!("timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Completes `jobs` jobs offline, one at a time; for each, goes online and times until head
/// office has verified its report. Returns the latencies in ms and the last signed report.
async fn completion_to_verified(jobs: usize) -> anyhow::Result<(Vec<f64>, SignedReport)> {
    let (ho_dir, branch_dir, device_dir) = (temp_dir()?, temp_dir()?, temp_dir()?);
    let head_office = TestServer::start_head_office(ho_dir.path(), Clock::system()).await?;
    let token_file = head_office.enroll_branch("north-01", branch_dir.path())?;
    let link = LinkProxy::start(head_office.addr).await?;
    let branch = TestServer::start_branch(
        branch_dir.path(),
        link.ws_url(),
        token_file,
        Clock::system(),
    )
    .await?;
    let device = Device::open(DeviceConfig::new(
        device_dir.path().join("wang.sqlite"),
        device_dir.path().join("wang.key"),
        DeviceId::new("dev-wang")?,
        TechnicianId::new("tech-wang")?,
    ))
    .await?;
    branch.enroll_key("tech-wang", device.device_id(), device.public_key())?;
    let token = branch.device_token(device.device_id(), Duration::from_secs(3600))?;
    let options = SyncOptions::new(branch.ws_url(), token);
    let mut latencies = Vec::new();
    for n in 0..jobs {
        let created = branch.create_job("tech-wang").await?;
        device.start_sync(options.clone());
        until("the job reaches the device", || async {
            device.job(created.job).await.is_ok()
        })
        .await?;
        device.stop_sync();
        until("offline", || async {
            !matches!(device.sync_state(), fieldsync_client::SyncState::Connected)
        })
        .await?;
        let job = created.job;
        device.edit(job, JobEdit::Arrival(Some(now()))).await?;
        device
            .add_part(
                job,
                PartDraft {
                    part_number: format!("CAP-{n}"),
                    name: "Start capacitor".into(),
                    specification: "45 uF".into(),
                    quantity: 1,
                    unit_price: Money(1250),
                    warranty: false,
                },
            )
            .await?;
        device
            .edit_all(
                job,
                vec![
                    JobEdit::FaultCause(Some("Worn start capacitor".into())),
                    JobEdit::Solution(Some("Replaced it".into())),
                    JobEdit::CustomerOpinion(Some("Fine".into())),
                ],
            )
            .await?;
        // R11 before R8: the customer signs last, once (rules::acknowledgement_blockers).
        device.check_out(job, "done").await?;
        device
            .acknowledge(
                job,
                AckDraft {
                    signer_name: "Ms Chen".into(),
                    signature: SignatureMark::Strokes {
                        strokes: vec![vec![[0, 0], [12, 9]]],
                    },
                    signed_at: now(),
                    survey: Survey::answered(5, 5, 5, 5, ""),
                },
            )
            .await?;
        device.request_completion(job).await?;
        // Back online: the clock starts.
        let started = Instant::now();
        device.start_sync(options.clone());
        let store = HeadOfficeStore::Sqlite(std::sync::Arc::clone(&head_office.state.store));
        until("verified at head office", || {
            let store = store.clone();
            async move {
                head_office::archived(&store, &Filter::default())
                    .await
                    .is_ok_and(|r| r.len() > n)
            }
        })
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        // Out of the timing: the device learns the outcome too (it may come after head
        // office has the report: the outcome is written after the report is stored).
        until("the device sees its report signed", || async {
            device
                .job(job)
                .await
                .is_ok_and(|j| matches!(j.report, Some(ReportOutcome::Signed { .. })))
        })
        .await?;
    }
    let store = HeadOfficeStore::Sqlite(std::sync::Arc::clone(&head_office.state.store));
    let last = head_office::archived(&store, &Filter::default())
        .await?
        .pop()
        .context("no report")?;
    let report: SignedReport = serde_json::from_value(last.report)?;
    device.close().await;
    branch.stop().await?;
    head_office.stop().await?;
    Ok((latencies, report))
}

fn now() -> Timestamp {
    fieldsync_server::clock::system_now()
}

/// Signing and verifying on this thread only (one core), over the content of a real report:
/// the job is acknowledged afresh by a device key of our own (the test device's key file is
/// gone with its temp dir), then signed `rounds` times and each verified as head office does
/// (`TrustStore::verify_json`: branch signature, digest, device acknowledgement).
fn sign_and_verify(sample: &SignedReport, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let device = KeyPair::generate()?;
    let branch = KeyPair::generate()?;
    let mut job = sample.job()?;
    job.acknowledgement = None;
    let heads = sample.body.heads.clone();
    let ack = sign_acknowledgement(
        &job,
        heads.clone(),
        AckDraft {
            signer_name: "Ms Chen".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![vec![[0, 0], [12, 9]]],
            },
            signed_at: sample.body.signed_at,
            survey: Survey::answered(5, 5, 5, 5, ""),
        },
        sample.body.acknowledgement.device_id.clone(),
        &device,
    )?;
    job.acknowledgement = Some(ack);

    let started = Instant::now();
    let mut signed = Vec::with_capacity(rounds);
    for n in 0..rounds {
        let at = Timestamp::from_millis(sample.body.signed_at.as_millis() + n as i64);
        let report = SignedReport::sign(&job, heads.clone(), at, None, &branch)?;
        signed.push(report.to_canonical_json()?);
    }
    let sign_rate = rounds as f64 / started.elapsed().as_secs_f64();

    let mut trust = TrustStore::new();
    trust.add_branch_key(sample.body.branch_id.clone(), branch.public().clone());
    trust.add_device(DeviceRecord {
        device_id: sample.body.acknowledgement.device_id.clone(),
        branch_id: sample.body.branch_id.clone(),
        technician: TechnicianId::new("tech-wang")?,
        public_key: device.public().to_hex(),
        revoked_at: None,
    })?;
    let started = Instant::now();
    for bytes in &signed {
        trust.verify_json(bytes)?;
    }
    let verify_rate = rounds as f64 / started.elapsed().as_secs_f64();
    Ok((sign_rate, verify_rate))
}

fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(15);
    let runtime = tokio::runtime::Runtime::new()?;
    let (latencies, sample) = runtime.block_on(completion_to_verified(jobs))?;
    drop(runtime);
    let rounds = 2_000;
    let (sign_rate, verify_rate) = sign_and_verify(&sample, rounds)?;
    let figures = json!({
        "completion_to_verified_at_head_office_ms": {
            "jobs": jobs,
            "median": median(latencies.clone()),
            "p90": percentile(latencies.clone(), 0.9),
            "min": latencies.iter().copied().fold(f64::INFINITY, f64::min),
            "max": latencies.iter().copied().fold(0.0, f64::max),
        },
        "one_core": {
            "reports": rounds,
            "signed_per_second": sign_rate,
            "verified_per_second": verify_rate,
        },
    });
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
