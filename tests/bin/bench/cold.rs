//! `cold` (issue 17): a branch that has kept years of jobs starting up. For each number of
//! stored jobs N, a data directory is made by the real server (keys, role, branch, one
//! template job through `POST /api/jobs`), then filled straight through the storage crate
//! and the server's own registry: `devices` enrolled devices, N job documents made from the
//! template (`JobDoc::create` with the maps the server adds, as `make_job` does), their job
//! records, the desk's record of each, and each technician's assignment index. The first
//! device has `first_jobs` jobs of its own (the same at every N).
//!
//! Then the server is started on it, and the bench measures: the time from spawn to
//! `/healthz` answering (ready to serve), to `GET /api/approvals` answering (the desk's queue
//! built), the RSS then, the first device's fetch of its index and jobs, and its reconnect
//! (median of 3). The server is started twice: the first start after the fill (a branch
//! upgraded to this version, or one whose derived state was never written) and a second
//! start (the branch as the server leaves it), which is the figure the target is about.
//!
//! `--cold-before-bin` runs an older binary (main's) on a copy of the same data beside it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fieldsync_server::sync::registry::{JobRecord, Registry};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{JobDoc, init_resolutions, read_job};
use fieldsync_shared::job::index::{INDEX_SCHEMA_VERSION, IndexDoc};
use fieldsync_shared::job::{AssignmentIndex, approvals::init_approvals};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::DeviceRecord;
use fieldsync_storage::{Record, Store, StoreConfig};
use serde_json::{Value, json};

use crate::client::DeviceDoc;
use crate::progress;
use crate::servers::{self, Identity, Kind, Programs, Server};

/// One data directory as generated.
struct Generated {
    /// The first device's technician and its documents (index first).
    technician: String,
    peer_id: String,
    docs: Vec<DocumentId>,
}

/// The cold-start series: for each N in `stored`, both binaries (the one under test and,
/// when given, `before`).
pub async fn cold(
    programs: &Programs,
    before: Option<&PathBuf>,
    stored: &[usize],
    devices: usize,
    first_jobs: usize,
) -> anyhow::Result<Value> {
    let mut points = Vec::new();
    for &n in stored {
        let dir = tempfile::tempdir()?;
        let template = make_template(programs, dir.path()).await?;
        let data = dir.path().join("fieldsync-data");
        let started = Instant::now();
        let generated = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || generate(&data, template, n, devices, first_jobs))
                .await??
        };
        progress(&format!(
            "cold {n}: generated {n} jobs, {devices} devices in {:.1}s ({} MiB on disk)",
            started.elapsed().as_secs_f64(),
            servers::dir_size(&data) / (1 << 20)
        ));
        let mut binaries = vec![("after", programs.clone())];
        if let Some(bin) = before {
            let mut p = programs.clone();
            p.fieldsync = bin.clone();
            binaries.insert(0, ("before", p));
        }
        let mut point = json!({"stored_jobs": n, "devices": devices, "first_jobs": first_jobs});
        for (label, programs) in binaries {
            // Each binary on its own copy: a newer one may migrate the schema.
            let copy = tempfile::tempdir()?;
            copy_dir(&data, &copy.path().join("fieldsync-data"))?;
            let r = measure(&programs, copy.path(), &generated, n, label).await?;
            point[label] = r;
        }
        points.push(point);
    }
    Ok(json!({"points": points}))
}

/// A fresh fieldsync data directory with one job made through the desk API: the template
/// every generated job copies. Returns the template's id; the server is stopped.
async fn make_template(programs: &Programs, dir: &Path) -> anyhow::Result<DocumentId> {
    let server = Server::start(Kind::Fieldsync, programs, dir)?;
    let made = server.create_jobs(&["tech-template".to_owned()], 1).await?;
    let id = made[0][0];
    drop(server); // SIGKILL: what it acknowledged is durable.
    Ok(id)
}

