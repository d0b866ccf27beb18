//! Write authority inside the document (issue 12; DESIGN.md: write authority is per path, not
//! only per document): a device writes its on-site record and nothing the manager, the desk
//! or the server decides; a desk token writes nothing over `/sync`. Each forbidden write is
//! refused with the path and the rule named, nothing of it is stored, and the peer's
//! legitimate edits in other messages keep syncing.

use std::time::Duration;

use anyhow::{Context, bail};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT, ReadDoc};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::approvals::{
    Approval, ApprovalKind, Decision, decide, read_approvals, request_approval,
};
use fieldsync_shared::job::doc::{JobDoc, read_job};
use fieldsync_shared::protocol::Message;
use fieldsync_shared::protocol::message::{PeerId, SyncMessage};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{
    CreatedJob, Incoming, RawPeer, SETTLE, TestServer, eventually, message_carrying_changes,
    temp_dir,
};
use tempfile::TempDir;

const T: i64 = 1_793_000_000_000;

/// A server with one job for tech-wang, and a raw peer (a device of tech-wang's, or a desk
/// token) that writes into its own replica of the job and sends the changes.
struct Writer {
    server: TestServer,
    job: CreatedJob,
    raw: RawPeer,
    /// The peer's replica of the job.
    replica: AutoCommit,
    _data: TempDir,
}

enum As {
    Device,
    Desk(DeskRole),
}

impl Writer {
    async fn start(who: As) -> anyhow::Result<Self> {
        let data = temp_dir()?;
        let server = TestServer::start_in(data.path()).await?;
        let device = server.enroll("tech-wang", "dev-a")?;
        let job = server.create_job("tech-wang").await?;
        let (token, peer_id) = match who {
            As::Device => (
                server.device_token(&device, Duration::from_secs(600))?,
                "dev-a".to_owned(),
            ),
            As::Desk(role) => (server.desk_token(role)?, format!("desk-{}", role.as_str())),
        };
        let raw = RawPeer::joined(&server.ws_url(), &token, &peer_id).await?;
        let mut replica = AutoCommit::load(&server.stored_doc(job.job)?.save())?;
        replica.set_actor(automerge::ActorId::from([0xaa; 16]));
        Ok(Self {
            server,
            job,
            raw,
            replica,
            _data: data,
        })
    }

    fn stored(&self) -> anyhow::Result<Automerge> {
        self.server.stored_doc(self.job.job)
    }

    /// Makes one change to the replica and sends the server a sync message carrying what it
    /// does not hold.
    async fn write(&mut self, edit: impl FnOnce(&mut AutoCommit)) -> anyhow::Result<()> {
        edit(&mut self.replica);
        self.replica.commit();
        let from = self.replica.document().clone();
        self.send_from(from).await
    }

    async fn send_from(&mut self, from: Automerge) -> anyhow::Result<()> {
        let data = message_carrying_changes(&from, &self.stored()?)?;
        let message = Message::Sync(SyncMessage {
            sender_id: PeerId::new(self.raw.peer_id.clone()),
            target_id: PeerId::new("server"),
            document_id: self.job.job,
            data,
        });
        self.raw.send(&message).await
    }

    /// The next `error` message the server sends; fails if the connection closes first.
    async fn refusal(&mut self) -> anyhow::Result<String> {
        loop {
            match self.raw.next(SETTLE).await? {
                Incoming::Message(Message::Error(e)) => return Ok(e.message),
                Incoming::Message(_) => {}
                Incoming::Closed(close) => bail!("the server closed the connection: {close:?}"),
            }
        }
    }

    /// Waits until the stored job satisfies `check`.
    async fn stored_until(
        &self,
        what: &str,
        check: impl Fn(&Automerge) -> bool,
    ) -> anyhow::Result<()> {
        eventually(SETTLE, what, || async {
            self.stored().ok().filter(|d| check(d)).map(|_| ())
        })
        .await
    }

    /// A legitimate edit made concurrently with the refused one (on the server's own
    /// version, not on the refused change): a device's fault cause, sent in its own message.
    async fn legitimate_edit_still_syncs(&mut self, cause: &str) -> anyhow::Result<()> {
        let mut fresh = JobDoc::from_automerge(self.stored()?)?;
        fresh.set_actor(automerge::ActorId::from([0xbb; 16]));
        fresh.set_fault_cause(Some(cause))?;
        self.send_from(fresh.inner_mut().document().clone()).await?;
        self.stored_until("the legitimate edit is stored", |d| {
            read_job(d).ok().and_then(|j| j.diagnosis.fault_cause) == Some(cause.to_owned())
        })
        .await
    }

    fn refusals(&self) -> u64 {
        self.server.state.metrics.refusals("write_forbidden")
    }
}

