//! `fieldsync demo`: the whole chain on loopback, on the embedded defaults (SQLite, generated
//! keys, no config). A head office, a branch whose link to it runs through a [`Relay`] that
//! can drop, and three technicians' devices (the client SDK, each with its own SQLite store):
//! jobs are created at the desk, worked offline (two technicians on one job at once),
//! synced, acknowledged by the customer, completed and signed at the branch; the reports
//! reach head office while the link drops and returns, are verified there, and the month's
//! statistics are printed. Everything is left in the data directory for inspection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fieldsync_client::{Device, DeviceConfig, JobEdit, SyncOptions};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::PartDraft;
use fieldsync_shared::job::{ReportOutcome, SignatureMark, Survey};
use fieldsync_shared::report::{AckDraft, DeviceRecord};
use fieldsync_shared::time::Money;
use serde_json::json;
use tokio::sync::oneshot;

use crate::app::{self, Server};
use crate::auth::{DeskRole, Subject};
use crate::clock::system_now as now;
use crate::config::{Config, Role, Upstream};
use crate::head_office::archive::{self, Filter};
use crate::head_office::complaints;
use crate::head_office::store::HeadOfficeStore;
use crate::sync::node::Node;
use crate::sync::registry::BranchRecord;

/// A TCP relay that can be cut and restored: the branch–head office link going down and
/// coming back (the demo and the tests use it).
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays connections on a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let task = {
            let up = Arc::clone(&up);
            let generation = Arc::clone(&generation);
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the link is down
                    }
                    let born = generation.load(Ordering::SeqCst);
                    let generation = Arc::clone(&generation);
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        let cut = async {
                            while generation.load(Ordering::SeqCst) == born {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            () = cut => {}
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            up,
            generation,
            task,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server running in this process.
struct Running {
    addr: SocketAddr,
    state: Arc<Node>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let server = Server::open(config, tokio::runtime::Handle::current())?;
        let state = Arc::clone(&server.node);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(listener, server, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn step(n: u32, text: &str) {
    println!("[{n}/7] {text}");
}

/// Waits for `check` to hold, printing a dot every second so a slow machine shows progress.
async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let mut dots = 0;
    while !check().await {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("gave up after two minutes waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seconds = started.elapsed().as_secs();
        if seconds > dots {
            dots = seconds;
            print!(".");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }
    if dots > 0 {
        println!();
    }
    Ok(())
}

struct Tech {
    name: &'static str,
    device: Device,
}

/// Every device starts syncing with the branch, with a fresh token.
fn go_online(branch: &Running, techs: &[Tech]) -> anyhow::Result<()> {
    for tech in techs {
        let token = branch
            .state
            .tokens
            .issue(
                &Subject::Device(tech.device.device_id().clone()),
                Duration::from_secs(3600),
                now(),
            )
            .map_err(anyhow::Error::msg)?;
        tech.device.start_sync(SyncOptions::new(
            format!("ws://{}/sync", branch.addr),
            token,
        ));
    }
    Ok(())
}

/// Runs the demo with everything under `dir` (created; must not hold an earlier run).
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty: the demo starts from a fresh directory (pass --dir)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    println!("fieldsync demo: everything is kept under {}", dir.display());
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;

    // Head office, and the branch's key enrolled with it.
    let head_office = Running::start(Config {
        role: Role::HeadOffice,
        branch_id: Some("head-office".into()),
        listen: loopback,
        data_dir: dir.join("head-office"),
        ..Config::default()
    })
    .await?;
    let branch_dir = dir.join("branch-north-01");
    let branch_data = crate::data_dir::DataDir::open(&branch_dir)?;
    let (branch_key, _) = branch_data.load_or_create_server_key()?;
    let branch_id = BranchId::new("north-01")?;
    head_office
        .state
        .registry_write()
        .enroll_branch(
            &head_office.state.store,
            BranchRecord {
                branch_id: branch_id.clone(),
                public_key: branch_key.public().to_hex(),
                enrolled_at: now(),
            },
        )
        .wait()?;
    let token = head_office
        .state
        .tokens
        .issue(
            &Subject::Branch(branch_id),
            Duration::from_secs(86_400),
            now(),
        )
        .map_err(anyhow::Error::msg)?;
    let token_file = branch_dir.join("upstream.token");
    std::fs::write(&token_file, token)?;
    let link = Relay::start(head_office.addr).await?;
    let branch = Running::start(Config {
        role: Role::Edge,
        branch_id: Some("north-01".into()),
        listen: loopback,
        data_dir: branch_dir,
        upstream: Some(Upstream {
            url: link.ws_url(),
            token_file,
            retry_max: Duration::from_secs(2),
            verdict_poll: Duration::from_secs(1),
            ca_file: None,
        }),
        ..Config::default()
    })
    .await?;
    step(
        1,
        &format!(
            "head office on {}, branch north-01 on {} (its link to head office runs through a relay that can drop)",
            head_office.addr, branch.addr
        ),
    );

    // Three technicians, each device with its own key and SQLite store.
    let devices_dir = dir.join("devices");
    std::fs::create_dir_all(&devices_dir)?;
    let mut techs = Vec::new();
    for name in ["wang", "li", "zhao"] {
        let technician = TechnicianId::new(format!("tech-{name}"))?;
        let device_id = DeviceId::new(format!("dev-{name}"))?;
        let device = Device::open(DeviceConfig::new(
            devices_dir.join(format!("{name}.sqlite")),
            devices_dir.join(format!("{name}.key")),
            device_id.clone(),
            technician.clone(),
        ))
        .await?;
        branch
            .state
            .registry_write()
            .enroll_device(
                &branch.state.store,
                DeviceRecord {
                    device_id,
                    branch_id: BranchId::new("north-01")?,
                    technician,
                    public_key: device.public_key().to_hex(),
                    revoked_at: None,
                },
            )?
            .wait()?;
        techs.push(Tech { name, device });
    }
    step(
        2,
        "three technicians (wang, li, zhao) enrolled with keys their devices generated",
    );

    // The desk creates the jobs: one for wang and li together, one each for zhao and wang.
    // Not `reqwest::Client::new()`: that refuses to start on a machine without a trust store.
    let http = fieldsync_client::ClientTls::system().http()?;
    let desk = branch
        .state
        .tokens
        .issue(
            &Subject::Desk(DeskRole::Dispatcher),
            Duration::from_secs(3600),
            now(),
        )
        .map_err(anyhow::Error::msg)?;
    let mut jobs: Vec<(DocumentId, Vec<&str>)> = Vec::new();
    for (n, (customer, serial, people)) in [
        ("Lotus Foods Ltd", "SN-88812", vec!["wang", "li"]),
        ("Harbour Hotel", "SN-23001", vec!["zhao"]),
        ("Green Clinic", "SN-51177", vec!["wang"]),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({
            "kind": "repair",
            "request": {
                "channel": "phone",
                "received_at": now().to_string(),
                "fault_description": "Compressor trips after ten minutes",
            },
            "customer": {"id": format!("c-{}", 1001 + n), "name": customer, "contact": "front desk", "site_address": "Harbour Road"},
            "product": {"model": "CH-500", "serial": serial, "product_type": "chiller", "warranty_end": "2025-04-01"},
            "technician": format!("tech-{}", people[0]),
        });
        let response = http
            .post(branch.url("/api/jobs"))
            .bearer_auth(&desk)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let created: serde_json::Value = response.json().await?;
        if !status.is_success() {
            bail!("the desk could not create a job: {created}");
        }
        let job: DocumentId = created["job_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no job id in {created}"))?;
        if people.len() > 1 {
            let technicians: Vec<String> = people.iter().map(|p| format!("tech-{p}")).collect();
            let response = http
                .put(branch.url(&format!("/api/jobs/{job}/technicians")))
                .bearer_auth(&desk)
                .json(&json!({ "technicians": technicians }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("the desk could not assign: {}", response.text().await?);
            }
        }
        jobs.push((job, people));
    }
    step(
        3,
        "the desk created 3 jobs: wang and li share one, zhao and wang have one each",
    );

    // Every device syncs its assignments, then goes offline.
    go_online(&branch, &techs)?;
    for tech in &techs {
        let expected = jobs.iter().filter(|(_, p)| p.contains(&tech.name)).count();
        until(&format!("{}'s jobs", tech.name), || async {
            let listed = tech.device.jobs().await;
            listed.len() == expected && listed.iter().all(|j| j.job.is_some())
        })
        .await?;
        tech.device.stop_sync();
    }
    step(4, "each device received its jobs and went offline");

    // Offline work. Wang and li edit the shared job at the same time.
    for (job, people) in &jobs {
        for name in people {
            let tech = techs
                .iter()
                .find(|t| t.name == *name)
                .context("technician")?;
            let device = &tech.device;
            device.edit(*job, JobEdit::Arrival(Some(now()))).await?;
            device
                .record_safety_briefing(*job, "lockout on the main breaker")
                .await?;
            device
                .add_part(
                    *job,
                    PartDraft {
                        part_number: format!("CAP-{name}"),
                        name: "Start capacitor".into(),
                        specification: "45 uF".into(),
                        quantity: 1,
                        unit_price: Money(1250),
                        warranty: false,
                    },
                )
                .await?;
            // Each writes the cause in their own words: on the shared job the two values
            // compete, and the desk sees both (automerge keeps the loser as a conflict).
            device
                .edit_all(
                    *job,
                    vec![
                        JobEdit::FaultCategory(Some("start capacitor".into())),
                        JobEdit::FaultCause(Some(format!("Worn start capacitor ({name})"))),
                    ],
                )
                .await?;
        }
    }
    step(
        5,
        "offline: every technician recorded arrival, safety briefing, a part and the fault; wang and li at once on the shared job",
    );

    // Back online: everything merges; the first technician of each job finishes it.
    go_online(&branch, &techs)?;
    let (shared_job, _) = jobs[0];
    let wang = &techs[0].device;
    until("the shared job to merge", || async {
        wang.job(shared_job).await.is_ok_and(|j| j.parts.len() == 2)
    })
    .await?;
    let merged = wang.job(shared_job).await?;
    let conflicts = wang.conflicts(shared_job).await?;
    println!(
        "      shared job merged: {} parts ({}), fault cause {:?} with {} competing value(s) kept for the desk",
        merged.parts.len(),
        merged
            .parts
            .iter()
            .map(|p| p.part_number.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        merged.diagnosis.fault_cause.as_deref().unwrap_or(""),
        conflicts.len()
    );
    // Two causes written at once are a disagreement no report may carry (issue 15): wang
    // settles the work group on the device, keeping the cause shown (the desk could, with
    // `POST /api/jobs/{id}/resolve`), and the resolution syncs to li.
    until("the competing causes to reach wang", || async {
        wang.unresolved(shared_job)
            .await
            .is_ok_and(|open| !open.is_empty())
    })
    .await?;
    let open = wang.unresolved(shared_job).await?;
    let merged = wang.job(shared_job).await?;
    wang.resolve(
        shared_job,
        fieldsync_shared::job::doc::current_work(&merged),
    )
    .await?;
    println!(
        "      unresolved on the shared job: {}; wang resolved the fault cause, solution and labour together",
        open.iter()
            .map(|u| format!("{} ({})", u.group, u.fields.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The link to head office drops while the reports are signed.
    link.cut();
    println!("      the branch's link to head office is down");
    // A customer calls to complain meanwhile; the desk records it and judges it (R20, R21).
    let complaint = http
        .post(branch.url("/api/complaints"))
        .bearer_auth(&desk)
        .json(&json!({
            "channel": "phone",
            "category": "service",
            "received_at": now().to_string(),
            "complainant": "Harbour Hotel, facilities manager",
            "content": "The technician came an hour after the agreed time",
            "asks": "a call before arrival next time",
            "against": {"job_id": jobs[1].0.to_string(), "technician": "tech-zhao"},
            "recorded_by": "desk-dispatcher",
        }))
        .send()
        .await?;
    let registered: serde_json::Value = complaint.json().await?;
    let complaint_id = registered["id"]
        .as_str()
        .with_context(|| format!("the desk could not register a complaint: {registered}"))?
        .to_owned();
    let classified = http
        .post(branch.url(&format!("/api/complaints/{complaint_id}/steps")))
        .bearer_auth(&desk)
        .json(&json!({"step": "classify", "by": "desk-dispatcher", "what": "late arrival confirmed by the job's times", "valid": true}))
        .send()
        .await?;
    if !classified.status().is_success() {
        bail!(
            "the desk could not classify the complaint: {}",
            classified.text().await?
        );
    }
    println!(
        "      the desk registered complaint {complaint_id} (service, valid) while offline from head office"
    );
    for (job, people) in &jobs {
        let tech = techs
            .iter()
            .find(|t| t.name == people[0])
            .context("technician")?;
        let device = &tech.device;
        device
            .edit_all(
                *job,
                vec![
                    JobEdit::Solution(Some("Replaced the capacitor, tested 30 min".into())),
                    JobEdit::CustomerOpinion(Some("Quick and tidy".into())),
                ],
            )
            .await?;
        // R11 before R8: the customer signs last, once (rules::acknowledgement_blockers).
        device.check_out(*job, "reported to the desk").await?;
        device
            .acknowledge(
                *job,
                AckDraft {
                    signer_name: "Ms Chen".into(),
                    signature: SignatureMark::Strokes {
                        strokes: vec![vec![[0, 0], [12, 9], [30, 4]]],
                    },
                    signed_at: now(),
                    survey: Survey::answered(5, 5, 4, 5, ""),
                },
            )
            .await?;
        device.request_completion(*job).await?;
    }
    for (job, people) in &jobs {
        let tech = techs
            .iter()
            .find(|t| t.name == people[0])
            .context("technician")?;
        until("the branch to sign", || async {
            tech.device
                .job(*job)
                .await
                .is_ok_and(|j| matches!(j.report, Some(ReportOutcome::Signed { .. })))
        })
        .await?;
    }
    step(
        6,
        "back online: jobs merged, customers signed, the branch signed 3 reports (head office unreachable)",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    link.restore();
    println!("      the link is back; the branch delivers");
    // The demo's head office keeps its archive in its data directory's database.
    let ho_store = HeadOfficeStore::Sqlite(Arc::clone(&head_office.state.store));
    let expected = jobs.len();
    until("head office to verify the reports", || {
        let store = ho_store.clone();
        async move {
            archive::archived(&store, &Filter::default())
                .await
                .is_ok_and(|r| r.len() == expected)
        }
    })
    .await?;
    let month = now().month()?;
    let stats = archive::month_stats(
        &ho_store,
        month,
        head_office.state.config.repeat_window_days,
        &head_office.state.config.timezone,
    )
    .await?;
    step(
        7,
        &format!(
            "head office verified {} reports (branch and device signatures, content at the reported heads); statistics for {month}:",
            jobs.len()
        ),
    );
    print!(
        "{}",
        archive::render_stats(&stats, "table").map_err(anyhow::Error::msg)?
    );
    until("head office to archive the complaint", || {
        let store = ho_store.clone();
        async move {
            complaints::archived_complaints(&store, Some(month), None)
                .await
                .is_ok_and(|c| c.len() == 1)
        }
    })
    .await?;
    let complaints = complaints::complaint_report(
        &ho_store,
        month,
        head_office.state.config.repeat_window_days,
        &head_office.state.config.timezone,
    )
    .await?;
    print!(
        "{}",
        complaints::render_complaints(&complaints, "table").map_err(anyhow::Error::msg)?
    );

    for tech in techs {
        tech.device.close().await;
    }
    branch.stop().await?;
    head_office.stop().await?;
    println!(
        "done in {:.1} s. Look around: {}/head-office (archive), {}/branch-north-01, {}/devices/*.sqlite",
        started.elapsed().as_secs_f64(),
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// A fresh directory for a run: `fieldsync-demo/<UTC time>`.
pub fn default_dir() -> PathBuf {
    let stamp = now().to_string().replace([':', '.'], "-");
    PathBuf::from("fieldsync-demo").join(stamp)
}
