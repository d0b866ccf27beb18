//! `crash-loop [KILLS]`: the crash loop (issue 13, part 5; `tests/crash_loop/`). Runs the real
//! `fieldsync` binary as a branch edge and as head office with devices working all the time,
//! SIGKILLs the edge KILLS times (default 100) at random moments, head office and a device
//! process a few times, then checks that nothing acknowledged was lost and that every signed
//! report exists exactly once at the edge and at head office. Prints the counts; exits 1 if a
//! promise broke. `scripts/crash-loop` builds it in release and runs it.
//!
//! `crash-loop device-writer …` is the device process the loop kills (not for people).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldsync_shared::ids::DocumentId;
use fieldsync_tests::crash_loop::{self, Config, WriterArgs};

#[derive(Debug, Parser)]
#[command(name = "crash-loop", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// How many times the edge is killed.
    #[arg(default_value_t = 100)]
    kills: usize,
    /// How many times head office is killed.
    #[arg(long, default_value_t = 5)]
    head_office_kills: usize,
    /// How many times the device process is killed.
    #[arg(long, default_value_t = 10)]
    device_kills: usize,
    /// The seed of every random choice (printed at the start of each run).
    #[arg(long, env = "FIELDSYNC_CRASH_SEED")]
    seed: Option<u64>,
    /// Where to keep the data (default: a temporary directory, removed after a clean run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `fieldsync` binary (default: the one next to this program).
    #[arg(long, env = "FIELDSYNC_BIN")]
    fieldsync: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The device process the loop kills: edits its job until killed.
    #[command(hide = true)]
    DeviceWriter {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        job: DocumentId,
        #[arg(long)]
        start: u64,
        #[arg(long, requires = "token")]
        server: Option<String>,
        #[arg(long)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::DeviceWriter {
        store,
        job,
        start,
        server,
        token,
    }) = cli.command
    {
        let server = server.zip(token);
        return crash_loop::device_writer(WriterArgs {
            store,
            job,
            start,
            server,
        })
        .await;
    }

    let me = std::env::current_exe()?;
    let fieldsync = match cli.fieldsync {
        Some(path) => path,
        None => me.with_file_name(format!("fieldsync{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(
        fieldsync.exists(),
        "no fieldsync binary at {}: build it (`cargo build --release --bin fieldsync`) or pass \
         --fieldsync",
        fieldsync.display()
    );
    let temp = match &cli.dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("crash-loop-").tempdir()?),
    };
    let dir = cli
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .context("no data directory")?;
    let seed = cli.seed.unwrap_or_else(crash_loop::random_seed);
    let mut config = Config::new(fieldsync, me, dir.clone(), seed);
    config.edge_kills = cli.kills;
    config.head_office_kills = cli.head_office_kills;
    config.device_kills = cli.device_kills;

    let started = std::time::Instant::now();
    let counts = crash_loop::run(config).await?;
    println!(
        "crash loop: {} edge kills in {:.0} s",
        counts.edge_kills,
        started.elapsed().as_secs_f64()
    );
    print!("{counts}");
    let failures = counts.failures();
    if failures.is_empty() {
        println!("crash loop: nothing acknowledged was lost, every report exists exactly once");
        return Ok(());
    }
    // Keep the data of a failed run to look at.
    if let Some(temp) = temp {
        let kept = temp.keep();
        println!("crash loop: data kept in {}", kept.display());
    }
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    std::process::exit(1);
}
