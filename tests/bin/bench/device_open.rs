//! `device-open` (issue 17): a technician's app opening its store and listing its jobs with
//! each job's state, at several job counts, the current path beside the path before issue 17
//! (every document loaded to list it: `Device::reopen_baseline`), in the same run on the
//! same store.
//!
//! Each store is built once per job count, in process (no server): a device's identity, J
//! jobs made as the desk makes them with E edits each (the benchmark's workload, one stored
//! chunk per change as sync and typed edits store them) and the assignment index listing
//! them all. The path before is measured on the store as the edits left it (what
//! `sdk-figures` measured: the writer has not compacted yet) and on the store once compacted;
//! the current path on one store whose summaries its first open made (the store was built
//! without them, as one from before issue 17): that first open is reported apart, as the
//! one-time cost of the migration. The paths alternate, `runs` times each: open, list,
//! check, close; the time is open + list.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use automerge::AutoCommit;
use fieldsync_client::{Device, DeviceConfig, JobEntry};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::AssignmentIndex;
use fieldsync_shared::job::index::IndexDoc;
use fieldsync_storage::{Store, StoreConfig};
use serde_json::{Value, json};

use crate::{median, progress, workload};

const TECHNICIAN: &str = "tech-bench";

/// The measured job counts, with `edits` per job and `runs` per path.
pub async fn run(jobs: &[usize], edits: usize, runs: usize) -> anyhow::Result<Value> {
    let mut points = Vec::new();
    for &count in jobs {
        points.push(point(count, edits, runs).await?);
    }
    Ok(json!({"edits_per_job": edits, "runs": runs, "points": points}))
}

async fn point(jobs: usize, edits: usize, runs: usize) -> anyhow::Result<Value> {
    progress(&format!("device-open {jobs} jobs: building the store"));
    let dir = tempfile::tempdir()?;
    let at = |name: &str| dir.path().join(name);
    let built = Instant::now();
    build_store(&at("pristine.sqlite"), &at("device.key"), jobs, edits).await?;
    let bytes = std::fs::metadata(at("pristine.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);
    // The same store once the writer has compacted it in its idle time.
    copy_store(&at("pristine.sqlite"), &at("compacted.sqlite"))?;
    let compacted_bytes = compact(&at("compacted.sqlite")).await?;
    progress(&format!(
        "device-open {jobs} jobs: built in {:.1}s ({} MiB as edited, {} MiB compacted); the \
         first open makes the summaries",
        built.elapsed().as_secs_f64(),
        bytes / (1024 * 1024),
        compacted_bytes / (1024 * 1024)
    ));

    // The first open of a store without summaries makes them (the migration), on the store
    // as edited: the slowest it gets.
    copy_store(&at("pristine.sqlite"), &at("current.sqlite"))?;
    let (first_ms, reference) = open_and_list(&at("current.sqlite"), false).await?;
    ensure!(
        reference.len() == jobs && reference.iter().all(|e| e.job.is_some()),
        "the store lists {} jobs of {jobs}",
        reference.len()
    );
    let (mut fresh, mut compacted, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // Before, on the store as the edits left it (what sdk-figures measured): a fresh copy
        // each time, since any open lets the writer compact.
        copy_store(&at("pristine.sqlite"), &at("run.sqlite"))?;
        let (ms, listed) = open_and_list(&at("run.sqlite"), true).await?;
        same_list(&reference, &listed, "before, as edited")?;
        fresh.push(ms);
        let (ms, listed) = open_and_list(&at("compacted.sqlite"), true).await?;
        same_list(&reference, &listed, "before, compacted")?;
        compacted.push(ms);
        let (ms, listed) = open_and_list(&at("current.sqlite"), false).await?;
        same_list(&reference, &listed, "after")?;
        after.push(ms);
        progress(&format!(
            "device-open {jobs} jobs run {}: before {:.1} ms as edited, {:.1} ms compacted; \
             after {ms:.1} ms",
            run + 1,
            fresh[run],
            compacted[run]
        ));
    }
    let mid = |v: &[f64]| median(&mut v.to_vec()).unwrap_or(f64::NAN);
    let (f, c, a) = (mid(&fresh), mid(&compacted), mid(&after));
    progress(&format!(
        "device-open {jobs} jobs: before {f:.1} ms as edited, {c:.1} ms compacted; after \
         {a:.1} ms (medians); first open with the migration {first_ms:.0} ms"
    ));
    Ok(json!({
        "jobs": jobs,
        "store_bytes": bytes,
        "compacted_store_bytes": compacted_bytes,
        "before_ms": f,
        "before_compacted_ms": c,
        "after_ms": a,
        "first_open_ms": first_ms,
        "before_samples_ms": fresh,
        "before_compacted_samples_ms": compacted,
        "after_samples_ms": after,
    }))
}

/// Copies a closed store (its write-ahead log was emptied at close).
fn copy_store(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut stale = to.as_os_str().to_owned();
        stale.push(suffix);
        let _ = std::fs::remove_file(stale);
    }
    std::fs::copy(from, to).with_context(|| format!("copy {}", from.display()))?;
    Ok(())
}

/// Compacts every document of a closed store, as its writer does when idle; its size after.
async fn compact(path: &Path) -> anyhow::Result<u64> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let store = Store::open(&owned, StoreConfig::default())?;
        store.compact_due().wait()?;
        store.close()?;
        Ok(())
    })
    .await??;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

