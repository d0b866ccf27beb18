//! Throwaway PostgreSQL for the head-office tests and figures (issue 16).
//!
//! [`PgCluster::start`] runs Debian's `postgresql` binaries (`/usr/lib/postgresql/*/bin`):
//! `initdb` into a temp dir, then `pg_ctl start` on a free loopback port with its socket in
//! that dir; dropping it stops the cluster (`-m immediate`) and removes the dir. PostgreSQL
//! refuses to run as root, so as root the cluster runs as `nobody` (`setpriv --reuid nobody
//! --regid nogroup --clear-groups`, the temp dir handed to it); as any other user, as that
//! user. Authentication is `trust` on loopback: the cluster lives only as long as the test.
//!
//! [`test_database`]: the head-office tests run on SQLite by default; with
//! `FIELDSYNC_TEST_PG=postgres://postgres@127.0.0.1:PORT` (a server `scripts/with-postgres`
//! starts) each head office gets a database of its own there, named after its data directory
//! (a restart on the same directory finds its archive again).

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;

/// The environment variable naming a PostgreSQL server for the head-office tests.
pub const TEST_PG_ENV: &str = "FIELDSYNC_TEST_PG";

/// A PostgreSQL cluster of its own in a temp dir, stopped when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`.
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed: apt-get install postgresql")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().nth(1))
            == Some("0")
    })
}

impl PgCluster {
    /// Starts a cluster; `fsync` off for tests (the database is thrown away; what is tested is
    /// fieldsync being killed, not the machine), on for figures.
    pub fn start(fsync: bool) -> anyhow::Result<Self> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new().prefix("fieldsync-pg").tempdir()?;
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()?;
            ensure!(chown.success(), "chown of the cluster's dir failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cluster = Self { dir, bin, port };
        let data = cluster.data().to_str().context("temp path")?.to_owned();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync={} -c max_connections=200",
            cluster.dir.path().display(),
            if fsync { "on" } else { "off" }
        );
        let log = cluster.dir.path().join("postgres.log");
        cluster.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-D",
                &data,
                "-l",
                log.to_str().context("temp path")?,
                "-o",
                &options,
            ],
        )?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the cluster's programs, as `nobody` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("cannot run {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The server's url without a database.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// A new empty database `name` on this cluster; its url.
    pub async fn database(&self, name: &str) -> anyhow::Result<String> {
        create_database(&self.server_url(), name).await
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(data) = self.data().to_str().map(str::to_owned) {
            let _ = self.run("pg_ctl", &["stop", "-m", "immediate", "-D", &data]);
        }
    }
}

/// Creates database `name` on the server at `server_url` (nothing if it exists); its url.
pub async fn create_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{server_url}/postgres"), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {server_url}"))?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
    }
    drop(client);
    let _ = driver.await;
    Ok(format!("{server_url}/{name}"))
}

/// Takes `report_id` out of the archive of the head office in `data_dir` (stopped), wherever
/// [`test_database`] put it: what a kill between storing a report document and archiving it
/// leaves.
pub async fn unarchive(data_dir: &Path, report_id: &str) -> anyhow::Result<()> {
    match test_database(data_dir).await? {
        Some(url) => {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(connection);
            let n = client
                .execute("DELETE FROM ho_reports WHERE report_id = $1", &[&report_id])
                .await?;
            ensure!(n == 1, "report {report_id} was not archived");
            drop(client);
            let _ = driver.await;
        }
        None => {
            let path = fieldsync_server::data_dir::DataDir::open(data_dir)?.database_path();
            let store =
                fieldsync_storage::Store::open(path, fieldsync_storage::StoreConfig::default())?;
            ensure!(
                store.archived_report(report_id)?.is_some(),
                "report {report_id} was not archived"
            );
            store.unarchive_report(report_id).wait()?;
            store.close()?;
        }
    }
    Ok(())
}

/// The archive url for a head office in `data_dir` under test: `None` (its own SQLite)
/// unless [`TEST_PG_ENV`] names a server, then a database there named after the directory.
pub async fn test_database(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let Ok(server) = std::env::var(TEST_PG_ENV) else {
        return Ok(None);
    };
    // `DefaultHasher::new()` has fixed keys: the same directory gets the same name.
    let hash = |seed: u64| {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(seed);
        h.write(data_dir.to_string_lossy().as_bytes());
        h.finish()
    };
    let name = format!("ho_{:016x}{:016x}", hash(1), hash(2));
    Ok(Some(
        create_database(server.trim_end_matches('/'), &name).await?,
    ))
}

/// [`test_database`] from synchronous code (on a thread with a runtime of its own).
pub fn test_database_blocking(data_dir: &Path) -> anyhow::Result<Option<String>> {
    if std::env::var_os(TEST_PG_ENV).is_none() {
        return Ok(None);
    }
    let data_dir = data_dir.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(test_database(&data_dir))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the database thread panicked"))?
}
