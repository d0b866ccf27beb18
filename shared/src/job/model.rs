//! The job (work order) as plain Rust values: what a job document holds, read at some heads.
//!
//! These types are the typed face of the automerge document (`job::doc` maps them field by
//! field); they are also what the canonical report is made of, so every field that takes part
//! in a signature has one exact JSON form. Rule ids (R1…) refer to `../shared/DOMAIN.md`.

use serde::{Deserialize, Serialize};

use crate::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use crate::time::{CalendarDate, Money, Timestamp};

/// The schema version this code writes. A document with a newer version is read-only here.
pub const JOB_SCHEMA_VERSION: u64 = 1;

/// A job (工單): the unit a technician carries offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub schema_version: u64,
    pub job_id: DocumentId,
    pub branch_id: BranchId,
    pub kind: JobKind,
    pub request: ServiceRequest,
    pub customer: Customer,
    pub product: Product,
    /// Technicians assigned to the job, as recorded in the document (the server's own
    /// assignment records decide access, never this list: DESIGN.md, "Documents").
    pub technicians: Vec<TechnicianId>,
    pub visit: Visit,
    pub diagnosis: Diagnosis,
    /// Parts used (R7 names of replaced parts, R10/R18 warranty), in insertion order.
    pub parts: Vec<PartUsed>,
    pub labour: Labour,
    pub travel: Travel,
    pub billing: Billing,
    /// R5: a product taken back for repair, with the hand-over both sides signed.
    pub handover: Option<Handover>,
    /// R7: the customer's opinion of the service.
    pub customer_opinion: Option<String>,
    /// R8, R9: the customer's signed acceptance with the satisfaction survey.
    pub acknowledgement: Option<Acknowledgement>,
    /// The technician's request to finalise the job into a report.
    pub completion: Option<Completion>,
    /// The edge server's answer to the completion request.
    pub report: Option<ReportOutcome>,
    pub timeline: Vec<TimelineEvent>,
    /// Free notes, merged character by character (automerge text).
    pub notes: String,
    /// Photos, receipts and signature images referenced by their SHA-256 (issue 15; the
    /// bytes live outside the document, see `job::attachments`), sorted by digest. Left out
    /// of the JSON when there are none, so jobs and reports from before attachments keep
    /// their canonical content, digests and report ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::job::attachments::AttachmentRef>,
    /// R28: the travel expense claims the desk approved (read from the approvals map, sorted
    /// by request id), so the signed report carries them and head office counts them (R24).
    /// Left out of the JSON when there are none, like `attachments`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expenses: Vec<crate::job::approvals::ApprovedExpense>,
}

/// What sort of visit the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobKind {
    Repair,
    /// R16: installation and commissioning, done by the contract's date (the desk's
    /// `contract_due`) and including training the customer's staff ([`Visit::training`],
    /// required before the job can be completed).
    Installation,
    Maintenance,
    FollowUp,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Repair,
        JobKind::Installation,
        JobKind::Maintenance,
        JobKind::FollowUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Repair => "repair",
            JobKind::Installation => "installation",
            JobKind::Maintenance => "maintenance",
            JobKind::FollowUp => "follow_up",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// R1: how the service contact arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Channel {
    Phone,
    Letter,
    Visit,
    Email,
    Web,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Phone,
        Channel::Letter,
        Channel::Visit,
        Channel::Email,
        Channel::Web,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Phone => "phone",
            Channel::Letter => "letter",
            Channel::Visit => "visit",
            Channel::Email => "email",
            Channel::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// R1, R2: the registered service request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub channel: Channel,
    pub received_at: Timestamp,
    pub fault_description: String,
    /// R2: the time the customer asked the technician to arrive by.
    pub requested_arrival: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub contact: String,
    pub site_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub model: String,
    pub serial: String,
    pub product_type: String,
    pub purchase_date: Option<CalendarDate>,
    pub warranty_end: Option<CalendarDate>,
}

/// The visit on site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// R3: the appointment agreed with the customer before the visit.
    pub appointment: Option<Timestamp>,
    pub arrival: Option<Timestamp>,
    /// R32: the site safety briefing, recorded before entering a production area.
    pub safety_briefing: Option<SafetyBriefing>,
    /// R11: the technician reported back to the desk before leaving the site.
    pub check_out: Option<CheckOut>,
    /// R16: the training given to the customer's staff (installation and commissioning jobs
    /// need it before they can be completed). Absent, it is "no training recorded": documents
    /// and reports from before the field existed read that way, and an absent record is left
    /// out of the JSON, so their canonical content, digests and report ids are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafetyBriefing {
    pub at: Timestamp,
    pub by: TechnicianId,
    pub notes: String,
}

/// R16: training of the customer's staff, given on site and recorded in one go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// When the training was given.
    pub at: Timestamp,
    /// The technician who gave it.
    pub by: TechnicianId,
    /// Who was trained: names or roles of the customer's staff (`rules::completeness` asks
    /// for at least one).
    pub trainees: Vec<String>,
    /// What the training covered.
    pub topics: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOut {
    pub at: Timestamp,
    pub by: TechnicianId,
    pub note: String,
}

/// R7: what was wrong and what was done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub fault_cause: Option<String>,
    /// A short category of the fault (R4 repeat repairs and R27 quality analysis group by it).
    pub fault_category: Option<String>,
    pub solution: Option<String>,
}

