//! Issue 16: the README's head-office setup works as written. This test reads the commands
//! and the branch's config from README.md ("Head office and the branch link") and runs exactly
//! them, with the real binary, from one folder: only the ports, the host name and the
//! certificates are this machine's. Between the setup and the checks, a technician does a job
//! on the branch, as in every other test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::keys::KeyPair;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::pki::Pki;
use fieldsync_tests::{connect_client, eventually, fieldsync_binary, sample_job_body, temp_dir};
use serde_json::Value;

use crate::reports::{acknowledge, check_out_and_complete, do_the_work, outcome};

/// How long the branch may take to hear head office's verdict (`verdict_poll` is 10 s in the
/// README's config, which sets none).
const VERDICT: Duration = Duration::from_secs(60);

/// The README's section, as code blocks in order: the setup (sh), the branch config (toml),
/// the checks (sh).
fn readme_blocks() -> anyhow::Result<(Vec<String>, String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let start = readme
        .find("## Head office and the branch link")
        .context("README has no section \"Head office and the branch link\"")?;
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let line_end = after.find('\n').context("unterminated code block")?;
        let lang = after[..line_end].trim().to_owned();
        let body = &after[line_end + 1..];
        let close = body.find("```").context("unterminated code block")?;
        blocks.push((lang, body[..close].to_owned()));
        rest = &body[close + 3..];
    }
    let commands = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    match blocks.as_slice() {
        [(a, setup), (b, toml), (c, checks), ..] if a == "sh" && b == "toml" && c == "sh" => {
            Ok((commands(setup), toml.clone(), commands(checks)))
        }
        _ => bail!("the section's code blocks are not sh, toml, sh: {blocks:?}"),
    }
}

/// This machine's ports and host name for the README's.
struct Place {
    head_office: u16,
    branch: u16,
}

impl Place {
    fn adapt(&self, text: &str) -> String {
        text.replace("0.0.0.0:3040", &format!("127.0.0.1:{}", self.head_office))
            .replace("0.0.0.0:3030", &format!("127.0.0.1:{}", self.branch))
            .replace(
                "head-office.example:3040",
                &format!("localhost:{}", self.head_office),
            )
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The servers the setup started in the background; killed when the test ends.
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the README's commands in `dir` with our `fieldsync` first on the PATH.
struct Shell {
    dir: PathBuf,
    path: String,
    report: Option<String>,
}

impl Shell {
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.dir)
            .env("PATH", &self.path)
            .env_remove("FIELDSYNC_CONFIG")
            .env_remove("FIELDSYNC_BRANCH_ID")
            .env("FIELDSYNC_LOG", "info")
            .env("NO_COLOR", "1");
        if let Some(report) = &self.report {
            command.env("REPORT", report);
        }
        command
    }

