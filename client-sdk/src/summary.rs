//! What the device keeps of each stored document so that opening the store and listing the
//! jobs loads no document (issue 17): the document's heads, and for a job the job as read
//! with its state, for the assignment index the jobs it lists.
//!
//! A summary is made from the document as the engine holds it whenever a write changes it,
//! and goes into the store in the same savepoint as that write
//! (`Store::perform_summarized`); an incremental chunk stored without one deletes the old
//! one (storage migration 0004). So a stored summary always describes its document as
//! stored: one the store does not have (a store from before summaries, a write whose summary
//! was not made) is made again from the document, once, when the device opens the store.
//!
//! The stored form names this build of the SDK: a summary written by another build (another
//! job model, another reading of the state) is not trusted, and is made again.

use automerge::{Automerge, ChangeHash};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::approvals::read_approvals;
use fieldsync_shared::job::doc::{completion_pending, conflicts, read_job, unresolved};
use fieldsync_shared::job::index::read_index;
use fieldsync_shared::job::{Job, ReportOutcome};
use fieldsync_shared::report::{AckMatch, acknowledgement_matches};
use serde::{Deserialize, Serialize};

/// The stored form's name: its layout and the SDK build that wrote it.
const FORMAT: &str = concat!("fieldsync-device-summary/1 sdk ", env!("CARGO_PKG_VERSION"));

/// The kind of the timeline event the desk writes when it cancels a job (the server's
/// `desk::dispatch::CANCELLED_EVENT`).
const CANCELLED_EVENT: &str = "cancelled";

/// Where a job stands, one of these at a time, as the device's copy of it says. The rules
/// that define each: DOMAIN.md's R2, R3 (arrival and appointment), R7, R8, R11, R16 (what a
/// completion request needs), R13 (the signed report), R28 (claims decided after a
/// refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    /// No appointment agreed yet (R3).
    New,
    /// The appointment is agreed with the customer (R3); the technician has not arrived.
    Scheduled,
    /// The technician arrived (R2); no completion requested yet.
    OnSite,
    /// The technician asked the branch to sign the report (R7, R8, R11 and, for an
    /// installation, R16 held on the device); the branch has not answered it yet, or will
    /// answer again now that the R28 claims that held it are decided.
    CompletionRequested,
    /// The branch signed the service report (R13).
    Signed,
    /// The branch refused to sign, with its reasons (R7, R8, R11, R16, R28).
    Refused,
    /// The desk cancelled the job (a `cancelled` event in its timeline).
    Cancelled,
}

impl JobStage {
    /// The stage of `job`; `completion_pending` is `job::doc::completion_pending` of its
    /// document (a completion request no report outcome answers yet).
    pub fn of(job: &Job, completion_pending: bool) -> Self {
        if job.timeline.iter().any(|e| e.kind == CANCELLED_EVENT) {
            return JobStage::Cancelled;
        }
        if completion_pending {
            return JobStage::CompletionRequested;
        }
        match &job.report {
            Some(ReportOutcome::Signed { .. }) => JobStage::Signed,
            Some(ReportOutcome::Refused { .. }) => JobStage::Refused,
            None if job.visit.arrival.is_some() => JobStage::OnSite,
            None if job.visit.appointment.is_some() => JobStage::Scheduled,
            None => JobStage::New,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStage::New => "new",
            JobStage::Scheduled => "scheduled",
            JobStage::OnSite => "on_site",
            JobStage::CompletionRequested => "completion_requested",
            JobStage::Signed => "signed",
            JobStage::Refused => "refused",
            JobStage::Cancelled => "cancelled",
        }
    }
}

/// A job's state as the job list shows it: its stage and what waits for someone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    pub stage: JobStage,
    /// Approval requests no manager has decided yet (R12, R18, R28, R31).
    pub approvals_waiting: usize,
    /// The customer signed, then the acknowledged content changed: the acknowledgement must
    /// be taken again (R8).
    pub stale_acknowledgement: bool,
    /// Fields people set differently at the same time, plus what a merge left unresolved
    /// (issue 15): each waits for someone to decide, and the branch signs no report before.
    pub conflicts: usize,
}

