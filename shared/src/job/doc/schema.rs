//! The job document's layout: how each part of [`Job`] is written and read, side by side, so
//! the representation can be read (and changed) in one place.
//!
//! Keys are the serde names of `model.rs`, so a JavaScript app sees the same shape as the
//! model's JSON: instants are automerge timestamps, money and counts are ints, enums and ids
//! are strings, dates are `YYYY-MM-DD` strings, an absent `Option` is an absent key, signature
//! images are bytes, and the notes are a text object.

use std::collections::HashSet;

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use super::SchemaError;
use super::read::{ListView, MapView, Reader};
use crate::ids::TechnicianId;
use crate::job::model::*;
use crate::time::{Money, Timestamp};

/// The keys of the document, named once so writing, reading and editing cannot drift apart.
pub(super) mod k {
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const JOB_ID: &str = "job_id";
    pub const BRANCH_ID: &str = "branch_id";
    pub const KIND: &str = "kind";
    pub const REQUEST: &str = "request";
    pub const CHANNEL: &str = "channel";
    pub const RECEIVED_AT: &str = "received_at";
    pub const FAULT_DESCRIPTION: &str = "fault_description";
    pub const REQUESTED_ARRIVAL: &str = "requested_arrival";
    pub const CUSTOMER: &str = "customer";
    pub const ID: &str = "id";
    pub const NAME: &str = "name";
    pub const CONTACT: &str = "contact";
    pub const SITE_ADDRESS: &str = "site_address";
    pub const PRODUCT: &str = "product";
    pub const MODEL: &str = "model";
    pub const SERIAL: &str = "serial";
    pub const PRODUCT_TYPE: &str = "product_type";
    pub const PURCHASE_DATE: &str = "purchase_date";
    pub const WARRANTY_END: &str = "warranty_end";
    pub const TECHNICIANS: &str = "technicians";
    pub const VISIT: &str = "visit";
    pub const APPOINTMENT: &str = "appointment";
    pub const ARRIVAL: &str = "arrival";
    pub const SAFETY_BRIEFING: &str = "safety_briefing";
    pub const CHECK_OUT: &str = "check_out";
    pub const TRAINING: &str = "training";
    pub const TRAINEES: &str = "trainees";
    pub const TOPICS: &str = "topics";
    pub const AT: &str = "at";
    pub const BY: &str = "by";
    pub const NOTES: &str = "notes";
    pub const NOTE: &str = "note";
    pub const DIAGNOSIS: &str = "diagnosis";
    pub const FAULT_CAUSE: &str = "fault_cause";
    pub const FAULT_CATEGORY: &str = "fault_category";
    pub const SOLUTION: &str = "solution";
    pub const PARTS: &str = "parts";
    pub const PART_NUMBER: &str = "part_number";
    pub const SPECIFICATION: &str = "specification";
    pub const QUANTITY: &str = "quantity";
    pub const UNIT_PRICE: &str = "unit_price";
    pub const WARRANTY: &str = "warranty";
    pub const LABOUR: &str = "labour";
    pub const MINUTES: &str = "minutes";
    pub const RATE_PER_HOUR: &str = "rate_per_hour";
    pub const TRAVEL: &str = "travel";
    pub const DISTANCE_M: &str = "distance_m";
    pub const COST: &str = "cost";
    pub const BILLING: &str = "billing";
    pub const MODE: &str = "mode";
    pub const CURRENCY: &str = "currency";
    pub const INVOICE_NUMBER: &str = "invoice_number";
    pub const HANDOVER: &str = "handover";
    pub const ITEMS: &str = "items";
    pub const REASON: &str = "reason";
    pub const PROMISED_COMPLETION: &str = "promised_completion";
    pub const TAKEN_AT: &str = "taken_at";
    pub const TECHNICIAN: &str = "technician";
    pub const CUSTOMER_SIGNER: &str = "customer_signer";
    pub const CUSTOMER_OPINION: &str = "customer_opinion";
    pub const ACKNOWLEDGEMENT: &str = "acknowledgement";
    pub const SIGNER_NAME: &str = "signer_name";
    pub const SIGNATURE: &str = "signature";
    pub const TYPE: &str = "type";
    pub const STROKES: &str = "strokes";
    pub const MIME: &str = "mime";
    pub const DATA: &str = "data";
    pub const SIGNED_AT: &str = "signed_at";
    pub const SURVEY: &str = "survey";
    pub const ATTITUDE: &str = "attitude";
    pub const SKILL: &str = "skill";
    pub const PUNCTUALITY: &str = "punctuality";
    pub const SERVICE_ITEMS: &str = "service_items";
    pub const SUGGESTIONS: &str = "suggestions";
    pub const DEVICE_ID: &str = "device_id";
    pub const JOB_DIGEST: &str = "job_digest";
    pub const HEADS: &str = "heads";
    pub const DEVICE_SIGNATURE: &str = "device_signature";
    pub const COMPLETION: &str = "completion";
    pub const REPORT: &str = "report";
    pub const STATUS: &str = "status";
    pub const REPORT_ID: &str = "report_id";
    pub const DIGEST: &str = "digest";
    pub const SUPERSEDES: &str = "supersedes";
    pub const REASONS: &str = "reasons";
    pub const RULE: &str = "rule";
    pub const CODE: &str = "code";
    pub const MESSAGE: &str = "message";
    pub const TIMELINE: &str = "timeline";
    pub const ACTOR: &str = "actor";
    pub const TEXT: &str = "text";
    pub const GROUP: &str = "group";
    pub const VALUES: &str = "values";
}

