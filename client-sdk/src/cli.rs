//! `fieldsync-tech`: a small technician app on the SDK, for the demo and manual testing.
//!
//! Everything lives in one store file (`--store`): the device identity written by `init`, the
//! jobs, and the server URL. Commands work offline; `sync` talks to the server. The binary only
//! parses arguments and calls [`run`], so tests drive the same code in-process.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use fieldsync_report_print::{Language, PrintOptions, Zone};
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{PartDraft, PartUpdate};
use fieldsync_shared::job::{
    BillingMode, Handover, Labour, PartLineId, SignatureMark, Survey, Training, Travel,
};
use fieldsync_shared::report::AckDraft;
use fieldsync_shared::time::{Money, Timestamp};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::{
    AckStatus, ConnectError, Device, DeviceConfig, Event, Handoff, JobEdit, JobStatus, SyncOptions,
    SyncState, TokenError, now,
};

/// The app setting that holds the server's WebSocket URL.
const SERVER_URL: &str = "server_url";

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync-tech",
    version,
    about = "A technician's device on the command line: jobs offline, sync when a server is reachable"
)]
pub struct Cli {
    /// The device's store file (created by `init`).
    #[arg(
        long,
        env = "FIELDSYNC_TECH_STORE",
        default_value = "fieldsync-tech.sqlite"
    )]
    pub store: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the device: store, key pair (the secret never leaves the device), identity.
    /// Prints the public key file to enroll with `fieldsync device enroll --public-key`.
    Init {
        #[arg(long)]
        device: String,
        #[arg(long)]
        technician: String,
        /// The secret key file (default: next to the store, `<store>.key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The server's sync endpoint, e.g. ws://127.0.0.1:3030/sync.
        #[arg(long)]
        server: Option<String>,
        /// The technician's assignment index URL (otherwise asked of the server).
        #[arg(long)]
        index: Option<String>,
    },
    /// List the jobs assigned to this technician.
    Jobs,
    /// Show a job, its sync status, acknowledgement and what it still lacks.
    Show { job: String },
    /// Record fields of a job.
    Edit(Box<EditArgs>),
    /// Parts used on a job.
    Part {
        #[command(subcommand)]
        command: PartCommand,
    },
    /// The service report the customer reads before signing: text on stdout, and the PDF
    /// with --pdf.
    Preview(PreviewArgs),
    /// Take the customer's acknowledgement, signed by this device.
    Ack(AckArgs),
    /// Mark the job complete (refused with every missing item if it is not).
    Complete { job: String },
    /// Sync with the server: until interrupted, or with --once until everything is synced.
    Sync(SyncArgs),
}

/// A time: RFC 3339 (`2026-11-03T09:00:00Z`) or `now`.
fn time(s: &str) -> Result<Timestamp, String> {
    if s == "now" {
        Ok(now())
    } else {
        s.parse::<Timestamp>().map_err(|e| e.to_string())
    }
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The job: its id, `automerge:` URL, or a unique prefix of an assigned job's id.
    pub job: String,
    /// R3: the appointment agreed with the customer.
    #[arg(long, value_parser = time)]
    pub appointment: Option<Timestamp>,
    /// R2: arrival on site (`now` works).
    #[arg(long, value_parser = time)]
    pub arrival: Option<Timestamp>,
    /// R32: record the site safety briefing with these notes.
    #[arg(long)]
    pub safety_briefing: Option<String>,
    /// R16: record the training of the customer's staff: one person (name or role) who was
    /// trained; repeat for each. With --training-topics.
    #[arg(long, value_name = "NAME_OR_ROLE", requires = "training_topics")]
    pub trained: Vec<String>,
    /// R16: what the training covered (with --trained).
    #[arg(long, requires = "trained")]
    pub training_topics: Option<String>,
    /// R16: when the training was given (default now).
    #[arg(long, value_parser = time, requires = "trained")]
    pub training_at: Option<Timestamp>,
    /// R7.
    #[arg(long)]
    pub fault_cause: Option<String>,
    #[arg(long)]
    pub fault_category: Option<String>,
    /// R7.
    #[arg(long)]
    pub solution: Option<String>,
    /// Labour minutes (with --labour-rate, minor units per hour).
    #[arg(long, requires = "labour_rate")]
    pub labour_minutes: Option<u32>,
    #[arg(long, requires = "labour_minutes")]
    pub labour_rate: Option<i64>,
    /// Travel distance in metres (with --travel-cost, minor units).
    #[arg(long, requires = "travel_cost")]
    pub travel_m: Option<u32>,
    #[arg(long, requires = "travel_m")]
    pub travel_cost: Option<i64>,
    /// R10: warranty or billable.
    #[arg(long)]
    pub billing: Option<String>,
    #[arg(long)]
    pub invoice: Option<String>,
    /// R5: items taken back (with --handover-reason and --handover-signer).
    #[arg(long, requires_all = ["handover_reason", "handover_signer"])]
    pub handover_items: Option<String>,
    #[arg(long)]
    pub handover_reason: Option<String>,
    #[arg(long)]
    pub handover_signer: Option<String>,
    #[arg(long, value_parser = time)]
    pub handover_promised: Option<Timestamp>,
    /// R7: the customer's opinion.
    #[arg(long)]
    pub opinion: Option<String>,
    /// Replace the free notes.
    #[arg(long)]
    pub notes: Option<String>,
    /// Append to the free notes.
    #[arg(long)]
    pub append_notes: Option<String>,
    /// R11: check out with the desk, with this note.
    #[arg(long)]
    pub check_out: Option<String>,
    /// Withdraw a completion request.
    #[arg(long)]
    pub reopen: bool,
}

