//! The desk's records in the console over HTTP (issue 14, point 2): complaints through the
//! eight R21 steps with the month's R22 summary (`/complaints`, `/complaints/{id}`), parts
//! requisitions and shipments (R17, `/requisitions`) and the tool register (R19, `/tools`).
//! Each form is tried per role (dispatcher, manager, analyst), without its CSRF token (403,
//! nothing changed), refused by the rules (the refusal in words, what was typed kept), and
//! done; the audit log names who did each. Times are typed and read in Shanghai time, money
//! with its currency. A client with a cookie store plays the browser; redirects are not
//! followed, so each answer is seen as sent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use fieldsync_server::auth::{DeskRole, Subject};
use fieldsync_shared::ids::DocumentId;
use fieldsync_tests::{TestServer, temp_dir};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;

/// The console's test server (`console::console_server`: its manual clock, Shanghai time, li, wang and
/// zhao) with sessions idle for a month: the tests move the clock on by days.
async fn server(dir: &Path) -> anyhow::Result<TestServer> {
    crate::console::console_server_with(dir, |c| c.console.idle_minutes = 30 * 24 * 60).await
}

/// A browser signed in as one person: a cookie store, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    /// The session's CSRF token.
    csrf: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The text of the element with `id` up to its closing `</li>` or `</tr>` (a row or a
    /// card), to check what one item says.
    fn item(&self, id: &str) -> anyhow::Result<&str> {
        let at = self
            .body
            .find(&format!("id=\"{id}\""))
            .with_context(|| format!("no element {id} in {} {}", self.status, self.body))?;
        let rest = &self.body[at..];
        let end = ["</li>", "</tr>"]
            .iter()
            .filter_map(|e| rest.find(e))
            .min()
            .unwrap_or(rest.len());
        Ok(&rest[..end])
    }
}

impl Browser {
    async fn page(response: reqwest::Response) -> anyhow::Result<Page> {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Page {
            status,
            location,
            body: response.text().await?,
        })
    }

    /// Signs `name` in and keeps the session's CSRF token.
    async fn signed_in(server: &TestServer, name: &str) -> anyhow::Result<Self> {
        let mut browser = Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: server.http_url(""),
            csrf: String::new(),
        };
        let form = browser.get("/login").await?;
        let csrf = csrf_of(&form.body)?;
        let password = format!("{name}-password");
        let answer = browser
            .post(
                "/login",
                &[("name", name), ("password", &password), ("csrf", &csrf)],
            )
            .await?;
        ensure!(
            answer.status == StatusCode::SEE_OTHER,
            "sign-in of {name}: {}",
            answer.body
        );
        browser.csrf = csrf_of(&browser.get("/board").await?.body)?;
        Ok(browser)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Page> {
        Self::page(self.http.get(format!("{}{path}", self.base)).send().await?).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        Self::page(request.send().await?).await
    }

    /// Posts `form` with the session's CSRF token.
    async fn submit(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let mut with: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        with.extend_from_slice(form);
        self.post(path, &with).await
    }

    /// [`Self::submit`] of a form built with owned values.
    async fn submit_owned(&self, path: &str, form: &[(&str, String)]) -> anyhow::Result<Page> {
        let borrowed: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.submit(path, &borrowed).await
    }

    /// Follows a 303 of a form that was done and answers the page it leads to.
    async fn done(&self, answer: Page) -> anyhow::Result<Page> {
        ensure!(
            answer.status == StatusCode::SEE_OTHER,
            "not done: {} {}",
            answer.status,
            answer.body
        );
        self.get(answer.location.as_deref().context("location")?)
            .await
    }
}

fn csrf_of(body: &str) -> anyhow::Result<String> {
    let key = "name=\"csrf\" value=\"";
    let at = body.find(key).context("no form with a CSRF token")?;
    let rest = &body[at + key.len()..];
    Ok(rest[..rest.find('"').context("unterminated value")?].to_owned())
}

