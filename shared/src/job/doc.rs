//! The job as an automerge document: create it, read it strictly, edit it with typed methods,
//! and list the fields two people set differently.
//!
//! Hand-written rather than derived (autosurgeon) because the merge behaviour depends on the
//! layout and must be chosen field by field (DESIGN.md, "Documents"):
//! - The creator writes every nested map and list, and the notes text, up front
//!   ([`create_job`]). Later edits only set scalars or insert into those existing objects, so
//!   two replicas never create the same nested object concurrently (automerge would keep one
//!   and hide everything written into the other).
//! - Records that are captured in one go (safety briefing, training, check-out, hand-over,
//!   acknowledgement, completion, report outcome) are written whole as a fresh map. Two people
//!   recording one concurrently is a conflict the desk should see, not a field-by-field blend
//!   of two signatures.
//! - Parts used are a list of maps, each with a stable [`PartLineId`], so two technicians
//!   adding parts offline keep both and an edit addresses the same line on every replica.
//! - The R7 statements (fault cause, solution, customer opinion) are scalar strings: two
//!   people writing different causes is a disagreement to show ([`conflicts`]), not text to
//!   interleave. Only the free notes are automerge text, merged character by character.
//!
//! Reading never trusts the document, since a device can write anything into a document it can
//! reach: every missing field or wrong type is a [`SchemaError`] naming its path, and nothing
//! panics. A document from a newer schema is refused for reading and editing.

mod attachments;
mod coherence;
mod competing;
mod expenses;
pub(crate) mod read;
mod schema;
#[cfg(test)]
mod tests;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, Prop, ROOT,
    ReadDoc, ScalarValue, Value,
};

use self::read::{Reader, is_scalar, join, wrong};
use self::schema::{int, k, money, string, ts};
use crate::ids::TechnicianId;
use crate::job::model::*;
use crate::time::{Money, Timestamp};

pub use self::coherence::{
    Chosen, ChosenError, PART_FIELDS, RESOLUTIONS, Resolution, ResolutionRecord, Unresolved, WORK,
    WORK_FIELDS, current_part, current_work, duplicate_group, init_resolutions, part_group,
    resolutions, unresolved,
};
pub use self::competing::{
    AUTHOR_TRAILER, Competing, FieldValues, LineAdded, Written, authored, competing,
};
pub(crate) use self::schema::check_version;

/// Why a document cannot be read as a job (or an assignment index).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// The document was written by a newer schema; this code must not guess at its layout.
    #[error("schema version {found} is newer than {supported}, the newest this code reads")]
    NewerSchema { found: u64, supported: u64 },
    #[error("the document does not hold the requested heads (missing {missing:?})")]
    UnknownHeads { missing: Vec<ChangeHash> },
    /// Automerge refused the read (boxed: the error is large and reads are the common path).
    #[error("{path}: {source}")]
    Automerge {
        path: String,
        #[source]
        source: Box<AutomergeError>,
    },
}

impl SchemaError {
    /// The path of the offending field (`visit.arrival`, `parts[2].quantity`), if the error
    /// is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            SchemaError::Missing { path }
            | SchemaError::WrongType { path, .. }
            | SchemaError::Invalid { path, .. }
            | SchemaError::Automerge { path, .. } => Some(path),
            SchemaError::NewerSchema { .. } | SchemaError::UnknownHeads { .. } => None,
        }
    }
}

/// Why an edit was not applied. A failed edit leaves the document unchanged.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The document is not a job this code can edit (wrong shape or a newer schema).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("no part line with id {:?}", .0.0)]
    UnknownPart(PartLineId),
    #[error("a part line with id {:?} already exists", .0.0)]
    DuplicatePart(PartLineId),
    #[error("a part line id must not be empty")]
    EmptyPartId,
    #[error("notes hold {len} characters; cannot delete {delete} at {pos}")]
    NotesOutOfRange {
        pos: usize,
        delete: usize,
        len: usize,
    },
    /// A resolution named a group that is coherent: there is nothing to decide (issue 15).
    #[error("nothing to resolve in {0}: its fields agree")]
    NothingToResolve(String),
    /// A resolution that cannot be applied as given.
    #[error("{0}")]
    InvalidResolution(String),
    #[error(transparent)]
    Automerge(Box<AutomergeError>),
}

