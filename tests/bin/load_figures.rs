//! `load-figures` (issue 19): the first sync after a restart against the second, before and
//! after, in one run. Not a test: timing belongs in benchmarks.
//!
//! Two data directories get the same work from the real `fieldsync` binary: devices (client
//! SDK, their own device tokens) edit their jobs through the server until each job holds
//! `--changes` changes. One server runs as before issue 19 (`FIELDSYNC_BASELINE=issue-19`:
//! chunk-by-chunk loads, no compaction by the storage writer, SQLite's own checkpoints), the
//! other as built. Then, `--rounds` times and alternating between the two, the server is
//! killed and restarted, a fresh client fetches every job (the cold fetch: the server loads
//! them from SQLite) and a second fresh client right after (the warm fetch: they are in
//! memory), with the wall time and the server's CPU time of each. Last, in this process, each
//! document's stored chunks are loaded chunk by chunk, in one `load` of the chunks
//! concatenated (ours), and by plain `automerge::Automerge::load` of the same bytes.
//! Medians throughout. Prints JSON on stdout, a summary on stderr.
//!
//! Run: `cargo build --release --bin fieldsync --bin load-figures &&
//! target/release/load-figures` (results in docs/BENCHMARKS.md, "Cold load").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::{Automerge, ChangeHash};
use clap::Parser;
use fieldsync_client::{ConnectOptions, SyncClient};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::stored;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{ServerProcess, run_cli, sample_job_body};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "load-figures")]
struct Args {
    /// Jobs (documents) on the server.
    #[arg(long, default_value_t = 50)]
    jobs: usize,
    /// Changes made to each job by its device.
    #[arg(long, default_value_t = 750)]
    changes: usize,
    /// Devices editing at once (jobs are spread over them).
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// A device's pause between two edits, in milliseconds.
    #[arg(long, default_value_t = 5)]
    gap_ms: u64,
    /// Restarts measured per mode.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The `fieldsync` binary (default: the one next to this program).
    #[arg(long, env = "FIELDSYNC_BIN")]
    fieldsync: Option<PathBuf>,
    /// Record the server with `perf record -g` during the first cold fetch of each mode,
    /// into DIR/<mode>.perf (for `perf report -i`).
    #[arg(long)]
    perf: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Baseline,
    Current,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "before",
            Mode::Current => "after",
        }
    }

    fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Mode::Baseline => vec![("FIELDSYNC_BASELINE", "issue-19")],
            Mode::Current => vec![],
        }
    }
}

/// One server's data and what its jobs hold.
struct Site {
    mode: Mode,
    data: PathBuf,
    jobs: Vec<(DocumentId, Vec<ChangeHash>)>,
    desk: String,
}

