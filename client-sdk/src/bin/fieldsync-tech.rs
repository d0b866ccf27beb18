//! `fieldsync-tech`: the technician app on the command line. All of it is in
//! `fieldsync_client::cli`; this only parses arguments and sets up logging.

use clap::Parser;
use fieldsync_client::cli::{Cli, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    run(cli, &mut std::io::stdout()).await
}
