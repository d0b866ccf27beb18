//! `verify` mode (issue 17): head office verifying signed reports and the branch signing
//! them, on ONE thread, in this process.
//!
//! The reports are genuine, made as a branch makes them: each job is an automerge document
//! of its own (the published test vector's job with its own id and serial) with a history of
//! device edits (`--verify-history` changes: arrival, notes, timeline, labour), acknowledged
//! by the device at its heads, completion requested, signed by the branch at the heads after
//! that, and then the outcome and a timeline event written into the job after signing (so
//! the report's heads are not the document's heads, as at a real head office). Head office
//! holds the job document and the report document as stored bytes (one snapshot each), and
//! has `--verify-branches` branches enrolled.
//!
//! Measured per report, on this thread, over `--verify-reports` reports, `--runs` times:
//! - `verify`: head office's whole check of a report document, from its stored bytes and the
//!   job document's (the steps of `head_office::archive::process`): the report document loaded, the
//!   sender is the report's branch, the device attestation (branch key, `verify_strict`), the
//!   report (`TrustStore`: branch signature, content digest, report id, device signature,
//!   acknowledgement digest, device not revoked), the job document loaded and holding the
//!   report's heads, the job read at those heads giving exactly the reported content. The
//!   archive row (columns and statistics facts) is made too; the INSERT is not timed here
//!   (`archive-throughput` measures the archive end to end).
//! - `sign`: the branch signing a report over a job it has read (`SignedReport::sign` and the
//!   export to canonical JSON), as `report-figures` measured it.
//! - `sign_from_store`: the signer's work from the stored job document: loaded, read, the
//!   acknowledgement checked against the device key (R8), signed and exported.
//! - `signed_exported`: what the edge signer does now, `SignedReport::sign_exported` (the
//!   export made from the signed body's bytes).
//! - `audited`, `audited_full`: `fieldsync archive audit` on each report as archived (its row
//!   and the device attestation kept beside it; `head_office::archive::audit_report`): the
//!   stored content only, and with the job document loaded from its bytes and read at the
//!   report's heads (`--full`). The row is in memory: the SELECT is not timed.
//!
//! Main's check as it was before issue 17 runs beside the current one in the same run
//! (`verified_before_per_sec`), and its steps are timed one by one (`phases_us`, with the
//! alternatives tried). Every verified report must verify (the mode fails otherwise), and a tampered copy of one
//! (a changed charge, re-signed by the branch) must be refused, so a fast path that skipped a
//! check would fail here, not just in the tests. The audit must refuse it too at both depths,
//! and an archive row whose customer column was changed.

use std::time::Instant;

use anyhow::{Context, ensure};
use automerge::{ChangeHash, ReadDoc};
use fieldsync_server::head_office::archive::{self, trust_from};
use fieldsync_server::sync::registry::{BranchRecord, Registry, Tier};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{JobDoc, create_job, read_job, read_job_at};
use fieldsync_shared::job::{
    Completion, Job, Labour, ReportOutcome, SignatureMark, Survey, TimelineEvent,
};
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::report::{
    AckDraft, DeviceRecord, SignedReport, TrustStore, VerifyError, sign_acknowledgement,
};
use fieldsync_shared::report_doc::{DeviceAttestation, ReportDoc, report_doc_id};
use fieldsync_shared::stored;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Store, StoreConfig};
use serde_json::{Value, json};

use crate::{median, progress};

/// What the mode measures.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub reports: usize,
    pub runs: usize,
    pub branches: usize,
    pub history: usize,
}

/// One report as head office holds it.
struct Held {
    /// The report document's stored bytes.
    report_doc: Vec<u8>,
    /// The job document's stored bytes (one snapshot).
    job_doc: Vec<u8>,
    report_doc_id: DocumentId,
}

/// One job as the branch's signer holds it when it signs.
struct ToSign {
    job: Job,
    heads: Vec<String>,
    /// The job document's stored bytes at signing time.
    job_doc: Vec<u8>,
}

struct Fixture {
    registry: Registry,
    branch: BranchId,
    branch_key: KeyPair,
    device: DeviceRecord,
    held: Vec<Held>,
    to_sign: Vec<ToSign>,
    /// A report re-signed by the branch after a charge changed: must be refused.
    tampered: Held,
    _dir: tempfile::TempDir,
}