    /// A foreground line, through bash (redirections, `$(…)`); it must succeed.
    fn run(&self, line: &str) -> anyhow::Result<String> {
        let output = self
            .command("bash")
            .args(["-euo", "pipefail", "-c", line])
            .output()?;
        if !output.status.success() {
            bail!(
                "README command failed ({}): {line}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A line ending in `&`: `NAME=value … fieldsync serve …`, started directly (so it can be
    /// killed), its log in `log`; returns once it logs that it serves.
    fn start(&self, line: &str, log: &Path) -> anyhow::Result<Child> {
        let words: Vec<&str> = line.trim_end_matches('&').split_whitespace().collect();
        let split = words
            .iter()
            .position(|w| !w.contains('='))
            .context("no command")?;
        let (assignments, argv) = words.split_at(split);
        let program = if argv[0] == "fieldsync" {
            fieldsync_binary()?
        } else {
            PathBuf::from(argv[0])
        };
        let mut command = self.command(&program.to_string_lossy());
        for a in assignments {
            let (name, value) = a.split_once('=').context("assignment")?;
            command.env(name, value);
        }
        let child = command
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("serving") {
                return Ok(child);
            }
            if std::time::Instant::now() > deadline {
                bail!("`{line}` did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_head_office_setup_works_as_written() -> anyhow::Result<()> {
    let (setup, toml, checks) = readme_blocks()?;
    let folder = temp_dir()?;
    let dir = folder.path().to_owned();
    let place = Place {
        head_office: free_port()?,
        branch: free_port()?,
    };
    // Head office's certificate and its CA, under the names the README uses.
    let pki = Pki::generate("fieldsync README head office CA")?;
    std::fs::copy(&pki.cert_file, dir.join("ho.pem"))?;
    std::fs::copy(&pki.key_file, dir.join("ho.key"))?;
    std::fs::copy(&pki.ca_file, dir.join("ho-ca.pem"))?;
    std::fs::write(dir.join("branch.toml"), place.adapt(&toml))?;
    let binary = fieldsync_binary()?;
    let bin_dir = binary.parent().context("binary dir")?;
    let mut shell = Shell {
        dir: dir.clone(),
        path: format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        report: None,
    };

    let mut background = Background(Vec::new());
    for (n, line) in setup.iter().enumerate() {
        let line = place.adapt(line);
        if line.ends_with('&') {
            let log = dir.join(format!("server-{n}.log"));
            background.0.push(shell.start(&line, &log)?);
        } else {
            shell.run(&line)?;
        }
    }

    // The day's work: a dispatcher's job for tech-wang, done on the device the README
    // enrolled, acknowledged with its key, completed.
    let branch_http = format!("http://127.0.0.1:{}", place.branch);
    let dispatcher = shell.run("fieldsync desk token --role dispatcher --config branch.toml")?;
    let created: Value = reqwest::Client::new()
        .post(format!("{branch_http}/api/jobs"))
        .bearer_auth(dispatcher.trim())
        .json(&sample_job_body("tech-wang"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let job = DocumentId::from_url(created["url"].as_str().context("job url")?)?;
    let device = DeviceId::new("dev-wang")?;
    let key = KeyPair::load(&dir.join("branch").join("devices").join("dev-wang.key"))?;
    let token = std::fs::read_to_string(dir.join("dev-wang.token"))?;
    let store = Arc::new(Store::open(
        dir.join("dev-wang.sqlite"),
        StoreConfig::default(),
    )?);
    let client = connect_client(
        &format!("ws://127.0.0.1:{}/sync", place.branch),
        token.trim(),
        device.as_str(),
        store,
    )
    .await?;
    client.subscribe(job);
    anyhow::ensure!(
        client.wait_for(job, VERDICT, |d| read_job(d).is_ok()).await,
        "the job did not reach the device"
    );
    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    let now = fieldsync_client::now().as_millis();
    check_out_and_complete(&client, job, true, now - 60_000).await?;
    let report = match outcome(&client, job).await {
        Some(ReportOutcome::Signed { report_id, .. }) => report_id,
        other => bail!("the branch did not sign: {other:?}"),
    };
    client.close();

    // The branch hears that head office verified and archived it.
    eventually(
        VERDICT,
        "the branch hears head office archived the report",
        || async {
            let found: Value = reqwest::Client::new()
                .get(format!("{branch_http}/api/reports?verdict=verified"))
                .bearer_auth(dispatcher.trim())
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            found["reports"]
                .as_array()?
                .iter()
                .any(|r| r["report_id"] == report.as_str())
                .then_some(())
        },
    )
    .await?;

    shell.report = Some(report.clone());
    let mut outputs = Vec::new();
    for line in &checks {
        outputs.push(shell.run(&place.adapt(line))?);
    }
    let exported: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json"))?)?;
    assert_eq!(exported["body"]["report_id"], report.as_str());
    assert_eq!(exported["body"]["branch_id"], "north-01");
    // Every verification said valid (they exit non-zero otherwise), and the trust export
    // named the branch by the id its data directory recorded.
    let valid = outputs
        .iter()
        .filter(|o| o.contains("\"valid\": true") || o.contains("\"valid\":true"))
        .count();
    assert_eq!(valid, 3, "{outputs:#?}");
    assert!(
        dir.join("trust")
            .join("branches")
            .join("north-01.pub")
            .exists(),
        "trust export names the branch by its recorded id"
    );
    drop(background);
    Ok(())
}
