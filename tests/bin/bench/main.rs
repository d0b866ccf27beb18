//! `fieldsync-bench`: the benchmark of issue 7. It measures fieldsync as shipped (the real
//! `fieldsync` binary in its own process, SQLite durability, device tokens) against the
//! reference JavaScript sync server, a bare samod server and the in-process limit, on the same
//! workload in the same run, and writes the results (JSON, a Markdown table, SVG charts).
//!
//! Modes:
//! - `storm`: N devices × M jobs × K offline edits, then every device reconnects at once.
//!   Timed from the first connect until every device has heard the server announce its
//!   heads; the server's stored heads are compared with the devices' afterwards, untimed.
//! - `scale`: the storm at several N (cost against N).
//! - `shards` (issue 17): fieldsync's storm at each shape with the hub split into each of
//!   `--hub-shards` (default 1 and 2), in turn within each run: the rate and the server's CPU
//!   in cores (/proc ticks over the storm) side by side.
//! - `steady`: pairs of devices online on a shared job, one editing at a set rate; latency
//!   of each edit from one to the other.
//! - `idle`: C connected devices doing nothing; server memory per connection.
//! - `history`: one device with J unchanged jobs reconnecting, at several history lengths.
//! - `backlog`: a reconnect storm of many devices with one job each (400 by default), with
//!   the accept backlog at tokio's old 128 and at fieldsync's default; each storm reports
//!   its joins' median and slowest and the kernel's listen overflows (issue 17).
//! - `device-open`: a technician's app opening its store and listing its jobs, at several
//!   job counts, the current path beside the one before issue 17 (`device_open.rs`).
//! - `verify`: head office verifying signed reports and the branch signing them, on one
//!   thread in this process (issue 17; `verify.rs`).
//! - `cold`: a branch with N stored jobs (generated) and its enrolled devices starting up:
//!   time to ready, RSS, the first device's fetch and reconnect (issue 17; `cold.rs`).
//! - `idle-docs`: jobs created at the desk, each fetched once by its device, then idle:
//!   server memory per loaded idle document (issue 17; `idle_docs.rs`).
//!
//! `--smoke` runs everything tiny against fieldsync and the in-process limit (plus the
//! baselines when installed) and fails unless every run converged. See docs/BENCHMARKS.md.

mod client;
mod cold;
mod device_open;
mod idle_docs;
mod inproc;
mod report;
mod servers;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use client::{Device, DeviceDoc, Editor, Probe, SessionPlan};
use servers::{Kind, Programs, Server};
use workload::Shape;

/// Prints a progress line on stderr.
pub fn progress(line: &str) {
    eprintln!("[bench] {line}");
}

/// Set by `--smoke`: the waits that let a server settle (RSS readings, disk after a storm,
/// the start of steady editing) shrink tenfold, so the smoke stays a few seconds.
static SMOKE: AtomicBool = AtomicBool::new(false);