/// The desk API as an analyst sees it (what the records hold, whatever the pages say).
async fn api(server: &TestServer, path: &str) -> anyhow::Result<Value> {
    let token = server.desk_token(DeskRole::Analyst)?;
    let answer = reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        answer.status().is_success(),
        "GET {path}: {}",
        answer.status()
    );
    Ok(answer.json().await?)
}

/// The audit log's CSV as the manager exports it.
async fn audit_csv(wang: &Browser) -> anyhow::Result<String> {
    let csv = wang.get("/audit.csv").await?;
    ensure!(csv.status == StatusCode::OK, "audit.csv: {}", csv.status);
    Ok(csv.body)
}

/// `(actor, action)` of every audit entry.
fn audit_actions(csv: &str) -> Vec<(String, String)> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            Some((cells.get(1)?.to_string(), cells.get(3)?.to_string()))
        })
        .collect()
}

fn count(actions: &[(String, String)], actor: &str, action: &str) -> usize {
    actions
        .iter()
        .filter(|(a, b)| a == actor && b == action)
        .count()
}

/// The nav of the branch's console links the pages for every role.
fn links_the_pages(body: &str) -> bool {
    ["/complaints", "/requisitions", "/tools"]
        .iter()
        .all(|p| body.contains(&format!("<a href=\"{p}\">")))
}

fn complaint_form<'a>(received_at: &'a str, job: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("channel", "phone"),
        ("category", "service"),
        ("received_at", received_at),
        ("complainant", "陈女士"),
        ("contact", "138 0000 0000"),
        ("customer_id", "c-1001"),
        ("against_job", job),
        ("against_technician", "tech-1"),
        ("content", "技术员未测试就离开"),
        ("asks", "再次上门并道歉"),
    ]
}

