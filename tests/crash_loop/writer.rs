//! The device that is killed: a child process (`crash-loop device-writer`) that reopens a
//! device store and makes durable edits in a loop, syncing with the edge meanwhile, and prints
//! the number of each edit on a line of its own once the call has returned. SIGKILLed at
//! random moments, its store must open afterwards and hold every edit it printed (a `Device`
//! edit is durable before it returns).

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_client::{Device, DeviceConfig, JobEdit, PartDraft, SyncOptions};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::Job;
use fieldsync_shared::time::Money;
use fieldsync_storage::{Store, StoreConfig};

use super::cluster::Cluster;
use super::work::FAST;
use crate::sample_job_body;

const NAME: &str = "dev-w";
const TECHNICIAN: &str = "tech-w";

/// What `crash-loop device-writer` is given.
#[derive(Debug, Clone)]
pub struct WriterArgs {
    /// The device store (opened before with a `DeviceConfig`).
    pub store: PathBuf,
    pub job: DocumentId,
    /// The number of the first edit; each run starts at a fresh million.
    pub start: u64,
    /// The edge's sync URL and a device token, to sync while writing.
    pub server: Option<(String, String)>,
}

impl WriterArgs {
    /// The command line `crash-loop device-writer` parses back.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "device-writer".into(),
            "--store".into(),
            self.store.clone().into(),
            "--job".into(),
            self.job.to_string().into(),
            "--start".into(),
            self.start.to_string().into(),
        ];
        if let Some((url, token)) = &self.server {
            args.extend([
                "--server".into(),
                url.into(),
                "--token".into(),
                token.into(),
            ]);
        }
        args
    }
}

/// Edit `n`: a note for an even number, a part line for an odd one.
fn writer_edit(n: u64) -> JobEdit {
    if n.is_multiple_of(2) {
        JobEdit::AppendNotes(format!(" w{n};"))
    } else {
        JobEdit::AddPart {
            id: fieldsync_shared::job::PartLineId::random(),
            draft: PartDraft {
                part_number: format!("W-{n}"),
                name: format!("writer part {n}"),
                specification: String::new(),
                quantity: 1,
                unit_price: Money(100),
                warranty: false,
            },
        }
    }
}

fn holds_edit(job: &Job, n: u64) -> bool {
    if n.is_multiple_of(2) {
        job.notes.contains(&format!(" w{n};"))
    } else {
        let number = format!("W-{n}");
        job.parts.iter().any(|p| p.part_number == number)
    }
}

/// The child's whole life: reopen the store, sync if asked, edit until killed.
pub async fn device_writer(args: WriterArgs) -> anyhow::Result<()> {
    let device = Device::reopen(&args.store).await?;
    if let Some((url, token)) = &args.server {
        device.start_sync(SyncOptions::new(url.clone(), token.clone()).with_backoff(FAST));
    }
    device.job(args.job).await.context("the writer's job")?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    for n in args.start.. {
        device.edit(args.job, writer_edit(n)).await?;
        // Printed only once the edit returned: every number printed must survive.
        writeln!(out, "{n}")?;
        out.flush()?;
    }
    Ok(())
}

/// A running writer: its process and the complete lines it printed.
#[derive(Debug)]
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What one kill of the writer showed.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterCheck {
    /// Edits whose call had returned (printed) before the kill.
    pub returned: usize,
    /// Of those, how many the reopened store does not hold.
    pub lost: usize,
    /// Whether the store passed `PRAGMA integrity_check`.
    pub intact: bool,
}

