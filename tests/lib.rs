//! Helpers for the integration tests: a real server on port 0 with SQLite in a temp dir (in
//! this process, or the real `fieldsync` binary as a child process), and real clients that
//! talk to it over WebSocket and HTTP.

use std::ffi::OsStr;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use fieldsync_client::{ConnectOptions, SyncClient};
use fieldsync_server::app::{self, Node, Server};
use fieldsync_server::auth::{DeskRole, Subject};
use fieldsync_server::clock::Clock;
use fieldsync_server::config::Config;
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::Job;
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::protocol::message::{JoinMessage, PeerId, PeerMetadata};
use fieldsync_shared::protocol::{self, Message};
use fieldsync_shared::report::DeviceRecord;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_storage::{Store, StoreConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

pub mod balancer;
pub mod crash_loop;
pub mod pg;
pub mod pki;

/// A server running in this process on a random loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The sync node (store, records, hub, sync metrics), whatever the role.
    pub state: Arc<Node>,
    /// The whole server: its role's state (`server.edge()`, `server.head_office()`).
    pub server: Server,
    pub data_dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestServer({})", self.addr)
    }
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` with its data in `data_dir`.
    pub async fn start_in(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts a server after `adjust` has changed the default config.
    pub async fn start_with(
        data_dir: &std::path::Path,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_on(data_dir, "127.0.0.1:0".parse()?, Clock::system(), adjust).await
    }

    /// Starts a server whose instants come from `clock` (a manual clock: a test at a fixed
    /// date, whatever the wall clock says).
    pub async fn start_with_clock(
        data_dir: &std::path::Path,
        clock: Clock,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_on(data_dir, "127.0.0.1:0".parse()?, clock, adjust).await
    }

    /// Starts a server on `addr`: a server restarted on its old port (same data dir) is the
    /// same server to the devices that knew it.
    pub async fn start_at(data_dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_on(data_dir, addr, Clock::system(), |_| {}).await
    }

    async fn start_on(
        data_dir: &std::path::Path,
        addr: SocketAddr,
        clock: Clock,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            branch_id: Some("north-01".into()),
            ..Config::default()
        };
        config.limits.shutdown_grace = Duration::from_secs(2);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = Server::open_with_clock(config, clock, tokio::runtime::Handle::current())?;
        let state = Arc::clone(&server.node);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(listener, server.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            server,
            data_dir: data_dir.to_owned(),
            stop: Some(stop),
            task,
        })
    }

    /// The edge's state (the desk, the signer); an error at head office.
    pub fn edge(&self) -> anyhow::Result<&Arc<fieldsync_server::edge::Edge>> {
        self.server
            .edge()
            .ok_or_else(|| anyhow::anyhow!("{self:?} is not an edge"))
    }

    /// Graceful shutdown; waits until storage is flushed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }

    /// A document as the server stored it (every chunk on disk, loaded), empty if none.
    pub fn stored_doc(&self, doc: DocumentId) -> anyhow::Result<automerge::Automerge> {
        let mut stored = automerge::Automerge::new();
        for chunk in self
            .state
            .store
            .load_doc(&doc.to_string())?
            .unwrap_or_default()
        {
            stored.load_incremental(&chunk)?;
        }
        Ok(stored)
    }

    /// The server's clock's now: what tokens, revocations and desk records are stamped with.
    pub fn now(&self) -> fieldsync_shared::time::Timestamp {
        self.state.clock.now()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Enrolls a device for a technician (with a fresh key pair) and returns its id.
    pub fn enroll(&self, technician: &str, device: &str) -> anyhow::Result<DeviceId> {
        Ok(self.enroll_with_key(technician, device)?.0)
    }

    /// Enrolls a device at this server's branch and returns its id and key pair (the
    /// device's own, for signing acknowledgements).
    pub fn enroll_with_key(
        &self,
        technician: &str,
        device: &str,
    ) -> anyhow::Result<(DeviceId, KeyPair)> {
        let device_id = DeviceId::new(device)?;
        let key = KeyPair::generate()?;
        let record = DeviceRecord {
            device_id: device_id.clone(),
            branch_id: self.state.branch_id.clone(),
            technician: TechnicianId::new(technician)?,
            public_key: key.public().to_hex(),
            revoked_at: None,
        };
        let pending = self
            .state
            .registry_write()
            .enroll_device(&self.state.store, record)?;
        pending.wait()?;
        Ok((device_id, key))
    }

    /// Enrolls a device with the public key it generated itself (what a real device does).
    pub fn enroll_key(
        &self,
        technician: &str,
        device: &DeviceId,
        public_key: &PublicKey,
    ) -> anyhow::Result<()> {
        let record = DeviceRecord {
            device_id: device.clone(),
            branch_id: self.state.branch_id.clone(),
            technician: TechnicianId::new(technician)?,
            public_key: public_key.to_hex(),
            revoked_at: None,
        };
        let pending = self
            .state
            .registry_write()
            .enroll_device(&self.state.store, record)?;
        pending.wait()?;
        Ok(())
    }

    /// The job as the server holds it on disk (`GET /api/jobs/{id}`).
    pub async fn fetch_job(&self, job: DocumentId) -> anyhow::Result<Job> {
        let token = self.desk_token(DeskRole::Analyst)?;
        let response = reqwest::Client::new()
            .get(self.http_url(&format!("/api/jobs/{job}")))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        let mut body: Value = response.json().await?;
        if !status.is_success() {
            bail!("get job: {status}: {body}");
        }
        Ok(serde_json::from_value(body["job"].take())?)
    }

    pub fn device_token(&self, device: &DeviceId, ttl: Duration) -> anyhow::Result<String> {
        self.state
            .tokens
            .issue(&Subject::Device(device.clone()), ttl, self.now())
            .map_err(anyhow::Error::msg)
    }

    pub fn desk_token(&self, role: DeskRole) -> anyhow::Result<String> {
        self.state
            .tokens
            .issue(&Subject::Desk(role), Duration::from_secs(600), self.now())
            .map_err(anyhow::Error::msg)
    }

    /// Creates a job assigned to `technician` through the desk API.
    pub async fn create_job(&self, technician: &str) -> anyhow::Result<CreatedJob> {
        self.create_job_from(&sample_job_body(technician)).await
    }

    /// Creates a job from a `POST /api/jobs` body (e.g. [`installation_job_body`]).
    pub async fn create_job_from(&self, body: &Value) -> anyhow::Result<CreatedJob> {
        let token = self.desk_token(DeskRole::Dispatcher)?;
        let response = reqwest::Client::new()
            .post(self.http_url("/api/jobs"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("create job: {status}: {body}");
        }
        let id = |key: &str| -> anyhow::Result<DocumentId> {
            let url = body[key].as_str().context("missing url")?;
            Ok(DocumentId::from_url(url)?)
        };
        Ok(CreatedJob {
            job: id("url")?,
            index: id("assignment_index_url")?,
        })
    }

    /// The refusal counters `/metrics` shows (`reason="…"} n` lines), as a scraper sees them.
    pub async fn refusals(&self) -> anyhow::Result<Vec<String>> {
        let text = reqwest::get(self.http_url("/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("fieldsync_refusals_total{"))
            .map(str::to_owned)
            .collect())
    }

    /// Connects a device with a fresh local store in `dir`.
    pub async fn connect_device(
        &self,
        device: &DeviceId,
        dir: &std::path::Path,
    ) -> anyhow::Result<SyncClient> {
        let token = self.device_token(device, Duration::from_secs(600))?;
        let store = Arc::new(Store::open(
            dir.join(format!("{device}.sqlite")),
            StoreConfig::default(),
        )?);
        connect_client(&self.ws_url(), &token, device.as_str(), store).await
    }

    /// `GET /api/jobs/{id}` with a dispatcher token: what the server holds on disk.
    pub async fn get_job(&self, job: DocumentId) -> anyhow::Result<Value> {
        let token = self.desk_token(DeskRole::Dispatcher)?;
        get_job(&self.http_url(""), &token, job).await
    }
}

/// Connects a device client that joins as `peer_id` over `store`.
pub async fn connect_client(
    ws_url: &str,
    token: &str,
    peer_id: &str,
    store: Arc<Store>,
) -> anyhow::Result<SyncClient> {
    let options = ConnectOptions {
        peer_id: peer_id.to_owned(),
        storage_id: Some(format!("store-{peer_id}")),
        max_frame_bytes: 16 * 1024 * 1024,
    };
    Ok(SyncClient::connect(ws_url, token, options, store).await?)
}

/// `GET {base}/api/jobs/{id}`; fails on anything but 200.
pub async fn get_job(base: &str, desk_token: &str, job: DocumentId) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{base}/api/jobs/{job}"))
        .bearer_auth(desk_token)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status != reqwest::StatusCode::OK {
        bail!("get job {job}: {status}: {body}");
    }
    Ok(body)
}

/// The job's notes in a `GET /api/jobs/{id}` body.
pub fn notes_of(body: &Value) -> String {
    body["job"]["notes"].as_str().unwrap_or_default().to_owned()
}

/// The notes text of a job document, if it reads as a job.
pub fn notes(doc: &automerge::Automerge) -> Option<String> {
    fieldsync_shared::job::doc::read_job(doc)
        .ok()
        .map(|j| j.notes)
}

/// An edit that appends `text` to the job's notes (a text object, so appends from one
/// writer keep their order and each shows as a distinct piece of the text).
pub fn append_notes(text: impl Into<String>) -> LocalEdit {
    let text = text.into();
    LocalEdit::Change(Box::new(move |doc| {
        let mut tx = doc.transaction();
        let (_, notes) = tx
            .get(ROOT, "notes")
            .map_err(|e| e.to_string())?
            .ok_or("the job has no notes")?;
        let len = tx.length(&notes);
        tx.splice_text(&notes, len, 0, &text)
            .map_err(|e| e.to_string())?;
        tx.commit();
        Ok(())
    }))
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- the real binary ---------------------------------------------------------------------

/// The `fieldsync` binary that cargo built into the same target directory as this test.
///
/// cargo builds a package's binaries only for that package's own integration tests, and this
/// crate is another package, so `CARGO_BIN_EXE_fieldsync` is not available here: the binary
/// is looked up next to the test executable (`target/<profile>/deps/it-…` →
/// `target/<profile>/fieldsync`), or at `$FIELDSYNC_BIN`. `scripts/test` builds it first. A
/// binary older than the server's sources is refused, so a test never passes against stale
/// code.
pub fn fieldsync_binary() -> anyhow::Result<PathBuf> {
    built_binary(
        "fieldsync",
        "FIELDSYNC_BIN",
        &[
            "server/src",
            // The console's templates are compiled into the binary.
            "server/templates",
            "shared/src",
            "storage/src",
            "storage/migrations",
            "report-print/src",
        ],
    )
}

/// The `fieldsync-tech` binary (the technician CLI), found like [`fieldsync_binary`] (or at
/// `$FIELDSYNC_TECH_BIN`) and refused when older than the client's sources.
pub fn tech_binary() -> anyhow::Result<PathBuf> {
    built_binary(
        "fieldsync-tech",
        "FIELDSYNC_TECH_BIN",
        &[
            "client-sdk/src",
            "shared/src",
            "storage/src",
            "storage/migrations",
            "report-print/src",
        ],
    )
}

fn built_binary(name: &str, env: &str, sources: &[&str]) -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(path) => PathBuf::from(path),
        None => {
            // A test runs from target/<profile>/deps, a figures binary from target/<profile>.
            let exe = std::env::current_exe()?;
            let dir = exe.parent().context("an executable has a directory")?;
            let profile_dir = if dir.ends_with("deps") {
                dir.parent().context("target/<profile>/deps has a parent")?
            } else {
                dir
            };
            profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
        }
    };
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "the {name} binary is missing at {}: build it with `cargo build --workspace \
                 --bins` (scripts/test does) or point {env} at it",
                path.display()
            )
        })?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for dir in sources {
        newest_file(&root.join(dir), &mut newest);
    }
    if let Some((modified, source)) = newest
        && modified > built
    {
        bail!(
            "the {name} binary at {} is older than {}: rebuild it with `cargo build \
             --workspace --bins` (scripts/test does)",
            path.display(),
            source.display()
        );
    }
    Ok(path)
}

/// Runs `fieldsync-tech --store <store> <args>` as a child process; returns its exit status,
/// stdout and stderr.
pub fn tech_cli(store: &Path, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(tech_binary()?)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("FIELDSYNC_TOKEN")
        .env_remove("FIELDSYNC_TOKEN_COMMAND")
        .env_remove("FIELDSYNC_CA_FILE")
        .env("FIELDSYNC_LOG", "warn")
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8(output.stdout)?,
        String::from_utf8(output.stderr)?,
    ))
}

fn newest_file(dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Test-only modules (`tests.rs`, the engine simulator) are not part of the binary, and
        // cargo does not relink it when only they change.
        let test_only = path
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n == "sim.rs" || n == "tests");
        if test_only {
            continue;
        }
        if path.is_dir() {
            newest_file(&path, newest);
        } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            *newest = Some((modified, path));
        }
    }
}

/// Runs `fieldsync <args> --data-dir <data_dir>` to completion and returns its stdout.
pub fn cli(data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    run_cli(&fieldsync_binary()?, data_dir, args)
}

/// [`cli`] with the `fieldsync` binary at `binary` (a release build, say).
pub fn run_cli(binary: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(binary);
    // Under `FIELDSYNC_TEST_PG` a head office's archive is a database of its own
    // (`pg::test_database`): its commands (`stats`, `archive retry`, `branch enroll`) open it.
    if let Some(url) = pg::test_database_blocking(data_dir)? {
        command.env("FIELDSYNC_STORAGE_URL", url);
    }
    let output = command
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FIELDSYNC_CONFIG")
        .env("FIELDSYNC_LOG", "warn")
        // The branch an edge directory serves before its first `serve` recorded one.
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .output()?;
    if !output.status.success() {
        bail!(
            "fieldsync {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// [`cli`] with `stdin` as the command's standard input (a password for `fieldsync user`).
/// A manager (`wang`) added to the server in `data_dir` with the CLI, and a desk token of
/// `ttl` (`15m`, `2h`) for them, as the desk would get one (blocking).
pub fn manager_token(data_dir: &Path, ttl: &str) -> anyhow::Result<String> {
    cli_with_stdin(
        data_dir,
        &["user", "add", "--name", "wang", "--role", "manager"],
        "wang-manager-password\n",
    )?;
    cli(data_dir, &["desk", "token", "--user", "wang", "--ttl", ttl])
}

/// `body` posted as the desk (`token`) to `path` of the server at `base`, which must answer
/// 201 Created; its JSON answer. `what` names the request in the error.
async fn post_created(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: &Value,
    what: &str,
) -> anyhow::Result<Value> {
    let answer = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(
        answer.status() == reqwest::StatusCode::CREATED,
        "{what}: {}",
        answer.text().await?
    );
    Ok(answer.json().await?)
}

/// A job made through `POST /api/jobs` on the server at `base` (`http://host:port`) from
/// `body`; its document id (automerge-repo's `documentId`).
pub async fn create_job_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let created = post_created(http, base, "/api/jobs", token, body, "create job").await?;
    Ok(created["job_id"].as_str().context("job_id")?.to_owned())
}

