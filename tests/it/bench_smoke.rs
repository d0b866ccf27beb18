//! The benchmark's smoke (issue 7): `fieldsync-bench --smoke` runs every mode tiny against
//! fieldsync as shipped, the reference JavaScript sync server and the in-process limit, and
//! fails unless every run converged and the servers' heads match the devices'. No timing is
//! asserted: this only keeps the harness and the JS baseline working. (The samod baseline is
//! a separate cargo project that `scripts/bench` builds; it is left out here.)
//!
//! Two tests, one per server, so nextest runs them side by side. `scripts/test` builds the
//! binaries and installs `bench/js` first; without them these tests fail and say how.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use fieldsync_tests::fieldsync_binary;

/// Far above the few seconds a smoke takes, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `fieldsync-bench`, next to `fieldsync`, refused when older than its sources.
fn bench_binary(fieldsync: &Path) -> anyhow::Result<PathBuf> {
    let path = fieldsync.with_file_name(format!("fieldsync-bench{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
                path.display()
            )
        })?;
    let sources = root().join("tests/bin/bench");
    let newest = std::fs::read_dir(&sources)?
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    ensure!(
        newest <= built,
        "{} is older than {}: rebuild it with `cargo build --workspace --bins`",
        path.display(),
        sources.display()
    );
    Ok(path)
}

async fn smoke(targets: &str) -> anyhow::Result<()> {
    let fieldsync = fieldsync_binary()?;
    let bench = bench_binary(&fieldsync)?;
    if targets.contains("js") {
        let installed = root().join("bench/js/node_modules/@automerge/automerge-repo");
        ensure!(
            installed.is_dir(),
            "{} is missing: run `npm ci --prefix bench/js` (scripts/test does)",
            installed.display()
        );
    }
    let child = tokio::process::Command::new(&bench)
        .arg("--smoke")
        .args(["--targets", targets])
        // `scale` is the storm again at another size: nothing new to smoke.
        .args(["--modes", "storm,steady,idle,join,history"])
        .arg("--fieldsync-bin")
        .arg(&fieldsync)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", bench.display()))?;
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .context("the smoke ran longer than its deadline")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("fieldsync-bench --smoke failed ({}):\n{stderr}", out.status);
    }
    let table = String::from_utf8_lossy(&out.stdout);
    ensure!(
        table.contains("Reconnect storm") && table.contains("Steady editing"),
        "the smoke printed no results table:\n{table}\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn bench_smoke_fieldsync_and_the_in_process_limit() -> anyhow::Result<()> {
    smoke("fieldsync").await
}

#[tokio::test]
async fn bench_smoke_the_reference_js_server() -> anyhow::Result<()> {
    smoke("js").await
}
