//! The crash loop (issue 13, part 5): the durability promise, "what the server told a peer it
//! holds survives SIGKILL", tested by many kills at random moments rather than a handful.
//!
//! The real `fieldsync` binary runs as a branch edge (its report signer, its `[upstream]` link)
//! and as head office, each a child process on a port of its own. Technicians' devices (client
//! SDK `Device`s in this process, each with its own store; see `work`) edit their jobs all the
//! time, complete them so that the edge signs reports, and the desk makes new jobs as old ones
//! are completed. One more device runs as a child process that does nothing but durable edits
//! (`writer`). The loop SIGKILLs the edge at random moments and restarts it on the same data
//! directory and port, and now and then kills head office or the device process too. Then,
//! with everything settled and stopped, it checks the databases themselves (`checks`):
//!
//! - (a) every change the edge told a device it holds (the heads it acknowledged,
//!   `JobStatus::server_heads`, written down on every device event) is in the edge's store;
//! - (b) every completion is answered with a signed report, exactly one per job at the edge,
//!   and each of them is in head office's archive exactly once;
//! - (c) every SQLite database (edge, head office, each device) passes `PRAGMA
//!   integrity_check`;
//! - (d) the killed device process's store opens and holds every edit whose call returned.
//!
//! `scripts/crash-loop` runs it with 100 edge kills (bin `crash-loop`, release);
//! `tests/it/crash_loop.rs` runs a short one with the debug build. The seed fixes every choice
//! the loop makes (kill moments, edits, pauses); it cannot fix how the OS schedules the
//! processes, so a seed reproduces a run's shape, not its exact interleaving. Nothing here
//! reads the wall clock's date: the servers and devices stamp what they record with it, and
//! the checks compare only what they stored.

mod checks;
mod cluster;
mod rng;
mod work;
mod writer;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_server::data_dir::DataDir;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use tokio::task::JoinHandle;

pub use checks::Shape;
pub use rng::Rng;
pub use writer::{WriterArgs, device_writer};

use cluster::{Cluster, Servers};
use work::{Member, Shared};
use writer::Writer;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `fieldsync` binary run as edge and head office.
    pub fieldsync: PathBuf,
    /// The program run as the device that is killed: it runs [`device_writer`] when its
    /// arguments are [`WriterArgs::to_args`] (the `crash-loop` binary does).
    pub writer: PathBuf,
    /// Where every data directory and store is kept (created if missing).
    pub dir: PathBuf,
    pub seed: u64,
    pub edge_kills: usize,
    pub head_office_kills: usize,
    pub device_kills: usize,
    /// How long the edge runs before each kill: a random moment in this range.
    pub uptime: (Duration, Duration),
    /// How long a killed server stays down: a random time up to this.
    pub downtime: Duration,
    /// Bounds every wait for a condition; only against hangs, nothing is timed.
    pub patience: Duration,
    /// Prints a line per kill on stderr.
    pub verbose: bool,
}

impl Config {
    /// The full run: 100 edge kills, 5 of head office, 10 of the device process.
    pub fn new(fieldsync: PathBuf, writer: PathBuf, dir: PathBuf, seed: u64) -> Self {
        Self {
            fieldsync,
            writer,
            dir,
            seed,
            edge_kills: 100,
            head_office_kills: 5,
            device_kills: 10,
            uptime: (Duration::from_millis(50), Duration::from_millis(1_500)),
            downtime: Duration::from_millis(300),
            patience: Duration::from_secs(120),
            verbose: true,
        }
    }

    /// The CI run: 10 edge kills, 1 of head office, 2 of the device process.
    pub fn short(fieldsync: PathBuf, writer: PathBuf, dir: PathBuf, seed: u64) -> Self {
        Self {
            edge_kills: 10,
            head_office_kills: 1,
            device_kills: 2,
            uptime: (Duration::from_millis(50), Duration::from_millis(1_000)),
            ..Self::new(fieldsync, writer, dir, seed)
        }
    }
}