type Written = Result<(), AutomergeError>;

pub(super) fn ts(t: Timestamp) -> ScalarValue {
    ScalarValue::Timestamp(t.as_millis())
}

pub(super) fn int(i: impl Into<i64>) -> ScalarValue {
    ScalarValue::Int(i.into())
}

pub(super) fn money(m: Money) -> ScalarValue {
    ScalarValue::Int(m.0)
}

pub(super) fn string(s: &str) -> ScalarValue {
    ScalarValue::Str(s.into())
}

/// Writes `value` under `key` when there is one; an absent `Option` is an absent key.
fn put_opt<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<ScalarValue>,
) -> Written {
    if let Some(v) = value {
        tx.put(obj, key, v)?;
    }
    Ok(())
}

/// Writes a whole record as a fresh map under `key` (replacing any earlier one).
pub(super) fn put_record<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    key: &str,
    fill: impl FnOnce(&mut T, &ObjId) -> Written,
) -> Written {
    let map = tx.put_object(parent, key, ObjType::Map)?;
    fill(tx, &map)
}

/// Appends a record as a fresh map at the end of `list`.
pub(super) fn push_record<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    len: usize,
    fill: impl FnOnce(&mut T, &ObjId) -> Written,
) -> Written {
    let map = tx.insert_object(list, len, ObjType::Map)?;
    fill(tx, &map)
}

/// The schema version as it is stored (an int, as JavaScript writes numbers).
const SCHEMA_VERSION_INT: i64 = JOB_SCHEMA_VERSION as i64;

