//! Complaints reach head office (issue 6, R20–R23) and the monthly complaint rate and
//! attribution are computed there across branches (R22); forged or misplaced complaint
//! documents are kept aside.

use std::time::Duration;

use automerge::transaction::Transactable;
use fieldsync_server::auth::DeskRole;
use fieldsync_server::clock::Clock;
use fieldsync_server::edge::upstream::COMPLAINTS_DELIVERED;
use fieldsync_server::head_office::archive::ArchivedReport;
use fieldsync_shared::complaint_doc::{COMPLAINT_DOC_KIND, ComplaintDoc, complaint_doc_id};
use fieldsync_shared::ids::{BranchId, DocumentId};
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::sync::LocalEdit;
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Store, StoreConfig};
use fieldsync_tests::{SETTLE, TestServer, connect_client, eventually, temp_dir};
use serde_json::{Value, json};

use crate::head_office::{CHAIN_NOW, Chain};
use crate::reports::T0;

async fn desk(server: &TestServer, path: &str, body: Value) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .post(server.http_url(path))
        .bearer_auth(server.desk_token(DeskRole::Manager)?)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
    Ok(body)
}

async fn register(
    server: &TestServer,
    category: &str,
    received_at: &str,
) -> anyhow::Result<String> {
    let body = desk(
        server,
        "/api/complaints",
        json!({
            "channel": "phone",
            "category": category,
            "received_at": received_at,
            "complainant": "Ms Lin, plant manager",
            "contact": "+886 2 5555 0101",
            "content": "The technician arrived two hours late",
            "asks": "an apology and a firm appointment next time",
            "recorded_by": "desk-chen",
        }),
    )
    .await?;
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no complaint id in {body}"))
}