/// The published test vector's job: a complete installation job with parts, labour, travel,
/// training, attachments, an approved expense and a survey.
fn template_job() -> anyhow::Result<Job> {
    let path = crate::repo_root().join("docs/report-vectors/report.json");
    let vector: Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut job: Job = serde_json::from_value(vector["job"].clone())?;
    job.acknowledgement = None;
    job.completion = None;
    job.report = None;
    Ok(job)
}

fn heads_of(doc: &mut JobDoc) -> Vec<String> {
    doc.heads().iter().map(ToString::to_string).collect()
}

/// A job document with `history` device edits, acknowledged, completion requested, signed
/// by the branch, the outcome written after. Returns the held report and what the signer
/// signed.
fn one_report(
    template: &Job,
    n: usize,
    fx: (
        &BranchId,
        &KeyPair,
        &DeviceRecord,
        &KeyPair,
        &DeviceAttestation,
    ),
    history: usize,
    tamper: bool,
) -> anyhow::Result<(Held, ToSign)> {
    let (branch, branch_key, device, device_key, attestation) = fx;
    let base = template.request.received_at.as_millis();
    let mut job = template.clone();
    job.job_id = DocumentId::random();
    job.branch_id = branch.clone();
    job.product.serial = format!("SN-{branch}-{n}");
    let tech = TechnicianId::new("tech-wang")?;
    let mut doc = JobDoc::from_autocommit(create_job(&job, None)?);
    // The device's edits on site, one change each.
    for i in 0..history {
        let at = Timestamp::from_millis(base + 60_000 * i as i64);
        match i % 4 {
            0 => doc.add_timeline_event(&TimelineEvent {
                at,
                actor: tech.to_string(),
                kind: "note".into(),
                text: format!("step {i}"),
            })?,
            1 => doc.set_notes(&format!("{} (step {i})", template.notes))?,
            2 => doc.set_labour(Labour {
                minutes: 100 + i as u32,
                rate_per_hour: template.labour.rate_per_hour,
            })?,
            _ => doc.set_arrival(Some(at))?,
        }
    }
    // Back to the template's values where the edits left others.
    doc.set_notes(&template.notes)?;
    doc.set_labour(template.labour)?;
    doc.set_arrival(template.visit.arrival)?;
    let signed_at = Timestamp::from_millis(base + 90_000_000);
    let ack = sign_acknowledgement(
        &doc.read()?,
        heads_of(&mut doc),
        AckDraft {
            signer_name: "陳力".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![vec![[0, 0], [12, 9], [30, 4]]],
            },
            signed_at: Timestamp::from_millis(signed_at.as_millis() - 60_000),
            survey: Survey::answered(5, 4, 5, 5, ""),
        },
        device.device_id.clone(),
        device_key,
    )?;
    doc.set_acknowledgement(&ack)?;
    doc.request_completion(&Completion {
        at: Timestamp::from_millis(signed_at.as_millis() - 1_000),
        by: tech.clone(),
    })?;
    let heads = heads_of(&mut doc);
    let job_now = doc.read()?;
    let job_doc_at_signing = doc.save();
    let mut report = SignedReport::sign(&job_now, heads.clone(), signed_at, None, branch_key)?;
    if tamper {
        // A faulty or malicious branch: the charge changed after the fact, the digest, id
        // and signature recomputed. The job document disagrees (and the customer did not
        // acknowledge it).
        let mut job = job_now.clone();
        job.labour.minutes += 60;
        report = SignedReport::sign(&job, heads.clone(), signed_at, None, branch_key)?;
    }
    // After signing: the outcome and a timeline event, as the signer writes them.
    doc.set_report_outcome(&ReportOutcome::Signed {
        at: signed_at,
        report_id: report.body.report_id.clone(),
        digest: report.body.content_digest.clone(),
        supersedes: None,
    })?;
    doc.add_timeline_event(&TimelineEvent {
        at: signed_at,
        actor: "server".into(),
        kind: "report_signed".into(),
        text: format!("service report {} signed", report.body.report_id),
    })?;
    let held_doc = ReportDoc {
        report_json: report.to_canonical_json()?,
        attestation: attestation.clone(),
    };
    let report_doc_id = report_doc_id(&report.body.report_id).context("report id")?;
    Ok((
        Held {
            report_doc: held_doc.to_document()?.save(),
            job_doc: doc.save(),
            report_doc_id,
        },
        ToSign {
            job: job_now,
            heads,
            job_doc: job_doc_at_signing,
        },
    ))
}

