//! The in-process limit: the storm's changes merged by automerge alone, in this process, with
//! no network, no disk and no protocol envelope. Three ways: the sync protocol between two
//! in-memory documents per job (generate/receive until quiet), `apply_changes` of each job's
//! new changes as one batch, and `load_incremental` of the bytes `save_after` gives.

use std::time::{Duration, Instant};

use anyhow::ensure;
use automerge::sync::{self, SyncDoc};
use automerge::{AutoCommit, Automerge, Change};
use fieldsync_shared::ids::DocumentId;

use crate::workload::{self, Shape};

#[derive(Debug, Clone, Copy)]
pub struct InProcess {
    pub sync_secs: f64,
    pub apply_secs: f64,
    pub load_incremental_secs: f64,
}

struct Job {
    server: Automerge,
    device: AutoCommit,
    server_state: sync::State,
    device_state: sync::State,
}

/// Builds the storm's jobs (untimed), then times each way of merging them.
pub fn run(shape: Shape) -> anyhow::Result<InProcess> {
    let mut jobs = Vec::with_capacity(shape.devices * shape.jobs);
    for d in 0..shape.devices {
        for _ in 0..shape.jobs {
            let id = DocumentId::random();
            let mut created = workload::new_job_doc(id, &format!("tech-{d:04}"))?;
            let bytes = created.save();
            let mut server = Automerge::load(&bytes)?;
            let mut device = AutoCommit::load(&bytes)?;
            // As after the device's first fetch: both sides know the shared heads.
            let mut server_state = sync::State::new();
            let mut device_state = sync::State::new();
            exchange(
                &mut server,
                &mut device,
                &mut server_state,
                &mut device_state,
            )?;
            device = workload::edits(device, 0, shape.edits)?;
            jobs.push(Job {
                server,
                device,
                server_state: sync::State::decode(&server_state.encode())?,
                device_state: sync::State::decode(&device_state.encode())?,
            });
        }
    }
    let base: Vec<Automerge> = jobs.iter().map(|j| j.server.clone()).collect();
    let mut batches: Vec<Vec<Change>> = Vec::with_capacity(jobs.len());
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(jobs.len());
    for (job, server) in jobs.iter_mut().zip(&base) {
        let since = server.get_heads();
        batches.push(job.device.get_changes(&since));
        chunks.push(job.device.save_after(&since));
    }

    // The sync protocol.
    let mut spent = Duration::ZERO;
    for job in &mut jobs {
        let start = Instant::now();
        exchange(
            &mut job.server,
            &mut job.device,
            &mut job.server_state,
            &mut job.device_state,
        )?;
        spent += start.elapsed();
        ensure!(
            job.server.get_heads() == job.device.get_heads(),
            "in-process sync did not converge"
        );
    }
    let sync_secs = spent.as_secs_f64();

    // apply_changes, one batch per job.
    let mut targets: Vec<Automerge> = base.clone();
    let start = Instant::now();
    for (doc, batch) in targets.iter_mut().zip(batches) {
        doc.apply_changes_batch(batch)?;
    }
    let apply_secs = start.elapsed().as_secs_f64();
    for (doc, job) in targets.iter().zip(&mut jobs) {
        ensure!(
            doc.get_heads() == job.device.get_heads(),
            "apply_changes did not converge"
        );
    }

    // load_incremental of save_after's bytes.
    let mut targets: Vec<Automerge> = base;
    let start = Instant::now();
    for (doc, bytes) in targets.iter_mut().zip(&chunks) {
        doc.load_incremental(bytes)?;
    }
    let load_incremental_secs = start.elapsed().as_secs_f64();
    for (doc, job) in targets.iter().zip(&mut jobs) {
        ensure!(
            doc.get_heads() == job.device.get_heads(),
            "load_incremental did not converge"
        );
    }
    Ok(InProcess {
        sync_secs,
        apply_secs,
        load_incremental_secs,
    })
}

/// Runs the sync protocol between the two documents until neither has anything to say.
fn exchange(
    server: &mut Automerge,
    device: &mut AutoCommit,
    server_state: &mut sync::State,
    device_state: &mut sync::State,
) -> anyhow::Result<()> {
    for _ in 0..100 {
        let mut quiet = true;
        if let Some(m) = device.sync().generate_sync_message(device_state) {
            quiet = false;
            server.receive_sync_message(server_state, sync::Message::decode(&m.encode())?)?;
        }
        if let Some(m) = server.generate_sync_message(server_state) {
            quiet = false;
            device
                .sync()
                .receive_sync_message(device_state, sync::Message::decode(&m.encode())?)?;
        }
        if quiet {
            return Ok(());
        }
    }
    anyhow::bail!("in-process sync did not settle in 100 rounds")
}