#[tokio::test]
async fn r20_r21_r22_r23_complaints_are_registered_and_taken_through_the_eight_steps_in_the_console()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = server(dir.path()).await?;
    let job = server.create_job("tech-1").await?.job.to_string();
    let li = Browser::signed_in(&server, "li").await?;
    let wang = Browser::signed_in(&server, "wang").await?;
    let zhao = Browser::signed_in(&server, "zhao").await?;

    // The list: the month's R22 summary (no reports signed: no rate), "now" in the branch's
    // zone on the registration form, no script.
    let list = li.get("/complaints").await?;
    assert_eq!(list.status, StatusCode::OK);
    assert!(links_the_pages(&list.body), "{}", list.body);
    assert!(
        list.body.contains("本月投诉 (R22) · 2026-11")
            && list.body.contains("<dd id=\"rate\">–</dd>")
            && list.body.contains("id=\"no-complaints\"")
            && list.body.contains("value=\"2026-11-20T10:00\""),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<script"));

    // The analyst reads the list but has no form, and a post of theirs is refused.
    let read = zhao.get("/complaints").await?;
    assert_eq!(read.status, StatusCode::OK);
    assert!(links_the_pages(&read.body));
    assert!(
        !read.body.contains("id=\"complaint-form\""),
        "{}",
        read.body
    );
    let form = complaint_form("2026-11-20T09:30", "");
    let refused = zhao.submit("/complaints", &form).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("调度员"), "{}", refused.body);
    // Without the session's token: refused, nothing registered.
    let mut forged = vec![("csrf", "")];
    forged.extend_from_slice(&form);
    let refused = li.post("/complaints", &forged).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("表单已失效"), "{}", refused.body);
    // A time that is not one, and a job this branch does not have: refused in words, the
    // form keeping what was typed.
    let refused = li
        .submit("/complaints", &complaint_form("昨天下午", ""))
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("时间格式不对") && refused.body.contains("技术员未测试就离开"),
        "{}",
        refused.body
    );
    let unknown = DocumentId::random().url();
    let refused = li
        .submit("/complaints", &complaint_form("2026-11-20T09:30", &unknown))
        .await?;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    assert!(refused.body.contains("没有这个工单"), "{}", refused.body);
    assert_eq!(
        api(&server, "/api/complaints").await?["complaints"],
        json!([])
    );

    // Registered (R20, R21 step 1): its page shows step 1 done, by whom and when.
    let done = li
        .submit("/complaints", &complaint_form("2026-11-20T09:30", &job))
        .await?;
    let path = done
        .location
        .as_deref()
        .and_then(|l| l.split('?').next())
        .context("the complaint's page")?
        .to_owned();
    let id = path.trim_start_matches("/complaints/").to_owned();
    let page = li.done(done).await?;
    assert!(
        page.body.contains("投诉已登记（第 1 步）")
            && page.body.contains("2026-11-20 09:30")
            && page.body.contains(&format!("href=\"/jobs/{job}\"")),
        "{}",
        page.body
    );
    let step1 = page.item("step-record")?;
    assert!(
        step1.contains("已完成") && step1.contains("李伟 · 2026-11-20 10:00"),
        "{step1}"
    );
    let step2 = page.item("step-classify")?;
    assert!(
        step2.contains("下一步") && step2.contains("id=\"step-form\""),
        "{step2}"
    );
    assert!(!page.item("step-assign_unit")?.contains("<form"));

    // R21: no step skipped, none without what it needs; said in words beside the rule.
    let refused = li
        .submit(&path, &[("step", "investigate"), ("what", "去现场")])
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("步骤顺序不对")
            && refused.body.contains("the next step is 2 (classify)"),
        "{}",
        refused.body
    );
    let refused = li
        .submit(&path, &[("step", "classify"), ("what", "看了记录")])
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("表单中有一项填写不对") && refused.body.contains("看了记录"),
        "{}",
        refused.body
    );
    // Without the token: refused, nothing recorded.
    let refused = li
        .post(
            &path,
            &[("step", "classify"), ("what", "x"), ("valid", "yes")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let record = api(&server, &format!("/api/complaints/{id}")).await?;
    assert_eq!(record["next_step"], "classify", "{record}");

    // Steps 2 to 6 by the dispatcher, an hour apart, each with what it needs.
    let steps: [(&str, &[(&str, &str)]); 5] = [
        ("classify", &[("valid", "yes"), ("category", "non_quality")]),
        ("assign_unit", &[("unit", "服务部")]),
        ("investigate", &[]),
        ("propose_solution", &[]),
        ("notify_customer", &[("customer_reaction", "客户接受")]),
    ];
    for (step, extra) in steps {
        server.state.clock.advance(HOUR);
        let what = format!("{step}：已处理");
        let mut form = vec![("step", step), ("what", what.as_str()), ("at", "")];
        form.extend_from_slice(extra);
        let page = li.done(li.submit(&path, &form).await?).await?;
        assert!(page.body.contains("步骤已记录"), "{step}: {}", page.body);
        let row = page.item(&format!("step-{step}"))?;
        assert!(row.contains(&what) && row.contains("已完成"), "{row}");
    }
    // Step 7 (responsibility and penalty) is a manager's: the dispatcher sees why there is
    // no form, and a post of theirs is refused in words.
    let page = li.get(&path).await?;
    let step7 = page.item("step-assign_responsibility")?;
    assert!(
        step7.contains("须由经理记录") && !step7.contains("<form"),
        "{step7}"
    );
    let refused = li
        .submit(
            &path,
            &[
                ("step", "assign_responsibility"),
                ("what", "定责"),
                ("responsible", "tech-1"),
            ],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("您的角色不能做此操作") && refused.body.contains("manager"),
        "{}",
        refused.body
    );
    // The manager reads it in English and records it.
    let page = wang.get(&path).await?;
    assert!(
        page.body.contains("Assign responsibility and penalty")
            && page.body.contains("Valid complaint")
            && page.body.contains("Non-quality (people)"),
        "{}",
        page.body
    );
    let page = wang
        .done(
            wang.submit(
                &path,
                &[
                    ("step", "assign_responsibility"),
                    ("what", "Left without testing"),
                    ("responsible", "tech-1"),
                    ("penalty", "warning"),
                ],
            )
            .await?,
        )
        .await?;
    assert!(
        page.item("step-assign_responsibility")?
            .contains("Wang Fang · 2026-11-20 15:00"),
        "{}",
        page.body
    );
    // Step 8 closes it; nothing more is taken.
    let page = li
        .done(
            li.submit(&path, &[("step", "improve"), ("what", "离场前必须试机")])
                .await?,
        )
        .await?;
    assert!(
        page.body.contains("id=\"closed\"") && !page.body.contains("id=\"step-form\""),
        "{}",
        page.body
    );
    let refused = li
        .submit(&path, &[("step", "improve"), ("what", "again")])
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("投诉已结案"), "{}", refused.body);
    // R23: the full record, as the API keeps it.
    let record = api(&server, &format!("/api/complaints/{id}")).await?;
    assert_eq!(record["closed"], true);
    assert_eq!(record["customer_reaction"], "客户接受");
    assert_eq!(record["responsible"], "tech-1");
    assert_eq!(record["steps"].as_array().map(Vec::len), Some(8));
    assert_eq!(record["steps"][6]["by"], "Wang Fang");

    // A second complaint, three days later, through the API with a person's token: the
    // list puts the open one first with its step and age, the closed one after it.
    server.state.clock.advance(3 * 24 * HOUR);
    let token = server
        .state
        .tokens
        .issue_for(
            &Subject::Desk(DeskRole::Dispatcher),
            Some("li"),
            Duration::from_secs(600),
            server.now(),
        )
        .map_err(anyhow::Error::msg)?;
    let answer = reqwest::Client::new()
        .post(server.http_url("/api/complaints"))
        .bearer_auth(&token)
        .json(&json!({
            "channel": "letter",
            "category": "product_quality",
            "received_at": "2026-11-22T01:00:00Z",
            "complainant": "Lotus Foods Ltd",
            "content": "The compressor failed again",
            "asks": "A replacement",
            "recorded_by": "李伟",
        }))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let second = answer.json::<Value>().await?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let list = zhao.get("/complaints").await?;
    let open_at = list
        .body
        .find(&format!("id=\"complaint-{second}\""))
        .context("the open complaint")?;
    let closed_at = list
        .body
        .find(&format!("id=\"complaint-{id}\""))
        .context("the closed complaint")?;
    assert!(open_at < closed_at, "open first: {}", list.body);
    let row = list.item(&format!("complaint-{second}"))?;
    assert!(
        row.contains("2/8 · 分类并判定是否有效") && row.contains("产品质量"),
        "{row}"
    );
    let row = list.item(&format!("complaint-{id}"))?;
    assert!(
        row.contains("已结案")
            && row.contains(&format!("href=\"/jobs/{job}\""))
            && row.contains("tech-1")
            && row.contains("2026-11-20 09:30")
            && row.contains("3 天"),
        "{row}"
    );
    // R22: the summary the API computes, in words; another month by the month field.
    let summary = api(&server, "/api/complaints/summary?month=2026-11").await?;
    assert_eq!(summary["complaints"], 2);
    assert!(
        list.body.contains("<dt>当月收到的投诉</dt><dd>2</dd>")
            && list.body.contains("<dt>处理中</dt><dd>1</dd>")
            && list.body.contains("非质量 1")
            && list.body.contains("质量 1"),
        "{}",
        list.body
    );
    let october = zhao.get("/complaints?month=2026-10").await?;
    assert!(october.body.contains("<dt>当月收到的投诉</dt><dd>0</dd>"));
    let bad = zhao.get("/complaints?month=2026-13").await?;
    assert!(bad.body.contains("表单中有一项填写不对"), "{}", bad.body);

    // The audit log: each change once, by the person, with the record's revisions.
    let csv = audit_csv(&wang).await?;
    let actions = audit_actions(&csv);
    assert_eq!(count(&actions, "li", "complaint_create"), 2, "{csv}");
    assert_eq!(count(&actions, "li", "complaint_step"), 6, "{csv}");
    assert_eq!(count(&actions, "wang", "complaint_step"), 1, "{csv}");
    assert!(!actions.iter().any(|a| a.0 == "zhao" && a.1 != "login"));
    assert!(
        csv.contains(&format!(
            ",complaint_step,complaint:{id},1,2,R21 step 2 (classify)"
        )),
        "{csv}"
    );
    assert!(!csv.contains(",api_write,/api/complaints,"), "{csv}");
    server.stop().await
}