/// A seed from the operating system's randomness.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => std::process::id().into(),
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub seed: u64,
    pub edge_kills: usize,
    pub head_office_kills: usize,
    pub device_kills: usize,
    /// Jobs the desk was told were created (201).
    pub jobs_created: usize,
    /// Jobs the devices found in their index that the desk was never told of: the edge made
    /// them, then died before it answered (`POST /api/jobs` has no idempotency key, so the
    /// desk's retry made another).
    pub jobs_unanswered: usize,
    /// Edits that returned on the in-process devices.
    pub device_edits: usize,
    /// Changes the edge told devices it holds.
    pub changes_acknowledged: usize,
    /// Of those, not in the edge's store afterwards (must be 0).
    pub changes_lost: usize,
    /// Edits of the killed device process that returned before a kill.
    pub writer_edits_returned: usize,
    /// Of those, not in its store afterwards (must be 0).
    pub writer_edits_lost: usize,
    /// Device jobs still holding changes the edge never acknowledged, after settling.
    pub unsynced_at_end: usize,
    pub completions: usize,
    pub completions_unanswered: usize,
    pub completions_refused: usize,
    /// Signed reports stored at the edge.
    pub reports_signed: usize,
    /// Reports at the edge beyond one per job (must be 0).
    pub reports_duplicated: usize,
    pub reports_at_head_office: usize,
    /// Archive entries beyond one per job at head office (must be 0).
    pub reports_duplicated_at_head_office: usize,
    pub reports_missing_at_head_office: usize,
    pub reports_set_aside_at_head_office: usize,
    pub integrity_checks: usize,
    pub integrity_failures: usize,
    /// How the edge's store keeps its documents after the run (issue 19).
    pub edge_storage: Shape,
    /// Everything that went wrong, in words.
    pub problems: Vec<String>,
}

