//! The real JavaScript automerge-repo client against our server (edge server issue, "Interop
//! with independent implementations (a)").
//!
//! Each test starts the server, then runs `tests/js/device.mjs` (automerge-repo 2.x with its
//! WebSocket client adapter, pinned in `tests/js/package-lock.json`) as a child process
//! playing a technician device, and checks what it did against a Rust device client. The
//! JavaScript side sends its token as `?token=`, as a browser must.
//!
//! Node and `tests/js/node_modules` are prerequisites: without them these tests fail and say
//! how to install them (`scripts/test` does it), rather than passing without having run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc, ScalarValue, Value};
use fieldsync_server::auth::Subject;
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::protocol::message::encode_head;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_tests::{SETTLE, TestServer, temp_dir};
use serde_json::Value as Json;

/// How long one run of the device script may take, start-up included. The script has its own
/// deadline a little shorter than this, so a slow run reports what it was waiting for.
const JS_DEADLINE: Duration = Duration::from_secs(40);
const JS_INNER_TIMEOUT_MS: &str = "30000";

/// `tests/js`: the scripts and their pinned packages.
pub(crate) fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Fails, saying how to fix it, when node or the pinned packages are missing.
fn require_node() -> anyhow::Result<()> {
    require_node_package("@automerge/automerge-repo-network-websocket")
}

/// Fails, saying how to fix it, when node or the pinned `package` of `tests/js` is missing.
pub(crate) fn require_node_package(package: &str) -> anyhow::Result<()> {
    require_node_package_in("", package)
}

/// Fails, saying how to fix it, when node or the pinned `package` of `tests/js/<dir>` is
/// missing.
pub(crate) fn require_node_package_in(dir: &str, package: &str) -> anyhow::Result<()> {
    let prefix = if dir.is_empty() {
        "tests/js".to_owned()
    } else {
        format!("tests/js/{dir}")
    };
    let how = format!("run `npm ci --prefix {prefix}` (or `scripts/test`, which does it)");
    let how = how.as_str();
    let version = std::process::Command::new("node").arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        Ok(out) => bail!(
            "`node --version` failed ({}): install Node.js 20 or newer, then {how}",
            out.status
        ),
        Err(e) => bail!(
            "the tests that run tests/js need Node.js 20 or newer on PATH ({e}); install it \
             (https://nodejs.org or your package manager), then {how}"
        ),
    }
    let installed = js_dir().join(dir).join("node_modules").join(package);
    ensure!(
        installed.is_dir(),
        "{} is missing: {how}",
        installed.display()
    );
    Ok(())
}

/// What one run of `device.mjs` printed.
#[derive(Debug)]
struct DeviceRun {
    success: bool,
    result: Json,
    stderr: String,
}

/// One invocation of the JavaScript device.
#[derive(Debug)]
pub(crate) struct JsDevice<'a> {
    server: &'a TestServer,
    peer_id: String,
    token: Option<String>,
    /// The folder under `tests/js` whose packages the script uses (`next`: the 2.6
    /// pre-release); `None`: `tests/js` itself (2.5.6).
    modules: Option<String>,
}

impl<'a> JsDevice<'a> {
    pub(crate) fn new(
        server: &'a TestServer,
        peer_id: impl Into<String>,
        token: Option<String>,
    ) -> Self {
        Self {
            server,
            peer_id: peer_id.into(),
            token,
            modules: None,
        }
    }

    /// Runs the script with the packages of `tests/js/<modules>`.
    pub(crate) fn with_modules(mut self, modules: Option<&str>) -> Self {
        self.modules = modules.map(str::to_owned);
        self
    }