/// Fills the data directory at `data` (see the module docs).
fn generate(
    data: &Path,
    template: DocumentId,
    jobs: usize,
    devices: usize,
    first_jobs: usize,
) -> anyhow::Result<Generated> {
    let store = Store::open(
        data.join("fieldsync.sqlite"),
        StoreConfig::without_maintenance(),
    )?;
    let mut registry = Registry::load(&store)?;
    let chunks = store
        .load_doc(&template.to_string())?
        .context("template job not stored")?;
    let template_job = read_job(&fieldsync_shared::stored::load(&chunks)?)?;
    let branch_id = template_job.branch_id.clone();
    let template_record = registry.job(&template).context("template record")?.clone();
    let desk = store
        .record("job", &template.to_string())?
        .context("template desk record")?;
    let mut desk_body: Value = serde_json::from_slice(&desk.body)?;

    let technicians: Vec<TechnicianId> = (0..devices.max(1))
        .map(|d| TechnicianId::new(format!("tech-{d:04}")))
        .collect::<Result<_, _>>()?;
    let mut pending = Vec::new();
    let mut chunks = Vec::new();
    for (d, technician) in technicians.iter().enumerate() {
        let record = DeviceRecord {
            device_id: DeviceId::new(format!("dev-{d:04}-0"))?,
            branch_id: branch_id.clone(),
            technician: technician.clone(),
            public_key: KeyPair::generate()?.public().to_hex(),
            revoked_at: None,
        };
        pending.push(registry.enroll_device(&store, record)?);
    }
    for p in pending.drain(..) {
        p.wait()?;
    }

    // The first device's jobs, then N more round-robin over the other technicians.
    let mut assigned: Vec<Vec<DocumentId>> = vec![Vec::new(); technicians.len()];
    let total = first_jobs + jobs;
    for i in 0..total {
        let t = if i < first_jobs || technicians.len() == 1 {
            0
        } else {
            1 + (i - first_jobs) % (technicians.len() - 1)
        };
        let technician = &technicians[t];
        let id = DocumentId::random();
        let mut job = template_job.clone();
        job.job_id = id;
        job.technicians = vec![technician.clone()];
        let mut doc = JobDoc::create(&job)?.into_inner();
        init_approvals(&mut doc)?;
        init_resolutions(&mut doc)?;
        fieldsync_shared::job::attachments::init_attachments(&mut doc)?;
        chunks.push(store.append_changes(&id.to_string(), doc.save()));
        pending.push(registry.put_job(
            &store,
            JobRecord {
                job_id: id,
                technicians: [technician.clone()].into(),
                former: Default::default(),
                ..template_record.clone()
            },
        ));
        desk_body["job_id"] = json!(id.to_string());
        pending.push(store.put_record(Record {
            id: id.to_string(),
            revision: 1,
            body: serde_json::to_vec(&desk_body)?,
            ..desk.clone()
        }));
        assigned[t].push(id);
        if pending.len() >= 3000 {
            for p in pending.drain(..) {
                p.wait()?;
            }
            for p in chunks.drain(..) {
                p.wait()?;
            }
        }
        if (i + 1) % 20_000 == 0 {
            progress(&format!("  cold: {}/{total} jobs written", i + 1));
        }
    }
    let mut first_index = None;
    for (technician, jobs) in technicians.iter().zip(&assigned) {
        if jobs.is_empty() {
            continue;
        }
        let index = AssignmentIndex {
            schema_version: INDEX_SCHEMA_VERSION,
            branch_id: branch_id.clone(),
            technician: technician.clone(),
            jobs: jobs.iter().map(DocumentId::url).collect(),
        };
        let mut doc = IndexDoc::create(&index, None)?;
        let id = DocumentId::random();
        chunks.push(store.append_changes(&id.to_string(), doc.save()));
        pending.push(registry.set_index_doc(&store, technician, id));
        first_index.get_or_insert(id);
    }
    for p in pending.drain(..) {
        p.wait()?;
    }
    for p in chunks.drain(..) {
        p.wait()?;
    }
    store.flush().wait()?;
    store.close()?;
    let mut docs = vec![first_index.context("no index")?];
    docs.extend(&assigned[0]);
    Ok(Generated {
        technician: technicians[0].to_string(),
        peer_id: "dev-0000-0".into(),
        docs,
    })
}

/// Starts `programs.fieldsync` twice on the data under `dir` and measures each start.
async fn measure(
    programs: &Programs,
    dir: &Path,
    generated: &Generated,
    n: usize,
    label: &str,
) -> anyhow::Result<Value> {
    let mut starts = Vec::new();
    let mut token = None;
    for start in ["first", "second"] {
        let server = Server::start(Kind::Fieldsync, programs, dir)?;
        let ready_ms = server.ready_after.as_secs_f64() * 1000.0;
        let rss_ready = server.rss_kib()?;
        let approvals_ms = server.until_approvals(Duration::from_secs(900)).await?;
        if token.is_none() {
            token = Some(server.device_token(&generated.peer_id)?);
        }
        let identity = Identity {
            technician: generated.technician.clone(),
            peer_id: generated.peer_id.clone(),
            token: token.clone(),
        };
        // The first device fetches its index and jobs (a fresh app), then reconnects.
        let mut device = identity.device(
            generated
                .docs
                .iter()
                .map(|d| DeviceDoc::empty(*d))
                .collect(),
        );
        let url = server.ws_url();
        let timeout = Duration::from_secs(300);
        let t = Instant::now();
        let at = servers::run_to_convergence(&mut device, &url, timeout).await?;
        let fetch_ms = at.duration_since(t).as_secs_f64() * 1000.0;
        let mut reconnect = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let at = servers::run_to_convergence(&mut device, &url, timeout).await?;
            reconnect.push(at.duration_since(t).as_secs_f64() * 1000.0);
        }
        let reconnect_ms = crate::median(&mut reconnect).unwrap_or(f64::NAN);
        let rss_settled = server.settled_rss_kib().await?;
        let peak = server.peak_rss_kib()?;
        progress(&format!(
            "cold {n} {label} {start} start: ready {ready_ms:.0} ms (RSS {} MiB), approvals \
             {approvals_ms:.0} ms, first device fetch {fetch_ms:.1} ms, reconnect \
             {reconnect_ms:.1} ms, RSS settled {} MiB, peak {} MiB",
            rss_ready / 1024,
            rss_settled / 1024,
            peak / 1024
        ));
        starts.push(json!({
            "start": start,
            "ready_ms": ready_ms,
            "approvals_ms": approvals_ms,
            "rss_ready_kib": rss_ready,
            "rss_settled_kib": rss_settled,
            "peak_rss_kib": peak,
            "first_fetch_ms": fetch_ms,
            "reconnect_ms": reconnect_ms,
        }));
        // Let the workers finish what they do at start before the stop, so the second
        // start finds what the first one stored: until each reports nothing behind
        // (`fieldsync_worker_behind`; a binary without it is stopped as it is).
        let caught_up = Instant::now();
        for worker in ["approvals", "signer", "desk_follow"] {
            let key = format!("fieldsync_worker_behind{{worker=\"{worker}\"}}");
            while let Some(behind) = server.metric(&key).await {
                if behind == 0.0 || caught_up.elapsed() > Duration::from_secs(900) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let caught_up_ms = server.spawned.elapsed().as_secs_f64() * 1000.0;
        if let Some(s) = starts.last_mut() {
            s["workers_caught_up_ms"] = json!(caught_up_ms);
        }
        drop(server);
    }
    Ok(json!({"starts": starts}))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