/// Writes a whole job into an empty document.
///
/// Every nested map, list and the notes text is created here, once, by the creator: later edits
/// on any replica only set scalars inside them or insert into them. Were two replicas to create
/// the same nested map concurrently, automerge would keep one map and hide the other with
/// everything written into it.
pub(super) fn write_job<T: Transactable>(tx: &mut T, job: &Job) -> Written {
    tx.put(
        ROOT,
        k::SCHEMA_VERSION,
        ScalarValue::Int(SCHEMA_VERSION_INT),
    )?;
    tx.put(ROOT, k::JOB_ID, job.job_id.to_string())?;
    tx.put(ROOT, k::BRANCH_ID, job.branch_id.as_str())?;
    tx.put(ROOT, k::KIND, job.kind.as_str())?;

    put_record(tx, &ROOT, k::REQUEST, |tx, m| {
        let r = &job.request;
        tx.put(m, k::CHANNEL, r.channel.as_str())?;
        tx.put(m, k::RECEIVED_AT, ts(r.received_at))?;
        tx.put(m, k::FAULT_DESCRIPTION, r.fault_description.as_str())?;
        put_opt(tx, m, k::REQUESTED_ARRIVAL, r.requested_arrival.map(ts))
    })?;
    put_record(tx, &ROOT, k::CUSTOMER, |tx, m| {
        let c = &job.customer;
        tx.put(m, k::ID, c.id.as_str())?;
        tx.put(m, k::NAME, c.name.as_str())?;
        tx.put(m, k::CONTACT, c.contact.as_str())?;
        tx.put(m, k::SITE_ADDRESS, c.site_address.as_str())
    })?;
    put_record(tx, &ROOT, k::PRODUCT, |tx, m| {
        let p = &job.product;
        tx.put(m, k::MODEL, p.model.as_str())?;
        tx.put(m, k::SERIAL, p.serial.as_str())?;
        tx.put(m, k::PRODUCT_TYPE, p.product_type.as_str())?;
        put_opt(
            tx,
            m,
            k::PURCHASE_DATE,
            p.purchase_date.map(|d| string(&d.to_string())),
        )?;
        put_opt(
            tx,
            m,
            k::WARRANTY_END,
            p.warranty_end.map(|d| string(&d.to_string())),
        )
    })?;

    let techs = tx.put_object(ROOT, k::TECHNICIANS, ObjType::List)?;
    for (i, t) in dedup(&job.technicians).into_iter().enumerate() {
        tx.insert(&techs, i, t.as_str())?;
    }

    put_record(tx, &ROOT, k::VISIT, |tx, m| {
        let v = &job.visit;
        put_opt(tx, m, k::APPOINTMENT, v.appointment.map(ts))?;
        put_opt(tx, m, k::ARRIVAL, v.arrival.map(ts))?;
        if let Some(b) = &v.safety_briefing {
            put_record(tx, m, k::SAFETY_BRIEFING, |tx, r| {
                write_safety_briefing(tx, r, b)
            })?;
        }
        if let Some(c) = &v.check_out {
            put_record(tx, m, k::CHECK_OUT, |tx, r| write_check_out(tx, r, c))?;
        }
        if let Some(t) = &v.training {
            put_record(tx, m, k::TRAINING, |tx, r| write_training(tx, r, t))?;
        }
        Ok(())
    })?;
    put_record(tx, &ROOT, k::DIAGNOSIS, |tx, m| {
        let d = &job.diagnosis;
        put_opt(tx, m, k::FAULT_CAUSE, d.fault_cause.as_deref().map(string))?;
        put_opt(
            tx,
            m,
            k::FAULT_CATEGORY,
            d.fault_category.as_deref().map(string),
        )?;
        put_opt(tx, m, k::SOLUTION, d.solution.as_deref().map(string))
    })?;

    let parts = tx.put_object(ROOT, k::PARTS, ObjType::List)?;
    for (i, p) in job.parts.iter().enumerate() {
        push_record(tx, &parts, i, |tx, m| write_part(tx, m, p))?;
    }

    put_record(tx, &ROOT, k::LABOUR, |tx, m| {
        tx.put(m, k::MINUTES, int(job.labour.minutes))?;
        tx.put(m, k::RATE_PER_HOUR, money(job.labour.rate_per_hour))
    })?;
    put_record(tx, &ROOT, k::TRAVEL, |tx, m| {
        tx.put(m, k::DISTANCE_M, int(job.travel.distance_m))?;
        tx.put(m, k::COST, money(job.travel.cost))
    })?;
    put_record(tx, &ROOT, k::BILLING, |tx, m| {
        let b = &job.billing;
        tx.put(m, k::MODE, b.mode.as_str())?;
        tx.put(m, k::CURRENCY, b.currency.as_str())?;
        put_opt(
            tx,
            m,
            k::INVOICE_NUMBER,
            b.invoice_number.as_deref().map(string),
        )
    })?;

    if let Some(h) = &job.handover {
        put_record(tx, &ROOT, k::HANDOVER, |tx, m| write_handover(tx, m, h))?;
    }
    put_opt(
        tx,
        &ROOT,
        k::CUSTOMER_OPINION,
        job.customer_opinion.as_deref().map(string),
    )?;
    if let Some(a) = &job.acknowledgement {
        put_record(tx, &ROOT, k::ACKNOWLEDGEMENT, |tx, m| {
            write_acknowledgement(tx, m, a)
        })?;
    }
    if let Some(c) = &job.completion {
        put_record(tx, &ROOT, k::COMPLETION, |tx, m| write_completion(tx, m, c))?;
    }
    if let Some(r) = &job.report {
        put_record(tx, &ROOT, k::REPORT, |tx, m| write_report(tx, m, r))?;
    }

    let timeline = tx.put_object(ROOT, k::TIMELINE, ObjType::List)?;
    for (i, e) in job.timeline.iter().enumerate() {
        push_record(tx, &timeline, i, |tx, m| write_timeline_event(tx, m, e))?;
    }

    // A job created with attachments (a copy, a test) carries their references; a new job
    // from the desk has none, and the server adds the empty map (`init_attachments`).
    if !job.attachments.is_empty() {
        let map = tx.put_object(ROOT, crate::job::attachments::ATTACHMENTS, ObjType::Map)?;
        for a in &job.attachments {
            let m = tx.put_object(&map, a.digest.as_str(), ObjType::Map)?;
            crate::job::attachments::write_fields(tx, &m, a)?;
        }
    }

    // Likewise approved travel expense claims (R28), written as the claim and its decision.
    if !job.expenses.is_empty() {
        let map = tx.put_object(ROOT, crate::job::approvals::APPROVALS, ObjType::Map)?;
        for e in &job.expenses {
            let (claim, decision) = e.as_approval();
            let request = crate::job::approvals::write_request(tx, &map, &claim)?;
            crate::job::approvals::write_decision(tx, &request, &decision)?;
        }
    }

    let notes = tx.put_object(ROOT, k::NOTES, ObjType::Text)?;
    tx.splice_text(&notes, 0, 0, &job.notes)
}