fn ask(id: &str) -> Approval {
    Approval {
        id: id.into(),
        kind: ApprovalKind::WarrantyPart,
        reason: "compressor under warranty".into(),
        requested_by: "tech-wang".into(),
        requested_at: Timestamp::from_millis(T),
        // Below `director_approval_above`: a manager's to decide (R18).
        amount: Some(Money(25_000)),
        expense: None,
        decision: None,
    }
}

fn approve() -> Decision {
    Decision {
        approved: true,
        by: "desk:manager".into(),
        at: Timestamp::from_millis(T + 60_000),
        note: "approved by myself".into(),
    }
}

fn decided(doc: &Automerge) -> bool {
    read_approvals(doc).is_ok_and(|a| a.iter().any(|x| x.decision.is_some()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_r18_r31_a_device_cannot_approve_its_own_request() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Device).await?;
    // Asking is the device's to do: stored.
    w.write(|d| request_approval(d, &ask("req-1")).expect("request"))
        .await?;
    w.stored_until("the request is stored", |d| {
        read_approvals(d).is_ok_and(|a| a.len() == 1)
    })
    .await?;
    // Deciding is not, whichever of R12, R18, R31 the request is.
    let before = w.stored()?.get_heads();
    w.write(|d| decide(d, "req-1", &approve()).expect("decide"))
        .await?;
    let error = w.refusal().await?;
    assert!(error.contains("approvals.req-1.decision"), "{error}");
    assert!(error.contains("manager"), "the rule is named: {error}");
    assert_eq!(w.stored()?.get_heads(), before, "nothing of it is stored");
    assert!(!decided(&w.stored()?));
    assert_eq!(w.refusals(), 1);
    w.legitimate_edit_still_syncs("worn relay").await?;
    assert!(!decided(&w.stored()?));
    w.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_write_the_report_outcome_or_add_a_root_field() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Device).await?;
    let before = w.stored()?.get_heads();
    w.write(|d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_report_outcome(&ReportOutcome::Signed {
            at: Timestamp::from_millis(T),
            report_id: "made-up".into(),
            digest: "00".repeat(32),
            supersedes: None,
        })
        .expect("edit");
        *d = job.into_inner();
    })
    .await?;
    let error = w.refusal().await?;
    assert!(error.contains("may not write report"), "{error}");
    assert!(error.contains("signer"), "{error}");
    assert_eq!(w.stored()?.get_heads(), before);

    // A new root field, in a change that does not build on the refused one.
    let mut fresh = AutoCommit::load(&w.stored()?.save())?;
    fresh.set_actor(automerge::ActorId::from([0xcc; 16]));
    fresh.put(ROOT, "bonus", 100)?;
    fresh.commit();
    w.send_from(fresh.document().clone()).await?;
    let error = w.refusal().await?;
    assert!(error.contains("may not write bonus"), "{error}");
    assert!(error.contains("unknown fields are refused"), "{error}");
    assert_eq!(w.stored()?.get_heads(), before);
    assert!(w.stored()?.get(ROOT, "bonus")?.is_none());
    assert_eq!(w.refusals(), 2);
    w.legitimate_edit_still_syncs("blocked condenser").await?;
    w.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_built_on_a_refused_one_is_refused_too() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Device).await?;
    let before = w.stored()?.get_heads();
    w.write(|d| {
        d.put(ROOT, "bonus", 100).expect("put");
    })
    .await?;
    w.refusal().await?;
    // The device carries on on top of its refused change and sends only the new change (as
    // it would once it believes the server has the first): that cannot be stored either.
    let refused = w.replica.get_last_local_change().context("a change")?;
    let mut job = JobDoc::from_autocommit(w.replica.clone());
    job.set_fault_cause(Some("after the bonus"))?;
    let mut as_if_held = w.stored()?;
    as_if_held.apply_changes([refused])?;
    let data = message_carrying_changes(job.inner_mut().document(), &as_if_held)?;
    w.raw
        .send(&Message::Sync(SyncMessage {
            sender_id: PeerId::new("dev-a"),
            target_id: PeerId::new("server"),
            document_id: w.job.job,
            data,
        }))
        .await?;
    let error = w.refusal().await?;
    assert!(
        error.contains("builds on a change this server refused"),
        "{error}"
    );
    assert_eq!(w.stored()?.get_heads(), before);
    w.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_token_cannot_change_a_job_over_sync() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Desk(DeskRole::Analyst)).await?;
    let before = w.stored()?.get_heads();
    w.write(|d| {
        let mut job = JobDoc::from_autocommit(std::mem::take(d));
        job.set_fault_cause(Some("the analyst's guess"))
            .expect("edit");
        *d = job.into_inner();
    })
    .await?;
    let error = w.refusal().await?;
    assert!(
        error.contains("desk may not write diagnosis.fault_cause"),
        "{error}"
    );
    assert_eq!(w.stored()?.get_heads(), before);
    assert_eq!(w.refusals(), 1);
    w.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_cannot_write_a_decision_over_sync() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Desk(DeskRole::Dispatcher)).await?;
    // The technician's request, made on a device the proper way.
    let device = w.server.enroll("tech-wang", "dev-b")?;
    let token = w.server.device_token(&device, Duration::from_secs(600))?;
    let mut raw = RawPeer::joined(&w.server.ws_url(), &token, "dev-b").await?;
    let mut asked = AutoCommit::load(&w.stored()?.save())?;
    asked.set_actor(automerge::ActorId::from([0xdd; 16]));
    request_approval(&mut asked, &ask("req-2"))?;
    asked.commit();
    let data = message_carrying_changes(asked.document(), &w.stored()?)?;
    raw.send(&Message::Sync(SyncMessage {
        sender_id: PeerId::new("dev-b"),
        target_id: PeerId::new("server"),
        document_id: w.job.job,
        data,
    }))
    .await?;
    w.stored_until("the request is stored", |d| {
        read_approvals(d).is_ok_and(|a| a.len() == 1)
    })
    .await?;
    // The dispatcher, over /sync, approves it: only a manager decides, and through the API.
    let mut desk = AutoCommit::load(&w.stored()?.save())?;
    desk.set_actor(automerge::ActorId::from([0xee; 16]));
    decide(&mut desk, "req-2", &approve())?;
    desk.commit();
    let before = w.stored()?.get_heads();
    w.send_from(desk.document().clone()).await?;
    let error = w.refusal().await?;
    assert!(error.contains("approvals.req-2.decision"), "{error}");
    assert_eq!(w.stored()?.get_heads(), before);
    assert!(!decided(&w.stored()?));
    w.server.stop().await
}

