//! The branch's link to head office (issue 5; DESIGN.md, "Three tiers, one protocol").
//!
//! The branch dials head office as an automerge-repo client ([`Input::Dialed`]) whenever it
//! can, and keeps serving its devices when it cannot. What it offers is the outbox: every
//! signed report not yet confirmed delivered, as two documents, the report document
//! (`report_doc`) and the job document it reports on. A report is delivered once head office
//! confirmed holding the report document and a state of the job that includes the report's
//! heads ([`Effect::Delivered`](fieldsync_shared::sync::Effect::Delivered): head office
//! announces only stored heads). Delivery is then recorded in `meta`/[`DELIVERED`] and the
//! documents stop being offered. Everything else comes from durable state, so a dropped link
//! or a crash loses nothing: after either, the undelivered reports are offered again, and head
//! office keys its archive by report id, so nothing arrives twice.
//!
//! Dialling retries with exponential backoff (one second doubling to `retry_max`, with
//! jitter). The token is read from its file at every dial, so an operator renews it by
//! replacing the file. A problem only an operator can fix (no token file, a token for another
//! branch or expired, head office refusing the branch with 401/403) is logged once as an error
//! and checked again every `retry_max`, not warned about every second.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use automerge::{ChangeHash, ReadDoc};
use fieldsync_shared::complaint_doc::{ComplaintDoc, complaint_doc_id};
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::report::SignedReport;
use fieldsync_shared::report_doc::{DeviceAttestation, ReportDoc, report_doc_id};
use fieldsync_shared::sync::{ConnId, Input, LocalEdit, LocalEditError, Principal};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::config::Upstream;
use crate::edge::Edge;
use crate::edge::desk::complaints::{Complaint, publish};
use crate::edge::signer::REPORTS;
use crate::metrics::set_count;
use crate::sync::hub::{HubInput, Outbound};
use fieldsync_storage::RecordFilter;

/// `meta` namespace of reports head office confirmed: key report id, value the time (ms).
pub const DELIVERED: &str = "reports_delivered";
/// `meta` namespace of complaint documents head office confirmed: key document id, value the
/// complaint revision it holds (decimal).
pub const COMPLAINTS_DELIVERED: &str = "complaints_delivered";

/// Runs the link and the outbox until the server stops.
pub async fn run(state: Arc<Edge>, upstream: Upstream) {
    let link = tokio::spawn(dial_loop(Arc::clone(&state), upstream));
    outbox(state).await;
    link.abort();
}

// ---- the outbox ------------------------------------------------------------------------

struct Undelivered {
    job: DocumentId,
    report_doc: DocumentId,
    /// The job heads the report was signed at.
    heads: Vec<ChangeHash>,
    job_done: bool,
    report_done: bool,
}

#[derive(Default)]
struct Outbox {
    reports: HashMap<String, Undelivered>,
    /// How many undelivered reports or complaints need each offered document.
    offered: HashMap<DocumentId, usize>,
    /// Complaint documents with a revision head office has not confirmed.
    complaints: HashSet<DocumentId>,
}

impl Outbox {
    fn offer(&mut self, state: &Edge, doc: DocumentId) {
        let count = self.offered.entry(doc).or_default();
        *count += 1;
        if *count == 1 {
            state.node.hub.engine_input(Input::Subscribe { doc });
        }
    }

    fn withdraw(&mut self, state: &Edge, doc: DocumentId) {
        if let Some(count) = self.offered.get_mut(&doc) {
            *count -= 1;
            if *count == 0 {
                self.offered.remove(&doc);
                state.node.hub.engine_input(Input::Unsubscribe { doc });
            }
        }
    }

    /// Offers every document again (after missed notifications): fresh sessions bring fresh
    /// confirmations.
    fn reoffer(&self, state: &Edge) {
        for doc in self.offered.keys() {
            state
                .node
                .hub
                .engine_input(Input::Unsubscribe { doc: *doc });
            state.node.hub.engine_input(Input::Subscribe { doc: *doc });
        }
    }
}