#[tokio::test]
async fn r17_r18_parts_are_requisitioned_against_a_job_and_shipped_from_the_console()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = server(dir.path()).await?;
    let job = server.create_job("tech-1").await?.job.to_string();
    let li = Browser::signed_in(&server, "li").await?;
    let wang = Browser::signed_in(&server, "wang").await?;
    let zhao = Browser::signed_in(&server, "zhao").await?;

    let page = li.get("/requisitions").await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(links_the_pages(&page.body));
    assert!(
        page.body.contains("id=\"none-waiting\"") && page.body.contains("id=\"requisition-form\""),
        "{}",
        page.body
    );
    let form = |job: &str, quantity: &str| {
        vec![
            ("job_id", job.to_owned()),
            ("part_number", "CMP-7".to_owned()),
            ("part_name", "压缩机".to_owned()),
            ("specification", "ZR-72".to_owned()),
            ("material", "钢".to_owned()),
            ("quantity", quantity.to_owned()),
            ("needed_by", "2026-11-23".to_owned()),
            ("customer_id", String::new()),
            ("order_number", "PO-5521".to_owned()),
        ]
    };
    // The analyst reads; only the staff requisition. No token: nothing recorded.
    let read = zhao.get("/requisitions").await?;
    assert_eq!(read.status, StatusCode::OK);
    assert!(!read.body.contains("id=\"requisition-form\""));
    assert_eq!(
        zhao.submit_owned("/requisitions", &form(&job, "2"))
            .await?
            .status,
        StatusCode::FORBIDDEN
    );
    let mut forged = vec![("csrf", String::new())];
    forged.extend(form(&job, "2"));
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        li.post("/requisitions", &forged).await?.status,
        StatusCode::FORBIDDEN
    );
    // R18: only against a job of this branch; a quantity is a whole number of at least 1.
    let refused = li
        .submit_owned(
            "/requisitions",
            &form(&DocumentId::random().to_string(), "2"),
        )
        .await?;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(
        refused.body.contains("没有这个工单") && refused.body.contains("value=\"PO-5521\""),
        "{}",
        refused.body
    );
    for bad in ["0", "两个"] {
        let refused = li.submit_owned("/requisitions", &form(&job, bad)).await?;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            refused.body.contains("表单中有一项填写不对"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        api(&server, "/api/requisitions").await?["requisitions"],
        json!([])
    );

    // Requisitioned: the customer is the job's, the requisition waits for shipment.
    let page = li
        .done(li.submit_owned("/requisitions", &form(&job, "2")).await?)
        .await?;
    assert!(page.body.contains("领料单已提交"), "{}", page.body);
    let list = api(&server, "/api/requisitions?open=true").await?;
    let id = list["requisitions"][0]["id"]
        .as_str()
        .context("a requisition")?
        .to_owned();
    assert_eq!(list["requisitions"][0]["customer_id"], "c-1001");
    let card = page.item(&format!("requisition-{id}"))?;
    assert!(
        card.contains("压缩机 (CMP-7) × 2")
            && card.contains("未发运")
            && card.contains(&format!("href=\"/jobs/{job}\""))
            && card.contains("2026-11-23")
            && card.contains("PO-5521")
            && card.contains("李伟 · 2026-11-20 10:00")
            && card.contains("value=\"CMP-7\"")
            && card.contains("value=\"2026-11-20\""),
        "{card}"
    );

    // R17: the shipment names address, recipient, contact, items and dates; arriving before
    // it ships is refused in words with what was typed kept on that requisition's form.
    let shipment = |arrives: &'static str| {
        vec![
            ("address", "上海市嘉定区 8 号".to_owned()),
            ("recipient", "陈先生".to_owned()),
            ("contact", "138 0000 0000".to_owned()),
            ("item1_part", "CMP-7".to_owned()),
            ("item1_qty", "2".to_owned()),
            ("item2_part", "SEAL-1".to_owned()),
            ("item2_qty", "4".to_owned()),
            ("shipped_on", "2026-11-21".to_owned()),
            ("arrives_on", arrives.to_owned()),
        ]
    };
    let ship_path = format!("/requisitions/{id}/shipment");
    assert_eq!(
        zhao.submit_owned(&ship_path, &shipment("2026-11-22"))
            .await?
            .status,
        StatusCode::FORBIDDEN
    );
    let refused = li.submit_owned(&ship_path, &shipment("2026-11-20")).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let card = refused.item(&format!("requisition-{id}"))?;
    assert!(
        refused.body.contains("cannot be before shipped_on")
            && card.contains("value=\"SEAL-1\"")
            && card.contains("value=\"2026-11-21\""),
        "{}",
        refused.body
    );
    // The manager ships it (and reads it in English).
    let page = wang
        .done(
            wang.submit_owned(&ship_path, &shipment("2026-11-24"))
                .await?,
        )
        .await?;
    let card = page.item(&format!("requisition-{id}"))?;
    assert!(
        page.body.contains("The shipment is recorded")
            && card.contains("CMP-7 × 2, SEAL-1 × 4")
            && card.contains("2026-11-21 → 2026-11-24")
            && card.contains("Arrives after the date needed")
            && !card.contains("<form"),
        "{card}"
    );
    let refused = li.submit_owned(&ship_path, &shipment("2026-11-22")).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("此领料单已经发运"),
        "{}",
        refused.body
    );

    let csv = audit_csv(&wang).await?;
    let actions = audit_actions(&csv);
    assert_eq!(count(&actions, "li", "requisition_create"), 1, "{csv}");
    assert_eq!(count(&actions, "wang", "requisition_ship"), 1, "{csv}");
    assert!(
        csv.contains(&format!(",requisition_ship,requisition:{id},1,2,")),
        "{csv}"
    );
    assert!(!actions.iter().any(|a| a.0 == "zhao" && a.1 != "login"));
    server.stop().await
}