/// The real JavaScript client (automerge-repo 2.5.6, and the 2.6 pre-release) writes what a
/// device may not: the server refuses each write naming the path, stores nothing of it, and
/// the same connection's edit of another job is stored.
pub(crate) async fn js_device_forbidden_writes(modules: Option<&str>) -> anyhow::Result<()> {
    use crate::js_interop::JsDevice;

    let data = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let js = server.enroll("tech-wang", "dev-js")?;
    let token = server.device_token(&js, Duration::from_secs(600))?;
    for (what, path) in [
        ("decision", "approvals.req-js.decision"),
        ("report", "report"),
        ("root", "bonus"),
    ] {
        let target = server.create_job("tech-wang").await?.job;
        let other = server.create_job("tech-wang").await?.job;
        let device =
            JsDevice::new(&server, js.to_string(), Some(token.clone())).with_modules(modules);
        let result = device
            .must_with(
                "forbidden-write",
                &[
                    ("--doc", target.url()),
                    ("--doc2", other.url()),
                    ("--what", what.to_owned()),
                    ("--value", format!("legit after {what}")),
                ],
            )
            .await?;
        let errors = result["errors"].to_string();
        assert!(errors.contains(path), "{what}: {errors}");
        let stored = server.stored_doc(target)?;
        match what {
            "decision" => {
                let approvals = read_approvals(&stored)?;
                assert_eq!(approvals.len(), 1, "the request is stored");
                assert!(approvals[0].decision.is_none(), "the decision is not");
            }
            "report" => assert!(read_job(&stored)?.report.is_none()),
            _ => assert!(stored.get(ROOT, "bonus")?.is_none()),
        }
        let cause = read_job(&server.stored_doc(other)?)?.diagnosis.fault_cause;
        assert_eq!(
            cause.as_deref(),
            Some(format!("legit after {what}").as_str())
        );
    }
    assert_eq!(server.state.metrics.refusals("write_forbidden"), 3);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_cannot_write_what_only_the_server_or_a_manager_may() -> anyhow::Result<()> {
    js_device_forbidden_writes(None).await
}

/// The desk writes decisions through the API (a manager's role checked there), and the
/// device sees them: the path a device may not write is the server's to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managers_decision_through_the_api_reaches_the_job() -> anyhow::Result<()> {
    let mut w = Writer::start(As::Device).await?;
    w.write(|d| request_approval(d, &ask("req-3")).expect("request"))
        .await?;
    w.stored_until("the request is stored", |d| {
        read_approvals(d).is_ok_and(|a| a.len() == 1)
    })
    .await?;
    let token = w.server.desk_token(DeskRole::Manager)?;
    let response = reqwest::Client::new()
        .post(
            w.server
                .http_url(&format!("/api/jobs/{}/approvals/req-3/decision", w.job.job)),
        )
        .bearer_auth(token)
        .json(&serde_json::json!({"approved": true, "note": "fine"}))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "decision: {status}: {body}");
    w.stored_until("the decision is stored", decided).await?;
    assert_eq!(w.refusals(), 0);
    w.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_device_on_the_2_6_pre_release_cannot_write_them_either() -> anyhow::Result<()> {
    js_device_forbidden_writes(Some("next")).await
}