/// A stable id of a part line, so concurrent edits address the same line on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartLineId(pub String);

impl PartLineId {
    /// A fresh random id (UUID v4, simple form).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// One line of parts used (R7, R10, R18).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartUsed {
    pub id: PartLineId,
    pub part_number: String,
    pub name: String,
    pub specification: String,
    pub quantity: u32,
    pub unit_price: Money,
    /// R10/R18: replaced free under warranty (a warranty-claim part).
    pub warranty: bool,
}

/// Labour, in minutes at an hourly rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Labour {
    pub minutes: u32,
    pub rate_per_hour: Money,
}

/// Travel to and from the site.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Travel {
    pub distance_m: u32,
    pub cost: Money,
}

/// R10: warranty work is free for the customer; billable work is invoiced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BillingMode {
    Warranty,
    Billable,
}

impl BillingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Warranty => "warranty",
            BillingMode::Billable => "billable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BillingMode::Warranty, BillingMode::Billable]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Billing {
    pub mode: BillingMode,
    /// ISO 4217 code of the currency every amount of the job is in.
    pub currency: String,
    pub invoice_number: Option<String>,
}

/// R5: a product taken back, with the written hand-over both sides sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    pub items: String,
    pub reason: String,
    pub promised_completion: Option<Timestamp>,
    pub taken_at: Timestamp,
    pub technician: TechnicianId,
    pub customer_signer: String,
}

/// R8, R9: the customer's acknowledgement, signed on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub signer_name: String,
    pub signature: SignatureMark,
    pub signed_at: Timestamp,
    pub survey: Survey,
    /// The device that took the acknowledgement and signed it.
    pub device_id: DeviceId,
    /// Hex SHA-256 of the acknowledged content (see `report::acknowledged_content`).
    pub job_digest: String,
    /// The document heads the digest was taken at (hex change hashes, sorted).
    pub heads: Vec<String>,
    /// Hex ed25519 signature by the device key over the acknowledgement statement.
    pub device_signature: String,
}

/// The customer's mark: pen strokes captured on the device, or an image (e.g. a stamp).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SignatureMark {
    /// Each stroke is a list of `[x, y]` points in device pixels.
    Strokes { strokes: Vec<Vec<[i32; 2]>> },
    /// Image bytes (PNG or JPEG), base64 in JSON.
    Image {
        mime: String,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
}

/// R9: the satisfaction survey; scores are 1 (poor) to 5 (excellent), or `None` when the
/// customer did not answer (a skipped survey is all `None`, never a made-up score, so the
/// statistics count only what customers said).
///
/// A score not answered is left out of the JSON and of the document, so acknowledgements and
/// reports from before "not answered" existed (every score present) keep their canonical
/// form, digests and report ids. Their scores read as answered: an old survey that a client
/// filled with 5s by default cannot be told apart from a real 5.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attitude: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub punctuality: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_items: Option<u8>,
    pub suggestions: String,
}

impl Survey {
    /// The lowest and highest score (R9).
    pub const SCORES: std::ops::RangeInclusive<u8> = 1..=5;

    /// A survey with all four scores answered.
    pub fn answered(
        attitude: u8,
        skill: u8,
        punctuality: u8,
        service_items: u8,
        suggestions: impl Into<String>,
    ) -> Self {
        Self {
            attitude: Some(attitude),
            skill: Some(skill),
            punctuality: Some(punctuality),
            service_items: Some(service_items),
            suggestions: suggestions.into(),
        }
    }

    /// A survey the customer skipped: no score answered, no suggestion.
    pub fn not_answered() -> Self {
        Self::default()
    }

    /// The four scores with their field names, in the order of the form.
    pub fn scores(&self) -> [(&'static str, Option<u8>); 4] {
        [
            ("attitude", self.attitude),
            ("skill", self.skill),
            ("punctuality", self.punctuality),
            ("service_items", self.service_items),
        ]
    }

    /// Whether the customer answered at least one score.
    pub fn any_answered(&self) -> bool {
        self.scores().iter().any(|(_, s)| s.is_some())
    }
}

/// The technician asked for the job to be finalised into a signed report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub at: Timestamp,
    pub by: TechnicianId,
}

/// The edge server's decision on a completion request, written back so the device shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReportOutcome {
    Signed {
        at: Timestamp,
        report_id: String,
        /// Hex digest of the report content that was signed.
        digest: String,
        /// The report this one replaces, when the job was reopened and completed again.
        supersedes: Option<String>,
    },
    Refused {
        at: Timestamp,
        reasons: Vec<RefusalReason>,
    },
}

/// One reason a job cannot be finalised, with the rule it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalReason {
    /// The rule id of `../shared/DOMAIN.md`, e.g. "R7".
    pub rule: String,
    /// A stable code, e.g. "missing_fault_cause".
    pub code: String,
    pub message: String,
}

/// One entry of the job's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub at: Timestamp,
    /// Who did it: a technician id, `desk:<role>` or `server`.
    pub actor: String,
    pub kind: String,
    pub text: String,
}

/// The assignment index (one per technician): the jobs their devices should sync. Only the
/// server writes it; devices read it and follow the links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentIndex {
    pub schema_version: u64,
    pub branch_id: BranchId,
    pub technician: TechnicianId,
    /// `automerge:` URLs of the assigned jobs.
    pub jobs: Vec<String>,
}

/// Serde for byte strings as standard base64 (the JSON form of automerge bytes).
pub mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}
