//! The device's job list from summaries (issue 17): `Device::jobs` reads a summary per job
//! kept with every write instead of loading the documents. What it lists must always be
//! what the documents say: after a local edit, after a change received by sync, across a
//! reopen, for a store from before summaries (migrated on open), and after a chunk stored
//! without its summary (what a kill between the two would leave if they were two writes).

use std::path::Path;

use anyhow::{Context, ensure};
use automerge::Automerge;
use fieldsync_client::{
    AckStatus, ApprovalDraft, ApprovalKind, Device, JobEdit, JobEntry, JobStage,
};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::doc::JobDoc;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Store, StoreConfig};
use serde_json::json;

use crate::client_sdk::{go_offline, open_device, setup, sync_options, until};

/// Every listed job is as its document reads: the job itself, and each part of its state
/// (approvals waiting, conflicts, a stale acknowledgement) as the device's document reads
/// answer them.
async fn list_matches_documents(device: &Device) -> anyhow::Result<Vec<JobEntry>> {
    let listed = device.jobs().await;
    for entry in &listed {
        let id = entry.id;
        let job = device.job(id).await.ok();
        ensure!(
            entry.job == job,
            "job {id} is listed otherwise than it reads"
        );
        let Some(job) = job else {
            ensure!(entry.state.is_none(), "a state for {id}, which is not here");
            continue;
        };
        let state = entry.state.as_ref().context("a listed job has a state")?;
        let waiting = device
            .approvals(id)
            .await?
            .iter()
            .filter(|a| a.decision.is_none())
            .count();
        ensure!(state.approvals_waiting == waiting, "approvals of {id}");
        let conflicts = device.conflicts(id).await?.len() + device.unresolved(id).await?.len();
        ensure!(state.conflicts == conflicts, "conflicts of {id}");
        let stale = matches!(
            device.acknowledgement_status(id).await?,
            AckStatus::Stale { .. }
        );
        ensure!(
            state.stale_acknowledgement == stale,
            "acknowledgement of {id}"
        );
        let cancelled = job.timeline.iter().any(|e| e.kind == "cancelled");
        ensure!(
            (state.stage == JobStage::Cancelled) == cancelled,
            "stage of {id}: {:?}",
            state.stage
        );
    }
    Ok(listed)
}

/// The list a device opened as before summaries gives (every document loaded) equals the
/// one from summaries: jobs and status (heads, unsynced, last synced).
async fn reopened_lists_agree(store: &Path) -> anyhow::Result<Vec<JobEntry>> {
    let before = Device::reopen_baseline(store).await?;
    let mut from_documents = before.jobs().await;
    before.close().await;
    let device = Device::reopen(store).await?;
    let mut from_summaries = list_matches_documents(&device).await?;
    device.close().await;
    from_documents.sort_by_key(|e| e.id);
    from_summaries.sort_by_key(|e| e.id);
    ensure!(from_documents.len() == from_summaries.len());
    for (a, b) in from_documents.iter().zip(&from_summaries) {
        ensure!(
            a.id == b.id && a.job == b.job && a.status == b.status,
            "job {} lists otherwise from its summary: {b:?} against {a:?}",
            a.id
        );
    }
    Ok(from_summaries)
}

fn stage(list: &[JobEntry], job: DocumentId) -> Option<JobStage> {
    list.iter()
        .find(|e| e.id == job)
        .and_then(|e| e.state.as_ref())
        .map(|s| s.stage)
}

async fn desk_post(
    server: &fieldsync_tests::TestServer,
    path: &str,
    role: DeskRole,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(server.http_url(path))
        .bearer_auth(server.desk_token(role)?)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_list_follows_local_edits_received_changes_and_a_reopen() -> anyhow::Result<()> {
    let s = setup().await?;
    let first = s.server.create_job("tech-wang").await?;
    let second = s.server.create_job("tech-wang").await?;
    let device = open_device(s.devices.path(), "dev-w", "tech-wang", Some(first.index)).await?;
    s.server
        .enroll_key("tech-wang", device.device_id(), device.public_key())?;
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "both jobs arrive", || async {
        let list = device.jobs().await;
        list.len() == 2 && list.iter().all(|e| e.job.is_some() && !e.status.unsynced)
    })
    .await?;
    let listed = list_matches_documents(&device).await?;
    ensure!(
        stage(&listed, first.job) == Some(JobStage::New),
        "R3: no appointment yet"
    );

    // Local edits, offline: the list has them as soon as the edit returns.
    go_offline(&device).await?;
    device
        .edit(
            first.job,
            JobEdit::Arrival(Some(Timestamp::from_millis(1_790_050_000_000))),
        )
        .await?;
    let approval = device
        .request_approval(
            first.job,
            ApprovalDraft {
                kind: ApprovalKind::Extension,
                reason: "the compressor needs a part from the factory".into(),
                amount: None,
                expense: None,
            },
        )
        .await?;
    let listed = list_matches_documents(&device).await?;
    let entry = listed
        .iter()
        .find(|e| e.id == first.job)
        .context("listed")?;
    ensure!(entry.status.unsynced, "the edits are not on the server yet");
    ensure!(
        stage(&listed, first.job) == Some(JobStage::OnSite),
        "R2: arrived"
    );
    ensure!(
        entry.state.as_ref().map(|s| s.approvals_waiting) == Some(1),
        "R12"
    );

    // Back online: synced; then the desk decides the request and cancels the other job, and
    // the device's list has what sync brought.
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "the edits reach the server", || async {
        device.jobs().await.iter().all(|e| !e.status.unsynced)
    })
    .await?;
    desk_post(
        &s.server,
        &format!("/api/jobs/{}/approvals/{}/decision", first.job, approval.id),
        DeskRole::Manager,
        json!({"approved": true, "note": "until Friday"}),
    )
    .await?;
    desk_post(
        &s.server,
        &format!("/api/jobs/{}/cancel", second.job),
        DeskRole::Manager,
        json!({"reason": "the customer called it off"}),
    )
    .await?;
    until(&device, "the desk's changes are listed", || async {
        let list = device.jobs().await;
        stage(&list, second.job) == Some(JobStage::Cancelled)
            && list
                .iter()
                .find(|e| e.id == first.job)
                .and_then(|e| e.state.as_ref())
                .is_some_and(|s| s.approvals_waiting == 0)
    })
    .await?;
    list_matches_documents(&device).await?;

    // Reopened, offline: the list from summaries is the list from the documents.
    let store = device.store_path().to_owned();
    device.close().await;
    let listed = reopened_lists_agree(&store).await?;
    ensure!(stage(&listed, second.job) == Some(JobStage::Cancelled));
    ensure!(stage(&listed, first.job) == Some(JobStage::OnSite));
    s.server.stop().await?;
    Ok(())
}