/// A desk's one-time enrollment code for `technician` from the server at `base`.
pub async fn enrollment_code_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    technician: &str,
) -> anyhow::Result<String> {
    let body = serde_json::json!({ "technician": technician });
    let code = post_created(
        http,
        base,
        "/api/enrollment-codes",
        token,
        &body,
        "enrollment code",
    )
    .await?;
    Ok(code["code"].as_str().context("code")?.to_owned())
}

pub fn cli_with_stdin(data_dir: &Path, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(fieldsync_binary()?)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("FIELDSYNC_CONFIG")
        .env("FIELDSYNC_LOG", "warn")
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("no stdin pipe")?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "fieldsync {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// `fieldsync serve` as a child process on a random loopback port. Dropping it kills it.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts the binary on `127.0.0.1:0` and waits until it logs the address it serves on
    /// (blocking the calling thread for that moment).
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, &[], &[])
    }

    /// [`start`](Self::start) with more arguments for `serve` and more environment.
    pub fn start_with(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        Self::start_at(&fieldsync_binary()?, data_dir, any_port, &args, env)
    }

    /// Starts `<binary> serve --listen <listen> --data-dir <data_dir> <args…>` (e.g.
    /// `--config FILE`, `--role head-office`) with `env` added: restarted on its old port, a
    /// server is the same server to the devices and branches that knew it.
    pub fn start_at(
        binary: &Path,
        data_dir: &Path,
        listen: SocketAddr,
        args: &[&OsStr],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("FIELDSYNC_CONFIG")
            .env("FIELDSYNC_LOG", "info")
            .env("NO_COLOR", "1")
            // An edge's first start needs a branch id; `env` may name another.
            .env("FIELDSYNC_BRANCH_ID", "north-01")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (found, addr) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            // Keeps reading to the end, so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    // Into the log before the address goes out, so that a test reading the log
                    // as soon as `start` returns finds the "serving" line in it.
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push_str(&format!("{line}\n"));
                    if line.contains("serving")
                        && let Some(addr) = logged_addr(&line)
                    {
                        let _ = found.send(addr);
                    }
                }
            });
        }
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            log,
        };
        match addr.recv_timeout(SETTLE) {
            Ok(addr) => server.addr = addr,
            Err(_) => bail!("fieldsync serve did not start; its log:\n{}", server.log()),
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, no flush, nothing the process could do about it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A memory figure of the process from `/proc/<pid>/status`, in bytes: `VmRSS` (resident
    /// now) or `VmHWM` (the most it was ever resident).
    pub fn memory(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(str::trim)
            .with_context(|| format!("no {field} in /proc status"))?
            .parse()?;
        Ok(kib * 1024)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `addr=…` field of the server's "serving" log line (or its `addr` in a JSON line).
fn logged_addr(line: &str) -> Option<SocketAddr> {
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return value["fields"]["addr"].as_str()?.parse().ok();
    }
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .and_then(|addr| addr.parse().ok())
}

// ---- a raw WebSocket peer ----------------------------------------------------------------

/// What a raw peer read from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(Message),
    /// A close frame (code and reason), or the socket ended without one (`None`).
    Closed(Option<(u16, String)>),
}

/// How the server ended a connection: the `error` messages it sent, then the close frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub errors: Vec<String>,
    pub close: Option<(u16, String)>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket peer that sends whatever bytes a test wants, for hostile-input tests.
#[derive(Debug)]
pub struct RawPeer {
    ws: Ws,
    pub peer_id: String,
}

impl RawPeer {
    /// Opens `/sync` with `token` (as a bearer header, if any), without joining.
    pub async fn connect(
        ws_url: &str,
        token: Option<&str>,
        peer_id: &str,
    ) -> Result<Self, tungstenite::Error> {
        let mut request = ws_url.into_client_request()?;
        if let Some(token) = token {
            let value = tungstenite::http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self {
            ws,
            peer_id: peer_id.to_owned(),
        })
    }

    /// Connects and completes the handshake as `peer_id`.
    pub async fn joined(ws_url: &str, token: &str, peer_id: &str) -> anyhow::Result<Self> {
        let mut peer = Self::connect(ws_url, Some(token), peer_id).await?;
        peer.send(&peer.join_message(&["1"])).await?;
        match peer.next(SETTLE).await? {
            Incoming::Message(Message::Peer(_)) => Ok(peer),
            other => bail!("expected `peer` after `join`, got {other:?}"),
        }
    }

    pub fn join_message(&self, versions: &[&str]) -> Message {
        Message::Join(JoinMessage {
            sender_id: PeerId::new(self.peer_id.clone()),
            supported_protocol_versions: versions.iter().map(|v| (*v).to_owned()).collect(),
            peer_metadata: PeerMetadata::default(),
        })
    }

    pub async fn send(&mut self, message: &Message) -> anyhow::Result<()> {
        self.send_bytes(protocol::encode(message)).await
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Binary(bytes.into())).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Text(text.into())).await?;
        Ok(())
    }

    /// The next protocol message or close, skipping pings; fails after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Incoming> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("timed out waiting for a frame from the server")?;
            match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    let message = protocol::decode(&bytes, &protocol::Limits::default())
                        .context("the server sent a frame that does not decode")?;
                    return Ok(Incoming::Message(message));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Ok(Incoming::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(Incoming::Closed(None)),
            }
        }
    }

    /// Reads until the server closes the connection; fails if it does not within `timeout`.
    pub async fn refusal(&mut self, timeout: Duration) -> anyhow::Result<Refusal> {
        let mut errors = Vec::new();
        loop {
            match self.next(timeout).await? {
                Incoming::Message(Message::Error(e)) => errors.push(e.message),
                Incoming::Message(_) => {}
                Incoming::Closed(close) => return Ok(Refusal { errors, close }),
            }
        }
    }
}

