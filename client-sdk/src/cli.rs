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
use fieldsync_shared::job::doc::{Chosen, PartDraft, PartUpdate};
use fieldsync_shared::job::{
    BillingMode, Handover, Job, Labour, PartLineId, ReportOutcome, SignatureMark, Survey, Training,
    Travel,
};
use fieldsync_shared::report::AckDraft;
use fieldsync_shared::time::{Money, Timestamp};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::{
    AckStatus, Approval, ApprovalDraft, ApprovalKind, AttachmentKind, ClientTls, Device,
    DeviceConfig, Event, Handoff, JobEdit, JobStatus, SyncOptions, SyncState, TokenError,
    TravelExpense, now,
};

/// The app setting that holds the server's WebSocket URL.
const SERVER_URL: &str = "server_url";
/// The app setting that holds the device's time zone (`init --zone`).
const ZONE: &str = "zone";

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
    /// The time zone times are shown in: Asia/Shanghai, UTC, or an offset like +08:00.
    /// Default: the one `init --zone` kept in the store, else Asia/Shanghai.
    #[arg(long, global = true, env = "FIELDSYNC_TECH_ZONE", value_parser = zone)]
    pub zone: Option<Zone>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the device: store, key pair (the secret never leaves the device), identity.
    /// With --code (a one-time code from the desk) and --server, the device enrolls itself
    /// over the network and receives its token; otherwise give --device and --technician and
    /// enroll the printed public key file with `fieldsync device enroll --public-key`.
    Init {
        /// The device id (not with --code: the server names the device).
        #[arg(long, required_unless_present = "code", conflicts_with = "code")]
        device: Option<String>,
        /// The technician (not with --code: the code names them).
        #[arg(long, required_unless_present = "code", conflicts_with = "code")]
        technician: Option<String>,
        /// The one-time enrollment code the desk issued (`POST /api/enrollment-codes`,
        /// `fieldsync device code`).
        #[arg(long, requires = "server")]
        code: Option<String>,
        /// The secret key file (default: next to the store, `<store>.key`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The server's sync endpoint, e.g. ws://127.0.0.1:3030/sync.
        #[arg(long)]
        server: Option<String>,
        /// The technician's assignment index URL (otherwise asked of the server).
        #[arg(long)]
        index: Option<String>,
        /// For a wss:// server: trust only the CA certificate(s) in this PEM file.
        #[arg(long, env = "FIELDSYNC_CA_FILE")]
        ca_file: Option<PathBuf>,
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
    /// What a merge left unresolved (issue 15): with no group, list it; `work`, `part LINE`
    /// or `duplicate NUMBER --keep LINE,...` resolve one group together, keeping every value
    /// as it reads now unless given. Works offline; the resolution goes with the next sync.
    Resolve(Box<ResolveArgs>),
    /// Approvals from the desk (R12 extension or other solution, R18 warranty-claim part,
    /// R31 product return): ask, and see the decisions. Works offline; the request goes with
    /// the next sync.
    Approval {
        #[command(subcommand)]
        command: ApprovalCommand,
    },
    /// Attach a photo (before/after the work), a receipt or a signature image to a job,
    /// offline too: the file is kept on the device under its SHA-256 and uploaded on the
    /// next sync. Prints the reference the job now holds.
    Attach {
        job: String,
        file: PathBuf,
        /// before, after, receipt or signature.
        #[arg(long, value_parser = attachment_kind)]
        kind: AttachmentKind,
    },
}