impl From<AutomergeError> for EditError {
    fn from(e: AutomergeError) -> Self {
        EditError::Automerge(Box::new(e))
    }
}

/// One field that replicas set concurrently to different values.
///
/// Automerge keeps every concurrent value and picks the same winner everywhere; the desk is
/// shown all of them so that a disagreement is never hidden (DESIGN.md, "Documents").
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldConflict {
    /// Where, e.g. `diagnosis.fault_cause` or `parts[id=ab12].quantity`.
    pub path: String,
    /// Every distinct competing value as JSON (the model's serde form), the winner first.
    pub values: Vec<serde_json::Value>,
}

/// A part line to add: everything but the id, which the document assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct PartDraft {
    pub part_number: String,
    pub name: String,
    pub specification: String,
    pub quantity: u32,
    pub unit_price: Money,
    /// R10/R18: replaced free under warranty.
    pub warranty: bool,
}

/// The fields of a part line to change; `None` leaves a field as it is, so two people
/// changing different fields of one line keep both changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartUpdate {
    pub part_number: Option<String>,
    pub name: Option<String>,
    pub specification: Option<String>,
    pub quantity: Option<u32>,
    pub unit_price: Option<Money>,
    pub warranty: Option<bool>,
}

/// Writes a new job document: one change holding the whole job, with every nested object the
/// later edits need.
///
/// The document is read back before it is returned, so a job that could not be read again
/// (two part lines with one id, an empty part line id) is refused here rather than stored.
pub fn create_job(job: &Job, actor: Option<ActorId>) -> Result<AutoCommit, EditError> {
    let mut doc = AutoCommit::new();
    if let Some(actor) = actor {
        doc.set_actor(actor);
    }
    schema::write_job(&mut doc, job)?;
    doc.commit_with(CommitOptions::default().with_message(format!("Create job {}", job.job_id)));
    read_job(&doc)?;
    Ok(doc)
}

/// Reads the job at the document's current state.
pub fn read_job<R: ReadDoc>(doc: &R) -> Result<Job, SchemaError> {
    schema::read_job(Reader::new(doc, None))
}

/// Whether the job carries a completion request that no report outcome answers yet (none, or
/// one older than the request). Two map lookups instead of a whole read: the server asks it of
/// every changed job to decide whether the report signer needs to look. A shape it cannot
/// read counts as pending, so the signer, which reads strictly, decides.
pub fn completion_pending<R: ReadDoc>(doc: &R) -> bool {
    fn at<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<i64>, ()> {
        match doc.get(automerge::ROOT, key) {
            Ok(None) => Ok(None),
            Ok(Some((automerge::Value::Object(automerge::ObjType::Map), map))) => {
                match doc.get(&map, k::AT) {
                    Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                        ScalarValue::Timestamp(ms) | ScalarValue::Int(ms) => Ok(Some(*ms)),
                        _ => Err(()),
                    },
                    _ => Err(()),
                }
            }
            // `null`: cleared (a reopened job has no completion).
            Ok(Some((automerge::Value::Scalar(s), _))) if s.is_null() => Ok(None),
            _ => Err(()),
        }
    }
    match (at(doc, k::COMPLETION), at(doc, k::REPORT)) {
        (Ok(None), _) => false,
        (Ok(Some(requested)), Ok(Some(answered))) => {
            answered < requested || refused_until_claims_decided(doc)
        }
        _ => true,
    }
}

/// R28: the job's report was refused only because travel expense claims waited, and the
/// desk has decided them all since (`approvals::claims_decided_since_refusal`). Reads the
/// report outcome and the approvals only when the outcome is a refusal.
fn refused_until_claims_decided<R: ReadDoc>(doc: &R) -> bool {
    let root = Reader::new(doc, None).root();
    let Ok(Some(report)) = root.opt_map(k::REPORT) else {
        return false;
    };
    if report.opt_string(k::STATUS).ok().flatten().as_deref() != Some("refused") {
        return false;
    }
    let (Ok(outcome), Ok(approvals)) = (
        schema::read_report(&report),
        crate::job::approvals::read_approvals(doc),
    ) else {
        return false;
    };
    crate::job::approvals::claims_decided_since_refusal(&outcome, &approvals)
}