impl Counts {
    /// Every broken promise; empty when the run found nothing.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut must_be_zero = |what: &str, n: usize| {
            if n > 0 {
                out.push(format!("{what}: {n}"));
            }
        };
        must_be_zero("changes lost", self.changes_lost);
        must_be_zero("device edits lost", self.writer_edits_lost);
        must_be_zero("jobs left unsynced", self.unsynced_at_end);
        must_be_zero("completions unanswered", self.completions_unanswered);
        must_be_zero("completions refused", self.completions_refused);
        must_be_zero("reports duplicated at the edge", self.reports_duplicated);
        must_be_zero(
            "reports duplicated at head office",
            self.reports_duplicated_at_head_office,
        );
        must_be_zero(
            "reports missing at head office",
            self.reports_missing_at_head_office,
        );
        must_be_zero(
            "reports set aside at head office",
            self.reports_set_aside_at_head_office,
        );
        must_be_zero("integrity check failures", self.integrity_failures);
        out.extend(self.problems.iter().cloned());
        out
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let storage = &self.edge_storage;
        let rows: [(&str, String); 18] = [
            ("seed", self.seed.to_string()),
            (
                "kills (edge, head office, device)",
                format!(
                    "{}, {}, {}",
                    self.edge_kills, self.head_office_kills, self.device_kills
                ),
            ),
            (
                "jobs created (of which the desk never heard)",
                format!(
                    "{} ({})",
                    self.jobs_created + self.jobs_unanswered,
                    self.jobs_unanswered
                ),
            ),
            (
                "device edits (in-process devices)",
                self.device_edits.to_string(),
            ),
            (
                "changes acknowledged by the edge",
                self.changes_acknowledged.to_string(),
            ),
            ("changes lost", self.changes_lost.to_string()),
            (
                "killed device: edits returned, lost",
                format!("{}, {}", self.writer_edits_returned, self.writer_edits_lost),
            ),
            ("jobs left unsynced", self.unsynced_at_end.to_string()),
            (
                "completions (unanswered, refused)",
                format!(
                    "{} ({}, {})",
                    self.completions, self.completions_unanswered, self.completions_refused
                ),
            ),
            (
                "reports signed (at the edge)",
                self.reports_signed.to_string(),
            ),
            (
                "reports duplicated (at the edge)",
                self.reports_duplicated.to_string(),
            ),
            (
                "reports at head office",
                self.reports_at_head_office.to_string(),
            ),
            (
                "reports duplicated at head office",
                self.reports_duplicated_at_head_office.to_string(),
            ),
            (
                "reports missing at head office",
                self.reports_missing_at_head_office.to_string(),
            ),
            (
                "reports set aside at head office",
                self.reports_set_aside_at_head_office.to_string(),
            ),
            (
                "integrity checks (ok of run)",
                format!(
                    "{} of {}",
                    self.integrity_checks - self.integrity_failures,
                    self.integrity_checks
                ),
            ),
            (
                "edge: chunks per document (median, max)",
                format!(
                    "{}, {} ({} documents)",
                    storage.chunks_median, storage.chunks_max, storage.documents
                ),
            ),
            (
                "edge: database, write-ahead log (bytes)",
                format!("{}, {}", storage.database_bytes, storage.wal_bytes),
            ),
        ];
        for (name, value) in rows {
            writeln!(f, "  {name:<46} {value}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    HeadOffice,
    Device,
    Edge,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

fn say(config: &Config, line: impl AsRef<str>) {
    if config.verbose {
        eprintln!("crash-loop: {}", line.as_ref());
    }
}

/// Waits until `check` holds, looking every 50 ms; `false` if it did not within `patience`.
async fn settled<F, Fut>(patience: Duration, mut check: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if check().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the loop and the checks. An `Err` is a run that could not go on (a server that does
/// not come back, a store that does not open, a device edit that failed); a broken promise
/// found by the checks is in [`Counts::failures`].
pub async fn run(config: Config) -> anyhow::Result<Counts> {
    let mut rng = Rng::new(config.seed);
    let mut counts = Counts {
        seed: config.seed,
        ..Counts::default()
    };
    say(
        &config,
        format!(
            "seed {} (set it with --seed / FIELDSYNC_CRASH_SEED to repeat the run's choices); \
             {} edge kills, {} of head office, {} of the device process; data in {}",
            config.seed,
            config.edge_kills,
            config.head_office_kills,
            config.device_kills,
            config.dir.display()
        ),
    );
    std::fs::create_dir_all(&config.dir)?;
    let (cluster, servers) = {
        let (binary, root) = (config.fieldsync.clone(), config.dir.clone());
        blocking(move || Cluster::create(&binary, &root)).await?
    };
    let cluster = Arc::new(cluster);
    let servers = Arc::new(Mutex::new(servers));
    let (shared, desk_queue) = Shared::new(Arc::clone(&cluster), config.patience);
    let devices_dir = config.dir.join("devices");
    let members = work::open_fleet(&shared, &devices_dir, &mut rng).await?;
    let fleet: Arc<Vec<Arc<Member>>> = Arc::new(members.into_iter().map(Arc::new).collect());
    let mut writer = match config.device_kills {
        0 => None,
        _ => {
            let mut w =
                Writer::prepare(&cluster, &devices_dir, &config.writer, config.patience).await?;
            w.start(&cluster, config.patience).await?;
            Some(w)
        }
    };

    let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    for member in fleet.iter() {
        let (shared, member) = (Arc::clone(&shared), Arc::clone(member));
        tasks.push(tokio::spawn(async move {
            work::watch_acknowledged(shared, member).await;
            Ok(())
        }));
    }
    for member in fleet.iter() {
        tasks.push(tokio::spawn(work::run_device(
            Arc::clone(&shared),
            Arc::clone(&fleet),
            Arc::clone(member),
            rng.fork(),
        )));
    }
    tasks.push(tokio::spawn(work::run_desk(
        Arc::clone(&shared),
        desk_queue,
        rng.fork(),
    )));

    let looped = kill_loop(
        &config,
        &mut rng,
        &cluster,
        &servers,
        &mut writer,
        &tasks,
        &mut counts,
    )
    .await;
    shared.stop();
    let mut task_failed = None;
    for task in tasks {
        let joined = tokio::time::timeout(config.patience, task)
            .await
            .context("a device task did not stop")
            .and_then(|joined| joined.context("a device task panicked")?);
        if let Err(e) = joined
            && task_failed.is_none()
        {
            task_failed = Some(e);
        }
    }
    // A task's own error says what went wrong; the kill loop's "a device task stopped"
    // only says when, so the task's error leads and the loop's becomes its context.
    let failed = match (task_failed, looped) {
        (Some(task), Err(looped)) => Some(task.context(looped.to_string())),
        (None, Err(looped)) => Some(looped),
        (task, Ok(())) => task,
    };
    if let Some(e) = failed {
        let log = servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .edge_log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(e.context(format!(
            "seed {}; the edge's last log lines:\n{}",
            config.seed,
            tail.join("\n")
        )));
    }
    say(&config, "loop done; waiting for everything to settle");
    settle(&config, &shared, &fleet, &mut counts).await?;

    // Stop everything: the devices close their stores, the servers are killed once more.
    let writer_store = writer.map(|w| w.store().to_owned());
    let fleet =
        Arc::try_unwrap(fleet).map_err(|_| anyhow::anyhow!("a task still holds the devices"))?;
    let mut device_stores = Vec::new();
    for member in fleet {
        let member =
            Arc::try_unwrap(member).map_err(|_| anyhow::anyhow!("a task still holds a device"))?;
        device_stores.push(member.device.store_path().to_owned());
        let device = Arc::try_unwrap(member.device)
            .map_err(|_| anyhow::anyhow!("a task still holds a device"))?;
        device.close().await;
    }
    {
        let servers = Arc::clone(&servers);
        blocking(move || {
            let mut s = servers.lock().unwrap_or_else(PoisonError::into_inner);
            s.kill_edge()?;
            s.kill_head_office()?;
            Ok(())
        })
        .await?;
    }

    let edge_db = DataDir::open(&cluster.edge_dir)?.database_path();
    let head_office_db = DataDir::open(&cluster.head_office_dir)?.database_path();
    let completions: Vec<DocumentId> = shared
        .completions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let acknowledged = shared
        .acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    counts.jobs_created = shared
        .created
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    counts.jobs_unanswered = shared.jobs_known().saturating_sub(counts.jobs_created);
    counts.device_edits = shared.edits.load(std::sync::atomic::Ordering::Relaxed);
    counts.completions = completions.len();
    counts.problems.extend(
        shared
            .problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned(),
    );
    let mut databases = vec![edge_db.clone(), head_office_db.clone()];
    databases.extend(device_stores.iter().cloned());
    if let Some(writer) = &writer_store {
        databases.push(writer.clone());
    }
    let checked = blocking(move || {
        let sizes = checks::file_sizes(&edge_db);
        let edge = checks::open(&edge_db)?;
        let shape = checks::shape(&edge, sizes)?;
        let head_office = checks::open(&head_office_db)?;
        let devices: Vec<_> = device_stores
            .iter()
            .map(|p| checks::open(p))
            .collect::<anyhow::Result<_>>()?;
        let acknowledged = checks::acknowledged(&edge, &devices, &acknowledged)?;
        let reports = checks::reports(&edge, &head_office, &completions)?;
        drop((edge, head_office, devices));
        let integrity = checks::integrity(&databases);
        Ok((acknowledged, reports, integrity, databases.len(), shape))
    })
    .await?;
    let (acknowledged, reports, integrity, databases, shape) = checked;
    counts.edge_storage = shape;
    counts.changes_acknowledged = acknowledged.changes;
    counts.changes_lost = acknowledged.lost;
    counts.problems.extend(acknowledged.problems);
    counts.completions_unanswered = reports.unanswered;
    counts.completions_refused = reports.refused;
    counts.reports_signed = reports.at_edge;
    counts.reports_duplicated = reports.duplicated_at_edge;
    counts.reports_at_head_office = reports.at_head_office;
    counts.reports_duplicated_at_head_office = reports.duplicated_at_head_office;
    counts.reports_missing_at_head_office = reports.missing_at_head_office;
    counts.reports_set_aside_at_head_office = reports.set_aside;
    counts.problems.extend(reports.problems);
    counts.integrity_checks += databases;
    counts.integrity_failures += integrity.len();
    counts.problems.extend(integrity);
    Ok(counts)
}

/// The kills: each round the edge runs for a random time and is killed; in some rounds head
/// office or the device process is killed at a random moment before that.
async fn kill_loop(
    config: &Config,
    rng: &mut Rng,
    cluster: &Arc<Cluster>,
    servers: &Arc<Mutex<Servers>>,
    writer: &mut Option<Writer>,
    tasks: &[JoinHandle<anyhow::Result<()>>],
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let head_office_rounds: BTreeSet<usize> = rng
        .pick(config.head_office_kills, config.edge_kills)
        .into_iter()
        .collect();
    let device_rounds: Vec<usize> = rng.pick(config.device_kills, config.edge_kills);
    let last_device_round = device_rounds.last().copied();
    let device_rounds: BTreeSet<usize> = device_rounds.into_iter().collect();
    for round in 0..config.edge_kills {
        let up = rng.between(config.uptime.0, config.uptime.1);
        let mut events = vec![(up, Target::Edge)];
        if head_office_rounds.contains(&round) {
            events.push((rng.between(Duration::ZERO, up), Target::HeadOffice));
        }
        if device_rounds.contains(&round) {
            events.push((rng.between(Duration::ZERO, up), Target::Device));
        }
        events.sort();
        let since = tokio::time::Instant::now();
        let mut said = Vec::new();
        for (at, target) in events {
            tokio::time::sleep_until(since + at).await;
            match target {
                Target::Edge => {
                    let down = rng.between(Duration::ZERO, config.downtime);
                    restart(servers, cluster, down, Target::Edge).await?;
                    counts.edge_kills += 1;
                    said.push(format!(
                        "edge after {} ms (down {} ms)",
                        at.as_millis(),
                        down.as_millis()
                    ));
                }
                Target::HeadOffice => {
                    let down = rng.between(Duration::ZERO, config.downtime);
                    restart(servers, cluster, down, Target::HeadOffice).await?;
                    counts.head_office_kills += 1;
                    said.push(format!("head office after {} ms", at.as_millis()));
                }
                Target::Device => {
                    let w = writer.as_mut().context("no device process")?;
                    let check = w.kill_and_check().await?;
                    counts.device_kills += 1;
                    counts.writer_edits_returned += check.returned;
                    counts.writer_edits_lost += check.lost;
                    counts.integrity_checks += 1;
                    if !check.intact {
                        counts.integrity_failures += 1;
                        counts.problems.push(format!(
                            "the killed device's store {} fails its integrity check",
                            w.store().display()
                        ));
                    }
                    if check.lost > 0 {
                        counts.problems.push(format!(
                            "the killed device's store lost {} of {} edits that had returned",
                            check.lost, check.returned
                        ));
                    }
                    said.push(format!(
                        "device process after {} ms ({} edits returned, {} lost)",
                        at.as_millis(),
                        check.returned,
                        check.lost
                    ));
                    if Some(round) != last_device_round {
                        w.start(cluster, config.patience).await?;
                    }
                }
            }
        }
        say(
            config,
            format!(
                "kill {}/{}: {}",
                round + 1,
                config.edge_kills,
                said.join("; ")
            ),
        );
        // A device task that failed ends the run now, not after every kill.
        if tasks.iter().any(JoinHandle::is_finished) {
            bail!("a device task stopped during kill {}", round + 1);
        }
    }
    Ok(())
}

/// SIGKILLs `target`, leaves it down for `down`, starts it again on its data and port.
async fn restart(
    servers: &Arc<Mutex<Servers>>,
    cluster: &Arc<Cluster>,
    down: Duration,
    target: Target,
) -> anyhow::Result<()> {
    {
        let servers = Arc::clone(servers);
        blocking(move || {
            let mut s = servers.lock().unwrap_or_else(PoisonError::into_inner);
            match target {
                Target::HeadOffice => s.kill_head_office().map(drop),
                _ => s.kill_edge().map(drop),
            }
        })
        .await?;
    }
    tokio::time::sleep(down).await;
    let (servers, cluster) = (Arc::clone(servers), Arc::clone(cluster));
    blocking(move || {
        let mut s = servers.lock().unwrap_or_else(PoisonError::into_inner);
        match target {
            Target::HeadOffice => s.start_head_office(&cluster),
            _ => s.start_edge(&cluster),
        }
    })
    .await
}

/// With the servers up and the work stopped: every device's changes reach the edge, every
/// completion is answered, every signed report reaches head office. Each wait is bounded by
/// the patience; what did not happen is counted, and the checks run regardless.
async fn settle(
    config: &Config,
    shared: &Arc<Shared>,
    fleet: &Arc<Vec<Arc<Member>>>,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let unsynced = || async {
        let mut n = 0;
        for member in fleet.iter() {
            for job in shared.jobs_of(member.team) {
                if member
                    .device
                    .job_status(job)
                    .await
                    .is_ok_and(|s| s.unsynced)
                {
                    n += 1;
                }
            }
        }
        n
    };
    if !settled(config.patience, || async { Ok(unsynced().await == 0) }).await? {
        counts.unsynced_at_end = unsynced().await;
    }
    for member in fleet.iter() {
        work::sample_acknowledged(shared, member).await;
    }

    let completions: Vec<DocumentId> = shared
        .completions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let cluster = &shared.cluster;
    let outcomes = || async {
        let mut signed = Vec::new();
        let mut open = 0;
        for job in &completions {
            match cluster.edge_job(*job).await? {
                Some(j) => match j.report {
                    Some(ReportOutcome::Signed { report_id, .. }) => signed.push(report_id),
                    Some(ReportOutcome::Refused { .. }) => {}
                    None => open += 1,
                },
                None => open += 1,
            }
        }
        anyhow::Ok((signed, open))
    };
    settled(config.patience, || async { Ok(outcomes().await?.1 == 0) }).await?;
    let (signed, _) = outcomes().await?;
    // The edge's reports API serves every report it announced.
    for id in &signed {
        if !cluster.edge_has_report(id).await? {
            counts.problems.push(format!(
                "the edge announced report {id} but does not serve it"
            ));
        }
    }
    let delivered = || async {
        let archive = cluster.archive().await?.unwrap_or_default();
        let ids: BTreeSet<&String> = archive.iter().map(|(id, _)| id).collect();
        anyhow::Ok(signed.iter().all(|id| ids.contains(id)))
    };
    settled(config.patience, delivered).await?;
    say(
        config,
        format!(
            "settled: {} completions, {} signed",
            completions.len(),
            signed.len()
        ),
    );
    Ok(())
}