/// A real automerge sync message from `from` to a peer holding `to`, taken from the point of
/// their exchange where it carries changes.
pub fn message_carrying_changes(from: &Automerge, to: &Automerge) -> anyhow::Result<Vec<u8>> {
    let (mut from, mut to) = (from.clone(), to.clone());
    let (mut ours, mut theirs) = (sync::State::new(), sync::State::new());
    for _ in 0..4 {
        if let Some(m) = from.generate_sync_message(&mut ours) {
            if !m.changes.is_empty() {
                return Ok(m.encode());
            }
            to.receive_sync_message(&mut theirs, m)?;
        }
        if let Some(m) = to.generate_sync_message(&mut theirs) {
            from.receive_sync_message(&mut ours, m)?;
        }
    }
    anyhow::bail!("automerge never sent the changes")
}

/// The ids the desk API returned.
#[derive(Debug, Clone, Copy)]
pub struct CreatedJob {
    pub job: DocumentId,
    pub index: DocumentId,
}

/// A valid `POST /api/jobs` body.
pub fn sample_job_body(technician: &str) -> Value {
    json!({
        "kind": "repair",
        "request": {
            "channel": "phone",
            "received_at": "2026-11-02T08:30:00Z",
            "fault_description": "Compressor trips after ten minutes",
            "requested_arrival": "2026-11-03T09:00:00Z"
        },
        "customer": {"id": "c-1001", "name": "Lotus Foods Ltd", "contact": "Ms Chen", "site_address": "12 Harbour Road"},
        "product": {"model": "CH-500", "serial": "SN-88812", "product_type": "chiller", "warranty_end": "2025-04-01"},
        "technician": technician,
        // Most tests make the job before enrolling the device that takes it: new staff, as
        // far as the desk can tell (issue 18; the R3 desk test checks the refusal without it).
        "pre_assign": true
    })
}