fn fixture(plan: Plan) -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("records.sqlite"), StoreConfig::default())?;
    let mut registry = Registry::default().with_tier(Tier::HeadOffice);
    let enrolled_at = Timestamp::from_millis(1_790_000_000_000);
    // Head office's other branches: their keys are in the records it checks against.
    for b in 1..plan.branches {
        let key = KeyPair::generate()?;
        registry
            .enroll_branch(
                &store,
                BranchRecord {
                    branch_id: BranchId::new(format!("branch-{b:03}"))?,
                    public_key: key.public().to_hex(),
                    enrolled_at,
                },
            )
            .wait()?;
    }
    let branch = BranchId::new("north-01")?;
    let branch_key = KeyPair::generate()?;
    registry
        .enroll_branch(
            &store,
            BranchRecord {
                branch_id: branch.clone(),
                public_key: branch_key.public().to_hex(),
                enrolled_at,
            },
        )
        .wait()?;
    let device_key = KeyPair::generate()?;
    let device = DeviceRecord {
        device_id: DeviceId::new("dev-a1")?,
        branch_id: branch.clone(),
        technician: TechnicianId::new("tech-wang")?,
        public_key: device_key.public().to_hex(),
        revoked_at: None,
    };
    let attestation = DeviceAttestation::sign(device.clone(), &branch_key)?;
    let template = template_job()?;
    let fx = (&branch, &branch_key, &device, &device_key, &attestation);
    let mut held = Vec::new();
    let mut to_sign = Vec::new();
    for n in 0..plan.reports {
        let (h, s) = one_report(&template, n, fx, plan.history, false)?;
        held.push(h);
        to_sign.push(s);
    }
    let (tampered, _) = one_report(&template, plan.reports, fx, plan.history, true)?;
    // Head office received every document from the branch.
    for h in held.iter().chain([&tampered]) {
        registry.adopt(&store, h.report_doc_id, branch.clone());
    }
    Ok(Fixture {
        registry,
        branch,
        branch_key,
        device,
        held,
        to_sign,
        tampered,
        _dir: dir,
    })
}

/// Head office's trust for a report as main built it before issue 17: every enrolled branch
/// key parsed (a point decompression each), then the attestation checked with the report's
/// branch key, parsed again.
fn trust_from_before(
    registry: &Registry,
    doc: &ReportDoc,
    branch: &BranchId,
) -> Result<TrustStore, VerifyError> {
    let mut trust = TrustStore::new();
    for record in registry.branches() {
        if let Ok(key) = PublicKey::from_hex(&record.public_key) {
            trust.add_branch_key(record.branch_id.clone(), key);
        }
    }
    let attested = &doc.attestation.record;
    if &attested.branch_id != branch {
        return Err(VerifyError::Malformed("attested for another branch".into()));
    }
    let key = registry
        .branch_key(branch)
        .ok_or_else(|| VerifyError::Malformed("branch not enrolled".into()))?;
    doc.attestation.verify(&key)?;
    trust
        .add_device(attested.clone())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    Ok(trust)
}

/// Which head-office check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `head_office::archive::process`'s check as it was before issue 17 (main at the time).
    Before,
    /// The check as `process` makes it now (`archive::trust_from`, `archive::check_against_job`).
    Now,
}