/// Reads the job as it was at `heads` (e.g. the heads an acknowledgement was taken at).
pub fn read_job_at<R: ReadDoc>(doc: &R, heads: &[ChangeHash]) -> Result<Job, SchemaError> {
    check_heads(doc, heads)?;
    schema::read_job(Reader::new(doc, Some(heads)))
}

fn check_heads<R: ReadDoc>(doc: &R, heads: &[ChangeHash]) -> Result<(), SchemaError> {
    let missing: Vec<ChangeHash> = heads
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_none())
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::UnknownHeads { missing })
    }
}

/// Every field of the document that holds concurrent, differing values, in document order.
///
/// The walk is generic (any map key, any list element) so that it also shows disagreements in
/// fields this code does not know. List elements that are maps with an `id` are named by it
/// (`parts[id=…]`), others by index. Text is merged, never in conflict, and is not walked.
pub fn conflicts<R: ReadDoc>(doc: &R) -> Vec<FieldConflict> {
    let mut out = Vec::new();
    walk(
        &Reader::new(doc, None),
        &ROOT,
        ObjType::Map,
        "",
        0,
        &mut out,
    );
    out
}

/// [`conflicts`] as at `heads`; unknown heads give no conflicts.
pub fn conflicts_at<R: ReadDoc>(doc: &R, heads: &[ChangeHash]) -> Vec<FieldConflict> {
    let mut out = Vec::new();
    if check_heads(doc, heads).is_ok() {
        walk(
            &Reader::new(doc, Some(heads)),
            &ROOT,
            ObjType::Map,
            "",
            0,
            &mut out,
        );
    }
    out
}

fn walk<R: ReadDoc>(
    rd: &Reader<'_, R>,
    obj: &ObjId,
    typ: ObjType,
    path: &str,
    depth: usize,
    out: &mut Vec<FieldConflict>,
) {
    if depth > read::MAX_DEPTH {
        return;
    }
    match typ {
        ObjType::Map | ObjType::Table => {
            for key in rd.keys(obj) {
                let child = join(path, &key);
                visit(rd, obj, Prop::Map(key), &child, depth, out);
            }
        }
        ObjType::List => {
            for i in 0..rd.length(obj) {
                let child = element_path(rd, obj, i, path);
                visit(rd, obj, Prop::Seq(i), &child, depth, out);
            }
        }
        ObjType::Text => {}
    }
}

fn visit<R: ReadDoc>(
    rd: &Reader<'_, R>,
    obj: &ObjId,
    prop: Prop,
    path: &str,
    depth: usize,
    out: &mut Vec<FieldConflict>,
) {
    let Ok(winner) = rd.get(obj, prop.clone()) else {
        return;
    };
    let Some((winner, winner_id)) = winner else {
        return;
    };
    if let Ok(mut all) = rd.get_all(obj, prop)
        && all.len() > 1
    {
        // The winner first, then the others from the newest operation down, which is the same
        // order on every replica.
        all.retain(|(_, id)| *id != winner_id);
        all.sort_by(|a, b| b.1.cmp(&a.1));
        let mut values = vec![rd.json(&winner, &winner_id, depth)];
        for (v, id) in &all {
            let json = rd.json(v, id, depth);
            if !values.contains(&json) {
                values.push(json);
            }
        }
        if values.len() > 1 {
            out.push(FieldConflict {
                path: path.to_owned(),
                values,
            });
        }
    }
    if let Value::Object(typ) = winner {
        walk(rd, &winner_id, typ, path, depth + 1, out);
    }
}

/// `parts[id=ab12]` for a map element with a string id, else `timeline[3]`.
fn element_path<R: ReadDoc>(rd: &Reader<'_, R>, list: &ObjId, i: usize, path: &str) -> String {
    if let Ok(Some((Value::Object(ObjType::Map), elem))) = rd.get(list, i)
        && let Ok(Some((Value::Scalar(id), _))) = rd.get(&elem, k::ID)
        && let ScalarValue::Str(id) = id.as_ref()
    {
        return format!("{path}[id={id}]");
    }
    format!("{path}[{i}]")
}

