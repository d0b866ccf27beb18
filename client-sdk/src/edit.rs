//! Typed job edits, applied to the engine's documents.
//!
//! The engine holds each document as an [`Automerge`] and changes it through a closure; the
//! typed edits of `shared` ([`JobDoc`]) are written against [`AutoCommit`]. [`edit_automerge`]
//! bridges the two: the edit runs on an `AutoCommit` copy with the device's actor, and only its
//! new changes are loaded back into the engine's document.

use automerge::{ActorId, AutoCommit, Automerge};
use fieldsync_shared::job::doc::{EditError, JobDoc, PartDraft, PartUpdate};
use fieldsync_shared::job::{
    BillingMode, CheckOut, Completion, Handover, Labour, PartLineId, SafetyBriefing, TimelineEvent,
    Training, Travel,
};
use fieldsync_shared::time::Timestamp;

/// One typed change to a job. Each maps to one typed edit of [`JobDoc`] (one automerge change
/// with a message saying what a person did); several given together are stored together.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEdit {
    /// R3: the appointment agreed with the customer (`None` clears it).
    Appointment(Option<Timestamp>),
    /// R2: arrival on site (`None` clears it).
    Arrival(Option<Timestamp>),
    /// R32: the site safety briefing.
    SafetyBriefing(SafetyBriefing),
    /// R16: the training given to the customer's staff (installation and commissioning jobs
    /// cannot be completed without it).
    Training(Training),
    /// R7: the fault cause (`None` clears it).
    FaultCause(Option<String>),
    /// R4, R27: the fault category.
    FaultCategory(Option<String>),
    /// R7: the solution (`None` clears it).
    Solution(Option<String>),
    /// R7, R10, R18: a part line, with an id chosen up front so the caller knows it.
    AddPart {
        id: PartLineId,
        draft: PartDraft,
    },
    SetPartQuantity {
        id: PartLineId,
        quantity: u32,
    },
    /// Changes some fields of a part line and leaves the others.
    UpdatePart {
        id: PartLineId,
        update: PartUpdate,
    },
    RemovePart(PartLineId),
    Labour(Labour),
    Travel(Travel),
    /// R10: warranty or billable.
    BillingMode(BillingMode),
    /// R10: the invoice of billable work.
    InvoiceNumber(Option<String>),
    /// R5: a product taken back, with the hand-over both sides signed.
    Handover(Handover),
    /// R7: the customer's opinion (`None` clears it).
    CustomerOpinion(Option<String>),
    /// R11: reported back to the desk before leaving the site.
    CheckOut(CheckOut),
    /// Replaces the free notes (as the smallest text edit, so concurrent note edits merge).
    Notes(String),
    /// Appends to the free notes.
    AppendNotes(String),
    Timeline(TimelineEvent),
    /// Asks the edge server to finalise the job (prefer `Device::request_completion`, which
    /// checks the job first).
    RequestCompletion(Completion),
    /// Withdraws the completion request.
    Reopen,
    /// Drops the customer acknowledgement (e.g. before taking it again).
    ClearAcknowledgement,
}

impl JobEdit {
    /// Applies the edit to a job document.
    pub fn apply(&self, doc: &mut JobDoc) -> Result<(), EditError> {
        match self {
            JobEdit::Appointment(at) => doc.set_appointment(*at),
            JobEdit::Arrival(at) => doc.set_arrival(*at),
            JobEdit::SafetyBriefing(b) => doc.record_safety_briefing(b),
            JobEdit::Training(t) => doc.record_training(t),
            JobEdit::FaultCause(c) => doc.set_fault_cause(c.as_deref()),
            JobEdit::FaultCategory(c) => doc.set_fault_category(c.as_deref()),
            JobEdit::Solution(s) => doc.set_solution(s.as_deref()),
            JobEdit::AddPart { id, draft } => doc.add_part_with_id(id.clone(), draft),
            JobEdit::SetPartQuantity { id, quantity } => doc.set_part_quantity(id, *quantity),
            JobEdit::UpdatePart { id, update } => doc.update_part(id, update),
            JobEdit::RemovePart(id) => doc.remove_part(id),
            JobEdit::Labour(l) => doc.set_labour(*l),
            JobEdit::Travel(t) => doc.set_travel(*t),
            JobEdit::BillingMode(m) => doc.set_billing_mode(*m),
            JobEdit::InvoiceNumber(n) => doc.set_invoice_number(n.as_deref()),
            JobEdit::Handover(h) => doc.record_handover(h),
            JobEdit::CustomerOpinion(o) => doc.set_customer_opinion(o.as_deref()),
            JobEdit::CheckOut(c) => doc.check_out(c),
            JobEdit::Notes(n) => doc.set_notes(n),
            JobEdit::AppendNotes(n) => {
                let len = doc.read()?.notes.chars().count();
                doc.splice_notes(len, 0, n)
            }
            JobEdit::Timeline(e) => doc.add_timeline_event(e),
            JobEdit::RequestCompletion(c) => doc.request_completion(c),
            JobEdit::Reopen => doc.clear_completion(),
            JobEdit::ClearAcknowledgement => doc.clear_acknowledgement(),
        }
    }
}

/// Runs `f` on an [`AutoCommit`] copy of `doc` written by `actor`, then brings the copy's new
/// changes into `doc`. On error `doc` is unchanged.
///
/// The actor is the device's (one per store), so a device's changes form one sequence rather
/// than a fresh actor per edit, which would grow every document's actor table.
pub fn edit_automerge<T, E>(
    doc: &mut Automerge,
    actor: &ActorId,
    f: impl FnOnce(&mut AutoCommit) -> Result<T, E>,
) -> Result<T, EditFailure<E>> {
    let heads = doc.get_heads();
    let mut copy = AutoCommit::load(&doc.save())
        .map_err(|e| EditFailure::Automerge(e.to_string()))?
        .with_actor(actor.clone());
    let value = f(&mut copy).map_err(EditFailure::Edit)?;
    let new = copy.save_after(&heads);
    doc.load_incremental(&new)
        .map_err(|e| EditFailure::Automerge(e.to_string()))?;
    Ok(value)
}

/// Why [`edit_automerge`] failed.
#[derive(Debug)]
pub enum EditFailure<E> {
    /// The edit itself refused.
    Edit(E),
    /// Automerge could not copy or merge the document (a bug or a damaged document).
    Automerge(String),
}
