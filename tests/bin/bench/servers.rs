//! The servers under test, each started as a child process on a loopback port: fieldsync as
//! shipped (SQLite durability, tokens checked), the reference JavaScript sync server (NodeFS
//! storage, no auth) and a bare samod server (in memory, no auth).
//!
//! Each knows how to make device identities and jobs in its own way: fieldsync through its
//! CLI (`device enroll`, `device token`) and desk API (`POST /api/jobs`), the baselines
//! through a "desk" client that creates the same job documents and syncs them up.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::ChangeHash;
use fieldsync_shared::ids::DocumentId;
use fieldsync_tests::sample_job_body;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::client::{Device, DeviceDoc, SessionPlan};
use crate::workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Fieldsync,
    /// fieldsync built with `unchecked-writes`: the same server without the write-authority
    /// checks, to measure what they cost (issue 12).
    FieldsyncUnchecked,
    Js,
    Samod,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fieldsync => "fieldsync",
            Kind::FieldsyncUnchecked => "fieldsync-unchecked",
            Kind::Js => "js",
            Kind::Samod => "samod",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "fieldsync" => Some(Kind::Fieldsync),
            "fieldsync-unchecked" => Some(Kind::FieldsyncUnchecked),
            "js" => Some(Kind::Js),
            "samod" => Some(Kind::Samod),
            _ => None,
        }
    }

    /// Either build of fieldsync (same CLI, API and protocol).
    pub fn is_fieldsync(self) -> bool {
        matches!(self, Kind::Fieldsync | Kind::FieldsyncUnchecked)
    }
}

/// Where the server programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub fieldsync: PathBuf,
    /// fieldsync built with the `unchecked-writes` feature (scripts/bench builds it).
    pub fieldsync_unchecked: PathBuf,
    pub js_dir: PathBuf,
    pub samod: PathBuf,
}

impl Programs {
    /// The binary of a fieldsync kind.
    pub fn fieldsync_of(&self, kind: Kind) -> &PathBuf {
        match kind {
            Kind::FieldsyncUnchecked => &self.fieldsync_unchecked,
            _ => &self.fieldsync,
        }
    }

    pub fn available(&self, kind: Kind) -> bool {
        match kind {
            Kind::Fieldsync => self.fieldsync.exists(),
            Kind::FieldsyncUnchecked => self.fieldsync_unchecked.exists(),
            Kind::Js => self.js_dir.join("node_modules").exists(),
            Kind::Samod => self.samod.exists(),
        }
    }
}

/// A device identity on a server: peer id, storage id, token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub technician: String,
    pub peer_id: String,
    pub token: Option<String>,
}

impl Identity {
    pub fn device(&self, docs: Vec<DeviceDoc>) -> Device {
        Device {
            peer_id: self.peer_id.clone(),
            sessions: 0,
            storage_id: Some(format!("store-{}", self.peer_id)),
            token: self.token.clone(),
            docs,
        }
    }
}

