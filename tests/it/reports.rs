//! Report signing at the edge (R7, R8, R11, R13, R16) and offline verification.

use fieldsync_client::SyncClient;
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::{DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::doc::{EditError, JobDoc, PartDraft, read_job};
use fieldsync_shared::job::{
    CheckOut, Completion, Job, RefusalReason, ReportOutcome, SignatureMark, Survey, Training,
};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::{AckDraft, VerifyError, sign_acknowledgement};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{SETTLE, TestServer, installation_job_body, sample_job_body, temp_dir};

pub(crate) const T0: i64 = 1_793_000_000_000;

/// A typed edit of the job, as the device makes it.
pub(crate) async fn edit(
    client: &SyncClient,
    job: DocumentId,
    f: impl FnOnce(&mut JobDoc) -> Result<(), EditError> + Send + 'static,
) -> anyhow::Result<()> {
    client
        .edit(job, LocalEdit::job(f))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn tech() -> TechnicianId {
    TechnicianId::new("tech-wang").expect("valid")
}

/// Records everything R7 asks for.
pub(crate) async fn do_the_work(client: &SyncClient, job: DocumentId) -> anyhow::Result<()> {
    edit(client, job, |jd| {
        jd.set_fault_cause(Some("Worn start capacitor"))
            .and_then(|()| jd.set_solution(Some("Replaced the capacitor, tested 30 min")))
            .and_then(|()| {
                jd.add_part(&PartDraft {
                    part_number: "CAP-45".into(),
                    name: "Start capacitor".into(),
                    specification: "45 uF".into(),
                    quantity: 1,
                    unit_price: Money(1250),
                    warranty: false,
                })
                .map(|_| ())
            })
            .and_then(|()| jd.set_customer_opinion(Some("Quick and tidy")))
    })
    .await
}

/// The customer signs on the device, over the job as it is now.
pub(crate) async fn acknowledge(
    client: &SyncClient,
    job: DocumentId,
    device: &DeviceId,
    key: &KeyPair,
) -> anyhow::Result<()> {
    let doc = client
        .read(job)
        .await
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    let current: Job = read_job(&doc)?;
    let heads: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
    let ack = sign_acknowledgement(
        &current,
        heads,
        AckDraft {
            signer_name: "Chen Li".into(),
            signature: SignatureMark::Strokes {
                strokes: vec![vec![[0, 0], [12, 9], [30, 4]]],
            },
            signed_at: Timestamp::from_millis(T0),
            survey: Survey::answered(5, 5, 4, 5, ""),
        },
        device.clone(),
        key,
    )?;
    edit(client, job, move |jd| jd.set_acknowledgement(&ack)).await
}

pub(crate) async fn check_out_and_complete(
    client: &SyncClient,
    job: DocumentId,
    check_out: bool,
    at: i64,
) -> anyhow::Result<()> {
    edit(client, job, move |jd| {
        if check_out {
            jd.check_out(&CheckOut {
                at: Timestamp::from_millis(at),
                by: tech(),
                note: "reported to the desk".into(),
            })?;
        }
        jd.request_completion(&Completion {
            at: Timestamp::from_millis(at + 1),
            by: tech(),
        })
    })
    .await
}

pub(crate) async fn outcome(client: &SyncClient, job: DocumentId) -> Option<ReportOutcome> {
    let mut found = None;
    client
        .wait_for(job, SETTLE, |d| {
            found = read_job(d).ok().and_then(|j| j.report);
            found.is_some()
        })
        .await;
    found
}

/// Every reason the branch refused `job` with; fails the test if the job was not refused.
async fn refusal(client: &SyncClient, job: DocumentId) -> Vec<RefusalReason> {
    let Some(ReportOutcome::Refused { reasons, .. }) = outcome(client, job).await else {
        panic!("job {job} was not refused");
    };
    reasons
}

/// The (rule, code) pairs of `reasons`.
fn rule_codes(reasons: &[RefusalReason]) -> Vec<(&str, &str)> {
    reasons
        .iter()
        .map(|r| (r.rule.as_str(), r.code.as_str()))
        .collect()
}

/// A branch server, a device of tech-wang and a job assigned to them, on the device.
struct Branch {
    _dirs: [tempfile::TempDir; 2],
    server: TestServer,
    device: DeviceId,
    key: KeyPair,
    job: DocumentId,
    client: SyncClient,
}

impl Branch {
    async fn with_a_job(device: &str) -> anyhow::Result<Self> {
        Self::with_job_from(device, |_| sample_job_body("tech-wang")).await
    }

    /// As [`Self::with_a_job`], the job made from a `POST /api/jobs` body.
    /// A branch with one job, made from `body` at the server's now.
    async fn with_job_from(
        device: &str,
        body: impl FnOnce(Timestamp) -> serde_json::Value,
    ) -> anyhow::Result<Self> {
        let (data, devices) = (temp_dir()?, temp_dir()?);
        let server = TestServer::start_in(data.path()).await?;
        let (device, key) = server.enroll_with_key("tech-wang", device)?;
        let created = server.create_job_from(&body(server.now())).await?;
        let client = server.connect_device(&device, devices.path()).await?;
        client.subscribe(created.job);
        anyhow::ensure!(
            client
                .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
                .await,
            "the job did not reach the device"
        );
        Ok(Self {
            _dirs: [data, devices],
            server,
            device,
            key,
            job: created.job,
            client,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_job_is_signed_at_the_edge_and_verifies_offline() -> anyhow::Result<()> {
    let Branch {
        _dirs,
        server,
        device,
        key,
        job,
        client,
    } = Branch::with_a_job("dev-a").await?;

    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    check_out_and_complete(&client, job, true, T0 + 60_000).await?;

    let Some(ReportOutcome::Signed { report_id, .. }) = outcome(&client, job).await else {
        panic!("the job was not signed");
    };
    let bytes = reqwest::Client::new()
        .get(server.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(server.desk_token(DeskRole::Analyst)?)
        .send()
        .await?
        .bytes()
        .await?;

    // Offline: only public keys.
    let trust_dir = temp_dir()?;
    let devices_now: Vec<_> = server.state.registry_read().devices().cloned().collect();
    fieldsync_server::trust::export(
        trust_dir.path(),
        &server.state.branch_id,
        server.state.server_key.public(),
        &devices_now,
    )?;
    let trust = fieldsync_server::trust::load(trust_dir.path())?;
    let verified = trust.verify_json(&bytes)?;
    assert_eq!(verified.report.body.report_id, report_id);
    assert_eq!(
        verified.job.diagnosis.fault_cause.as_deref(),
        Some("Worn start capacitor")
    );

    let tampered = String::from_utf8(bytes.to_vec())?.replace("Worn start", "Worn sparkly");
    assert_eq!(
        trust.verify_json(tampered.as_bytes()).map(|_| ()),
        Err(VerifyError::BadBranchSignature)
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_job_is_refused_with_every_reason_visible_on_the_device() -> anyhow::Result<()>
{
    let Branch {
        _dirs,
        server,
        device,
        key,
        job,
        client,
    } = Branch::with_a_job("dev-a").await?;

    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    // A part added after the customer signed: the acknowledgement no longer matches.
    edit(&client, job, |jd| {
        jd.set_solution(Some("Replaced the capacitor and a fuse"))
    })
    .await?;
    // And no check-out (R11).
    check_out_and_complete(&client, job, false, T0 + 60_000).await?;

    let reasons = refusal(&client, job).await;
    let codes = rule_codes(&reasons);
    assert_eq!(
        codes,
        vec![
            ("R11", "missing_check_out"),
            ("R8", "acknowledgement_mismatch")
        ]
    );
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_recorded_is_refused_with_each_missing_r7_item_and_no_acknowledgement()
-> anyhow::Result<()> {
    let Branch {
        _dirs,
        server,
        job,
        client,
        ..
    } = Branch::with_a_job("dev-a").await?;
    check_out_and_complete(&client, job, true, T0 + 60_000).await?;
    let reasons = refusal(&client, job).await;
    let codes = rule_codes(&reasons);
    // Every R7 item and the missing acknowledgement (R8), each with its own reason, all at
    // once: the technician fixes everything in one visit to the screen.
    for expected in [
        ("R7", "missing_fault_cause"),
        ("R7", "missing_solution"),
        ("R7", "missing_customer_opinion"),
        ("R8", "missing_acknowledgement"),
    ] {
        assert!(codes.contains(&expected), "{expected:?} not in {codes:?}");
    }
    assert!(!codes.iter().any(|(rule, _)| *rule == "R11"), "{codes:?}");
    assert!(reasons.iter().all(|r| !r.message.is_empty()));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_by_a_revoked_device_is_refused() -> anyhow::Result<()> {
    let data = temp_dir()?;
    let devices = temp_dir()?;
    let server = TestServer::start_in(data.path()).await?;
    let (lost, lost_key) = server.enroll_with_key("tech-wang", "dev-lost")?;
    let (spare, _) = server.enroll_with_key("tech-wang", "dev-spare")?;
    let created = server.create_job("tech-wang").await?;
    let client = server.connect_device(&lost, devices.path()).await?;
    client.subscribe(created.job);
    assert!(
        client
            .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
            .await
    );
    do_the_work(&client, created.job).await?;
    acknowledge(&client, created.job, &lost, &lost_key).await?;
    // The device that took the signature is reported lost and revoked; the technician
    // finishes the job on the spare device.
    fieldsync_tests::eventually(SETTLE, "the server holds the acknowledgement", || async {
        server
            .fetch_job(created.job)
            .await
            .ok()
            .and_then(|j| j.acknowledgement)
    })
    .await?;
    client.close();
    server
        .state
        .registry_write()
        .revoke_device(&server.state.store, &lost, server.now())?
        .wait()?;
    let spare_client = server.connect_device(&spare, devices.path()).await?;
    spare_client.subscribe(created.job);
    assert!(
        spare_client
            .wait_for(created.job, SETTLE, |d| read_job(d)
                .is_ok_and(|j| j.acknowledgement.is_some()))
            .await
    );
    check_out_and_complete(&spare_client, created.job, true, T0 + 60_000).await?;
    let reasons = refusal(&spare_client, created.job).await;
    let codes = rule_codes(&reasons);
    assert_eq!(codes, vec![("R8", "revoked_device")]);
    server.stop().await
}

/// R16: an installation job whose report lacks the training of the customer's staff is refused
/// at the edge (a device that skipped its own check cannot get it signed); once the training
/// is recorded and the customer signs again, the report is signed and carries the training.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_an_installation_is_signed_only_once_the_customers_staff_were_trained()
-> anyhow::Result<()> {
    let Branch {
        _dirs,
        server,
        device,
        key,
        job,
        client,
    } = Branch::with_job_from("dev-a", |now| installation_job_body("tech-wang", now)).await?;

    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    check_out_and_complete(&client, job, true, T0 + 60_000).await?;
    let reasons = refusal(&client, job).await;
    let codes = rule_codes(&reasons);
    assert_eq!(codes, vec![("R16", "missing_training")]);

    // The training, then the customer's signature over the job that now includes it.
    edit(&client, job, |jd| {
        jd.record_training(&Training {
            at: Timestamp::from_millis(T0 + 30_000),
            by: tech(),
            trainees: vec!["Ms Chen (shift lead)".into(), "cold-room operators".into()],
            topics: "Start-up, alarm reset, weekly filter cleaning".into(),
        })
    })
    .await?;
    acknowledge(&client, job, &device, &key).await?;
    // A new request, later than the refusal the server wrote (which it dates by its clock).
    let again = server.now().as_millis().max(T0) + 60_000;
    edit(&client, job, move |jd| {
        jd.request_completion(&Completion {
            at: Timestamp::from_millis(again),
            by: tech(),
        })
    })
    .await?;
    let mut signed = None;
    client
        .wait_for(job, SETTLE, |d| {
            signed = match read_job(d).ok().and_then(|j| j.report) {
                Some(ReportOutcome::Signed { report_id, .. }) => Some(report_id),
                _ => None,
            };
            signed.is_some()
        })
        .await;
    let report_id =
        signed.ok_or_else(|| anyhow::anyhow!("the trained installation was not signed"))?;

    let bytes = reqwest::Client::new()
        .get(server.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(server.desk_token(DeskRole::Analyst)?)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let trust = fieldsync_server::edge::signer::trust_store(&server.state);
    let verified = trust.verify_json(&bytes)?;
    let training = verified
        .job
        .visit
        .training
        .ok_or_else(|| anyhow::anyhow!("the signed report lacks the training"))?;
    assert_eq!(
        training.trainees,
        ["Ms Chen (shift lead)", "cold-room operators"]
    );
    assert_eq!(training.by, tech());
    server.stop().await
}

/// Applies `f` to the job as stored in the (stopped) server's data directory and stores the
/// change, as the edge would have stored a device's change the moment before it was killed:
/// durable, acknowledged, but with nothing after it (no signer run, no notification).
fn store_change_of_a_killed_edge(
    data_dir: &std::path::Path,
    job: DocumentId,
    f: impl FnOnce(&mut JobDoc) -> Result<(), EditError>,
) -> anyhow::Result<()> {
    let path = fieldsync_server::data_dir::DataDir::open(data_dir)?.database_path();
    let store = fieldsync_storage::Store::open(path, fieldsync_storage::StoreConfig::default())?;
    let mut doc = automerge::Automerge::new();
    for chunk in store.load_doc(&job.to_string())?.unwrap_or_default() {
        doc.load_incremental(&chunk)?;
    }
    let before = doc.get_heads();
    fieldsync_client::edit_automerge(&mut doc, &automerge::ActorId::random(), |ac| {
        let mut jd = JobDoc::from_autocommit(std::mem::take(ac));
        let result = f(&mut jd);
        *ac = jd.into_inner();
        result
    })
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let bytes: Vec<u8> = doc
        .get_changes(&before)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect();
    store.append_changes(&job.to_string(), bytes).wait()?;
    store.close()?;
    Ok(())
}

/// Found by the crash loop (issue 13): the edge stored a device's completion request (and told
/// the device so), then was killed before its signer answered. After the restart nothing about
/// the job changes again, yet the completion must be answered: the signer looks at every job
/// when it starts, as it does when it falls behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_stored_just_before_a_crash_is_answered_after_the_restart()
-> anyhow::Result<()> {
    let Branch {
        _dirs,
        server,
        device,
        key,
        job,
        client,
    } = Branch::with_a_job("dev-a").await?;
    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    fieldsync_tests::eventually(SETTLE, "the edge holds the acknowledgement", || async {
        server
            .fetch_job(job)
            .await
            .ok()?
            .acknowledgement
            .map(|_| ())
    })
    .await?;
    client.close();
    let (addr, data_dir) = (server.addr, server.data_dir.clone());
    server.stop().await?;

    store_change_of_a_killed_edge(&data_dir, job, |jd| {
        jd.check_out(&CheckOut {
            at: Timestamp::from_millis(T0 + 60_000),
            by: tech(),
            note: "reported to the desk".into(),
        })?;
        jd.request_completion(&Completion {
            at: Timestamp::from_millis(T0 + 60_001),
            by: tech(),
        })
    })?;

    let server = TestServer::start_at(&data_dir, addr).await?;
    let answered = fieldsync_tests::eventually(SETTLE, "the signer answers", || async {
        server.fetch_job(job).await.ok()?.report
    })
    .await?;
    assert!(
        matches!(answered, ReportOutcome::Signed { .. }),
        "{answered:?}"
    );
    server.stop().await?;
    Ok(())
}

/// Found by the crash loop (issue 13): the signer stored a signed report (and the branch link
/// may already have delivered it), then the edge was killed before the outcome was written
/// into the job; meanwhile the technician added a note. After the restart the signer must
/// announce the report it stored, not sign the changed job again: that would make a second
/// report of one completion, and head office would archive both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stored_just_before_a_crash_is_the_one_announced_after_the_restart()
-> anyhow::Result<()> {
    use fieldsync_server::app::Server;
    use fieldsync_server::edge::signer::{REPORTS, answer};

    let Branch {
        _dirs,
        server,
        device,
        key,
        job,
        client,
    } = Branch::with_a_job("dev-a").await?;
    do_the_work(&client, job).await?;
    acknowledge(&client, job, &device, &key).await?;
    fieldsync_tests::eventually(SETTLE, "the edge holds the acknowledgement", || async {
        server
            .fetch_job(job)
            .await
            .ok()?
            .acknowledgement
            .map(|_| ())
    })
    .await?;
    client.close();
    let (addr, data_dir) = (server.addr, server.data_dir.clone());
    server.stop().await?;
    store_change_of_a_killed_edge(&data_dir, job, |jd| {
        jd.check_out(&CheckOut {
            at: Timestamp::from_millis(T0 + 60_000),
            by: tech(),
            note: "reported to the desk".into(),
        })?;
        jd.request_completion(&Completion {
            at: Timestamp::from_millis(T0 + 60_001),
            by: tech(),
        })
    })?;

    // The signer's first half, then the kill: the report is stored, the job is not told.
    let config = fieldsync_server::config::Config {
        data_dir: data_dir.clone(),
        branch_id: Some("north-01".into()),
        ..Default::default()
    };
    let opened = Server::open_with_clock(
        config,
        fieldsync_server::clock::Clock::system(),
        tokio::runtime::Handle::current(),
    )?;
    let edge = opened
        .edge()
        .ok_or_else(|| anyhow::anyhow!("not an edge"))?;
    let first = answer(edge, job)
        .await
        .ok_or_else(|| anyhow::anyhow!("the signer found nothing to answer"))?;
    let ReportOutcome::Signed { report_id, .. } = first.outcome else {
        anyhow::bail!("the signer refused: {:?}", first.outcome);
    };
    opened.node.hub.shutdown().await;
    opened.node.store.flush().wait()?;
    drop(opened);
    // The technician's note after completion, taken in as the edge comes back.
    store_change_of_a_killed_edge(&data_dir, job, |jd| {
        let len = jd.read()?.notes.chars().count();
        jd.splice_notes(len, 0, "left site 16:05. ")
    })?;

    let server = TestServer::start_at(&data_dir, addr).await?;
    let answered = fieldsync_tests::eventually(SETTLE, "the signer answers", || async {
        server.fetch_job(job).await.ok()?.report
    })
    .await?;
    match answered {
        ReportOutcome::Signed { report_id: id, .. } => assert_eq!(id, report_id),
        other => panic!("expected the stored report, got {other:?}"),
    }
    let of_this_job = server
        .state
        .store
        .meta_entries(REPORTS)?
        .iter()
        .filter(|(_, bytes)| {
            serde_json::from_slice::<fieldsync_shared::report::SignedReport>(bytes)
                .is_ok_and(|r| r.body.job_id == job)
        })
        .count();
    assert_eq!(of_this_job, 1, "one completion, one report");
    server.stop().await?;
    Ok(())
}
