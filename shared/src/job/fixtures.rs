//! Jobs for the tests of this crate: a freshly registered one and one with every record.

use automerge::ActorId;

use crate::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use crate::job::model::*;
use crate::time::{CalendarDate, Money, Timestamp};

pub(crate) fn tech(s: &str) -> TechnicianId {
    TechnicianId::new(s).expect("valid technician id")
}

pub(crate) fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub(crate) fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

/// A freshly registered job: no optional records yet.
pub(crate) fn new_job() -> Job {
    Job {
        schema_version: JOB_SCHEMA_VERSION,
        job_id: DocumentId::from_bytes([7; 16]),
        branch_id: BranchId::new("north-01").expect("valid"),
        kind: JobKind::Repair,
        request: ServiceRequest {
            channel: Channel::Phone,
            received_at: at(1_790_000_000_000),
            fault_description: "Compressor trips after ten minutes".into(),
            requested_arrival: Some(at(1_790_050_000_000)),
        },
        customer: Customer {
            id: CustomerId::new("cust-0042").expect("valid"),
            name: "Harbour Cold Storage".into(),
            contact: "Ms Lin, 555-0101".into(),
            site_address: "12 Quay Road".into(),
        },
        product: Product {
            model: "CX-400".into(),
            serial: "SN-991".into(),
            product_type: "chiller".into(),
            purchase_date: Some(CalendarDate::from_ymd(2024, 3, 1).expect("valid")),
            warranty_end: None,
        },
        technicians: vec![tech("tech-wang")],
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

/// A job with every optional record filled.
pub(crate) fn full_job() -> Job {
    let mut job = new_job();
    job.visit = Visit {
        appointment: Some(at(1_790_040_000_000)),
        arrival: Some(at(1_790_049_000_000)),
        safety_briefing: Some(SafetyBriefing {
            at: at(1_790_049_100_000),
            by: tech("tech-wang"),
            notes: "Hard hat zone".into(),
        }),
        check_out: Some(CheckOut {
            at: at(1_790_060_000_000),
            by: tech("tech-wang"),
            note: "Called desk".into(),
        }),
        training: Some(Training {
            at: at(1_790_058_000_000),
            by: tech("tech-wang"),
            trainees: vec!["Ms Lin (shift lead)".into(), "cold-room operators".into()],
            topics: "Start-up, alarm reset, weekly filter cleaning".into(),
        }),
    };
    job.diagnosis = Diagnosis {
        fault_cause: Some("Relay contacts worn".into()),
        fault_category: Some("electrical".into()),
        solution: Some("Replaced relay".into()),
    };
    job.parts = vec![PartUsed {
        id: PartLineId("p1".into()),
        part_number: "RL-12".into(),
        name: "Relay".into(),
        specification: "24 V".into(),
        quantity: 2,
        unit_price: Money(1250),
        warranty: true,
    }];
    job.labour = Labour {
        minutes: 90,
        rate_per_hour: Money(8000),
    };
    job.travel = Travel {
        distance_m: 12_000,
        cost: Money(3000),
    };
    job.billing.invoice_number = Some("INV-7".into());
    job.handover = Some(Handover {
        items: "Control board".into(),
        reason: "Needs bench test".into(),
        promised_completion: Some(at(1_790_500_000_000)),
        taken_at: at(1_790_059_000_000),
        technician: tech("tech-wang"),
        customer_signer: "Ms Lin".into(),
    });
    job.customer_opinion = Some("Quick and tidy".into());
    job.acknowledgement = Some(Acknowledgement {
        signer_name: "Lin Mei".into(),
        signature: SignatureMark::Strokes {
            strokes: vec![vec![[1, 2], [3, -4]], vec![[5, 6]]],
        },
        signed_at: at(1_790_059_500_000),
        survey: Survey::answered(5, 4, 5, 4, "None"),
        device_id: DeviceId::new("dev-1").expect("valid"),
        job_digest: "ab".repeat(32),
        heads: vec!["cd".repeat(32)],
        device_signature: "ef".repeat(64),
    });
    job.completion = Some(Completion {
        at: at(1_790_061_000_000),
        by: tech("tech-wang"),
    });
    job.report = Some(ReportOutcome::Refused {
        at: at(1_790_062_000_000),
        reasons: vec![RefusalReason {
            rule: "R8".into(),
            code: "missing_acknowledgement".into(),
            message: "The customer has not signed".into(),
        }],
    });
    job.timeline = vec![TimelineEvent {
        at: at(1_790_000_000_000),
        actor: "desk:intake".into(),
        kind: "registered".into(),
        text: "Call registered".into(),
    }];
    job.notes = "Bring the long ladder.".into();
    job
}