/// A valid `POST /api/jobs` body of an installation and commissioning job (R16: it needs the
/// contract's date, and training of the customer's staff before it can be completed), due
/// 30 days after `now` (the server's clock).
pub fn installation_job_body(technician: &str, now: fieldsync_shared::time::Timestamp) -> Value {
    let mut body = sample_job_body(technician);
    body["kind"] = json!("installation");
    let due = now
        .plus_millis(30 * 86_400_000)
        .date()
        .expect("a date in range");
    body["contract_due"] = json!(due.to_string());
    body["request"]["fault_description"] = json!("Install and commission the new chiller");
    body
}

/// A fresh temp dir.
pub fn temp_dir() -> anyhow::Result<TempDir> {
    Ok(tempfile::tempdir()?)
}

/// How long tests wait for sync to settle before failing.
pub const SETTLE: Duration = Duration::from_secs(20);

// ---- head office and the branch link ---------------------------------------------------

impl TestServer {
    /// Starts a head office with its data in `data_dir`, its instants from `clock`.
    /// Its archive is its own SQLite database, or a PostgreSQL database when
    /// `FIELDSYNC_TEST_PG` names a server (`pg::test_database`).
    pub async fn start_head_office(data_dir: &Path, clock: Clock) -> anyhow::Result<Self> {
        Self::start_head_office_with(data_dir, clock, |_| {}).await
    }

