//! Issue 20, point 5 (conformance): the technician's app computes the customer's
//! acknowledgement exactly as docs/REPORT-FORMAT.md §4 says (R8, R9). `node` runs
//! `app/test/vectors.mjs`, which checks the app's own module (`app/src/ack.js`, the code the
//! bundle signs with) against the committed vectors in `docs/report-vectors/`: RFC 8785 text,
//! the acknowledged content and `job_digest`, the marks' digests, the statement and the
//! device signature made through WebCrypto with the vectors' device seed.
//!
//! The vectors are regenerated from the Rust code (`report_format`), so the app, the SDK and
//! the page all answer to the same bytes. The second test shows the check can fail: the same
//! script on a copy of the vectors with a wrong digest or statement refuses them.
//!
//! Needs Node.js 20 or newer on PATH (nothing from npm: the module uses only WebCrypto).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use fieldsync_tests::temp_dir;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the app's node script `script` (a path under the repository) on `input`; returns its
/// exit success and the JSON it printed.
pub(crate) fn run_app_script(script: &str, input: &Path) -> anyhow::Result<(bool, Value)> {
    let script = repo().join(script);
    let output = std::process::Command::new("node")
        .arg(&script)
        .arg(input)
        .output()
        .context("running node (Node.js 20 or newer is needed on PATH)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "{} printed no JSON ({}):\n{stdout}\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok((output.status.success(), answer))
}

/// Runs the vectors script on `vectors`; returns its exit success and its JSON answer.
fn run_vectors(vectors: &Path) -> anyhow::Result<(bool, Value)> {
    run_app_script("app/test/vectors.mjs", vectors)
}

#[test]
fn the_apps_acknowledgement_matches_the_published_vectors() -> anyhow::Result<()> {
    let (ok, answer) = run_vectors(&repo().join("docs/report-vectors"))?;
    ensure!(ok && answer["ok"] == true, "{answer:#}");
    // Every case of the vectors was looked at, not an early exit.
    let checks = answer["checks"].as_u64().context("checks")?;
    ensure!(checks >= 20, "only {checks} checks: {answer}");
    Ok(())
}

/// A copy of the vectors with one member of `acknowledgement.json` replaced.
fn altered_vectors(dir: &Path, member: &str, value: Value) -> anyhow::Result<PathBuf> {
    let from = repo().join("docs/report-vectors");
    let to = dir.join(member);
    std::fs::create_dir_all(&to)?;
    for name in ["canonical.json", "keys.json", "acknowledgement.json"] {
        std::fs::copy(from.join(name), to.join(name))?;
    }
    let path = to.join("acknowledgement.json");
    let mut vector: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    vector[member] = value;
    std::fs::write(&path, serde_json::to_vec_pretty(&vector)?)?;
    Ok(to)
}

#[test]
fn the_conformance_script_refuses_a_wrong_digest_or_statement() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let cases = [
        ("job_digest", Value::from("00".repeat(32)), "job_digest"),
        (
            "statement_canonical",
            Value::from("{\"format\":\"fieldsync/acknowledgement/v1\"}"),
            "statement",
        ),
        (
            "acknowledged_content_canonical",
            Value::from("{}"),
            "acknowledged content",
        ),
    ];
    for (member, value, named) in cases {
        let vectors = altered_vectors(dir.path(), member, value)?;
        let (ok, answer) = run_vectors(&vectors)?;
        if ok || answer["ok"] != false {
            bail!("a wrong {member} passed: {answer}");
        }
        let failures = answer["failures"].as_array().context("failures")?;
        ensure!(
            failures.iter().any(|f| f["what"] == named),
            "a wrong {member} was not named {named:?}: {answer:#}"
        );
    }
    Ok(())
}