/// A job document with typed edits. Each edit is one automerge change with a message saying
/// what a person did, so the history reads as the job's story; an edit that would change
/// nothing makes no change. Changes carry no wall-clock time (this core does not read the
/// clock): the instants that matter are fields of the job itself.
#[derive(Debug)]
pub struct JobDoc {
    doc: AutoCommit,
    /// Who makes the next changes and when (see [`JobDoc::stamp`]).
    stamp: Option<(String, Timestamp)>,
}

impl JobDoc {
    /// A new document holding `job` (see [`create_job`]), with a random actor.
    pub fn create(job: &Job) -> Result<Self, EditError> {
        Ok(Self {
            doc: create_job(job, None)?,
            stamp: None,
        })
    }

    /// A new document holding `job`, written by `actor`.
    pub fn create_with_actor(job: &Job, actor: ActorId) -> Result<Self, EditError> {
        Ok(Self {
            doc: create_job(job, Some(actor))?,
            stamp: None,
        })
    }

    /// Loads saved bytes. The content is not checked here: [`Self::read`] does that.
    pub fn load(bytes: &[u8]) -> Result<Self, AutomergeError> {
        Ok(Self {
            doc: AutoCommit::load(bytes)?,
            stamp: None,
        })
    }

    /// Wraps a document held as [`Automerge`], keeping its actor.
    pub fn from_automerge(doc: Automerge) -> Result<Self, AutomergeError> {
        // AutoCommit has no constructor from Automerge; a save and load round trip is the
        // supported way across.
        let actor = doc.get_actor().clone();
        let mut inner = AutoCommit::load(&doc.save())?;
        inner.set_actor(actor);
        Ok(Self {
            doc: inner,
            stamp: None,
        })
    }

    /// Wraps an [`AutoCommit`] (e.g. one made by [`create_job`]).
    pub fn from_autocommit(doc: AutoCommit) -> Self {
        Self { doc, stamp: None }
    }