#[derive(Debug, Subcommand)]
pub enum PartCommand {
    /// Add a part line; prints its id.
    Add {
        job: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        number: String,
        #[arg(long, default_value = "")]
        spec: String,
        #[arg(long, default_value_t = 1)]
        quantity: u32,
        /// Unit price in minor units (cents, fen).
        #[arg(long, default_value_t = 0)]
        price: i64,
        /// Replaced free under warranty (R10, R18).
        #[arg(long)]
        warranty: bool,
    },
    /// Change the quantity of a part line.
    Quantity {
        job: String,
        line: String,
        quantity: u32,
    },
    /// Remove a part line.
    Remove { job: String, line: String },
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    pub job: String,
    /// Write the PDF to this file.
    #[arg(long)]
    pub pdf: Option<PathBuf>,
    /// zh (Chinese) or en (English).
    #[arg(long, default_value = "zh", value_parser = language)]
    pub lang: Language,
    /// The time zone times are shown in: Asia/Shanghai, UTC, or an offset like +08:00.
    #[arg(long, default_value = "Asia/Shanghai", value_parser = zone)]
    pub zone: Zone,
}

fn language(s: &str) -> Result<Language, String> {
    Language::parse(s).ok_or_else(|| format!("{s:?}: use zh or en"))
}

fn zone(s: &str) -> Result<Zone, String> {
    Zone::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct AckArgs {
    pub job: String,
    /// The name of the customer who signs.
    #[arg(long)]
    pub signer: String,
    /// The signature as strokes, JSON `[[[x,y],…],…]` (default: one short stroke).
    #[arg(long, conflicts_with = "image")]
    pub strokes: Option<String>,
    /// The signature or stamp as a PNG file.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// When the customer signed (default now).
    #[arg(long, value_parser = time)]
    pub at: Option<Timestamp>,
    /// R9 survey: the customer's score of the technician's attitude, 1 (poor) to 5
    /// (excellent). A score left out is recorded as not answered, never as a default.
    #[arg(long)]
    pub attitude: Option<u8>,
    /// R9: technical skill, 1 to 5 (left out: not answered).
    #[arg(long)]
    pub skill: Option<u8>,
    /// R9: punctuality, 1 to 5 (left out: not answered).
    #[arg(long)]
    pub punctuality: Option<u8>,
    /// R9: the service items, 1 to 5 (left out: not answered).
    #[arg(long)]
    pub service_items: Option<u8>,
    /// R9: the customer's suggestions.
    #[arg(long, default_value = "")]
    pub suggestions: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Sync until everything is synced, then exit.
    #[arg(long)]
    pub once: bool,
    /// The server's sync endpoint (remembered in the store).
    #[arg(long)]
    pub server: Option<String>,
    /// A device token (`fieldsync device token --device …`).
    #[arg(long, env = "FIELDSYNC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A shell command that prints a fresh token; run whenever the server wants a new one.
    #[arg(long, env = "FIELDSYNC_TOKEN_COMMAND")]
    pub token_command: Option<String>,
    /// For a wss:// server: trust only the CA certificate(s) in this PEM file (the branch's
    /// own CA) instead of the system's trust store.
    #[arg(long, env = "FIELDSYNC_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// With --once: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    if let Command::Init {
        device,
        technician,
        key,
        server,
        index,
    } = cli.command
    {
        return init(cli.store, device, technician, key, server, index, out).await;
    }
    let device = Device::reopen(&cli.store)
        .await
        .with_context(|| format!("cannot open the device store {}", cli.store.display()))?;
    let result = command(&device, cli.command, out).await;
    device.close().await;
    result
}

