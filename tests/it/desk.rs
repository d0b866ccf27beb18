//! The service desk API (issue #6) against a real server on a real port: intake and clocks
//! (R1, R2), dispatch (R3, R16), repeat repairs (R4), follow-up (R14), complaints (R20–R23),
//! parts (R17, R18) and tools (R19); roles, bad input and the OpenAPI document.

use std::collections::BTreeSet;

use fieldsync_client::SyncClient;
use fieldsync_server::auth::DeskRole;
use fieldsync_server::clock::Clock;
use fieldsync_server::config::Role;
use fieldsync_server::edge::desk::dispatch::on_report_signed;
use fieldsync_shared::ids::{DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::{Approval, ApprovalKind, read_approvals, request_approval};
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::sync::{LocalEdit, edit_via_autocommit};
use fieldsync_shared::time::{Money, Timestamp};
use fieldsync_tests::{SETTLE, TestServer, eventually, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

const HOUR: i64 = 60 * 60 * 1000;
const DAY: i64 = 24 * HOUR;

/// The desk's "now": its server runs on a manual clock stopped here (2026-11-20T10:00:00Z),
/// so every clock, list and due date below is the same whatever day the suite runs.
const NOW: i64 = 1_795_168_800_000;

/// The desk server's clock reading.
fn now() -> Timestamp {
    Timestamp::from_millis(NOW)
}

const DISPATCHER: DeskRole = DeskRole::Dispatcher;
const MANAGER: DeskRole = DeskRole::Manager;
const ANALYST: DeskRole = DeskRole::Analyst;

/// A server and an HTTP client that speaks to it with desk tokens.
struct Desk {
    server: TestServer,
    http: reqwest::Client,
    clock: Clock,
    _dir: TempDir,
}

impl Desk {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    async fn start_with(
        adjust: impl FnOnce(&mut fieldsync_server::config::Config),
    ) -> anyhow::Result<Self> {
        let dir = temp_dir()?;
        let clock = Clock::manual(now());
        let server = TestServer::start_with_clock(dir.path(), clock.clone(), adjust).await?;
        // R3: jobs go to technicians with an enrolled device; the desk's are these two.
        server.enroll("tech-wang", "dev-desk-wang")?;
        server.enroll("tech-li", "dev-desk-li")?;
        Ok(Self {
            server,
            http: reqwest::Client::new(),
            clock,
            _dir: dir,
        })
    }

    /// Stops the server and starts it again on the same data directory (default config).
    async fn restart(self) -> anyhow::Result<Self> {
        let Desk {
            server,
            http,
            clock,
            _dir,
        } = self;
        server.stop().await?;
        let server = TestServer::start_with_clock(_dir.path(), clock.clone(), |_| {}).await?;
        Ok(Desk {
            server,
            http,
            clock,
            _dir,
        })
    }

    /// The `fieldsync_approvals_waiting` gauge, as a scraper reads it.
    async fn approvals_waiting(&self) -> anyhow::Result<i64> {
        let text = self
            .http
            .get(self.server.http_url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("fieldsync_approvals_waiting "))
            .ok_or_else(|| anyhow::anyhow!("no fieldsync_approvals_waiting in /metrics"))?;
        Ok(value.trim().parse()?)
    }

    /// One request; `role` None sends no token. Answers the status and the JSON body.
    async fn call(
        &self,
        role: Option<DeskRole>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, self.server.http_url(path));
        if let Some(role) = role {
            request = request.bearer_auth(self.server.desk_token(role)?);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    async fn post(
        &self,
        role: DeskRole,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Some(role), Method::POST, path, Some(&body)).await
    }

    async fn get(&self, role: DeskRole, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Some(role), Method::GET, path, None).await
    }

    /// A call that must answer `expected`; returns the body.
    async fn expect(
        &self,
        role: DeskRole,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(Some(role), method.clone(), path, body.as_ref())
            .await?;
        anyhow::ensure!(
            status == expected,
            "{method} {path}: {status} (wanted {expected}): {body}"
        );
        Ok(body)
    }

    /// Registers a service request and returns its id.
    async fn request(&self, body: Value) -> anyhow::Result<String> {
        let created = self
            .expect(
                DISPATCHER,
                Method::POST,
                "/api/requests",
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
        str_of(&created["id"])
    }

    /// Makes a job of a request for `tech-wang`; returns the answer.
    async fn dispatch(&self, request: &str) -> anyhow::Result<Value> {
        self.expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requests/{request}/job"),
            Some(json!({"kind": "repair", "technician": "tech-wang"})),
            StatusCode::CREATED,
        )
        .await
    }
}

fn str_of(v: &Value) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("not a string: {v}"))
}

/// An instant `ms` from now, as the API writes it.
fn from_now(ms: i64) -> String {
    now().plus_millis(ms).to_string()
}

/// A valid request body received `ago` ms ago for product `serial`.
fn request_body(ago: i64, serial: &str, category: &str) -> Value {
    json!({
        "channel": "phone",
        "received_at": from_now(-ago),
        "customer": {"id": "c-1001", "name": "Lotus Foods Ltd", "contact": "Ms Chen", "site_address": "12 Harbour Road"},
        "product": {"model": "CH-500", "serial": serial, "product_type": "chiller"},
        "fault_description": "Compressor trips after ten minutes",
        "fault_category": category,
    })
}

/// Checks an error answer: the status, a stable code and a message that says something.
fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.len() > 5),
        "no message: {body}"
    );
}

fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().or(r["job_id"].as_str()).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn r1_r2_desk_requests_carry_reply_and_arrival_clocks() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    // Received 30 h ago, the customer wanted us 2 h ago: both clocks overdue.
    let mut late = request_body(30 * HOUR, "SN-1", "compressor");
    late["requested_arrival"] = json!(from_now(-2 * HOUR));
    let late = desk.request(late).await?;
    // Received 21 h ago: the reply is due within 3 h, inside the 4 h "soon" window.
    let soon = desk.request(request_body(21 * HOUR, "SN-2", "fan")).await?;
    // Received just now: nothing due yet.
    let fresh = desk.request(request_body(0, "SN-3", "fan")).await?;

    let one = desk
        .expect(
            ANALYST,
            Method::GET,
            &format!("/api/requests/{late}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(one["channel"], "phone", "R1 keeps the channel: {one}");
    assert_eq!(one["product"]["serial"], "SN-1");
    assert_eq!(one["reply_clock"], "overdue");
    assert_eq!(one["arrival_clock"], "overdue");
    let received: Timestamp = str_of(&one["received_at"])?.parse()?;
    let due: Timestamp = str_of(&one["reply_due"])?.parse()?;
    assert_eq!(
        due.as_millis() - received.as_millis(),
        24 * HOUR,
        "R2: 24 hours"
    );

    let overdue = desk.get(ANALYST, "/api/requests?due=overdue").await?.1;
    assert_eq!(ids(&overdue["requests"]), BTreeSet::from([late.clone()]));
    let due_soon = desk.get(DISPATCHER, "/api/requests?due=soon").await?.1;
    assert_eq!(ids(&due_soon["requests"]), BTreeSet::from([soon.clone()]));
    let open = desk.get(DISPATCHER, "/api/requests").await?.1;
    assert_eq!(open["requests"].as_array().map(Vec::len), Some(3));
    // Read a day later, the fresh one is overdue too.
    let tomorrow = from_now(25 * HOUR).replace('+', "%2B");
    let later = desk
        .get(
            DISPATCHER,
            &format!("/api/requests?due=overdue&at={tomorrow}"),
        )
        .await?
        .1;
    assert!(ids(&later["requests"]).contains(&fresh), "{later}");

    // The reply, late: the clock says so and the request leaves the overdue list only for
    // its arrival clock.
    let replied = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requests/{late}/reply"),
            Some(json!({"by": "Ms Zhou", "text": "A technician comes today"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(replied["reply_clock"], "met_late");
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{late}/reply"),
            json!({"by": "x", "text": "again"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_replied");

    // R2: a late arrival needs its cause; a personal cause is a recorded violation.
    let arrival = json!({"technician": "tech-wang", "at": from_now(-HOUR)});
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{late}/arrival"),
            arrival.clone(),
        )
        .await?;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "late_cause_required",
    );
    let mut with_cause = arrival;
    with_cause["cause"] = json!("personal");
    with_cause["note"] = json!("overslept");
    let arrived = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requests/{late}/arrival"),
            Some(with_cause),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(arrived["arrival"]["late"], true);
    assert_eq!(arrived["arrival"]["violation"], true, "R2: {arrived}");
    assert_eq!(arrived["arrival_clock"], "met_late");
    let overdue = desk.get(ANALYST, "/api/requests?due=overdue").await?.1;
    assert!(ids(&overdue["requests"]).is_empty(), "{overdue}");

    // Late for traffic: recorded, not a violation.
    let mut traffic = request_body(HOUR, "SN-4", "fan");
    traffic["requested_arrival"] = json!(from_now(-HOUR / 2));
    let traffic = desk.request(traffic).await?;
    let arrived = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requests/{traffic}/arrival"),
            Some(json!({"technician": "tech-li", "at": from_now(0), "cause": "traffic"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(
        (
            arrived["arrival"]["late"].clone(),
            arrived["arrival"]["violation"].clone()
        ),
        (json!(true), json!(false))
    );
    Ok(())
}

#[tokio::test]
async fn r3_r4_desk_dispatch_assigns_the_request_and_flags_repeat_repairs() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let old = desk
        .request(request_body(200 * DAY, "SN-77", "compressor"))
        .await?;
    let earlier = desk
        .request(request_body(60 * DAY, "sn-77 ", "Compressor"))
        .await?;
    let other_fault = desk.request(request_body(30 * DAY, "SN-77", "fan")).await?;
    let now_req = desk
        .request(request_body(HOUR, "SN-77", "compressor"))
        .await?;

    let old_job = str_of(&desk.dispatch(&old).await?["job_id"])?;
    let earlier_job = desk.dispatch(&earlier).await?;
    // R4: the 200-day-old job is 140 days before it, outside the 90-day window.
    assert_eq!(
        earlier_job["repeat_of"].as_array().map(Vec::len),
        Some(0),
        "{earlier_job}"
    );
    let earlier_job = str_of(&earlier_job["job_id"])?;
    served(&desk, &earlier_job, 59 * DAY).await?;
    served(&desk, &old_job, 199 * DAY).await?;
    desk.dispatch(&other_fault).await?;
    let created = desk.dispatch(&now_req).await?;
    let flagged: Vec<String> = created["repeat_of"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["job_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        flagged,
        std::slice::from_ref(&earlier_job),
        "R4: same serial, same fault, within 90 days: {created}"
    );
    assert_ne!(flagged, [old_job]);

    // The request now names its job, and cannot be dispatched twice.
    let job = str_of(&created["job_id"])?;
    let req = desk
        .get(ANALYST, &format!("/api/requests/{now_req}"))
        .await?
        .1;
    assert_eq!(req["job_id"], job.as_str());
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{now_req}/job"),
            json!({"kind": "repair", "technician": "tech-li"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_dispatched");

    // R3 dispatch: the technician's assignment index lists the job (their devices get it).
    let job_id: DocumentId = job.parse()?;
    let tech = TechnicianId::new("tech-wang")?;
    assert!(
        desk.server
            .state
            .registry_read()
            .assigned(&tech)
            .any(|j| *j == job_id)
    );
    // Reassigned: the old technician's index loses it, the new one's gains it.
    desk.expect(
        DISPATCHER,
        Method::PUT,
        &format!("/api/jobs/{job}/technicians"),
        Some(json!({"technicians": ["tech-li"]})),
        StatusCode::OK,
    )
    .await?;
    assert!(
        !desk
            .server
            .state
            .registry_read()
            .assigned(&tech)
            .any(|j| *j == job_id)
    );
    assert!(
        desk.server
            .state
            .registry_read()
            .assigned(&TechnicianId::new("tech-li")?)
            .any(|j| *j == job_id)
    );

    // R3: the appointment agreed with the customer goes into the job document.
    let at = from_now(DAY);
    let record = desk
        .expect(DISPATCHER, Method::PUT, &format!("/api/jobs/{job}/appointment"),
            Some(json!({"at": at, "contacted_by": "Ms Zhou", "fault_rechecked": "trips after 10 min, confirmed"})),
            StatusCode::OK)
        .await?;
    assert_eq!(record["appointment"]["at"], at.as_str());
    let stored = desk.server.fetch_job(job_id).await?;
    assert_eq!(stored.visit.appointment, Some(at.parse()?));
    assert!(
        stored
            .timeline
            .iter()
            .any(|e| e.kind == "appointment" && e.text.contains("confirmed"))
    );
    let record = desk.get(ANALYST, &format!("/api/jobs/{job}/desk")).await?.1;
    assert_eq!(record["request_id"], now_req.as_str());
    assert_eq!(record["repeat_of"][0]["job_id"], earlier_job.as_str());
    Ok(())
}

#[tokio::test]
async fn r4_desk_repeat_window_is_configurable_and_direct_jobs_are_checked_too()
-> anyhow::Result<()> {
    let desk = Desk::start_with(|c| c.repeat_window_days = 30).await?;
    let earlier = desk
        .request(request_body(60 * DAY, "SN-5", "compressor"))
        .await?;
    let earlier = str_of(&desk.dispatch(&earlier).await?["job_id"])?;
    // Served, so only the window keeps it out.
    served(&desk, &earlier, 59 * DAY).await?;
    let recent = desk
        .request(request_body(20 * DAY, "SN-5", "compressor"))
        .await?;
    let recent = str_of(&desk.dispatch(&recent).await?["job_id"])?;
    served(&desk, &recent, 19 * DAY).await?;
    // POST /api/jobs (no request) with a fault category: 60 days back is outside 30 days.
    let mut body = fieldsync_tests::sample_job_body("tech-wang");
    body["product"]["serial"] = json!("SN-5");
    body["request"]["received_at"] = json!(from_now(0));
    body["request"]["fault_category"] = json!("compressor");
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/jobs",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    let flagged: Vec<&str> = created["repeat_of"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["job_id"].as_str())
        .collect();
    assert_eq!(
        flagged,
        [recent.as_str()],
        "R4 with a 30-day window: {created}"
    );
    Ok(())
}

#[tokio::test]
async fn r16_desk_installation_jobs_keep_to_the_contract_date() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let req = desk.request(request_body(HOUR, "SN-9", "install")).await?;
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{req}/job"),
            json!({"kind": "installation", "technician": "tech-wang"}),
        )
        .await?;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "contract_due_required",
    );
    // Nothing was made: the request is free again.
    let due = now().plus_millis(3 * DAY).date()?.to_string();
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requests/{req}/job"),
            Some(json!({"kind": "installation", "technician": "tech-wang", "contract_due": due})),
            StatusCode::CREATED,
        )
        .await?;
    let job = str_of(&created["job_id"])?;
    let too_late = json!({
        "at": from_now(10 * DAY),
        "contacted_by": "Ms Zhou",
        "fault_rechecked": "new line",
    });
    let appointment = format!("/api/jobs/{job}/appointment");
    let (status, body) = desk
        .call(Some(DISPATCHER), Method::PUT, &appointment, Some(&too_late))
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "after_contract_due");
    desk.expect(
        DISPATCHER,
        Method::PUT,
        &format!("/api/jobs/{job}/appointment"),
        Some(
            json!({"at": from_now(DAY), "contacted_by": "Ms Zhou", "fault_rechecked": "new line"}),
        ),
        StatusCode::OK,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn r4_r14_desk_signed_report_rechecks_repeats_and_starts_the_follow_up() -> anyhow::Result<()>
{
    let desk = Desk::start().await?;
    // The desk thought "noise"; the technician diagnosed the compressor, as on an earlier job.
    let earlier = desk
        .request(request_body(40 * DAY, "SN-8", "compressor"))
        .await?;
    let earlier = str_of(&desk.dispatch(&earlier).await?["job_id"])?;
    // R4 compares with served jobs only: the earlier one was signed 30 days ago.
    let earlier_job = desk.server.fetch_job(earlier.parse()?).await?;
    on_report_signed(
        desk.server.edge()?,
        &earlier_job,
        "r-0",
        now().plus_millis(-30 * DAY),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let req = desk.request(request_body(2 * DAY, "SN-8", "noise")).await?;
    let created = desk.dispatch(&req).await?;
    assert_eq!(created["repeat_of"].as_array().map(Vec::len), Some(0));
    let job_id: DocumentId = str_of(&created["job_id"])?.parse()?;

    // Before the service, no call can be recorded.
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/follow-ups/{job_id}/call"),
            json!({"by": "Ms Zhou", "reached": false}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "not_served");

    // What the report signer calls once the report is signed.
    let mut job = desk.server.fetch_job(job_id).await?;
    job.diagnosis.fault_category = Some("compressor".into());
    let signed_at = now().plus_millis(-DAY);
    let repeats = on_report_signed(desk.server.edge()?, &job, "r-1", signed_at)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    assert_eq!(
        repeats
            .iter()
            .map(|r| r.job_id.as_str())
            .collect::<Vec<_>>(),
        [earlier.as_str()],
        "R4 at signing"
    );
    let record = desk
        .get(ANALYST, &format!("/api/jobs/{job_id}/desk"))
        .await?
        .1;
    assert_eq!(record["repeat_on_signing"][0]["job_id"], earlier.as_str());
    // The desk's category stays; the diagnosis is recorded beside it (R4 matches either).
    assert_eq!(record["fault_category"], "noise");
    assert_eq!(record["diagnosed_category"], "compressor");
    assert_eq!(record["report_id"], "r-1");

    // R14: served yesterday, so on the list of today's calls, and not on tomorrow's.
    let today = now().date()?.to_string();
    let list = desk
        .get(ANALYST, &format!("/api/follow-ups?date={today}"))
        .await?
        .1;
    assert_eq!(
        ids(&list["jobs"]),
        BTreeSet::from([job_id.to_string()]),
        "{list}"
    );
    let tomorrow = now().plus_millis(DAY).date()?.to_string();
    let list = desk
        .get(ANALYST, &format!("/api/follow-ups?date={tomorrow}"))
        .await?
        .1;
    assert!(ids(&list["jobs"]).is_empty());

    let call_path = format!("/api/follow-ups/{job_id}/call");
    let call = |body: Value| desk.post(DISPATCHER, &call_path, body);
    let (status, body) = call(json!({"by": "Ms Zhou", "reached": true})).await?;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "satisfaction_required",
    );
    let (status, _) =
        call(json!({"by": "Ms Zhou", "reached": false, "comments": "no answer"})).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        call(json!({"by": "Ms Zhou", "reached": true, "satisfied": true, "comments": "all good"}))
            .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["calls"].as_array().map(Vec::len), Some(2));
    let (status, body) =
        call(json!({"by": "Ms Zhou", "reached": true, "satisfied": false})).await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_called");
    let list = desk
        .get(DISPATCHER, &format!("/api/follow-ups?date={today}"))
        .await?
        .1;
    assert_eq!(
        list["jobs"][0]["calls"][1]["satisfied"], true,
        "R14 outcome on the list"
    );
    Ok(())
}

/// A step body with everything each step needs.
fn step(name: &str) -> Value {
    let mut body = json!({"step": name, "by": "Ms Zhou", "what": format!("{name} done")});
    match name {
        "classify" => body["valid"] = json!(true),
        "assign_unit" => body["unit"] = json!("QA"),
        "notify_customer" => body["customer_reaction"] = json!("accepted the repair plan"),
        "assign_responsibility" => {
            body["responsible"] = json!("tech-wang");
            body["penalty"] = json!("warning");
        }
        _ => {}
    }
    body
}

#[tokio::test]
async fn r20_r21_r22_r23_desk_complaints_take_the_eight_steps_in_order() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let job = desk.server.create_job("tech-wang").await?.job;
    let complaint = json!({
        "channel": "phone",
        "category": "service",
        "received_at": from_now(-HOUR),
        "complainant": "Ms Chen",
        "contact": "555-0101",
        "customer_id": "c-1001",
        "against": {"job_id": job.url(), "technician": "tech-wang"},
        "content": "The technician left without testing",
        "asks": "A second visit and an apology",
        "recorded_by": "Ms Zhou",
    });
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/complaints",
            Some(complaint.clone()),
            StatusCode::CREATED,
        )
        .await?;
    let id = str_of(&created["id"])?;
    assert_eq!(
        created["steps"][0]["step"], "record",
        "R21 step 1 is the registration"
    );
    assert_eq!(created["next_step"], "classify");
    assert_eq!(created["against_job"], job.to_string().as_str());
    assert_eq!(created["attribution"], "non_quality", "R22");
    let steps_path = format!("/api/complaints/{id}/steps");

    // R21: no step skipped.
    let (status, body) = desk
        .post(DISPATCHER, &steps_path, step("investigate"))
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "step_out_of_order");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("classify"),
        "{body}"
    );
    let (status, body) = desk.post(DISPATCHER, &steps_path, step("record")).await?;
    assert_error(status, &body, StatusCode::CONFLICT, "step_already_recorded");
    // A step without what it needs.
    let (status, body) = desk
        .post(
            DISPATCHER,
            &steps_path,
            json!({"step": "classify", "by": "Ms Zhou", "what": "looked"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");

    for name in [
        "classify",
        "assign_unit",
        "investigate",
        "propose_solution",
        "notify_customer",
    ] {
        desk.expect(
            DISPATCHER,
            Method::POST,
            &steps_path,
            Some(step(name)),
            StatusCode::OK,
        )
        .await?;
    }
    // Step 7, responsibility and penalty, is a manager's.
    let (status, body) = desk
        .post(DISPATCHER, &steps_path, step("assign_responsibility"))
        .await?;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("manager"),
        "{body}"
    );
    desk.expect(
        MANAGER,
        Method::POST,
        &steps_path,
        Some(step("assign_responsibility")),
        StatusCode::OK,
    )
    .await?;
    let closed = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &steps_path,
            Some(step("improve")),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(closed["closed"], true);
    assert_eq!(closed["next_step"], Value::Null);
    let (status, body) = desk.post(MANAGER, &steps_path, step("improve")).await?;
    assert_error(status, &body, StatusCode::CONFLICT, "complaint_closed");

    // R23: the full record survives a restart: content, process, result, reaction, outcome.
    let desk = desk.restart().await?;
    let record = desk
        .expect(
            ANALYST,
            Method::GET,
            &format!("/api/complaints/{id}"),
            None,
            StatusCode::OK,
        )
        .await?;
    let numbers: Vec<u64> = record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["number"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
    for s in record["steps"].as_array().into_iter().flatten() {
        assert!(
            s["by"].is_string() && s["at"].is_string() && s["what"].is_string(),
            "R21 who/when/what: {s}"
        );
    }
    assert_eq!(record["content"], "The technician left without testing");
    assert_eq!(record["solution"], "propose_solution done");
    assert_eq!(record["customer_reaction"], "accepted the repair plan");
    assert_eq!(record["outcome"], "improve done");
    assert_eq!(
        (record["responsible"].clone(), record["penalty"].clone()),
        (json!("tech-wang"), json!("warning"))
    );
    assert_eq!(record["valid"], true);
    let open = desk.get(ANALYST, "/api/complaints?open=true").await?.1;
    assert!(ids(&open["complaints"]).is_empty());
    let all = desk.get(ANALYST, "/api/complaints").await?.1;
    assert_eq!(ids(&all["complaints"]), BTreeSet::from([id]));

    // R22: the month's rate (one complaint, one job) and attribution.
    let month = now().plus_millis(-HOUR).month()?;
    let job_month = desk
        .server
        .fetch_job(job)
        .await?
        .request
        .received_at
        .month()?;
    let summary = desk
        .expect(
            ANALYST,
            Method::GET,
            &format!("/api/complaints/summary?month={month}"),
            None,
            StatusCode::OK,
        )
        .await?;
    assert_eq!(summary["complaints"], 1, "{summary}");
    assert_eq!(summary["by_attribution"]["non_quality"], 1);
    assert_eq!(summary["by_attribution"]["quality"], 0);
    assert_eq!(summary["open"], 0);
    // The sample job was received on 2026-11-02, in the desk clock's month, but its report
    // is not signed: R22 counts verified reports, so there is no rate yet.
    assert_eq!(job_month, month);
    assert_eq!(summary["reports_verified"], 0, "{summary}");
    assert_eq!(summary["rate"], Value::Null);
    let (status, body) = desk
        .get(ANALYST, "/api/complaints/summary?month=2026-13")
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    Ok(())
}

#[tokio::test]
async fn r17_r18_desk_requisitions_name_their_job_and_their_shipment() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let job = desk.server.create_job("tech-wang").await?.job;
    let requisition = json!({
        "job_id": job.to_string(),
        "part_number": "CAP-45",
        "part_name": "Start capacitor",
        "specification": "45 uF 450 V",
        "material": "polypropylene",
        "quantity": 2,
        "needed_by": now().plus_millis(2 * DAY).date()?.to_string(),
        "customer_id": "c-1001",
        "order_number": "SO-2026-0042",
        "requested_by": "tech-wang",
    });
    let mut unknown = requisition.clone();
    unknown["job_id"] = json!(DocumentId::random().to_string());
    let (status, body) = desk.post(DISPATCHER, "/api/requisitions", unknown).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_job");
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/requisitions",
            Some(requisition),
            StatusCode::CREATED,
        )
        .await?;
    let id = str_of(&created["id"])?;
    assert_eq!(created["order_number"], "SO-2026-0042");
    let open = desk
        .get(
            ANALYST,
            &format!("/api/requisitions?open=true&job_id={job}"),
        )
        .await?
        .1;
    assert_eq!(ids(&open["requisitions"]), BTreeSet::from([id.clone()]));

    let today = now().date()?.to_string();
    let tomorrow = now().plus_millis(DAY).date()?.to_string();
    let shipment = json!({
        "address": "12 Harbour Road", "recipient": "Ms Chen", "contact": "555-0101",
        "items": [{"part_number": "CAP-45", "quantity": 2}],
        "shipped_on": tomorrow, "arrives_on": today,
    });
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requisitions/{id}/shipment"),
            shipment.clone(),
        )
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    let mut shipment = shipment;
    shipment["shipped_on"] = json!(today);
    shipment["arrives_on"] = json!(tomorrow);
    let shipped = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &format!("/api/requisitions/{id}/shipment"),
            Some(shipment.clone()),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(shipped["shipment"]["recipient"], "Ms Chen");
    let (status, body) = desk
        .post(
            MANAGER,
            &format!("/api/requisitions/{id}/shipment"),
            shipment,
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_shipped");
    let open = desk.get(ANALYST, "/api/requisitions?open=true").await?.1;
    assert!(ids(&open["requisitions"]).is_empty());
    Ok(())
}

#[tokio::test]
async fn r19_desk_tools_are_lent_returned_overdue_and_lost() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    desk.expect(
        DISPATCHER,
        Method::POST,
        "/api/tools",
        Some(json!({"id": "torque-07", "name": "Torque wrench 20-100 Nm"})),
        StatusCode::CREATED,
    )
    .await?;
    let (status, body) = desk
        .post(
            DISPATCHER,
            "/api/tools",
            json!({"id": "torque-07", "name": "again"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_exists");
    let field = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/tools",
            Some(json!({"id": "puller-2", "name": "Bearing puller", "bought_in_field": true})),
            StatusCode::CREATED,
        )
        .await?;
    assert_eq!(
        field["bought_in_field"], true,
        "R19: bought in the field, taken into the store"
    );

    let loan = json!({"technician": "tech-wang", "due_back": from_now(2 * HOUR)});
    let lent = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/tools/torque-07/loans",
            Some(loan.clone()),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(lent["status"], "on_loan");
    let (status, body) = desk
        .post(DISPATCHER, "/api/tools/torque-07/loans", loan.clone())
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "tool_on_loan");
    // Overdue once the due-back time has passed.
    let none = desk.get(ANALYST, "/api/tools?overdue=true").await?.1;
    assert!(ids(&none["tools"]).is_empty());
    let later = from_now(3 * HOUR).replace('+', "%2B");
    let overdue = desk
        .get(ANALYST, &format!("/api/tools?overdue=true&at={later}"))
        .await?
        .1;
    assert_eq!(
        ids(&overdue["tools"]),
        BTreeSet::from(["torque-07".to_owned()])
    );

    let back = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/tools/torque-07/return",
            Some(json!({"note": "clean"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(back["status"], "available");
    let (status, body) = desk
        .post(DISPATCHER, "/api/tools/torque-07/return", json!({}))
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "not_on_loan");
    let (status, body) = desk
        .post(
            MANAGER,
            "/api/tools/torque-07/lost",
            json!({"charge": 45000}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "not_on_loan");

    // Lost on the next loan: the technician who had it pays (R19), a manager decides.
    desk.expect(
        DISPATCHER,
        Method::POST,
        "/api/tools/torque-07/loans",
        Some(json!({"technician": "tech-li", "due_back": from_now(HOUR)})),
        StatusCode::OK,
    )
    .await?;
    let (status, body) = desk
        .post(
            DISPATCHER,
            "/api/tools/torque-07/lost",
            json!({"charge": 45000}),
        )
        .await?;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = desk
        .post(MANAGER, "/api/tools/torque-07/lost", json!({"charge": 0}))
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    let lost = desk
        .expect(
            MANAGER,
            Method::POST,
            "/api/tools/torque-07/lost",
            Some(json!({"charge": 45000, "note": "left on site"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(lost["status"], "lost");
    assert_eq!(lost["loss"]["technician"], "tech-li");
    assert_eq!(lost["loss"]["charge"], 45000);
    let (status, body) = desk
        .post(DISPATCHER, "/api/tools/torque-07/loans", loan)
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "tool_lost");
    assert_eq!(
        desk.get(ANALYST, "/api/tools").await?.1["tools"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    Ok(())
}

/// Every endpoint of an edge with the roles that may call it. `/api/me` and
/// `/api/handoffs/{job}` are for device tokens and `/api/openapi.json` for anyone.
const EDGE_ENDPOINTS: &[(&str, &str, &[DeskRole])] = &[
    ("POST", "/api/jobs", &[DISPATCHER, MANAGER]),
    ("GET", "/api/jobs", &[DISPATCHER, MANAGER, ANALYST]),
    ("GET", "/api/jobs/{id}", &[DISPATCHER, MANAGER, ANALYST]),
    ("PUT", "/api/jobs/{id}/technicians", &[DISPATCHER, MANAGER]),
    ("POST", "/api/jobs/{id}/resolve", &[DISPATCHER, MANAGER]),
    ("GET", "/api/technicians", &[DISPATCHER, MANAGER, ANALYST]),
    ("PUT", "/api/jobs/{id}/appointment", &[DISPATCHER, MANAGER]),
    ("POST", "/api/jobs/{id}/cancel", &[DISPATCHER, MANAGER]),
    (
        "GET",
        "/api/jobs/{id}/desk",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("GET", "/api/reports/{id}", &[DISPATCHER, MANAGER, ANALYST]),
    ("GET", "/api/reports", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "GET",
        "/api/reports/{id}/pdf",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("GET", "/api/me", &[]),
    ("POST", "/api/handoffs/{job}", &[]),
    // Attachments (issue 15): uploaded by the job's device, read by the desk too.
    ("PUT", "/api/jobs/{job}/attachments/{digest}", &[]),
    (
        "GET",
        "/api/jobs/{job}/attachments/{digest}",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/jobs/{job}/attachments/{digest}/status",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/jobs/{job}/attachments",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("GET", "/api/stranded", &[DISPATCHER, MANAGER, ANALYST]),
    ("POST", "/api/stranded/{id}/merge", &[DISPATCHER, MANAGER]),
    ("POST", "/api/stranded/{id}/discard", &[DISPATCHER, MANAGER]),
    ("POST", "/api/requests", &[DISPATCHER, MANAGER]),
    ("GET", "/api/requests", &[DISPATCHER, MANAGER, ANALYST]),
    ("GET", "/api/requests/{id}", &[DISPATCHER, MANAGER, ANALYST]),
    ("POST", "/api/requests/{id}/reply", &[DISPATCHER, MANAGER]),
    ("POST", "/api/requests/{id}/arrival", &[DISPATCHER, MANAGER]),
    ("POST", "/api/requests/{id}/job", &[DISPATCHER, MANAGER]),
    ("GET", "/api/follow-ups", &[DISPATCHER, MANAGER, ANALYST]),
    ("POST", "/api/follow-ups/{id}/call", &[DISPATCHER, MANAGER]),
    ("POST", "/api/complaints", &[DISPATCHER, MANAGER]),
    ("GET", "/api/complaints", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "GET",
        "/api/complaints/{id}",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/complaints/summary",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("POST", "/api/complaints/{id}/steps", &[DISPATCHER, MANAGER]),
    ("POST", "/api/requisitions", &[DISPATCHER, MANAGER]),
    ("GET", "/api/requisitions", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "POST",
        "/api/requisitions/{id}/shipment",
        &[DISPATCHER, MANAGER],
    ),
    ("POST", "/api/tools", &[DISPATCHER, MANAGER]),
    ("GET", "/api/tools", &[DISPATCHER, MANAGER, ANALYST]),
    ("POST", "/api/tools/{id}/loans", &[DISPATCHER, MANAGER]),
    ("POST", "/api/tools/{id}/return", &[DISPATCHER, MANAGER]),
    ("POST", "/api/tools/{id}/lost", &[MANAGER]),
    ("GET", "/api/approvals", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "POST",
        "/api/jobs/{id}/approvals/{approval}/decision",
        &[MANAGER],
    ),
    ("GET", "/api/expenses", &[DISPATCHER, MANAGER, ANALYST]),
    ("POST", "/api/enrollment-codes", &[DISPATCHER, MANAGER]),
    // Enrollment and token renewal take no token (a code or a device signature instead).
    ("POST", "/api/enroll", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "POST",
        "/api/token/challenge",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("POST", "/api/token/renew", &[DISPATCHER, MANAGER, ANALYST]),
    // Issue 14 point 3: technicians' records, the fault-category list, customer files (R26).
    (
        "GET",
        "/api/technicians/{id}/record",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/fault-categories",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("POST", "/api/fault-categories", &[MANAGER]),
    ("POST", "/api/fault-categories/{id}/retire", &[MANAGER]),
    (
        "GET",
        "/api/customers/{id}",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("PUT", "/api/products/{id}/plan", &[DISPATCHER, MANAGER]),
    ("DELETE", "/api/products/{id}/plan", &[DISPATCHER, MANAGER]),
    ("GET", "/api/openapi.json", &[DISPATCHER, MANAGER, ANALYST]),
];

/// Endpoints a device reaches without any token (enrollment, token renewal): with `{}` each
/// answers 400 `invalid_body`, whoever asks.
const NO_TOKEN: &[&str] = &["/api/enroll", "/api/token/challenge", "/api/token/renew"];

/// Head office's endpoints (archive and statistics; an edge does not route them).
const HEAD_OFFICE_ENDPOINTS: &[(&str, &str, &[DeskRole])] = &[
    ("GET", "/api/openapi.json", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "GET",
        "/api/archive/reports",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/archive/reports/{id}",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/archive/reports/{id}/export",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/archive/rejected",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    ("GET", "/api/stats", &[DISPATCHER, MANAGER, ANALYST]),
    (
        "GET",
        "/api/archive/complaints",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/archive/complaints/{branch}/{id}",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/archive/complaints/rejected",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    (
        "GET",
        "/api/stats/complaints",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
    // For a branch's link only (a branch token): every desk role is refused.
    ("POST", "/api/archive/verdicts", &[]),
    (
        "GET",
        "/api/archive/reports/{id}/pdf",
        &[DISPATCHER, MANAGER, ANALYST],
    ),
];

fn concrete(path: &str) -> String {
    path.replace("{id}", "x")
        .replace("{job}", "x")
        .replace("{approval}", "y")
        .replace("{branch}", "z")
        .replace("{digest}", "d")
}

#[tokio::test]
async fn desk_every_endpoint_enforces_its_roles() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let device = desk.server.enroll("tech-wang", "dev-roles")?;
    let device_token = desk
        .server
        .device_token(&device, std::time::Duration::from_secs(600))?;
    check_roles(&desk, EDGE_ENDPOINTS, Some(&device_token)).await
}

#[tokio::test]
async fn head_office_every_endpoint_enforces_its_roles() -> anyhow::Result<()> {
    let head_office = Desk::start_with(|c| c.role = Role::HeadOffice).await?;
    check_roles(&head_office, HEAD_OFFICE_ENDPOINTS, None).await?;
    // The edge's routes are not head office's, and the reverse.
    for (desk, path) in [
        (&head_office, "/api/requests"),
        (&Desk::start().await?, "/api/archive/reports"),
    ] {
        let (status, body) = desk.get(ANALYST, path).await?;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    Ok(())
}

/// Each of `endpoints` answers the roles it lists, refuses the others naming the role, and
/// refuses a request without a token; with a device token, only the device endpoints answer.
async fn check_roles(
    desk: &Desk,
    endpoints: &[(&str, &str, &[DeskRole])],
    device_token: Option<&str>,
) -> anyhow::Result<()> {
    for &(method, path, allowed) in endpoints {
        let method: Method = method.parse()?;
        let url = concrete(path);
        let public = path == "/api/openapi.json";
        for role in [DISPATCHER, MANAGER, ANALYST] {
            let (status, body) = desk
                .call(Some(role), method.clone(), &url, Some(&json!({})))
                .await?;
            if allowed.contains(&role) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{method} {path} as {}: {status} {body}",
                    role.as_str()
                );
            } else {
                assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
                let message = body["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains(role.as_str()),
                    "the reason names the role: {message}"
                );
            }
        }
        // No token: 401 (the document is public).
        let (status, body) = desk
            .call(None, method.clone(), &url, Some(&json!({})))
            .await?;
        if NO_TOKEN.contains(&path) {
            assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_body");
        } else if public {
            assert_eq!(status, StatusCode::OK);
        } else {
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "missing_token");
        }
        // A device token is not a desk token (and /api/me is only for devices).
        let Some(device_token) = device_token else {
            continue;
        };
        let response = desk
            .http
            .request(method.clone(), desk.server.http_url(&url))
            .bearer_auth(device_token)
            .json(&json!({}))
            .send()
            .await?;
        let status = response.status();
        if NO_TOKEN.contains(&path) {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {path} with a device token"
            );
        } else if path == "/api/me" || public {
            assert_eq!(
                status,
                StatusCode::OK,
                "{method} {path} with a device token"
            );
        } else if path.starts_with("/api/handoffs/") || path.contains("/attachments") {
            // Let in (then the made-up job id is refused).
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {path} with a device token"
            );
        } else {
            let body: Value = response.json().await?;
            assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    Ok(())
}

#[tokio::test]
async fn desk_bad_input_gets_a_stable_code_and_loses_nothing() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let good = request_body(HOUR, "SN-1", "fan");
    let req = desk.request(good.clone()).await?;
    let mut missing = good.clone();
    missing.as_object_mut().map(|o| o.remove("received_at"));
    let mut wrong_type = good.clone();
    wrong_type["customer"]["name"] = json!(42);
    let mut bad_time = good.clone();
    bad_time["received_at"] = json!("yesterday");
    let mut bad_channel = good.clone();
    bad_channel["channel"] = json!("pigeon");
    let mut unknown_field = good.clone();
    unknown_field["priority"] = json!("high");
    let mut empty = good.clone();
    empty["fault_description"] = json!("  ");
    let unknown_job = DocumentId::random().to_string();
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/requests".into(),
            Some(missing),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(wrong_type),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(bad_time),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(bad_channel),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(unknown_field),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(empty),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/requests".into(),
            Some(json!("not an object")),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::GET,
            "/api/requests/req-nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "unknown_request",
        ),
        (
            Method::GET,
            "/api/requests?due=someday".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::POST,
            "/api/requests/req-nope/reply".into(),
            Some(json!({"by": "a", "text": "b"})),
            StatusCode::NOT_FOUND,
            "unknown_request",
        ),
        (
            Method::POST,
            format!("/api/requests/{req}/reply"),
            Some(json!({"by": "a"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/api/requests/{req}/arrival"),
            Some(json!({"technician": "no/such", "at": from_now(0)})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/api/requests/{req}/job"),
            Some(json!({"kind": "teleport", "technician": "tech-wang"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            format!("/api/jobs/{unknown_job}/appointment"),
            Some(json!({"at": from_now(0), "contacted_by": "a", "fault_rechecked": "b"})),
            StatusCode::NOT_FOUND,
            "unknown_job",
        ),
        (
            Method::GET,
            "/api/jobs/not-a-job/desk".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
        ),
        (
            Method::POST,
            "/api/follow-ups/not-a-job/call".into(),
            Some(json!({"by": "a", "reached": false})),
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
        ),
        (
            Method::GET,
            "/api/follow-ups?date=28-11-2026".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::POST,
            "/api/complaints".into(),
            Some(json!({"channel": "phone", "category": "rudeness"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::GET,
            "/api/complaints/cmp-nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "unknown_complaint",
        ),
        (
            Method::POST,
            "/api/complaints/cmp-nope/steps".into(),
            Some(step("classify")),
            StatusCode::NOT_FOUND,
            "unknown_complaint",
        ),
        (
            Method::POST,
            "/api/complaints/cmp-nope/steps".into(),
            Some(json!({"step": "ninth", "by": "a", "what": "b"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requisitions".into(),
            Some(json!({"job_id": unknown_job, "quantity": -1})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/requisitions/rq-nope/shipment".into(),
            Some(
                json!({"address": "a", "recipient": "b", "contact": "c", "items": [{"part_number": "p", "quantity": 1}], "shipped_on": "2026-11-28", "arrives_on": "2026-11-29"}),
            ),
            StatusCode::NOT_FOUND,
            "unknown_requisition",
        ),
        (
            Method::POST,
            "/api/tools".into(),
            Some(json!({"id": "bad tag!", "name": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            "/api/tools/nope/loans".into(),
            Some(json!({"technician": "tech-wang", "due_back": from_now(HOUR)})),
            StatusCode::NOT_FOUND,
            "unknown_tool",
        ),
        (
            Method::POST,
            "/api/tools/nope/return".into(),
            Some(json!({})),
            StatusCode::NOT_FOUND,
            "unknown_tool",
        ),
        (
            Method::POST,
            "/api/tools/nope/lost".into(),
            Some(json!({"charge": "a lot"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::GET,
            "/api/tools?overdue=maybe".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, answer) = desk
            .call(Some(MANAGER), method.clone(), &path, body.as_ref())
            .await?;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        assert_eq!(
            (status, answer["code"].as_str()),
            (want_status, Some(want_code)),
            "{method} {path}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    // Nothing was lost or half-written: the one good request is all there is.
    let all = desk.get(ANALYST, "/api/requests?due=all").await?.1;
    assert_eq!(ids(&all["requests"]), BTreeSet::from([req]));
    assert!(
        desk.get(ANALYST, "/api/complaints").await?.1["complaints"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    Ok(())
}

/// Resolves a local `$ref` (`#/components/schemas/X`) in the document.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn check_refs(doc: &Value, node: &Value, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && resolve(doc, r).is_none()
            {
                problems.push(format!("unresolved $ref {r}"));
            }
            map.values().for_each(|v| check_refs(doc, v, problems));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v, problems)),
        _ => {}
    }
}

#[tokio::test]
async fn desk_openapi_document_is_valid_and_lists_every_route() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let doc = check_openapi(&desk, EDGE_ENDPOINTS).await?;
    // The schemas the rules depend on name their values.
    let steps = &doc["components"]["schemas"]["ComplaintStep"]["enum"];
    assert_eq!(steps.as_array().map(Vec::len), Some(8), "R21: {steps}");
    let head_office = Desk::start_with(|c| c.role = Role::HeadOffice).await?;
    check_openapi(&head_office, HEAD_OFFICE_ENDPOINTS).await?;
    Ok(())
}

/// The server's OpenAPI document is well formed and documents exactly `endpoints`, each routed.
async fn check_openapi(
    desk: &Desk,
    endpoints: &[(&str, &str, &[DeskRole])],
) -> anyhow::Result<Value> {
    let (status, doc) = desk
        .call(None, Method::GET, "/api/openapi.json", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );

    // Structure: unique operation ids, declared path parameters, responses, every $ref resolves.
    let mut problems = Vec::new();
    check_refs(&doc, &doc, &mut problems);
    let mut operation_ids = BTreeSet::new();
    let mut documented = BTreeSet::new();
    let paths = doc["paths"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("no paths"))?;
    for (path, item) in paths {
        let params: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split('}').next())
            .collect();
        for (method, op) in item.as_object().into_iter().flatten() {
            documented.insert((method.to_uppercase(), path.clone()));
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            if id.is_empty() || !operation_ids.insert(id.clone()) {
                problems.push(format!(
                    "{method} {path}: missing or duplicate operationId {id:?}"
                ));
            }
            if op["responses"].as_object().is_none_or(|r| r.is_empty()) {
                problems.push(format!("{method} {path}: no responses"));
            }
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if declared != params {
                problems.push(format!(
                    "{method} {path}: path parameters {declared:?}, template has {params:?}"
                ));
            }
            if op["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{method} {path}: no description"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // Every route is documented and every documented route is routed: the table above lists
    // each endpoint once, the document has exactly those, and the server answers each.
    let expected: BTreeSet<(String, String)> = endpoints
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(expected.len(), endpoints.len());
    assert_eq!(documented, expected);
    for (method, path) in &documented {
        let (status, _) = desk
            .call(None, method.parse()?, &concrete(path), None)
            .await?;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not routed: {status}"
        );
    }
    // And what is not documented is not routed.
    let (status, _) = desk
        .call(Some(MANAGER), Method::DELETE, "/api/openapi.json", None)
        .await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    Ok(doc)
}

/// The technician asks for an approval in the job document on the device (what the app does,
/// offline or not), at `offset_ms` from now.
async fn ask(
    client: &SyncClient,
    job: DocumentId,
    id: &str,
    kind: ApprovalKind,
    amount: Option<Money>,
    offset_ms: i64,
) -> anyhow::Result<()> {
    let approval = Approval {
        id: id.into(),
        kind,
        reason: format!("{} needed", kind.as_str()),
        requested_by: "tech-wang".into(),
        requested_at: now().plus_millis(offset_ms),
        amount,
        expense: None,
        decision: None,
    };
    let edit = LocalEdit::Change(Box::new(move |doc: &mut automerge::Automerge| {
        edit_via_autocommit(doc, |ac| {
            request_approval(ac, &approval).map_err(|e| e.to_string())
        })
    }));
    client
        .edit(job, edit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// A job for `tech-wang` and a device of theirs that holds it.
async fn job_on_a_device(
    desk: &Desk,
    device: &str,
    devices: &TempDir,
) -> anyhow::Result<(DocumentId, SyncClient)> {
    let device = desk.server.enroll("tech-wang", device)?;
    let job = desk.server.create_job("tech-wang").await?.job;
    let client = desk.server.connect_device(&device, devices.path()).await?;
    client.subscribe(job);
    anyhow::ensure!(
        client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await,
        "the job reaches the device"
    );
    Ok((job, client))
}

/// The approvals of a listing, as (id, decided, approved).
fn approval_states(list: &Value) -> Vec<(String, bool, Option<bool>)> {
    list["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_owned(),
                !a["decision"].is_null(),
                a["decision"]["approved"].as_bool(),
            )
        })
        .collect()
}

/// Runs `tests/js/validate-openapi.mjs` (the official OpenAPI JSON schemas, through
/// `@seriousme/openapi-schema-validator`) on `document`: `Ok(Ok(stdout))` if it is valid,
/// `Ok(Err(errors))` if the validator says it is not, `Err` if the validator could not run.
async fn validate_openapi(document: &[u8]) -> anyhow::Result<Result<String, String>> {
    use std::process::Stdio;

    use anyhow::Context;
    use tokio::io::AsyncWriteExt;

    crate::js_interop::require_node_package("@seriousme/openapi-schema-validator")?;
    let mut child = tokio::process::Command::new("node")
        .current_dir(crate::js_interop::js_dir())
        .arg("validate-openapi.mjs")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node")?;
    let mut stdin = child.stdin.take().context("no stdin pipe")?;
    stdin.write_all(document).await?;
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .context("validate-openapi.mjs ran longer than 60 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => Ok(Ok(stdout)),
        Some(1) => Ok(Err(stderr)),
        _ => anyhow::bail!(
            "validate-openapi.mjs failed to run ({}): {stderr}",
            output.status
        ),
    }
}

/// The served document against the official OpenAPI 3.1 schema (beside the structural checks
/// above, which the schema does not make: every route documented, ids unique, …).
#[tokio::test]
async fn desk_openapi_document_passes_the_openapi_3_1_schema() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let response = desk
        .http
        .get(desk.server.http_url("/api/openapi.json"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let document = response.bytes().await?;
    match validate_openapi(&document).await? {
        Ok(said) => assert!(said.contains("OpenAPI 3.1"), "{said}"),
        Err(errors) => anyhow::bail!("/api/openapi.json is not valid OpenAPI 3.1:\n{errors}"),
    }
    Ok(())
}

/// The validator above is not a formality: it refuses a bare document and our own document
/// broken in ways a 3.1 schema forbids.
#[tokio::test]
async fn desk_openapi_validator_refuses_broken_documents() -> anyhow::Result<()> {
    let bare = validate_openapi(br#"{"openapi":"3.1.0"}"#).await?;
    assert!(
        bare.as_ref().is_err_and(|e| e.contains("paths")),
        "{bare:?}"
    );
    assert!(validate_openapi(b"not json").await?.is_err());

    let ours = serde_json::to_value(fieldsync_server::edge::openapi())?;
    let verdict = validate_openapi(&serde_json::to_vec(&ours)?).await?;
    assert!(verdict.is_ok(), "{verdict:?}");

    // No `info`.
    let mut broken = ours.clone();
    broken
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("not an object"))?
        .remove("info");
    let verdict = validate_openapi(&serde_json::to_vec(&broken)?).await?;
    assert!(
        verdict.as_ref().is_err_and(|e| e.contains("info")),
        "{verdict:?}"
    );

    // A parameter `in: body` (OpenAPI 2's way; 3.x has request bodies).
    let mut broken = ours.clone();
    let parameter = broken
        .pointer_mut("/paths/~1api~1jobs~1{id}/get/parameters/0/in")
        .ok_or_else(|| anyhow::anyhow!("GET /api/jobs/{{id}} has no parameter"))?;
    *parameter = json!("body");
    let verdict = validate_openapi(&serde_json::to_vec(&broken)?).await?;
    assert!(verdict.is_err(), "in: body was accepted");

    // A `$ref` to a schema that is not there.
    let mut broken = ours;
    broken
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow::anyhow!("no schemas"))?
        .remove("ErrorBody");
    let verdict = validate_openapi(&serde_json::to_vec(&broken)?).await?;
    assert!(
        verdict.as_ref().is_err_and(|e| e.contains("ErrorBody")),
        "{verdict:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_r18_r31_desk_approvals_go_from_the_device_to_a_manager_and_back() -> anyhow::Result<()>
{
    let desk = Desk::start_with(|c| c.desk.director_approval_above = 100_000).await?;
    let devices = temp_dir()?;
    let device = desk.server.enroll("tech-wang", "dev-approvals")?;
    let job = desk.server.create_job("tech-wang").await?.job;
    let client = desk.server.connect_device(&device, devices.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);

    // The technician asks, offline-capable, in the job document.
    let asks = [
        ("ext-1", ApprovalKind::Extension, None),
        ("part-1", ApprovalKind::WarrantyPart, Some(Money(250_000))),
        ("ret-1", ApprovalKind::ProductReturn, None),
    ];
    for (i, (id, kind, amount)) in asks.into_iter().enumerate() {
        ask(&client, job, id, kind, amount, i64::try_from(i)? - 10).await?;
    }

    // Queued at the desk.
    let queue = eventually(SETTLE, "the desk sees three pending approvals", || async {
        let (_, body) = desk
            .get(DISPATCHER, "/api/approvals?pending=true")
            .await
            .ok()?;
        (body["approvals"].as_array()?.len() == 3).then_some(body)
    })
    .await?;
    let rules: Vec<&str> = queue["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["rule"].as_str())
        .collect();
    assert_eq!(rules, ["R12", "R18", "R31"]);
    assert_eq!(
        queue["approvals"][1]["large_amount"], true,
        "R18: above the configured amount"
    );
    assert_eq!(queue["approvals"][0]["large_amount"], false);

    // Only a manager decides.
    let decision = format!("/api/jobs/{job}/approvals/ext-1/decision");
    let (status, body) = desk
        .post(DISPATCHER, &decision, json!({"approved": true}))
        .await?;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let decided = desk
        .expect(
            MANAGER,
            Method::POST,
            &decision,
            Some(json!({"approved": true, "note": "until Friday"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(decided["decision"]["by"], "desk:manager");
    let (status, body) = desk
        .post(MANAGER, &decision, json!({"approved": false}))
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_decided");
    let (status, body) = desk
        .post(
            MANAGER,
            &format!("/api/jobs/{job}/approvals/nope/decision"),
            json!({"approved": false}),
        )
        .await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown_approval");
    desk.expect(
        MANAGER,
        Method::POST,
        &format!("/api/jobs/{job}/approvals/ret-1/decision"),
        Some(json!({"approved": false, "note": "repair on site"})),
        StatusCode::OK,
    )
    .await?;
    let pending = desk.get(ANALYST, "/api/approvals?pending=true").await?.1;
    assert_eq!(
        ids(&pending["approvals"]),
        BTreeSet::from(["part-1".to_owned()])
    );

    // The device sees the decisions in its copy of the job.
    assert!(
        client
            .wait_for(job, SETTLE, |d| read_approvals(d).is_ok_and(|a| a
                .iter()
                .filter(|x| x.decision.is_some())
                .count()
                == 2))
            .await,
        "the decisions reach the device"
    );
    let doc = client
        .read(job)
        .await
        .ok_or_else(|| anyhow::anyhow!("no job on the device"))?;
    let on_device = read_approvals(&doc)?;
    assert_eq!(
        on_device[0].decision.as_ref().map(|d| d.approved),
        Some(true)
    );
    assert_eq!(
        on_device[2]
            .decision
            .as_ref()
            .map(|d| (d.approved, d.note.as_str())),
        Some((false, "repair on site"))
    );
    assert!(
        read_job(&doc)?
            .timeline
            .iter()
            .any(|e| e.kind == "approval_decided")
    );
    Ok(())
}

/// The queue is a mirror fed by the hub's change feed: a request edited in on a device
/// reaches it without a listing reading any job, edits that leave approvals alone change
/// nothing, and a decision is in the queue as soon as the decide call returns (no waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_desk_approvals_queue_follows_the_change_feed() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let devices = temp_dir()?;
    let (job, client) = job_on_a_device(&desk, "dev-feed", &devices).await?;
    assert_eq!(
        approval_states(&desk.get(ANALYST, "/api/approvals").await?.1),
        []
    );
    assert_eq!(desk.approvals_waiting().await?, 0);

    ask(&client, job, "ext-7", ApprovalKind::Extension, None, -5).await?;
    let queue = eventually(SETTLE, "the request reaches the desk's queue", || async {
        let (_, body) = desk
            .get(DISPATCHER, "/api/approvals?pending=true")
            .await
            .ok()?;
        (!approval_states(&body).is_empty()).then_some(body)
    })
    .await?;
    assert_eq!(approval_states(&queue), [("ext-7".to_owned(), false, None)]);
    assert_eq!(queue["approvals"][0]["job_id"], job.to_string().as_str());
    assert_eq!(queue["approvals"][0]["rule"], "R12");
    assert_eq!(desk.approvals_waiting().await?, 1);

    // The technician works on: the queue keeps the request as it was.
    client
        .edit(job, fieldsync_tests::append_notes(" checked the fan"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eventually(SETTLE, "the note is stored", || async {
        let body = desk.server.get_job(job).await.ok()?;
        fieldsync_tests::notes_of(&body)
            .contains("checked the fan")
            .then_some(())
    })
    .await?;
    assert_eq!(
        approval_states(&desk.get(ANALYST, "/api/approvals").await?.1),
        [("ext-7".to_owned(), false, None)]
    );

    desk.expect(
        MANAGER,
        Method::POST,
        &format!("/api/jobs/{job}/approvals/ext-7/decision"),
        Some(json!({"approved": true, "note": "two more days"})),
        StatusCode::OK,
    )
    .await?;
    // Right after the call: no `eventually`.
    assert_eq!(
        approval_states(&desk.get(ANALYST, "/api/approvals").await?.1),
        [("ext-7".to_owned(), true, Some(true))]
    );
    assert_eq!(
        approval_states(&desk.get(ANALYST, "/api/approvals?pending=true").await?.1),
        []
    );
    assert_eq!(desk.approvals_waiting().await?, 0);

    // A second request after the decision joins the queue beside the decided one.
    ask(&client, job, "ret-7", ApprovalKind::ProductReturn, None, 0).await?;
    let queue = eventually(SETTLE, "the second request reaches the queue", || async {
        let (_, body) = desk.get(ANALYST, "/api/approvals").await.ok()?;
        (approval_states(&body).len() == 2).then_some(body)
    })
    .await?;
    assert_eq!(
        approval_states(&queue),
        [
            ("ext-7".to_owned(), true, Some(true)),
            ("ret-7".to_owned(), false, None)
        ]
    );
    assert!(
        client
            .wait_for(job, SETTLE, |d| read_approvals(d).is_ok_and(|a| a
                .iter()
                .any(|x| x.id == "ext-7" && x.decision.is_some())))
            .await,
        "the decision reaches the device"
    );
    Ok(())
}

/// The device asks for an extension (R12) and a warranty part (R18); once both are queued a
/// manager decides the part.
async fn two_requests_with_the_part_decided(
    desk: &Desk,
    client: &SyncClient,
    job: DocumentId,
    approved: bool,
    note: &str,
) -> anyhow::Result<()> {
    ask(client, job, "ext-1", ApprovalKind::Extension, None, -20).await?;
    ask(
        client,
        job,
        "part-1",
        ApprovalKind::WarrantyPart,
        Some(Money(40_000)),
        -10,
    )
    .await?;
    eventually(SETTLE, "both requests reach the queue", || async {
        let (_, body) = desk.get(ANALYST, "/api/approvals").await.ok()?;
        (approval_states(&body).len() == 2).then_some(())
    })
    .await?;
    desk.expect(
        MANAGER,
        Method::POST,
        &format!("/api/jobs/{job}/approvals/part-1/decision"),
        Some(json!({"approved": approved, "note": note})),
        StatusCode::OK,
    )
    .await?;
    Ok(())
}

/// After a restart the queue is rebuilt from the stored jobs before the first listing
/// answers, decisions included, and follows the feed again from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_r18_desk_approvals_queue_is_rebuilt_after_a_restart() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let devices = temp_dir()?;
    let (job, client) = job_on_a_device(&desk, "dev-restart", &devices).await?;
    two_requests_with_the_part_decided(&desk, &client, job, false, "not a warranty case").await?;
    drop(client);

    let desk = desk.restart().await?;
    // The first listing after the start: no `eventually`.
    let queue = desk.get(ANALYST, "/api/approvals").await?.1;
    assert_eq!(
        approval_states(&queue),
        [
            ("ext-1".to_owned(), false, None),
            ("part-1".to_owned(), true, Some(false))
        ],
        "{queue}"
    );
    assert_eq!(queue["approvals"][1]["amount"], 40_000);
    assert_eq!(desk.approvals_waiting().await?, 1);

    // The technician's other device asks after the restart; the rebuilt queue follows.
    let other = desk.server.enroll("tech-wang", "dev-restart-2")?;
    let client = desk.server.connect_device(&other, devices.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);
    ask(&client, job, "ret-1", ApprovalKind::ProductReturn, None, 0).await?;
    eventually(
        SETTLE,
        "the new request reaches the rebuilt queue",
        || async {
            let (_, body) = desk
                .get(ANALYST, "/api/approvals?pending=true")
                .await
                .ok()?;
            (ids(&body["approvals"]) == BTreeSet::from(["ext-1".to_owned(), "ret-1".to_owned()]))
                .then_some(())
        },
    )
    .await?;
    assert_eq!(desk.approvals_waiting().await?, 2);
    Ok(())
}

/// The workers that follow the stored documents (`sync::progress`), by the names their
/// watermarks are stored under.
const WORKERS: [&str; 3] = ["approvals", "signer", "desk_follow"];

/// Waits until every worker's stored watermark covers every stored change: a restart from
/// here has nothing to read.
async fn until_workers_caught_up(server: &TestServer) -> anyhow::Result<()> {
    let store = &server.state.store;
    eventually(
        SETTLE,
        "every worker stores a watermark past every change",
        || async {
            let last = store.docs_changed_since(0, usize::MAX).ok()?.last()?.1;
            WORKERS
                .iter()
                .all(|w| store.watermark(w).is_ok_and(|m| m >= last))
                .then_some(())
        },
    )
    .await
}

/// A `fieldsync_worker_read_at_start{worker=…}` gauge.
async fn read_at_start(desk: &Desk, worker: &str) -> anyhow::Result<i64> {
    let text = desk
        .http
        .get(desk.server.http_url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let key = format!("fieldsync_worker_read_at_start{{worker=\"{worker}\"}} ");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .ok_or_else(|| anyhow::anyhow!("no {key} in /metrics"))?;
    Ok(value.trim().parse()?)
}

/// Issue 17: a restart reads no stored job that did not change since the workers last took
/// it in (a branch keeps years of jobs), yet the approvals queue (R12, R18, R31) answers as
/// before, kept in the store with its decisions; and it follows changes after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_r18_r31_a_restart_reads_no_unchanged_job_and_the_queue_answers_the_same()
-> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let devices = temp_dir()?;
    let (job, client) = job_on_a_device(&desk, "dev-cold", &devices).await?;
    // Jobs without requests, as most are.
    for _ in 0..4 {
        desk.server.create_job("tech-li").await?;
    }
    two_requests_with_the_part_decided(&desk, &client, job, true, "warranty case").await?;
    drop(client);
    let before = desk.get(ANALYST, "/api/approvals").await?.1;
    until_workers_caught_up(&desk.server).await?;

    let desk = desk.restart().await?;
    let queue = desk.get(ANALYST, "/api/approvals").await?.1;
    assert_eq!(queue, before, "the same queue after the restart");
    assert_eq!(
        approval_states(&queue),
        [
            ("ext-1".to_owned(), false, None),
            ("part-1".to_owned(), true, Some(true))
        ],
    );
    assert_eq!(desk.approvals_waiting().await?, 1);
    for worker in WORKERS {
        assert_eq!(
            read_at_start(&desk, worker).await?,
            0,
            "{worker} read jobs at start"
        );
    }

    // A decision after the restart, on an entry read back from the store, and a request
    // from another device: the queue follows both.
    desk.expect(
        MANAGER,
        Method::POST,
        &format!("/api/jobs/{job}/approvals/ext-1/decision"),
        Some(json!({"approved": false, "note": "not now"})),
        StatusCode::OK,
    )
    .await?;
    let other = desk.server.enroll("tech-wang", "dev-cold-2")?;
    let client = desk.server.connect_device(&other, devices.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);
    ask(&client, job, "ret-1", ApprovalKind::ProductReturn, None, 0).await?;
    eventually(SETTLE, "the new request reaches the queue", || async {
        let (_, body) = desk.get(ANALYST, "/api/approvals").await.ok()?;
        (approval_states(&body)
            == [
                ("ext-1".to_owned(), true, Some(false)),
                ("part-1".to_owned(), true, Some(true)),
                ("ret-1".to_owned(), false, None),
            ])
        .then_some(())
    })
    .await?;
    assert_eq!(desk.approvals_waiting().await?, 1);
    drop(client);

    // Once more, now that the workers have caught up with those changes too.
    until_workers_caught_up(&desk.server).await?;
    let before = desk.get(ANALYST, "/api/approvals").await?.1;
    let desk = desk.restart().await?;
    assert_eq!(desk.get(ANALYST, "/api/approvals").await?.1, before);
    assert_eq!(read_at_start(&desk, "approvals").await?, 0);
    Ok(())
}

/// The real signer, end to end: a technician completes a job on a device, the edge signs
/// the report, and the signer's call into the desk re-checks R4 with the diagnosed fault and
/// puts the customer on the next day's call list (R14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_r14_desk_the_report_signer_updates_the_desk_record() -> anyhow::Result<()> {
    use crate::reports::{acknowledge, check_out_and_complete, do_the_work, edit, outcome};
    use fieldsync_shared::job::ReportOutcome;

    let desk = Desk::start().await?;
    let devices = temp_dir()?;
    // An earlier compressor repair on the product of the sample job (serial SN-88812).
    let earlier = desk
        .request(request_body(30 * DAY, "SN-88812", "compressor"))
        .await?;
    let earlier = str_of(&desk.dispatch(&earlier).await?["job_id"])?;
    served(&desk, &earlier, 29 * DAY).await?;

    let (device, key) = desk.server.enroll_with_key("tech-wang", "dev-signer")?;
    let job = desk.server.create_job("tech-wang").await?.job;
    let client = desk.server.connect_device(&device, devices.path()).await?;
    client.subscribe(job);
    assert!(client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await);
    do_the_work(&client, job).await?;
    edit(&client, job, |jd| jd.set_fault_category(Some("compressor"))).await?;
    acknowledge(&client, job, &device, &key).await?;
    check_out_and_complete(&client, job, true, NOW + 60_000).await?;
    let Some(ReportOutcome::Signed { report_id, .. }) = outcome(&client, job).await else {
        anyhow::bail!("the job was not signed");
    };

    let record = eventually(SETTLE, "the signer updates the desk record", || async {
        let (_, body) = desk
            .get(ANALYST, &format!("/api/jobs/{job}/desk"))
            .await
            .ok()?;
        (body["report_id"] == report_id.as_str()).then_some(body)
    })
    .await?;
    assert_eq!(
        record["repeat_of"].as_array().map(Vec::len),
        Some(0),
        "no category at creation"
    );
    assert_eq!(
        record["repeat_on_signing"][0]["job_id"],
        earlier.as_str(),
        "R4 at signing: {record}"
    );
    let served: Timestamp = str_of(&record["served_at"])?.parse()?;
    assert_eq!(
        served,
        Timestamp::from_millis(NOW + 60_000),
        "R14: the day of the check-out"
    );
    let call_day = served.plus_millis(DAY).date()?;
    let calls = desk
        .get(DISPATCHER, &format!("/api/follow-ups?date={call_day}"))
        .await?
        .1;
    assert_eq!(ids(&calls["jobs"]), BTreeSet::from([job.to_string()]));
    Ok(())
}

/// R21 under contention: desks recording the same step at once. Exactly one wins; the
/// others get a 409 and the record holds the step once (compare-and-set in the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_desk_concurrent_steps_are_recorded_once() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/complaints",
            Some(json!({
                "channel": "letter", "category": "product_quality", "received_at": from_now(-DAY),
                "complainant": "Mr Li", "content": "Leaks again", "asks": "A replacement",
                "recorded_by": "Ms Zhou",
            })),
            StatusCode::CREATED,
        )
        .await?;
    let path = format!("/api/complaints/{}/steps", str_of(&created["id"])?);
    let attempts = (0..8).map(|_| desk.post(DISPATCHER, &path, step("classify")));
    let answers = futures_util::future::join_all(attempts).await;
    let mut ok = 0;
    for answer in answers {
        let (status, body) = answer?;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert!(
                ["conflict", "step_already_recorded"]
                    .contains(&body["code"].as_str().unwrap_or_default()),
                "{body}"
            ),
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1);
    let record = desk.get(ANALYST, &path.replace("/steps", "")).await?.1;
    assert_eq!(
        record["steps"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );
    Ok(())
}

/// Writes into a stored job the way a device's synced change lands: a durable change of the
/// job document that the hub announces (what the desk's follower of the jobs reads).
async fn device_writes(
    desk: &Desk,
    job: DocumentId,
    edit: impl FnOnce(
        &mut fieldsync_shared::job::doc::JobDoc,
    ) -> Result<(), fieldsync_shared::job::doc::EditError>
    + Send
    + 'static,
) -> anyhow::Result<()> {
    desk.server
        .state
        .hub
        .edit(job, LocalEdit::job(edit))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// R4 compares only with served jobs: job `id` checked out by tech-wang `ago` ms ago, as a
/// device's synced change lands, and seen by the desk's record.
async fn served(desk: &Desk, id: &str, ago: i64) -> anyhow::Result<()> {
    let job: DocumentId = id.parse()?;
    let out = fieldsync_shared::job::CheckOut {
        at: now().plus_millis(-ago),
        by: TechnicianId::new("tech-wang")?,
        note: String::new(),
    };
    device_writes(desk, job, move |j| j.check_out(&out)).await?;
    let path = format!("/api/jobs/{id}/desk");
    eventually(SETTLE, "the check-out in the desk record", || async {
        let (_, r) = desk.get(ANALYST, &path).await.ok()?;
        r["checked_out_at"].is_string().then_some(())
    })
    .await
}

/// Reads request `id` until `check` holds (the follower works beside the API).
async fn request_when(
    desk: &Desk,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let path = format!("/api/requests/{id}");
    eventually(SETTLE, what, || async {
        let (_, body) = desk.get(ANALYST, &path).await.ok()?;
        check(&body).then_some(body)
    })
    .await
}

#[tokio::test]
async fn r2_desk_arrival_comes_from_the_job_and_an_arrival_in_the_future_is_refused()
-> anyhow::Result<()> {
    let desk = Desk::start().await?;
    // Asked for two hours ago; the technician's device records arriving an hour ago.
    let mut body = request_body(3 * HOUR, "SN-21", "compressor");
    body["requested_arrival"] = json!(from_now(-2 * HOUR));
    let req = desk.request(body).await?;
    let job: DocumentId = str_of(&desk.dispatch(&req).await?["job_id"])?.parse()?;
    let arrived = now().plus_millis(-HOUR);
    device_writes(&desk, job, move |j| j.set_arrival(Some(arrived))).await?;
    let taken = request_when(&desk, &req, "the device's arrival", |r| {
        r["arrival"]["source"] == "device"
    })
    .await?;
    assert_eq!(
        taken["arrival"]["at"],
        arrived.to_string().as_str(),
        "{taken}"
    );
    assert_eq!(taken["arrival"]["received_at"], now().to_string().as_str());
    assert_eq!(taken["arrival"]["technician"], "tech-wang");
    assert_eq!(taken["arrival"]["late"], true);
    assert_eq!(taken["arrival_clock"], "met_late");
    // The device says when, the desk says why.
    assert_eq!(taken["late_cause_missing"], true);
    // R2: the technician on site answered the customer (received now, 3 h after the call).
    assert_eq!(taken["reply"]["source"], "technician_contact", "{taken}");
    assert_eq!(taken["reply"]["at"], now().to_string().as_str());
    assert_eq!(taken["reply_clock"], "met");

    // The desk adds the cause without a reason (the time is the device's) ...
    let path = format!("/api/requests/{req}/arrival");
    let caused = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &path,
            Some(json!({"technician": "tech-wang", "at": arrived.to_string(), "cause": "traffic"})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(caused["late_cause_missing"], false);
    assert_eq!(
        caused["arrival_corrections"].as_array().map(Vec::len),
        Some(0)
    );
    // ... but changes the time only with a reason, which is kept.
    let corrected_at = now().plus_millis(-90 * 60_000);
    let change =
        json!({"technician": "tech-wang", "at": corrected_at.to_string(), "cause": "traffic"});
    let (status, body) = desk.post(DISPATCHER, &path, change.clone()).await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_recorded");
    let mut with_reason = change;
    with_reason["reason"] = json!("the gate log says 08:30");
    let corrected = desk
        .expect(
            DISPATCHER,
            Method::POST,
            &path,
            Some(with_reason),
            StatusCode::OK,
        )
        .await?;
    let correction = &corrected["arrival_corrections"][0];
    assert_eq!(correction["previous_source"], "desk", "{corrected}");
    assert_eq!(correction["reason"], "the gate log says 08:30");
    assert_eq!(correction["by"], "dispatcher");
    assert_eq!(
        corrected["arrival"]["at"],
        corrected_at.to_string().as_str()
    );
    // A later device edit does not undo the desk's correction.
    device_writes(&desk, job, move |j| {
        j.set_arrival(Some(arrived.plus_millis(60_000)))
    })
    .await?;
    let list = desk.get(ANALYST, "/api/requests?due=all").await?.1;
    let still = list["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["id"] == req.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        still["arrival"]["at"],
        corrected_at.to_string().as_str(),
        "{still}"
    );

    // An arrival three hours after the server received it is refused, shown, not taken.
    let other = desk.request(request_body(HOUR, "SN-22", "fan")).await?;
    let other_job: DocumentId = str_of(&desk.dispatch(&other).await?["job_id"])?.parse()?;
    let future = now().plus_millis(3 * HOUR);
    device_writes(&desk, other_job, move |j| j.set_arrival(Some(future))).await?;
    let refused = request_when(&desk, &other, "the refused arrival", |r| {
        r["arrival_refused"].is_object()
    })
    .await?;
    assert_eq!(refused["arrival_refused"]["code"], "arrival_in_future");
    assert_eq!(
        refused["arrival_refused"]["at"],
        future.to_string().as_str()
    );
    assert!(
        refused["arrival_refused"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be in the future")),
        "{refused}"
    );
    assert_eq!(refused["arrival"], Value::Null);
    // The desk cannot enter one either.
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{other}/arrival"),
            json!({"technician": "tech-wang", "at": future.to_string()}),
        )
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "arrival_in_future");
    // Within the few minutes' tolerance of a device's clock, it is taken.
    let drift = now().plus_millis(2 * 60_000);
    device_writes(&desk, other_job, move |j| j.set_arrival(Some(drift))).await?;
    let taken = request_when(&desk, &other, "the drifting arrival", |r| {
        r["arrival"]["source"] == "device"
    })
    .await?;
    assert_eq!(taken["arrival_refused"], Value::Null, "{taken}");
    Ok(())
}

#[tokio::test]
async fn r2_desk_reply_is_the_first_of_desk_dispatch_appointment_and_technician_contact()
-> anyhow::Result<()> {
    let desk = Desk::start().await?;
    // Received 30 h ago, no reply: overdue.
    let served = desk
        .request(request_body(30 * HOUR, "SN-31", "fan"))
        .await?;
    let booked = desk
        .request(request_body(20 * HOUR, "SN-32", "fan"))
        .await?;
    let called = desk.request(request_body(2 * HOUR, "SN-33", "fan")).await?;
    let overdue = desk.get(ANALYST, "/api/requests?due=overdue").await?.1;
    assert_eq!(ids(&overdue["requests"]), BTreeSet::from([served.clone()]));

    // R3 dispatch with the appointment agreed: the customer was answered then.
    let appointment =
        json!({"at": from_now(DAY), "contacted_by": "Ms Zhou", "fault_rechecked": "fan rattles"});
    desk.expect(
        DISPATCHER,
        Method::POST,
        &format!("/api/requests/{booked}/job"),
        Some(json!({"kind": "repair", "technician": "tech-li", "appointment": appointment})),
        StatusCode::CREATED,
    )
    .await?;
    let one = desk
        .get(ANALYST, &format!("/api/requests/{booked}"))
        .await?
        .1;
    assert_eq!(one["reply"]["source"], "appointment", "{one}");
    assert_eq!(one["reply"]["by"], "Ms Zhou");
    assert_eq!(one["reply_clock"], "met");
    // The desk's reply afterwards is refused: the first reply counts.
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{booked}/reply"),
            json!({"by": "Ms Zhou", "text": "again"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::CONFLICT, "already_replied");

    // The technician agrees an appointment from the device (R3): that is the contact.
    let job: DocumentId = str_of(&desk.dispatch(&called).await?["job_id"])?.parse()?;
    let at = now().plus_millis(5 * HOUR);
    device_writes(&desk, job, move |j| j.set_appointment(Some(at))).await?;
    let contacted = request_when(&desk, &called, "the technician's contact", |r| {
        r["reply"].is_object()
    })
    .await?;
    assert_eq!(
        contacted["reply"]["source"], "technician_contact",
        "{contacted}"
    );
    assert_eq!(contacted["reply"]["by"], "tech-wang");

    // A request whose job is signed is served: never overdue, not open.
    let served_job: DocumentId = str_of(&desk.dispatch(&served).await?["job_id"])?.parse()?;
    let job = desk.server.fetch_job(served_job).await?;
    on_report_signed(desk.server.edge()?, &job, "r-31", now())
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let overdue = desk.get(ANALYST, "/api/requests?due=overdue").await?.1;
    assert!(ids(&overdue["requests"]).is_empty(), "{overdue}");
    let open = desk.get(ANALYST, "/api/requests").await?.1;
    assert!(!ids(&open["requests"]).contains(&served), "{open}");
    let one = desk
        .get(ANALYST, &format!("/api/requests/{served}"))
        .await?
        .1;
    assert_eq!(one["job_signed_at"], now().to_string().as_str(), "{one}");
    Ok(())
}

#[tokio::test]
async fn r3_desk_jobs_go_only_to_technicians_with_an_enrolled_device() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let listed = desk.get(ANALYST, "/api/technicians").await?.1;
    let names: Vec<&str> = listed["technicians"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["technician"].as_str())
        .collect();
    assert_eq!(names, ["tech-li", "tech-wang"], "{listed}");

    // A typo is refused, naming who the branch's technicians are.
    let mut typo = fieldsync_tests::sample_job_body("tech-wnag");
    // sample_job_body pre-assigns (most tests enroll after making the job); this one must not.
    typo.as_object_mut().map(|o| o.remove("pre_assign"));
    let (status, body) = desk.post(DISPATCHER, "/api/jobs", typo.clone()).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_technician");
    let message = str_of(&body["message"])?;
    assert!(
        message.contains("tech-wnag") && message.contains("tech-wang"),
        "{message}"
    );
    let req = desk.request(request_body(HOUR, "SN-41", "fan")).await?;
    let (status, body) = desk
        .post(
            DISPATCHER,
            &format!("/api/requests/{req}/job"),
            json!({"kind": "repair", "technician": "tech-wnag"}),
        )
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_technician");
    // Nothing was made: the request is free again.
    let one = desk.get(ANALYST, &format!("/api/requests/{req}")).await?.1;
    assert_eq!(one["job_id"], Value::Null, "{one}");

    // New staff can be pre-assigned, and the answer says so.
    let mut new_staff = fieldsync_tests::sample_job_body("tech-zhao");
    new_staff["pre_assign"] = json!(true);
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/jobs",
            Some(new_staff),
            StatusCode::CREATED,
        )
        .await?;
    assert_eq!(
        created["warnings"][0]["code"], "technician_not_enrolled",
        "{created}"
    );
    let job = str_of(&created["job_id"])?;

    // Reassigning to an unknown technician is refused too; to an enrolled one, no warning.
    let path = format!("/api/jobs/{job}/technicians");
    let (status, body) = desk
        .call(
            Some(DISPATCHER),
            Method::PUT,
            &path,
            Some(&json!({"technicians": ["tech-lii"]})),
        )
        .await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "unknown_technician");
    let moved = desk
        .expect(
            DISPATCHER,
            Method::PUT,
            &path,
            Some(json!({"technicians": ["tech-li"]})),
            StatusCode::OK,
        )
        .await?;
    assert_eq!(moved["warnings"], json!([]), "{moved}");
    Ok(())
}

#[tokio::test]
async fn r4_desk_matches_either_category_and_only_jobs_that_were_served() -> anyhow::Result<()> {
    let desk = Desk::start().await?;
    // The desk said "compressor"; the technician diagnosed the start relay and signed.
    let first = desk
        .request(request_body(30 * DAY, "SN-51", "compressor"))
        .await?;
    let first: DocumentId = str_of(&desk.dispatch(&first).await?["job_id"])?.parse()?;
    let mut job = desk.server.fetch_job(first).await?;
    job.diagnosis.fault_category = Some("start relay".into());
    on_report_signed(
        desk.server.edge()?,
        &job,
        "r-51",
        now().plus_millis(-29 * DAY),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let record = desk
        .get(ANALYST, &format!("/api/jobs/{first}/desk"))
        .await?
        .1;
    assert_eq!(
        (
            record["fault_category"].clone(),
            record["diagnosed_category"].clone()
        ),
        (json!("compressor"), json!("start relay")),
        "{record}"
    );
    // A duplicate job opened by mistake and never served.
    let duplicate = desk
        .request(request_body(20 * DAY, "SN-51", "compressor"))
        .await?;
    let duplicate = str_of(&desk.dispatch(&duplicate).await?["job_id"])?;
    // A third job, checked out by its technician (served) but not signed yet.
    let third = desk
        .request(request_body(10 * DAY, "SN-51", "start relay"))
        .await?;
    let third: DocumentId = str_of(&desk.dispatch(&third).await?["job_id"])?.parse()?;
    let out = fieldsync_shared::job::CheckOut {
        at: now().plus_millis(-9 * DAY),
        by: TechnicianId::new("tech-wang")?,
        note: String::new(),
    };
    device_writes(&desk, third, move |j| j.check_out(&out)).await?;
    let third_path = format!("/api/jobs/{third}/desk");
    eventually(SETTLE, "the check-out in the desk record", || async {
        let (_, r) = desk.get(ANALYST, &third_path).await.ok()?;
        r["checked_out_at"].is_string().then_some(())
    })
    .await?;

    // "Compressor trips again": the desk's category matches the first job's; the duplicate,
    // never served, is not a repair; the third matches on the diagnosis of the first only
    // through "start relay", which this request does not carry.
    let again = desk
        .request(request_body(HOUR, "SN-51", "compressor"))
        .await?;
    let created = desk.dispatch(&again).await?;
    let flagged: BTreeSet<String> = created["repeat_of"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["job_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(flagged, BTreeSet::from([first.to_string()]), "{created}");
    assert!(!flagged.contains(&duplicate));
    // "Start relay": the first job's diagnosis and the third's desk category both match.
    let relay = desk
        .request(request_body(HOUR, "SN-51", "Start Relay"))
        .await?;
    let created = desk.dispatch(&relay).await?;
    let flagged: BTreeSet<String> = created["repeat_of"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["job_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        flagged,
        BTreeSet::from([first.to_string(), third.to_string()]),
        "{created}"
    );
    Ok(())
}

#[tokio::test]
async fn r22_desk_complaint_rate_is_complaints_over_reports_verified_in_the_month()
-> anyhow::Result<()> {
    let desk = Desk::start().await?;
    let month = now().month()?;
    // Four jobs made this month: two whose reports were signed this month, one whose report
    // is dated the 31st of October (last month's), one never signed (a mistake). The old
    // denominator (jobs received in the month) would have said 1/4.
    let mut jobs = Vec::new();
    for serial in ["SN-61", "SN-62", "SN-63", "SN-64"] {
        let req = desk.request(request_body(HOUR, serial, "fan")).await?;
        let job: DocumentId = str_of(&desk.dispatch(&req).await?["job_id"])?.parse()?;
        jobs.push(job);
    }
    let october_31 = Timestamp::from_millis(1_793_491_200_000 - HOUR);
    for (job, signed_at) in [
        (jobs[0], now().plus_millis(-DAY)),
        (jobs[1], now()),
        (jobs[2], october_31),
    ] {
        let read = desk.server.fetch_job(job).await?;
        on_report_signed(desk.server.edge()?, &read, &format!("r-{job}"), signed_at)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let complaint = json!({
        "channel": "phone",
        "category": "service",
        "received_at": from_now(-HOUR),
        "complainant": "Ms Chen",
        "contact": "555-0101",
        "customer_id": "c-1001",
        "against": {"job_id": jobs[0].url(), "technician": "tech-wang"},
        "content": "Left without testing",
        "asks": "A second visit",
        "recorded_by": "Ms Zhou",
    });
    let (status, body) = desk.post(DISPATCHER, "/api/complaints", complaint).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let summary = desk
        .expect(
            ANALYST,
            Method::GET,
            &format!("/api/complaints/summary?month={month}"),
            None,
            StatusCode::OK,
        )
        .await?;
    // By hand: 1 complaint ÷ 2 reports verified in November = 0.5.
    assert_eq!(summary["complaints"], 1, "{summary}");
    assert_eq!(summary["reports_verified"], 2, "{summary}");
    assert_eq!(summary["rate"], 0.5);
    Ok(())
}

/// Issue 16 (time zones): a branch in UTC+8 reads R22's month and R14's call day in its own
/// zone. Around midnight of 1 December in Shanghai (16:00 UTC on 30 November) UTC would put
/// everything in November.
#[tokio::test]
async fn r22_r14_desk_months_and_days_follow_the_branch_time_zone() -> anyhow::Result<()> {
    let desk = Desk::start_with(|c| {
        c.timezone = "Asia/Shanghai"
            .parse()
            .expect("in the bundled zone database");
    })
    .await?;
    let at = |s: &str| s.parse::<Timestamp>();
    // 09:00 on 1 December in Shanghai.
    desk.clock.set(at("2026-12-01T01:00:00Z")?);
    let mut jobs = Vec::new();
    for serial in ["SN-81", "SN-82"] {
        let req = desk.request(request_body(3 * DAY, serial, "fan")).await?;
        let job: DocumentId = str_of(&desk.dispatch(&req).await?["job_id"])?.parse()?;
        jobs.push(job);
    }
    // 23:30 on 30 November and 00:30 on 1 December, Shanghai time.
    let (late_november, early_december) = (jobs[0], jobs[1]);
    for (job, signed_at) in [
        (late_november, at("2026-11-30T15:30:00Z")?),
        (early_december, at("2026-11-30T16:30:00Z")?),
    ] {
        let read = desk.server.fetch_job(job).await?;
        on_report_signed(desk.server.edge()?, &read, &format!("r-{job}"), signed_at)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    // Received at 01:00 on 1 December, Shanghai time (17:00 UTC on 30 November).
    let complaint = json!({
        "channel": "phone",
        "category": "service",
        "received_at": "2026-11-30T17:00:00Z",
        "complainant": "Ms Chen",
        "contact": "555-0101",
        "customer_id": "c-1001",
        "against": {"job_id": early_december.url(), "technician": "tech-wang"},
        "content": "Left without testing",
        "asks": "A second visit",
        "recorded_by": "Ms Zhou",
    });
    let (status, body) = desk.post(DISPATCHER, "/api/complaints", complaint).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let summary = |month: &'static str| {
        let desk = &desk;
        async move {
            desk.expect(
                ANALYST,
                Method::GET,
                &format!("/api/complaints/summary?month={month}"),
                None,
                StatusCode::OK,
            )
            .await
        }
    };
    // By hand, in Shanghai time: November has one report and no complaint; December one of
    // each (rate 1.0). In UTC all three would be November's.
    let november = summary("2026-11").await?;
    assert_eq!(
        (
            november["complaints"].clone(),
            november["reports_verified"].clone()
        ),
        (json!(0), json!(1)),
        "{november}"
    );
    let december = summary("2026-12").await?;
    assert_eq!(
        (
            december["complaints"].clone(),
            december["reports_verified"].clone(),
            december["rate"].clone()
        ),
        (json!(1), json!(1), json!(1.0)),
        "{december}"
    );
    // R14: the day after service, in Shanghai time: the late-November job is called on
    // 1 December, the early-December one on the 2nd.
    let calls = |date: &'static str| {
        let desk = &desk;
        async move {
            let (_, body) = desk
                .get(ANALYST, &format!("/api/follow-ups?date={date}"))
                .await?;
            let ids: BTreeSet<String> = body["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|j| j["job_id"].as_str().map(str::to_owned))
                .collect();
            anyhow::Ok(ids)
        }
    };
    assert_eq!(
        calls("2026-12-01").await?,
        BTreeSet::from([late_november.to_string()])
    );
    assert_eq!(
        calls("2026-12-02").await?,
        BTreeSet::from([early_december.to_string()])
    );
    Ok(())
}

/// Issue 20: the desk gives a job the price list the technician picks parts from (R10, R18);
/// the list is checked, and a bad one is refused naming what is wrong, with no job made.
#[tokio::test]
async fn issue_20_a_job_carries_the_desks_price_list_and_a_bad_one_is_refused() -> anyhow::Result<()>
{
    use fieldsync_shared::job::price_list::{PriceItem, read_price_list};
    let desk = Desk::start().await?;
    let mut body = fieldsync_tests::sample_job_body("tech-wang");
    body["pre_assign"] = json!(true);
    let too_long: Vec<Value> = (0..201)
        .map(|i| json!({"part_number": format!("P{i}"), "name": "fuse", "unit_price": "1"}))
        .collect();
    for (list, code, says) in [
        (
            json!([{"part_number": "A", "name": "fuse", "unit_price": "8.5.0"}]),
            "invalid_field",
            "price_list[0].unit_price",
        ),
        (
            json!([{"part_number": "A", "name": "fuse", "unit_price": "-1"}]),
            "invalid_field",
            "not an amount",
        ),
        (
            json!([
                {"part_number": "A", "name": "fuse", "unit_price": "1"},
                {"part_number": "A", "name": "relay", "unit_price": "2"}
            ]),
            "invalid_field",
            "price_list[1]: part number A is listed twice",
        ),
        (
            json!([{"part_number": " ", "name": "fuse", "unit_price": "1"}]),
            "invalid_field",
            "a part number and a name",
        ),
        (json!(too_long), "price_list_too_long", "at most 200"),
    ] {
        body["price_list"] = list;
        let (status, answer) = desk.post(DISPATCHER, "/api/jobs", body.clone()).await?;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, code);
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    let listed = desk
        .expect(DISPATCHER, Method::GET, "/api/jobs", None, StatusCode::OK)
        .await?;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(0), "{listed}");

    body["price_list"] = json!([
        {"part_number": " TC-220 ", "name": "温控器", "specification": "220V 10A", "unit_price": "85.5"},
        {"part_number": "F-10", "name": "Fuse", "unit_price": "2"}
    ]);
    let created = desk
        .expect(
            DISPATCHER,
            Method::POST,
            "/api/jobs",
            Some(body),
            StatusCode::CREATED,
        )
        .await?;
    let job: DocumentId = str_of(&created["job_id"])?.parse()?;
    let doc = desk.server.stored_doc(job)?;
    assert_eq!(
        read_price_list(&doc),
        [
            PriceItem {
                part_number: "TC-220".into(),
                name: "温控器".into(),
                specification: "220V 10A".into(),
                unit_price: Money(8_550),
            },
            PriceItem {
                part_number: "F-10".into(),
                name: "Fuse".into(),
                specification: String::new(),
                unit_price: Money(200),
            },
        ]
    );
    Ok(())
}
