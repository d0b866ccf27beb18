//! The documents and edits of the benchmark: the same for every server and for the in-process
//! limit.
//!
//! A job is created the way the desk API creates one (`job::doc::create_job` of a typed
//! `Job`), and a technician's offline edits are the typed edits of `JobDoc`, one automerge
//! change each, cycling through what a visit really records: diagnosis text, a part line,
//! labour, the solution.

use anyhow::Context;
use automerge::AutoCommit;
use fieldsync_shared::ids::{BranchId, CustomerId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{JobDoc, PartDraft, create_job};
use fieldsync_shared::job::{
    Billing, BillingMode, Channel, Customer, Diagnosis, JOB_SCHEMA_VERSION, Job, JobKind, Labour,
    Product, ServiceRequest, Travel, Visit,
};
use fieldsync_shared::time::{CalendarDate, Money, Timestamp};

/// The size of a reconnect storm: `devices` × `jobs` per device × `edits` per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub devices: usize,
    pub jobs: usize,
    pub edits: usize,
}

impl Shape {
    pub fn changes(&self) -> usize {
        self.devices * self.jobs * self.edits
    }

    pub fn label(&self) -> String {
        format!("{}x{}x{}", self.devices, self.jobs, self.edits)
    }
}

/// The job the desk API's sample body describes (`fieldsync_tests::sample_job_body`), as a
/// typed value.
pub fn sample_job(job_id: DocumentId, technician: &str) -> anyhow::Result<Job> {
    Ok(Job {
        schema_version: JOB_SCHEMA_VERSION,
        job_id,
        branch_id: BranchId::new("bench-01")?,
        kind: JobKind::Repair,
        request: ServiceRequest {
            channel: Channel::Phone,
            received_at: "2026-11-02T08:30:00Z".parse::<Timestamp>()?,
            fault_description: "Compressor trips after ten minutes".into(),
            requested_arrival: Some("2026-11-03T09:00:00Z".parse::<Timestamp>()?),
        },
        customer: Customer {
            id: CustomerId::new("c-1001")?,
            name: "Lotus Foods Ltd".into(),
            contact: "Ms Chen".into(),
            site_address: "12 Harbour Road".into(),
        },
        product: Product {
            model: "CH-500".into(),
            serial: "SN-88812".into(),
            product_type: "chiller".into(),
            purchase_date: None,
            warranty_end: Some("2025-04-01".parse::<CalendarDate>()?),
        },
        technicians: vec![TechnicianId::new(technician)?],
        visit: Visit::default(),
        diagnosis: Diagnosis::default(),
        parts: Vec::new(),
        labour: Labour::default(),
        travel: Travel::default(),
        billing: Billing {
            mode: BillingMode::Billable,
            currency: "CNY".into(),
            invoice_number: None,
        },
        handover: None,
        customer_opinion: None,
        acknowledgement: None,
        completion: None,
        report: None,
        timeline: Vec::new(),
        notes: String::new(),
        attachments: Vec::new(),
        expenses: Vec::new(),
    })
}

/// A new job document, as the desk would create it.
pub fn new_job_doc(job_id: DocumentId, technician: &str) -> anyhow::Result<AutoCommit> {
    let job = sample_job(job_id, technician)?;
    create_job(&job, None).map_err(|e| anyhow::anyhow!("create job: {e}"))
}

/// Applies edit number `i` (one automerge change) to a job document.
pub fn edit(doc: AutoCommit, i: usize) -> anyhow::Result<AutoCommit> {
    let mut job = JobDoc::from_autocommit(doc);
    let result = match i % 4 {
        0 => job.set_fault_cause(Some(&format!("Start relay worn, reading {i}"))),
        1 => job
            .add_part(&PartDraft {
                part_number: format!("P-{i:05}"),
                name: "Start relay".into(),
                specification: "230 V".into(),
                quantity: 1,
                unit_price: Money(12_500),
                warranty: false,
            })
            .map(|_| ()),
        2 => job.set_labour(Labour {
            minutes: 30 + u32::try_from(i).unwrap_or(0),
            rate_per_hour: Money(9_000),
        }),
        _ => job.set_solution(Some(&format!("Replaced relay, test run {i} ok"))),
    };
    result.map_err(|e| anyhow::anyhow!("edit {i}: {e}"))?;
    Ok(job.into_inner())
}

/// Applies `count` edits numbered from `first`.
pub fn edits(mut doc: AutoCommit, first: usize, count: usize) -> anyhow::Result<AutoCommit> {
    for i in first..first + count {
        doc = edit(doc, i).with_context(|| format!("edit {i}"))?;
    }
    Ok(doc)
}