fn attachment_kind(s: &str) -> Result<AttachmentKind, String> {
    AttachmentKind::parse(s)
        .ok_or_else(|| format!("{s:?}: use before, after, receipt or signature"))
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Ask for an approval; prints the request's id.
    Request {
        job: String,
        /// extension (R12), other-solution (R12), warranty-part (R18), product-return (R31).
        #[arg(long, value_parser = approval_kind)]
        kind: ApprovalKind,
        /// Why: what the manager judges by.
        #[arg(long)]
        reason: String,
        /// R18: the warranty-claim part's amount, e.g. 2500.00 (required for warranty-part).
        #[arg(long, value_parser = money)]
        amount: Option<Money>,
    },
    /// R28: claim a travel expense of the job, approved at the desk, with its receipt photo.
    Expense {
        job: String,
        /// The day of travel, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// train, bus, taxi, lodging, meals…
        #[arg(long)]
        category: String,
        /// e.g. 120.50
        #[arg(long, value_parser = money)]
        amount: Money,
        #[arg(long)]
        reason: String,
        /// The receipt: a photo file (attached to the job as a receipt now) or the SHA-256
        /// of a receipt already attached.
        #[arg(long)]
        receipt: Option<String>,
    },
    /// The job's approval requests and the desk's decisions.
    List { job: String },
}

fn approval_kind(s: &str) -> Result<ApprovalKind, String> {
    match ApprovalKind::parse(&s.replace('-', "_")) {
        Some(ApprovalKind::TravelExpense) => {
            Err("a travel expense (R28) is claimed with `approval expense`".into())
        }
        Some(kind) => Ok(kind),
        None => Err(format!(
            "{s:?}: use extension, other-solution, warranty-part or product-return"
        )),
    }
}

/// An amount as written: 2500 or 2500.50.
fn money(s: &str) -> Result<Money, String> {
    Money::parse_decimal(s)
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

#[derive(Debug, Args)]
pub struct ResolveArgs {
    pub job: String,
    #[command(subcommand)]
    pub group: Option<ResolveGroup>,
}

#[derive(Debug, Subcommand)]
pub enum ResolveGroup {
    /// Fault cause, category, solution and labour, resolved together (R7, R10).
    Work {
        #[arg(long)]
        cause: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        solution: Option<String>,
        /// Labour minutes.
        #[arg(long)]
        minutes: Option<u32>,
        /// Labour rate per hour in minor units (cents, fen).
        #[arg(long)]
        rate: Option<i64>,
    },
    /// A part line's number, quantity, unit price and warranty, resolved together (R10).
    Part {
        line: String,
        #[arg(long)]
        number: Option<String>,
        #[arg(long)]
        quantity: Option<u32>,
        /// Unit price in minor units (cents, fen).
        #[arg(long)]
        price: Option<i64>,
        #[arg(long)]
        warranty: Option<bool>,
    },
    /// A part number possibly added twice: which of its lines to keep (the others are
    /// removed); --keep-all confirms they are separate parts.
    Duplicate {
        number: String,
        #[arg(long, value_delimiter = ',', required_unless_present = "keep_all")]
        keep: Vec<String>,
        #[arg(long, conflicts_with = "keep")]
        keep_all: bool,
    },
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
    /// Make --server the remembered server (otherwise a --server that differs from the
    /// remembered one is used for this sync only).
    #[arg(long, requires = "server")]
    pub remember: bool,
    /// With --once: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    if let Command::Init {
        device,
        technician,
        code,
        key,
        server,
        index,
        ca_file,
    } = cli.command
    {
        let key = key.unwrap_or_else(|| cli.store.with_extension("key"));
        let device = match (code, device, technician) {
            (Some(code), _, _) => {
                let server = server.context("--code needs --server")?;
                init_with_code(cli.store, key, server, code, ca_file, out).await?
            }
            (None, Some(device), Some(technician)) => {
                init(cli.store, device, technician, key, server, index, out).await?
            }
            _ => bail!("give --code and --server, or --device and --technician"),
        };
        if let Some(zone) = &cli.zone {
            device.set_setting(ZONE, zone.name().to_owned()).await?;
        }
        device.close().await;
        return Ok(());
    }
    let device = Device::reopen(&cli.store)
        .await
        .with_context(|| format!("cannot open the device store {}", cli.store.display()))?;
    let zone = match cli.zone {
        Some(zone) => zone,
        None => match device.setting(ZONE).await? {
            Some(name) => Zone::parse(&name).unwrap_or_else(|_| Zone::china()),
            None => Zone::china(),
        },
    };
    let result = command(&device, cli.command, &zone, out).await;
    device.close().await;
    result
}

