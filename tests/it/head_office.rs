//! Head office (issue 5): device → edge → head office, verification without trusting anything
//! in between (R8, R13), the archive (R25), the month's statistics (R24), tampering, and an
//! intermittent branch link.

use std::time::Duration;

use anyhow::Context;
use automerge::{Automerge, ReadDoc};
use fieldsync_client::SyncClient;
use fieldsync_server::auth::DeskRole;
use fieldsync_server::clock::Clock;
use fieldsync_server::edge::upstream::DELIVERED;
use fieldsync_server::head_office::archive::ArchivedReport;
use fieldsync_shared::ids::{DeviceId, DocumentId};
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::approvals::{Approval, ApprovalKind, TravelExpense, request_approval};
use fieldsync_shared::job::doc::{EditError, read_job};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::SignedReport;
use fieldsync_shared::report_doc::{ReportDoc, report_doc_id};
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::{CalendarDate, Money, Timestamp};
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{LinkProxy, SETTLE, TestServer, connect_client, eventually, temp_dir};
use serde_json::Value;
use tempfile::TempDir;

use crate::reports::{T0, acknowledge, check_out_and_complete, do_the_work, edit, outcome};

/// The chain's clock: an hour after [`T0`], the check-out times the tests use.
pub(crate) const CHAIN_NOW: i64 = T0 + 3_600_000;

/// Head office, one branch delivering to it through a cuttable link, one device.
pub(crate) struct Chain {
    pub(crate) head_office: TestServer,
    pub(crate) branch: TestServer,
    pub(crate) link: LinkProxy,
    device: DeviceId,
    key: KeyPair,
    client: SyncClient,
    /// Both servers' clock.
    pub(crate) clock: Clock,
    _dirs: Vec<TempDir>,
}

