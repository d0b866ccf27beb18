//! The two server processes of the loop, both the real `fieldsync` binary: head office, and
//! the branch edge that signs reports and delivers them to it over its `[upstream]` link.
//! Each keeps one loopback port for the whole run, so a restarted server is the same server
//! to the devices and the branch that knew it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::Job;
use serde_json::Value;

use crate::{CreatedJob, ServerProcess, run_cli};

/// Where the servers live and how to reach them; shared read-only by every task.
#[derive(Debug)]
pub struct Cluster {
    binary: PathBuf,
    pub edge_dir: PathBuf,
    pub head_office_dir: PathBuf,
    edge_config: PathBuf,
    head_office_config: PathBuf,
    pub edge_addr: SocketAddr,
    pub head_office_addr: SocketAddr,
    /// A dispatcher's token at the edge (creates jobs, reads jobs and reports).
    dispatcher: String,
    /// An analyst's token at head office (reads the archive).
    analyst: String,
    http: reqwest::Client,
}

/// The running server processes; owned by the loop that kills them.
#[derive(Debug, Default)]
pub struct Servers {
    edge: Option<ServerProcess>,
    head_office: Option<ServerProcess>,
}

/// A loopback port nobody listens on now.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A path as a TOML basic string (JSON string escapes are valid TOML).
fn toml_path(path: &Path) -> anyhow::Result<String> {
    let s = path.to_str().context("a data path is not UTF-8")?;
    Ok(serde_json::to_string(s)?)
}

