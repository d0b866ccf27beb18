//! The work that goes on while the servers die: technicians' devices (client SDK `Device`s,
//! each with its own store) editing their jobs and completing them, the desk creating new jobs
//! as old ones are completed, and on each device a watcher that writes down every head the
//! edge says it holds.
//!
//! Two devices share technician `tech-a`, so they work the same jobs at once. A job is worked
//! with typed edits (parts, notes, diagnosis, labour…) until its planned number of edits is
//! reached; then its lead device closes it: the job's other device makes only notes from then
//! on (R8: nothing the customer signs may change after they sign), the lead waits until both
//! devices hold the same acknowledged content, records what R7/R11/R16 ask for, takes the
//! customer's acknowledgement and requests completion, so that the edge's signer signs the
//! report; what the two devices' concurrent edits left unresolved (issue 15) the lead resolves
//! first. A few notes may follow the completion (a technician's "left site 16:05").

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use automerge::ChangeHash;
use fieldsync_client::{
    AckDraft, Backoff, Device, DeviceConfig, JobEdit, PartDraft, SyncOptions, SyncState,
    TokenError, now,
};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::Chosen;
use fieldsync_shared::job::{JobKind, Labour, PartLineId, SignatureMark, Survey};
use fieldsync_shared::time::Money;
use tokio::sync::{Notify, RwLock, mpsc};

use super::cluster::Cluster;
use super::rng::Rng;
use crate::{CreatedJob, installation_job_body, sample_job_body};

/// Quick redials, so devices are back soon after each restart.
pub const FAST: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(500),
};

/// A technician, the devices they carry and how many jobs the desk keeps open for them.
#[derive(Debug)]
pub struct Team {
    pub technician: &'static str,
    pub devices: &'static [&'static str],
    pub open_jobs: usize,
}

/// Four devices on two or three jobs each; `tech-a`'s two devices share every job.
pub const TEAMS: &[Team] = &[
    Team {
        technician: "tech-a",
        devices: &["dev-a1", "dev-a2"],
        open_jobs: 2,
    },
    Team {
        technician: "tech-b",
        devices: &["dev-b"],
        open_jobs: 3,
    },
    Team {
        technician: "tech-c",
        devices: &["dev-c"],
        open_jobs: 2,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Any edit, by any device of the team.
    Working,
    /// The lead is taking the customer's acknowledgement: notes only.
    Closing,
    /// Completion requested; this many notes may still follow.
    Completed {
        notes_left: u32,
    },
    Done,
}

/// How one job is to be worked.
#[derive(Debug)]
struct Plan {
    team: usize,
    installation: bool,
    target_edits: usize,
    edits: AtomicUsize,
    phase: Mutex<Phase>,
    /// Held (shared) over each edit made while working; the lead takes it exclusively to
    /// stop them before the customer signs.
    gate: RwLock<()>,
}

impl Plan {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }
}

/// One device of the fleet.
#[derive(Debug)]
pub struct Member {
    pub team: usize,
    pub name: &'static str,
    pub device: Arc<Device>,
}