/// Opens the store and lists its jobs; the time of both, and the list.
async fn open_and_list(store: &Path, baseline: bool) -> anyhow::Result<(f64, Vec<JobEntry>)> {
    let started = Instant::now();
    let device = if baseline {
        Device::reopen_baseline(store).await?
    } else {
        Device::reopen(store).await?
    };
    let listed = device.jobs().await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    device.close().await;
    Ok((ms, listed))
}

/// Both paths list the same jobs with the same content and status (the state is the current
/// path's alone).
fn same_list(reference: &[JobEntry], listed: &[JobEntry], path: &str) -> anyhow::Result<()> {
    ensure!(
        reference.len() == listed.len(),
        "{path}: {} jobs listed, {} expected",
        listed.len(),
        reference.len()
    );
    let key = |e: &JobEntry| e.id;
    let mut a: Vec<&JobEntry> = reference.iter().collect();
    let mut b: Vec<&JobEntry> = listed.iter().collect();
    a.sort_by_key(|e| key(e));
    b.sort_by_key(|e| key(e));
    for (x, y) in a.iter().zip(&b) {
        ensure!(
            x.id == y.id && x.job == y.job && x.status == y.status,
            "{path}: job {} differs",
            x.id
        );
    }
    Ok(())
}

/// A device store holding `jobs` jobs of `edits` changes each and the index listing them,
/// written as the device's sync stores them, without summaries.
async fn build_store(path: &Path, key: &Path, jobs: usize, edits: usize) -> anyhow::Result<()> {
    let index_id = random_id()?;
    let mut config = DeviceConfig::new(
        path,
        key,
        DeviceId::new("dev-bench")?,
        TechnicianId::new(TECHNICIAN)?,
    );
    config.assignment_index = Some(index_id);
    // The identity and key, as on enrollment.
    Device::open(config).await?.close().await;

    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // No compaction while building: the store as a day's edits leave it.
        let store = Store::open(&path, StoreConfig::without_maintenance())?;
        let mut index = IndexDoc::create(
            &AssignmentIndex {
                schema_version: 1,
                branch_id: BranchId::new("bench-01")?,
                technician: TechnicianId::new(TECHNICIAN)?,
                jobs: Vec::new(),
            },
            None,
        )
        .map_err(|e| anyhow::anyhow!("index: {e}"))?;
        let mut last = None;
        for n in 0..jobs {
            let id = random_id()?;
            let mut doc: AutoCommit = workload::new_job_doc(id, TECHNICIAN)?;
            last = Some(store.append_changes(&id.to_string(), doc.save()));
            for i in 0..edits {
                let heads = doc.get_heads();
                doc = workload::edit(doc, i)?;
                last = Some(store.append_changes(&id.to_string(), doc.save_after(&heads)));
            }
            index
                .add_job(&id)
                .map_err(|e| anyhow::anyhow!("index: {e}"))?;
            if n % 500 == 499 {
                progress(&format!("device-open: {} of {jobs} jobs stored", n + 1));
            }
        }
        drop(store.append_changes(&index_id.to_string(), index.save()));
        if let Some(last) = last {
            last.wait()?;
        }
        store.close()?;
        Ok(())
    })
    .await
    .context("building the store")??;
    Ok(())
}

fn random_id() -> anyhow::Result<DocumentId> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    Ok(DocumentId::from_bytes(bytes))
}