/// Whom to trust for a `wss://` server: the CA file if given, else the system's store.
fn client_tls(ca_file: Option<&PathBuf>) -> anyhow::Result<ClientTls> {
    Ok(match ca_file {
        Some(path) => ClientTls::from_ca_file(path)?,
        None => ClientTls::system(),
    })
}

async fn init_with_code(
    store: PathBuf,
    key: PathBuf,
    server: String,
    code: String,
    ca_file: Option<PathBuf>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Device> {
    let tls = client_tls(ca_file.as_ref())?;
    let (device, enrollment) = Device::enroll_with_code(&store, &key, &server, &tls, &code).await?;
    device.set_setting(SERVER_URL, server.clone()).await?;
    let report = json!({
        "enrolled": true,
        "device_id": device.device_id(),
        "technician": device.technician(),
        "branch_id": enrollment.branch_id,
        "server": server,
        "store": store,
        "secret_key_file": key,
        "key_id": device.public_key().id().as_str(),
        "token_valid_until": enrollment.token.valid_until.to_string(),
        "next": "fieldsync-tech sync: the token is kept in the store and renewed with the device key",
    });
    print_json(out, &report)?;
    Ok(device)
}

async fn init(
    store: PathBuf,
    device: String,
    technician: String,
    key: PathBuf,
    server: Option<String>,
    index: Option<String>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Device> {
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
    print_json(out, &report)?;
    Ok(device)
}

async fn command(
    device: &Device,
    command: Command,
    zone: &Zone,
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
                let status = state_words(device, entry.id, entry.job.as_ref(), &entry.status, zone)
                    .await
                    .join("; ");
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
            let value = show(device, id, zone).await?;
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
                &json!({ "job": id, "status": status_json(&device.job_status(id).await?, zone) }),
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
        Command::Attach { job, file, kind } => {
            let id = resolve(device, &job).await?;
            let attached = device.attach_file(id, &file, kind, now()).await?;
            print_json(
                out,
                &json!({
                    "job": id,
                    "digest": attached.digest,
                    "kind": attached.kind.as_str(),
                    "media_type": attached.media_type,
                    "size": attached.size,
                    "name": attached.name,
                    "pending_upload": true,
                }),
            )
        }
        Command::Preview(args) => {
            let id = resolve(device, &args.job).await?;
            let printed = device
                .preview(id, PrintOptions::new(args.lang, zone.clone()))
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
                &json!({ "job": id, "completion_requested": true, "status": status_json(&device.job_status(id).await?, zone) }),
            )
        }
        Command::Sync(args) => sync(device, args, zone, out).await,
        Command::Resolve(args) => resolve_merge(device, *args, out).await,
        Command::Approval { command } => match command {
            ApprovalCommand::Request {
                job,
                kind,
                reason,
                amount,
            } => {
                let id = resolve(device, &job).await?;
                let approval = device
                    .request_approval(
                        id,
                        ApprovalDraft {
                            kind,
                            reason,
                            amount,
                            expense: None,
                        },
                    )
                    .await?;
                let mut value = approval_json(&approval, zone);
                value["job"] = json!(id);
                print_json(out, &value)
            }
            ApprovalCommand::Expense {
                job,
                date,
                from,
                to,
                category,
                amount,
                reason,
                receipt,
            } => {
                let id = resolve(device, &job).await?;
                let receipt = match receipt {
                    None => None,
                    Some(r) if fieldsync_shared::job::attachments::is_blob_digest(&r) => Some(r),
                    Some(path) => Some(
                        device
                            .attach_file(
                                id,
                                std::path::Path::new(&path),
                                AttachmentKind::Receipt,
                                now(),
                            )
                            .await?
                            .digest,
                    ),
                };
                let date = date
                    .parse()
                    .map_err(|e| anyhow!("--date {date:?}: {e} (expected YYYY-MM-DD)"))?;
                let approval = device
                    .request_approval(
                        id,
                        ApprovalDraft {
                            kind: ApprovalKind::TravelExpense,
                            reason,
                            amount: Some(amount),
                            expense: Some(TravelExpense {
                                date,
                                from,
                                to,
                                category,
                                receipt,
                            }),
                        },
                    )
                    .await?;
                let mut value = approval_json(&approval, zone);
                value["job"] = json!(id);
                print_json(out, &value)
            }
            ApprovalCommand::List { job } => {
                let id = resolve(device, &job).await?;
                let approvals = device.approvals(id).await?;
                print_json(
                    out,
                    &json!({
                        "job": id,
                        "approvals": approvals.iter().map(|a| approval_json(a, zone)).collect::<Vec<_>>(),
                    }),
                )
            }
        },
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

async fn show(device: &Device, id: DocumentId, zone: &Zone) -> anyhow::Result<Value> {
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
    let state = state_words(device, id, Some(&job), &status, zone).await;
    let mut job = serde_json::to_value(&job)?;
    readable(&mut job, zone);
    Ok(json!({
        "id": id,
        "url": id.url(),
        "state": state,
        "status": status_json(&status, zone),
        "acknowledgement": ack,
        "missing": missing,
        "conflicts": device.conflicts(id).await?,
        "unresolved": device.unresolved(id).await?,
        "resolutions": device.resolutions(id).await?,
        "approvals": device.approvals(id).await?.iter().map(|a| approval_json(a, zone)).collect::<Vec<_>>(),
        "job": job,
        "zone": zone.name(),
    }))
}

/// The job's JSON as a person reads it: instants as RFC 3339 in the device's zone, money as
/// decimals (`140.00`), by the model's field names.
fn readable(value: &mut Value, zone: &Zone) {
    const INSTANTS: &[&str] = &[
        "at",
        "received_at",
        "requested_arrival",
        "appointment",
        "arrival",
        "promised_completion",
        "taken_at",
        "signed_at",
    ];
    const MONEY: &[&str] = &["unit_price", "rate_per_hour", "cost", "amount"];
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v.as_i64() {
                    Some(ms) if INSTANTS.contains(&key.as_str()) => {
                        *v = json!(zone.rfc3339(Timestamp::from_millis(ms)));
                    }
                    Some(minor) if MONEY.contains(&key.as_str()) => {
                        *v = json!(Money(minor).to_string());
                    }
                    _ => readable(v, zone),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| readable(v, zone)),
        _ => {}
    }
}

/// `extension (R12)`, `warranty part (R18)`…
fn kind_words(kind: ApprovalKind) -> String {
    format!("{} ({})", kind.as_str().replace('_', " "), kind.rule())
}

/// An approval request as a person reads it: kind and rule, amount as money, and where it
/// stands in words.
fn approval_json(a: &Approval, zone: &Zone) -> Value {
    let state = match &a.decision {
        None => "waiting for the desk's decision".to_owned(),
        Some(d) if d.approved => format!("approved by {} at {}", d.by, zone.rfc3339(d.at)),
        Some(d) => format!("refused by {} at {}", d.by, zone.rfc3339(d.at)),
    };
    json!({
        "id": a.id,
        "kind": a.kind.as_str(),
        "rule": a.kind.rule(),
        "reason": a.reason,
        "amount": a.amount.map(|m| m.to_string()),
        "travel": a.expense.as_ref().map(|e| json!({
            "date": e.date.to_string(), "from": e.from, "to": e.to, "category": e.category,
            "receipt": e.receipt,
        })),
        "requested_by": a.requested_by,
        "requested_at": zone.rfc3339(a.requested_at),
        "state": state,
        "note": a.decision.as_ref().map(|d| d.note.clone()),
    })
}

/// Where a job stands, in words, one item a phrase: sync, conflicts, approvals, the
/// customer's signature, the completion and the branch's answer.
async fn state_words(
    device: &Device,
    id: DocumentId,
    job: Option<&Job>,
    status: &JobStatus,
    zone: &Zone,
) -> Vec<String> {
    let mut words = vec![sync_words(status, zone)];
    let Some(job) = job else {
        words.push("not received from the server yet".into());
        return words;
    };
    for conflict in device.conflicts(id).await.unwrap_or_default() {
        let values: Vec<String> = conflict
            .values
            .iter()
            .map(|v| match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            })
            .collect();
        words.push(format!(
            "conflict: {} was set differently at the same time ({})",
            conflict.path,
            values.join(" / ")
        ));
    }
    for u in device.unresolved(id).await.unwrap_or_default() {
        words.push(match u.code {
            "possible_duplicate_part" => format!(
                "possible duplicate: {} (confirm with `resolve {} duplicate ...`)",
                u.message, id
            ),
            _ => format!(
                "unresolved conflict in {}: {}",
                u.group,
                u.fields.join(", ")
            ),
        });
    }
    for a in device.approvals(id).await.unwrap_or_default() {
        let amount = a.amount.map(|m| format!(", {m}")).unwrap_or_default();
        words.push(match &a.decision {
            None => format!(
                "waiting for approval: {}{amount}, asked {}",
                kind_words(a.kind),
                zone.rfc3339(a.requested_at)
            ),
            Some(d) => format!(
                "{} {}{amount} by {}{}",
                kind_words(a.kind),
                if d.approved { "approved" } else { "refused" },
                d.by,
                if d.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.note)
                }
            ),
        });
    }
    match device.acknowledgement_status(id).await {
        Ok(AckStatus::Matches(a)) => words.push(format!(
            "signed by the customer ({}) at {}",
            a.signer_name,
            zone.rfc3339(a.signed_at)
        )),
        Ok(AckStatus::Stale {
            acknowledgement,
            changed,
        }) => words.push(format!(
            "stale signature: the job changed after {} signed ({}): take the signature again",
            acknowledgement.signer_name,
            changed.join(", ")
        )),
        _ => {}
    }
    match (&job.report, &job.completion) {
        (Some(ReportOutcome::Signed { at, report_id, .. }), _) => words.push(format!(
            "report signed by the branch at {} (report {report_id})",
            zone.rfc3339(*at)
        )),
        (Some(ReportOutcome::Refused { at, reasons }), _) => words.push(format!(
            "refused by the branch at {}: {}",
            zone.rfc3339(*at),
            reasons
                .iter()
                .map(|r| format!("{} ({})", r.message, r.rule))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        (None, Some(c)) => words.push(format!(
            "completion requested at {}: waiting for the branch to sign",
            zone.rfc3339(c.at)
        )),
        (None, None) => {}
    }
    words
}

fn sync_words(status: &JobStatus, zone: &Zone) -> String {
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
        (true, Some(at)) => format!(
            "unsynced edits: not on the server yet (last synced {})",
            zone.rfc3339(at)
        ),
        (true, None) => "unsynced edits: not on the server yet".into(),
        (false, Some(at)) => format!("synced {}", zone.rfc3339(at)),
        (false, None) => "synced".into(),
    }
}

