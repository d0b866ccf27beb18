//! Issue 16's throughput figure: reports verified and archived per second by two head-office
//! processes on one archive, with 200 branches delivering at once; on PostgreSQL and, for
//! comparison, on one SQLite file.
//!
//! What runs: two real `fieldsync serve` head-office processes (release build) on copies of
//! one data directory (same key, every branch enrolled through `fieldsync branch enroll`),
//! both on the same archive (`FIELDSYNC_STORAGE_URL`), behind a round-robin TCP balancer.
//! Each branch is a sync client in this process that dials the balancer with its own branch
//! token (`fieldsync branch token`) as `branch-<id>`, as a branch's upstream link does, and
//! offers its outbox: `--reports` signed reports, each a report document and the job
//! document it reports on. The reports are genuine: every job is an automerge document from
//! the published test vector's job (own job id, branch, serial), acknowledged by the branch's
//! device key and signed by the branch key, so head office runs its whole check on each
//! (branch signature with `verify_strict`, device attestation and acknowledgement, the job
//! document at the report's heads, the job digest) before the one INSERT.
//!
//! Timed: from the moment the branches start dialling until the archive holds every report
//! (`settled_report_docs`, polled every 50 ms from this process); nothing may be kept aside.
//! Setting up (enrolling, generating and signing, loading the branches' stores) is not timed.
//!
//! Run: `cargo build --release --bin fieldsync && cargo run --release -p fieldsync-tests
//! --bin archive-throughput [-- --branches 200 --reports 10 --runs 3]` (prints JSON). Not a
//! test: timing belongs in benchmarks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use fieldsync_server::head_office::store::{HeadOfficeStore, StorageUrl};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{JobDoc, create_job};
use fieldsync_shared::job::{Job, SignatureMark, Survey};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::{AckDraft, DeviceRecord, SignedReport, sign_acknowledgement};
use fieldsync_shared::report_doc::{DeviceAttestation, ReportDoc, report_doc_id};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{AsideStatus, Store, StoreConfig};
use fieldsync_tests::balancer::{Balancer, copy_data_dir};
use fieldsync_tests::pg::PgCluster;
use fieldsync_tests::{ServerProcess, connect_client, fieldsync_binary, run_cli};
use serde_json::{Value, json};
use tempfile::TempDir;

#[derive(Debug, Parser)]
struct Args {
    /// Branches delivering at once.
    #[arg(long, default_value_t = 200)]
    branches: usize,
    /// Signed reports each branch delivers.
    #[arg(long, default_value_t = 10)]
    reports: usize,
    /// Timed runs per backend (each on a fresh archive).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only this backend: sqlite or postgres.
    #[arg(long)]
    only: Option<String>,
}

/// How long one run may take before it is called failed.
const RUN_LIMIT: Duration = Duration::from_secs(600);
const DAY_MS: i64 = 86_400_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One branch's documents, ready to deliver.
struct BranchOutbox {
    id: BranchId,
    token: String,
    /// Every document of the outbox: (id, saved automerge bytes).
    docs: Vec<(DocumentId, Vec<u8>)>,
    report_docs: Vec<DocumentId>,
}

/// The published test vector's job: a complete installation job with parts, labour, travel,
/// training and a survey.
fn template_job() -> anyhow::Result<Job> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report-vectors/report.json");
    let vector: Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut job: Job = serde_json::from_value(vector["job"].clone())?;
    job.acknowledgement = None;
    job.report = None;
    Ok(job)
}

/// A genuine signed report of `branch` over a job document of its own: the job as the
/// device holds it, acknowledged by `device` at its heads, then signed by the branch at the
/// heads after the acknowledgement (what the edge's signer does).
fn signed_report(
    template: &Job,
    branch: &BranchId,
    branch_key: &KeyPair,
    device: &DeviceId,
    device_key: &KeyPair,
    n: usize,
    signed_at: Timestamp,
) -> anyhow::Result<(DocumentId, Vec<u8>, SignedReport)> {
    let mut job = template.clone();
    job.job_id = DocumentId::random();
    job.branch_id = branch.clone();
    job.product.serial = format!("SN-{branch}-{n}");
    let mut doc = JobDoc::from_autocommit(create_job(&job, None)?);
    let heads: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
    let ack = sign_acknowledgement(
        &doc.read()?,
        heads,
        AckDraft {
            signer_name: "陳力".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![vec![[0, 0], [12, 9], [30, 4]]],
            },
            signed_at: Timestamp::from_millis(signed_at.as_millis() - 60_000),
            survey: Survey::answered(5, 4, 5, 5, ""),
        },
        device.clone(),
        device_key,
    )?;
    doc.set_acknowledgement(&ack)?;
    let heads: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
    let report = SignedReport::sign(&doc.read()?, heads, signed_at, None, branch_key)?;
    Ok((job.job_id, doc.save(), report))
}