/// A settling wait: `normal`, or a tenth of it in a smoke run.
pub fn settle(normal: Duration) -> Duration {
    if SMOKE.load(Ordering::Relaxed) {
        normal / 10
    } else {
        normal
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync-bench",
    about = "Benchmarks fieldsync against its baselines"
)]
struct Args {
    /// Tiny workload, no output files; fails unless everything converged.
    #[arg(long)]
    smoke: bool,
    /// Storm shapes DEVICESxJOBSxEDITS; the first is also the base of `scale`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50x10x20,50x20x20,200x20x50"
    )]
    shapes: Vec<String>,
    /// Runs of each storm (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Servers to measure (fieldsync, js, samod); the in-process limit always runs.
    #[arg(long, value_delimiter = ',', default_value = "fieldsync,js,samod")]
    targets: Vec<String>,
    /// Servers measured at shapes after the first (samod is slow at large shapes).
    #[arg(long, value_delimiter = ',', default_value = "fieldsync,js")]
    large_targets: Vec<String>,
    /// Shards mode: the hub shard counts to compare (`FIELDSYNC_HUB_SHARDS`).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    hub_shards: Vec<usize>,
    /// Modes to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "storm,scale,steady,idle,join,history,backlog,verify,device-open,cold,idle-docs"
    )]
    modes: Vec<String>,
    /// Device counts of `scale` (jobs and edits from the first shape).
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
    scale_devices: Vec<usize>,
    /// Steady mode: device pairs, edits per second per editing device, seconds.
    #[arg(long, default_value_t = 25)]
    steady_pairs: usize,
    #[arg(long, default_value_t = 2.0)]
    steady_rate: f64,
    #[arg(long, default_value_t = 15.0)]
    steady_secs: f64,
    /// Idle mode: connected devices.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// History mode: jobs of the reconnecting device, and history lengths (changes per job).
    #[arg(long, default_value_t = 200)]
    history_jobs: usize,
    #[arg(long, value_delimiter = ',', default_value = "10,100,500")]
    history: Vec<usize>,
    /// Join mode: devices connected with their jobs each (the server's load), then this many
    /// more devices join one at a time.
    #[arg(long, default_value_t = 200)]
    join_devices: usize,
    #[arg(long, default_value_t = 20)]
    join_jobs: usize,
    #[arg(long, default_value_t = 11)]
    join_extra: usize,
    /// Backlog mode: devices in the storm, and the accept backlogs to compare (0: the
    /// server's default).
    #[arg(long, default_value_t = 400)]
    backlog_devices: usize,
    #[arg(long, value_delimiter = ',', default_value = "128,0")]
    backlogs: Vec<u32>,
    /// Verify mode: signed reports, their jobs' history (changes each) and the branches
    /// enrolled at head office.
    #[arg(long, default_value_t = 2_000)]
    verify_reports: usize,
    #[arg(long, default_value_t = 30)]
    verify_history: usize,
    #[arg(long, default_value_t = 200)]
    verify_branches: usize,
    /// Verify mode: the name of this build in the table; rows of other builds in `--merge`
    /// are kept (the before and after of a change, measured by two builds in turn).
    #[arg(long, default_value = "this build")]
    verify_build: String,
    /// Device-open mode: jobs in the device's store, edits per job, runs of each path.
    #[arg(long, value_delimiter = ',', default_value = "200,2000")]
    device_open_jobs: Vec<usize>,
    #[arg(long, default_value_t = 50)]
    device_open_edits: usize,
    #[arg(long, default_value_t = 7)]
    device_open_runs: usize,
    /// Cold mode: stored jobs at each point, enrolled devices, the first device's own jobs.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,100000")]
    cold_stored: Vec<usize>,
    #[arg(long, default_value_t = 1000)]
    cold_devices: usize,
    #[arg(long, default_value_t = 20)]
    cold_first_jobs: usize,
    /// Idle-docs mode: devices and jobs each (jobs created at the desk, each fetched once by
    /// its device, then idle).
    #[arg(long, default_value_t = 200)]
    idle_docs_devices: usize,
    #[arg(long, default_value_t = 20)]
    idle_docs_jobs: usize,
    /// An older fieldsync (main's) that `cold` and `idle-docs` measure beside this one.
    #[arg(long)]
    before_bin: Option<PathBuf>,
    /// Where results go: DIR/bench-results/*.json, DIR/*.svg, DIR/BENCHMARKS.md.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The fieldsync binary (default: next to this one).
    #[arg(long)]
    fieldsync_bin: Option<PathBuf>,
    /// fieldsync built with `--features fieldsync-server/unchecked-writes`, the target
    /// `fieldsync-unchecked` (default: target/unchecked/release/fieldsync, where scripts/bench
    /// builds it).
    #[arg(long)]
    fieldsync_unchecked_bin: Option<PathBuf>,
    /// The samod server (default: bench/samod-server/target/release/samod-bench-server).
    #[arg(long)]
    samod_bin: Option<PathBuf>,
    /// The JavaScript server's folder (default: bench/js).
    #[arg(long)]
    js_dir: Option<PathBuf>,
    /// Keep the results of an earlier run (its JSON) except what this run measures again
    /// (its storm shapes and modes): to redo part of a run.
    #[arg(long)]
    merge: Option<PathBuf>,
    /// Give up on one storm after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

