//! `idle-docs` (issue 17): server memory per loaded idle document on the desk's path. The
//! desk creates `jobs` jobs for each of `devices` technicians through `POST /api/jobs`;
//! each device then fetches its jobs once (a fresh app: its assignment index and every job)
//! and disconnects; the server is left idle. RSS is read from /proc (the median of a few
//! readings once settled) before the jobs, after creating them and after the fetch, with the
//! server's `fieldsync_loaded_documents`. The independent load generator measured
//! this path at 200 × 20: 224–241 MiB after the creation, 585 MiB–1.24 GiB after the fetch.
//!
//! With `--before-bin`, the older binary runs the same workload first, in the same run.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Device, DeviceDoc};
use crate::servers::{Kind, Programs, Server};
use crate::{fetch_all, progress, settle};

pub async fn idle_docs(
    programs: &Programs,
    before: Option<&PathBuf>,
    devices: usize,
    jobs: usize,
) -> anyhow::Result<Value> {
    let mut out = json!({"devices": devices, "jobs_per_device": jobs});
    if let Some(bin) = before {
        let mut p = programs.clone();
        p.fieldsync = bin.clone();
        out["before"] = one(&p, devices, jobs, "before").await?;
    }
    out["after"] = one(programs, devices, jobs, "after").await?;
    Ok(out)
}

async fn one(
    programs: &Programs,
    devices: usize,
    jobs: usize,
    label: &str,
) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(Kind::Fieldsync, programs, dir.path())?;
    let url = server.ws_url();
    let ids = server.identities(devices, 1).await?;
    let rss_base = server.settled_rss_kib().await?;
    let technicians: Vec<String> = ids.iter().map(|i| i.technician.clone()).collect();
    let docs = server.create_jobs(&technicians, jobs).await?;
    tokio::time::sleep(settle(Duration::from_secs(2))).await;
    let rss_created = server.settled_rss_kib().await?;
    let loaded_created = server.metric("fieldsync_loaded_documents").await;
    progress(&format!(
        "idle-docs {label}: {} jobs created, RSS {} MiB",
        devices * jobs,
        rss_created / 1024
    ));
    let mut fleet: Vec<Device> = ids
        .iter()
        .zip(docs)
        .map(|(id, docs)| id.device(docs.into_iter().map(DeviceDoc::empty).collect()))
        .collect();
    fetch_all(&mut fleet, &url, Duration::from_secs(600)).await?;
    tokio::time::sleep(settle(Duration::from_secs(3))).await;
    let rss_fetched = server.settled_rss_kib().await?;
    let loaded = server.metric("fieldsync_loaded_documents").await;
    // As of the hub's last release of free memory (absent from builds before it).
    let heap = server.metric("fieldsync_heap_in_use_bytes").await;
    let peak = server.peak_rss_kib()?;
    let n = loaded.unwrap_or((devices * jobs) as f64).max(1.0);
    let per_created = rss_created.saturating_sub(rss_base) as f64 / n;
    let per_fetched = rss_fetched.saturating_sub(rss_base) as f64 / n;
    progress(&format!(
        "idle-docs {label}: every device fetched its jobs: RSS {} MiB (peak {} MiB), {} \
         documents loaded; {per_created:.1} KiB/doc after create, {per_fetched:.1} KiB/doc \
         after the fetch; heap in use {}",
        rss_fetched / 1024,
        peak / 1024,
        n,
        heap.map_or("not reported".to_owned(), |h| format!(
            "{} MiB",
            h as u64 >> 20
        ))
    ));
    Ok(json!({
        "rss_base_kib": rss_base,
        "rss_created_kib": rss_created,
        "rss_fetched_kib": rss_fetched,
        "peak_rss_kib": peak,
        "loaded_documents_created": loaded_created,
        "loaded_documents": loaded,
        "kib_per_document_created": per_created,
        "kib_per_document_fetched": per_fetched,
        "heap_in_use_bytes": heap,
    }))
}