/// Enrolls every branch at head office (the CLI, as an operator would) and makes its
/// outbox. Returns head office's data directory, ready to copy.
fn prepare(args: &Args, work: &Path) -> anyhow::Result<(PathBuf, Vec<BranchOutbox>)> {
    let binary = fieldsync_binary()?;
    let ho = work.join("head-office");
    std::fs::create_dir_all(&ho)?;
    let config = work.join("head-office.toml");
    std::fs::write(
        &config,
        "role = \"head-office\"\nbranch_id = \"head-office\"\n",
    )?;
    let config = config.to_str().context("path")?.to_owned();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", config.as_str()]);
        run_cli(&binary, &ho, &all)
    };
    cli(&["keygen"])?;
    let template = template_job()?;
    // Signed yesterday, so the reports fall in a month head office accepts.
    let now = fieldsync_server::clock::system_now().as_millis();
    let mut outboxes = Vec::new();
    for b in 0..args.branches {
        let id = BranchId::new(format!("branch-{b:03}"))?;
        let branch_key = KeyPair::generate()?;
        let key_file = work.join(format!("{id}.pub"));
        branch_key.public().save(&key_file)?;
        let key_file = key_file.to_str().context("path")?;
        cli(&[
            "branch",
            "enroll",
            "--branch",
            id.as_str(),
            "--key",
            key_file,
        ])?;
        let token = cli(&["branch", "token", "--branch", id.as_str(), "--ttl", "1d"])?;
        let device = DeviceId::new(format!("dev-{b:03}"))?;
        let device_key = KeyPair::generate()?;
        let attestation = DeviceAttestation::sign(
            DeviceRecord {
                device_id: device.clone(),
                branch_id: id.clone(),
                technician: TechnicianId::new("tech-wang")?,
                public_key: device_key.public().to_hex(),
                revoked_at: None,
            },
            &branch_key,
        )?;
        let mut docs = Vec::new();
        let mut report_docs = Vec::new();
        for n in 0..args.reports {
            let at = Timestamp::from_millis(now - DAY_MS + (b * args.reports + n) as i64);
            let (job_id, job_bytes, report) =
                signed_report(&template, &id, &branch_key, &device, &device_key, n, at)?;
            let report_doc = ReportDoc {
                report_json: report.to_canonical_json()?,
                attestation: attestation.clone(),
            };
            let doc_id = report_doc_id(&report.body.report_id).context("report id")?;
            let am = report_doc.to_document()?;
            docs.push((job_id, job_bytes));
            docs.push((doc_id, am.save()));
            report_docs.push(doc_id);
        }
        outboxes.push(BranchOutbox {
            id,
            token: token.trim().to_owned(),
            docs,
            report_docs,
        });
    }
    Ok((ho, outboxes))
}

/// Reads one counter from a process's `/metrics`.
async fn counter(process: &ServerProcess, name: &str) -> Option<f64> {
    let text = reqwest::get(process.http_url("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| !l.starts_with('#') && l.contains(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// CPU seconds a process has used (user + system, `/proc/<pid>/stat`), so the figure can
/// be read per CPU second as well: the machine is shared, and wall time then measures the
/// neighbours too.
fn cpu_seconds(process: &ServerProcess) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid()))?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // Linux reports them in USER_HZ, 100 per second on every architecture we run on.
    Ok(ticks / 100.0)
}