    /// [`TestServer::start_head_office`], with `adjust` applied to its config last.
    pub async fn start_head_office_with(
        data_dir: &Path,
        clock: Clock,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let url = pg::test_database(data_dir).await?;
        Self::start_with_clock(data_dir, clock, |c| {
            c.role = fieldsync_server::config::Role::HeadOffice;
            c.branch_id = Some("head-office".into());
            c.storage.url = url;
            adjust(c);
        })
        .await
    }

    /// Head office: enrolls the branch whose data directory is `branch_dir` (creating its key
    /// if needed, as `fieldsync keygen` would) and writes a branch token into
    /// `branch_dir/upstream.token`. Returns the token file.
    pub fn enroll_branch(&self, branch: &str, branch_dir: &Path) -> anyhow::Result<PathBuf> {
        use fieldsync_server::sync::registry::BranchRecord;
        let dir = fieldsync_server::data_dir::DataDir::open(branch_dir)?;
        let (key, _) = dir.load_or_create_server_key()?;
        let branch_id = BranchId::new(branch)?;
        let pending = self.state.registry_write().enroll_branch(
            &self.state.store,
            BranchRecord {
                branch_id: branch_id.clone(),
                public_key: key.public().to_hex(),
                enrolled_at: self.now(),
            },
        );
        pending.wait()?;
        let token = self
            .state
            .tokens
            // A year: tests move the manual clock by weeks (a report signed in the next
            // month), and a link that reconnects after such a move must still be let in.
            .issue(
                &Subject::Branch(branch_id),
                Duration::from_secs(365 * 24 * 3600),
                self.now(),
            )
            .map_err(anyhow::Error::msg)?;
        let file = branch_dir.join("upstream.token");
        std::fs::write(&file, token)?;
        Ok(file)
    }

    /// Starts branch `north-01` in `data_dir`, delivering its reports to `upstream_url`.
    pub async fn start_branch(
        data_dir: &Path,
        upstream_url: String,
        token_file: PathBuf,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        Self::start_named_branch("north-01", data_dir, upstream_url, token_file, clock).await
    }

    /// Starts branch `branch` in `data_dir`, delivering to `upstream_url`.
    pub async fn start_named_branch(
        branch: &str,
        data_dir: &Path,
        upstream_url: String,
        token_file: PathBuf,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let branch = branch.to_owned();
        Self::start_with_clock(data_dir, clock, move |c| {
            c.branch_id = Some(branch);
            c.upstream = Some(fieldsync_server::config::Upstream {
                url: upstream_url,
                token_file,
                retry_max: Duration::from_secs(1),
                verdict_poll: Duration::from_secs(1),
                ca_file: None,
            });
        })
        .await
    }
}

/// A TCP relay between a branch and head office that a test can cut and restore (the one
/// the demo uses).
pub use fieldsync_server::demo::Relay as LinkProxy;