async fn init(
    store: PathBuf,
    device: String,
    technician: String,
    key: Option<PathBuf>,
    server: Option<String>,
    index: Option<String>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let key = key.unwrap_or_else(|| store.with_extension("key"));
    let mut config = DeviceConfig::new(
        &store,
        &key,
        DeviceId::new(device)?,
        TechnicianId::new(technician)?,
    );
    config.assignment_index = index.as_deref().map(parse_id).transpose()?;
    let device = Device::open(config).await?;
    if let Some(url) = &server {
        device.set_setting(SERVER_URL, url.clone()).await?;
    }
    let public = key.with_extension("pub");
    device.public_key().save(&public)?;
    let report = json!({
        "device_id": device.device_id(),
        "technician": device.technician(),
        "store": store,
        "secret_key_file": key,
        "public_key_file": public,
        "key_id": device.public_key().id().as_str(),
        "enroll": format!(
            "fieldsync device enroll --technician {} --device {} --public-key {}",
            device.technician(), device.device_id(), public.display()
        ),
    });
    device.close().await;
    print_json(out, &report)
}

async fn command(
    device: &Device,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        Command::Init { .. } => unreachable!("handled before the device opens"),
        Command::Jobs => {
            let jobs = device.jobs().await;
            if jobs.is_empty() {
                writeln!(out, "no jobs on this device yet (run `sync`)")?;
            }
            for entry in jobs {
                let status = status_word(&entry.status);
                match entry.job {
                    Some(job) => writeln!(
                        out,
                        "{}  {:<10} {} / {} {}: {}  [{}]",
                        entry.id,
                        job.kind.as_str(),
                        job.customer.name,
                        job.product.model,
                        job.product.serial,
                        job.request.fault_description,
                        status
                    )?,
                    None => writeln!(out, "{}  (not received yet)", entry.id)?,
                }
            }
            Ok(())
        }
        Command::Show { job } => {
            let id = resolve(device, &job).await?;
            let value = show(device, id).await?;
            print_json(out, &value)
        }
        Command::Edit(args) => {
            let id = resolve(device, &args.job).await?;
            let edits = edits(device, *args)?;
            if edits.is_empty() {
                bail!("nothing to record: give at least one field (see --help)");
            }
            device.edit_all(id, edits).await?;
            print_json(
                out,
                &json!({ "job": id, "status": status_json(&device.job_status(id).await?) }),
            )
        }
        Command::Part { command } => match command {
            PartCommand::Add {
                job,
                name,
                number,
                spec,
                quantity,
                price,
                warranty,
            } => {
                let id = resolve(device, &job).await?;
                let draft = PartDraft {
                    part_number: number,
                    name,
                    specification: spec,
                    quantity,
                    unit_price: Money(price),
                    warranty,
                };
                let line = device.add_part(id, draft).await?;
                print_json(out, &json!({ "job": id, "line": line }))
            }
            PartCommand::Quantity {
                job,
                line,
                quantity,
            } => {
                let id = resolve(device, &job).await?;
                let line = resolve_line(device, id, &line).await?;
                let update = PartUpdate {
                    quantity: Some(quantity),
                    ..PartUpdate::default()
                };
                device
                    .edit(
                        id,
                        JobEdit::UpdatePart {
                            id: line.clone(),
                            update,
                        },
                    )
                    .await?;
                print_json(
                    out,
                    &json!({ "job": id, "line": line, "quantity": quantity }),
                )
            }
            PartCommand::Remove { job, line } => {
                let id = resolve(device, &job).await?;
                let line = resolve_line(device, id, &line).await?;
                device.edit(id, JobEdit::RemovePart(line.clone())).await?;
                print_json(out, &json!({ "job": id, "removed": line }))
            }
        },
        Command::Preview(args) => {
            let id = resolve(device, &args.job).await?;
            let printed = device
                .preview(id, PrintOptions::new(args.lang, args.zone))
                .await?;
            if let Some(path) = &args.pdf {
                std::fs::write(path, &printed.pdf)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            out.write_all(printed.text.as_bytes())?;
            Ok(())
        }
        Command::Ack(args) => {
            let id = resolve(device, &args.job).await?;
            let signature = match (&args.strokes, &args.image) {
                (_, Some(path)) => SignatureMark::Image {
                    mime: "image/png".into(),
                    data: std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                },
                (Some(strokes), None) => SignatureMark::Strokes {
                    strokes: serde_json::from_str(strokes)
                        .context("--strokes must be JSON [[[x,y],…],…]")?,
                },
                (None, None) => SignatureMark::Strokes {
                    strokes: vec![vec![[0, 0], [12, 6], [24, 2]]],
                },
            };
            let draft = AckDraft {
                signer_name: args.signer,
                signature,
                signed_at: args.at.unwrap_or_else(now),
                survey: Survey {
                    attitude: args.attitude,
                    skill: args.skill,
                    punctuality: args.punctuality,
                    service_items: args.service_items,
                    suggestions: args.suggestions,
                },
            };
            let ack = device.acknowledge(id, draft).await?;
            print_json(
                out,
                &json!({
                    "job": id,
                    "signer_name": ack.signer_name,
                    "job_digest": ack.job_digest,
                    "heads": ack.heads,
                    "device_signature": ack.device_signature,
                }),
            )
        }
        Command::Complete { job } => {
            let id = resolve(device, &job).await?;
            device.request_completion(id).await?;
            print_json(
                out,
                &json!({ "job": id, "completion_requested": true, "status": status_json(&device.job_status(id).await?) }),
            )
        }
        Command::Sync(args) => sync(device, args, out).await,
    }
}