/// Technicians are a set kept in first-seen order: two people adding the same technician
/// offline both insert it, and it must still show once.
pub(super) fn dedup(techs: &[TechnicianId]) -> Vec<&TechnicianId> {
    let mut seen = HashSet::new();
    techs.iter().filter(|t| seen.insert(*t)).collect()
}

pub(super) fn write_safety_briefing<T: Transactable>(
    tx: &mut T,
    m: &ObjId,
    b: &SafetyBriefing,
) -> Written {
    tx.put(m, k::AT, ts(b.at))?;
    tx.put(m, k::BY, b.by.as_str())?;
    tx.put(m, k::NOTES, b.notes.as_str())
}

pub(super) fn write_check_out<T: Transactable>(tx: &mut T, m: &ObjId, c: &CheckOut) -> Written {
    tx.put(m, k::AT, ts(c.at))?;
    tx.put(m, k::BY, c.by.as_str())?;
    tx.put(m, k::NOTE, c.note.as_str())
}

/// R16: the trainees are a list of strings inside the record, written with it.
pub(super) fn write_training<T: Transactable>(tx: &mut T, m: &ObjId, t: &Training) -> Written {
    tx.put(m, k::AT, ts(t.at))?;
    tx.put(m, k::BY, t.by.as_str())?;
    let trainees = tx.put_object(m, k::TRAINEES, ObjType::List)?;
    for (i, name) in t.trainees.iter().enumerate() {
        tx.insert(&trainees, i, name.as_str())?;
    }
    tx.put(m, k::TOPICS, t.topics.as_str())
}

pub(super) fn write_part<T: Transactable>(tx: &mut T, m: &ObjId, p: &PartUsed) -> Written {
    tx.put(m, k::ID, p.id.0.as_str())?;
    tx.put(m, k::PART_NUMBER, p.part_number.as_str())?;
    tx.put(m, k::NAME, p.name.as_str())?;
    tx.put(m, k::SPECIFICATION, p.specification.as_str())?;
    tx.put(m, k::QUANTITY, int(p.quantity))?;
    tx.put(m, k::UNIT_PRICE, money(p.unit_price))?;
    tx.put(m, k::WARRANTY, p.warranty)
}

pub(super) fn write_handover<T: Transactable>(tx: &mut T, m: &ObjId, h: &Handover) -> Written {
    tx.put(m, k::ITEMS, h.items.as_str())?;
    tx.put(m, k::REASON, h.reason.as_str())?;
    put_opt(tx, m, k::PROMISED_COMPLETION, h.promised_completion.map(ts))?;
    tx.put(m, k::TAKEN_AT, ts(h.taken_at))?;
    tx.put(m, k::TECHNICIAN, h.technician.as_str())?;
    tx.put(m, k::CUSTOMER_SIGNER, h.customer_signer.as_str())
}

