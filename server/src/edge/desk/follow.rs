//! The desk's records follow the job (issue 18): an edge worker reads each job the hub
//! reports durably changed and brings the desk's records up to what the technician's device
//! recorded, so the desk does not re-enter it by hand.
//!
//! - R2 arrival: the job's `visit.arrival` becomes the request's arrival once the device's
//!   change reaches the server, unless the desk corrected it (with a reason, kept in the
//!   request). An arrival later than the server's receipt time by more than
//!   `desk::ARRIVAL_TOLERANCE_MS` is refused and shown on the request
//!   (`arrival_refused`, code `arrival_in_future`).
//! - R2 reply: the technician's contact (an appointment the device recorded, R3, or the
//!   arrival on site) answers the customer, at the time the server received it, if nothing
//!   answered earlier. The desk's reply and an appointment the desk agreed (dispatch or
//!   `PUT /api/jobs/{id}/appointment`) are recorded by those endpoints ([`super::intake::keep_first_reply`]).
//! - R4: a check-out makes the job served, so later jobs on the same product compare with
//!   it (`JobDesk::checked_out_at`).
//! - A signed report marks the request served ([`super::intake::request_served`], called by the signer
//!   through `dispatch::on_report_signed`): off every due list.
//!
//! A job is read only while its report is not signed (after that the signer has recorded
//! everything). When it starts, and after its feed lagged, the worker looks at every job
//! changed after its watermark (`sync::progress`; not every stored job: issue 17), so a
//! change stored while it was not listening is still taken (at that later receipt time).

use std::sync::Arc;

use fieldsync_shared::desk::{LateCause, ReplySource, check_arrival, replaces_reply};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::Job;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::time::Timestamp;

use super::dispatch::JobDesk;
use super::intake::{Arrival, ArrivalSource, RefusedArrival, Reply, ServiceRequest};
use super::records;
use crate::edge::Edge;
use crate::http::error::ApiError;
use crate::http::wire::Instant;
use crate::sync::hub::ApprovalsChange;
use crate::sync::progress::{self, Follower};

/// The edge worker: looks at every job changed since it last ran, then follows the hub's
/// durable changes until the hub stops.
pub async fn run(state: Arc<Edge>) {
    // Subscribed before the first look, so no change made during it is missed.
    let feed = state.node.hub.subscribe_approvals();
    let store = Arc::clone(&state.node.store);
    progress::drive(
        &Follow(&state),
        store,
        state.node.metrics.clone(),
        feed,
        || {},
    )
    .await;
}

/// The follower as `sync::progress` drives it.
struct Follow<'a>(&'a Edge);

impl Follower for Follow<'_> {
    const NAME: &'static str = "desk_follow";

    async fn read(&self, doc: DocumentId) -> bool {
        if self.0.node.registry_read().job(&doc).is_none() {
            return true;
        }
        match follow_job(self.0, doc).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%doc, code = e.code, error = %e.message, "desk cannot follow a job");
                false
            }
        }
    }

    async fn change(&self, change: ApprovalsChange) -> bool {
        self.read(change.doc).await
    }
}

/// Brings the desk's records of one job up to its stored document.
pub async fn follow_job(state: &Edge, doc: DocumentId) -> Result<(), ApiError> {
    let job_id = doc.to_string();
    let Some(desk) = records::load::<JobDesk>(state, &job_id).await? else {
        return Ok(());
    };
    if desk.value.report_id.is_some() {
        return Ok(());
    }
    let Some(stored) = state
        .node
        .load_document(doc)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
    else {
        return Ok(());
    };
    let job = match read_job(&stored) {
        Ok(job) => job,
        Err(e) => {
            // A device wrote it; the signer will refuse it with the reasons. Nothing to take.
            tracing::debug!(%doc, error = %e, "desk leaves an unreadable job alone");
            return Ok(());
        }
    };
    let received = state.node.clock.now();
    if let Some(out) = job.visit.check_out.as_ref().map(|c| Instant(c.at)) {
        records::update::<JobDesk>(state, &job_id, |d| {
            let changed = d.checked_out_at != Some(out);
            d.checked_out_at = Some(out);
            changed
        })
        .await?;
    }
    if let Some(request) = &desk.value.request_id {
        let desk_appointment = desk.value.appointment.as_ref().map(|a| a.at.0);
        records::update::<ServiceRequest>(state, request, |r| {
            take_from_job(r, &job, desk_appointment, received)
        })
        .await?;
    }
    Ok(())
}

/// R2: what the request takes from the job as received at `received`; true if it changed.
/// `desk_appointment` is the appointment the desk agreed (the job carries it too): only a
/// different one is the technician's own contact.
fn take_from_job(
    request: &mut ServiceRequest,
    job: &Job,
    desk_appointment: Option<Timestamp>,
    received: Timestamp,
) -> bool {
    let mut changed = false;
    let technician = job.technicians.first().cloned();
    let mut arrived = false;
    if let (Some(at), Some(technician)) = (job.visit.arrival, technician.clone()) {
        let corrected = !request.arrival_corrections.is_empty();
        let same = request.arrival.as_ref().is_some_and(|a| a.at.0 == at);
        arrived = request.arrival.is_some();
        if !corrected && !same {
            match check_arrival(at, received) {
                Ok(()) => {
                    let late = request.requested_arrival.is_some_and(|asked| at > asked.0);
                    // A cause the desk recorded for the same lateness stays.
                    let (cause, note) = match &request.arrival {
                        Some(a) if a.late == late => (a.cause, a.note.clone()),
                        _ => (None, String::new()),
                    };
                    request.arrival = Some(Arrival {
                        technician,
                        at: Instant(at),
                        late,
                        cause,
                        violation: cause.is_some_and(LateCause::is_violation),
                        note,
                        source: ArrivalSource::Device,
                        received_at: Some(Instant(received)),
                    });
                    request.arrival_refused = None;
                    arrived = true;
                    changed = true;
                }
                Err(e) => {
                    let already = request
                        .arrival_refused
                        .as_ref()
                        .is_some_and(|r| r.at.0 == at);
                    if !already {
                        request.arrival_refused = Some(RefusedArrival {
                            at: Instant(at),
                            received_at: Instant(received),
                            code: e.code().to_owned(),
                            message: e.to_string(),
                        });
                        changed = true;
                    }
                }
            }
        }
    }
    let own_appointment = job
        .visit
        .appointment
        .filter(|at| Some(*at) != desk_appointment);
    let contact = match (own_appointment, arrived) {
        (Some(at), _) => Some(format!(
            "the technician agreed an appointment for {at} with the customer (R3)"
        )),
        (None, true) => Some("the technician arrived on site".to_owned()),
        (None, false) => None,
    };
    if let (Some(text), Some(technician)) = (contact, technician)
        && replaces_reply(request.reply.as_ref().map(|r| r.at.0), received)
    {
        request.reply = Some(Reply {
            at: Instant(received),
            by: technician.to_string(),
            text,
            source: ReplySource::TechnicianContact,
        });
        changed = true;
    }
    changed
}
