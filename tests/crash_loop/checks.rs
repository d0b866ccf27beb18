//! What the loop checks once everything has stopped, from the databases themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use automerge::{Automerge, ChangeHash, ReadDoc};
use fieldsync_server::edge::signer::REPORTS;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::report::SignedReport;
use fieldsync_storage::{Store, StoreConfig};

/// Opens a store as a restarted node would (recovering its WAL), without the writer's
/// compaction and checkpoints, so that checking changes nothing it reports.
pub fn open(path: &Path) -> anyhow::Result<Store> {
    Store::open(path, StoreConfig::without_maintenance())
        .with_context(|| format!("{} does not open", path.display()))
}

/// A document as stored (every chunk loaded); empty if the store has none.
pub fn stored_doc(store: &Store, doc: DocumentId) -> anyhow::Result<Automerge> {
    let chunks = store.load_doc(&doc.to_string())?.unwrap_or_default();
    Ok(fieldsync_shared::stored::load(&chunks)?)
}

/// How a store keeps its documents (issue 19): chunks per document, and the sizes of the
/// database and its write-ahead log as the last kill left them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    pub documents: usize,
    pub chunks_median: usize,
    pub chunks_max: usize,
    pub wal_bytes: u64,
    pub database_bytes: u64,
}

/// The file sizes are read before the store is opened (opening recovers the log).
pub fn file_sizes(path: &Path) -> (u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (len(path), len(Path::new(&wal)))
}

pub fn shape(store: &Store, (database_bytes, wal_bytes): (u64, u64)) -> anyhow::Result<Shape> {
    let mut chunks = Vec::new();
    for doc in store.doc_ids()? {
        chunks.push(store.load_chunks(&doc)?.len());
    }
    chunks.sort_unstable();
    Ok(Shape {
        documents: chunks.len(),
        chunks_median: chunks.get(chunks.len() / 2).copied().unwrap_or(0),
        chunks_max: chunks.last().copied().unwrap_or(0),
        wal_bytes,
        database_bytes,
    })
}

/// `PRAGMA integrity_check` of each database: the ones that failed, with why.
pub fn integrity(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|path| {
            let checked = open(path).and_then(|s| Ok(s.integrity_check()?));
            checked.err().map(|e| format!("{}: {e:#}", path.display()))
        })
        .collect()
}

/// (a) What the edge acknowledged to devices, against what the edge holds.
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// Changes the edge told some device it holds (every change up to the heads it
    /// acknowledged), over all jobs.
    pub changes: usize,
    /// Of those, the ones not in the edge's stored documents.
    pub lost: usize,
    pub problems: Vec<String>,
}

/// Every change up to the acknowledged heads of each job, as the devices hold the job, must
/// be in the edge's stored document of the job.
pub fn acknowledged(
    edge: &Store,
    devices: &[Store],
    heads: &HashMap<DocumentId, BTreeSet<ChangeHash>>,
) -> anyhow::Result<Acknowledged> {
    let mut out = Acknowledged::default();
    for (job, acknowledged) in heads {
        // The job as all of its devices hold it together.
        let mut devices_doc = Automerge::new();
        for store in devices {
            for chunk in store.load_doc(&job.to_string())?.unwrap_or_default() {
                devices_doc.load_incremental(&chunk)?;
            }
        }
        let known: Vec<ChangeHash> = acknowledged
            .iter()
            .filter(|h| devices_doc.get_change_by_hash(h).is_some())
            .copied()
            .collect();
        if known.len() != acknowledged.len() {
            out.problems.push(format!(
                "job {job}: {} acknowledged heads are in no device's store",
                acknowledged.len() - known.len()
            ));
        }
        let beyond: HashSet<ChangeHash> = devices_doc
            .get_changes_meta(&known)
            .into_iter()
            .map(|c| c.hash)
            .collect();
        let covered: Vec<ChangeHash> = devices_doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|c| c.hash)
            .filter(|h| !beyond.contains(h))
            .collect();
        let edge_doc = stored_doc(edge, *job)?;
        let lost = covered
            .iter()
            .filter(|h| edge_doc.get_change_by_hash(h).is_none())
            .count();
        if lost > 0 {
            out.problems.push(format!(
                "job {job}: {lost} of the {} changes the edge acknowledged are not in its store",
                covered.len()
            ));
        }
        out.changes += covered.len();
        out.lost += lost;
    }
    Ok(out)
}