pub(super) fn write_acknowledgement<T: Transactable>(
    tx: &mut T,
    m: &ObjId,
    a: &Acknowledgement,
) -> Written {
    tx.put(m, k::SIGNER_NAME, a.signer_name.as_str())?;
    put_record(tx, m, k::SIGNATURE, |tx, s| match &a.signature {
        SignatureMark::Strokes { strokes } => {
            tx.put(s, k::TYPE, "strokes")?;
            let list = tx.put_object(s, k::STROKES, ObjType::List)?;
            for (i, stroke) in strokes.iter().enumerate() {
                let points = tx.insert_object(&list, i, ObjType::List)?;
                for (j, [x, y]) in stroke.iter().enumerate() {
                    let point = tx.insert_object(&points, j, ObjType::List)?;
                    tx.insert(&point, 0, int(*x))?;
                    tx.insert(&point, 1, int(*y))?;
                }
            }
            Ok(())
        }
        SignatureMark::Image { mime, data } => {
            tx.put(s, k::TYPE, "image")?;
            tx.put(s, k::MIME, mime.as_str())?;
            tx.put(s, k::DATA, ScalarValue::Bytes(data.clone()))
        }
    })?;
    tx.put(m, k::SIGNED_AT, ts(a.signed_at))?;
    put_record(tx, m, k::SURVEY, |tx, s| {
        let v = &a.survey;
        // A score not answered (R9) is no key at all, as in documents written before it
        // could be skipped every score is a key.
        for (key, score) in [
            (k::ATTITUDE, v.attitude),
            (k::SKILL, v.skill),
            (k::PUNCTUALITY, v.punctuality),
            (k::SERVICE_ITEMS, v.service_items),
        ] {
            if let Some(score) = score {
                tx.put(s, key, int(score))?;
            }
        }
        tx.put(s, k::SUGGESTIONS, v.suggestions.as_str())
    })?;
    tx.put(m, k::DEVICE_ID, a.device_id.as_str())?;
    tx.put(m, k::JOB_DIGEST, a.job_digest.as_str())?;
    let heads = tx.put_object(m, k::HEADS, ObjType::List)?;
    for (i, h) in a.heads.iter().enumerate() {
        tx.insert(&heads, i, h.as_str())?;
    }
    tx.put(m, k::DEVICE_SIGNATURE, a.device_signature.as_str())
}

pub(super) fn write_completion<T: Transactable>(tx: &mut T, m: &ObjId, c: &Completion) -> Written {
    tx.put(m, k::AT, ts(c.at))?;
    tx.put(m, k::BY, c.by.as_str())
}

pub(super) fn write_report<T: Transactable>(tx: &mut T, m: &ObjId, r: &ReportOutcome) -> Written {
    match r {
        ReportOutcome::Signed {
            at,
            report_id,
            digest,
            supersedes,
        } => {
            tx.put(m, k::STATUS, "signed")?;
            tx.put(m, k::AT, ts(*at))?;
            tx.put(m, k::REPORT_ID, report_id.as_str())?;
            tx.put(m, k::DIGEST, digest.as_str())?;
            put_opt(tx, m, k::SUPERSEDES, supersedes.as_deref().map(string))
        }
        ReportOutcome::Refused { at, reasons } => {
            tx.put(m, k::STATUS, "refused")?;
            tx.put(m, k::AT, ts(*at))?;
            let list = tx.put_object(m, k::REASONS, ObjType::List)?;
            for (i, reason) in reasons.iter().enumerate() {
                push_record(tx, &list, i, |tx, r| {
                    tx.put(r, k::RULE, reason.rule.as_str())?;
                    tx.put(r, k::CODE, reason.code.as_str())?;
                    tx.put(r, k::MESSAGE, reason.message.as_str())
                })?;
            }
            Ok(())
        }
    }
}

pub(super) fn write_timeline_event<T: Transactable>(
    tx: &mut T,
    m: &ObjId,
    e: &TimelineEvent,
) -> Written {
    tx.put(m, k::AT, ts(e.at))?;
    tx.put(m, k::ACTOR, e.actor.as_str())?;
    tx.put(m, k::KIND, e.kind.as_str())?;
    tx.put(m, k::TEXT, e.text.as_str())
}

