//! Issue 20, point 5: before the customer is asked to sign, the technician's app lists every
//! item the Rust rules find missing (`shared::rules::completeness`: R7, R11, R16), each in
//! words. `node` runs `app/test/completeness.mjs`, which calls the app's own
//! `missingBeforeSigning` (`app/src/job.js`) on the JSON of jobs made here, and compares
//! its rule and code per item with what `completeness` says of the same job (its R8 and R9
//! items left out: the signing screen asks for the signature, the name and the survey).
//!
//! The second test shows the check can fail: a case whose expected list has one item more is
//! refused.
//!
//! Needs Node.js 20 or newer on PATH (nothing from npm).

use std::path::Path;

use anyhow::{Context, ensure};
use fieldsync_shared::job::{Job, JobKind};
use fieldsync_shared::rules::completeness;
use fieldsync_tests::temp_dir;
use serde_json::{Value, json};

use crate::report_format::vector_job;

/// Jobs that lack something, or nothing, each in a way one rule looks at.
fn cases() -> Vec<(&'static str, Job)> {
    let complete = vector_job();
    let mut untrained = complete.clone();
    untrained.visit.training = None;
    let mut empty_training = complete.clone();
    if let Some(t) = empty_training.visit.training.as_mut() {
        t.trainees = vec![String::new(), "  ".into()];
        t.topics = " ".into();
    }
    let mut repair = complete.clone();
    repair.kind = JobKind::Repair;
    repair.visit.training = None;
    repair.diagnosis.fault_cause = None;
    repair.diagnosis.solution = Some("  ".into());
    repair.parts[1].name = " ".into();
    repair.customer_opinion = None;
    repair.visit.check_out = None;
    let mut maintenance = repair.clone();
    maintenance.kind = JobKind::Maintenance;
    let mut follow_up = complete.clone();
    follow_up.kind = JobKind::FollowUp;
    follow_up.visit.training = None;
    follow_up.parts.clear();
    vec![
        ("a complete installation", complete),
        ("an installation with no training (R16)", untrained),
        (
            "an installation trained nobody, on nothing (R16)",
            empty_training,
        ),
        ("a repair lacking R7 and R11", repair),
        ("a maintenance visit needs no diagnosis (R7)", maintenance),
        ("a follow-up with nothing missing", follow_up),
    ]
}

/// Each case's JSON: the job, and the items `completeness` lists, R8 and R9 left out.
fn written_cases() -> anyhow::Result<Vec<Value>> {
    cases()
        .into_iter()
        .map(|(name, job)| {
            let expected: Vec<Value> = completeness(&job)
                .into_iter()
                .filter(|m| m.rule != "R8" && m.rule != "R9")
                .map(|m| json!({"rule": m.rule, "code": m.code}))
                .collect();
            Ok(json!({"name": name, "job": serde_json::to_value(&job)?, "expected": expected}))
        })
        .collect()
}

/// Runs the script on `cases`; returns its exit success and its JSON answer.
fn run(dir: &Path, cases: &[Value]) -> anyhow::Result<(bool, Value)> {
    let file = dir.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(cases)?)?;
    crate::app_conformance::run_app_script("app/test/completeness.mjs", &file)
}

#[test]
fn the_app_lists_what_the_rust_rules_find_missing() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let cases = written_cases()?;
    // The cases do reach every rule the app lists: R7, R11 and R16 each appear.
    let rules: Vec<&str> = cases
        .iter()
        .flat_map(|c| c["expected"].as_array().into_iter().flatten())
        .filter_map(|m| m["rule"].as_str())
        .collect();
    for rule in ["R7", "R11", "R16"] {
        ensure!(
            rules.contains(&rule),
            "no case lacks a {rule} item: {rules:?}"
        );
    }
    let (ok, answer) = run(dir.path(), &cases)?;
    ensure!(ok && answer["ok"] == true, "{answer:#}");
    ensure!(answer["checks"] == cases.len(), "{answer}");
    Ok(())
}

#[test]
fn the_completeness_script_refuses_a_list_that_differs() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let mut cases = written_cases()?;
    cases[0]["expected"]
        .as_array_mut()
        .context("expected")?
        .push(json!({"rule": "R11", "code": "missing_check_out"}));
    let (ok, answer) = run(dir.path(), &cases)?;
    ensure!(!ok && answer["ok"] == false, "{answer}");
    ensure!(
        answer["mismatches"][0]["name"] == "a complete installation",
        "{answer}"
    );
    Ok(())
}