    async fn run_with(&self, action: &str, args: &[(&str, String)]) -> anyhow::Result<DeviceRun> {
        match &self.modules {
            Some(dir) => {
                require_node_package_in(dir, "@automerge/automerge-repo-network-websocket")?
            }
            None => require_node()?,
        }
        let mut command = tokio::process::Command::new("node");
        command
            .current_dir(js_dir())
            .arg("device.mjs")
            .arg(action)
            .args(["--server", &self.server.ws_url()])
            .args(["--peer-id", &self.peer_id])
            .args(["--timeout-ms", JS_INNER_TIMEOUT_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (flag, value) in args {
            command.arg(flag).arg(value);
        }
        match &self.modules {
            Some(dir) => command.env("FIELDSYNC_JS_MODULES", js_dir().join(dir)),
            None => command.env_remove("FIELDSYNC_JS_MODULES"),
        };
        // Through the environment, so the token is not in the process list.
        match &self.token {
            Some(token) => command.env("FIELDSYNC_TOKEN", token),
            None => command.env_remove("FIELDSYNC_TOKEN"),
        };
        let started = Instant::now();
        let child = command.spawn().context("spawning node")?;
        let output = tokio::time::timeout(JS_DEADLINE, child.wait_with_output())
            .await
            .with_context(|| format!("device.mjs {action} ran longer than {JS_DEADLINE:?}"))??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let line = stdout.lines().last().unwrap_or_default();
        let result: Json = serde_json::from_str(line).with_context(|| {
            format!(
                "device.mjs {action} exited {} without a JSON result\nstdout: {stdout}\nstderr: {stderr}",
                output.status
            )
        })?;
        eprintln!(
            "device.mjs {action} as {}: {} in {:?}",
            self.peer_id,
            output.status,
            started.elapsed()
        );
        Ok(DeviceRun {
            success: output.status.success() && result["ok"] == Json::Bool(true),
            result,
            stderr,
        })
    }

    /// Runs an action that must succeed, and returns its result.
    async fn must(
        &self,
        action: &str,
        doc: Option<DocumentId>,
        value: Option<&str>,
    ) -> anyhow::Result<Json> {
        let mut args = Vec::new();
        if let Some(doc) = doc {
            args.push(("--doc", doc.url()));
        }
        if let Some(value) = value {
            args.push(("--value", value.to_owned()));
        }
        self.must_with(action, &args).await
    }

    /// [`must`](Self::must) with any arguments.
    pub(crate) async fn must_with(
        &self,
        action: &str,
        args: &[(&str, String)],
    ) -> anyhow::Result<Json> {
        let run = self.run_with(action, args).await?;
        ensure!(
            run.success,
            "device.mjs {action} failed: {}\nstderr: {}",
            run.result,
            run.stderr
        );
        Ok(run.result)
    }
}

fn set_fault_cause(text: &'static str) -> LocalEdit {
    LocalEdit::Change(Box::new(move |doc| {
        let mut tx = doc.transaction();
        let (_, diagnosis) = tx
            .get(ROOT, "diagnosis")
            .map_err(|e| e.to_string())?
            .ok_or("no diagnosis")?;
        tx.put(&diagnosis, "fault_cause", text)
            .map_err(|e| e.to_string())?;
        tx.commit();
        Ok(())
    }))
}

fn fault_cause(doc: &automerge::Automerge) -> Option<String> {
    read_job(doc).ok().and_then(|j| j.diagnosis.fault_cause)
}

/// The raw value under `diagnosis.fault_cause`, to see how the JavaScript client wrote it.
fn raw_fault_cause(doc: &automerge::Automerge) -> anyhow::Result<Value<'static>> {
    let (_, diagnosis) = doc.get(ROOT, "diagnosis")?.context("no diagnosis")?;
    let (value, _) = doc
        .get(&diagnosis, "fault_cause")?
        .context("no fault_cause")?;
    Ok(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_edits_its_job_and_a_rust_device_sees_the_edit() -> anyhow::Result<()> {
    js_edit_reaches_a_rust_device(None).await
}

/// The same on the automerge-repo pre-release (`tests/js/next`, 2.6.0-alpha.3): a newer
/// client syncs unchanged (and any message type it adds is dropped, not fatal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_on_the_2_6_pre_release_edits_its_job_and_a_rust_device_sees_the_edit()
-> anyhow::Result<()> {
    js_edit_reaches_a_rust_device(Some("next")).await
}

async fn js_edit_reaches_a_rust_device(modules: Option<&str>) -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let js = server.enroll("tech-wang", "dev-js")?;
    let rust = server.enroll("tech-wang", "dev-rust")?;
    let created = server.create_job("tech-wang").await?;

    // A browser-style peer id: the device id with a suffix for this app.
    let token = server.device_token(&js, Duration::from_secs(600))?;
    let device = JsDevice::new(&server, format!("{js}:web"), Some(token)).with_modules(modules);
    let result = device
        .must("edit", Some(created.job), Some("Seized fan bearing"))
        .await?;
    // The script returned only once the server's own heads included the change, and it is gone
    // now: whatever the Rust device sees next came from the server.
    ensure!(
        result["serverStorageId"].as_str().is_some(),
        "no server storage id in {result}"
    );

    let client = server.connect_device(&rust, devices.path()).await?;
    client.subscribe(created.job);
    assert!(
        client
            .wait_for(created.job, SETTLE, |d| fault_cause(d).as_deref()
                == Some("Seized fan bearing"))
            .await,
        "the Rust device sees the JavaScript device's edit"
    );
    let doc = client.read(created.job).await.context("job loaded")?;
    let heads: Vec<Json> = doc
        .get_heads()
        .iter()
        .map(|h| Json::from(encode_head(h)))
        .collect();
    assert_eq!(
        result["heads"],
        Json::from(heads),
        "the heads the server confirmed to the JavaScript device are the ones it serves"
    );
    assert_eq!(
        raw_fault_cause(&doc)?,
        Value::Scalar(std::borrow::Cow::Owned(ScalarValue::Str(
            "Seized fan bearing".into()
        ))),
        "an ImmutableString from JavaScript is a scalar string, as the schema wants"
    );
    client.close();
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_reads_what_a_rust_device_wrote() -> anyhow::Result<()> {
    require_node()?;
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let js = server.enroll("tech-wang", "dev-js")?;
    let rust = server.enroll("tech-wang", "dev-rust")?;
    let created = server.create_job("tech-wang").await?;

    let client = server.connect_device(&rust, devices.path()).await?;
    client.subscribe(created.job);
    assert!(
        client
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "the Rust device receives the job"
    );
    client
        .edit(created.job, set_fault_cause("Blocked condenser coil"))
        .await?;

    let token = server.device_token(&js, Duration::from_secs(600))?;
    let device = JsDevice::new(&server, js.to_string(), Some(token));
    let result = device
        .must("read", Some(created.job), Some("Blocked condenser coil"))
        .await?;
    assert_eq!(result["fault_cause"], "Blocked condenser coil");
    assert_eq!(
        result["job_id"].as_str(),
        Some(created.job.to_string().as_str()),
        "the JavaScript device reads the job's own id from the document"
    );
    client.close();
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_without_a_valid_token_is_refused_with_401() -> anyhow::Result<()> {
    require_node()?;
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let js = server.enroll("tech-wang", "dev-js")?;

    let none = JsDevice::new(&server, js.to_string(), None);
    let result = none.must("expect-refused", None, None).await?;
    assert_eq!(result["status"], 401);
    assert!(
        result["body"]
            .as_str()
            .unwrap_or("")
            .contains("missing_token"),
        "{result}"
    );

    // Issued an hour ago for ten minutes.
    let expired = server
        .state
        .tokens
        .issue(
            &Subject::Device(js.clone()),
            Duration::from_secs(600),
            server.now().plus_millis(-3_600_000),
        )
        .map_err(anyhow::Error::msg)?;
    let stale = JsDevice::new(&server, js.to_string(), Some(expired));
    let result = stale.must("expect-refused", None, None).await?;
    assert_eq!(result["status"], 401);
    assert!(
        result["body"]
            .as_str()
            .unwrap_or("")
            .contains("expired_token"),
        "{result}"
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_not_assigned_to_the_device_is_unavailable_to_the_js_client() -> anyhow::Result<()> {
    require_node()?;
    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let outsider: DeviceId = server.enroll("tech-li", "dev-li")?;
    // Li has a job of his own, so the refusal is about this job, not about having none.
    server.create_job("tech-li").await?;
    let created = server.create_job("tech-wang").await?;

    let token = server.device_token(&outsider, Duration::from_secs(600))?;
    let device = JsDevice::new(&server, outsider.to_string(), Some(token));
    let result = device
        .must("expect-unavailable", Some(created.job), None)
        .await?;
    assert!(
        result["rejected"]
            .as_str()
            .unwrap_or("")
            .contains("unavailable"),
        "{result}"
    );
    // Someone else's assignment index is just as closed.
    let result = device
        .must("expect-unavailable", Some(created.index), None)
        .await?;
    assert!(
        result["messages_from_server"]
            .as_array()
            .is_some_and(|m| m.iter().all(|t| t != "sync")),
        "the server sent nothing of the document: {result}"
    );
    server.stop().await?;
    Ok(())
}