impl Drop for Running {
    /// A run that ends early leaves no writer behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent's side: prepares the writer's device and job, starts it, kills it, checks it.
#[derive(Debug)]
pub struct Writer {
    program: PathBuf,
    store: PathBuf,
    job: DocumentId,
    runs: u64,
    running: Option<Running>,
}

impl Writer {
    /// Makes a job for the writer's technician, opens the writer's device once (so its key
    /// can be enrolled) and syncs until the device holds the job.
    pub async fn prepare(
        cluster: &Arc<Cluster>,
        dir: &Path,
        program: &Path,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        let created = loop {
            if let Some(created) = cluster.create_job(&sample_job_body(TECHNICIAN)).await? {
                break created;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the edge would not create the writer's job");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let store = dir.join(format!("{NAME}.sqlite"));
        let mut config = DeviceConfig::new(
            &store,
            dir.join(format!("{NAME}.key")),
            DeviceId::new(NAME)?,
            TechnicianId::new(TECHNICIAN)?,
        );
        config.assignment_index = Some(created.index);
        let device = Device::open(config).await?;
        let public = dir.join(format!("{NAME}.pub"));
        device.public_key().save(&public)?;
        let token = {
            let cluster = Arc::clone(cluster);
            let public = public.clone();
            tokio::task::spawn_blocking(move || {
                cluster.enroll_device(TECHNICIAN, NAME, &public)?;
                cluster.device_token(NAME)
            })
            .await??
        };
        device.start_sync(SyncOptions::new(cluster.edge_ws_url(), token).with_backoff(FAST));
        while device.job(created.job).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("the writer's job never reached its device");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        device.close().await;
        Ok(Self {
            program: program.to_owned(),
            store,
            job: created.job,
            runs: 0,
            running: None,
        })
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Starts the writer process and waits until it is writing.
    pub async fn start(
        &mut self,
        cluster: &Arc<Cluster>,
        patience: Duration,
    ) -> anyhow::Result<()> {
        let token = {
            let cluster = Arc::clone(cluster);
            tokio::task::spawn_blocking(move || cluster.device_token(NAME)).await??
        };
        self.runs += 1;
        let args = WriterArgs {
            store: self.store.clone(),
            job: self.job,
            start: self.runs * 1_000_000,
            server: Some((cluster.edge_ws_url(), token)),
        };
        let mut child = Command::new(&self.program)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                let mut stdout = std::io::BufReader::new(stdout);
                let mut line = String::new();
                // Only whole lines: one cut short by the kill was never completely printed.
                while stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if let Some(whole) = line.strip_suffix('\n') {
                        lines
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(whole.to_owned());
                    }
                    line.clear();
                }
            })
        };
        let running = Running {
            child,
            lines,
            reader: Some(reader),
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let ready = running
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .first()
                .is_some_and(|l| l == "ready");
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the writer did not start");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.running = Some(running);
        Ok(())
    }

    /// SIGKILLs the writer, then reopens its store and checks that every edit it printed is
    /// there and that the database is intact.
    pub async fn kill_and_check(&mut self) -> anyhow::Result<WriterCheck> {
        let Some(mut running) = self.running.take() else {
            bail!("the writer is not running");
        };
        let lines = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
            // `Child::kill` sends SIGKILL on Unix.
            running.child.kill()?;
            running.child.wait()?;
            if let Some(reader) = running.reader.take() {
                let _ = reader.join();
            }
            let lines = running
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            Ok(lines)
        })
        .await??;
        let returned: Vec<u64> = lines
            .iter()
            .skip(1)
            .map(|l| l.parse::<u64>())
            .collect::<Result<_, _>>()
            .context("the writer printed something else than edit numbers")?;

        let device = Device::reopen(&self.store)
            .await
            .context("the killed device's store does not open")?;
        let job = device.job(self.job).await;
        device.close().await;
        let job = job.context("the killed device's store lost its job")?;
        let lost = returned.iter().filter(|n| !holds_edit(&job, **n)).count();
        let store = self.store.clone();
        let intact = tokio::task::spawn_blocking(move || {
            Store::open(&store, StoreConfig::default()).and_then(|s| s.integrity_check())
        })
        .await?
        .is_ok();
        Ok(WriterCheck {
            returned: returned.len(),
            lost,
            intact,
        })
    }
}
