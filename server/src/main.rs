//! `fieldsync`: the one binary of the product. This file only parses the command line and
//! hands over to the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fieldsync_server::app::{self, AppState};
use fieldsync_server::config::{Config, Role};
use fieldsync_server::data_dir::DataDir;

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (edge by default) until SIGTERM or ctrl-c.
    Serve {
        /// TOML config file; FIELDSYNC_* environment variables override it.
        #[arg(long, env = "FIELDSYNC_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:3030).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Data directory (default ./fieldsync-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Create the server's signing key in the data directory (serve also does on first run).
    Keygen {
        #[arg(long, default_value = "fieldsync-data")]
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIELDSYNC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
            role,
        } => {
            let mut config = Config::load(config.as_deref(), std::env::vars())?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            if let Some(role) = role {
                config.role = role;
            }
            serve(config)
        }
        Command::Keygen { data_dir } => {
            let dir = DataDir::open(&data_dir)
                .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
            let (key, created) = dir.load_or_create_server_key()?;
            println!(
                "{}",
                serde_json::json!({
                    "key_id": key.id().as_str(),
                    "public_key": key.public().to_hex(),
                    "secret_key_file": dir.server_key_path(),
                    "public_key_file": dir.server_public_key_path(),
                    "created": created,
                })
            );
            Ok(())
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let dir = DataDir::open(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let (branch_key, created) = dir.load_or_create_server_key()?;
    if created {
        tracing::info!(key_id = %branch_key.id(), path = %dir.server_key_path().display(), "created server key");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(addr = %listener.local_addr()?, role = ?config.role, data_dir = %dir.root().display(), "serving");
        let state = Arc::new(AppState { config, branch_key });
        app::run(listener, state, shutdown_signal()).await?;
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