/// A device with two jobs, one edited offline, closed. Returns its store and the jobs.
async fn closed_device_with_jobs(
    s: &crate::client_sdk::Setup,
) -> anyhow::Result<(std::path::PathBuf, Vec<DocumentId>)> {
    let first = s.server.create_job("tech-li").await?;
    let second = s.server.create_job("tech-li").await?;
    let device = open_device(s.devices.path(), "dev-l", "tech-li", Some(first.index)).await?;
    s.server
        .enroll_key("tech-li", device.device_id(), device.public_key())?;
    device.start_sync(sync_options(&s.server, &device)?);
    until(&device, "both jobs arrive", || async {
        let list = device.jobs().await;
        list.len() == 2 && list.iter().all(|e| e.job.is_some())
    })
    .await?;
    go_offline(&device).await?;
    device
        .edit(
            first.job,
            JobEdit::FaultCause(Some("starter relay worn".into())),
        )
        .await?;
    let store = device.store_path().to_owned();
    device.close().await;
    Ok((store, vec![first.job, second.job]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_summaries_opens_and_gets_them_once() -> anyhow::Result<()> {
    let s = setup().await?;
    let (store, jobs) = closed_device_with_jobs(&s).await?;
    let expected = reopened_lists_agree(&store).await?;

    // The file as storage migration 0003 left it: no summaries table, no trigger (and
    // nothing of the later 0005 either).
    {
        let conn = rusqlite::Connection::open(&store)?;
        conn.execute_batch(
            "DROP TRIGGER doc_summaries_outdated; DROP TABLE doc_summaries;
             DROP TRIGGER doc_versions_on_change; DROP TABLE doc_versions;
             DROP TABLE doc_watermarks;
             PRAGMA user_version = 3;",
        )?;
    }
    let device = Device::reopen(&store).await?;
    let listed = list_matches_documents(&device).await?;
    ensure!(listed == expected, "the migrated store lists what it did");
    device.close().await;
    // Made once, at that open: a summary per stored document (the jobs and the index).
    let summaries = Store::open(&store, StoreConfig::default())?.doc_summaries()?;
    for job in &jobs {
        ensure!(
            summaries.iter().any(|(id, _)| *id == job.to_string()),
            "no summary of {job}"
        );
    }
    ensure!(
        summaries.len() == jobs.len() + 1,
        "{} summaries",
        summaries.len()
    );
    ensure!(reopened_lists_agree(&store).await? == expected);
    s.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_stored_without_its_summary_is_listed_from_the_document() -> anyhow::Result<()> {
    let s = setup().await?;
    let (store_path, jobs) = closed_device_with_jobs(&s).await?;
    let job = jobs[0];

    // What a kill between a chunk and its summary would leave were they two writes (or an
    // older build, or a tool, writing the store): the document has a change its summary
    // never saw. The store deletes that summary as the chunk goes in.
    {
        let store = Store::open(&store_path, StoreConfig::default())?;
        let chunks = store.load_doc(&job.to_string())?.context("stored")?;
        let doc: Automerge = fieldsync_shared::stored::load(&chunks)?;
        let heads = doc.get_heads();
        let mut edited = JobDoc::from_automerge(doc)?;
        edited.set_fault_cause(Some("condenser fan seized"))?;
        let change = edited.inner_mut().save_after(&heads);
        ensure!(store.doc_summary(&job.to_string())?.is_some());
        store.append_changes(&job.to_string(), change).wait()?;
        ensure!(
            store.doc_summary(&job.to_string())?.is_none(),
            "the summary that no longer describes the document is gone"
        );
        store.close()?;
    }
    let device = Device::reopen(&store_path).await?;
    let listed = list_matches_documents(&device).await?;
    let entry = listed.iter().find(|e| e.id == job).context("listed")?;
    ensure!(
        entry
            .job
            .as_ref()
            .and_then(|j| j.diagnosis.fault_cause.as_deref())
            == Some("condenser fan seized"),
        "the list shows the change the summary never saw"
    );
    device.close().await;
    reopened_lists_agree(&store_path).await?;
    s.server.stop().await?;
    Ok(())
}