/// Head office's check of one held report, every step, from the stored bytes, without the
/// database: what `head_office::archive::process` does between loading the report document
/// and its INSERT.
fn check(path: Path, registry: &Registry, held: &Held) -> Result<String, VerifyError> {
    let am = stored::load(std::slice::from_ref(&held.report_doc))
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let report_doc = ReportDoc::from_document(&am)?
        .ok_or_else(|| VerifyError::Malformed("not a report document".into()))?;
    let report = report_doc.report()?;
    let from = registry.owner(&held.report_doc_id);
    if from != Some(&report.body.branch_id) {
        return Err(VerifyError::Malformed("sent by another branch".into()));
    }
    let trust = match path {
        Path::Before => trust_from_before(registry, &report_doc, &report.body.branch_id)?,
        Path::Now => trust_from(
            registry,
            &report_doc,
            &report.body.branch_id,
            &report.body.key_id,
        )?,
    };
    let verified = trust.verify_json(&report_doc.report_json)?;
    let heads: Vec<ChangeHash> = report
        .body
        .heads
        .iter()
        .map(|h| h.parse::<ChangeHash>())
        .collect::<Result<_, _>>()
        .map_err(|_| VerifyError::Malformed("heads".into()))?;
    let job_doc = stored::load(std::slice::from_ref(&held.job_doc))
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if !heads
        .iter()
        .all(|h| job_doc.get_change_by_hash(h).is_some())
    {
        return Err(VerifyError::Malformed("pending".into()));
    }
    match path {
        Path::Before => {
            let job =
                read_job_at(&job_doc, &heads).map_err(|e| VerifyError::Malformed(e.to_string()))?;
            TrustStore::verify_against_document(&report, &job, report.body.heads.clone())?;
        }
        Path::Now => archive::check_against_job(&report, &job_doc, &heads)?,
    }
    // What the archive row is made of.
    let value: Value = serde_json::from_slice(&report_doc.report_json).unwrap_or(Value::Null);
    let columns = archive::stats_columns_of(
        &report.body.report_id,
        &report.body.branch_id,
        report.body.signed_at,
        &value.to_string(),
    );
    std::hint::black_box((&columns, &verified.job.customer.id));
    Ok(report.body.report_id)
}

/// One held report as head office archived it: its archive row and the device attestation
/// kept beside it (what `head_office::archive::audit` reads).
struct Archived {
    row: fieldsync_storage::ReportRow,
    attestation: DeviceAttestation,
    /// The job document's stored bytes, for the full audit.
    job_doc: Vec<u8>,
}

/// The archive rows of the held reports, as `process` writes them once they verified.
fn archived(fx: &Fixture, held: &[Held]) -> anyhow::Result<Vec<Archived>> {
    let zone = fieldsync_shared::zone::Zone::utc();
    held.iter()
        .map(|h| {
            let am = stored::load(std::slice::from_ref(&h.report_doc))?;
            let doc = ReportDoc::from_document(&am)?.context("report doc")?;
            let report = doc.report()?;
            let job = report.job()?;
            let entry = archive::ArchivedReport {
                report_id: report.body.report_id.clone(),
                report_doc: h.report_doc_id,
                branch_id: report.body.branch_id.clone(),
                job_id: report.body.job_id,
                month: zone.month_of(report.body.signed_at)?,
                customer_id: job.customer.id.to_string(),
                product_type: job.product.product_type.clone(),
                signed_at: report.body.signed_at,
                verified_at: report.body.signed_at,
                report: serde_json::from_slice(&doc.report_json)?,
            };
            let _ = &fx.branch;
            Ok(Archived {
                row: entry.row(),
                attestation: doc.attestation,
                job_doc: h.job_doc.clone(),
            })
        })
        .collect()
}

/// `fieldsync archive audit` on one archived report: the stored content only, or (`full`)
/// with the job document loaded from its stored bytes and read at the report's heads.
fn audit_one(
    registry: &Registry,
    a: &Archived,
    full: bool,
    checked: &mut archive::AttestationsChecked,
) -> Result<(), archive::AuditError> {
    let job_doc = if full {
        Some(
            stored::load(std::slice::from_ref(&a.job_doc))
                .map_err(|e| VerifyError::Malformed(e.to_string()))?,
        )
    } else {
        None
    };
    archive::audit_report(registry, &a.row, &a.attestation, job_doc.as_ref(), checked)
}

/// Items per second of `f` over every item.
fn rate<T>(items: &[T], mut f: impl FnMut(&T) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = Instant::now();
    for item in items {
        f(item)?;
    }
    Ok(items.len() as f64 / started.elapsed().as_secs_f64())
}