async fn step(server: &TestServer, id: &str, body: Value) -> anyhow::Result<Value> {
    desk(server, &format!("/api/complaints/{id}/steps"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_complaints_reach_head_office_and_are_counted_across_branches() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    // A second branch, straight to head office (no relay).
    let south_dir = temp_dir()?;
    let token_file = chain
        .head_office
        .enroll_branch("south-02", south_dir.path())?;
    let south = TestServer::start_named_branch(
        "south-02",
        south_dir.path(),
        chain.head_office.ws_url(),
        token_file,
        chain.head_office.state.clock.clone(),
    )
    .await?;

    // One job reported at north-01 in the month: the rate's denominator there.
    let (_, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    let archived: ArchivedReport = serde_json::from_value(chain.wait_verified(&report_id).await?)?;
    let month = archived.month;
    let in_month = format!("{month}-10T09:00:00Z");

    // R20/R21 at each branch's desk: north-01 one service complaint, judged valid; south-02 a
    // product-quality complaint and a suggestion.
    let north_id = register(&chain.branch, "service", &in_month).await?;
    step(
        &chain.branch,
        &north_id,
        json!({"step": "classify", "by": "mgr-ho", "what": "late arrival confirmed", "valid": true}),
    )
    .await?;
    let quality = register(&south, "product_quality", &in_month).await?;
    register(&south, "suggestion", &in_month).await?;
    // One received the month before does not count in this month.
    let previous = month
        .previous()
        .ok_or_else(|| anyhow::anyhow!("no month before {month}"))?;
    let earlier = format!("{previous}-28T09:00:00Z");
    register(&south, "service", &earlier).await?;

    let path = format!("/api/stats/complaints?month={month}");
    let report = eventually(SETTLE, "R22 across branches at head office", || async {
        let (status, body) = chain.get(&path).await.ok()?;
        (status == 200 && body["total"]["complaints"] == 3 && body["total"]["valid"] == 1)
            .then_some(body)
    })
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let (_, now) = chain.get(&path).await?;
            let (_, aside) = chain.get("/api/archive/complaints/rejected").await?;
            anyhow::bail!("{e}: head office says {now}; kept aside {aside}");
        }
    };
    let branch = |id: &str| -> Value {
        report["branches"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["branch_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let north = branch("north-01");
    assert_eq!(north["complaints"], 1, "{report}");
    assert_eq!(
        north["reports_verified"], 1,
        "one verified report in the month: {report}"
    );
    assert_eq!(north["rate"], 1.0);
    assert_eq!(north["by_attribution"]["non_quality"], 1);
    assert_eq!(north["valid"], 1);
    assert_eq!(north["open"], 1, "classified, not closed");
    let south_row = branch("south-02");
    assert_eq!(south_row["complaints"], 2, "{report}");
    assert_eq!(south_row["reports_verified"], 0);
    assert_eq!(south_row["rate"], Value::Null, "no jobs, no rate");
    assert_eq!(south_row["by_attribution"]["quality"], 1);
    assert_eq!(south_row["by_attribution"]["other"], 1);
    assert_eq!(report["total"]["complaints"], 3);
    assert_eq!(report["total"]["reports_verified"], 1);
    assert_eq!(report["total"]["rate"], 3.0);
    assert_eq!(report["total"]["by_category"]["product_quality"], 1);

    // R23 at head office: the full record, as its branch last sent it.
    let (status, one) = chain
        .get(&format!("/api/archive/complaints/south-02/{quality}"))
        .await?;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["complaint"]["category"], "product_quality");
    assert_eq!(one["complaint"]["steps"][0]["step"], "record");
    assert_eq!(one["revision"], 1);

    // The link drops; north-01's desk carries its complaint on; when the link returns the
    // new revision reaches head office and the branch records the delivery.
    chain.link.cut();
    step(
        &chain.branch,
        &north_id,
        json!({"step": "assign_unit", "by": "mgr-ho", "what": "service department", "unit": "service department"}),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    chain.link.restore();
    let one_path = format!("/api/archive/complaints/north-01/{north_id}");
    let latest = eventually(SETTLE, "the new revision at head office", || async {
        let (status, body) = chain.get(&one_path).await.ok()?;
        (status == 200 && body["revision"] == 3).then_some(body)
    })
    .await?;
    assert_eq!(latest["complaint"]["unit"], "service department");
    assert_eq!(latest["complaint"]["next_step"], "investigate");
    let doc = complaint_doc_id(&BranchId::new("north-01")?, &north_id);
    eventually(
        SETTLE,
        "the branch records revision 3 delivered",
        || async {
            let stored = chain
                .branch
                .state
                .store
                .meta(COMPLAINTS_DELIVERED, &doc.to_string())
                .ok()??;
            (stored == b"3").then_some(())
        },
    )
    .await?;

    // Listing by month and branch; the month before holds south-02's earlier complaint.
    let (_, list) = chain
        .get(&format!(
            "/api/archive/complaints?month={month}&branch=south-02"
        ))
        .await?;
    assert_eq!(
        list["complaints"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );
    let (_, before) = chain
        .get(&format!("/api/archive/complaints?month={previous}"))
        .await?;
    assert_eq!(before["complaints"].as_array().map(Vec::len), Some(1));

    // The archive's error paths.
    let (status, bad) = chain.get("/api/stats/complaints?month=2026-13").await?;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_query")));
    let (status, bad) = chain
        .get("/api/archive/complaints/north-01/cmp-none")
        .await?;
    assert_eq!(
        (status, bad["code"].as_str()),
        (404, Some("unknown_complaint"))
    );
    let at_edge = reqwest::Client::new()
        .get(chain.branch.http_url("/api/stats/complaints?month=2026-11"))
        .bearer_auth(chain.branch.desk_token(DeskRole::Analyst)?)
        .send()
        .await?;
    assert_eq!(at_edge.status().as_u16(), 404);

    south.stop().await?;
    chain.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_forged_or_misplaced_complaints_are_kept_aside_never_counted() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let south_dir = temp_dir()?;
    let south_token = chain
        .head_office
        .enroll_branch("south-02", south_dir.path())?;
    let north = BranchId::new("north-01")?;
    let record = |id: &str| {
        json!({
            "id": id, "channel": "phone", "category": "service",
            "received_at": "2026-11-10T09:00:00Z", "complainant": "someone", "contact": "",
            "customer_id": null, "against_job": null, "against_technician": null,
            "content": "made up", "asks": "nothing", "valid": null, "unit": null,
            "solution": null, "customer_reaction": null, "responsible": null,
            "penalty": null, "outcome": null, "steps": [],
        })
    };
    let north_key = &chain.branch.state.server_key;
    let stranger = KeyPair::generate()?;
    // (who sends, the complaint, the code head office must give)
    let variants = vec![
        // south-02 sends a complaint that says it is north-01's, signed with north's key.
        (
            "south",
            ComplaintDoc::sign(
                north.clone(),
                "cmp-forged-1".into(),
                1,
                &record("cmp-forged-1"),
                north_key,
            )?,
            "wrong_branch",
        ),
        // north-01's own link, a key head office never enrolled.
        (
            "north",
            ComplaintDoc::sign(
                north.clone(),
                "cmp-forged-2".into(),
                1,
                &record("cmp-forged-2"),
                &stranger,
            )?,
            "unknown_key",
        ),
        // Altered after signing.
        (
            "north",
            {
                let mut c = ComplaintDoc::sign(
                    north.clone(),
                    "cmp-forged-3".into(),
                    1,
                    &record("cmp-forged-3"),
                    north_key,
                )?;
                c.record_json = c.record_json.replace("made up", "made up twice");
                c
            },
            "bad_branch_signature",
        ),
        // Genuine signature, but the record inside is another complaint.
        (
            "north",
            ComplaintDoc::sign(
                north.clone(),
                "cmp-forged-4".into(),
                1,
                &record("cmp-other"),
                north_key,
            )?,
            "malformed",
        ),
    ];
    // (who sends, under which id, the document, the code head office must give)
    let mut documents: Vec<(&str, DocumentId, automerge::Automerge, &str)> = Vec::new();
    for (sender, complaint, code) in &variants {
        documents.push((sender, complaint.doc_id(), complaint.to_document()?, code));
    }
    // A genuine complaint of north-01's, under an id that is not its own.
    let genuine = ComplaintDoc::sign(
        north.clone(),
        "cmp-moved".into(),
        1,
        &record("cmp-moved"),
        north_key,
    )?;
    documents.push((
        "north",
        DocumentId::random(),
        genuine.to_document()?,
        "wrong_document",
    ));
    // Of the complaint kind but unreadable: its revision is not a count.
    let mut unreadable = automerge::AutoCommit::new();
    unreadable.put(automerge::ROOT, "kind", COMPLAINT_DOC_KIND)?;
    unreadable.put(automerge::ROOT, "revision", "two")?;
    documents.push((
        "north",
        DocumentId::random(),
        unreadable.document().clone(),
        "malformed",
    ));
    let tokens = [
        (
            "north",
            std::fs::read_to_string(chain.branch.data_dir.join("upstream.token"))?,
            "branch-north-01:tamper",
        ),
        (
            "south",
            std::fs::read_to_string(south_token)?,
            "branch-south-02",
        ),
    ];
    let mut clients = Vec::new();
    let mut sent = Vec::new();
    for (who, token, peer) in &tokens {
        let store_dir = temp_dir()?;
        let store = std::sync::Arc::new(Store::open(
            store_dir.path().join("forger.sqlite"),
            StoreConfig::default(),
        )?);
        let client = connect_client(&chain.head_office.ws_url(), token, peer, store).await?;
        for (sender, doc, content, code) in &documents {
            if sender != who {
                continue;
            }
            client.subscribe(*doc);
            client
                .edit(*doc, LocalEdit::Create(Box::new(content.clone())))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            sent.push((*doc, *code));
        }
        clients.push((client, store_dir));
    }
    let rejected = eventually(SETTLE, "every forgery kept aside", || async {
        let (_, body) = chain.get("/api/archive/complaints/rejected").await.ok()?;
        let list = body["rejected"].as_array()?.clone();
        (list.len() >= sent.len()).then_some(list)
    })
    .await?;
    for (doc, code) in &sent {
        let entry = rejected
            .iter()
            .find(|r| r["document"] == doc.to_string())
            .unwrap_or_else(|| panic!("{doc} ({code}) not kept aside: {rejected:?}"));
        assert_eq!(entry["code"], *code, "{entry}");
        assert!(!entry["message"].as_str().unwrap_or("").is_empty());
    }
    let (_, list) = chain.get("/api/archive/complaints").await?;
    assert_eq!(
        list["complaints"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    let (_, stats) = chain.get("/api/stats/complaints?month=2026-11").await?;
    assert_eq!(stats["total"]["complaints"], 0, "{stats}");
    for (client, _dir) in clients {
        client.close();
    }
    chain.stop().await
}

/// A step stored at the desk whose complaint document was never written (a crash between the
/// two) still reaches head office: at start the outbox brings every document up to its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_a_step_stored_without_its_document_is_delivered_after_a_restart() -> anyhow::Result<()>
{
    let (ho_dir, branch_dir) = (temp_dir()?, temp_dir()?);
    let clock = Clock::manual(Timestamp::from_millis(CHAIN_NOW));
    let head_office = TestServer::start_head_office(ho_dir.path(), clock.clone()).await?;
    let token_file = head_office.enroll_branch("north-01", branch_dir.path())?;
    let branch = TestServer::start_branch(
        branch_dir.path(),
        head_office.ws_url(),
        token_file.clone(),
        clock.clone(),
    )
    .await?;
    let id = register(&branch, "product_quality", "2026-11-10T09:00:00Z").await?;
    let get = |path: String| {
        let head_office = &head_office;
        async move {
            let response = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .ok()?
                .get(head_office.http_url(&path))
                .bearer_auth(head_office.desk_token(DeskRole::Analyst).ok()?)
                .send()
                .await
                .ok()?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.ok()?;
            Some((status, body))
        }
    };
    let path = format!("/api/archive/complaints/north-01/{id}");
    eventually(SETTLE, "revision 1 at head office", || async {
        let (status, body) = get(path.clone()).await?;
        (status == 200 && body["revision"] == 1).then_some(())
    })
    .await?;
    branch.stop().await?;

    // Step 2 written straight into the desk's record, as if the server died before writing
    // the document.
    let store = Store::open(
        branch_dir.path().join("fieldsync.sqlite"),
        StoreConfig::default(),
    )?;
    let mut record = store
        .record("complaint", &id)?
        .ok_or_else(|| anyhow::anyhow!("no record {id}"))?;
    let mut complaint: Value = serde_json::from_slice(&record.body)?;
    complaint["valid"] = Value::Bool(false);
    complaint["steps"]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("no steps"))?
        .push(json!({"step": "classify", "number": 2, "by": "mgr-ho", "at": "2026-11-11T09:00:00Z", "what": "not our product"}));
    record.body = serde_json::to_vec(&complaint)?;
    record.revision += 1;
    store.put_record(record).wait()?;
    store.flush().wait()?;
    drop(store);

    let branch =
        TestServer::start_branch(branch_dir.path(), head_office.ws_url(), token_file, clock)
            .await?;
    let latest = eventually(SETTLE, "revision 2 at head office", || async {
        let (status, body) = get(path.clone()).await?;
        (status == 200 && body["revision"] == 2).then_some(body)
    })
    .await?;
    assert_eq!(latest["complaint"]["valid"], false, "{latest}");
    assert_eq!(latest["complaint"]["next_step"], "assign_unit");
    let (_, stats) = get("/api/stats/complaints?month=2026-11".into())
        .await
        .ok_or_else(|| anyhow::anyhow!("no stats"))?;
    assert_eq!(stats["total"]["not_valid"], 1, "{stats}");
    branch.stop().await?;
    head_office.stop().await
}