/// Reads a whole job, refusing a document written by a newer schema before looking further
/// (its layout may differ in ways this code cannot know).
pub(super) fn read_job<R: ReadDoc>(rd: Reader<'_, R>) -> Result<Job, SchemaError> {
    let root = rd.root();
    let schema_version = check_version(&root, JOB_SCHEMA_VERSION)?;

    let request = root.map(k::REQUEST)?;
    let customer = root.map(k::CUSTOMER)?;
    let product = root.map(k::PRODUCT)?;
    let visit = root.map(k::VISIT)?;
    let diagnosis = root.map(k::DIAGNOSIS)?;
    let labour = root.map(k::LABOUR)?;
    let travel = root.map(k::TRAVEL)?;
    let billing = root.map(k::BILLING)?;

    Ok(Job {
        schema_version,
        job_id: root.parse(k::JOB_ID)?,
        branch_id: root.parse(k::BRANCH_ID)?,
        kind: root.parsed(k::KIND, |s| {
            JobKind::parse(s).ok_or_else(|| unknown("job kind", s))
        })?,
        request: ServiceRequest {
            channel: request.parsed(k::CHANNEL, |s| {
                Channel::parse(s).ok_or_else(|| unknown("channel", s))
            })?,
            received_at: request.timestamp(k::RECEIVED_AT)?,
            fault_description: request.string(k::FAULT_DESCRIPTION)?,
            requested_arrival: request.opt_timestamp(k::REQUESTED_ARRIVAL)?,
        },
        customer: Customer {
            id: customer.parse(k::ID)?,
            name: customer.string(k::NAME)?,
            contact: customer.string(k::CONTACT)?,
            site_address: customer.string(k::SITE_ADDRESS)?,
        },
        product: Product {
            model: product.string(k::MODEL)?,
            serial: product.string(k::SERIAL)?,
            product_type: product.string(k::PRODUCT_TYPE)?,
            purchase_date: product.opt_parse(k::PURCHASE_DATE)?,
            warranty_end: product.opt_parse(k::WARRANTY_END)?,
        },
        technicians: read_technicians(&root.list(k::TECHNICIANS)?)?,
        visit: Visit {
            appointment: visit.opt_timestamp(k::APPOINTMENT)?,
            arrival: visit.opt_timestamp(k::ARRIVAL)?,
            safety_briefing: visit
                .opt_map(k::SAFETY_BRIEFING)?
                .map(|m| read_safety_briefing(&m))
                .transpose()?,
            check_out: visit
                .opt_map(k::CHECK_OUT)?
                .map(|m| read_check_out(&m))
                .transpose()?,
            // Absent in documents written before R16's training was modelled: none recorded.
            training: visit
                .opt_map(k::TRAINING)?
                .map(|m| read_training(&m))
                .transpose()?,
        },
        diagnosis: Diagnosis {
            fault_cause: diagnosis.opt_string(k::FAULT_CAUSE)?,
            fault_category: diagnosis.opt_string(k::FAULT_CATEGORY)?,
            solution: diagnosis.opt_string(k::SOLUTION)?,
        },
        parts: read_parts(&root.list(k::PARTS)?)?,
        labour: Labour {
            minutes: labour.int(k::MINUTES)?,
            rate_per_hour: Money(labour.int(k::RATE_PER_HOUR)?),
        },
        travel: Travel {
            distance_m: travel.int(k::DISTANCE_M)?,
            cost: Money(travel.int(k::COST)?),
        },
        billing: Billing {
            mode: billing.parsed(k::MODE, |s| {
                BillingMode::parse(s).ok_or_else(|| unknown("billing mode", s))
            })?,
            currency: billing.string(k::CURRENCY)?,
            invoice_number: billing.opt_string(k::INVOICE_NUMBER)?,
        },
        handover: root
            .opt_map(k::HANDOVER)?
            .map(|m| read_handover(&m))
            .transpose()?,
        customer_opinion: root.opt_string(k::CUSTOMER_OPINION)?,
        acknowledgement: root
            .opt_map(k::ACKNOWLEDGEMENT)?
            .map(|m| read_acknowledgement(&m))
            .transpose()?,
        completion: root
            .opt_map(k::COMPLETION)?
            .map(|m| read_completion(&m))
            .transpose()?,
        report: root
            .opt_map(k::REPORT)?
            .map(|m| read_report(&m))
            .transpose()?,
        timeline: root
            .list(k::TIMELINE)?
            .maps()?
            .iter()
            .map(read_timeline_event)
            .collect::<Result<_, _>>()?,
        notes: root.text(k::NOTES)?,
        // Absent in documents written before attachments existed: none.
        attachments: super::attachments::read_attachments(&root)?,
        // R28: the approved travel expense claims, from the approvals map.
        expenses: super::expenses::read_expenses(&root)?,
    })
}