fn edits(device: &Device, a: EditArgs) -> anyhow::Result<Vec<JobEdit>> {
    let me = device.technician().clone();
    let mut edits = Vec::new();
    if let Some(at) = a.appointment {
        edits.push(JobEdit::Appointment(Some(at)));
    }
    if let Some(at) = a.arrival {
        edits.push(JobEdit::Arrival(Some(at)));
    }
    if let Some(notes) = a.safety_briefing {
        edits.push(JobEdit::SafetyBriefing(
            fieldsync_shared::job::SafetyBriefing {
                at: now(),
                by: me.clone(),
                notes,
            },
        ));
    }
    if let Some(topics) = a.training_topics {
        edits.push(JobEdit::Training(Training {
            at: a.training_at.unwrap_or_else(now),
            by: me.clone(),
            trainees: a.trained,
            topics,
        }));
    }
    if let Some(s) = a.fault_cause {
        edits.push(JobEdit::FaultCause(Some(s)));
    }
    if let Some(s) = a.fault_category {
        edits.push(JobEdit::FaultCategory(Some(s)));
    }
    if let Some(s) = a.solution {
        edits.push(JobEdit::Solution(Some(s)));
    }
    if let (Some(minutes), Some(rate)) = (a.labour_minutes, a.labour_rate) {
        edits.push(JobEdit::Labour(Labour {
            minutes,
            rate_per_hour: Money(rate),
        }));
    }
    if let (Some(distance_m), Some(cost)) = (a.travel_m, a.travel_cost) {
        edits.push(JobEdit::Travel(Travel {
            distance_m,
            cost: Money(cost),
        }));
    }
    if let Some(mode) = a.billing {
        let mode = BillingMode::parse(&mode)
            .ok_or_else(|| anyhow!("--billing must be warranty or billable, not {mode:?}"))?;
        edits.push(JobEdit::BillingMode(mode));
    }
    if let Some(s) = a.invoice {
        edits.push(JobEdit::InvoiceNumber(Some(s)));
    }
    if let (Some(items), Some(reason), Some(signer)) =
        (a.handover_items, a.handover_reason, a.handover_signer)
    {
        edits.push(JobEdit::Handover(Handover {
            items,
            reason,
            promised_completion: a.handover_promised,
            taken_at: now(),
            technician: me.clone(),
            customer_signer: signer,
        }));
    }
    if let Some(s) = a.opinion {
        edits.push(JobEdit::CustomerOpinion(Some(s)));
    }
    if let Some(s) = a.notes {
        edits.push(JobEdit::Notes(s));
    }
    if let Some(s) = a.append_notes {
        edits.push(JobEdit::AppendNotes(s));
    }
    if let Some(note) = a.check_out {
        edits.push(JobEdit::CheckOut(fieldsync_shared::job::CheckOut {
            at: now(),
            by: me,
            note,
        }));
    }
    if a.reopen {
        edits.push(JobEdit::Reopen);
    }
    Ok(edits)
}