#[tokio::test]
async fn r19_tools_are_registered_lent_returned_and_lost_with_who_holds_them_and_overdue_shown()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = server(dir.path()).await?;
    let job = server.create_job("tech-1").await?.job.to_string();
    let li = Browser::signed_in(&server, "li").await?;
    let wang = Browser::signed_in(&server, "wang").await?;
    let zhao = Browser::signed_in(&server, "zhao").await?;

    let page = li.get("/tools").await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(links_the_pages(&page.body));
    assert!(page.body.contains("id=\"no-tools\"") && page.body.contains("id=\"tool-form\""));
    // Registered by the staff only; a tag that is not one is refused in words.
    let tool = [
        ("id", "torque-07"),
        ("name", "扭力扳手"),
        ("bought_in_field", "on"),
    ];
    assert_eq!(
        zhao.submit("/tools", &tool).await?.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        li.post("/tools", &tool).await?.status,
        StatusCode::FORBIDDEN,
        "no token"
    );
    let refused = li
        .submit("/tools", &[("id", "扳手 7"), ("name", "扭力扳手")])
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("表单中有一项填写不对")
            && refused.body.contains("value=\"扭力扳手\"")
    );
    let page = li.done(li.submit("/tools", &tool).await?).await?;
    assert!(page.body.contains("工具已登记"), "{}", page.body);
    let card = page.item("tool-torque-07")?;
    assert!(card.contains("在库") && card.contains("现场购买"), "{card}");
    let refused = li.submit("/tools", &tool).await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("已有相同编号"), "{}", refused.body);

    // Lent to tech-1 until tomorrow 10:00 (typed in Shanghai time): who holds it, since when.
    let lend = |due: &'static str| {
        vec![
            ("technician", "tech-1"),
            ("due_back", due),
            ("job_id", job.as_str()),
            ("note", "现场用"),
        ]
    };
    let refused = li
        .submit("/tools/torque-07/loans", &lend("2026-11-20T09:00"))
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("due_back: must be in the future"));
    assert!(
        refused
            .item("tool-torque-07")?
            .contains("value=\"2026-11-20T09:00\""),
        "{}",
        refused.body
    );
    let mut forged = vec![("csrf", "")];
    forged.extend(lend("2026-11-21T10:00"));
    assert_eq!(
        li.post("/tools/torque-07/loans", &forged).await?.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api(&server, "/api/tools").await?["tools"][0]["status"],
        "available"
    );
    let page = li
        .done(
            li.submit("/tools/torque-07/loans", &lend("2026-11-21T10:00"))
                .await?,
        )
        .await?;
    let card = page.item("tool-torque-07")?;
    assert!(
        card.contains("借出中")
            && card.contains("<dd class=\"holder\">tech-1</dd>")
            && card.contains("2026-11-20 10:00 (0 分钟)")
            && card.contains("2026-11-21 10:00")
            && card.contains(&format!("href=\"/jobs/{job}\""))
            && card.contains("class=\"desk give-back\"")
            && !card.contains("class=\"desk lose\""),
        "{card}"
    );
    // On loan: not lent twice.
    let refused = li
        .submit("/tools/torque-07/loans", &lend("2026-11-22T10:00"))
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("工具已借出"), "{}", refused.body);

    // Two days on, it is overdue: first on the page, counted, its due time marked.
    server.state.clock.advance(48 * HOUR);
    let page = zhao.get("/tools").await?;
    let card = page.item("tool-torque-07")?;
    assert!(
        card.contains("逾期未还") && card.contains("(2 天)") && !card.contains("<form"),
        "{card}"
    );
    assert!(
        page.body.contains("1 逾期未还"),
        "{}",
        page.item("tool-counts")?
    );

    // R19: a lost tool is paid for, by the manager's decision: the dispatcher is refused.
    let loss = [
        ("charge", "350.5"),
        ("currency", "CNY"),
        ("note", "丢在现场"),
    ];
    let refused = li.submit("/tools/torque-07/lost", &loss).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("经理"), "{}", refused.body);
    let refused = wang
        .submit(
            "/tools/torque-07/lost",
            &[("charge", "0"), ("currency", "CNY")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("a lost tool is paid for (R19)"));
    let page = wang
        .done(wang.submit("/tools/torque-07/lost", &loss).await?)
        .await?;
    let card = page.item("tool-torque-07")?;
    assert!(
        card.contains("Lost: tech-1 pays 350.50 CNY · 2026-11-22 10:00") && !card.contains("<form"),
        "{card}"
    );
    let refused = li
        .submit("/tools/torque-07/return", &[("note", "")])
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("工具不在借出状态"),
        "{}",
        refused.body
    );

    // Another tool, lent and brought back.
    li.done(
        li.submit("/tools", &[("id", "meter-2"), ("name", "万用表")])
            .await?,
    )
    .await?;
    li.done(
        li.submit(
            "/tools/meter-2/loans",
            &[("technician", "tech-2"), ("due_back", "2026-11-23T18:00")],
        )
        .await?,
    )
    .await?;
    let page = li
        .done(
            li.submit("/tools/meter-2/return", &[("note", "完好")])
                .await?,
        )
        .await?;
    assert!(page.body.contains("工具已归还"));
    assert!(page.item("tool-meter-2")?.contains("在库"));
    let tools = api(&server, "/api/tools").await?;
    assert_eq!(
        tools["tools"]
            .as_array()
            .map(|t| t.iter().map(|t| t["status"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("available"), json!("lost")])
    );

    let csv = audit_csv(&wang).await?;
    let actions = audit_actions(&csv);
    assert_eq!(count(&actions, "li", "tool_register"), 2, "{csv}");
    assert_eq!(count(&actions, "li", "tool_lend"), 2, "{csv}");
    assert_eq!(count(&actions, "li", "tool_return"), 1, "{csv}");
    assert_eq!(count(&actions, "wang", "tool_lost"), 1, "{csv}");
    assert!(
        csv.contains(",tool_lost,tool:torque-07,2,3,tech-1 · 35050 CNY"),
        "{csv}"
    );
    assert!(!actions.iter().any(|a| a.0 == "zhao" && a.1 != "login"));
    server.stop().await
}