fn binary(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = arg {
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("exe dir")?.join("fieldsync");
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release --bin fieldsync` first",
            bin.display()
        );
    }
    Ok(bin)
}

fn start(bin: &Path, site: &Site) -> anyhow::Result<ServerProcess> {
    let env = site.mode.env();
    ServerProcess::start_at(
        bin,
        &site.data,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        &[],
        &env,
    )
}

/// The server's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks / 100.0)
}

async fn client(
    server: &ServerProcess,
    token: &str,
    peer: &str,
    dir: &Path,
) -> anyhow::Result<SyncClient> {
    let store = Arc::new(Store::open(
        dir.join(format!("{peer}.sqlite")),
        StoreConfig::default(),
    )?);
    let options = ConnectOptions {
        peer_id: peer.to_owned(),
        storage_id: Some(format!("store-{peer}")),
        max_frame_bytes: 16 << 20,
    };
    Ok(SyncClient::connect(&server.ws_url(), token, options, store).await?)
}

/// Makes the jobs and has the devices edit them; returns each job's heads.
async fn generate(bin: &Path, args: &Args, mode: Mode, root: &Path) -> anyhow::Result<Site> {
    let data = root.join(mode.name());
    let mut site = Site {
        mode,
        data: data.clone(),
        jobs: Vec::new(),
        desk: String::new(),
    };
    let server = start(bin, &site)?;
    let cli = |a: &[&str]| run_cli(bin, &data, a);
    site.desk = cli(&["desk", "token", "--role", "manager", "--ttl", "24h"])?;
    let http = reqwest::Client::new();
    let mut per_device: Vec<Vec<DocumentId>> = vec![Vec::new(); args.devices];
    for i in 0..args.jobs {
        let tech = format!("tech-{}", i % args.devices);
        let body: Value = http
            .post(server.http_url("/api/jobs"))
            .bearer_auth(&site.desk)
            .json(&sample_job_body(&tech))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let url = body["url"].as_str().context("job url")?;
        per_device[i % args.devices].push(DocumentId::from_url(url)?);
    }
    let clients_dir = root.join(format!("{}-devices", mode.name()));
    let mut work = Vec::new();
    for (d, jobs) in per_device.into_iter().enumerate() {
        let enrolled: Value = serde_json::from_str(&cli(&[
            "device",
            "enroll",
            "--technician",
            &format!("tech-{d}"),
        ])?)?;
        let device = enrolled["device_id"]
            .as_str()
            .context("enroll printed no device_id")?
            .to_owned();
        let token = cli(&["device", "token", "--device", &device, "--ttl", "24h"])?;
        let c = client(&server, &token, &device, &clients_dir).await?;
        let (changes, gap) = (args.changes, Duration::from_millis(args.gap_ms));
        work.push(tokio::spawn(async move {
            for job in &jobs {
                c.subscribe(*job);
                if !c
                    .wait_for(*job, Duration::from_secs(60), |d| !d.get_heads().is_empty())
                    .await
                {
                    bail!("device never got {job}");
                }
            }
            // The job as created is one change; the device makes the rest.
            for i in 1..changes {
                for job in &jobs {
                    let text = format!("visit note {i}: checked the compressor, pressure fine");
                    let edit = match i % 3 {
                        0 => LocalEdit::job(move |j| j.set_notes(&text)),
                        1 => LocalEdit::job(move |j| j.set_fault_cause(Some(&text))),
                        _ => LocalEdit::job(move |j| j.set_solution(Some(&text))),
                    };
                    c.edit(*job, edit)
                        .await
                        .map_err(|e| anyhow::anyhow!("edit {i} of {job}: {e}"))?;
                }
                tokio::time::sleep(gap).await;
            }
            let mut heads = Vec::new();
            for job in &jobs {
                let doc = c.read(*job).await.context("device lost its job")?;
                heads.push((*job, doc.get_heads()));
            }
            Ok::<_, anyhow::Error>((c, heads))
        }));
    }
    let mut devices = Vec::new();
    for w in work {
        let (c, heads) = w.await??;
        site.jobs.extend(heads);
        devices.push(c);
    }
    // Every change must be on the server before it is killed.
    let check = client(&server, &site.desk, "gen-check", &clients_dir).await?;
    fetch(&check, &site.jobs, Duration::from_secs(300)).await?;
    drop(devices);
    server.kill()?;
    Ok(site)
}

/// Subscribes every job and waits until the client holds each at its heads.
async fn fetch(
    c: &SyncClient,
    jobs: &[(DocumentId, Vec<ChangeHash>)],
    timeout: Duration,
) -> anyhow::Result<()> {
    for (job, _) in jobs {
        c.subscribe(*job);
    }
    for (job, heads) in jobs {
        let mut want = heads.clone();
        want.sort();
        if !c
            .wait_for(*job, timeout, |d| {
                let mut have = d.get_heads();
                have.sort();
                have == want
            })
            .await
        {
            bail!("the client never got {job} at its heads");
        }
    }
    Ok(())
}

struct Fetch {
    wall: f64,
    cpu: f64,
}

/// Seconds measured per round: wall and server CPU of the first and second fetch.
#[derive(Debug, Clone, Default)]
struct Samples {
    cold: Vec<f64>,
    cold_cpu: Vec<f64>,
    warm: Vec<f64>,
    warm_cpu: Vec<f64>,
}

async fn timed_fetch(
    server: &ServerProcess,
    site: &Site,
    peer: &str,
    dir: &Path,
) -> anyhow::Result<Fetch> {
    let cpu0 = cpu_seconds(server.pid())?;
    let t = Instant::now();
    let c = client(server, &site.desk, peer, dir).await?;
    fetch(&c, &site.jobs, Duration::from_secs(120)).await?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.pid())? - cpu0;
    c.close();
    Ok(Fetch { wall, cpu })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_usize(mut v: Vec<usize>) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Median seconds of `f` over a few runs.
fn time_it(mut f: impl FnMut() -> anyhow::Result<Automerge>) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let doc = f()?;
        times.push(t.elapsed().as_secs_f64());
        drop(doc);
    }
    Ok(median(times))
}

/// Chunks, bytes and load times of each stored job, read with a store that does no
/// maintenance (so reading changes nothing).
fn storage_figures(site: &Site) -> anyhow::Result<Value> {
    let db = site.data.join("fieldsync.sqlite");
    let file_size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal_bytes = file_size(site.data.join("fieldsync.sqlite-wal"));
    let db_bytes = file_size(db.clone());
    let store = Store::open(&db, StoreConfig::without_maintenance())?;
    let (mut chunks, mut bytes, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut by_chunk, mut concat, mut plain, mut snapshot_load) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (job, heads) in &site.jobs {
        let stored_chunks = store
            .load_doc(&job.to_string())?
            .context("job not stored")?;
        let joined = stored_chunks.concat();
        chunks.push(stored_chunks.len());
        bytes.push(joined.len());
        let doc = stored::load(&stored_chunks)?;
        let mut have = doc.get_heads();
        have.sort();
        let mut want = heads.clone();
        want.sort();
        if have != want {
            bail!("{job}: stored heads differ from the device's");
        }
        changes.push(doc.get_changes(&[]).len());
        by_chunk.push(time_it(|| {
            Ok(stored::load_chunk_by_chunk(&stored_chunks)?)
        })?);
        concat.push(time_it(|| Ok(stored::load(&stored_chunks)?))?);
        plain.push(time_it(|| Ok(Automerge::load(&joined)?))?);
        let snapshot = doc.save();
        snapshot_load.push(time_it(|| Ok(Automerge::load(&snapshot)?))?);
    }
    store.close()?;
    let ms = |v: Vec<f64>| median(v) * 1000.0;
    Ok(json!({
        "chunks_per_document": {"median": median_usize(chunks.clone()), "max": chunks.iter().max()},
        "bytes_per_document_median": median_usize(bytes),
        "changes_per_document_median": median_usize(changes),
        "wal_bytes": wal_bytes,
        "database_bytes": db_bytes,
        "load_ms_per_document_median": {
            "chunk_by_chunk": ms(by_chunk),
            "concatenated_ours": ms(concat),
            "plain_automerge_load_same_bytes": ms(plain),
            "plain_automerge_load_of_one_snapshot": ms(snapshot_load),
        },
    }))
}

async fn perf_record(dir: &Path, mode: Mode, pid: u32) -> anyhow::Result<std::process::Child> {
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("{}.perf", mode.name()));
    let child = std::process::Command::new("perf")
        .args(["record", "-g", "-F", "1999", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("perf")?;
    // perf needs a moment to attach.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(child)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = binary(args.fieldsync.clone())?;
    let root = tempfile::tempdir()?;
    let mut sites = Vec::new();
    for mode in [Mode::Baseline, Mode::Current] {
        let t = Instant::now();
        let site = generate(&bin, &args, mode, root.path()).await?;
        eprintln!(
            "{}: {} jobs × {} changes made in {:.1}s",
            mode.name(),
            args.jobs,
            args.changes,
            t.elapsed().as_secs_f64()
        );
        sites.push(site);
    }
    // What the edits left on disk, before any measured restart.
    let mut after_edits = Vec::new();
    for site in &sites {
        after_edits.push((site.mode.name(), storage_figures(site)?));
    }

    let clients = tempfile::tempdir()?;
    let mut results: Vec<Samples> = vec![Samples::default(); sites.len()];
    for round in 0..args.rounds {
        for (i, site) in sites.iter().enumerate() {
            let server = start(&bin, site)?;
            let tag = format!("{}-{round}", site.mode.name());
            let cold = timed_fetch(&server, site, &format!("cold-{tag}"), clients.path()).await?;
            let warm = timed_fetch(&server, site, &format!("warm-{tag}"), clients.path()).await?;
            eprintln!(
                "round {round} {}: cold {:.3}s ({:.2}s cpu), warm {:.3}s ({:.2}s cpu)",
                site.mode.name(),
                cold.wall,
                cold.cpu,
                warm.wall,
                warm.cpu
            );
            let r = &mut results[i];
            r.cold.push(cold.wall);
            r.cold_cpu.push(cold.cpu);
            r.warm.push(warm.wall);
            r.warm_cpu.push(warm.cpu);
            server.kill()?;
        }
    }

    // A profile of one more cold fetch per mode, apart from the measured rounds (perf
    // needs a moment to attach, which would flatter the cold fetch).
    if let Some(dir) = &args.perf {
        for site in &sites {
            let server = start(&bin, site)?;
            let mut perf = perf_record(dir, site.mode, server.pid()).await?;
            let tag = format!("perf-{}", site.mode.name());
            timed_fetch(&server, site, &tag, clients.path()).await?;
            std::process::Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status()?;
            perf.wait()?;
            server.kill()?;
        }
    }

    let mut out = serde_json::Map::new();
    for (site, samples) in sites.iter().zip(results) {
        let Samples {
            cold,
            cold_cpu,
            warm,
            warm_cpu,
        } = samples;
        let (cold, warm) = (median(cold), median(warm));
        let edits = after_edits
            .iter()
            .find(|(name, _)| *name == site.mode.name())
            .map(|(_, v)| v.clone());
        out.insert(
            site.mode.name().to_owned(),
            json!({
                "first_fetch_after_restart_s": cold,
                "first_fetch_server_cpu_s": median(cold_cpu),
                "second_fetch_s": warm,
                "second_fetch_server_cpu_s": median(warm_cpu),
                "first_over_second": cold / warm,
                "stored_after_the_edits": edits,
                "stored_after_the_restarts": storage_figures(site)?,
            }),
        );
    }
    let result = json!({
        "jobs": args.jobs,
        "changes_per_job": args.changes,
        "devices": args.devices,
        "rounds": args.rounds,
        "modes": out,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