    /// Signs the changes this value makes from now on with who makes them (`by`: a technician
    /// id, `desk:<person>`) and when (`at`, the writer's clock: this core reads none): the
    /// change's message gets the trailer `by: <who>` and its time `at` in seconds, so a
    /// reader of the history (the desk's conflict view, [`competing`]) can say who wrote a
    /// value and when. Advisory, like automerge's change time: the server's write check is
    /// what holds a device to its technician's paths.
    pub fn stamp(&mut self, by: &str, at: Timestamp) {
        self.stamp = Some((by.to_owned(), at));
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// A copy with a fresh random actor, as another device would hold it.
    pub fn fork(&mut self) -> Self {
        Self {
            doc: self.doc.fork(),
            stamp: None,
        }
    }

    /// Brings in every change `other` has that this document lacks.
    pub fn merge(&mut self, other: &mut JobDoc) -> Result<Vec<ChangeHash>, AutomergeError> {
        self.doc.merge(&mut other.doc)
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    pub fn inner(&self) -> &AutoCommit {
        &self.doc
    }

    pub fn inner_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    pub fn into_inner(self) -> AutoCommit {
        self.doc
    }

    pub fn read(&self) -> Result<Job, SchemaError> {
        read_job(&self.doc)
    }

    pub fn read_at(&self, heads: &[ChangeHash]) -> Result<Job, SchemaError> {
        read_job_at(&self.doc, heads)
    }

    pub fn conflicts(&self) -> Vec<FieldConflict> {
        conflicts(&self.doc)
    }

    /// R3: the appointment agreed with the customer (`None` clears it).
    pub fn set_appointment(&mut self, at: Option<Timestamp>) -> Result<(), EditError> {
        self.set_in(k::VISIT, k::APPOINTMENT, at.map(ts), "(R3)")
    }

    /// R2: when the technician arrived on site (`None` clears it).
    pub fn set_arrival(&mut self, at: Option<Timestamp>) -> Result<(), EditError> {
        self.set_in(k::VISIT, k::ARRIVAL, at.map(ts), "(R2)")
    }

    /// R32: the site safety briefing, recorded before entering a production area.
    pub fn record_safety_briefing(&mut self, briefing: &SafetyBriefing) -> Result<(), EditError> {
        self.edit("Record visit.safety_briefing (R32)", |d| {
            let visit = root_map(d, k::VISIT)?;
            schema::put_record(d, &visit, k::SAFETY_BRIEFING, |d, m| {
                schema::write_safety_briefing(d, m, briefing)
            })?;
            Ok(())
        })
    }

    /// R16: the training given to the customer's staff, written whole (who was trained, what
    /// was covered, when, by whom). Recorded again, it replaces the earlier record; two
    /// recorded concurrently are a conflict the desk sees, like other records.
    pub fn record_training(&mut self, training: &Training) -> Result<(), EditError> {
        self.edit("Record visit.training (R16)", |d| {
            let visit = root_map(d, k::VISIT)?;
            schema::put_record(d, &visit, k::TRAINING, |d, m| {
                schema::write_training(d, m, training)
            })?;
            Ok(())
        })
    }

    /// R11: the technician reported back to the desk before leaving the site.
    pub fn check_out(&mut self, check_out: &CheckOut) -> Result<(), EditError> {
        self.edit("Record visit.check_out (R11)", |d| {
            let visit = root_map(d, k::VISIT)?;
            schema::put_record(d, &visit, k::CHECK_OUT, |d, m| {
                schema::write_check_out(d, m, check_out)
            })?;
            Ok(())
        })
    }

    /// R7: the fault cause (`None` clears it).
    pub fn set_fault_cause(&mut self, cause: Option<&str>) -> Result<(), EditError> {
        self.set_in(k::DIAGNOSIS, k::FAULT_CAUSE, cause.map(string), "(R7)")
    }

    /// R4, R27: the fault category that repeat repairs and quality analysis group by.
    pub fn set_fault_category(&mut self, category: Option<&str>) -> Result<(), EditError> {
        self.set_in(
            k::DIAGNOSIS,
            k::FAULT_CATEGORY,
            category.map(string),
            "(R4, R27)",
        )
    }

    /// R7: the solution (`None` clears it).
    pub fn set_solution(&mut self, solution: Option<&str>) -> Result<(), EditError> {
        self.set_in(k::DIAGNOSIS, k::SOLUTION, solution.map(string), "(R7)")
    }

    /// R7, R10, R18: adds a part line at the end with a fresh random id, and returns the id.
    pub fn add_part(&mut self, draft: &PartDraft) -> Result<PartLineId, EditError> {
        let id = PartLineId::random();
        self.add_part_with_id(id.clone(), draft)?;
        Ok(id)
    }

    /// Adds a part line with a chosen id (e.g. one the device allocated earlier); an id that is
    /// already in the document is refused.
    pub fn add_part_with_id(&mut self, id: PartLineId, draft: &PartDraft) -> Result<(), EditError> {
        if id.0.is_empty() {
            return Err(EditError::EmptyPartId);
        }
        let message = format!("Add part {} ({}) (R7)", draft.name, id.0);
        self.edit(message, |d| {
            match find_part(d, &id) {
                Ok(_) => return Err(EditError::DuplicatePart(id)),
                Err(EditError::UnknownPart(_)) => {}
                Err(e) => return Err(e),
            }
            let parts = Reader::new(&*d, None).root().list(k::PARTS)?;
            let (list, len) = (parts.obj().clone(), parts.len());
            let part = PartUsed {
                id,
                part_number: draft.part_number.clone(),
                name: draft.name.clone(),
                specification: draft.specification.clone(),
                quantity: draft.quantity,
                unit_price: draft.unit_price,
                warranty: draft.warranty,
            };
            schema::push_record(d, &list, len, |d, m| schema::write_part(d, m, &part))?;
            Ok(())
        })
    }

    pub fn set_part_quantity(&mut self, id: &PartLineId, quantity: u32) -> Result<(), EditError> {
        let message = format!("Set quantity of part {} to {quantity}", id.0);
        self.edit(message, |d| {
            let (_, _, part) = find_part(d, id)?;
            set_field(d, &part, k::QUANTITY, Some(int(quantity)))
        })
    }

    /// Changes the given fields of a part line, leaving the others as they are.
    pub fn update_part(&mut self, id: &PartLineId, update: &PartUpdate) -> Result<(), EditError> {
        self.edit(format!("Update part {}", id.0), |d| {
            let (_, _, part) = find_part(d, id)?;
            let fields = [
                (k::PART_NUMBER, update.part_number.as_deref().map(string)),
                (k::NAME, update.name.as_deref().map(string)),
                (
                    k::SPECIFICATION,
                    update.specification.as_deref().map(string),
                ),
                (k::QUANTITY, update.quantity.map(int)),
                (k::UNIT_PRICE, update.unit_price.map(money)),
                (k::WARRANTY, update.warranty.map(ScalarValue::Boolean)),
            ];
            for (key, value) in fields {
                if value.is_some() {
                    set_field(d, &part, key, value)?;
                }
            }
            Ok(())
        })
    }

    /// Removes a part line. A concurrent change to the removed line is lost with it: the line
    /// is gone on every replica once both changes meet.
    pub fn remove_part(&mut self, id: &PartLineId) -> Result<(), EditError> {
        self.edit(format!("Remove part {}", id.0), |d| {
            let (list, index, _) = find_part(d, id)?;
            d.delete(&list, index)?;
            Ok(())
        })
    }

    pub fn set_labour(&mut self, labour: Labour) -> Result<(), EditError> {
        self.edit("Set labour", |d| {
            let m = root_map(d, k::LABOUR)?;
            set_field(d, &m, k::MINUTES, Some(int(labour.minutes)))?;
            set_field(d, &m, k::RATE_PER_HOUR, Some(money(labour.rate_per_hour)))
        })
    }

    pub fn set_travel(&mut self, travel: Travel) -> Result<(), EditError> {
        self.edit("Set travel", |d| {
            let m = root_map(d, k::TRAVEL)?;
            set_field(d, &m, k::DISTANCE_M, Some(int(travel.distance_m)))?;
            set_field(d, &m, k::COST, Some(money(travel.cost)))
        })
    }

    /// R10: warranty (free) or billable.
    pub fn set_billing_mode(&mut self, mode: BillingMode) -> Result<(), EditError> {
        self.set_in(k::BILLING, k::MODE, Some(string(mode.as_str())), "(R10)")
    }

    /// R10: the invoice of billable work (`None` clears it).
    pub fn set_invoice_number(&mut self, invoice: Option<&str>) -> Result<(), EditError> {
        self.set_in(k::BILLING, k::INVOICE_NUMBER, invoice.map(string), "(R10)")
    }

    /// R5: a product taken back, with the hand-over both sides signed.
    pub fn record_handover(&mut self, handover: &Handover) -> Result<(), EditError> {
        self.edit("Record handover (R5)", |d| {
            schema::put_record(d, &ROOT, k::HANDOVER, |d, m| {
                schema::write_handover(d, m, handover)
            })?;
            Ok(())
        })
    }

    /// R7: the customer's opinion of the service (`None` clears it).
    pub fn set_customer_opinion(&mut self, opinion: Option<&str>) -> Result<(), EditError> {
        self.set_in_root(k::CUSTOMER_OPINION, opinion.map(string), "(R7)")
    }

    /// R8, R9: the customer's signed acceptance with the satisfaction survey.
    pub fn set_acknowledgement(&mut self, ack: &Acknowledgement) -> Result<(), EditError> {
        self.edit("Record acknowledgement (R8, R9)", |d| {
            schema::put_record(d, &ROOT, k::ACKNOWLEDGEMENT, |d, m| {
                schema::write_acknowledgement(d, m, ack)
            })?;
            Ok(())
        })
    }

    /// Drops the acknowledgement, e.g. because the job changed after the customer signed.
    pub fn clear_acknowledgement(&mut self) -> Result<(), EditError> {
        self.set_in_root(k::ACKNOWLEDGEMENT, None, "(R8)")
    }

    /// Asks the edge server to finalise the job into a signed report.
    pub fn request_completion(&mut self, completion: &Completion) -> Result<(), EditError> {
        self.edit("Request completion", |d| {
            schema::put_record(d, &ROOT, k::COMPLETION, |d, m| {
                schema::write_completion(d, m, completion)
            })?;
            Ok(())
        })
    }

    /// Reopens the job: withdraws the completion request.
    pub fn clear_completion(&mut self) -> Result<(), EditError> {
        self.set_in_root(k::COMPLETION, None, "(reopen)")
    }

    /// The edge server's decision, written back so the device shows it.
    pub fn set_report_outcome(&mut self, outcome: &ReportOutcome) -> Result<(), EditError> {
        let message = match outcome {
            ReportOutcome::Signed { .. } => "Report signed",
            ReportOutcome::Refused { .. } => "Report refused",
        };
        self.edit(message, |d| {
            schema::put_record(d, &ROOT, k::REPORT, |d, m| {
                schema::write_report(d, m, outcome)
            })?;
            Ok(())
        })
    }

    /// Appends an entry to the timeline.
    pub fn add_timeline_event(&mut self, event: &TimelineEvent) -> Result<(), EditError> {
        self.edit(format!("Timeline: {}", event.kind), |d| {
            let list = Reader::new(&*d, None).root().list(k::TIMELINE)?;
            let (obj, len) = (list.obj().clone(), list.len());
            schema::push_record(d, &obj, len, |d, m| {
                schema::write_timeline_event(d, m, event)
            })?;
            Ok(())
        })
    }

    /// Replaces the notes, written as the smallest edit from the current text so that
    /// concurrent edits elsewhere in the notes are kept.
    pub fn set_notes(&mut self, notes: &str) -> Result<(), EditError> {
        self.edit("Edit notes", |d| {
            let text = notes_text(d)?;
            d.update_text(&text, notes)?;
            Ok(())
        })
    }

    /// Deletes `delete` characters at `pos` of the notes and inserts `insert` there, as typing
    /// does. Positions count Unicode code points.
    pub fn splice_notes(
        &mut self,
        pos: usize,
        delete: usize,
        insert: &str,
    ) -> Result<(), EditError> {
        self.edit("Edit notes", |d| {
            let text = notes_text(d)?;
            let len = d.length(&text);
            let in_range = pos.checked_add(delete).is_some_and(|end| end <= len);
            let del = isize::try_from(delete)
                .ok()
                .filter(|_| in_range)
                .ok_or(EditError::NotesOutOfRange { pos, delete, len })?;
            d.splice_text(&text, pos, del, insert)?;
            Ok(())
        })
    }

    /// Sets the technicians recorded on the job, editing the list in place (only the entries
    /// that change are deleted or inserted) so a concurrent change to other entries is kept.
    pub fn set_technicians(&mut self, technicians: &[TechnicianId]) -> Result<(), EditError> {
        self.edit("Set technicians", |d| {
            let list = Reader::new(&*d, None).root().list(k::TECHNICIANS)?;
            let obj = list.obj().clone();
            let mut current = list.strings()?;
            let desired: Vec<&str> = schema::dedup(technicians)
                .into_iter()
                .map(TechnicianId::as_str)
                .collect();
            // First drop what is not wanted, and repeats, from the end so indexes stay valid.
            let mut seen = std::collections::HashSet::new();
            let keep: Vec<bool> = current
                .iter()
                .map(|c| desired.contains(&c.as_str()) && seen.insert(c.clone()))
                .collect();
            for i in (0..current.len()).rev() {
                if !keep[i] {
                    d.delete(&obj, i)?;
                    current.remove(i);
                }
            }
            // Then insert what is missing, moving an entry only when the order asks for it.
            for (pos, want) in desired.iter().enumerate() {
                if current.get(pos).map(String::as_str) == Some(*want) {
                    continue;
                }
                if let Some(j) = current.iter().skip(pos).position(|c| c == want) {
                    d.delete(&obj, pos + j)?;
                    current.remove(pos + j);
                }
                d.insert(&obj, pos, *want)?;
                current.insert(pos, (*want).to_owned());
            }
            Ok(())
        })
    }

    /// Sets one scalar in a map at the root, as a commit named after its path.
    fn set_in(
        &mut self,
        map: &str,
        key: &str,
        value: Option<ScalarValue>,
        rule: &str,
    ) -> Result<(), EditError> {
        let verb = if value.is_some() { "Set" } else { "Clear" };
        self.edit(format!("{verb} {map}.{key} {rule}"), |d| {
            let obj = root_map(d, map)?;
            set_field(d, &obj, key, value)
        })
    }

    /// Sets (or removes) one value at the root.
    fn set_in_root(
        &mut self,
        key: &str,
        value: Option<ScalarValue>,
        rule: &str,
    ) -> Result<(), EditError> {
        let verb = if value.is_some() { "Set" } else { "Clear" };
        self.edit(format!("{verb} {key} {rule}"), |d| {
            set_field(d, &ROOT, key, value)
        })
    }

    /// Runs one edit as one change with `message`; on failure nothing of it stays.
    fn edit<T>(
        &mut self,
        message: impl Into<String>,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, EditError>,
    ) -> Result<T, EditError> {
        // Operations left open through `inner_mut` are committed on their own first, so they
        // are neither folded into this change nor rolled back with it.
        let message: String = message.into();
        self.doc.commit();
        check_version(&Reader::new(&self.doc, None).root(), JOB_SCHEMA_VERSION)?;
        match f(&mut self.doc) {
            Ok(v) => {
                let options = match &self.stamp {
                    Some((by, at)) => CommitOptions::default()
                        .with_message(authored(&message, by))
                        .with_time(at.as_millis().div_euclid(1000)),
                    None => CommitOptions::default().with_message(message),
                };
                self.doc.commit_with(options);
                Ok(v)
            }
            Err(e) => {
                self.doc.rollback();
                Err(e)
            }
        }
    }
}

fn root_map(d: &AutoCommit, key: &str) -> Result<ObjId, SchemaError> {
    Ok(Reader::new(d, None).root().map(key)?.obj().clone())
}

fn notes_text(d: &AutoCommit) -> Result<ObjId, SchemaError> {
    match d.get(ROOT, k::NOTES) {
        Ok(Some((Value::Object(ObjType::Text), id))) => Ok(id),
        Ok(Some((v, _))) => Err(wrong(k::NOTES, "text", read::value_kind(&v))),
        Ok(None) => Err(SchemaError::Missing {
            path: k::NOTES.to_owned(),
        }),
        Err(source) => Err(SchemaError::Automerge {
            path: k::NOTES.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// The list, index and map of the part line with `id`.
fn find_part(d: &AutoCommit, id: &PartLineId) -> Result<(ObjId, usize, ObjId), EditError> {
    let parts = Reader::new(d, None).root().list(k::PARTS)?;
    for (i, m) in parts.maps()?.iter().enumerate() {
        if m.opt_string(k::ID)?.as_deref() == Some(id.0.as_str()) {
            return Ok((parts.obj().clone(), i, m.obj().clone()));
        }
    }
    Err(EditError::UnknownPart(id.clone()))
}

/// Puts `value` under `key` (or deletes the key for `None`), skipping a write that would change
/// nothing.
///
/// Rewriting the value already there would add history and, when someone else writes the same
/// value concurrently, a conflict between equal values. A key already in conflict is always
/// written, even with the winner's value: that is how the desk resolves a disagreement.
fn set_field(
    d: &mut AutoCommit,
    obj: &ObjId,
    key: &str,
    value: Option<ScalarValue>,
) -> Result<(), EditError> {
    let current = d.get_all(obj, key)?;
    match value {
        None => {
            if !current.is_empty() {
                d.delete(obj, key)?;
            }
        }
        Some(v) => {
            let unchanged = matches!(current.as_slice(), [(cur, _)] if is_scalar(cur, &v));
            if !unchanged {
                d.put(obj, key, v)?;
            }
        }
    }
    Ok(())
}