pub struct Server {
    pub kind: Kind,
    child: Child,
    pub port: u16,
    pub data: PathBuf,
    programs: Programs,
    desk_token: Option<String>,
    http: reqwest::Client,
    /// When the process was spawned, and how long until it answered (fieldsync: `/healthz`;
    /// the baselines: a TCP connect).
    pub spawned: Instant,
    pub ready_after: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /healthz` on the port answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    if tcp
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Reads `listening PORT` from a child's stdout.
fn read_port(child: &mut Child) -> anyhow::Result<u16> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    line.trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("server printed {line:?}"))
}

impl Server {
    /// Starts a fresh server with its data under `dir`.
    pub fn start(kind: Kind, programs: &Programs, dir: &Path) -> anyhow::Result<Server> {
        Self::start_with_env(kind, programs, dir, &[])
    }

    /// [`Server::start`] with extra environment variables for the server process (fieldsync's
    /// `FIELDSYNC_*` settings; the baselines ignore them).
    pub fn start_with_env(
        kind: Kind,
        programs: &Programs,
        dir: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let data = dir.join(format!("{}-data", kind.name()));
        std::fs::create_dir_all(&data)?;
        let spawned = Instant::now();
        let (child, port) = match kind {
            Kind::Fieldsync | Kind::FieldsyncUnchecked => {
                let port = free_port()?;
                let child = Command::new(programs.fieldsync_of(kind))
                    .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                    .arg("--data-dir")
                    .arg(&data)
                    .env("FIELDSYNC_BRANCH_ID", "bench-01")
                    .env("FIELDSYNC_LOG", "warn")
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::null())
                    .spawn()
                    .with_context(|| format!("start {}", programs.fieldsync_of(kind).display()))?;
                (child, port)
            }
            Kind::Js => {
                let mut child = Command::new("node")
                    .arg(programs.js_dir.join("server.mjs"))
                    .arg(&data)
                    .arg("0")
                    .current_dir(&programs.js_dir)
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("start node (is Node.js installed?)")?;
                let port = read_port(&mut child)?;
                (child, port)
            }
            Kind::Samod => {
                let mut child = Command::new(&programs.samod)
                    .arg("0")
                    .stdout(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("start {}", programs.samod.display()))?;
                let port = read_port(&mut child)?;
                (child, port)
            }
        };
        let mut server = Server {
            kind,
            child,
            port,
            data,
            programs: programs.clone(),
            desk_token: None,
            http: reqwest::Client::new(),
            spawned,
            ready_after: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("{} did not start", kind.name());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        server.ready_after = spawned.elapsed();
        if kind.is_fieldsync() {
            // fieldsync binds its port before it opens its data directory and creates its keys;
            // a CLI run in between would race it for the key files. It answers /healthz only
            // once it is open.
            while !healthy(port) {
                if Instant::now() > deadline {
                    bail!("fieldsync never answered /healthz");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            server.ready_after = spawned.elapsed();
            // Belt and braces: the first CLI run may still find the server's files busy.
            let mut attempt = 0;
            server.desk_token = loop {
                match server.cli(&["desk", "token", "--role", "manager"]) {
                    Ok(token) => break Some(token),
                    Err(_) if attempt < 20 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                }
            };
        }
        Ok(server)
    }

    /// A token for an enrolled device (fieldsync's CLI).
    pub fn device_token(&self, device: &str) -> anyhow::Result<String> {
        self.cli(&["device", "token", "--device", device, "--ttl", "4h"])
    }

    /// Milliseconds from the spawn until fieldsync's `GET /api/approvals` answers 200 (the
    /// desk's queue is there; it answers 503 `approvals_loading` before).
    pub async fn until_approvals(&self, limit: Duration) -> anyhow::Result<f64> {
        let token = self.desk_token.clone().context("desk token")?;
        let url = format!("http://127.0.0.1:{}/api/approvals", self.port);
        let deadline = Instant::now() + limit;
        loop {
            let r = self.http.get(&url).bearer_auth(&token).send().await;
            if r.as_ref().is_ok_and(|r| r.status().is_success()) {
                return Ok(self.spawned.elapsed().as_secs_f64() * 1000.0);
            }
            if Instant::now() > deadline {
                bail!("GET /api/approvals never answered 200: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        match self.kind {
            Kind::Fieldsync | Kind::FieldsyncUnchecked => {
                format!("ws://127.0.0.1:{}/sync", self.port)
            }
            Kind::Js | Kind::Samod => format!("ws://127.0.0.1:{}/", self.port),
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.programs.fieldsync_of(self.kind))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env("FIELDSYNC_BRANCH_ID", "bench-01")
            .output()?;
        if !out.status.success() {
            bail!(
                "fieldsync {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {field}"))
    }

    /// CPU time the server process used so far (user + system), in clock ticks; and the part
    /// of it its hub threads used (`fieldsync-hub*`, issue 17's shards). Read from /proc.
    pub fn cpu_ticks(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.child.id();
        let total = stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)?;
        let mut hub = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
                continue; // the thread ended meanwhile
            };
            if stat.contains("(fieldsync-hub") {
                hub += stat_ticks(&stat)?;
            }
        }
        Ok((total, hub))
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    /// Waits until the server's process is idle (under 10% of a core over half a second),
    /// at most `max`; returns how long it was busy. A server digests an upload after it
    /// acknowledged it (fieldsync: the desk's records and the signer read each changed job),
    /// and a reconnect timed meanwhile measures that work too.
    pub async fn wait_idle(&self, max: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let window = Duration::from_millis(500);
        // Clock ticks are 10 ms: under 5 in half a second is under 10% of a core.
        let mut last = self.cpu_ticks()?.0;
        while started.elapsed() < max {
            tokio::time::sleep(window).await;
            let now = self.cpu_ticks()?.0;
            if now.saturating_sub(last) < 5 {
                return Ok(started.elapsed().saturating_sub(window));
            }
            last = now;
        }
        Ok(started.elapsed())
    }

    /// The median of a few RSS readings once allocations settle.
    pub async fn settled_rss_kib(&self) -> anyhow::Result<u64> {
        let mut readings = Vec::new();
        for _ in 0..5 {
            tokio::time::sleep(crate::settle(Duration::from_millis(150))).await;
            readings.push(self.rss_kib()?);
        }
        readings.sort_unstable();
        Ok(readings[2])
    }

    /// A gauge from fieldsync's `/metrics` (None for the baselines, or when absent).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        if !self.kind.is_fieldsync() {
            return None;
        }
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
    }

    /// Bytes under the data directory (0 for samod, which keeps everything in memory).
    pub fn disk_bytes(&self) -> u64 {
        dir_size(&self.data)
    }

    /// Device identities for `technicians` technicians with `per_technician` devices each.
    /// fieldsync enrolls them through its CLI (as an operator would) and issues tokens.
    pub async fn identities(
        &self,
        technicians: usize,
        per_technician: usize,
    ) -> anyhow::Result<Vec<Identity>> {
        let mut out = Vec::new();
        for t in 0..technicians {
            for d in 0..per_technician {
                let technician = format!("tech-{t:04}");
                let peer_id = format!("dev-{t:04}-{d}");
                let token = if self.kind.is_fieldsync() {
                    self.cli(&[
                        "device",
                        "enroll",
                        "--technician",
                        &technician,
                        "--device",
                        &peer_id,
                    ])?;
                    Some(self.cli(&["device", "token", "--device", &peer_id, "--ttl", "4h"])?)
                } else {
                    None
                };
                out.push(Identity {
                    technician,
                    peer_id,
                    token,
                });
            }
            if technicians >= 20 && (t + 1) % 20 == 0 {
                crate::progress(&format!(
                    "  {}: enrolled {}/{technicians} technicians",
                    self.kind.name(),
                    t + 1
                ));
            }
        }
        if let Some(last) = out.last()
            && self.kind.is_fieldsync()
        {
            // The running server merges records written by the CLI within a second or so:
            // wait until it accepts the last device enrolled.
            let deadline = Instant::now() + Duration::from_secs(60);
            let peer = format!("{}:enrolled", last.peer_id);
            loop {
                match crate::client::join(&self.ws_url(), last.token.as_deref(), &peer, None).await
                {
                    Ok((mut ws, _)) => {
                        let _ = ws.close(None).await;
                        break;
                    }
                    Err(e) if Instant::now() > deadline => {
                        return Err(e.context("the server never accepted the enrolled devices"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(out)
    }

    /// Creates `jobs` jobs for each technician; returns their ids per technician (in the
    /// order of `technicians`).
    pub async fn create_jobs(
        &self,
        technicians: &[String],
        jobs: usize,
    ) -> anyhow::Result<Vec<Vec<DocumentId>>> {
        match self.kind {
            Kind::Fieldsync | Kind::FieldsyncUnchecked => {
                let token = self.desk_token.clone().context("desk token")?;
                let url = format!("http://127.0.0.1:{}/api/jobs", self.port);
                let requests: Vec<(usize, String)> = technicians
                    .iter()
                    .enumerate()
                    .flat_map(|(i, t)| (0..jobs).map(move |_| (i, t.clone())))
                    .collect();
                let total = requests.len();
                let mut out = vec![Vec::new(); technicians.len()];
                let mut done = 0;
                let mut responses =
                    futures_util::stream::iter(requests.into_iter().map(|(i, technician)| {
                        let http = self.http.clone();
                        let url = url.clone();
                        let token = token.clone();
                        async move {
                            let response = http
                                .post(url)
                                .bearer_auth(token)
                                .json(&sample_job_body(&technician))
                                .send()
                                .await?;
                            let status = response.status();
                            let body: serde_json::Value = response.json().await?;
                            if !status.is_success() {
                                bail!("create job: {status}: {body}");
                            }
                            let url = body["url"].as_str().context("job url")?;
                            anyhow::Ok((i, DocumentId::from_url(url)?))
                        }
                    }))
                    .buffer_unordered(8);
                while let Some(result) = responses.next().await {
                    let (i, id) = result?;
                    out[i].push(id);
                    done += 1;
                    if done % 500 == 0 {
                        crate::progress(&format!("  fieldsync: created {done}/{total} jobs"));
                    }
                }
                Ok(out)
            }
            Kind::Js | Kind::Samod => {
                // No desk API: a desk client creates the same documents and syncs them up.
                let mut ids = Vec::new();
                let mut docs = Vec::new();
                for technician in technicians {
                    let mut mine = Vec::new();
                    for _ in 0..jobs {
                        let id = DocumentId::random();
                        docs.push(DeviceDoc::with(id, workload::new_job_doc(id, technician)?));
                        mine.push(id);
                    }
                    ids.push(mine);
                }
                // At most 500 documents per session: the JS server resets a connection that
                // opens 4,000 documents at once.
                let total = docs.len();
                let mut docs = docs.into_iter().peekable();
                let mut batch = 0;
                while docs.peek().is_some() {
                    let mut desk = Device {
                        peer_id: format!("desk-{}-{batch}", std::process::id()),
                        sessions: 0,
                        storage_id: Some("desk-store".into()),
                        token: None,
                        docs: docs.by_ref().take(500).collect(),
                    };
                    run_to_convergence(&mut desk, &self.ws_url(), Duration::from_secs(600)).await?;
                    batch += 1;
                    if total > 500 {
                        crate::progress(&format!(
                            "  {}: created {}/{total} jobs",
                            self.kind.name(),
                            (batch * 500).min(total)
                        ));
                    }
                }
                Ok(ids)
            }
        }
    }

    /// The heads the server holds for `doc`, read outside any timed section: fieldsync from
    /// its desk API (which reads the stored document from disk), the baselines by fetching
    /// the document with a fresh client.
    pub async fn heads(&self, docs: &[DocumentId]) -> anyhow::Result<Vec<Vec<ChangeHash>>> {
        match self.kind {
            Kind::Fieldsync | Kind::FieldsyncUnchecked => {
                let token = self.desk_token.clone().context("desk token")?;
                let mut results =
                    futures_util::stream::iter(docs.iter().enumerate().map(|(i, doc)| {
                        let http = self.http.clone();
                        let url = format!("http://127.0.0.1:{}/api/jobs/{doc}", self.port);
                        let token = token.clone();
                        async move {
                            let body: serde_json::Value = http
                                .get(url)
                                .bearer_auth(token)
                                .send()
                                .await?
                                .error_for_status()?
                                .json()
                                .await?;
                            let mut heads = body["heads"]
                                .as_array()
                                .context("heads")?
                                .iter()
                                .map(|h| {
                                    h.as_str()
                                        .context("head")?
                                        .parse::<ChangeHash>()
                                        .map_err(|e| anyhow::anyhow!("{e}"))
                                })
                                .collect::<anyhow::Result<Vec<_>>>()?;
                            heads.sort();
                            anyhow::Ok((i, heads))
                        }
                    }))
                    .buffer_unordered(8);
                let mut out = vec![Vec::new(); docs.len()];
                while let Some(r) = results.next().await {
                    let (i, heads) = r?;
                    out[i] = heads;
                }
                Ok(out)
            }
            Kind::Js | Kind::Samod => {
                // In sessions of at most 500 documents, as the desk uploads them.
                let mut out = Vec::with_capacity(docs.len());
                for chunk in docs.chunks(500) {
                    let mut checker = Device {
                        peer_id: format!("checker-{}", DocumentId::random()),
                        sessions: 0,
                        storage_id: None,
                        token: None,
                        docs: chunk.iter().map(|d| DeviceDoc::empty(*d)).collect(),
                    };
                    run_to_convergence(&mut checker, &self.ws_url(), Duration::from_secs(600))
                        .await?;
                    out.extend(checker.docs.iter_mut().map(DeviceDoc::heads));
                }
                Ok(out)
            }
        }
    }
}

/// Runs one session until every document has converged, then closes it; returns the instant
/// of convergence.
pub async fn run_to_convergence(
    device: &mut Device,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let (stop_tx, stop) = watch::channel(false);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let plan = SessionPlan {
        url: url.to_owned(),
        converged: Some(tx),
        stop,
        editor: None,
        watcher: None,
        timeout,
    };
    let session = device.session(plan);
    tokio::pin!(session);
    let at = tokio::select! {
        result = &mut session => { result?; bail!("session ended before convergence"); }
        converged = rx => converged.context("session dropped")?,
    };
    let _ = stop_tx.send(true);
    session.await?;
    Ok(at)
}

pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// utime + stime of a /proc stat line (fields 14 and 15, counted after the command name,
/// which may hold spaces).
fn stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let rest = stat.rsplit_once(')').context("a stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("a short stat line")?.parse()?)
    };
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
pub const CLK_TCK: f64 = 100.0;