fn parse_shape(s: &str) -> anyhow::Result<Shape> {
    let parts: Vec<usize> = s
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("shape {s:?}: want DEVICESxJOBSxEDITS"))?;
    let [devices, jobs, edits] = parts[..] else {
        bail!("shape {s:?}: want DEVICESxJOBSxEDITS");
    };
    ensure!(devices > 0 && jobs > 0 && edits > 0, "shape {s:?}: zero");
    Ok(Shape {
        devices,
        jobs,
        edits,
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn programs(args: &Args) -> anyhow::Result<Programs> {
    let fieldsync = match &args.fieldsync_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("fieldsync"),
    };
    let root = repo_root();
    Ok(Programs {
        fieldsync,
        fieldsync_unchecked: args
            .fieldsync_unchecked_bin
            .clone()
            .unwrap_or(root.join("target/unchecked/release/fieldsync")),
        js_dir: args.js_dir.clone().unwrap_or(root.join("bench/js")),
        samod: args
            .samod_bin
            .clone()
            .unwrap_or(root.join("bench/samod-server/target/release/samod-bench-server")),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        SMOKE.store(true, Ordering::Relaxed);
        args.shapes = vec!["3x2x4".into()];
        args.runs = 1;
        args.scale_devices = vec![2, 3];
        args.steady_pairs = 2;
        args.steady_rate = 5.0;
        args.steady_secs = 0.5;
        args.idle = 20;
        args.history_jobs = 5;
        args.history = vec![2, 6];
        args.join_devices = 3;
        args.join_jobs = 2;
        args.join_extra = 3;
        args.backlog_devices = 4;
        args.verify_reports = 5;
        args.verify_history = 4;
        args.verify_branches = 3;
        args.device_open_jobs = vec![3, 6];
        args.device_open_edits = 4;
        args.device_open_runs = 1;
        args.cold_stored = vec![0, 30];
        args.idle_docs_devices = 3;
        args.idle_docs_jobs = 2;
        args.cold_devices = 4;
        args.cold_first_jobs = 2;
        args.timeout_secs = 60;
    }
    let shapes: Vec<Shape> = args
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<anyhow::Result<_>>()?;
    let programs = programs(&args)?;
    ensure!(
        programs.fieldsync.exists(),
        "{} not found: run `cargo build --release --bin fieldsync` first (or pass --fieldsync-bin)",
        programs.fieldsync.display()
    );
    let mut targets = Vec::new();
    for t in &args.targets {
        let kind = Kind::parse(t).with_context(|| format!("unknown target {t:?}"))?;
        if programs.available(kind) {
            targets.push(kind);
        } else if args.smoke {
            progress(&format!("smoke: {} is not installed; skipped", kind.name()));
        } else {
            bail!(
                "{} is not installed (scripts/bench installs it; or leave it out of --targets)",
                kind.name()
            );
        }
    }
    let large: Vec<Kind> = targets
        .iter()
        .copied()
        .filter(|k| args.large_targets.iter().any(|t| t == k.name()))
        .collect();
    let modes = |m: &str| args.modes.iter().any(|x| x == m);
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut results = report::Results::new(&args.smoke, &targets);
    if let Some(path) = &args.merge {
        let earlier: Value = serde_json::from_str(
            &std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
        )?;
        let mut again: Vec<String> = Vec::new();
        if modes("storm") {
            again.extend(shapes.iter().map(Shape::label));
        }
        if modes("scale") {
            again.extend(args.scale_devices.iter().map(|&n| {
                Shape {
                    devices: n,
                    ..shapes[0]
                }
                .label()
            }));
        }
        results.merge(&earlier, &again, &args.modes);
        if modes("verify") {
            results.keep_other_builds("verify", &earlier, &args.verify_build);
        }
    }

    // Storms: the first shape with every target, later shapes with the large targets.
    if modes("storm") {
        for (i, shape) in shapes.iter().enumerate() {
            let kinds = if i == 0 { &targets } else { &large };
            for run in 0..args.runs {
                let inp = inproc::run(*shape)?;
                progress(&format!(
                    "{} run {}: in-process sync {:.2}s, apply_changes {:.3}s, load_incremental {:.3}s",
                    shape.label(),
                    run + 1,
                    inp.sync_secs,
                    inp.apply_secs,
                    inp.load_incremental_secs
                ));
                results.inproc(*shape, run, inp);
                for kind in kinds {
                    let r = storm(*kind, *shape, &programs, timeout, &[]).await;
                    match r {
                        Ok(r) => results.storm(*kind, *shape, run, r),
                        Err(e) if args.smoke => return Err(e),
                        Err(e) => {
                            progress(&format!("{} {}: FAILED: {e:#}", kind.name(), shape.label()));
                            results.storm_failed(*kind, *shape, run, &format!("{e:#}"));
                        }
                    }
                }
            }
        }
    }

    if modes("scale") {
        let base = shapes[0];
        for &n in &args.scale_devices {
            let shape = Shape { devices: n, ..base };
            if modes("storm") && shape == base {
                continue; // measured above
            }
            results.inproc(shape, 0, inproc::run(shape)?);
            // Above the base shape only the large targets (samod takes minutes there).
            let kinds = if n > base.devices { &large } else { &targets };
            for kind in kinds {
                match storm(*kind, shape, &programs, timeout, &[]).await {
                    Ok(r) => results.storm(*kind, shape, 0, r),
                    Err(e) if args.smoke => return Err(e),
                    Err(e) => {
                        progress(&format!("{} {}: FAILED: {e:#}", kind.name(), shape.label()));
                        results.storm_failed(*kind, shape, 0, &format!("{e:#}"));
                    }
                }
            }
        }
    }

    if modes("shards") && targets.contains(&Kind::Fieldsync) {
        for shape in &shapes {
            for run in 0..args.runs {
                for &count in &args.hub_shards {
                    let env = vec![("FIELDSYNC_HUB_SHARDS", count.to_string())];
                    let r = storm(Kind::Fieldsync, *shape, &programs, timeout, &env)
                        .await
                        .map(|mut v| {
                            progress(&format!(
                                "shards {} run {}: {count} shard(s): {:.0} changes/s, server \
                                 {:.2} cores (hub {:.2}); load {}",
                                shape.label(),
                                run + 1,
                                v["changes_per_sec"].as_f64().unwrap_or(0.0),
                                v["server_cpu_cores"].as_f64().unwrap_or(0.0),
                                v["hub_cpu_cores"].as_f64().unwrap_or(0.0),
                                v["loadavg"].as_str().unwrap_or("?"),
                            ));
                            v["hub_shards"] = json!(count);
                            v["shape"] = json!(shape.label());
                            v["run"] = json!(run);
                            v
                        });
                    results.record("shards", Kind::Fieldsync, r, args.smoke)?;
                }
            }
        }
    }
    if modes("steady") {
        for kind in &targets {
            let r = steady(*kind, &programs, &args).await;
            results.record("steady", *kind, r, args.smoke)?;
        }
    }
    if modes("idle") {
        for kind in &targets {
            let r = idle(*kind, &programs, args.idle).await;
            results.record("idle", *kind, r, args.smoke)?;
        }
    }
    if modes("join") {
        for kind in &targets {
            let r = join(*kind, &programs, &args).await;
            results.record("join", *kind, r, args.smoke)?;
        }
    }
    if modes("backlog") && targets.contains(&Kind::Fieldsync) {
        let shape = Shape {
            devices: args.backlog_devices,
            jobs: 1,
            edits: 1,
        };
        for run in 0..args.runs {
            for &backlog in &args.backlogs {
                let env: Vec<(&str, String)> = if backlog == 0 {
                    Vec::new()
                } else {
                    vec![("FIELDSYNC_ACCEPT_BACKLOG", backlog.to_string())]
                };
                let r = storm(Kind::Fieldsync, shape, &programs, timeout, &env)
                    .await
                    .map(|mut v| {
                        v["backlog"] = if backlog == 0 {
                            json!("default")
                        } else {
                            json!(backlog)
                        };
                        v["run"] = json!(run);
                        v["devices"] = json!(shape.devices);
                        v
                    });
                results.record("backlog", Kind::Fieldsync, r, args.smoke)?;
            }
        }
    }
    if modes("verify") {
        let r = verify::run(verify::Plan {
            reports: args.verify_reports,
            runs: args.runs,
            branches: args.verify_branches,
            history: args.verify_history,
        })
        .map(|mut v| {
            v["build"] = json!(args.verify_build);
            v
        });
        results.record("verify", Kind::Fieldsync, r, args.smoke)?;
    }
    if modes("history") {
        // The large targets only: the history is uploaded first (200 jobs × 500 changes
        // would take samod about six minutes).
        for kind in &large {
            let r = history(*kind, &programs, args.history_jobs, &args.history).await;
            results.record("history", *kind, r, args.smoke)?;
        }
    }

    if modes("device-open") {
        let r = device_open::run(
            &args.device_open_jobs,
            args.device_open_edits,
            args.device_open_runs,
        )
        .await;
        results.record("device-open", Kind::Fieldsync, r, args.smoke)?;
    }

    if modes("cold") && targets.contains(&Kind::Fieldsync) {
        let r = cold::cold(
            &programs,
            args.before_bin.as_ref(),
            &args.cold_stored,
            args.cold_devices,
            args.cold_first_jobs,
        )
        .await;
        results.record("cold", Kind::Fieldsync, r, args.smoke)?;
    }

    if modes("idle-docs") && targets.contains(&Kind::Fieldsync) {
        let r = idle_docs::idle_docs(
            &programs,
            args.before_bin.as_ref(),
            args.idle_docs_devices,
            args.idle_docs_jobs,
            // The smoke does not wait the default 30 s for documents to go dormant.
            args.smoke.then_some(1),
        )
        .await;
        results.record("idle-docs", Kind::Fieldsync, r, args.smoke)?;
    }

    let summary = results.finish(&shapes)?;
    println!("{}", report::table(&summary));
    if let Some(out) = &args.out {
        report::write(out, &summary)?;
        progress(&format!("results written under {}", out.display()));
    }
    if args.smoke {
        progress("smoke: every run converged and matched the server's heads");
    }
    Ok(())
}

/// One reconnect storm against a fresh server.
async fn storm(
    kind: Kind,
    shape: Shape,
    programs: &Programs,
    timeout: Duration,
    env: &[(&str, String)],
) -> anyhow::Result<Value> {
    let name = kind.name();
    let label = shape.label();
    progress(&format!("{name} {label}: setting up"));
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(kind, programs, dir.path(), env)?;
    let url = server.ws_url();
    let ids = server.identities(shape.devices, 1).await?;
    let technicians: Vec<String> = ids.iter().map(|i| i.technician.clone()).collect();
    let jobs = server.create_jobs(&technicians, shape.jobs).await?;
    let mut devices: Vec<Device> = ids
        .iter()
        .zip(jobs)
        .map(|(id, docs)| id.device(docs.into_iter().map(DeviceDoc::empty).collect()))
        .collect();
    fetch_all(&mut devices, &url, timeout).await?;
    progress(&format!(
        "{name} {label}: devices fetched their jobs; editing offline"
    ));
    for device in &mut devices {
        for d in &mut device.docs {
            let doc = std::mem::take(&mut d.doc);
            d.doc = workload::edits(doc, 0, shape.edits)?;
        }
    }
    let rss_before = server.settled_rss_kib().await?;
    let disk_before = server.disk_bytes();

    // The storm.
    progress(&format!("{name} {label}: reconnect storm"));
    let overflows_before = listen_overflows();
    let cpu_before = server.cpu_ticks().ok();
    let (stop_tx, stop) = watch::channel(false);
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut converged = Vec::new();
    for mut device in devices {
        let (tx, rx) = oneshot::channel();
        converged.push(rx);
        let plan = SessionPlan {
            url: url.clone(),
            converged: Some(tx),
            stop: stop.clone(),
            editor: None,
            watcher: None,
            timeout,
        };
        tasks.push(tokio::spawn(async move {
            let r = device.session(plan).await;
            (device, r)
        }));
    }
    let watcher = {
        let done = Arc::clone(&done);
        let total = tasks.len();
        let label = label.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                progress(&format!(
                    "{name} {label}: {}/{total} devices converged after {:.1}s",
                    done.load(Ordering::Relaxed),
                    start.elapsed().as_secs_f64()
                ));
            }
        })
    };
    let mut last = start;
    let mut failure = None;
    let mut joins_ms = Vec::new();
    for rx in converged {
        match rx.await {
            Ok(at) => {
                last = last.max(at);
                joins_ms.push(at.duration_since(start).as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => failure = Some("a device session ended before convergence"),
        }
    }
    watcher.abort();
    // The server's CPU over the storm, in cores (its whole process, and its hub threads).
    let storm_cpu =
        cpu_before
            .zip(server.cpu_ticks().ok())
            .map(|((total0, hub0), (total1, hub1))| {
                let wall = start.elapsed().as_secs_f64().max(1e-9);
                let cores = |ticks: u64| ticks as f64 / servers::CLK_TCK / wall;
                (cores(total1 - total0), cores(hub1.saturating_sub(hub0)))
            });
    let storm_secs = last.duration_since(start).as_secs_f64();
    let overflows = match (overflows_before, listen_overflows()) {
        (Some(a), Some(b)) => json!(b.saturating_sub(a)),
        _ => Value::Null,
    };
    joins_ms.sort_by(f64::total_cmp);
    let rss_after = server.rss_kib()?;
    let peak = server.peak_rss_kib()?;
    let _ = stop_tx.send(true);
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (device, r) = task.await?;
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
        devices.push(device);
    }
    if let Some(f) = failure {
        bail!("{f}: {}", errors.join("; "));
    }
    ensure!(errors.is_empty(), "sessions failed: {}", errors.join("; "));

    // Verification, untimed: the server holds exactly what every device holds.
    let mut ids = Vec::new();
    let mut expected = Vec::new();
    for device in &mut devices {
        for d in &mut device.docs {
            ids.push(d.id);
            expected.push(d.heads());
        }
    }
    let held = server.heads(&ids).await?;
    let mismatched = held.iter().zip(&expected).filter(|(a, b)| a != b).count();
    ensure!(
        mismatched == 0,
        "{name}: {mismatched} of {} documents differ from the server's after the storm",
        ids.len()
    );
    tokio::time::sleep(settle(Duration::from_millis(1500))).await;
    let disk_after = server.disk_bytes();
    let changes = shape.changes();
    progress(&format!(
        "{name} {label}: {storm_secs:.2}s, {:.0} changes/s, RSS {} MiB; verified {} documents",
        changes as f64 / storm_secs,
        rss_after / 1024,
        ids.len()
    ));
    Ok(json!({
        "storm_secs": storm_secs,
        "changes": changes,
        "changes_per_sec": changes as f64 / storm_secs,
        "rss_before_storm_kib": rss_before,
        "rss_after_storm_kib": rss_after,
        "peak_rss_kib": peak,
        "disk_before_bytes": disk_before,
        "disk_after_bytes": disk_after,
        "disk_bytes_per_change": if kind == Kind::Samod { Value::Null } else {
            json!((disk_after.saturating_sub(disk_before)) as f64 / changes as f64)
        },
        "documents_verified": ids.len(),
        "device_converged_ms_p50": percentile(&joins_ms, 0.5),
        "device_converged_ms_max": joins_ms.last().copied().unwrap_or(0.0),
        "listen_overflows": overflows,
        "server_cpu_cores": storm_cpu.map(|c| c.0),
        "hub_cpu_cores": storm_cpu.map(|c| c.1),
        "loadavg": std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.trim().to_owned()),
    }))
}