/// (b) Reports at the edge and at head office.
#[derive(Debug, Default)]
pub struct Reports {
    /// Completions with a signed report written into the job at the edge.
    pub signed_outcomes: usize,
    /// Completions the edge refused (with why, in `problems`).
    pub refused: usize,
    /// Completions with no outcome at all.
    pub unanswered: usize,
    /// Signed reports stored at the edge (`meta`/`reports`).
    pub at_edge: usize,
    /// Reports beyond one per job at the edge.
    pub duplicated_at_edge: usize,
    /// Reports in head office's archive.
    pub at_head_office: usize,
    /// Archive entries beyond one per job (and per report id) at head office.
    pub duplicated_at_head_office: usize,
    /// Reports stored at the edge that head office did not archive.
    pub missing_at_head_office: usize,
    /// Report documents head office set aside or still waits on.
    pub set_aside: usize,
    pub problems: Vec<String>,
}

pub fn reports(
    edge: &Store,
    head_office: &Store,
    completions: &[DocumentId],
) -> anyhow::Result<Reports> {
    let mut out = Reports::default();
    for job in completions {
        let doc = stored_doc(edge, *job)?;
        match read_job(&doc).ok().and_then(|j| j.report) {
            Some(ReportOutcome::Signed { .. }) => out.signed_outcomes += 1,
            Some(ReportOutcome::Refused { reasons, .. }) => {
                out.refused += 1;
                let why: Vec<String> = reasons.iter().map(|r| r.code.clone()).collect();
                out.problems
                    .push(format!("job {job}: completion refused: {}", why.join(", ")));
            }
            None => {
                out.unanswered += 1;
                out.problems
                    .push(format!("job {job}: the completion was never answered"));
            }
        }
    }

    let mut edge_by_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, bytes) in edge.meta_entries(REPORTS)? {
        let report: SignedReport = serde_json::from_slice(&bytes)
            .with_context(|| format!("the edge's report {id} does not parse"))?;
        edge_by_job
            .entry(report.body.job_id.to_string())
            .or_default()
            .insert(id);
    }
    let mut archive_by_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut archived: BTreeSet<String> = BTreeSet::new();
    for entry in head_office.archived_reports(&fieldsync_storage::ReportQuery::default())? {
        archive_by_job
            .entry(entry.job_id.clone())
            .or_default()
            .push(entry.report_id.clone());
        archived.insert(entry.report_id.clone());
        out.at_head_office += 1;
    }
    for (job, ids) in &edge_by_job {
        out.at_edge += ids.len();
        if ids.len() > 1 {
            out.duplicated_at_edge += ids.len() - 1;
            out.problems.push(format!(
                "job {job}: {} signed reports at the edge: {}",
                ids.len(),
                ids.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for id in ids {
            if !archived.contains(id) {
                out.missing_at_head_office += 1;
                out.problems.push(format!(
                    "report {id} of job {job} never reached head office"
                ));
            }
        }
    }
    for (job, ids) in &archive_by_job {
        if ids.len() > 1 {
            out.duplicated_at_head_office += ids.len() - 1;
            out.problems.push(format!(
                "job {job}: {} reports in head office's archive: {}",
                ids.len(),
                ids.join(", ")
            ));
        }
    }
    for status in [
        fieldsync_storage::AsideStatus::Rejected,
        fieldsync_storage::AsideStatus::Pending,
    ] {
        for aside in head_office.reports_aside(status)? {
            out.set_aside += 1;
            out.problems.push(format!(
                "head office {} {}: {}",
                status.as_str(),
                aside.report_doc,
                aside.body
            ));
        }
    }
    Ok(out)
}