async fn show(device: &Device, id: DocumentId) -> anyhow::Result<Value> {
    let job = device.job(id).await?;
    let status = device.job_status(id).await?;
    let ack = match device.acknowledgement_status(id).await? {
        AckStatus::None => json!({ "state": "none" }),
        AckStatus::Matches(a) => json!({ "state": "matches", "signer_name": a.signer_name }),
        AckStatus::Stale {
            acknowledgement,
            changed,
        } => json!({
            "state": "stale",
            "signer_name": acknowledgement.signer_name,
            "changed": changed,
        }),
    };
    let missing = device.missing(id).await?;
    Ok(json!({
        "id": id,
        "url": id.url(),
        "status": status_json(&status),
        "acknowledgement": ack,
        "missing": missing,
        "conflicts": device.conflicts(id).await?,
        "job": job,
    }))
}

fn status_word(status: &JobStatus) -> String {
    if let Some(handoff) = &status.unassigned {
        return match handoff {
            Handoff::Pending => "unassigned: local changes wait to be handed to the desk".into(),
            Handoff::HandedToDesk { changes: 0, .. } => {
                "unassigned: the server had every change".into()
            }
            Handoff::HandedToDesk { changes, .. } => {
                format!("unassigned: {changes} changes handed to the desk")
            }
            Handoff::Refused { code, message } => {
                format!("unassigned: the server refused the local changes ({code}: {message})")
            }
        };
    }
    match (status.unsynced, status.last_synced) {
        (true, _) => "unsynced changes".into(),
        (false, Some(at)) => format!("synced {at}"),
        (false, None) => "synced".into(),
    }
}