/// What the tasks share.
#[derive(Debug)]
pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub patience: Duration,
    plans: Mutex<HashMap<DocumentId, Arc<Plan>>>,
    /// Per job, every head the edge told any device it holds.
    pub acknowledged: Mutex<HashMap<DocumentId, BTreeSet<ChangeHash>>>,
    /// Jobs whose completion request returned on their lead device.
    pub completions: Mutex<Vec<DocumentId>>,
    /// Jobs the desk was told were created (201).
    pub created: Mutex<Vec<DocumentId>>,
    /// Edits that returned on the in-process devices.
    pub edits: AtomicUsize,
    /// Problems a task saw that are not errors of the harness (a device refused by the edge).
    pub problems: Mutex<Vec<String>>,
    stopping: AtomicBool,
    stop: Notify,
    /// The desk's queue: the team of each completed job (a new one is made for it).
    desk: mpsc::UnboundedSender<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        cluster: Arc<Cluster>,
        patience: Duration,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<usize>) {
        let (desk, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Self {
            cluster,
            patience,
            plans: Mutex::default(),
            acknowledged: Mutex::default(),
            completions: Mutex::default(),
            created: Mutex::default(),
            edits: AtomicUsize::new(0),
            problems: Mutex::default(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            desk,
        });
        (shared, queue)
    }

    /// Asks every task to finish what it is doing and return.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn problem(&self, text: String) {
        lock(&self.problems).push(text);
    }

    fn register(&self, job: DocumentId, team: usize, installation: bool, rng: &mut Rng) {
        let target_edits = 10 + rng.index(30);
        lock(&self.plans).entry(job).or_insert_with(|| {
            Arc::new(Plan {
                team,
                installation,
                target_edits,
                edits: AtomicUsize::new(0),
                phase: Mutex::new(Phase::Working),
                gate: RwLock::new(()),
            })
        });
    }

    fn plan(&self, job: DocumentId) -> Option<Arc<Plan>> {
        lock(&self.plans).get(&job).cloned()
    }

    /// How many jobs the devices were given (created by the desk, or found in an index).
    pub fn jobs_known(&self) -> usize {
        lock(&self.plans).len()
    }

    /// Every job of `team` the loop knows of.
    pub fn jobs_of(&self, team: usize) -> Vec<DocumentId> {
        lock(&self.plans)
            .iter()
            .filter(|(_, p)| p.team == team)
            .map(|(job, _)| *job)
            .collect()
    }

    fn record_acknowledged(&self, job: DocumentId, heads: &[ChangeHash]) {
        if heads.is_empty() {
            return;
        }
        lock(&self.acknowledged)
            .entry(job)
            .or_default()
            .extend(heads.iter().copied());
    }
}