/// Reads `schema_version` and refuses one newer than `supported`.
pub(crate) fn check_version<R: ReadDoc>(
    root: &MapView<'_, R>,
    supported: u64,
) -> Result<u64, SchemaError> {
    let found: u64 = root.int(k::SCHEMA_VERSION)?;
    if found > supported {
        return Err(SchemaError::NewerSchema { found, supported });
    }
    Ok(found)
}

fn unknown(what: &str, value: &str) -> String {
    format!("unknown {what} {value:?}")
}

fn read_technicians<R: ReadDoc>(list: &ListView<'_, R>) -> Result<Vec<TechnicianId>, SchemaError> {
    let techs = list.items(|rd, path, v, id| {
        let s = rd.string(&path, v, &id)?;
        TechnicianId::new(s).map_err(|e| SchemaError::Invalid {
            path,
            reason: e.to_string(),
        })
    })?;
    Ok(dedup(&techs).into_iter().cloned().collect())
}

pub(super) fn read_parts<R: ReadDoc>(list: &ListView<'_, R>) -> Result<Vec<PartUsed>, SchemaError> {
    let parts = list
        .maps()?
        .iter()
        .map(read_part)
        .collect::<Result<Vec<_>, _>>()?;
    // A part line id names one line on every replica; two lines with one id would make an edit
    // by id ambiguous, so such a document is refused rather than guessed at.
    let mut seen = HashSet::new();
    for (i, p) in parts.iter().enumerate() {
        if !seen.insert(&p.id) {
            return Err(SchemaError::Invalid {
                path: format!("{}[{i}].{}", list.path(), k::ID),
                reason: format!("duplicate part line id {:?}", p.id.0),
            });
        }
    }
    Ok(parts)
}

fn read_part<R: ReadDoc>(m: &MapView<'_, R>) -> Result<PartUsed, SchemaError> {
    Ok(PartUsed {
        id: PartLineId(m.parsed(k::ID, |s| {
            if s.is_empty() {
                Err("empty part line id")
            } else {
                Ok(s.to_owned())
            }
        })?),
        part_number: m.string(k::PART_NUMBER)?,
        name: m.string(k::NAME)?,
        specification: m.string(k::SPECIFICATION)?,
        quantity: m.int(k::QUANTITY)?,
        unit_price: Money(m.int(k::UNIT_PRICE)?),
        warranty: m.bool(k::WARRANTY)?,
    })
}

fn read_safety_briefing<R: ReadDoc>(m: &MapView<'_, R>) -> Result<SafetyBriefing, SchemaError> {
    Ok(SafetyBriefing {
        at: m.timestamp(k::AT)?,
        by: m.parse(k::BY)?,
        notes: m.string(k::NOTES)?,
    })
}

fn read_check_out<R: ReadDoc>(m: &MapView<'_, R>) -> Result<CheckOut, SchemaError> {
    Ok(CheckOut {
        at: m.timestamp(k::AT)?,
        by: m.parse(k::BY)?,
        note: m.string(k::NOTE)?,
    })
}

fn read_training<R: ReadDoc>(m: &MapView<'_, R>) -> Result<Training, SchemaError> {
    Ok(Training {
        at: m.timestamp(k::AT)?,
        by: m.parse(k::BY)?,
        trainees: m.list(k::TRAINEES)?.strings()?,
        topics: m.string(k::TOPICS)?,
    })
}

