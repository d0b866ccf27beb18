//! Helpers for the integration tests: a real server on port 0 with SQLite in a temp dir, and
//! real clients that talk to it over WebSocket and HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_client::{ConnectOptions, SyncClient};
use fieldsync_server::app::{self, AppState, now};
use fieldsync_server::auth::{DeskRole, Subject};
use fieldsync_server::config::Config;
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::Job;
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::report::DeviceRecord;
use fieldsync_storage::{Store, StoreConfig};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A server running in this process on a random loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
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
        Self::start_on(data_dir, "127.0.0.1:0".parse()?, adjust).await
    }

    /// Starts a server on `addr`: a server restarted on its old port (same data dir) is the
    /// same server to the devices that knew it.
    pub async fn start_at(data_dir: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_on(data_dir, addr, |_| {}).await
    }

    async fn start_on(
        data_dir: &std::path::Path,
        addr: SocketAddr,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            branch_id: "north-01".into(),
            ..Config::default()
        };
        config.limits.shutdown_grace = Duration::from_secs(2);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = AppState::open(config, tokio::runtime::Handle::current())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(listener, Arc::clone(&state), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            data_dir: data_dir.to_owned(),
            stop: Some(stop),
            task,
        })
    }

    /// Graceful shutdown; waits until storage is flushed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Enrolls a device for a technician (with a fresh key pair) and returns its id.
    pub fn enroll(&self, technician: &str, device: &str) -> anyhow::Result<DeviceId> {
        let device_id = DeviceId::new(device)?;
        let record = DeviceRecord {
            device_id: device_id.clone(),
            branch_id: BranchId::new("north-01")?,
            technician: TechnicianId::new(technician)?,
            public_key: KeyPair::generate()?.public().to_hex(),
            revoked_at: None,
        };
        let pending = self
            .state
            .registry_write()
            .enroll_device(&self.state.store, record)?;
        pending.wait()?;
        Ok(device_id)
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
            branch_id: BranchId::new("north-01")?,
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
            .issue(&Subject::Device(device.clone()), ttl, now())
            .map_err(anyhow::Error::msg)
    }

    pub fn desk_token(&self, role: DeskRole) -> anyhow::Result<String> {
        self.state
            .tokens
            .issue(&Subject::Desk(role), Duration::from_secs(600), now())
            .map_err(anyhow::Error::msg)
    }

    /// Creates a job assigned to `technician` through the desk API.
    pub async fn create_job(&self, technician: &str) -> anyhow::Result<CreatedJob> {
        let token = self.desk_token(DeskRole::Dispatcher)?;
        let response = reqwest::Client::new()
            .post(self.http_url("/api/jobs"))
            .bearer_auth(token)
            .json(&sample_job_body(technician))
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
        let options = ConnectOptions {
            peer_id: device.to_string(),
            storage_id: Some(format!("store-{device}")),
            max_frame_bytes: 16 * 1024 * 1024,
        };
        Ok(SyncClient::connect(&self.ws_url(), &token, options, store).await?)
    }
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
        "technician": technician
    })
}

/// A fresh temp dir.
pub fn temp_dir() -> anyhow::Result<TempDir> {
    Ok(tempfile::tempdir()?)
}

/// How long tests wait for sync to settle before failing.
pub const SETTLE: Duration = Duration::from_secs(20);
