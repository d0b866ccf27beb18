//! Issue 15's attachment figure: upload throughput on loopback. Twenty photos of 3 MB are
//! captured offline on a device (SDK), then uploaded to a real `fieldsync serve` edge on
//! 127.0.0.1 (`Device::upload_attachments`: status, PUT in parts of 4 MiB, the edge writes,
//! fsyncs, hashes and renames each blob before it answers); MB/s = bytes / wall time, median
//! of several runs, each in fresh temp dirs.
//!
//! Run: `cargo build --release -p fieldsync-server -p fieldsync-tests --bin fieldsync --bin
//! attachment-figures`, then `FIELDSYNC_BIN=target/release/fieldsync
//! target/release/attachment-figures [RUNS]` (prints JSON; results in docs/BENCHMARKS.md).
//! Not a test: timing belongs in benchmarks.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use fieldsync_client::{AttachmentKind, ClientTls, Device, SyncOptions, UploadOutcome, now};
use fieldsync_shared::ids::DocumentId;
use fieldsync_tests::{ServerProcess, cli, sample_job_body, temp_dir};
use serde_json::{Value, json};

const PHOTOS: u64 = 20;
const PHOTO_BYTES: usize = 3_000_000;

fn photo(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PHOTO_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn post(
    server: &ServerProcess,
    desk: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .post(server.http_url(path))
        .bearer_auth(desk)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.is_success(), "{path}: {status} {body}");
    Ok(body)
}

/// (capture ms, upload ms) of one run.
async fn one_run() -> anyhow::Result<(f64, f64)> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = ServerProcess::start(data.path())?;
    let desk = cli(data.path(), &["desk", "token", "--role", "manager"])?;
    let created = post(&server, &desk, "/api/jobs", sample_job_body("tech-bench")).await?;
    let job = DocumentId::from_url(created["url"].as_str().context("url")?)?;
    let code = post(
        &server,
        &desk,
        "/api/enrollment-codes",
        json!({ "technician": "tech-bench" }),
    )
    .await?;
    let tls = ClientTls::system();
    let (device, _) = Device::enroll_with_code(
        devices.path().join("bench.sqlite"),
        devices.path().join("bench.key"),
        &server.ws_url(),
        &tls,
        code["code"].as_str().context("code")?,
    )
    .await?;
    let renewal = device.key_renewal(server.ws_url(), tls.clone());
    device.start_sync(SyncOptions::new(server.ws_url(), String::new()).with_renewal(renewal));
    let deadline = Instant::now() + Duration::from_secs(30);
    while device.job(job).await.is_err() {
        if Instant::now() > deadline {
            bail!("the job never arrived");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    device.stop_sync();
    let token = device.saved_token().await?.context("token")?.token;

    let photos: Vec<Vec<u8>> = (1..=PHOTOS).map(photo).collect();
    let started = Instant::now();
    for (i, bytes) in photos.into_iter().enumerate() {
        device
            .attach(
                job,
                bytes,
                AttachmentKind::After,
                "image/jpeg",
                &format!("IMG_{i}.jpg"),
                now(),
            )
            .await?;
    }
    let capture_ms = started.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let outcomes = device
        .upload_attachments(&server.ws_url(), &token, &tls)
        .await;
    let upload_ms = started.elapsed().as_secs_f64() * 1e3;
    let uploaded = outcomes
        .iter()
        .filter(|o| matches!(o, UploadOutcome::Uploaded { .. }))
        .count();
    ensure!(uploaded as u64 == PHOTOS, "{outcomes:?}");
    device.close().await;
    Ok((capture_ms, upload_ms))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let mut capture = Vec::new();
    let mut upload = Vec::new();
    for _ in 0..runs {
        let (c, u) = one_run().await?;
        capture.push(c);
        upload.push(u);
    }
    let total_mb = (PHOTOS as f64) * (PHOTO_BYTES as f64) / 1e6;
    let upload_ms = median(upload.clone());
    let capture_ms = median(capture.clone());
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "photos": PHOTOS,
            "photo_bytes": PHOTO_BYTES,
            "total_mb": total_mb,
            "runs": runs,
            "capture_ms_median": capture_ms,
            "capture_mb_per_s": total_mb / (capture_ms / 1e3),
            "upload_ms_median": upload_ms,
            "upload_mb_per_s": total_mb / (upload_ms / 1e3),
            "upload_ms_all": upload,
        }))?
    );
    Ok(())
}
