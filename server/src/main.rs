//! `fieldsync`: the one binary of the product. This file parses the command line and hands
//! over to the library; each subcommand prints what it did (JSON where a script reads it)
//! and errors a person can act on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use fieldsync_server::accounts as users;
use fieldsync_server::app::{self, Server};
use fieldsync_server::auth::{DeskRole, Subject, TokenAuthority, parse_ttl};
use fieldsync_server::clock::system_now as now;
use fieldsync_server::config::{Config, Role};
use fieldsync_server::console::audit;
use fieldsync_server::console::i18n::Lang;
use fieldsync_server::data_dir::{
    BRANCH_META, DataDir, branch_for, recorded_branch, recorded_role,
};
use fieldsync_server::head_office::archive::RetryFilter;
use fieldsync_server::head_office::store::{HeadOfficeStore, StorageUrl};
use fieldsync_server::head_office::{archive, complaints};
use fieldsync_server::sync::registry::{BranchRecord, Registry};
use fieldsync_shared::ids::{BranchId, DeviceId, TechnicianId};
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::report::DeviceRecord;
use fieldsync_storage::{Store, StoreConfig};

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Offline-first field-service sync server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server's files are; every subcommand takes these.
#[derive(Debug, Args)]
struct Common {
    /// TOML config file; FIELDSYNC_* environment variables override it.
    #[arg(long, env = "FIELDSYNC_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (default ./fieldsync-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

impl Common {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (edge by default) until SIGTERM or ctrl-c.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default 127.0.0.1:3030).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// The branch this edge serves, e.g. north-01: needed at the first start, recorded in
        /// the data directory then (`fieldsync branch rename` changes it later).
        #[arg(long)]
        branch_id: Option<String>,
    },
    /// Create the server's signing key in the data directory (serve also does on first run).
    Keygen {
        #[command(flatten)]
        common: Common,
    },
    /// Technician devices: enroll, revoke, issue tokens.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Service desk staff.
    Desk {
        #[command(subcommand)]
        command: DeskCommand,
    },
    /// People's accounts for the web console (issue 14).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Public keys for offline verification.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// The whole chain on loopback: head office, a branch, three technicians' devices;
    /// offline work, signed reports, an intermittent link, verification, statistics.
    Demo {
        /// Where to keep everything (default: a fresh ./fieldsync-demo/<time>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Head office: branches whose reports it accepts.
    Branch {
        #[command(subcommand)]
        command: BranchCommand,
    },
    /// Head office: the month's statistics (R24) and quality digest (R27) from verified
    /// reports.
    Stats {
        #[command(flatten)]
        common: Common,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// table, json or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// The month's complaint rate and attribution per branch (R22) instead.
        #[arg(long)]
        complaints: bool,
    },
    /// Head office: the archive of verified reports.
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// Check an exported report with only public keys; says exactly what failed.
    #[command(group(clap::ArgGroup::new("keys").required(true).args(["trust", "head_office"])))]
    Verify {
        /// The report: its JSON (as `GET /api/reports/{id}` or head office's
        /// `GET /api/archive/reports/{id}/export` exports it), or the signed PDF service
        /// report, which carries that JSON as an attachment.
        report: PathBuf,
        /// A trust directory (`fieldsync trust export` at the branch).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Head office's data directory: the branch keys it enrolled, and the device its copy
        /// of the report document attests (read only; beside a running head office too).
        #[arg(long)]
        head_office: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// Verify rejected reports again, e.g. after a branch's key was enrolled or fixed. Works
    /// beside a running head office (it looks at them within a second) or a stopped one (at
    /// its next start).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["rejected", "report"])))]
    Retry {
        #[command(flatten)]
        common: Common,
        /// Every rejected report.
        #[arg(long)]
        rejected: bool,
        /// One report, by its report id.
        #[arg(long)]
        report: Option<String>,
    },
    /// Verify the archived reports again (an audit, a key incident): each report's
    /// signatures and digests against the stored content, its device attestation and the
    /// archive's columns; with --full also the job document read at the report's heads
    /// (REPORT-FORMAT.md §6). Changes nothing; works beside a running head office. Exit
    /// status 1 when a report fails.
    Audit {
        #[command(flatten)]
        common: Common,
        /// Also read each report's job document at the report's heads, as at receipt (an
        /// automerge load per report: much slower).
        #[arg(long)]
        full: bool,
        /// Only the reports of this month (YYYY-MM).
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Write this server's public key and its enrolled devices into a trust directory.
    Export {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register a device key for a technician and print the device id as JSON.
    Enroll {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        technician: String,
        /// The device's own public key file. Without it a key pair is generated and the
        /// secret written next to the data (for tests and demos only).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The device id (default: generated).
        #[arg(long)]
        device: Option<String>,
    },
    /// Issue a one-time enrollment code for a technician's new device (`fieldsync-tech init
    /// --server URL --code CODE`); prints it as JSON. Only its digest is stored.
    Code {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        technician: String,
        /// How long the code is valid, e.g. 30m, 24h (default `[enrollment] code_ttl`).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Revoke a device: its tokens stop working and its live connections close.
    Revoke {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        device: String,
    },
    /// Print a short-lived token for a device.
    Token {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        device: String,
        /// Lifetime, e.g. 15m, 12h, 7d.
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
}

#[derive(Debug, Subcommand)]
enum BranchCommand {
    /// Register a branch's public key (its `server.pub`) at head office.
    Enroll {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        branch: String,
        /// The branch server's public key file (`fieldsync keygen` prints its path).
        #[arg(long)]
        key: PathBuf,
    },
    /// A branch edge: change the branch id its data directory serves (with its server
    /// stopped). Every token the edge issued names the old id: issue device and desk tokens
    /// anew, and have head office enroll the branch under the new id and issue its token.
    /// Reports already signed keep the id they were signed with.
    Rename {
        #[command(flatten)]
        common: Common,
        /// The new branch id.
        #[arg(long)]
        to: String,
    },
    /// Print the token a branch dials head office with (its `upstream.token_file`).
    Token {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        branch: String,
        /// Lifetime, e.g. 30d.
        #[arg(long, default_value = "30d")]
        ttl: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeskCommand {
    /// Print a short-lived token for desk staff with a role. With --user, the token acts for
    /// that person (their account's role; what the API changes is audited under their name),
    /// and stops working when the account is disabled.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["role", "user"])))]
    Token {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum)]
        role: Option<DeskRole>,
        /// A console account (`fieldsync user add`).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
}

/// Accounts of the web console. Passwords are read from standard input (one line), never
/// from the command line, where other users could see them in the process list.
#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a person: name (a-z, 0-9, '.', '_', '-'), role; the password on standard input.
    Add {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: DeskRole,
        /// The name the console shows (e.g. 李伟); default: the user name.
        #[arg(long, default_value = "")]
        display_name: String,
        /// zh or en: the language the console speaks to them (they can switch).
        #[arg(long, default_value = "zh")]
        lang: String,
    },
    /// Disable an account: sign-in refused, its sessions and person tokens end.
    Disable {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
    },
    /// Set a new password (standard input): unlocks the account, ends its sessions.
    Reset {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        name: String,
    },
    /// List the accounts (JSON).
    List {
        #[command(flatten)]
        common: Common,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; the servers' logs would drown it.
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_logging(default_level)?;
    match cli.command {
        Command::Serve {
            common,
            listen,
            role,
            branch_id,
        } => {
            let mut config = common.load()?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if branch_id.is_some() {
                config.branch_id = branch_id;
            }
            if let Some(role) = role {
                config.role = role;
            }
            serve(config)
        }
        Command::Keygen { common } => {
            let config = common.load()?;
            let dir = DataDir::open(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
            let (key, created) = dir.load_or_create_server_key()?;
            print_json(&serde_json::json!({
                "key_id": key.id().as_str(),
                "public_key": key.public().to_hex(),
                "secret_key_file": dir.server_key_path(),
                "public_key_file": dir.server_public_key_path(),
                "created": created,
            }))
        }
        Command::Device { command } => device(command),
        Command::Trust {
            command: TrustCommand::Export { common, out },
        } => {
            let config = common.load()?;
            let dir = open_dir(&config)?;
            let key = dir.server_key()?;
            let store = open_store(&dir)?;
            let registry = Registry::load(&store)?;
            let devices: Vec<DeviceRecord> = registry.devices().cloned().collect();
            let branch = branch_for(&config, &store).map_err(anyhow::Error::msg)?;
            fieldsync_server::trust::export(&out, &branch, key.public(), &devices)?;
            print_json(&serde_json::json!({
                "trust_dir": out,
                "branch_id": branch,
                "key_id": key.id().as_str(),
                "devices": devices.len(),
            }))
        }
        Command::Verify {
            report,
            trust,
            head_office,
        } => {
            let trust = match (trust, head_office) {
                (Some(dir), _) => fieldsync_server::trust::load(&dir)?,
                (None, Some(dir)) => match head_office_trust(&dir, &report)? {
                    Ok(trust) => trust,
                    // The attestation itself failed (a key head office did not enroll…):
                    // answered like any other failed check.
                    Err(e) => return refused(&e),
                },
                (None, None) => bail!("give --trust DIR or --head-office DIR"),
            };
            verify(&report, &trust)
        }
        Command::Branch { command } => branch(command),
        Command::Demo { dir } => {
            let dir = dir.unwrap_or_else(fieldsync_server::demo::default_dir);
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(fieldsync_server::demo::run(&dir))
        }
        Command::Archive {
            command:
                ArchiveCommand::Retry {
                    common,
                    rejected: _,
                    report,
                },
        } => {
            let config = common.load()?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            refuse_edge(&dir, &store, "the archive")?;
            let filter = match report {
                Some(id) => RetryFilter::Report(id),
                None => RetryFilter::All,
            };
            let (runtime, archive) = open_archive(&config, store)?;
            let retried = runtime.block_on(archive::request_retry(&archive, &filter))?;
            print_json(&serde_json::json!({ "retried": retried }))
        }
        Command::Archive {
            command:
                ArchiveCommand::Audit {
                    common,
                    full,
                    month,
                },
        } => {
            let config = common.load()?;
            let month = month
                .map(|m| m.parse::<fieldsync_shared::time::Month>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--month: {e}"))?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            refuse_edge(&dir, &store, "the archive")?;
            let registry = Registry::load(&store)?;
            let documents = std::sync::Arc::new(store);
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let url =
                StorageUrl::parse(config.storage.url.as_deref()).map_err(anyhow::Error::msg)?;
            let archive = HeadOfficeStore::open(&url, &documents)
                .context("cannot open head office's archive")?;
            let depth = if full {
                archive::AuditDepth::Full
            } else {
                archive::AuditDepth::Stored
            };
            let filter = archive::Filter {
                month,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let summary = runtime.block_on(archive::audit(
                &archive, documents, registry, &filter, depth,
            ))?;
            let mut out = serde_json::to_value(&summary)?;
            out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
            print_json(&out)?;
            if !summary.failed.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Stats {
            common,
            month,
            format,
            complaints,
        } => {
            let config = common.load()?;
            let month: fieldsync_shared::time::Month =
                month.parse().map_err(|e| anyhow::anyhow!("--month: {e}"))?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            refuse_edge(&dir, &store, "the statistics")?;
            let (runtime, store) = open_archive(&config, store)?;
            let window = config.repeat_window_days;
            let text = if complaints {
                let report = runtime.block_on(complaints::complaint_report(
                    &store,
                    month,
                    window,
                    &config.timezone,
                ))?;
                complaints::render_complaints(&report, &format).map_err(anyhow::Error::msg)?
            } else {
                let stats = runtime.block_on(archive::month_stats(
                    &store,
                    month,
                    window,
                    &config.timezone,
                ))?;
                archive::render_stats(&stats, &format).map_err(anyhow::Error::msg)?
            };
            out(&text)
        }
        Command::Desk {
            command:
                DeskCommand::Token {
                    common,
                    role,
                    user,
                    ttl,
                },
        } => {
            let config = common.load()?;
            let token = match user {
                None => issue(
                    &config,
                    &Subject::Desk(role.unwrap_or(DeskRole::Analyst)),
                    &ttl,
                )?,
                Some(name) => {
                    let dir = open_dir(&config)?;
                    let store = open_store(&dir)?;
                    let account = users::load(&store, &name)?
                        .with_context(|| {
                            format!("there is no user {name:?} (`fieldsync user add`)")
                        })?
                        .user;
                    if account.disabled {
                        bail!("user {name:?} is disabled");
                    }
                    let account_role = account
                        .desk_role()
                        .with_context(|| format!("user {name:?} has an unknown role"))?;
                    if role.is_some_and(|r| r != account_role) {
                        bail!(
                            "user {name:?} is a {}, not a {}",
                            account.role,
                            role.map_or("", |r| r.as_str())
                        );
                    }
                    issue_for(&config, &Subject::Desk(account_role), Some(&name), &ttl)?
                }
            };
            out(&format!("{token}\n"))
        }
        Command::User { command } => user(command),
    }
}

/// Logs go to stderr, filtered by `FIELDSYNC_LOG` (default `info`), as text (colours only on
/// a terminal) or, with `FIELDSYNC_LOG_FORMAT=json`, one JSON object a line for a log
/// collector. A value that cannot be read is an error, not silently the default.
fn init_logging(default_level: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    // The load figures' baseline keeps automerge's spans on, as before issue 19.
    let baseline =
        std::env::var(fieldsync_server::app::BASELINE_ENV).is_ok_and(|v| v == "issue-19");
    let filter = |value: &str| {
        if baseline {
            fieldsync_server::logging::filter_as_given(value)
        } else {
            fieldsync_server::logging::filter(value)
        }
    };
    let filter = match std::env::var("FIELDSYNC_LOG") {
        Ok(value) => filter(&value).map_err(|e| anyhow::anyhow!("FIELDSYNC_LOG={value:?}: {e}"))?,
        Err(std::env::VarError::NotPresent) => {
            filter(default_level).map_err(|e| anyhow::anyhow!("default log level: {e}"))?
        }
        Err(std::env::VarError::NotUnicode(_)) => bail!("FIELDSYNC_LOG is not valid UTF-8"),
    };
    let format = std::env::var("FIELDSYNC_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format.as_str() {
        "" | "text" => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        "json" => builder.json().init(),
        other => bail!("FIELDSYNC_LOG_FORMAT={other:?}: expected text or json"),
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout. A reader that stopped reading (`fieldsync verify … | head`) is not an
/// error of ours: the rest is dropped and the command ends with its own exit status.
fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

/// The data directory of every command but `serve` and `keygen`: it must exist already.
fn open_dir(config: &Config) -> anyhow::Result<DataDir> {
    Ok(DataDir::existing(&config.data_dir)?)
}

/// Head-office commands refuse a branch's data directory, saying where `what` lives.
fn refuse_edge(dir: &DataDir, store: &Store, what: &str) -> anyhow::Result<()> {
    if recorded_role(store)? == Some(Role::Edge) {
        bail!(
            "{} is a branch edge server's data directory: {what} lives at head office (run \
             this with head office's --data-dir)",
            dir.root().display()
        );
    }
    Ok(())
}

/// Head office's archive where `[storage] url` says: this data directory's database
/// (`store`), a shared SQLite file, or the PostgreSQL database head-office processes share;
/// with the runtime its calls run on.
fn open_archive(
    config: &Config,
    store: Store,
) -> anyhow::Result<(tokio::runtime::Runtime, HeadOfficeStore)> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let url = StorageUrl::parse(config.storage.url.as_deref()).map_err(anyhow::Error::msg)?;
    let archive = HeadOfficeStore::open(&url, &std::sync::Arc::new(store))
        .context("cannot open head office's archive")?;
    Ok((runtime, archive))
}

/// The commands' store. No compaction or checkpoints: a command often runs beside the server
/// that owns the database, and that maintenance is the server's (issue 19).
fn open_store(dir: &DataDir) -> anyhow::Result<Store> {
    Store::open(dir.database_path(), StoreConfig::without_maintenance())
        .with_context(|| format!("cannot open {}", dir.database_path().display()))
}

fn issue(config: &Config, subject: &Subject, ttl: &str) -> anyhow::Result<String> {
    issue_for(config, subject, None, ttl)
}

fn issue_for(
    config: &Config,
    subject: &Subject,
    person: Option<&str>,
    ttl: &str,
) -> anyhow::Result<String> {
    let ttl: Duration = parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    let dir = open_dir(config)?;
    let key = dir.server_key()?;
    // The directory knows whose it is once its server has started: a token must name the
    // issuer that server checks, whatever role this command was given.
    let store = open_store(&dir)?;
    let role = recorded_role(&store)?.unwrap_or(config.role);
    let issuer = match role {
        Role::Edge => branch_for(config, &store)
            .map_err(anyhow::Error::msg)?
            .to_string(),
        Role::HeadOffice => "head-office".to_owned(),
    };
    let authority = TokenAuthority::new(&key, issuer).map_err(anyhow::Error::msg)?;
    authority
        .issue_for(subject, person, ttl, now())
        .map_err(anyhow::Error::msg)
}

/// One line of standard input, without its line end: a password.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input (one line)");
    }
    Ok(password)
}

fn user(command: UserCommand) -> anyhow::Result<()> {
    let (common, name) = match &command {
        UserCommand::Add { common, name, .. }
        | UserCommand::Disable { common, name }
        | UserCommand::Enable { common, name }
        | UserCommand::Reset { common, name } => (common, Some(name.clone())),
        UserCommand::List { common } => (common, None),
    };
    let config = common.load()?;
    let dir = open_dir(&config)?;
    let store = open_store(&dir)?;
    let at = now();
    let (action, user) = match command {
        UserCommand::Add {
            name,
            role,
            display_name,
            lang,
            ..
        } => {
            let lang = Lang::parse(&lang).with_context(|| format!("--lang {lang:?}: zh or en"))?;
            users::check_name(&name)?;
            let password = read_password()?;
            let user = users::add(&store, &name, &display_name, role, lang, &password, at)?;
            ("user_add", user)
        }
        UserCommand::Disable { name, .. } => {
            ("user_disable", users::set_disabled(&store, &name, true)?)
        }
        UserCommand::Enable { name, .. } => {
            ("user_enable", users::set_disabled(&store, &name, false)?)
        }
        UserCommand::Reset { name, .. } => {
            let password = read_password()?;
            ("user_reset", users::reset(&store, &name, &password)?)
        }
        UserCommand::List { .. } => {
            let list: Vec<serde_json::Value> = users::list(&store)?
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.user.name,
                        "display_name": s.user.display_name,
                        "role": s.user.role,
                        "disabled": s.user.disabled,
                        "locked_until": s.user.locked_until.filter(|u| *u > at).map(|u| u.to_string()),
                        "lang": s.user.lang,
                    })
                })
                .collect();
            return print_json(&serde_json::Value::Array(list));
        }
    };
    let name = name.unwrap_or_default();
    audit::append(
        &store,
        &audit::Entry::new(at, "cli", "", action, format!("user:{name}"))
            .after(format!("epoch {}", user.epoch))
            .detail(format!("role {}, disabled {}", user.role, user.disabled)),
    )?;
    print_json(&serde_json::json!({
        "name": user.name,
        "display_name": user.display_name,
        "role": user.role,
        "disabled": user.disabled,
        "action": action,
    }))
}

fn branch(command: BranchCommand) -> anyhow::Result<()> {
    match command {
        BranchCommand::Enroll {
            common,
            branch,
            key,
        } => {
            let config = common.load()?;
            let branch_id = BranchId::new(branch)?;
            let dir = open_dir(&config)?;
            let public =
                PublicKey::load(&key).with_context(|| format!("branch key {}", key.display()))?;
            let store = open_store(&dir)?;
            let mut registry = Registry::load(&store)?;
            registry
                .enroll_branch(
                    &store,
                    BranchRecord {
                        branch_id: branch_id.clone(),
                        public_key: public.to_hex(),
                        enrolled_at: now(),
                    },
                )
                .wait()?;
            store.flush().wait()?;
            // Reports kept aside for want of this key are verified again (at head office: an
            // edge keeps no archive).
            let retried = if recorded_role(&store)? == Some(Role::Edge) {
                Vec::new()
            } else {
                let (runtime, archive) = open_archive(&config, store)?;
                let filter = RetryFilter::Branch(branch_id.clone());
                runtime.block_on(archive::request_retry(&archive, &filter))?
            };
            print_json(&serde_json::json!({
                "branch_id": branch_id,
                "key_id": public.id().as_str(),
                "enrolled": true,
                "retried": retried,
            }))
        }
        BranchCommand::Rename { common, to } => {
            let config = common.load()?;
            let to = BranchId::new(to)?;
            let dir = open_dir(&config)?;
            // No server may run on it meanwhile: it holds the old id in memory.
            let _lock = dir.lock()?;
            let store = open_store(&dir)?;
            if recorded_role(&store)? == Some(Role::HeadOffice) {
                bail!(
                    "{} is head office's data directory: only a branch edge has a branch id",
                    dir.root().display()
                );
            }
            let from = recorded_branch(&store)?;
            let (namespace, key) = BRANCH_META;
            store
                .put_meta(namespace, key, to.as_str().as_bytes().to_vec())
                .wait()?;
            store.flush().wait()?;
            print_json(&serde_json::json!({
                "from": from,
                "to": to,
                "next": [
                    "issue every device and desk token anew (`fieldsync device token`, `fieldsync desk token`)",
                    format!("at head office: `fieldsync branch enroll --branch {to} --key <this server's keys/server.pub>` and `fieldsync branch token --branch {to}`"),
                    format!("start the server with branch_id {to} (or none) in its config"),
                ],
            }))
        }
        BranchCommand::Token {
            common,
            branch,
            ttl,
        } => {
            let mut config = common.load()?;
            config.role = Role::HeadOffice;
            let branch_id = BranchId::new(branch)?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            if Registry::load_devices(&store)?.branch(&branch_id).is_none() {
                bail!("branch {branch_id} is not enrolled (run `fieldsync branch enroll`)");
            }
            drop(store);
            let token = issue(&config, &Subject::Branch(branch_id), &ttl)?;
            out(&format!("{token}\n"))
        }
    }
}

fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Enroll {
            common,
            technician,
            public_key,
            device,
        } => {
            let config = common.load()?;
            let technician = TechnicianId::new(technician)?;
            let device_id = match device {
                Some(d) => DeviceId::new(d)?,
                None => {
                    let mut bytes = [0u8; 4];
                    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
                    DeviceId::new(format!("dev-{}", hex::encode(bytes)))?
                }
            };
            let dir = open_dir(&config)?;
            let (key, secret_file) = match public_key {
                Some(path) => (PublicKey::load(&path)?, None),
                None => {
                    let pair = KeyPair::generate()?;
                    let path = dir.root().join("devices").join(format!("{device_id}.key"));
                    pair.save(&path)?;
                    (pair.public().clone(), Some(path))
                }
            };
            let store = open_store(&dir)?;
            let branch_id = branch_for(&config, &store).map_err(anyhow::Error::msg)?;
            let mut registry = Registry::load(&store)?;
            let record = DeviceRecord {
                device_id: device_id.clone(),
                branch_id: branch_id.clone(),
                technician: technician.clone(),
                public_key: key.to_hex(),
                revoked_at: None,
            };
            registry.enroll_device(&store, record)?.wait()?;
            store.flush().wait()?;
            print_json(&serde_json::json!({
                "device_id": device_id,
                "technician": technician,
                "branch_id": branch_id,
                "key_id": key.id().as_str(),
                "public_key": key.to_hex(),
                "secret_key_file": secret_file,
            }))
        }
        DeviceCommand::Code {
            common,
            technician,
            ttl,
        } => {
            let config = common.load()?;
            let technician = TechnicianId::new(technician)?;
            let ttl = match ttl {
                Some(ttl) => parse_ttl(&ttl).map_err(anyhow::Error::msg)?,
                None => config.enrollment.code_ttl,
            };
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            if recorded_role(&store)? == Some(Role::HeadOffice) {
                bail!(
                    "{} is head office's data directory: devices enroll at a branch edge",
                    dir.root().display()
                );
            }
            let (code, record) = fieldsync_server::edge::enrollment::issue_code(
                &store,
                technician,
                "cli",
                now(),
                ttl,
            )?;
            store.flush().wait()?;
            print_json(&serde_json::json!({
                "code": code,
                "technician": record.technician,
                "expires_at": record.expires_at.to_string(),
                "next": format!("on the device: fieldsync-tech init --server <edge sync URL> --code {code}"),
            }))
        }
        DeviceCommand::Revoke { common, device } => {
            let config = common.load()?;
            let device_id = DeviceId::new(device)?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            let mut registry = Registry::load(&store)?;
            registry.revoke_device(&store, &device_id, now())?.wait()?;
            store.flush().wait()?;
            print_json(&serde_json::json!({ "device_id": device_id, "revoked": true }))
        }
        DeviceCommand::Token {
            common,
            device,
            ttl,
        } => {
            let config = common.load()?;
            let device_id = DeviceId::new(device)?;
            let dir = open_dir(&config)?;
            let store = open_store(&dir)?;
            let registry = Registry::load(&store)?;
            match registry.device(&device_id) {
                None => bail!("device {device_id} is not enrolled (run `fieldsync device enroll`)"),
                Some(d) if d.revoked_at.is_some() => {
                    bail!("device {device_id} is revoked; enroll a new device")
                }
                Some(_) => {}
            }
            drop(store);
            let token = issue(&config, &Subject::Device(device_id), &ttl)?;
            out(&format!("{token}\n"))
        }
    }
}

/// The keys head office checks `report` with: every branch key it enrolled, and the device
/// attested in the report document it received for that report.
fn head_office_trust(
    dir: &std::path::Path,
    report: &std::path::Path,
) -> anyhow::Result<
    Result<fieldsync_shared::report::TrustStore, fieldsync_shared::report::VerifyError>,
> {
    let dir = DataDir::existing(dir)?;
    let store = open_store(&dir)?;
    if recorded_role(&store)? == Some(Role::Edge) {
        bail!(
            "{} is a branch edge server's data directory: use --trust with the branch's `fieldsync trust export`",
            dir.root().display()
        );
    }
    let bytes = report_json(report)?;
    let signed: fieldsync_shared::report::SignedReport = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a signed report", report.display()))?;
    let body = &signed.body;
    let doc_id = fieldsync_shared::report_doc::report_doc_id(&body.report_id)
        .ok_or_else(|| anyhow::anyhow!("report id {:?} is not 32 hex digits", body.report_id))?;
    let chunks = store.load_doc(&doc_id.to_string())?.ok_or_else(|| {
        anyhow::anyhow!(
            "head office holds no report document for report {} (was it delivered?)",
            body.report_id
        )
    })?;
    let am = fieldsync_shared::stored::load(&chunks)?;
    let doc = fieldsync_shared::report_doc::ReportDoc::from_document(&am)?
        .ok_or_else(|| anyhow::anyhow!("document {doc_id} is not a report document"))?;
    let registry = Registry::load(&store)?;
    Ok(archive::trust_from(
        &registry,
        &doc,
        &body.branch_id,
        &body.key_id,
    ))
}

/// The report's JSON from `path`: the file itself, or the report a signed PDF carries
/// (fieldsync_report_print::REPORT_ATTACHMENT).
fn report_json(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if fieldsync_report_print::looks_like_pdf(&bytes) {
        fieldsync_report_print::extract_report(&bytes)
            .with_context(|| format!("{} is a PDF without a readable report", path.display()))
    } else {
        Ok(bytes)
    }
}

fn verify(
    report: &std::path::Path,
    trust: &fieldsync_shared::report::TrustStore,
) -> anyhow::Result<()> {
    let bytes = report_json(report)?;
    match trust.verify_json(&bytes) {
        Ok(verified) => {
            let body = &verified.report.body;
            let ack = &body.acknowledgement;
            print_json(&serde_json::json!({
                "valid": true,
                "report_id": body.report_id,
                "job_id": body.job_id,
                "branch_id": body.branch_id,
                "key_id": body.key_id,
                "signed_at": body.signed_at.to_string(),
                "content_digest": body.content_digest,
                "acknowledged_by": ack.signer_name,
                "device_id": ack.device_id,
                "supersedes": body.supersedes,
            }))
        }
        Err(e) => refused(&e),
    }
}

/// A failed check: `{"valid": false, code, reason}` and exit status 1.
fn refused(e: &fieldsync_shared::report::VerifyError) -> anyhow::Result<()> {
    print_json(&serde_json::json!({
        "valid": false,
        "code": e.code(),
        "reason": e.to_string(),
    }))?;
    std::process::exit(1);
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dir = DataDir::open(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        // Held until the process ends: one server per data directory.
        let _lock = dir.lock()?;
        let listen = config.listen;
        let listener = app::bind(listen, config.limits.accept_backlog)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let server = Server::open(config, tokio::runtime::Handle::current())?;
        let state = &server.node;
        tracing::info!(
            addr = %listener.local_addr()?,
            role = ?state.config.role,
            tls = state.tls.is_some(),
            branch = %state.branch_id,
            data_dir = %state.data_dir.root().display(),
            "serving"
        );
        app::serve(listener, server, shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