/// The kernel's count of connections dropped because a listen queue was full (TcpExt
/// ListenOverflows in /proc/net/netstat; machine-wide, so read on a quiet machine).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

/// Every device fetches its jobs (at most 16 at a time), then disconnects.
async fn fetch_all(devices: &mut [Device], url: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut fetches = futures_util::stream::iter(
        devices
            .iter_mut()
            .map(|d| servers::run_to_convergence(d, url, timeout)),
    )
    .buffer_unordered(16);
    while let Some(r) = fetches.next().await {
        r?;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Pairs of devices on one job each; one edits at a set rate, the other watches.
async fn steady(kind: Kind, programs: &Programs, args: &Args) -> anyhow::Result<Value> {
    let name = kind.name();
    progress(&format!(
        "{name} steady: {} pairs, {}/s for {}s",
        args.steady_pairs, args.steady_rate, args.steady_secs
    ));
    let dir = tempfile::tempdir()?;
    let server = Server::start(kind, programs, dir.path())?;
    let url = server.ws_url();
    let ids = server.identities(args.steady_pairs, 2).await?;
    let technicians: Vec<String> = (0..args.steady_pairs)
        .map(|p| ids[2 * p].technician.clone())
        .collect();
    let jobs = server.create_jobs(&technicians, 1).await?;
    let mut devices: Vec<Device> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| id.device(jobs[i / 2].iter().map(|d| DeviceDoc::empty(*d)).collect()))
        .collect();
    let timeout = Duration::from_secs(120);
    fetch_all(&mut devices, &url, timeout).await?;
    let (stop_tx, stop) = watch::channel(false);
    let start_at = Instant::now() + settle(Duration::from_secs(2));
    let until = start_at + Duration::from_secs_f64(args.steady_secs);
    let every = Duration::from_secs_f64(1.0 / args.steady_rate);
    let probes: Vec<Arc<Probe>> = (0..args.steady_pairs)
        .map(|_| Arc::new(Probe::default()))
        .collect();
    let mut tasks = Vec::new();
    for (i, mut device) in devices.into_iter().enumerate() {
        let probe = Arc::clone(&probes[i / 2]);
        let editing = i % 2 == 0;
        let plan = SessionPlan {
            url: url.clone(),
            converged: None,
            stop: stop.clone(),
            editor: editing.then(|| Editor {
                every,
                start_at,
                until,
                probe: Arc::clone(&probe),
                next_edit: 0,
            }),
            watcher: (!editing).then_some(probe),
            timeout: timeout + Duration::from_secs_f64(args.steady_secs),
        };
        tasks.push(tokio::spawn(async move { device.session(plan).await }));
    }
    // Until the last edit has arrived (at most 30 s after the last was made).
    tokio::time::sleep_until(until.into()).await;
    let drain = Instant::now() + Duration::from_secs(30);
    while Instant::now() < drain && probes.iter().any(|p| p.outstanding() > 0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await??;
    }
    let mut samples: Vec<f64> = probes.iter().flat_map(|p| p.samples()).collect();
    let lost: usize = probes.iter().map(|p| p.outstanding()).sum();
    samples.sort_by(f64::total_cmp);
    ensure!(!samples.is_empty(), "{name} steady: no edit arrived");
    ensure!(lost == 0, "{name} steady: {lost} edits never arrived");
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    progress(&format!(
        "{name} steady: p50 {p50:.2} ms, p99 {p99:.2} ms over {} edits",
        samples.len()
    ));
    Ok(json!({
        "pairs": args.steady_pairs,
        "rate_per_sec": args.steady_rate,
        "secs": args.steady_secs,
        "edits": samples.len(),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": samples.last(),
    }))
}

/// C devices connected and doing nothing: server memory per connection.
async fn idle(kind: Kind, programs: &Programs, count: usize) -> anyhow::Result<Value> {
    let name = kind.name();
    progress(&format!("{name} idle: {count} connections"));
    let dir = tempfile::tempdir()?;
    let server = Server::start(kind, programs, dir.path())?;
    let url = server.ws_url();
    // One enrolled device; each idle connection joins as one of its apps (`dev:app-N`), which
    // fieldsync allows, so enrolment does not dominate the setup.
    let ids = server.identities(1, 1).await?;
    let base = server.settled_rss_kib().await?;
    let (stop_tx, stop) = watch::channel(false);
    let mut joins = futures_util::stream::iter((0..count).map(|i| {
        let url = url.clone();
        let token = ids[0].token.clone();
        let peer = format!("{}:idle-{i}", ids[0].peer_id);
        async move { client::join(&url, token.as_deref(), &peer, None).await }
    }))
    .buffer_unordered(32);
    let mut holders = Vec::new();
    while let Some(r) = joins.next().await {
        let (ws, _) = r?;
        holders.push(tokio::spawn(client::hold(ws, stop.clone())));
        if holders.len() % 1000 == 0 {
            progress(&format!("{name} idle: {} connected", holders.len()));
        }
    }
    let loaded = server.settled_rss_kib().await?;
    let _ = stop_tx.send(true);
    for h in holders {
        h.await??;
    }
    let per = (loaded.saturating_sub(base)) as f64 / count as f64;
    progress(&format!("{name} idle: {per:.1} KiB per connection"));
    Ok(json!({
        "connections": count,
        "rss_base_kib": base,
        "rss_connected_kib": loaded,
        "kib_per_connection": per,
    }))
}

/// A loaded server (`join_devices` connected devices holding `join_jobs` jobs each), then
/// `join_extra` more devices joining one at a time and fetching their own jobs. Also the
/// server's memory per loaded document (created, before any device connects) and per
/// connected device with its documents' sessions.
async fn join(kind: Kind, programs: &Programs, args: &Args) -> anyhow::Result<Value> {
    let name = kind.name();
    let (devices, jobs, extra) = (args.join_devices, args.join_jobs, args.join_extra);
    progress(&format!(
        "{name} join: {devices} devices × {jobs} jobs connected, then {extra} more"
    ));
    let dir = tempfile::tempdir()?;
    let server = Server::start(kind, programs, dir.path())?;
    let url = server.ws_url();
    let ids = server.identities(devices + extra, 1).await?;
    let rss_base = server.settled_rss_kib().await?;
    let technicians: Vec<String> = ids.iter().map(|i| i.technician.clone()).collect();
    let docs = server.create_jobs(&technicians, jobs).await?;
    let rss_documents = server.settled_rss_kib().await?;
    let loaded = server.metric("fieldsync_loaded_documents").await;
    let mut connected: Vec<Device> = ids
        .iter()
        .zip(docs)
        .map(|(id, docs)| id.device(docs.into_iter().map(DeviceDoc::empty).collect()))
        .collect();
    let newcomers = connected.split_off(devices);
    progress(&format!(
        "{name} join: {} jobs created; connecting",
        devices * jobs
    ));

    let timeout = Duration::from_secs(600);
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut converged = Vec::new();
    for mut device in connected {
        let (tx, rx) = oneshot::channel();
        converged.push(rx);
        let plan = SessionPlan {
            url: url.clone(),
            converged: Some(tx),
            stop: stop.clone(),
            editor: None,
            watcher: None,
            timeout,
        };
        tasks.push(tokio::spawn(async move { device.session(plan).await }));
    }
    for rx in converged {
        rx.await
            .context("a device's session ended before it had its jobs")?;
    }
    let rss_connected = server.settled_rss_kib().await?;
    progress(&format!(
        "{name} join: {devices} devices connected and synced"
    ));

    let (mut handshake_ms, mut fetch_ms) = (Vec::new(), Vec::new());
    for mut device in newcomers {
        let start = Instant::now();
        let peer = format!("{}:hello", device.peer_id);
        let (mut ws, _) = client::join(&url, device.token.as_deref(), &peer, None).await?;
        handshake_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = ws.close(None).await;
        let start = Instant::now();
        let at = servers::run_to_convergence(&mut device, &url, timeout).await?;
        fetch_ms.push(at.duration_since(start).as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await??;
    }
    handshake_ms.sort_by(f64::total_cmp);
    fetch_ms.sort_by(f64::total_cmp);
    let documents = devices * jobs;
    let per_document = rss_documents.saturating_sub(rss_base) as f64 / documents as f64;
    let per_device = rss_connected.saturating_sub(rss_documents) as f64 / devices as f64;
    let (join50, fetch50) = (percentile(&handshake_ms, 0.5), percentile(&fetch_ms, 0.5));
    progress(&format!(
        "{name} join: one more device joins in {join50:.2} ms and has its {jobs} jobs in \
         {fetch50:.2} ms (medians); {per_document:.1} KiB per loaded document, \
         {per_device:.1} KiB per connected device with its sessions"
    ));
    Ok(json!({
        "devices": devices,
        "jobs_per_device": jobs,
        "documents": documents,
        "extra": extra,
        "join_ms_p50": join50,
        "join_ms_max": handshake_ms.last(),
        "fetch_ms_p50": fetch50,
        "fetch_ms_max": fetch_ms.last(),
        "join_samples_ms": handshake_ms,
        "fetch_samples_ms": fetch_ms,
        "rss_base_kib": rss_base,
        "rss_documents_kib": rss_documents,
        "rss_connected_kib": rss_connected,
        "kib_per_loaded_document": per_document,
        "kib_per_connected_device": per_device,
        "server_loaded_documents": loaded,
    }))
}

/// One device with `jobs` unchanged jobs reconnecting, at each history length.
async fn history(
    kind: Kind,
    programs: &Programs,
    jobs: usize,
    lengths: &[usize],
) -> anyhow::Result<Value> {
    let name = kind.name();
    progress(&format!("{name} history: {jobs} jobs, lengths {lengths:?}"));
    let dir = tempfile::tempdir()?;
    let server = Server::start(kind, programs, dir.path())?;
    let url = server.ws_url();
    let ids = server.identities(1, 1).await?;
    let docs = server
        .create_jobs(&[ids[0].technician.clone()], jobs)
        .await?;
    let mut device = ids[0].device(docs[0].iter().map(|d| DeviceDoc::empty(*d)).collect());
    let timeout = Duration::from_secs(600);
    servers::run_to_convergence(&mut device, &url, timeout).await?;
    progress(&format!("{name} history: fetched"));
    let mut edits_done = 0;
    let mut points = Vec::new();
    for &length in lengths {
        // A length that fails (a server that dies under the upload) ends the series; the
        // lengths before it stand.
        let point = async {
            let add = length.saturating_sub(edits_done);
            for d in &mut device.docs {
                let doc = std::mem::take(&mut d.doc);
                d.doc = workload::edits(doc, edits_done, add)?;
            }
            edits_done += add;
            // Online, untimed: the server gets the history.
            servers::run_to_convergence(&mut device, &url, timeout).await?;
            // The reconnects are timed on an idle server: right after an upload of this size
            // (200 jobs × up to 2,000 changes) it is still reading the changed jobs for
            // several seconds, and the first reconnects would time that work.
            let busy = server.wait_idle(Duration::from_secs(120)).await?;
            progress(&format!(
                "{name} history {length}: synced, the server busy {:.1} s after",
                busy.as_secs_f64()
            ));
            let mut times = Vec::new();
            let samples = std::env::var("FIELDSYNC_BENCH_HISTORY_SAMPLES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(5);
            // A pause before each reconnect (ms): with the server's `document_dormant` shorter
            // than it, every reconnect wakes dormant documents (issue 17).
            let pause = std::env::var("FIELDSYNC_BENCH_HISTORY_PAUSE_MS")
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Duration::from_millis);
            for _ in 0..samples {
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
                let start = Instant::now();
                let (stop_tx, stop) = watch::channel(false);
                let (tx, rx) = oneshot::channel();
                let plan = SessionPlan {
                    url: url.clone(),
                    converged: Some(tx),
                    stop,
                    editor: None,
                    watcher: None,
                    timeout,
                };
                let session = device.session(plan);
                tokio::pin!(session);
                let at = tokio::select! {
                    r = &mut session => { r?; bail!("session ended early"); }
                    at = rx => at?,
                };
                times.push(at.duration_since(start).as_secs_f64() * 1000.0);
                let _ = stop_tx.send(true);
                session.await?;
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            progress(&format!(
                "{name} history {length}: reconnect with {jobs} unchanged jobs {median:.1} ms"
            ));
            // Memory with the history loaded and the device gone (issue 17: the loaded-
            // document limit's worst case is a big job after a busy session).
            let memory = idle_memory(&server).await;
            anyhow::Ok(
                json!({"history": length, "reconnect_ms": median, "samples_ms": times,
                "memory": memory, "busy_after_sync_s": busy.as_secs_f64()}),
            )
        }
        .await;
        match point {
            Ok(p) => points.push(p),
            Err(e) => {
                progress(&format!("{name} history {length}: FAILED: {e:#}"));
                points.push(json!({"history": length, "error": format!("{e:#}")}));
                break;
            }
        }
    }
    if SMOKE.load(Ordering::Relaxed)
        && let Some(e) = points.iter().find_map(|p| p["error"].as_str())
    {
        bail!("{name} history: {e}");
    }
    Ok(json!({"jobs": jobs, "points": points}))
}

/// fieldsync's memory once idle (issue 17): RSS, the heap in use as of the hub's last
/// release of free memory, and the documents loaded; null for the baselines.
async fn idle_memory(server: &Server) -> Value {
    if !server.kind.is_fieldsync() {
        return Value::Null;
    }
    // The hub gives free memory back on its first quiet tick (1 s).
    tokio::time::sleep(settle(Duration::from_secs(3))).await;
    let rss = server.settled_rss_kib().await.ok();
    let heap = server.metric("fieldsync_heap_in_use_bytes").await;
    let loaded = server.metric("fieldsync_loaded_documents").await;
    // What the byte budget (`limits.max_document_memory_mb`) counts them for; absent from
    // builds before it.
    let counted = server.metric("fieldsync_document_memory_bytes").await;
    progress(&format!(
        "memory idle: RSS {} MiB, heap in use {} MiB, {} documents loaded, counted {} MiB",
        rss.unwrap_or(0) / 1024,
        heap.unwrap_or(0.0) as u64 / (1 << 20),
        loaded.unwrap_or(0.0),
        counted.unwrap_or(0.0) as u64 / (1 << 20)
    ));
    json!({
        "rss_kib": rss,
        "heap_in_use_bytes": heap,
        "loaded_documents": loaded,
        "document_memory_bytes": counted,
    })
}

/// Median of finite values.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    (!values.is_empty()).then(|| values[values.len() / 2])
}

/// Groups by key, keeping insertion order within groups.
pub fn group<K: Ord, V>(items: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, Vec<V>> {
    let mut map: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in items {
        map.entry(k).or_default().push(v);
    }
    map
}