async fn outbox(state: Arc<Edge>) {
    let mut signed = state.reports_signed.subscribe();
    let mut delivered = state.node.hub.subscribe_delivered();
    let mut outbox = Outbox::default();
    let mut complaints = state.complaints_published.subscribe();
    match undelivered_reports(&state).await {
        Ok(ids) => {
            for id in ids {
                add_report(&state, &mut outbox, &id).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the reports to deliver"),
    }
    match undelivered_complaints(&state).await {
        Ok(docs) => {
            for doc in docs {
                add_complaint(&state, &mut outbox, doc);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the complaints to deliver"),
    }
    set_gauge(&state, &outbox);
    loop {
        tokio::select! {
            doc = complaints.recv() => match doc {
                Ok(doc) => add_complaint(&state, &mut outbox, doc),
                Err(RecvError::Lagged(_)) => {
                    if let Ok(docs) = undelivered_complaints(&state).await {
                        for doc in docs {
                            add_complaint(&state, &mut outbox, doc);
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            id = signed.recv() => match id {
                Ok(id) => add_report(&state, &mut outbox, &id).await,
                Err(RecvError::Lagged(_)) => {
                    if let Ok(ids) = undelivered_reports(&state).await {
                        for id in ids {
                            add_report(&state, &mut outbox, &id).await;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            event = delivered.recv() => match event {
                Ok((doc, heads)) => {
                    if outbox.complaints.contains(&doc) {
                        confirm_complaint(&state, &mut outbox, doc, &heads).await;
                    }
                    confirm(&state, &mut outbox, doc, heads).await;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed delivery confirmations; offering again");
                    outbox.reoffer(&state);
                }
                Err(RecvError::Closed) => return,
            },
        }
        set_gauge(&state, &outbox);
    }
}

fn set_gauge(state: &Edge, outbox: &Outbox) {
    set_count(&state.metrics.upstream_undelivered, outbox.reports.len());
    set_count(
        &state.metrics.upstream_complaints_undelivered,
        outbox.complaints.len(),
    );
}

/// Complaint documents whose current revision head office has not confirmed. Brings each of
/// them up to its desk record first: a crash between storing a step and writing the document
/// leaves the document behind, and the record is the truth. Delivered ones are not loaded.
async fn undelivered_complaints(state: &Arc<Edge>) -> Result<Vec<DocumentId>, String> {
    let records = crate::edge::desk::records::list::<Complaint>(state, RecordFilter::default())
        .await
        .map_err(|e| e.to_string())?;
    let delivered: HashMap<String, u64> = {
        let store = Arc::clone(&state.node.store);
        tokio::task::spawn_blocking(move || store.meta_entries(COMPLAINTS_DELIVERED))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|(k, v)| Some((k, String::from_utf8(v).ok()?.parse().ok()?)))
            .collect()
    };
    let mut out = Vec::new();
    for stored in records {
        let doc = complaint_doc_id(&state.node.branch_id, &stored.value.id);
        let confirmed = delivered.get(&doc.to_string()).copied().unwrap_or(0);
        if confirmed >= stored.revision {
            // Head office confirmed this revision, so the document holds it: nothing to load.
            continue;
        }
        // Leaves a document already at this revision alone.
        publish(state, &stored.value, stored.revision).await?;
        out.push(doc);
    }
    Ok(out)
}

fn add_complaint(state: &Edge, outbox: &mut Outbox, doc: DocumentId) {
    if outbox.complaints.insert(doc) {
        outbox.offer(state, doc);
    }
}

/// Head office confirmed holding a complaint document at `heads`: when that is the document
/// as it is here, its revision is delivered.
async fn confirm_complaint(
    state: &Arc<Edge>,
    outbox: &mut Outbox,
    doc: DocumentId,
    heads: &[ChangeHash],
) {
    let Ok(Some(am)) = state.node.load_document(doc).await else {
        return;
    };
    let mut current = am.get_heads();
    current.sort();
    let mut confirmed = heads.to_vec();
    confirmed.sort();
    if current != confirmed {
        // Written again since: the next confirmation covers it.
        return;
    }
    let Ok(Some(complaint)) = ComplaintDoc::from_document(&am) else {
        return;
    };
    let revision = complaint.revision.to_string().into_bytes();
    if let Err(e) = state
        .node
        .store
        .put_meta(COMPLAINTS_DELIVERED, &doc.to_string(), revision)
        .await
    {
        tracing::error!(%doc, error = %e, "cannot record a complaint's delivery");
        return;
    }
    tracing::info!(
        complaint = complaint.complaint_id,
        revision = complaint.revision,
        "complaint delivered to head office"
    );
    outbox.complaints.remove(&doc);
    outbox.withdraw(state, doc);
}

/// Report ids signed here and not yet confirmed by head office.
async fn undelivered_reports(state: &Arc<Edge>) -> Result<Vec<String>, String> {
    let store = Arc::clone(&state.node.store);
    tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let done: std::collections::HashSet<String> = store
            .meta_entries(DELIVERED)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        Ok(store
            .meta_entries(REPORTS)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !done.contains(k))
            .collect())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Puts a stored report in the outbox, making its report document if it is missing (a crash
/// between storing the report and making the document).
async fn add_report(state: &Arc<Edge>, outbox: &mut Outbox, id: &str) {
    if outbox.reports.contains_key(id) {
        return;
    }
    let bytes = match state.node.store.meta(REPORTS, id) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(report = id, error = %e, "cannot read a signed report");
            return;
        }
    };
    let made = ensure_report_doc(state, &bytes).await;
    let (report, report_doc) = match made {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(report = id, error = %e, "cannot offer a report to head office");
            return;
        }
    };
    let heads: Vec<ChangeHash> = report
        .body
        .heads
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let job = report.body.job_id;
    outbox.reports.insert(
        id.to_owned(),
        Undelivered {
            job,
            report_doc,
            heads,
            job_done: false,
            report_done: false,
        },
    );
    outbox.offer(state, job);
    outbox.offer(state, report_doc);
}

/// Makes the report document of a stored report (once: its id derives from the report id).
pub async fn ensure_report_doc(
    state: &Edge,
    report_json: &[u8],
) -> Result<(SignedReport, DocumentId), String> {
    let report: SignedReport =
        serde_json::from_slice(report_json).map_err(|e| format!("stored report: {e}"))?;
    let doc_id = report_doc_id(&report.body.report_id)
        .ok_or_else(|| format!("report id {:?} is not 32 hex digits", report.body.report_id))?;
    let device_id = &report.body.acknowledgement.device_id;
    let record = state
        .node
        .registry_read()
        .device(device_id)
        .cloned()
        .ok_or_else(|| format!("device {device_id} is not enrolled here"))?;
    let attestation =
        DeviceAttestation::sign(record, &state.node.server_key).map_err(|e| e.to_string())?;
    let document = ReportDoc {
        report_json: report_json.to_vec(),
        attestation,
    }
    .to_document()
    .map_err(|e| e.to_string())?;
    match state
        .node
        .hub
        .edit(doc_id, LocalEdit::Create(Box::new(document)))
        .await
    {
        Ok(_) | Err(LocalEditError::Exists(_)) => Ok((report, doc_id)),
        Err(e) => Err(format!("report document {doc_id}: {e}")),
    }
}

/// Head office confirmed holding `doc` at `heads`: tick off what that completes.
async fn confirm(state: &Arc<Edge>, outbox: &mut Outbox, doc: DocumentId, heads: Vec<ChangeHash>) {
    let concerned: Vec<String> = outbox
        .reports
        .iter()
        .filter(|(_, r)| (r.job == doc && !r.job_done) || (r.report_doc == doc && !r.report_done))
        .map(|(id, _)| id.clone())
        .collect();
    if concerned.is_empty() {
        return;
    }
    // Whether the confirmed job state includes each report's heads needs the history.
    let needs_history = concerned
        .iter()
        .any(|id| outbox.reports.get(id).is_some_and(|r| r.job == doc));
    let history = if needs_history {
        state.node.load_document(doc).await.ok().flatten()
    } else {
        None
    };
    let mut finished = Vec::new();
    for id in concerned {
        let Some(report) = outbox.reports.get_mut(&id) else {
            continue;
        };
        if report.report_doc == doc {
            report.report_done = true;
        }
        if report.job == doc
            && let Some(history) = &history
        {
            // Changes outside what head office holds; the report's heads must not be among them.
            let missing: std::collections::HashSet<ChangeHash> = history
                .get_changes(&heads)
                .iter()
                .map(|c| c.hash())
                .collect();
            report.job_done = report.heads.iter().all(|h| !missing.contains(h))
                && report
                    .heads
                    .iter()
                    .all(|h| history.get_change_by_hash(h).is_some());
        }
        if report.job_done && report.report_done {
            finished.push(id);
        }
    }
    for id in finished {
        let stamp = state.node.clock.now().as_millis().to_string().into_bytes();
        if let Err(e) = state.node.store.put_meta(DELIVERED, &id, stamp).await {
            // Not recorded: the report stays in the outbox and is confirmed again later.
            tracing::error!(report = id, error = %e, "cannot record a delivery");
            continue;
        }
        let _ = state.reports_delivered.send(id.clone());
        if let Some(report) = outbox.reports.remove(&id) {
            tracing::info!(report = id, job = %report.job, "report delivered to head office");
            state.metrics.upstream_delivered.inc();
            outbox.withdraw(state, report.job);
            outbox.withdraw(state, report.report_doc);
        }
    }
}

// ---- the link --------------------------------------------------------------------------

const FIRST_RETRY: Duration = Duration::from_secs(1);

async fn dial_loop(state: Arc<Edge>, upstream: Upstream) {
    let mut wait = FIRST_RETRY;
    let mut shutdown = state.node.shutdown.subscribe();
    // The configuration problem last reported, so it is said once, not at every attempt.
    let mut reported: Option<String> = None;
    loop {
        match connect(&state, &upstream).await {
            Ok(socket) => {
                tracing::info!(url = upstream.url, "connected to head office");
                reported = None;
                state.metrics.upstream_connected.set(1);
                pump(&state, socket).await;
                state.metrics.upstream_connected.set(0);
                tracing::info!("the link to head office closed");
                wait = FIRST_RETRY;
            }
            Err(DialError::Transient(e)) => {
                reported = None;
                tracing::warn!(url = upstream.url, error = %e, retry_in = ?wait, "cannot reach head office");
                state.metrics.upstream_dial_failures.inc();
            }
            Err(DialError::Fatal(e)) => {
                // Retrying sooner cannot help: an operator must act. The link checks again
                // at the longest wait (the token file is re-read then) and says nothing more
                // until the problem changes.
                if reported.as_deref() != Some(e.as_str()) {
                    tracing::error!(
                        url = upstream.url,
                        error = %e,
                        check_again_every = ?upstream.retry_max,
                        "the link to head office cannot work until this is fixed"
                    );
                    reported = Some(e);
                }
                state.metrics.upstream_dial_failures.inc();
                wait = upstream.retry_max.max(FIRST_RETRY);
            }
        }
        // Jitter: up to a quarter of the wait, so branches that lost head office together
        // do not all come back in the same second.
        let jitter = wait.mul_f64(f64::from(random_u8()) / 255.0 / 4.0);
        tokio::select! {
            () = tokio::time::sleep(wait + jitter) => {}
            _ = shutdown.changed() => return,
        }
        wait = (wait * 2).min(upstream.retry_max.max(FIRST_RETRY));
    }
}

fn random_u8() -> u8 {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    byte[0]
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a dial failed: worth retrying soon (head office down, network), or a configuration
/// problem only an operator can fix (no token, a token for another branch or expired, head
/// office refusing this branch).
#[derive(Debug)]
enum DialError {
    Transient(String),
    Fatal(String),
}

/// Reads and checks the branch token before it is sent: a token for another branch or one
/// that has expired would only be refused.
pub(crate) fn branch_token(state: &Edge, upstream: &Upstream) -> Result<String, String> {
    let file = upstream.token_file.display();
    let token = match std::fs::read_to_string(&upstream.token_file) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "token file {file} does not exist (head office makes it with `fieldsync branch \
                 token --branch {}`)",
                state.node.branch_id
            ));
        }
        Err(e) => return Err(format!("token file {file}: {e}")),
    };
    if token.is_empty() {
        return Err(format!("token file {file} is empty"));
    }
    let claims = crate::auth::unverified_claims(&token)
        .ok_or_else(|| format!("token file {file} does not hold a fieldsync token"))?;
    match &claims.subject {
        crate::auth::Subject::Branch(branch) if *branch == state.node.branch_id => {}
        other => {
            return Err(format!(
                "the token in {file} is for {other}, but this server is branch {} \
                 (branch_id); get a token for branch {} from head office",
                state.node.branch_id, state.node.branch_id
            ));
        }
    }
    if claims.expires_at <= state.node.clock.now() {
        return Err(format!(
            "the token in {file} expired at {}; put a new one from `fieldsync branch token` \
             there",
            claims.expires_at
        ));
    }
    Ok(token)
}

async fn connect(state: &Edge, upstream: &Upstream) -> Result<Socket, DialError> {
    let token = branch_token(state, upstream).map_err(DialError::Fatal)?;
    let mut request = upstream
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| DialError::Fatal(format!("upstream url {:?}: {e}", upstream.url)))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        DialError::Fatal("the token file holds characters a header cannot carry".to_owned())
    })?;
    request.headers_mut().insert("authorization", bearer);
    let max = state.node.config.limits.max_frame_bytes;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let dial = crate::tls::dial_upstream(request, config, upstream.ca_file.as_deref());
    match tokio::time::timeout(Duration::from_secs(10), dial).await {
        Err(_) => Err(DialError::Transient("timed out".into())),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            let status = response.status();
            let message = format!("refused with {status}: {body}");
            // 401/403: head office does not accept this branch or token (not enrolled,
            // revoked, signed by another head office); anything else may pass.
            if status.as_u16() == 401 || status.as_u16() == 403 {
                Err(DialError::Fatal(message))
            } else {
                Err(DialError::Transient(message))
            }
        }
        Ok(Err(e)) => Err(DialError::Transient(e.to_string())),
        Ok(Ok((socket, _))) => Ok(socket),
    }
}

/// Carries frames between the socket and the hub until either side closes.
async fn pump(state: &Arc<Edge>, socket: Socket) {
    let conn = ConnId(state.node.next_conn.fetch_add(1, Ordering::Relaxed));
    let (outbox, mut inbox) = mpsc::channel(crate::sync::hub::OUTBOX);
    if !state.node.hub.send(HubInput::Open {
        conn,
        principal: Principal::Server,
        outbox,
        dialed: true,
    }) {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = state.node.shutdown.subscribe();
    let interval = state.node.config.limits.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    last_heard = tokio::time::Instant::now();
                    state.node.hub.engine_input(Input::Frame { conn, bytes: bytes.to_vec() });
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    tracing::info!(?frame, "head office closed the link");
                    break;
                }
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                Some(Err(e)) => {
                    tracing::info!(error = %e, "the link to head office failed");
                    break;
                }
                None => break,
            },
            outgoing = inbox.recv() => match outgoing {
                Some(Outbound::Frame(bytes)) => {
                    if sink.send(WsMessage::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    tracing::warn!(code = code.as_u16(), reason, "closing the link to head office");
                    let _ = sink.close().await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    tracing::warn!("head office silent for three ping intervals; redialling");
                    break;
                }
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            },
            _ = shutdown.changed() => {
                let _ = sink.close().await;
                break;
            },
        }
    }
    state.node.hub.engine_input(Input::Disconnected { conn });
}