fn status_json(status: &JobStatus) -> Value {
    let mut json = json!({
        "unsynced": status.unsynced,
        "last_synced": status.last_synced,
        "heads": status.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if let Some(handoff) = &status.unassigned {
        json["unassigned"] = serde_json::to_value(handoff).unwrap_or(Value::Null);
        // Never called synced: what the server never received went to the desk.
        json["last_synced"] = Value::Null;
    }
    json
}

fn print_json(out: &mut (dyn Write + Send), value: &Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn parse_id(s: &str) -> anyhow::Result<DocumentId> {
    s.parse::<DocumentId>()
        .or_else(|_| DocumentId::from_url(s))
        .map_err(|e| anyhow!("{s:?} is not a document id or automerge: URL: {e}"))
}

/// A job named by id, URL, or a unique prefix of a job on the device.
async fn resolve(device: &Device, s: &str) -> anyhow::Result<DocumentId> {
    if let Ok(id) = parse_id(s) {
        return Ok(id);
    }
    let matches: Vec<DocumentId> = device
        .jobs()
        .await
        .into_iter()
        .map(|j| j.id)
        .filter(|id| id.to_string().starts_with(s))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no job on this device matches {s:?} (see `jobs`)"),
        _ => bail!("{s:?} matches {} jobs; give more of the id", matches.len()),
    }
}

/// A part line named by id or a unique prefix.
async fn resolve_line(device: &Device, job: DocumentId, s: &str) -> anyhow::Result<PartLineId> {
    let parts = device.job(job).await?.parts;
    let matches: Vec<&PartLineId> = parts
        .iter()
        .map(|p| &p.id)
        .filter(|id| id.0.starts_with(s))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("job {job} has no part line {s:?}"),
        _ => bail!(
            "{s:?} matches {} part lines; give more of the id",
            matches.len()
        ),
    }
}

/// A token source that runs a shell command and reads the token from its output.
fn command_source(command: String) -> impl Fn() -> crate::TokenFuture + Send + Sync {
    let command = Arc::new(command);
    move || {
        let command = Arc::clone(&command);
        Box::pin(async move {
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(command.as_str())
                    .output()
            })
            .await
            .map_err(|e| TokenError::Unavailable(e.to_string()))?
            .map_err(|e| TokenError::Unavailable(format!("cannot run the token command: {e}")))?;
            if !output.status.success() {
                return Err(TokenError::Unavailable(format!(
                    "the token command failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if token.is_empty() {
                return Err(TokenError::Unavailable(
                    "the token command printed nothing".into(),
                ));
            }
            Ok(token)
        })
    }
}

async fn sync(device: &Device, args: SyncArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let url = match args.server {
        Some(url) => {
            device.set_setting(SERVER_URL, url.clone()).await?;
            url
        }
        None => device
            .setting(SERVER_URL)
            .await?
            .context("no server URL: give --server (it is remembered)")?,
    };
    let mut options = SyncOptions::new(url, String::new());
    if let Some(ca_file) = &args.ca_file {
        options = options.with_ca_file(ca_file)?;
    }
    options.token = args.token;
    if let Some(command) = args.token_command {
        options = options.with_renewal(command_source(command));
    }
    if options.token.is_none() && options.renew.is_none() {
        bail!("no credentials: give --token (or FIELDSYNC_TOKEN) or --token-command");
    }
    let mut events = device.events();
    device.start_sync(options);
    if args.once {
        let done = tokio::time::timeout(
            Duration::from_secs(args.timeout),
            sync_once(device, &mut events),
        )
        .await;
        device.stop_sync();
        match done {
            Ok(result) => result?,
            Err(_) => bail!("not everything synced within {} s", args.timeout),
        }
        let jobs = device.jobs().await;
        let (assigned, unassigned): (Vec<_>, Vec<_>) =
            jobs.iter().partition(|j| j.status.unassigned.is_none());
        return print_json(
            out,
            &json!({
                "synced": true,
                "jobs": assigned.iter().map(|j| json!({ "id": j.id, "status": status_json(&j.status) })).collect::<Vec<_>>(),
                // Jobs taken off the technician: not synced, handed to the desk.
                "unassigned": unassigned.iter().map(|j| json!({ "id": j.id, "status": status_json(&j.status) })).collect::<Vec<_>>(),
            }),
        );
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    writeln!(out, "{}", event_json(&event))?;
                    if let Event::Sync(SyncState::Refused { code, reason }) = event {
                        bail!("the server refused the device ({code}): {reason}");
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    writeln!(out, "{}", json!({ "event": "lagged", "missed": n }))?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => {
                device.stop_sync();
                return Ok(());
            }
        }
    }
}

/// Waits until connected and every assigned job is on the device with nothing unsynced, and
/// a second passed with no event (so changes still arriving are not cut off). A job whose
/// access was withdrawn stays unsynced, so `--once` then ends with its timeout.
async fn sync_once(device: &Device, events: &mut broadcast::Receiver<Event>) -> anyhow::Result<()> {
    let mut connected = false;
    loop {
        match device.sync_state() {
            SyncState::Refused { code, reason } => {
                bail!("the server refused the device ({code}): {reason}")
            }
            SyncState::Connected => connected = true,
            // The device retries a TLS failure (a hotel network's portal can cause one), but
            // one who asked for a single sync wants to hear about a wrong CA file now.
            SyncState::Disconnected { reason, .. }
                if !connected && ConnectError::is_tls_reason(&reason) =>
            {
                bail!("cannot sync: {reason}")
            }
            _ => {}
        }
        let quiet = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            event = events.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = event {
                    bail!("the device closed");
                }
                continue;
            }
            _ = quiet => {}
        }
        if !connected {
            continue;
        }
        // The index, when known, must have arrived too, or its jobs are not listed yet.
        let index_here = match device.assignment_index().await {
            Some(index) => device.job_status(index).await.is_ok(),
            None => true,
        };
        let jobs = device.jobs().await;
        // A job taken off the technician is settled once the server answered its handover.
        let settled = index_here
            && jobs.iter().all(|j| match &j.status.unassigned {
                Some(handoff) => *handoff != Handoff::Pending,
                None => j.job.is_some() && !j.status.unsynced,
            });
        if settled {
            return Ok(());
        }
    }
}

fn event_json(event: &Event) -> Value {
    match event {
        Event::DocChanged { doc, origin } => {
            json!({ "event": "changed", "doc": doc, "origin": format!("{origin:?}").to_lowercase() })
        }
        Event::JobAssigned { job } => json!({ "event": "assigned", "job": job }),
        Event::JobUnassigned { job } => json!({ "event": "unassigned", "job": job }),
        Event::JobHandedOver { job, changes } => {
            json!({ "event": "handed_over", "job": job, "changes": changes })
        }
        Event::HandoffRefused { job, code, message } => {
            json!({ "event": "handoff_refused", "job": job, "code": code, "message": message })
        }
        Event::DocUnavailable { doc } => json!({ "event": "unavailable", "doc": doc }),
        Event::Synced { doc } => json!({ "event": "synced", "doc": doc }),
        Event::ReportSigned { job, report_id } => {
            json!({ "event": "report_signed", "job": job, "report_id": report_id })
        }
        Event::ReportRefused { job, reasons } => {
            json!({ "event": "report_refused", "job": job, "reasons": reasons })
        }
        Event::Sync(state) => json!({ "event": "sync", "state": format!("{state:?}") }),
    }
}
