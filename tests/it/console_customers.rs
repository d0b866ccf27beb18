//! Customer files and technicians in the console (issue 14, point 3): a technician's page
//! with the violations the seed says are recorded (R2, R4, R7, R11, R15), computed from jobs
//! a real device worked on and the desk's records; per role, with refusals.

use anyhow::Context;
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::job::ReportOutcome;
use fieldsync_shared::job::doc::read_job;
use fieldsync_shared::time::Timestamp;
use fieldsync_tests::{SETTLE, TestServer, eventually, sample_job_body, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{Browser, MINUTE, T0, console_server};
use crate::reports::{acknowledge, check_out_and_complete, do_the_work, edit, outcome};

/// A job for tech-wang on `serial`, received at `received`, asked for by `arrival`.
fn job_body(serial: &str, category: &str, received: &str, arrival: Option<&str>) -> Value {
    let mut body = sample_job_body("tech-wang");
    body["product"]["serial"] = json!(serial);
    body["request"]["received_at"] = json!(received);
    body["request"]["requested_arrival"] = json!(arrival);
    body["request"]["fault_category"] = json!(category);
    body
}

async fn api_get(
    server: &TestServer,
    role: DeskRole,
    path: &str,
) -> anyhow::Result<(StatusCode, Value)> {
    let answer = reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(server.desk_token(role)?)
        .send()
        .await?;
    Ok((answer.status(), answer.json().await?))
}

async fn api_post(
    server: &TestServer,
    role: DeskRole,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let answer = reqwest::Client::new()
        .post(server.http_url(path))
        .bearer_auth(server.desk_token(role)?)
        .json(body)
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
    Ok(body)
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_r4_r7_r11_r15_the_technicians_page_shows_their_jobs_and_recorded_violations()
-> anyhow::Result<()> {
    let (data, devices) = (temp_dir()?, temp_dir()?);
    let server = console_server(data.path()).await?;
    let (device, key) = server.enroll_with_key("tech-wang", "dev-wang")?;
    let client = server.connect_device(&device, devices.path()).await?;
    let now = T0.as_millis();

    // A: asked for 11:00 (Shanghai) today, arrived 09:30: on time; complete, signed.
    let a = server
        .create_job_from(&job_body(
            "SN-1",
            "compressor",
            "2026-11-20T00:00:00Z",
            Some("2026-11-20T03:00:00Z"),
        ))
        .await?
        .job;
    // B: asked for yesterday 17:00, arrived today 09:00: late; completion asked for with
    // nothing recorded and no check-out: refused for R7 (and R8, R11).
    let b = server
        .create_job_from(&job_body(
            "SN-2",
            "fan",
            "2026-11-19T00:00:00Z",
            Some("2026-11-19T09:00:00Z"),
        ))
        .await?
        .job;
    for job in [a, b] {
        client.subscribe(job);
        anyhow::ensure!(
            client.wait_for(job, SETTLE, |d| read_job(d).is_ok()).await,
            "job {job} did not reach the device"
        );
    }
    edit(&client, a, move |jd| {
        jd.set_arrival(Some(at(now - 30 * MINUTE)))
    })
    .await?;
    do_the_work(&client, a).await?;
    acknowledge(&client, a, &device, &key).await?;
    check_out_and_complete(&client, a, true, now).await?;
    edit(&client, b, move |jd| {
        jd.set_arrival(Some(at(now - 60 * MINUTE)))
    })
    .await?;
    check_out_and_complete(&client, b, false, now).await?;
    let Some(ReportOutcome::Signed { .. }) = outcome(&client, a).await else {
        anyhow::bail!("job A was not signed");
    };
    let Some(ReportOutcome::Refused { .. }) = outcome(&client, b).await else {
        anyhow::bail!("job B was not refused");
    };
    // C: the same fault on A's product after A was served: R4 flags it; the technician
    // checks out (served), a repeat repair.
    let desk_path = format!("/api/jobs/{a}/desk");
    eventually(SETTLE, "A's desk record says served", || async {
        let (_, desk) = api_get(&server, DeskRole::Analyst, &desk_path).await.ok()?;
        (!desk["report_id"].is_null()).then_some(())
    })
    .await?;
    let created = api_post(
        &server,
        DeskRole::Dispatcher,
        "/api/jobs",
        &job_body("SN-1", "Compressor", "2026-11-20T01:00:00Z", None),
    )
    .await?;
    assert_eq!(
        created["repeat_of"][0]["job_id"],
        a.to_string().as_str(),
        "R4"
    );
    let c: fieldsync_shared::ids::DocumentId =
        created["job_id"].as_str().context("job_id")?.parse()?;
    client.subscribe(c);
    anyhow::ensure!(
        client.wait_for(c, SETTLE, |d| read_job(d).is_ok()).await,
        "job C did not reach the device"
    );
    edit(&client, c, move |jd| {
        jd.check_out(&fieldsync_shared::job::CheckOut {
            at: at(now),
            by: fieldsync_shared::ids::TechnicianId::new("tech-wang").expect("valid"),
            note: "same fault again".into(),
        })
    })
    .await?;
    // R15: a complaint about the technician's conduct, found valid (R21 step 2); another
    // about the product does not count.
    for category in ["service", "product_quality"] {
        let complaint = api_post(
            &server,
            DeskRole::Dispatcher,
            "/api/complaints",
            &json!({
                "channel": "phone",
                "category": category,
                "received_at": "2026-11-20T01:30:00Z",
                "complainant": "Ms Chen",
                "against": {"technician": "tech-wang"},
                "content": "Argued with the operator",
                "asks": "An apology",
                "recorded_by": "Ms Zhou",
            }),
        )
        .await?;
        let id = complaint["id"].as_str().context("id")?;
        api_post(
            &server,
            DeskRole::Dispatcher,
            &format!("/api/complaints/{id}/steps"),
            &json!({"step": "classify", "by": "Ms Zhou", "what": "checked", "valid": true}),
        )
        .await?;
    }

    // The JSON record: A on time, B late: 1 of 2 (50 %); C a repeat repair (R4); B an
    // incomplete report (R7) and a late check-out (R11); one verified conduct complaint.
    let path = "/api/technicians/tech-wang/record";
    let record = eventually(SETTLE, "C's check-out reaches the server", || async {
        let (status, record) = api_get(&server, DeskRole::Analyst, path).await.ok()?;
        (status == StatusCode::OK
            && record["repeat_repairs"]
                .as_array()
                .is_some_and(|r| !r.is_empty()))
        .then_some(record)
    })
    .await?;
    assert_eq!(record["jobs"], 3);
    assert_eq!(record["devices"], 1);
    assert_eq!(record["arrivals_counted"], 2, "{record}");
    assert_eq!(record["arrivals_on_time"], 1);
    assert_eq!(record["on_time_percent"], 50);
    assert_eq!(record["late_arrivals"], json!([b.to_string()]));
    assert_eq!(record["repeat_repairs"], json!([c.to_string()]));
    assert_eq!(record["incomplete_reports"], json!([b.to_string()]));
    assert_eq!(record["late_check_outs"], json!([b.to_string()]));
    assert_eq!(
        record["conduct_complaints"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(record["conduct_verified"].as_array().map(Vec::len), Some(1));
    assert_eq!(record["violations"], 4, "R4 + R7 + R11 + R15: {record}");
    let (status, body) = api_get(
        &server,
        DeskRole::Analyst,
        "/api/technicians/tech-nobody/record",
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_technician"))
    );
    // A device token is not the desk's.
    let device_token = server.device_token(&device, std::time::Duration::from_secs(60))?;
    let refused = reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(device_token)
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // R6: the warranty card's history of A's product: the date and content of each repair,
    // the later repeat visit beside it.
    let (status, file) = api_get(&server, DeskRole::Analyst, "/api/customers/c-1001").await?;
    assert_eq!(status, StatusCode::OK, "{file}");
    let sn1 = file["products"]
        .as_array()
        .context("products")?
        .iter()
        .find(|p| p["product"]["serial"] == "SN-1")
        .context("SN-1 on file")?;
    assert_eq!(sn1["jobs"][0]["job_id"], a.to_string().as_str());
    assert_eq!(sn1["jobs"][0]["status"], "signed");
    assert!(!sn1["jobs"][0]["signed_at"].is_null());
    assert_eq!(sn1["jobs"][0]["fault_cause"], "Worn start capacitor");
    assert_eq!(sn1["jobs"][0]["parts"], json!(["Start capacitor"]));
    assert_eq!(sn1["jobs"][1]["job_id"], c.to_string().as_str());
    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get("/customers/c-1001").await?;
    assert!(
        page.body.contains("故障原因: Worn start capacitor")
            && page.body.contains("Start capacitor"),
        "{}",
        page.body
    );

    // The pages, for every desk role; in each one's language.
    for (name, words) in [
        ("li", ["按时到达率", "50% (1/2)", "重复维修"]),
        ("wang", ["On-time arrival", "50% (1/2)", "Late check-outs"]),
        ("zhao", ["按时到达率", "50% (1/2)", "服务态度投诉"]),
    ] {
        let browser = Browser::signed_in(&server, name).await?;
        let list = browser.get("/technicians").await?;
        assert_eq!(list.status, StatusCode::OK, "{name}");
        assert!(
            list.body.contains("href=\"/technicians/tech-wang\""),
            "{}",
            list.body
        );
        let page = browser.get("/technicians/tech-wang").await?;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        for w in words {
            assert!(page.body.contains(w), "{name}: {w} in {}", page.body);
        }
        assert!(
            page.body.contains("<strong id=\"violations\">4</strong>"),
            "{}",
            page.body
        );
        for job in [a, b, c] {
            assert!(
                page.body.contains(&format!("href=\"/jobs/{job}\"")),
                "{job}"
            );
        }
        let unknown = browser.get("/technicians/tech-nobody").await?;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    }
    // Signed out: to the sign-in page, coming back here.
    let stranger = Browser::new(&server)?;
    let answer = stranger.get("/technicians/tech-wang").await?;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.location.as_deref(),
        Some("/login?next=/technicians/tech-wang")
    );
    drop(client);
    server.stop().await
}

/// A desk token naming `person`.
fn token(server: &TestServer, role: DeskRole, person: &str) -> anyhow::Result<String> {
    crate::console::person_token(server, role, person)
}

/// `method path` with `token` and `body`: the status and the JSON answer.
async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = reqwest::Client::new()
        .request(method, server.http_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await?;
    let status = answer.status();
    let text = answer.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[tokio::test]
async fn r4_r27_managers_keep_the_fault_category_list_and_jobs_outside_it_are_flagged()
-> anyhow::Result<()> {
    use reqwest::Method;
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let wang = Browser::signed_in(&server, "wang").await?;
    let page = wang.get("/fault-categories").await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("No fault categories yet."),
        "{}",
        page.body
    );
    let csrf = page.csrf()?;
    // A manager adds one; the same again in another spelling is refused in words.
    let added = wang
        .post(
            "/fault-categories",
            &[("csrf", &csrf), ("name", " Compressor ")],
        )
        .await?;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(
        added.location.as_deref(),
        Some("/fault-categories?done=category_added")
    );
    let again = wang
        .post(
            "/fault-categories",
            &[("csrf", &csrf), ("name", "COMPRESSOR")],
        )
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .body
            .contains("That fault category is in the list already."),
        "{}",
        again.body
    );
    let blank = wang
        .post("/fault-categories", &[("csrf", &csrf), ("name", "  ")])
        .await?;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    // Without the form's token nothing changes.
    let forged = wang
        .post("/fault-categories", &[("csrf", "0000"), ("name", "Fan")])
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // A dispatcher and an analyst read the list; only a manager changes it.
    for name in ["li", "zhao"] {
        let browser = Browser::signed_in(&server, name).await?;
        let page = browser.get("/fault-categories").await?;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Compressor") && !page.body.contains("id=\"add-category\""));
        let csrf = browser.get("/board").await?.csrf()?;
        let refused = browser
            .post("/fault-categories", &[("csrf", &csrf), ("name", "Fan")])
            .await?;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}");
    }
    // The JSON API: the same rules.
    let manager = token(&server, DeskRole::Manager, "wang")?;
    let dispatcher = token(&server, DeskRole::Dispatcher, "li")?;
    let analyst = token(&server, DeskRole::Analyst, "zhao")?;
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/fault-categories",
        &dispatcher,
        Some(json!({"name": "Fan"})),
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, fan) = call(
        &server,
        Method::POST,
        "/api/fault-categories",
        &manager,
        Some(json!({"name": "Fan"})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{fan}");
    let fan_id = fan["id"].as_str().context("id")?.to_owned();
    let retire = format!("/api/fault-categories/{fan_id}/retire");
    let (status, retired) = call(&server, Method::POST, &retire, &manager, None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(!retired["retired_at"].is_null());
    let (status, body) = call(&server, Method::POST, &retire, &manager, None).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("category_retired"))
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/api/fault-categories/cat-nothing/retire",
        &manager,
        None,
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_category"))
    );
    let (status, list) = call(
        &server,
        Method::GET,
        "/api/fault-categories",
        &analyst,
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<(&str, bool)> = list["categories"]
        .as_array()
        .context("categories")?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["retired_at"].is_null(),
            )
        })
        .collect();
    assert_eq!(names, [("Compressor", true), ("Fan", false)]);
    // The OpenAPI document has the routes.
    let (_, doc) = call(&server, Method::GET, "/api/openapi.json", &analyst, None).await?;
    for path in [
        "/api/fault-categories",
        "/api/fault-categories/{id}/retire",
        "/api/technicians/{id}/record",
        "/api/customers/{id}",
        "/api/products/{id}/plan",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }

    // Intake offers the list in force (the retired one is not offered).
    let li = Browser::signed_in(&server, "li").await?;
    let intake = li.get("/intake").await?;
    assert!(
        intake.body.contains("list=\"fault-categories\"")
            && intake.body.contains("<option value=\"Compressor\">")
            && !intake.body.contains("<option value=\"Fan\">"),
        "{}",
        intake.body
    );
    // Free text stays possible, and is flagged on the job page and the board.
    let mut listed = sample_job_body("tech-1");
    listed["request"]["fault_category"] = json!("compressor");
    let mut free = sample_job_body("tech-1");
    free["customer"]["name"] = json!("Free Text Ltd");
    free["request"]["fault_category"] = json!("Fan");
    let listed = server.create_job_from(&listed).await?.job;
    let free = server.create_job_from(&free).await?.job;
    let page = li.get(&format!("/jobs/{free}")).await?;
    assert!(page.body.contains("Fan (不在列表中)"), "{}", page.body);
    let page = li.get(&format!("/jobs/{listed}")).await?;
    assert!(page.body.contains("compressor") && !page.body.contains("不在列表中"));
    let board = li.get("/board").await?;
    assert_eq!(
        board.body.matches("tag unlisted_category").count(),
        1,
        "{}",
        board.body
    );

    // Every change is in the audit log under its person.
    let actions = crate::console::audit_actions(&wang.get("/audit.csv").await?.body);
    for expected in [
        ("wang", "fault_category_add"),
        ("wang", "fault_category_retire"),
    ] {
        assert!(
            actions.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {actions:?}"
        );
    }
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.1 == "fault_category_add")
            .count(),
        2,
        "Compressor by form, Fan by the API: {actions:?}"
    );
    server.stop().await
}