/// One timed delivery of every outbox to two fresh processes on the archive `url`.
async fn run_once(
    ho_template: &Path,
    outboxes: &[BranchOutbox],
    url: &str,
    archive: &HeadOfficeStore,
) -> anyhow::Result<Value> {
    let dirs: Vec<TempDir> = (0..2)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    for dir in &dirs {
        copy_data_dir(ho_template, dir.path())?;
    }
    let config = ho_template.with_file_name("head-office.toml");
    let config = config.to_str().context("path")?;
    let args = ["--config", config];
    // Info logs name every report archived: keep them, it is what an operator runs with.
    let env = [("FIELDSYNC_STORAGE_URL", url)];
    let a = ServerProcess::start_with(dirs[0].path(), &args, &env)?;
    let b = ServerProcess::start_with(dirs[1].path(), &args, &env)?;
    let balancer = Balancer::start(Arc::new(Mutex::new(vec![a.addr, b.addr]))).await?;
    let url = format!("ws://{}/sync", balancer.addr);

    // Each branch's outbox in a store of its own, as the branch keeps it (not timed).
    let stores_dir = tempfile::tempdir()?;
    let mut stores = Vec::new();
    for outbox in outboxes {
        let store = Store::open(
            stores_dir.path().join(format!("{}.sqlite", outbox.id)),
            StoreConfig::default(),
        )?;
        for (doc, bytes) in &outbox.docs {
            store
                .append_changes(&doc.to_string(), bytes.clone())
                .wait()?;
        }
        stores.push(Arc::new(store));
    }
    let expected: BTreeSet<String> = outboxes
        .iter()
        .flat_map(|o| o.report_docs.iter().map(ToString::to_string))
        .collect();

    let cpu_before = cpu_seconds(&a)? + cpu_seconds(&b)?;
    let started = Instant::now();
    let dials = outboxes.iter().zip(&stores).map(|(outbox, store)| {
        let url = url.clone();
        let store = Arc::clone(store);
        async move {
            // As the branch's link joins: `branch-<id>` (head office checks the stem).
            let peer = format!("branch-{}", outbox.id);
            let client = connect_client(&url, &outbox.token, &peer, store)
                .await
                .with_context(|| format!("{} could not dial head office", outbox.id))?;
            for (doc, _) in &outbox.docs {
                client.subscribe(*doc);
            }
            anyhow::Ok(client)
        }
    });
    let clients = futures_util::future::try_join_all(dials).await?;
    let connected = started.elapsed().as_secs_f64();
    let deadline = started + RUN_LIMIT;
    loop {
        let settled: BTreeSet<String> = archive.settled_report_docs().await?.into_iter().collect();
        if settled.is_superset(&expected) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} reports settled after {RUN_LIMIT:?}; log A:\n{}",
                settled.len(),
                expected.len(),
                a.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&a)? + cpu_seconds(&b)? - cpu_before;
    let rejected = archive.reports_aside(AsideStatus::Rejected).await?;
    ensure!(
        rejected.is_empty(),
        "head office kept {} reports aside, e.g. {}",
        rejected.len(),
        rejected[0].body
    );
    let per_process = json!({
        "a": counter(&a, "reports_verified").await,
        "b": counter(&b, "reports_verified").await,
    });
    for client in &clients {
        client.close();
    }
    drop(balancer);
    a.kill()?;
    b.kill()?;
    Ok(json!({
        "seconds": elapsed,
        "all_dialled_s": connected,
        "reports_per_second": expected.len() as f64 / elapsed,
        "head_office_cpu_s": cpu,
        "reports_per_cpu_second": expected.len() as f64 / cpu,
        "verified_by_process": per_process,
    }))
}

async fn backend(
    name: &str,
    args: &Args,
    ho: &Path,
    outboxes: &[BranchOutbox],
    cluster: Option<&PgCluster>,
) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let scratch = tempfile::tempdir()?;
        let node = Arc::new(Store::open(
            scratch.path().join("node.sqlite"),
            StoreConfig::default(),
        )?);
        let url = match cluster {
            Some(cluster) => cluster.database(&format!("throughput_{run}")).await?,
            None => format!("sqlite:{}", scratch.path().join("archive.sqlite").display()),
        };
        let archive = HeadOfficeStore::open(
            &StorageUrl::parse(Some(&url)).map_err(anyhow::Error::msg)?,
            &node,
        )?;
        let figures = run_once(ho, outboxes, &url, &archive).await?;
        eprintln!("{name} run {run}: {figures}");
        runs.push(figures);
    }
    let of = |key: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[key].as_f64()).collect() };
    Ok(json!({
        "reports_per_second_median": median(of("reports_per_second")),
        "reports_per_cpu_second_median": median(of("reports_per_cpu_second")),
        "runs": runs,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let started = Instant::now();
    let (ho, outboxes) = prepare(&args, work.path())?;
    eprintln!(
        "prepared {} branches × {} reports in {:.1} s",
        args.branches,
        args.reports,
        started.elapsed().as_secs_f64()
    );
    let mut out = json!({
        "branches": args.branches,
        "reports_per_branch": args.reports,
        "reports": args.branches * args.reports,
        "head_office_processes": 2,
    });
    if args.only.as_deref() != Some("sqlite") {
        let cluster = PgCluster::start(true)?;
        out["postgres"] = backend("postgres", &args, &ho, &outboxes, Some(&cluster)).await?;
    }
    if args.only.as_deref() != Some("postgres") {
        out["sqlite"] = backend("sqlite", &args, &ho, &outboxes, None).await?;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