/// Times the steps of the before path over the held reports (one pass), in µs per report.
fn phases_before(fx: &Fixture) -> anyhow::Result<Value> {
    let mut t = [0f64; 11];
    let names = [
        "load_report_doc",
        "parse_report",
        "trust_from_records",
        "verify_json",
        "load_job_doc",
        "read_job_at_heads",
        "content_against_document",
        "archive_row",
        "alt_fork_at_heads",
        "alt_read_job_of_fork",
        "alt_trust_from_named_key",
    ];
    for held in &fx.held {
        let mut lap = Instant::now();
        let mut mark = |i: usize, lap: &mut Instant| {
            t[i] += lap.elapsed().as_secs_f64();
            *lap = Instant::now();
        };
        let am = stored::load(std::slice::from_ref(&held.report_doc))?;
        let report_doc = ReportDoc::from_document(&am)?.context("report doc")?;
        mark(0, &mut lap);
        let report = report_doc.report()?;
        mark(1, &mut lap);
        let trust = trust_from_before(&fx.registry, &report_doc, &report.body.branch_id)?;
        mark(2, &mut lap);
        let verified = trust.verify_json(&report_doc.report_json)?;
        mark(3, &mut lap);
        let heads: Vec<ChangeHash> = report
            .body
            .heads
            .iter()
            .map(|h| h.parse::<ChangeHash>())
            .collect::<Result<_, _>>()?;
        let job_doc = stored::load(std::slice::from_ref(&held.job_doc))?;
        ensure!(
            heads
                .iter()
                .all(|h| job_doc.get_change_by_hash(h).is_some())
        );
        mark(4, &mut lap);
        let job = read_job_at(&job_doc, &heads)?;
        mark(5, &mut lap);
        // Alternatives, for the record: the same job read from a fork at the heads.
        let fork = job_doc.fork_at(&heads)?;
        mark(8, &mut lap);
        ensure!(read_job(&fork)? == job, "the fork reads differently");
        mark(9, &mut lap);
        let with_key = trust_from(
            &fx.registry,
            &report_doc,
            &report.body.branch_id,
            &report.body.key_id,
        )?;
        std::hint::black_box(&with_key);
        mark(10, &mut lap);
        lap = Instant::now();
        TrustStore::verify_against_document(&report, &job, report.body.heads.clone())?;
        mark(6, &mut lap);
        let value: Value = serde_json::from_slice(&report_doc.report_json).unwrap_or(Value::Null);
        let columns = archive::stats_columns_of(
            &report.body.report_id,
            &report.body.branch_id,
            report.body.signed_at,
            &value.to_string(),
        );
        std::hint::black_box((&columns, &verified.job.customer.id));
        mark(7, &mut lap);
    }
    let n = fx.held.len() as f64;
    Ok(Value::Object(
        names
            .iter()
            .zip(t)
            .map(|(name, secs)| ((*name).to_owned(), json!(secs / n * 1e6)))
            .collect(),
    ))
}

/// The signer's work from the stored job: load, read, R8 check, sign, export.
fn sign_from_store(fx: &Fixture, trust: &TrustStore, s: &ToSign) -> anyhow::Result<()> {
    let am = stored::load(std::slice::from_ref(&s.job_doc))?;
    let job = read_job(&am)?;
    let heads: Vec<String> = am.get_heads().iter().map(ToString::to_string).collect();
    let at = job.completion.as_ref().context("completion")?.at;
    trust.check_acknowledgement(&job, at)?;
    let report = SignedReport::sign(&job, heads, at, None, &fx.branch_key)?;
    std::hint::black_box(report.to_canonical_json()?);
    Ok(())
}