fn read_handover<R: ReadDoc>(m: &MapView<'_, R>) -> Result<Handover, SchemaError> {
    Ok(Handover {
        items: m.string(k::ITEMS)?,
        reason: m.string(k::REASON)?,
        promised_completion: m.opt_timestamp(k::PROMISED_COMPLETION)?,
        taken_at: m.timestamp(k::TAKEN_AT)?,
        technician: m.parse(k::TECHNICIAN)?,
        customer_signer: m.string(k::CUSTOMER_SIGNER)?,
    })
}

fn read_acknowledgement<R: ReadDoc>(m: &MapView<'_, R>) -> Result<Acknowledgement, SchemaError> {
    let survey = m.map(k::SURVEY)?;
    Ok(Acknowledgement {
        signer_name: m.string(k::SIGNER_NAME)?,
        signature: read_signature(&m.map(k::SIGNATURE)?)?,
        signed_at: m.timestamp(k::SIGNED_AT)?,
        survey: Survey {
            attitude: survey.opt_int(k::ATTITUDE)?,
            skill: survey.opt_int(k::SKILL)?,
            punctuality: survey.opt_int(k::PUNCTUALITY)?,
            service_items: survey.opt_int(k::SERVICE_ITEMS)?,
            suggestions: survey.string(k::SUGGESTIONS)?,
        },
        device_id: m.parse(k::DEVICE_ID)?,
        job_digest: m.string(k::JOB_DIGEST)?,
        heads: m.list(k::HEADS)?.strings()?,
        device_signature: m.string(k::DEVICE_SIGNATURE)?,
    })
}

fn read_signature<R: ReadDoc>(m: &MapView<'_, R>) -> Result<SignatureMark, SchemaError> {
    match m.string(k::TYPE)?.as_str() {
        "strokes" => {
            let strokes = m
                .list(k::STROKES)?
                .lists()?
                .iter()
                .map(|stroke| {
                    stroke
                        .lists()?
                        .iter()
                        .map(|point| {
                            let xy = point.ints::<i32>()?;
                            <[i32; 2]>::try_from(xy).map_err(|xy| SchemaError::Invalid {
                                path: point.path().to_owned(),
                                reason: format!("a point is [x, y], found {} numbers", xy.len()),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SignatureMark::Strokes { strokes })
        }
        "image" => Ok(SignatureMark::Image {
            mime: m.string(k::MIME)?,
            data: m.bytes(k::DATA)?,
        }),
        other => Err(SchemaError::Invalid {
            path: m.path_of(k::TYPE),
            reason: unknown("signature type", other),
        }),
    }
}

fn read_completion<R: ReadDoc>(m: &MapView<'_, R>) -> Result<Completion, SchemaError> {
    Ok(Completion {
        at: m.timestamp(k::AT)?,
        by: m.parse(k::BY)?,
    })
}

pub(super) fn read_report<R: ReadDoc>(m: &MapView<'_, R>) -> Result<ReportOutcome, SchemaError> {
    match m.string(k::STATUS)?.as_str() {
        "signed" => Ok(ReportOutcome::Signed {
            at: m.timestamp(k::AT)?,
            report_id: m.string(k::REPORT_ID)?,
            digest: m.string(k::DIGEST)?,
            supersedes: m.opt_string(k::SUPERSEDES)?,
        }),
        "refused" => Ok(ReportOutcome::Refused {
            at: m.timestamp(k::AT)?,
            reasons: m
                .list(k::REASONS)?
                .maps()?
                .iter()
                .map(|r| {
                    Ok(RefusalReason {
                        rule: r.string(k::RULE)?,
                        code: r.string(k::CODE)?,
                        message: r.string(k::MESSAGE)?,
                    })
                })
                .collect::<Result<_, SchemaError>>()?,
        }),
        other => Err(SchemaError::Invalid {
            path: m.path_of(k::STATUS),
            reason: unknown("report status", other),
        }),
    }
}

fn read_timeline_event<R: ReadDoc>(m: &MapView<'_, R>) -> Result<TimelineEvent, SchemaError> {
    Ok(TimelineEvent {
        at: m.timestamp(k::AT)?,
        actor: m.string(k::ACTOR)?,
        kind: m.string(k::KIND)?,
        text: m.string(k::TEXT)?,
    })
}