/// 2026-12-01T01:00:00Z: 09:00 on 1 December in Shanghai.
const DECEMBER_1: Timestamp = Timestamp::from_millis(1_796_086_800_000);

/// The maintenance jobs the branch holds.
fn maintenance_jobs(file: &Value) -> Vec<String> {
    file["products"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["jobs"].as_array().into_iter().flatten())
        .filter(|j| j["kind"] == "maintenance")
        .filter_map(|j| j["job_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r26_r6_the_customers_file_holds_products_history_and_a_plan_that_makes_visits_once()
-> anyhow::Result<()> {
    use reqwest::Method;
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let dispatcher = token(&server, DeskRole::Dispatcher, "li")?;
    let analyst = token(&server, DeskRole::Analyst, "zhao")?;
    // Intake writes the product into the customer's file (R26), a job too.
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/requests",
        &dispatcher,
        Some(json!({
            "channel": "phone",
            "received_at": "2026-11-20T01:00:00Z",
            "customer": {"id": "c-2002", "name": "华东机械厂", "contact": "王工"},
            "product": {"model": "AX-9", "serial": "SN-77", "product_type": "compressor",
                        "purchase_date": "2025-03-01", "warranty_end": "2027-03-01"},
            "fault_description": "噪音大",
        })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    let mut repair = sample_job_body("tech-1");
    repair["customer"]["id"] = json!("c-2002");
    repair["customer"]["name"] = json!("华东机械厂");
    repair["product"]["serial"] = json!("SN-78");
    repair["product"]["purchase_date"] = json!("2024-06-01");
    let repair = server.create_job_from(&repair).await?.job;
    let path = "/api/customers/c-2002";
    let (status, file) = call(&server, Method::GET, path, &analyst, None).await?;
    assert_eq!(status, StatusCode::OK, "{file}");
    let serials: Vec<&str> = file["products"]
        .as_array()
        .context("products")?
        .iter()
        .filter_map(|p| p["product"]["serial"].as_str())
        .collect();
    assert_eq!(serials, ["SN-77", "SN-78"]);
    assert_eq!(file["products"][0]["product"]["warranty_end"], "2027-03-01");
    assert_eq!(
        file["products"][1]["jobs"][0]["job_id"],
        repair.to_string().as_str()
    );
    let product = file["products"][0]["product"]["id"]
        .as_str()
        .context("product id")?
        .to_owned();
    let (status, body) = call(
        &server,
        Method::GET,
        "/api/customers/c-nobody",
        &analyst,
        None,
    )
    .await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_customer"))
    );

    // The page, for every role; the plan form for dispatchers and managers only.
    let li = Browser::signed_in(&server, "li").await?;
    let zhao = Browser::signed_in(&server, "zhao").await?;
    let page = li.get("/customers/c-2002").await?;
    assert_eq!(page.status, StatusCode::OK);
    for w in [
        "华东机械厂",
        "SN-77",
        "2027-03-01",
        "保修期内",
        "2024-06-01",
        "维修记录",
        "保存计划",
    ] {
        assert!(page.body.contains(w), "{w} in {}", page.body);
    }
    let list = zhao.get("/customers").await?;
    assert!(
        list.body.contains("href=\"/customers/c-2002\""),
        "{}",
        list.body
    );
    let read_only = zhao.get("/customers/c-2002").await?;
    assert!(read_only.status == StatusCode::OK && !read_only.body.contains("plan-form"));
    let plan_path = format!("/products/{product}/plan");
    let csrf = zhao.get("/board").await?.csrf()?;
    let refused = zhao
        .post(
            &plan_path,
            &[
                ("csrf", &csrf),
                ("interval_months", "6"),
                ("next_due", "2026-12-01"),
                ("technician", "tech-1"),
            ],
        )
        .await?;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "an analyst plans nothing"
    );
    let csrf = page.csrf()?;
    let forged = li
        .post(
            &plan_path,
            &[
                ("csrf", "0000"),
                ("interval_months", "6"),
                ("next_due", "2026-12-01"),
                ("technician", "tech-1"),
            ],
        )
        .await?;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bad = li
        .post(
            &plan_path,
            &[
                ("csrf", &csrf),
                ("interval_months", "0"),
                ("next_due", "2026-12-01"),
                ("technician", "tech-1"),
            ],
        )
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("interval_months: 0 is not within 1–120"),
        "{}",
        bad.body
    );
    let set = li
        .post(
            &plan_path,
            &[
                ("csrf", &csrf),
                ("interval_months", "6"),
                ("next_due", "2026-12-01"),
                ("technician", "tech-1"),
            ],
        )
        .await?;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
    assert_eq!(
        set.location.as_deref(),
        Some("/customers/c-2002?done=plan_set")
    );
    assert!(
        li.get("/customers/c-2002")
            .await?
            .body
            .contains("6 个月 · 下次回访 2026-12-01 · tech-1")
    );

    // R26: nothing is due before the date; on it, the worker (on the server's clock) makes
    // one maintenance job and moves the plan six months on.
    let edge = server.edge()?;
    let made = fieldsync_server::edge::desk::customers::maintenance_pass(edge, server.now())
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    assert!(made.is_empty());
    server.state.clock.set(DECEMBER_1);
    // Tokens are judged on the server's clock too: new ones for the new day.
    let analyst = token(&server, DeskRole::Analyst, "zhao")?;
    let dispatcher = token(&server, DeskRole::Dispatcher, "li")?;
    let file = eventually(SETTLE, "the worker makes the visit", || async {
        let (_, file) = call(&server, Method::GET, path, &analyst, None)
            .await
            .ok()?;
        (!maintenance_jobs(&file).is_empty()).then_some(file)
    })
    .await?;
    // The job exists before the plan moves on: a pass of our own waits for the worker's
    // (one at a time), then the file is read again.
    let made = fieldsync_server::edge::desk::customers::maintenance_pass(edge, DECEMBER_1)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    assert!(made.is_empty(), "made twice: {made:?} after {file}");
    let (_, file) = call(&server, Method::GET, path, &analyst, None).await?;
    let visits = maintenance_jobs(&file);
    assert_eq!(visits.len(), 1);
    let plan = &file["products"][0]["product"];
    assert_eq!(plan["plan"]["next_due"], "2027-06-01");
    assert_eq!(plan["visits"][0]["due"], "2026-12-01");
    assert_eq!(plan["visits"][0]["job_id"], visits[0].as_str());
    let job = server.get_job(visits[0].parse()?).await?;
    assert_eq!(job["job"]["kind"], "maintenance", "{job}");
    assert_eq!(job["job"]["technicians"], json!(["tech-1"]));
    assert_eq!(job["job"]["product"]["serial"], "SN-77");

    // Two passes at once, and a pass after one that stopped before moving the plan on (the
    // plan set back to the visit's date): the visit's job exists, none is made again.
    let (a, b) = tokio::join!(
        fieldsync_server::edge::desk::customers::maintenance_pass(edge, DECEMBER_1),
        fieldsync_server::edge::desk::customers::maintenance_pass(edge, DECEMBER_1),
    );
    assert!(a.is_ok_and(|m| m.is_empty()) && b.is_ok_and(|m| m.is_empty()));
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/products/{product}/plan"),
        &dispatcher,
        Some(json!({"interval_months": 6, "next_due": "2026-12-01", "technician": "tech-1"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let made = fieldsync_server::edge::desk::customers::maintenance_pass(edge, DECEMBER_1)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    assert!(made.is_empty(), "the same visit again: {made:?}");
    let (_, file) = call(&server, Method::GET, path, &analyst, None).await?;
    assert_eq!(maintenance_jobs(&file), visits);
    assert_eq!(
        file["products"][0]["product"]["plan"]["next_due"],
        "2027-06-01"
    );
    assert_eq!(
        file["products"][0]["product"]["visits"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A restart on the same data a year on: one visit for the missed periods, not two.
    let manager = Browser::signed_in(&server, "wang").await?;
    let actions = crate::console::audit_actions(&manager.get("/audit.csv").await?.body);
    for expected in [
        ("li", "maintenance_plan_set"),
        ("server", "maintenance_job_create"),
    ] {
        assert!(
            actions.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {actions:?}"
        );
    }
    let data = server.data_dir.clone();
    server.stop().await?;
    let year_on = DECEMBER_1.plus_millis(370 * 24 * 60 * MINUTE);
    let server = fieldsync_tests::TestServer::start_with_clock(
        &data,
        fieldsync_server::clock::Clock::manual(year_on),
        |c| {
            c.timezone = "Asia/Shanghai".parse().expect("a known zone");
        },
    )
    .await?;
    let analyst = token(&server, DeskRole::Analyst, "zhao")?;
    let file = eventually(SETTLE, "the worker makes the missed visit", || async {
        let (_, file) = call(&server, Method::GET, path, &analyst, None)
            .await
            .ok()?;
        (maintenance_jobs(&file).len() > 1).then_some(file)
    })
    .await?;
    let made = fieldsync_server::edge::desk::customers::maintenance_pass(server.edge()?, year_on)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    assert!(made.is_empty(), "made twice: {made:?} after {file}");
    let (_, file) = call(&server, Method::GET, path, &analyst, None).await?;
    assert_eq!(maintenance_jobs(&file).len(), 2, "{file}");
    let product_file = &file["products"][0]["product"];
    assert_eq!(product_file["visits"][1]["due"], "2027-06-01");
    assert_eq!(product_file["plan"]["next_due"], "2028-06-01");
    // Stopping the plan: audited, and a second stop is refused.
    let dispatcher = token(&server, DeskRole::Dispatcher, "li")?;
    let stop = format!("/api/products/{product}/plan");
    let (status, _) = call(&server, Method::DELETE, &stop, &dispatcher, None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&server, Method::DELETE, &stop, &dispatcher, None).await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_plan"))
    );
    let (status, _) = call(&server, Method::DELETE, &stop, &analyst, None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.stop().await
}