fn status_json(status: &JobStatus, zone: &Zone) -> Value {
    let mut json = json!({
        "unsynced": status.unsynced,
        "last_synced": status.last_synced.map(|t| zone.rfc3339(t)),
        "heads": status.heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if let Some(handoff) = &status.unassigned {
        json["unassigned"] = serde_json::to_value(handoff).unwrap_or(Value::Null);
        // Never called synced: what the server never received went to the desk.
        json["last_synced"] = Value::Null;
    }
    json
}

/// `resolve`: lists what a merge left unresolved, or resolves one group (issue 15).
async fn resolve_merge(
    device: &Device,
    args: ResolveArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let id = resolve(device, &args.job).await?;
    let open = device.unresolved(id).await?;
    let Some(group) = args.group else {
        return print_json(
            out,
            &json!({ "job": id, "unresolved": open, "resolutions": device.resolutions(id).await? }),
        );
    };
    let job = device.job(id).await?;
    let (name, chosen) = match group {
        ResolveGroup::Work {
            cause,
            category,
            solution,
            minutes,
            rate,
        } => (
            fieldsync_shared::job::doc::WORK.to_owned(),
            Chosen {
                fault_cause: cause,
                fault_category: category,
                solution,
                labour_minutes: minutes,
                labour_rate_per_hour: rate,
                ..Chosen::default()
            },
        ),
        ResolveGroup::Part {
            line,
            number,
            quantity,
            price,
            warranty,
        } => {
            let line = resolve_line(device, id, &line).await?;
            (
                fieldsync_shared::job::doc::part_group(&line),
                Chosen {
                    part_number: number,
                    quantity,
                    unit_price: price,
                    warranty,
                    ..Chosen::default()
                },
            )
        }
        ResolveGroup::Duplicate {
            number,
            keep,
            keep_all,
        } => {
            let group = fieldsync_shared::job::doc::duplicate_group(&number);
            let keep = if keep_all {
                open.iter()
                    .find(|u| u.group == group)
                    .map(|u| u.lines.iter().map(|l| l.0.clone()).collect())
                    .unwrap_or_default()
            } else {
                let mut lines = Vec::new();
                for l in &keep {
                    lines.push(resolve_line(device, id, l).await?.0);
                }
                lines
            };
            (
                group,
                Chosen {
                    keep: Some(keep),
                    ..Chosen::default()
                },
            )
        }
    };
    if !open.iter().any(|u| u.group == name) {
        bail!(
            "nothing to resolve in {name}{}",
            if open.is_empty() {
                ": the job has nothing unresolved".to_owned()
            } else {
                format!(
                    "; unresolved: {}",
                    open.iter()
                        .map(|u| u.group.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    let resolution = chosen.resolution(&job, &name)?;
    let record = device.resolve(id, resolution).await?;
    print_json(
        out,
        &json!({ "job": id, "resolution": record, "unresolved": device.unresolved(id).await? }),
    )
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

async fn sync(
    device: &Device,
    args: SyncArgs,
    zone: &Zone,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    // A --server given once is used once: the remembered server changes only with
    // --remember, or when none is remembered yet.
    let remembered = device.setting(SERVER_URL).await?;
    let (url, note) = match (args.server, remembered) {
        (Some(url), None) => {
            device.set_setting(SERVER_URL, url.clone()).await?;
            (url, None)
        }
        (Some(url), Some(old)) if url == old => (url, None),
        (Some(url), Some(old)) if args.remember => {
            device.set_setting(SERVER_URL, url.clone()).await?;
            let note = format!("{url} is now the remembered server (it was {old})");
            (url, Some(note))
        }
        (Some(url), Some(old)) => {
            let note = format!(
                "syncing with {url} this time only: the remembered server stays {old} (add \
                 --remember to replace it)"
            );
            (url, Some(note))
        }
        (None, Some(old)) => (old, None),
        (None, None) => bail!("no server URL: give --server (it is remembered)"),
    };
    if let Some(note) = &note {
        eprintln!("{note}");
    }
    let tls = client_tls(args.ca_file.as_ref())?;
    let mut options = SyncOptions::new(url.clone(), String::new()).with_tls(tls.clone());
    options.token = args.token;
    // Without a token command the device renews its own token with its key (issue 15),
    // starting from the one kept in the store.
    let mut renewal = None;
    match args.token_command {
        Some(command) => options = options.with_renewal(command_source(command)),
        None if options.token.is_none() => {
            let mut source = device.key_renewal(url.clone(), tls);
            if let Some(saved) = device.saved_token().await? {
                source = source.with_token(saved);
            }
            renewal = Some(source.clone());
            options = options.with_renewal(source);
        }
        None => {}
    }
    let run = SyncRun {
        url,
        note,
        once: args.once,
        timeout: args.timeout,
    };
    let result = run_sync(device, run, options, zone, out).await;
    // Whatever happened, a token renewed meanwhile is kept for the next run.
    if let Some(current) = renewal.and_then(|r| r.current()) {
        device.save_token(&current).await?;
    }
    result
}

struct SyncRun {
    url: String,
    note: Option<String>,
    once: bool,
    timeout: u64,
}

async fn run_sync(
    device: &Device,
    run: SyncRun,
    options: SyncOptions,
    zone: &Zone,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let mut events = device.events();
    device.start_sync(options);
    if run.once {
        let mut received = Vec::new();
        let done = tokio::time::timeout(
            Duration::from_secs(run.timeout),
            sync_once(device, &run.url, &mut events, &mut received),
        )
        .await;
        device.stop_sync();
        // What the server answered meanwhile is news whatever the end.
        let received: Vec<Value> = received.iter().map(|e| outcome_json(e, zone)).collect();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                for r in &received {
                    eprintln!("received: {r}");
                }
                return Err(e);
            }
            Err(_) => {
                let unsynced: Vec<String> = device
                    .jobs()
                    .await
                    .iter()
                    .filter(|j| j.status.unsynced || j.job.is_none())
                    .map(|j| j.id.to_string())
                    .collect();
                for r in &received {
                    eprintln!("received: {r}");
                }
                bail!(
                    "not everything synced within {} s (sync state: {}); jobs not synced: {}",
                    run.timeout,
                    state_in_words(&device.sync_state()),
                    if unsynced.is_empty() {
                        "none".to_owned()
                    } else {
                        unsynced.join(", ")
                    }
                );
            }
        }
        let jobs = device.jobs().await;
        let mut assigned = Vec::new();
        let mut unassigned = Vec::new();
        for j in &jobs {
            let state = state_words(device, j.id, j.job.as_ref(), &j.status, zone).await;
            let value =
                json!({ "id": j.id, "state": state, "status": status_json(&j.status, zone) });
            if j.status.unassigned.is_none() {
                assigned.push(value);
            } else {
                // Jobs taken off the technician: not synced, handed to the desk.
                unassigned.push(value);
            }
        }
        let mut report = json!({
            "synced": true,
            "server": run.url,
            "received": received,
            "jobs": assigned,
            "unassigned": unassigned,
        });
        if let Some(note) = run.note {
            report["note"] = json!(note);
        }
        return print_json(out, &report);
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

/// The sync state in words.
fn state_in_words(state: &SyncState) -> String {
    match state {
        SyncState::Offline => "offline".into(),
        SyncState::Connecting { attempt } => format!("connecting (attempt {})", attempt + 1),
        SyncState::Connected => "connected".into(),
        SyncState::Disconnected { reason, retry_in } => {
            format!(
                "disconnected: {}; retrying in {} s",
                connection_words(reason),
                retry_in.as_secs()
            )
        }
        SyncState::Refused { code, reason } => format!("refused ({code}): {reason}"),
    }
}

/// A connection failure as a person can act on it: what it means first, the detail after.
fn connection_words(reason: &str) -> String {
    let lower = reason.to_lowercase();
    let meaning = if lower.contains("connection refused") {
        "connection refused: nothing answers at that address (is the server running, is the \
         port right?)"
    } else if lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no such host")
        || lower.contains("nodename nor servname")
    {
        "the server's name does not resolve (check the URL, or the network)"
    } else if lower.contains("timed out") {
        "the connection timed out (no route to the server, or a firewall)"
    } else if lower.contains("network is unreachable") || lower.contains("no route to host") {
        "the network is unreachable"
    } else if lower.contains("connection reset") {
        "the connection was reset"
    } else {
        return reason.to_owned();
    };
    format!("{meaning} [{reason}]")
}

/// Waits until connected and every assigned job is on the device with nothing unsynced, and
/// a second passed with no event (so changes still arriving are not cut off); keeps the
/// outcomes received meanwhile. A job whose access was withdrawn stays unsynced, so `--once`
/// then ends with its timeout. A server that cannot be reached ends it at once, in words.
async fn sync_once(
    device: &Device,
    url: &str,
    events: &mut broadcast::Receiver<Event>,
    received: &mut Vec<Event>,
) -> anyhow::Result<()> {
    let mut connected = false;
    loop {
        match device.sync_state() {
            SyncState::Refused { code, reason } => {
                bail!("the server refused the device ({code}): {reason}")
            }
            SyncState::Connected => connected = true,
            // The device retries (a hotel network's portal, a server restarting), but one who
            // asked for a single sync wants to hear now that the server cannot be reached.
            SyncState::Disconnected { reason, .. } if !connected => {
                bail!("cannot sync with {url}: {}", connection_words(&reason))
            }
            _ => {}
        }
        let quiet = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            event = events.recv() => {
                match event {
                    Err(broadcast::error::RecvError::Closed) => bail!("the device closed"),
                    Ok(event) if is_outcome(&event) => received.push(event),
                    _ => {}
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
        // Attachments captured offline are uploaded, or refused for a reason the technician
        // hears (then they are not waited for).
        let refused: Vec<&str> = received
            .iter()
            .filter_map(|e| match e {
                Event::AttachmentRefused { digest, .. } => Some(digest.as_str()),
                _ => None,
            })
            .collect();
        let uploaded = device
            .pending_attachments()
            .await
            .iter()
            .all(|(_, d)| refused.contains(&d.as_str()));
        // A job taken off the technician is settled once the server answered its handover.
        let settled = index_here
            && uploaded
            && jobs.iter().all(|j| match &j.status.unassigned {
                Some(handoff) => *handoff != Handoff::Pending,
                None => j.job.is_some() && !j.status.unsynced,
            });
        if settled {
            return Ok(());
        }
    }
}

/// What the server decided that the technician must hear about.
fn is_outcome(event: &Event) -> bool {
    matches!(
        event,
        Event::ReportSigned { .. }
            | Event::ReportRefused { .. }
            | Event::ApprovalDecided { .. }
            | Event::JobAssigned { .. }
            | Event::JobUnassigned { .. }
            | Event::JobHandedOver { .. }
            | Event::HandoffRefused { .. }
            | Event::AttachmentRefused { .. }
    )
}

/// An outcome in words (with its job).
fn outcome_json(event: &Event, _zone: &Zone) -> Value {
    let (job, text) = match event {
        Event::ReportSigned { job, report_id } => (
            job,
            format!("the branch signed the report (report {report_id})"),
        ),
        Event::ReportRefused { job, reasons } => (
            job,
            format!(
                "the branch refused the report: {}",
                reasons
                    .iter()
                    .map(|r| format!("{} ({})", r.message, r.rule))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Event::ApprovalDecided {
            job,
            approval,
            kind,
            approved,
            by,
            note,
        } => (
            job,
            format!(
                "{} {approval} {} by {by}{}",
                kind_words(*kind),
                if *approved { "approved" } else { "refused" },
                if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                }
            ),
        ),
        Event::JobAssigned { job } => (job, "assigned to you".to_owned()),
        Event::JobUnassigned { job } => (job, "taken off you by the desk".to_owned()),
        Event::JobHandedOver { job, changes } => {
            (job, format!("{changes} local changes handed to the desk"))
        }
        Event::HandoffRefused { job, code, message } => (
            job,
            format!("the server refused the handed-over changes ({code}): {message}"),
        ),
        Event::AttachmentRefused {
            job,
            digest,
            code,
            message,
        } => (
            job,
            format!("attachment {digest} was not uploaded ({code}): {message}"),
        ),
        other => return json!({ "event": format!("{other:?}") }),
    };
    json!({ "job": job, "outcome": text })
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
        Event::ApprovalDecided {
            job,
            approval,
            kind,
            approved,
            by,
            note,
        } => json!({
            "event": "approval_decided",
            "job": job,
            "approval": approval,
            "kind": kind.as_str(),
            "rule": kind.rule(),
            "approved": approved,
            "by": by,
            "note": note,
        }),
        Event::AttachmentUploaded { job, digest } => {
            json!({ "event": "attachment_uploaded", "job": job, "digest": digest })
        }
        Event::AttachmentRefused {
            job,
            digest,
            code,
            message,
        } => json!({
            "event": "attachment_refused",
            "job": job,
            "digest": digest,
            "code": code,
            "message": message,
        }),
        Event::Sync(state) => json!({ "event": "sync", "state": format!("{state:?}") }),
    }
}