impl JobState {
    /// The state of the job `doc` holds (`job` is `read_job` of it).
    pub(crate) fn of(doc: &Automerge, job: &Job) -> Self {
        let approvals_waiting = read_approvals(doc)
            .map(|all| all.iter().filter(|a| a.decision.is_none()).count())
            .unwrap_or(0);
        Self {
            stage: JobStage::of(job, completion_pending(doc)),
            approvals_waiting,
            stale_acknowledgement: matches!(
                acknowledgement_matches(job),
                Ok(AckMatch::ContentChanged { .. })
            ),
            // Both walks cost milliseconds; a history with no concurrent writers has neither.
            conflicts: if linear(doc) {
                0
            } else {
                conflicts(doc).len() + unresolved(doc).len()
            },
        }
    }
}

/// Whether the document's history is one line of changes, each on the one before: then no
/// two writers ever worked concurrently, and nothing can be in conflict or unresolved.
pub(crate) fn linear(doc: &Automerge) -> bool {
    let mut roots = 0usize;
    let mut seen = std::collections::HashSet::new();
    for change in doc.get_changes_meta(&[]) {
        match change.deps.as_slice() {
            [] => roots += 1,
            [dep] => {
                // Two changes on one: a fork.
                if !seen.insert(*dep) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    roots <= 1
}

/// What a document holds, as far as the device's lists need it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Content {
    /// A job, as `read_job` reads it, with its state.
    Job { job: Box<Job>, state: JobState },
    /// An assignment index: the jobs it lists.
    Index { jobs: Vec<DocumentId> },
    /// Anything else, or a job this build cannot read (a newer schema): listed as not
    /// received, as when the job is read from the document.
    Other,
}

/// One stored document's summary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    /// The document's heads (what "unsynced" is judged by against the server's).
    pub heads: Vec<ChangeHash>,
    pub content: Content,
}

/// The stored form (JSON in the store's `doc_summaries`).
#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    heads: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<Job>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<Vec<String>>,
}

impl Summary {
    /// The summary of `doc` as it is now.
    pub fn of(doc: &Automerge) -> Self {
        let heads = doc.get_heads();
        let content = match read_job(doc) {
            Ok(job) => {
                let state = JobState::of(doc, &job);
                Content::Job {
                    job: Box::new(job),
                    state,
                }
            }
            Err(_) => match read_index(doc) {
                Ok(index) => Content::Index {
                    jobs: index
                        .jobs
                        .iter()
                        .filter_map(|u| DocumentId::from_url(u).ok())
                        .collect(),
                },
                Err(_) => Content::Other,
            },
        };
        Self { heads, content }
    }

    pub fn job(&self) -> Option<&Job> {
        match &self.content {
            Content::Job { job, .. } => Some(job),
            _ => None,
        }
    }

