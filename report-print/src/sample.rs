//! A typical job to print: for the figures (render time and size), examples and the tests of
//! the crates that print. Not used by any product path.

use fieldsync_shared::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::*;
use fieldsync_shared::time::{Money, Timestamp};

/// A typical repair: two parts, one under warranty, billable, signed with strokes.
pub fn typical_job() -> Job {
    let tech = TechnicianId::new("tech-wang").expect("a valid fixture id");
    Job {
        schema_version: JOB_SCHEMA_VERSION,
        job_id: DocumentId::from_bytes([7; 16]),
        branch_id: BranchId::new("north-01").expect("a valid fixture id"),
        kind: JobKind::Repair,
        request: ServiceRequest {
            channel: Channel::Phone,
            received_at: Timestamp::from_millis(1_790_000_000_000),
            fault_description: "冷库压缩机运行十分钟后跳闸".into(),
            requested_arrival: Some(Timestamp::from_millis(1_790_050_000_000)),
        },
        customer: Customer {
            id: CustomerId::new("c-1001").expect("a valid fixture id"),
            name: "莲花食品有限公司".into(),
            contact: "陈女士 138-0000-0101".into(),
            site_address: "上海市浦东新区港湾路12号".into(),
        },
        product: Product {
            model: "CH-500".into(),
            serial: "SN-88812".into(),
            product_type: "冷水机组".into(),
            purchase_date: "2023-04-01".parse().ok(),
            warranty_end: "2025-04-01".parse().ok(),
        },
        technicians: vec![tech.clone()],
        visit: Visit {
            appointment: Some(Timestamp::from_millis(1_790_040_000_000)),
            arrival: Some(Timestamp::from_millis(1_790_049_000_000)),
            safety_briefing: None,
            check_out: Some(CheckOut {
                at: Timestamp::from_millis(1_790_060_000_000),
                by: tech.clone(),
                note: "已电话报备服务台".into(),
            }),
            training: None,
        },
        diagnosis: Diagnosis {
            fault_cause: Some("启动电容老化".into()),
            fault_category: Some("电气".into()),
            solution: Some("更换启动电容，试运行30分钟正常".into()),
        },
        parts: vec![
            PartUsed {
                id: PartLineId("p1".into()),
                part_number: "CAP-45".into(),
                name: "启动电容".into(),
                specification: "45 µF 450 V".into(),
                quantity: 2,
                unit_price: Money(1250),
                warranty: false,
            },
            PartUsed {
                id: PartLineId("p2".into()),
                part_number: "FUSE-10".into(),
                name: "保险丝".into(),
                specification: "10 A".into(),
                quantity: 1,
                unit_price: Money(300),
                warranty: true,
            },
        ],
        labour: Labour {
            minutes: 90,
            rate_per_hour: Money(6000),
        },
        travel: Travel {
            distance_m: 18_000,
            cost: Money(2500),
        },
        billing: Billing {
            mode: BillingMode::Billable,
            currency: "CNY".into(),
            invoice_number: Some("INV-2026-0001".into()),
        },
        handover: None,
        customer_opinion: Some("维修及时，态度很好".into()),
        acknowledgement: Some(Acknowledgement {
            signer_name: "陈丽".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![
                    vec![[0, 40], [20, 0], [40, 40], [60, 5], [80, 38]],
                    vec![[90, 10], [130, 30]],
                ],
            },
            signed_at: Timestamp::from_millis(1_790_059_000_000),
            survey: Survey::answered(5, 4, 5, 4, "希望提前电话通知"),
            device_id: DeviceId::new("dev-1").expect("a valid fixture id"),
            job_digest: String::new(),
            heads: Vec::new(),
            device_signature: String::new(),
        }),
        completion: None,
        report: None,
        timeline: Vec::new(),
        notes: String::new(),
        attachments: Vec::new(),
        expenses: Vec::new(),
    }
}