/// Sleeps `d`, or less if the loop is stopping.
async fn pause(shared: &Shared, d: Duration) {
    if shared.stopping() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = shared.stop.notified() => {}
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// Creates one job for `team`, retrying while the edge is down. A request the edge died in
/// the middle of may have made the job anyway: the devices find it in their index and work
/// it like any other.
pub async fn create_job(shared: &Shared, team: usize, rng: &mut Rng) -> anyhow::Result<CreatedJob> {
    let technician = TEAMS[team].technician;
    let installation = rng.chance(30);
    let body = if installation {
        installation_job_body(technician, now())
    } else {
        sample_job_body(technician)
    };
    let deadline = tokio::time::Instant::now() + shared.patience;
    loop {
        if let Some(created) = shared.cluster.create_job(&body).await? {
            shared.register(created.job, team, installation, rng);
            lock(&shared.created).push(created.job);
            return Ok(created);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the edge would not create a job for {technician}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens every device (a fresh store and key each), enrolls its key at the edge, gives each
/// team its first jobs and starts sync.
pub async fn open_fleet(
    shared: &Arc<Shared>,
    dir: &Path,
    rng: &mut Rng,
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::new();
    for (team, spec) in TEAMS.iter().enumerate() {
        let mut index = None;
        for _ in 0..spec.open_jobs {
            // The technician's assignment index comes with every job made for them.
            index = Some(create_job(shared, team, rng).await?.index);
        }
        for name in spec.devices {
            let device = open_device(shared, dir, team, name, index).await?;
            members.push(Member {
                team,
                name,
                device: Arc::new(device),
            });
        }
    }
    Ok(members)
}

async fn open_device(
    shared: &Arc<Shared>,
    dir: &Path,
    team: usize,
    name: &'static str,
    index: Option<DocumentId>,
) -> anyhow::Result<Device> {
    let technician = TEAMS[team].technician;
    let mut config = DeviceConfig::new(
        dir.join(format!("{name}.sqlite")),
        dir.join(format!("{name}.key")),
        DeviceId::new(name)?,
        TechnicianId::new(technician)?,
    );
    config.assignment_index = index;
    let device = Device::open(config).await?;
    let public = dir.join(format!("{name}.pub"));
    device.public_key().save(&public)?;
    let cluster = Arc::clone(&shared.cluster);
    blocking(move || cluster.enroll_device(technician, name, &public)).await?;
    start_sync(shared, &device, name).await?;
    Ok(device)
}

/// Sync with the edge; a token the edge refuses is renewed through the edge's CLI, as an app
/// would ask its backend.
pub async fn start_sync(shared: &Shared, device: &Device, name: &str) -> anyhow::Result<()> {
    let cluster = Arc::clone(&shared.cluster);
    let owned = name.to_owned();
    let token = blocking(move || cluster.device_token(&owned)).await?;
    let cluster = Arc::clone(&shared.cluster);
    let owned = name.to_owned();
    let renew = move || {
        let cluster = Arc::clone(&cluster);
        let name = owned.clone();
        async move {
            tokio::task::spawn_blocking(move || cluster.device_token(&name))
                .await
                .map_err(|e| TokenError::Unavailable(e.to_string()))?
                .map_err(|e| TokenError::Unavailable(e.to_string()))
        }
    };
    device.start_sync(
        SyncOptions::new(shared.cluster.edge_ws_url(), token)
            .with_renewal(renew)
            .with_backoff(FAST),
    );
    Ok(())
}

/// Writes down, on every event of the device and at least every 25 ms, the heads the edge
/// last acknowledged for each job of the device's team (`JobStatus::server_heads`). Also
/// reports a device whose sync the edge refused for good.
pub async fn watch_acknowledged(shared: Arc<Shared>, member: Arc<Member>) {
    let mut events = member.device.events();
    let mut refused = false;
    loop {
        tokio::select! {
            _ = events.recv() => {
                // Take every event already queued: one look covers them all.
                while events.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
            () = shared.stop.notified() => {}
        }
        sample_acknowledged(&shared, &member).await;
        if !refused && let SyncState::Refused { code, reason } = member.device.sync_state() {
            refused = true;
            shared.problem(format!(
                "the edge refused {} for good: {code}: {reason}",
                member.name
            ));
        }
        if shared.stopping() {
            return;
        }
    }
}

/// One look at what the edge acknowledged of every job of the member's team.
pub async fn sample_acknowledged(shared: &Shared, member: &Member) {
    for job in shared.jobs_of(member.team) {
        if let Ok(status) = member.device.job_status(job).await {
            shared.record_acknowledged(job, &status.server_heads);
        }
    }
}

/// The desk: a new job for the team of every completed one, until the loop stops.
pub async fn run_desk(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<usize>,
    mut rng: Rng,
) -> anyhow::Result<()> {
    loop {
        let team = tokio::select! {
            team = queue.recv() => team,
            () = shared.stop.notified() => None,
        };
        let Some(team) = team else { return Ok(()) };
        if shared.stopping() {
            return Ok(());
        }
        // A job being made when the loop stops is dropped with it (it was never answered).
        let stop = shared.stop.notified();
        tokio::select! {
            made = create_job(&shared, team, &mut rng) => { made?; }
            () = stop => return Ok(()),
        }
    }
}

/// One device at work until the loop stops: picks one of its jobs at random and takes a step
/// in it, with a short pause between steps.
pub async fn run_device(
    shared: Arc<Shared>,
    fleet: Arc<Vec<Arc<Member>>>,
    me: Arc<Member>,
    mut rng: Rng,
) -> anyhow::Result<()> {
    let mut lines: HashMap<DocumentId, Vec<PartLineId>> = HashMap::new();
    let mut listed: Vec<(DocumentId, JobKind)> = Vec::new();
    let mut steps = 0usize;
    while !shared.stopping() {
        if steps.is_multiple_of(20) {
            listed = me
                .device
                .jobs()
                .await
                .into_iter()
                .filter(|entry| entry.status.unassigned.is_none())
                .filter_map(|entry| entry.job.map(|j| (entry.id, j.kind)))
                .collect();
            // A job the desk's request died with is still the team's job: work it too.
            for (job, kind) in &listed {
                shared.register(*job, me.team, *kind == JobKind::Installation, &mut rng);
            }
        }
        steps += 1;
        let open: Vec<(DocumentId, Arc<Plan>)> = listed
            .iter()
            .filter_map(|(job, _)| shared.plan(*job).map(|p| (*job, p)))
            .filter(|(_, p)| p.phase() != Phase::Done)
            .collect();
        if open.is_empty() {
            pause(&shared, Duration::from_millis(20)).await;
            continue;
        }
        let (job, plan) = &open[rng.index(open.len())];
        step(&shared, &fleet, &me, *job, plan, &mut lines, &mut rng)
            .await
            .with_context(|| format!("{} working job {job}", me.name))?;
        let think = rng.between(Duration::ZERO, Duration::from_millis(15));
        pause(&shared, think).await;
    }
    Ok(())
}

fn is_lead(me: &Member) -> bool {
    TEAMS[me.team].devices[0] == me.name
}

async fn step(
    shared: &Shared,
    fleet: &[Arc<Member>],
    me: &Member,
    job: DocumentId,
    plan: &Plan,
    lines: &mut HashMap<DocumentId, Vec<PartLineId>>,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    match plan.phase() {
        Phase::Working => {
            {
                let _working = plan.gate.read().await;
                if plan.phase() == Phase::Working {
                    work_edit(me, job, lines.entry(job).or_default(), rng).await?;
                    shared.edits.fetch_add(1, Ordering::Relaxed);
                    plan.edits.fetch_add(1, Ordering::Relaxed);
                }
            }
            if is_lead(me) && plan.edits.load(Ordering::Relaxed) >= plan.target_edits {
                {
                    let _closing = plan.gate.write().await;
                    plan.set_phase(Phase::Closing);
                }
                close(shared, fleet, me, job, plan, rng).await?;
            }
        }
        Phase::Closing => {
            if rng.chance(30) {
                note(shared, me, job, "while the customer reads the report").await?;
            }
        }
        Phase::Completed { notes_left } => {
            let next = if notes_left <= 1 {
                Phase::Done
            } else {
                Phase::Completed {
                    notes_left: notes_left - 1,
                }
            };
            plan.set_phase(next);
            if notes_left > 0 {
                note(shared, me, job, "after completion").await?;
            }
        }
        Phase::Done => {}
    }
    Ok(())
}

async fn note(shared: &Shared, me: &Member, job: DocumentId, what: &str) -> anyhow::Result<()> {
    let n = shared.edits.fetch_add(1, Ordering::Relaxed);
    me.device
        .edit(
            job,
            JobEdit::AppendNotes(format!(" {}#{n} {what};", me.name)),
        )
        .await?;
    Ok(())
}

fn part(n: u64) -> PartDraft {
    PartDraft {
        part_number: format!("PN-{n}"),
        name: format!("part {n}"),
        specification: "standard".into(),
        quantity: 1,
        unit_price: Money(1_250),
        warranty: false,
    }
}

/// One random typed edit of the on-site record, as a technician makes them.
async fn work_edit(
    me: &Member,
    job: DocumentId,
    my_lines: &mut Vec<PartLineId>,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let device = &me.device;
    let n = rng.below(1_000_000);
    let edit = match rng.below(100) {
        0..30 => JobEdit::AppendNotes(format!(" {}: checked item {n};", me.name)),
        30..50 => {
            let line = device.add_part(job, part(n)).await?;
            my_lines.push(line);
            return Ok(());
        }
        50..58 if !my_lines.is_empty() => JobEdit::SetPartQuantity {
            id: my_lines[rng.index(my_lines.len())].clone(),
            quantity: 1 + u32::try_from(rng.below(5)).unwrap_or(0),
        },
        58..62 if my_lines.len() > 1 => {
            let line = my_lines.swap_remove(rng.index(my_lines.len()));
            JobEdit::RemovePart(line)
        }
        62..72 => JobEdit::FaultCause(Some(format!("fault seen by {} ({n})", me.name))),
        72..76 => JobEdit::FaultCategory(Some(["electrical", "mechanical"][rng.index(2)].into())),
        76..86 => JobEdit::Solution(Some(format!("fixed by {} ({n})", me.name))),
        86..91 => JobEdit::Labour(Labour {
            minutes: 15 + u32::try_from(rng.below(120)).unwrap_or(0),
            rate_per_hour: Money(80_00),
        }),
        91..95 => JobEdit::CustomerOpinion(Some(format!("fine ({n})"))),
        95..98 => JobEdit::Arrival(Some(now())),
        _ => {
            device
                .record_safety_briefing(job, format!("briefing {n}"))
                .await?;
            return Ok(());
        }
    };
    device.edit(job, edit).await?;
    Ok(())
}

/// The lead closes the job: waits until every device of the team holds the same changes of the
/// job, completes the record, resolves what the merge left unresolved, takes the
/// acknowledgement and asks the edge to sign the report.
async fn close(
    shared: &Shared,
    fleet: &[Arc<Member>],
    me: &Member,
    job: DocumentId,
    plan: &Plan,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let others: Vec<&Arc<Member>> = fleet
        .iter()
        .filter(|m| m.team == me.team && m.name != me.name)
        .collect();
    let deadline = tokio::time::Instant::now() + shared.patience;
    loop {
        // The same changes, not only the same content: two causes written at once read as
        // the one automerge picks on every device, so the content agrees while the lead,
        // not yet holding the other's change, sees no conflict to resolve, and the edge
        // refuses the completion with `unresolved_conflict` (R7).
        let mine = heads(&me.device, job).await?;
        let mut agree = true;
        for other in &others {
            if heads(&other.device, job).await.ok().as_ref() != Some(&mine) {
                agree = false;
            }
        }
        if agree {
            break;
        }
        // The loop is over: leave the job unclosed (it is no completion, so no report is
        // expected of it) rather than wait out the patience the caller also waits with.
        if shared.stopping() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the devices of {} never agreed on job {job}",
                TEAMS[me.team].technician
            );
        }
        pause(shared, Duration::from_millis(20)).await;
    }

    let current = me.device.job(job).await?;
    let mut edits = Vec::new();
    if current.parts.is_empty() {
        edits.push(JobEdit::AddPart {
            id: PartLineId::random(),
            draft: part(rng.below(1_000_000)),
        });
    }
    if current.diagnosis.fault_cause.is_none() {
        edits.push(JobEdit::FaultCause(Some("worn start capacitor".into())));
    }
    if current.diagnosis.solution.is_none() {
        edits.push(JobEdit::Solution(Some("replaced the capacitor".into())));
    }
    if current.customer_opinion.is_none() {
        edits.push(JobEdit::CustomerOpinion(Some("quick and tidy".into())));
    }
    if current.visit.arrival.is_none() {
        edits.push(JobEdit::Arrival(Some(now())));
    }
    if !edits.is_empty() {
        me.device.edit_all(job, edits).await?;
    }
    if plan.installation {
        me.device
            .record_training(
                job,
                vec!["Ms Chen (shift lead)".into()],
                "start-up, alarm reset, weekly filter cleaning",
            )
            .await?;
    }
    // Both devices worked the job at once, so they may have torn a group of fields apart
    // or added one part number each (issue 15): the lead resolves each as the job reads now
    // (keeping every line), so the customer signs one coherent report.
    for open in me.device.unresolved(job).await? {
        let chosen = Chosen {
            keep: (open.code == "possible_duplicate_part")
                .then(|| open.lines.iter().map(|l| l.0.clone()).collect()),
            ..Chosen::default()
        };
        let resolution = chosen.resolution(&me.device.job(job).await?, &open.group)?;
        me.device.resolve(job, resolution).await?;
    }
    me.device.check_out(job, "reported to the desk").await?;
    me.device
        .acknowledge(
            job,
            AckDraft {
                signer_name: "Ms Chen".into(),
                signature: SignatureMark::Strokes {
                    strokes: vec![vec![[0, 0], [10, 4], [20, 9]]],
                },
                signed_at: now(),
                survey: Survey::answered(5, 4, 5, 4, "call before coming"),
            },
        )
        .await?;
    me.device
        .request_completion(job)
        .await
        .context("requesting completion")?;
    lock(&shared.completions).push(job);
    let notes_left = u32::try_from(rng.below(4)).unwrap_or(0);
    plan.set_phase(if notes_left == 0 {
        Phase::Done
    } else {
        Phase::Completed { notes_left }
    });
    let _ = shared.desk.send(me.team);
    Ok(())
}

/// The job's heads on one device, sorted: equal heads are the same changes.
async fn heads(device: &Device, job: DocumentId) -> anyhow::Result<Vec<ChangeHash>> {
    let mut heads = device.job_status(job).await?.heads;
    heads.sort_unstable();
    Ok(heads)
}