impl Chain {
    /// Both servers run on one manual clock at [`CHAIN_NOW`]: reports are signed, archived and
    /// counted in October 2026 whatever day the suite runs.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::start_enrolling(true).await
    }

    /// [`Chain::start`]; with `right_key` false, head office enrolls another key for the
    /// branch (an operator's mistake), so it rejects the branch's reports.
    pub(crate) async fn start_enrolling(right_key: bool) -> anyhow::Result<Self> {
        Self::start_with(right_key, |_| {}).await
    }

    /// [`Chain::start_enrolling`], with `adjust` applied to head office's config.
    pub(crate) async fn start_with(
        right_key: bool,
        adjust: impl FnOnce(&mut fieldsync_server::config::Config),
    ) -> anyhow::Result<Self> {
        let (ho_dir, branch_dir, device_dir) = (temp_dir()?, temp_dir()?, temp_dir()?);
        let clock = Clock::manual(Timestamp::from_millis(CHAIN_NOW));
        let head_office =
            TestServer::start_head_office_with(ho_dir.path(), clock.clone(), adjust).await?;
        let token_file = if right_key {
            head_office.enroll_branch("north-01", branch_dir.path())?
        } else {
            let elsewhere = temp_dir()?;
            let file = head_office.enroll_branch("north-01", elsewhere.path())?;
            let moved = branch_dir.path().join("upstream.token");
            std::fs::copy(&file, &moved)?;
            moved
        };
        let link = LinkProxy::start(head_office.addr).await?;
        let branch =
            TestServer::start_branch(branch_dir.path(), link.ws_url(), token_file, clock.clone())
                .await?;
        let (device, key) = branch.enroll_with_key("tech-wang", "dev-a")?;
        let client = branch.connect_device(&device, device_dir.path()).await?;
        Ok(Self {
            head_office,
            branch,
            link,
            device,
            key,
            client,
            clock,
            _dirs: vec![ho_dir, branch_dir, device_dir],
        })
    }

    /// A job assigned, worked, acknowledged and completed on the device; returns the job and
    /// the report id the branch signed.
    pub(crate) async fn complete_a_job(&self, at: i64) -> anyhow::Result<(DocumentId, String)> {
        let created = self.branch.create_job("tech-wang").await?;
        self.client.subscribe(created.job);
        anyhow::ensure!(
            self.client
                .wait_for(created.job, SETTLE, |d| read_job(d).is_ok())
                .await,
            "the job did not reach the device"
        );
        do_the_work(&self.client, created.job).await?;
        acknowledge(&self.client, created.job, &self.device, &self.key).await?;
        check_out_and_complete(&self.client, created.job, true, at).await?;
        match outcome(&self.client, created.job).await {
            Some(ReportOutcome::Signed { report_id, .. }) => Ok((created.job, report_id)),
            other => anyhow::bail!("the branch did not sign: {other:?}"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = reqwest::Client::new()
            .get(self.head_office.http_url(path))
            .bearer_auth(self.head_office.desk_token(DeskRole::Analyst)?)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub(crate) async fn wait_verified(&self, report_id: &str) -> anyhow::Result<Value> {
        let path = format!("/api/archive/reports/{report_id}");
        let found = eventually(SETTLE, "the report verified at head office", || async {
            match self.get(&path).await {
                Ok((200, body)) if body["status"] == "verified" => Some(body),
                _ => None,
            }
        })
        .await;
        if found.is_err() {
            // Say where it stuck: what head office set aside, and the link's counters.
            let aside = self.get("/api/archive/rejected").await?.1;
            let metrics = reqwest::get(self.branch.http_url("/metrics"))
                .await?
                .text()
                .await?;
            let upstream: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("fieldsync_upstream"))
                .collect();
            anyhow::bail!(
                "report {report_id} not verified; set aside: {aside}; branch: {upstream:?}"
            );
        }
        found
    }

    /// Waits until the branch has durably recorded that head office holds `report_id`.
    pub(crate) async fn wait_delivered(&self, report_id: &str) -> anyhow::Result<()> {
        eventually(SETTLE, "the branch records the delivery", || async {
            self.branch
                .state
                .store
                .meta(DELIVERED, report_id)
                .ok()
                .flatten()
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.client.close();
        self.branch.stop().await?;
        self.head_office.stop().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_job_reaches_head_office_verified_and_counts_in_the_month() -> anyhow::Result<()>
{
    let chain = Chain::start().await?;
    let (job, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    let archived = chain.wait_verified(&report_id).await?;
    assert_eq!(archived["branch_id"], "north-01");
    assert_eq!(archived["job_id"], job.to_string());
    assert_eq!(archived["customer_id"], "c-1001");
    assert_eq!(archived["product_type"], "chiller");

    // The branch learns head office holds it, durably, and stops offering it.
    chain.wait_delivered(&report_id).await?;

    // R25: archived by month, customer and product type.
    let entry: ArchivedReport = serde_json::from_value(archived.clone())?;
    let month = entry.month.to_string();
    for query in [
        format!("month={month}"),
        "customer=c-1001".to_owned(),
        "product_type=chiller".to_owned(),
    ] {
        let (status, body) = chain.get(&format!("/api/archive/reports?{query}")).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["reports"].as_array().map(Vec::len),
            Some(1),
            "{query}: {body}"
        );
    }
    let (_, none) = chain.get("/api/archive/reports?customer=c-404").await?;
    assert_eq!(none["reports"].as_array().map(Vec::len), Some(0));

    // The export verifies offline with the branch's public key alone (plus the attested
    // device, which the trust directory of the branch carries).
    let response = reqwest::Client::new()
        .get(
            chain
                .head_office
                .http_url(&format!("/api/archive/reports/{report_id}/export")),
        )
        .bearer_auth(chain.head_office.desk_token(DeskRole::Analyst)?)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let exported = response.bytes().await?;
    let trust_dir = temp_dir()?;
    let devices: Vec<_> = chain
        .branch
        .state
        .registry_read()
        .devices()
        .cloned()
        .collect();
    fieldsync_server::trust::export(
        trust_dir.path(),
        &chain.branch.state.branch_id,
        chain.branch.state.server_key.public(),
        &devices,
    )?;
    let verified = fieldsync_server::trust::load(trust_dir.path())?.verify_json(&exported)?;
    assert_eq!(verified.report.body.report_id, report_id);

    // R24 for the month, computed by hand from the one job: a repair (service dispatch) by
    // one technician, on site within a day, one 12.50 capacitor, no labour or travel recorded.
    let (status, stats) = chain.get(&format!("/api/stats?month={month}")).await?;
    assert_eq!(status, 200, "{stats}");
    let s = &stats[0];
    assert_eq!(s["branch_id"], "north-01");
    assert_eq!(s["service"]["jobs"], 1);
    assert_eq!(s["service"]["person_trips"], 1);
    assert_eq!(s["service"]["person_days"], 1);
    assert_eq!(s["service"]["cost"], 1250);
    assert_eq!(s["installation"]["jobs"], 0);
    assert_eq!(s["materials_cost"], 1250);
    assert_eq!(s["transport_cost"], 0);
    assert_eq!(s["total_cost_excluding_installation_fees"], 1250);
    assert_eq!(s["summary"]["reports"], 1);
    assert_eq!(s["summary"]["mean_attitude"], 5.0);
    let (_, csv) = chain
        .get(&format!("/api/stats?month={month}&format=csv"))
        .await?;
    assert!(
        csv.as_str().is_some_and(
            |t| t.contains("north-01,") && t.contains("materials cost (in costs above),12.50")
        ),
        "{csv}"
    );
    let (status, bad) = chain.get("/api/stats?month=2026-13").await?;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_month")));

    // The archive's error paths: a malformed id, an unknown one, and an edge asked for it.
    let (status, bad) = chain.get("/api/archive/reports/not-a-report-id").await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_report_id"))
    );
    let unknown = format!("/api/archive/reports/{}", "0".repeat(32));
    let (status, bad) = chain.get(&unknown).await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (404, Some("unknown_report"))
    );
    let (status, bad) = chain.get(&format!("{unknown}/export")).await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (404, Some("unknown_report"))
    );
    let at_edge = reqwest::Client::new()
        .get(chain.branch.http_url("/api/archive/reports"))
        .bearer_auth(chain.branch.desk_token(DeskRole::Analyst)?)
        .send()
        .await?;
    assert_eq!(at_edge.status().as_u16(), 404);
    let body: Value = at_edge.json().await?;
    assert_eq!(
        body["code"], "not_found",
        "an edge does not route the archive"
    );
    chain.stop().await
}

/// R28 and R24 (issue 15): a travel expense claim the technician raised holds the report
/// back while it waits (`expense_undecided`, R28 only); a manager approves it at the desk and
/// the branch signs without the technician doing anything more; the signed report carries
/// the claim, and head office counts it in the month's cost from the report alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r28_an_approved_travel_expense_is_signed_in_the_report_and_counted_at_head_office_r24()
-> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let job = chain.branch.create_job("tech-wang").await?.job;
    chain.client.subscribe(job);
    anyhow::ensure!(
        chain
            .client
            .wait_for(job, SETTLE, |d| read_job(d).is_ok())
            .await,
        "the job did not reach the device"
    );
    do_the_work(&chain.client, job).await?;
    // The claim, made on the device: a taxi to the site, 86.00.
    let claim = Approval {
        id: "exp-taxi".into(),
        kind: ApprovalKind::TravelExpense,
        reason: "no bus to the site".into(),
        requested_by: "tech-wang".into(),
        requested_at: Timestamp::from_millis(T0 + 30_000),
        amount: Some(Money(8_600)),
        expense: Some(TravelExpense {
            date: CalendarDate::from_ymd(2026, 10, 27)?,
            from: "north-01".into(),
            to: "Plant 3".into(),
            category: "taxi".into(),
            receipt: None,
        }),
        decision: None,
    };
    edit(&chain.client, job, move |jd| {
        request_approval(jd.inner_mut(), &claim)
            .map_err(|e| EditError::InvalidResolution(e.to_string()))
    })
    .await?;
    acknowledge(&chain.client, job, &chain.device, &chain.key).await?;
    check_out_and_complete(&chain.client, job, true, T0 + 60_000).await?;
    match outcome(&chain.client, job).await {
        Some(ReportOutcome::Refused { reasons, .. }) => {
            let codes: Vec<(&str, &str)> = reasons
                .iter()
                .map(|r| (r.rule.as_str(), r.code.as_str()))
                .collect();
            assert_eq!(codes, [("R28", "expense_undecided")], "{reasons:?}");
        }
        other => anyhow::bail!("signed while a claim waited: {other:?}"),
    }

    let decided = reqwest::Client::new()
        .post(
            chain
                .branch
                .http_url(&format!("/api/jobs/{job}/approvals/exp-taxi/decision")),
        )
        .bearer_auth(chain.branch.desk_token(DeskRole::Manager)?)
        .json(&serde_json::json!({ "approved": true, "note": "receipt seen" }))
        .send()
        .await?;
    assert_eq!(decided.status().as_u16(), 200, "{}", decided.text().await?);

    // Signed now, for the same completion request.
    let mut signed = None;
    chain
        .client
        .wait_for(job, SETTLE, |d| {
            signed = match read_job(d).ok().and_then(|j| j.report) {
                Some(ReportOutcome::Signed { report_id, .. }) => Some(report_id),
                _ => None,
            };
            signed.is_some()
        })
        .await;
    let report_id = signed.context("the branch did not sign once the claim was approved")?;

    // The report carries the approved claim; the customer's acknowledgement still holds.
    let archived = chain.wait_verified(&report_id).await?;
    let entry: ArchivedReport = serde_json::from_value(archived)?;
    let report: SignedReport = serde_json::from_value(entry.report)?;
    let content = report.job()?;
    assert_eq!(content.expenses.len(), 1);
    let carried = &content.expenses[0];
    assert_eq!(
        (carried.id.as_str(), carried.amount, carried.by.as_str()),
        ("exp-taxi", Money(8_600), "tech-wang")
    );
    assert_eq!(carried.approved_by, "desk:manager");

    // R24 by hand: one repair, a 12.50 capacitor, no labour or travel recorded, and the
    // approved 86.00 taxi: the service cost and the total are 98.50, 86.00 of it travel
    // expenses (R28), none of it materials or transport beyond the part.
    let month = entry.month.to_string();
    let (status, stats) = chain.get(&format!("/api/stats?month={month}")).await?;
    assert_eq!(status, 200, "{stats}");
    let s = &stats[0];
    assert_eq!(s["service"]["cost"], 9_850);
    assert_eq!(s["materials_cost"], 1_250);
    assert_eq!(s["transport_cost"], 0);
    assert_eq!(s["travel_expenses"], 8_600);
    assert_eq!(s["total_cost_excluding_installation_fees"], 9_850);
    let (_, csv) = chain
        .get(&format!("/api/stats?month={month}&format=csv"))
        .await?;
    assert!(
        csv.as_str()
            .is_some_and(|t| t.contains("R28 travel expenses approved (in costs above),86.00")),
        "{csv}"
    );
    chain.stop().await
}

/// What the branch sent for a report: its document content, for tampering.
fn genuine(branch: &TestServer, report_id: &str) -> anyhow::Result<ReportDoc> {
    let doc = report_doc_id(report_id).ok_or_else(|| anyhow::anyhow!("bad report id"))?;
    let chunks = branch
        .state
        .store
        .load_doc(&doc.to_string())?
        .ok_or_else(|| anyhow::anyhow!("no report document at the branch"))?;
    let mut am = Automerge::new();
    for chunk in &chunks {
        am.load_incremental(chunk)?;
    }
    ReportDoc::from_document(&am)?.ok_or_else(|| anyhow::anyhow!("not a report document"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_reports_are_kept_aside_with_the_reason_never_archived() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let (job, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    chain.wait_verified(&report_id).await?;
    let original = genuine(&chain.branch, &report_id)?;
    let report: SignedReport = serde_json::from_slice(&original.report_json)?;
    let branch_key = &chain.branch.state.server_key;

    // Each variant travels in its own document, sent by branch north-01 itself (its token),
    // as a compromised link or a tampering branch process would.
    let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut content = serde_json::to_value(&report)?;
    content["body"]["content"]["diagnosis"]["fault_cause"] = "Worn sparkly capacitor".into();
    variants.push(("bad_branch_signature", serde_json::to_vec(&content)?));
    let mut heads = serde_json::to_value(&report)?;
    heads["body"]["heads"] = serde_json::json!(["00".repeat(32)]);
    variants.push(("bad_branch_signature", serde_json::to_vec(&heads)?));
    // One bit of R flipped. (Not the last byte: it is the top byte of S, below 0x10, so
    // overwriting it with 00 leaves a real signature unchanged about once in sixteen.)
    let mut signature = report.clone();
    let mut bytes = hex::decode(&signature.signature)?;
    bytes[0] ^= 0x01;
    signature.signature = hex::encode(bytes);
    variants.push(("bad_branch_signature", serde_json::to_vec(&signature)?));
    // Signed by a key head office never enrolled.
    let stranger = KeyPair::generate()?;
    let job_now = report.job()?;
    let forged = SignedReport::sign(
        &job_now,
        report.body.heads.clone(),
        report.body.signed_at,
        None,
        &stranger,
    )?;
    variants.push(("unknown_key", forged.to_canonical_json()?));
    // Re-signed by the real branch key over heads of an earlier state of the job: the
    // document at those heads is not the reported content.
    let earlier = {
        let chunks = chain
            .branch
            .state
            .store
            .load_doc(&job.to_string())?
            .ok_or_else(|| anyhow::anyhow!("no job at the branch"))?;
        let mut am = Automerge::new();
        for chunk in &chunks {
            am.load_incremental(chunk)?;
        }
        let changes = am.get_changes(&[]);
        let first = changes
            .first()
            .ok_or_else(|| anyhow::anyhow!("no changes"))?;
        vec![first.hash().to_string()]
    };
    let moved = SignedReport::sign(&job_now, earlier, report.body.signed_at, None, branch_key)?;
    variants.push(("digest_mismatch", moved.to_canonical_json()?));

    let store_dir = temp_dir()?;
    let store = std::sync::Arc::new(Store::open(
        store_dir.path().join("tamper.sqlite"),
        StoreConfig::default(),
    )?);
    let token = std::fs::read_to_string(chain.branch.data_dir.join("upstream.token"))?;
    let tamperer_store = std::sync::Arc::clone(&store);
    let tamperer = connect_client(
        &chain.head_office.ws_url(),
        &token,
        "branch-north-01:tamper",
        store,
    )
    .await?;
    let mut sent = Vec::new();
    for (code, json) in &variants {
        let doc = DocumentId::random();
        let content = ReportDoc {
            report_json: json.clone(),
            attestation: original.attestation.clone(),
        }
        .to_document()?;
        tamperer.subscribe(doc);
        tamperer
            .edit(doc, LocalEdit::Create(Box::new(content)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sent.push((doc, *code));
    }

    let rejected = eventually(SETTLE, "every variant kept aside", || async {
        let (_, body) = chain.get("/api/archive/rejected").await.ok()?;
        let list = body["rejected"].as_array()?.clone();
        (list.len() >= sent.len()).then_some(list)
    })
    .await;
    let Ok(rejected) = rejected else {
        let (_, body) = chain.get("/api/archive/rejected").await?;
        let metrics = reqwest::get(chain.head_office.http_url("/metrics"))
            .await?
            .text()
            .await?;
        let refused: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("refus") && !l.starts_with('#'))
            .collect();
        let held: Vec<String> = sent
            .iter()
            .map(|(d, _)| {
                format!(
                    "{d}: owner {:?} stored {:?} at tamperer {:?}",
                    chain.head_office.state.registry_read().owner(d),
                    chain
                        .head_office
                        .state
                        .store
                        .load_doc(&d.to_string())
                        .map(|c| c.map(|c| c.len())),
                    tamperer_store
                        .load_doc(&d.to_string())
                        .map(|c| c.map(|c| c.len())),
                )
            })
            .collect();
        anyhow::bail!("sent {held:?}; head office set aside {body}; refusals {refused:?}");
    };
    for (doc, code) in &sent {
        let entry = rejected
            .iter()
            .find(|r| r["report_doc"] == doc.to_string())
            .unwrap_or_else(|| panic!("{doc} ({code}) not kept aside: {rejected:?}"));
        assert_eq!(entry["code"], *code, "{entry}");
        assert_eq!(entry["from_branch"], "north-01");
        assert!(!entry["message"].as_str().unwrap_or("").is_empty());
    }
    // Only the genuine report is archived.
    let (_, list) = chain.get("/api/archive/reports").await?;
    assert_eq!(list["reports"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["reports"][0]["report_id"], report_id.as_str());
    tamperer.close();
    chain.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_arrive_exactly_once_however_often_the_branch_link_drops() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let mut reports = Vec::new();
    for n in 0..4 {
        // The link drops and returns while jobs are completed and delivered.
        chain.link.cut();
        let (_, id) = chain.complete_a_job(T0 + 60_000 * (n + 1)).await?;
        reports.push(id);
        tokio::time::sleep(Duration::from_millis(150)).await;
        chain.link.restore();
        tokio::time::sleep(Duration::from_millis(300 + 200 * n as u64)).await;
        chain.link.cut();
        tokio::time::sleep(Duration::from_millis(100)).await;
        chain.link.restore();
    }
    for id in &reports {
        chain.wait_verified(id).await?;
    }
    eventually(SETTLE, "the branch records every delivery", || async {
        let delivered = chain.branch.state.store.meta_entries(DELIVERED).ok()?;
        (delivered.len() == reports.len()).then_some(())
    })
    .await?;
    let (_, list) = chain.get("/api/archive/reports").await?;
    let mut ids: Vec<String> = list["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["report_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let mut expected = reports.clone();
    expected.sort();
    assert_eq!(ids, expected, "every report exactly once");
    let (_, rejected) = chain.get("/api/archive/rejected").await?;
    assert_eq!(
        rejected["rejected"].as_array().map(Vec::len),
        Some(0),
        "{rejected}"
    );
    chain.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_never_sees_another_branchs_documents_at_head_office() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let (job, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    chain.wait_verified(&report_id).await?;
    // A second enrolled branch asks head office for north-01's job and report.
    let other_dir = temp_dir()?;
    let token_file = chain
        .head_office
        .enroll_branch("south-02", other_dir.path())?;
    let token = std::fs::read_to_string(token_file)?;
    let store_dir = temp_dir()?;
    let store = std::sync::Arc::new(Store::open(
        store_dir.path().join("south.sqlite"),
        StoreConfig::default(),
    )?);
    let south = connect_client(
        &chain.head_office.ws_url(),
        &token,
        "branch-south-02",
        store,
    )
    .await?;
    let mut events = south.events();
    let report_doc = report_doc_id(&report_id).ok_or_else(|| anyhow::anyhow!("bad id"))?;
    for doc in [job, report_doc] {
        south.subscribe(doc);
    }
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(fieldsync_client::ClientEvent::DocUnavailable { doc })) =
            tokio::time::timeout(Duration::from_millis(200), events.recv()).await
        {
            seen.insert(doc);
        }
    }
    // Whatever the events, nothing of north-01's arrived.
    for doc in [job, report_doc] {
        let held = south.read(doc).await;
        assert!(
            held.is_none_or(|d| d.get_heads().is_empty() && d.keys(automerge::ROOT).count() == 0),
            "south-02 received {doc}"
        );
    }
    assert_eq!(
        seen.len(),
        2,
        "head office answers doc-unavailable for both: {seen:?}"
    );
    south.close();
    chain.stop().await
}

/// A report document that reaches head office before its job waits (`pending`, with the
/// reason) and is verified and archived once the job arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_arrives_before_its_job_waits_then_is_verified() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    // Signed at the branch while head office is unreachable.
    chain.link.cut();
    let (job, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    let report_doc = report_doc_id(&report_id).ok_or_else(|| anyhow::anyhow!("bad id"))?;
    eventually(SETTLE, "the report document at the branch", || async {
        genuine(&chain.branch, &report_id).ok()
    })
    .await?;
    let content = genuine(&chain.branch, &report_id)?.to_document()?;

    // The report document alone, sent over another connection of the same branch, as a
    // link that delivered one document before the other would.
    let store_dir = temp_dir()?;
    let store = std::sync::Arc::new(Store::open(
        store_dir.path().join("early.sqlite"),
        StoreConfig::default(),
    )?);
    let token = std::fs::read_to_string(chain.branch.data_dir.join("upstream.token"))?;
    let early = connect_client(
        &chain.head_office.ws_url(),
        &token,
        "branch-north-01:early",
        store,
    )
    .await?;
    early.subscribe(report_doc);
    early
        .edit(report_doc, LocalEdit::Create(Box::new(content)))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = format!("/api/archive/reports/{report_id}");
    let pending = eventually(SETTLE, "the report pending at head office", || async {
        let (status, body) = chain.get(&path).await.ok()?;
        (status == 200 && body["status"] == "pending").then_some(body)
    })
    .await?;
    assert_eq!(pending["code"], "awaiting_job_document", "{pending}");
    assert_eq!(pending["job_id"], job.to_string());
    let (_, aside) = chain.get("/api/archive/rejected").await?;
    assert_eq!(
        aside["pending"].as_array().map(Vec::len),
        Some(1),
        "{aside}"
    );
    assert_eq!(
        aside["rejected"].as_array().map(Vec::len),
        Some(0),
        "{aside}"
    );
    early.close();

    // The link returns: the branch delivers the job, and the waiting report is verified.
    chain.link.restore();
    let verified = chain.wait_verified(&report_id).await?;
    assert_eq!(verified["job_id"], job.to_string());
    let (_, aside) = chain.get("/api/archive/rejected").await?;
    assert_eq!(
        aside["pending"].as_array().map(Vec::len),
        Some(0),
        "{aside}"
    );
    chain.wait_delivered(&report_id).await?;
    chain.stop().await
}

/// Found by the crash loop (issue 13): head office stored a report document, so the branch
/// was told head office holds it and recorded the delivery, and was killed before its verifier
/// archived it. Nothing about the document changes again and the branch never offers it
/// again, yet after the restart the report must be archived: head office looks once at every
/// stored document whose report is neither archived nor kept aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_stored_just_before_head_office_dies_is_archived_after_the_restart()
-> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let (_, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    chain.wait_verified(&report_id).await?;
    chain.wait_delivered(&report_id).await?;
    let Chain {
        head_office,
        branch,
        link,
        client,
        _dirs,
        ..
    } = chain;
    client.close();
    branch.stop().await?;
    drop(link);
    let data_dir = head_office.data_dir.clone();
    head_office.stop().await?;

    // What a kill before the verifier's archive row leaves: the documents stored and owned
    // by the branch, no archive row.
    fieldsync_tests::pg::unarchive(&data_dir, &report_id).await?;

    let clock = Clock::manual(Timestamp::from_millis(CHAIN_NOW));
    let head_office = TestServer::start_head_office(&data_dir, clock).await?;
    let token = head_office.desk_token(DeskRole::Analyst)?;
    let url = head_office.http_url(&format!("/api/archive/reports/{report_id}"));
    eventually(
        SETTLE,
        "the report is archived after the restart",
        || async {
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            let body: Value = response.json().await.ok()?;
            (body["status"] == "verified").then_some(())
        },
    )
    .await?;
    head_office.stop().await
}

/// Issue 16 (time zones): head office in UTC+8 files a report signed at 00:30 on 1 December in
/// Shanghai (16:30 on 30 November, UTC) in December (R25), and counts it in December's
/// statistics (R24); in UTC it would be November's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_r25_head_office_files_a_report_in_the_month_of_its_time_zone() -> anyhow::Result<()> {
    let chain = Chain::start_with(true, |c| {
        c.timezone = "Asia/Shanghai"
            .parse()
            .expect("in the bundled zone database");
    })
    .await?;
    let signing: Timestamp = "2026-11-30T16:30:00Z".parse()?;
    chain.clock.set(signing);
    let (_, report_id) = chain.complete_a_job(signing.as_millis() - 60_000).await?;
    let archived = chain.wait_verified(&report_id).await?;
    assert_eq!(archived["month"], "2026-12", "{archived}");
    let reports = |month: &'static str| {
        let chain = &chain;
        async move {
            let (status, stats) = chain.get(&format!("/api/stats?month={month}")).await?;
            anyhow::ensure!(status == 200, "{stats}");
            anyhow::Ok(
                stats
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s["summary"]["reports"].as_u64().unwrap_or(0))
                    .sum::<u64>(),
            )
        }
    };
    assert_eq!(reports("2026-12").await?, 1);
    assert_eq!(reports("2026-11").await?, 0);
    Ok(())
}
