//! `idle-docs` (issue 17): server memory per loaded idle document on the desk's path. The
//! desk creates `jobs` jobs for each of `devices` technicians through `POST /api/jobs`;
//! each device then fetches its jobs once (a fresh app: its assignment index and every job)
//! and disconnects; the server is left idle. RSS is read from /proc (the median of a few
//! readings once settled) before the jobs, after creating them and after the fetch, with the
//! server's `fieldsync_loaded_documents`. The independent load generator measured
//! this path at 200 × 20: 224–241 MiB after the creation, 585 MiB–1.24 GiB after the fetch.
//!
//! Then, for builds that keep idle documents as saved bytes (`limits.document_dormant`), it
//! waits until every loaded document is dormant and reads RSS and the heap again.
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
    dormant_secs: Option<u64>,
) -> anyhow::Result<Value> {
    let mut out = json!({"devices": devices, "jobs_per_device": jobs});
    if let Some(bin) = before {
        let mut p = programs.clone();
        p.fieldsync = bin.clone();
        out["before"] = one(&p, devices, jobs, "before", dormant_secs).await?;
    }
    out["after"] = one(programs, devices, jobs, "after", dormant_secs).await?;
    Ok(out)
}

async fn one(
    programs: &Programs,
    devices: usize,
    jobs: usize,
    label: &str,
    dormant_secs: Option<u64>,
) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let env: Vec<(&str, String)> = dormant_secs
        .map(|s| ("FIELDSYNC_DOCUMENT_DORMANT_SECS", s.to_string()))
        .into_iter()
        .collect();
    let server = Server::start_with_env(Kind::Fieldsync, programs, dir.path(), &env)?;
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
    // Issue 17: a document idle for `limits.document_dormant` (120 s) keeps only its saved
    // bytes. Wait for every loaded one to sleep (a build without it never reports the
    // gauge: no wait), then read the memory again once the hub has given the freed back.
    let mut dormant = server.metric("fieldsync_dormant_documents").await;
    let mut rss_dormant = None;
    let mut heap_dormant = None;
    if dormant.is_some() {
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        while dormant.is_some_and(|d| d < n) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            dormant = server.metric("fieldsync_dormant_documents").await;
        }
        tokio::time::sleep(settle(Duration::from_secs(3))).await;
        rss_dormant = Some(server.settled_rss_kib().await?);
        heap_dormant = server.metric("fieldsync_heap_in_use_bytes").await;
    }
    let per_dormant = rss_dormant.map(|r| r.saturating_sub(rss_base) as f64 / n);
    if let (Some(rss), Some(per)) = (rss_dormant, per_dormant) {
        progress(&format!(
            "idle-docs {label}: {} of them dormant: RSS {} MiB, {per:.1} KiB/doc; heap in use {}",
            dormant.unwrap_or(0.0),
            rss / 1024,
            heap_dormant.map_or("not reported".to_owned(), |h| format!(
                "{} MiB",
                h as u64 >> 20
            ))
        ));
    }
    Ok(json!({
        "rss_dormant_kib": rss_dormant,
        "dormant_documents": dormant,
        "kib_per_document_dormant": per_dormant,
        "heap_in_use_dormant_bytes": heap_dormant,
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