pub fn run(plan: Plan) -> anyhow::Result<Value> {
    progress(&format!(
        "verify: making {} signed reports ({} changes of history each, {} branches enrolled)",
        plan.reports, plan.history, plan.branches
    ));
    let fx = fixture(plan)?;
    let mut branch_trust = TrustStore::new();
    branch_trust.add_device(fx.device.clone())?;

    // Every genuine report verifies; the tampered one is refused.
    for path in [Path::Before, Path::Now] {
        for held in &fx.held {
            check(path, &fx.registry, held).context("a genuine report was refused")?;
        }
        match check(path, &fx.registry, &fx.tampered) {
            Err(VerifyError::AcknowledgementMismatch { .. }) => {}
            other => anyhow::bail!("the tampered report was not refused as expected: {other:?}"),
        }
    }

    // The audit of the archive: every archived report passes both depths; the tampered
    // report (had it been archived) and a row whose column was changed are refused, so an
    // audit that skipped a check would fail here.
    let rows = archived(&fx, &fx.held)?;
    let tampered_row = archived(&fx, std::slice::from_ref(&fx.tampered))?;
    let mut checked = archive::AttestationsChecked::default();
    for full in [false, true] {
        for a in &rows {
            audit_one(&fx.registry, a, full, &mut checked).context("the audit refused a report")?;
        }
        match audit_one(&fx.registry, &tampered_row[0], full, &mut checked) {
            Err(archive::AuditError::Report(VerifyError::AcknowledgementMismatch { .. })) => {}
            other => anyhow::bail!("the audit did not refuse the tampered report: {other:?}"),
        }
        let mut changed = Archived {
            row: rows[0].row.clone(),
            attestation: rows[0].attestation.clone(),
            job_doc: rows[0].job_doc.clone(),
        };
        changed.row.customer_id.push('x');
        match audit_one(&fx.registry, &changed, full, &mut checked) {
            Err(archive::AuditError::Column { .. }) => {}
            other => anyhow::bail!("the audit did not refuse a changed column: {other:?}"),
        }
    }

    // For a profile of the audit alone (`perf record`): only the audit of the stored
    // content, this many passes over the reports, and nothing else.
    if let Some(passes) = std::env::var("FIELDSYNC_BENCH_AUDIT_PASSES")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let mut checked = archive::AttestationsChecked::default();
        for pass in 0..passes {
            let audit = rate(&rows, |a| {
                Ok(audit_one(&fx.registry, a, false, &mut checked)?)
            })?;
            progress(&format!("verify: audit pass {pass}: {audit:.0}/s"));
        }
    }

    let mut runs = Vec::new();
    for run in 0..plan.runs {
        let before = rate(&fx.held, |h| {
            check(Path::Before, &fx.registry, h)?;
            Ok(())
        })?;
        let verify = rate(&fx.held, |h| {
            check(Path::Now, &fx.registry, h)?;
            Ok(())
        })?;
        let sign = rate(&fx.to_sign, |s| {
            let r = SignedReport::sign(
                &s.job,
                s.heads.clone(),
                s.job
                    .completion
                    .as_ref()
                    .map_or(Timestamp::from_millis(0), |c| c.at),
                None,
                &fx.branch_key,
            )?;
            std::hint::black_box(r.to_canonical_json()?);
            Ok(())
        })?;
        let sign_store = rate(&fx.to_sign, |s| sign_from_store(&fx, &branch_trust, s))?;
        // A fresh audit each run: the attestation is checked once per device, in the run.
        let mut checked = archive::AttestationsChecked::default();
        let audit = rate(&rows, |a| {
            Ok(audit_one(&fx.registry, a, false, &mut checked)?)
        })?;
        let mut checked = archive::AttestationsChecked::default();
        let audit_full = rate(&rows, |a| {
            Ok(audit_one(&fx.registry, a, true, &mut checked)?)
        })?;
        // What the edge signer does now: the export made from the signed body's bytes.
        let sign_exported = rate(&fx.to_sign, |s| {
            let (r, json) = SignedReport::sign_exported(
                &s.job,
                s.heads.clone(),
                s.job
                    .completion
                    .as_ref()
                    .map_or(Timestamp::from_millis(0), |c| c.at),
                None,
                &fx.branch_key,
            )?;
            std::hint::black_box((r, json));
            Ok(())
        })?;
        progress(&format!(
            "verify run {}: verified {verify:.0}/s (before: {before:.0}/s), audit of the stored content {audit:.0}/s, full audit {audit_full:.0}/s, signed {sign:.0}/s (signed and exported from the body's bytes {sign_exported:.0}/s), signed from the store {sign_store:.0}/s",
            run + 1
        ));
        runs.push(json!({
            "run": run,
            "verified_per_sec": verify,
            "verified_before_per_sec": before,
            "audited_per_sec": audit,
            "audited_full_per_sec": audit_full,
            "signed_per_sec": sign,
            "signed_exported_per_sec": sign_exported,
            "signed_from_store_per_sec": sign_store,
        }));
    }
    let pick = |key: &str| {
        let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
        median(&mut v)
    };
    let phases = phases_before(&fx)?;
    progress(&format!(
        "verify: µs per report by step (before path): {phases}"
    ));
    Ok(json!({
        "reports": plan.reports,
        "runs": plan.runs,
        "branches": plan.branches,
        "history": plan.history,
        "branch": fx.branch.to_string(),
        "verified_per_sec": pick("verified_per_sec"),
        "verified_before_per_sec": pick("verified_before_per_sec"),
        "signed_per_sec": pick("signed_per_sec"),
        "signed_exported_per_sec": pick("signed_exported_per_sec"),
        "signed_from_store_per_sec": pick("signed_from_store_per_sec"),
        "audited_per_sec": pick("audited_per_sec"),
        "audited_full_per_sec": pick("audited_full_per_sec"),
        "phases_us": phases,
        "per_run": runs,
    }))
}