    pub fn state(&self) -> Option<&JobState> {
        match &self.content {
            Content::Job { state, .. } => Some(state),
            _ => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let (job, state, index) = match &self.content {
            Content::Job { job, state } => (Some((**job).clone()), Some(state.clone()), None),
            Content::Index { jobs } => (
                None,
                None,
                Some(jobs.iter().map(ToString::to_string).collect()),
            ),
            Content::Other => (None, None, None),
        };
        let stored = Stored {
            format: FORMAT.to_owned(),
            heads: self.heads.iter().map(ChangeHash::to_string).collect(),
            job,
            state,
            index,
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// The summary stored as `bytes`; `None` when it is not one this build wrote (then it is
    /// made again from the document).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        if stored.format != FORMAT {
            return None;
        }
        let heads = stored
            .heads
            .iter()
            .map(|h| h.parse::<ChangeHash>().ok())
            .collect::<Option<Vec<_>>>()?;
        let content = match (stored.job, stored.state, stored.index) {
            (Some(job), Some(state), None) => Content::Job {
                job: Box::new(job),
                state,
            },
            (None, None, Some(jobs)) => Content::Index {
                jobs: jobs
                    .iter()
                    .map(|j| j.parse().ok())
                    .collect::<Option<Vec<_>>>()?,
            },
            (None, None, None) => Content::Other,
            _ => return None,
        };
        Some(Self { heads, content })
    }

    /// Whether the document holds changes the server is not known to hold, the server having
    /// acknowledged `acked` (`node::has_unsynced` from the heads alone: a head the server
    /// did not acknowledge is a change it is not known to hold, and one it did covers every
    /// change before it).
    pub fn unsynced(&self, acked: Option<&[ChangeHash]>) -> bool {
        match acked {
            Some(acked) => !self.heads.iter().all(|h| acked.contains(h)),
            None => !self.heads.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use automerge::ActorId;
    use fieldsync_shared::ids::{BranchId, CustomerId, TechnicianId};
    use fieldsync_shared::job::doc::{JobDoc, create_job};
    use fieldsync_shared::job::index::IndexDoc;
    use fieldsync_shared::job::{
        AssignmentIndex, Billing, BillingMode, Channel, Customer, Diagnosis, JOB_SCHEMA_VERSION,
        JobKind, Labour, Product, ServiceRequest, TimelineEvent, Travel, Visit,
    };
    use fieldsync_shared::time::Timestamp;

    use super::*;
    use crate::node::has_unsynced;

    fn job() -> Job {
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: DocumentId::from_bytes([3; 16]),
            branch_id: BranchId::new("north-01").expect("valid"),
            kind: JobKind::Repair,
            request: ServiceRequest {
                channel: Channel::Phone,
                received_at: Timestamp::from_millis(1_790_000_000_000),
                fault_description: "压缩机十分钟后跳闸".into(),
                requested_arrival: None,
            },
            customer: Customer {
                id: CustomerId::new("cust-1").expect("valid"),
                name: "Harbour Cold Storage".into(),
                contact: "Ms Lin".into(),
                site_address: "12 Quay Road".into(),
            },
            product: Product {
                model: "CX-400".into(),
                serial: "SN-991".into(),
                product_type: "chiller".into(),
                purchase_date: None,
                warranty_end: None,
            },
            technicians: vec![TechnicianId::new("tech-wang").expect("valid")],
            visit: Visit::default(),
            diagnosis: Diagnosis::default(),
            parts: vec![],
            labour: Labour::default(),
            travel: Travel::default(),
            billing: Billing {
                mode: BillingMode::Warranty,
                currency: "CNY".into(),
                invoice_number: None,
            },
            handover: None,
            customer_opinion: None,
            acknowledgement: None,
            completion: None,
            report: None,
            timeline: vec![],
            notes: String::new(),
            attachments: Vec::new(),
            expenses: Vec::new(),
        }
    }

    fn automerge(doc: JobDoc) -> Automerge {
        let mut inner = doc.into_inner();
        Automerge::load(&inner.save()).expect("loads")
    }

    #[test]
    fn a_job_summary_reads_back_as_written() {
        let mut doc = JobDoc::from_autocommit(create_job(&job(), None).expect("created"));
        doc.set_appointment(Some(Timestamp::from_millis(1_790_040_000_000)))
            .expect("edit");
        doc.set_fault_cause(Some("冷凝器脏堵")).expect("edit");
        let doc = automerge(doc);
        let summary = Summary::of(&doc);
        assert_eq!(summary.heads, doc.get_heads());
        assert_eq!(summary.job(), Some(&read_job(&doc).expect("reads")));
        assert_eq!(
            summary.state().map(|s| s.stage),
            Some(JobStage::Scheduled),
            "R3: an agreed appointment"
        );
        assert_eq!(Summary::decode(&summary.encode()), Some(summary));
    }

    #[test]
    fn an_index_summary_lists_its_jobs_and_other_documents_nothing() {
        let listed = DocumentId::from_bytes([4; 16]);
        let mut index = IndexDoc::create(
            &AssignmentIndex {
                schema_version: 1,
                branch_id: BranchId::new("north-01").expect("valid"),
                technician: TechnicianId::new("tech-wang").expect("valid"),
                jobs: vec![],
            },
            Some(ActorId::from([1; 16])),
        )
        .expect("created");
        index.add_job(&listed).expect("added");
        let doc = Automerge::load(&index.save()).expect("loads");
        let summary = Summary::of(&doc);
        assert_eq!(summary.content, Content::Index { jobs: vec![listed] });
        assert_eq!(Summary::decode(&summary.encode()), Some(summary));

        let other = Summary::of(&Automerge::new());
        assert_eq!(other.content, Content::Other);
        assert_eq!(Summary::decode(&other.encode()), Some(other));
    }

    #[test]
    fn a_summary_of_another_build_or_shape_is_not_trusted() {
        let summary = Summary::of(&automerge(JobDoc::from_autocommit(
            create_job(&job(), None).expect("created"),
        )));
        let mut value: serde_json::Value = serde_json::from_slice(&summary.encode()).expect("json");
        value["format"] = "fieldsync-device-summary/1 sdk 0.0.0".into();
        assert_eq!(Summary::decode(value.to_string().as_bytes()), None);
        assert_eq!(Summary::decode(b"not json"), None);
        assert_eq!(Summary::decode(b"{}"), None);
    }

    #[test]
    fn stages_follow_the_rules_in_order() {
        let mut j = job();
        assert_eq!(JobStage::of(&j, false), JobStage::New);
        j.visit.appointment = Some(Timestamp::from_millis(1));
        assert_eq!(JobStage::of(&j, false), JobStage::Scheduled, "R3");
        j.visit.arrival = Some(Timestamp::from_millis(2));
        assert_eq!(JobStage::of(&j, false), JobStage::OnSite, "R2");
        assert_eq!(
            JobStage::of(&j, true),
            JobStage::CompletionRequested,
            "R7, R8, R11"
        );
        j.report = Some(ReportOutcome::Refused {
            at: Timestamp::from_millis(3),
            reasons: vec![],
        });
        assert_eq!(JobStage::of(&j, false), JobStage::Refused);
        j.report = Some(ReportOutcome::Signed {
            at: Timestamp::from_millis(4),
            report_id: "r".into(),
            digest: "d".into(),
            supersedes: None,
        });
        assert_eq!(JobStage::of(&j, false), JobStage::Signed, "R13");
        j.timeline.push(TimelineEvent {
            at: Timestamp::from_millis(5),
            actor: "desk:dispatcher".into(),
            kind: CANCELLED_EVENT.into(),
            text: "customer withdrew".into(),
        });
        assert_eq!(JobStage::of(&j, false), JobStage::Cancelled);
    }

    /// The count skips the walks only for a history with no concurrency, and counts what two
    /// writers left in disagreement.
    #[test]
    fn conflicts_are_counted_when_writers_were_concurrent() {
        let mut doc = JobDoc::from_autocommit(create_job(&job(), None).expect("created"));
        doc.set_fault_cause(Some("a")).expect("edit");
        let linear_doc = automerge(JobDoc::from_autocommit(doc.inner().clone()));
        assert!(linear(&linear_doc));
        assert_eq!(
            Summary::of(&linear_doc).state().map(|s| s.conflicts),
            Some(0)
        );

        let mut fork = doc.fork();
        fork.set_fault_cause(Some("b")).expect("edit");
        doc.set_fault_cause(Some("c")).expect("edit");
        doc.merge(&mut fork).expect("merge");
        let merged = automerge(doc);
        assert!(!linear(&merged));
        let expected = conflicts(&merged).len() + unresolved(&merged).len();
        assert!(expected >= 1, "two values of the fault cause");
        assert_eq!(
            Summary::of(&merged).state().map(|s| s.conflicts),
            Some(expected)
        );
    }

    /// `unsynced` from the heads alone answers as `has_unsynced` does with the document.
    #[test]
    fn unsynced_from_the_heads_agrees_with_the_document() {
        let mut doc = JobDoc::from_autocommit(create_job(&job(), None).expect("created"));
        let first = doc.heads();
        doc.set_fault_cause(Some("a")).expect("edit");
        let second = doc.heads();
        let mut fork = doc.fork();
        fork.set_solution(Some("b")).expect("edit");
        doc.set_fault_category(Some("c")).expect("edit");
        doc.merge(&mut fork).expect("merge");
        let both = doc.heads();
        let doc = automerge(doc);
        let summary = Summary::of(&doc);
        let cases: Vec<Option<Vec<ChangeHash>>> = vec![
            None,
            Some(vec![]),
            Some(first),
            Some(second),
            Some(both[..1].to_vec()),
            Some(both.clone()),
        ];
        for acked in cases {
            let expected = match &acked {
                Some(a) => has_unsynced(&doc, a),
                None => !doc.get_heads().is_empty(),
            };
            assert_eq!(summary.unsynced(acked.as_deref()), expected, "{acked:?}");
        }
    }
}