impl Cluster {
    /// Creates both data directories, enrolls the branch at head office, writes the branch's
    /// upstream token and config, and starts both servers. Blocking.
    pub fn create(binary: &Path, root: &Path) -> anyhow::Result<(Self, Servers)> {
        let edge_dir = root.join("edge");
        let head_office_dir = root.join("head-office");
        std::fs::create_dir_all(&edge_dir)?;
        std::fs::create_dir_all(&head_office_dir)?;
        let (edge_addr, head_office_addr) = (free_port()?, free_port()?);

        let head_office_config = root.join("head-office.toml");
        std::fs::write(
            &head_office_config,
            "role = \"head-office\"\nbranch_id = \"head-office\"\n",
        )?;
        let token_file = edge_dir.join("upstream.token");
        let edge_config = root.join("edge.toml");
        // retry_max = 1: the branch redials a restarted head office within a second.
        std::fs::write(
            &edge_config,
            format!(
                "branch_id = \"north-01\"\n\n[upstream]\nurl = \"ws://{head_office_addr}/sync\"\n\
                 token_file = {}\nretry_max = 1\n",
                toml_path(&token_file)?
            ),
        )?;

        // `--config` is global to every subcommand, so it goes after them.
        let edge_cli = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--config", edge_config.to_str().unwrap_or_default()]);
            run_cli(binary, &edge_dir, &all)
        };
        let head_office_cli = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--config", head_office_config.to_str().unwrap_or_default()]);
            run_cli(binary, &head_office_dir, &all)
        };
        let keygen: Value = serde_json::from_str(&edge_cli(&["keygen"])?)?;
        let edge_key = keygen["public_key_file"]
            .as_str()
            .context("keygen printed no public_key_file")?
            .to_owned();
        // Only serve and keygen make a data directory (issue 13): head office's first.
        head_office_cli(&["keygen"])?;
        head_office_cli(&[
            "branch", "enroll", "--branch", "north-01", "--key", &edge_key,
        ])?;
        let token = head_office_cli(&["branch", "token", "--branch", "north-01", "--ttl", "30d"])?;
        std::fs::write(&token_file, token)?;
        let dispatcher = edge_cli(&["desk", "token", "--role", "dispatcher", "--ttl", "24h"])?;
        let analyst = head_office_cli(&["desk", "token", "--role", "analyst", "--ttl", "24h"])?;

        let cluster = Self {
            binary: binary.to_owned(),
            edge_dir,
            head_office_dir,
            edge_config,
            head_office_config,
            edge_addr,
            head_office_addr,
            dispatcher,
            analyst,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
        };
        let mut servers = Servers::default();
        servers.start_head_office(&cluster)?;
        servers.start_edge(&cluster)?;
        Ok((cluster, servers))
    }

    /// `fieldsync <args>` on the edge's data directory and config. Blocking.
    pub fn edge_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let config = self.edge_config.to_str().context("config path")?;
        let mut all = args.to_vec();
        all.extend(["--config", config]);
        run_cli(&self.binary, &self.edge_dir, &all)
    }

    pub fn edge_ws_url(&self) -> String {
        format!("ws://{}/sync", self.edge_addr)
    }

    /// Enrolls a device's own public key for `technician`. Blocking.
    pub fn enroll_device(
        &self,
        technician: &str,
        device: &str,
        public_key_file: &Path,
    ) -> anyhow::Result<()> {
        let key = public_key_file.to_str().context("key path")?;
        self.edge_cli(&[
            "device",
            "enroll",
            "--technician",
            technician,
            "--device",
            device,
            "--public-key",
            key,
        ])?;
        Ok(())
    }

    /// A fresh device token, as an app's token source would fetch. Blocking.
    pub fn device_token(&self, device: &str) -> anyhow::Result<String> {
        self.edge_cli(&["device", "token", "--device", device, "--ttl", "12h"])
    }

    /// One attempt at `POST /api/jobs`: `None` when the edge did not answer (it is down, or
    /// died mid-request: the job may or may not exist then).
    pub async fn create_job(&self, body: &Value) -> anyhow::Result<Option<CreatedJob>> {
        let sent = self
            .http
            .post(format!("http://{}/api/jobs", self.edge_addr))
            .bearer_auth(&self.dispatcher)
            .json(body)
            .send()
            .await;
        let Ok(response) = sent else {
            return Ok(None);
        };
        let status = response.status();
        let Ok(body) = response.json::<Value>().await else {
            return Ok(None);
        };
        if status != reqwest::StatusCode::CREATED {
            bail!("create job: {status}: {body}");
        }
        let id = |key: &str| -> anyhow::Result<DocumentId> {
            Ok(DocumentId::from_url(
                body[key].as_str().context("a url missing")?,
            )?)
        };
        Ok(Some(CreatedJob {
            job: id("url")?,
            index: id("assignment_index_url")?,
        }))
    }

    /// The job as the edge stores it (`GET /api/jobs/{id}`), `None` if the edge did not
    /// answer.
    pub async fn edge_job(&self, job: DocumentId) -> anyhow::Result<Option<Job>> {
        let sent = self
            .http
            .get(format!("http://{}/api/jobs/{job}", self.edge_addr))
            .bearer_auth(&self.dispatcher)
            .send()
            .await;
        let Ok(response) = sent else {
            return Ok(None);
        };
        let status = response.status();
        let Ok(mut body) = response.json::<Value>().await else {
            return Ok(None);
        };
        if !status.is_success() {
            bail!("GET job {job}: {status}: {body}");
        }
        Ok(Some(serde_json::from_value(body["job"].take())?))
    }

    /// Whether the edge's reports API serves report `id` (`GET /api/reports/{id}`).
    pub async fn edge_has_report(&self, id: &str) -> anyhow::Result<bool> {
        let response = self
            .http
            .get(format!("http://{}/api/reports/{id}", self.edge_addr))
            .bearer_auth(&self.dispatcher)
            .send()
            .await?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            other => bail!("GET report {id}: {other}: {}", response.text().await?),
        }
    }

    /// Head office's archive (`GET /api/archive/reports`): (report id, job id) per entry;
    /// `None` if head office did not answer.
    pub async fn archive(&self) -> anyhow::Result<Option<Vec<(String, String)>>> {
        let sent = self
            .http
            .get(format!(
                "http://{}/api/archive/reports",
                self.head_office_addr
            ))
            .bearer_auth(&self.analyst)
            .send()
            .await;
        let Ok(response) = sent else {
            return Ok(None);
        };
        let status = response.status();
        let Ok(body) = response.json::<Value>().await else {
            return Ok(None);
        };
        if !status.is_success() {
            bail!("GET archive: {status}: {body}");
        }
        let entries = body["reports"]
            .as_array()
            .context("the archive list has no reports")?
            .iter()
            .map(|r| {
                (
                    r["report_id"].as_str().unwrap_or_default().to_owned(),
                    r["job_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        Ok(Some(entries))
    }
}

impl Servers {
    /// Starts the edge on its port (blocking until it serves).
    pub fn start_edge(&mut self, cluster: &Cluster) -> anyhow::Result<()> {
        let process = ServerProcess::start_at(
            &cluster.binary,
            &cluster.edge_dir,
            cluster.edge_addr,
            &[OsStr::new("--config"), cluster.edge_config.as_os_str()],
            &[],
        )
        .context("the edge did not come back")?;
        self.edge = Some(process);
        Ok(())
    }

    /// Starts head office on its port (blocking until it serves).
    pub fn start_head_office(&mut self, cluster: &Cluster) -> anyhow::Result<()> {
        let process = ServerProcess::start_at(
            &cluster.binary,
            &cluster.head_office_dir,
            cluster.head_office_addr,
            &[
                OsStr::new("--config"),
                cluster.head_office_config.as_os_str(),
            ],
            &[],
        )
        .context("head office did not come back")?;
        self.head_office = Some(process);
        Ok(())
    }

    /// SIGKILLs the edge; returns its log (what it said before it died).
    pub fn kill_edge(&mut self) -> anyhow::Result<String> {
        kill(self.edge.take())
    }

    /// SIGKILLs head office; returns its log.
    pub fn kill_head_office(&mut self) -> anyhow::Result<String> {
        kill(self.head_office.take())
    }

    /// The running edge's log so far.
    pub fn edge_log(&self) -> String {
        self.edge
            .as_ref()
            .map(ServerProcess::log)
            .unwrap_or_default()
    }
}

fn kill(process: Option<ServerProcess>) -> anyhow::Result<String> {
    let Some(process) = process else {
        return Ok(String::new());
    };
    let log = process.log();
    process.kill()?;
    Ok(log)
}
