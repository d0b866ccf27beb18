//! The web console over HTTP (issue 14): sign-in and sign-out, lock-out, idle expiry on the
//! server's clock, CSRF refusals, role refusals, the audit log and its export, accounts
//! changed by the CLI beside a running server, and the board (`GET /api/jobs` and `/board`).
//! A client with a cookie store plays the browser; redirects are not followed, so each
//! answer is seen as sent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use fieldsync_server::accounts as users;
use fieldsync_server::auth::{DeskRole, Subject};
use fieldsync_server::clock::Clock;
use fieldsync_server::console::i18n::Lang;
use fieldsync_shared::time::Timestamp;
use fieldsync_tests::{TestServer, cli_with_stdin, sample_job_body, temp_dir};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

/// 2026-11-20T02:00:00Z (10:00 in Shanghai).
const T0: Timestamp = Timestamp::from_millis(1_795_140_000_000);
const MINUTE: i64 = 60_000;

/// A server at `T0` on a manual clock, in Shanghai time, locking after 3 wrong passwords,
/// with a dispatcher `li`, a manager `wang` and an analyst `zhao`.
async fn console_server(dir: &Path) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_clock(dir, Clock::manual(T0), |c| {
        c.timezone = "Asia/Shanghai".parse().expect("a known zone");
        c.console.max_failed_logins = 3;
        c.console.lockout_minutes = 15;
        c.console.idle_minutes = 30;
    })
    .await?;
    let store = std::sync::Arc::clone(&server.state.store);
    tokio::task::spawn_blocking(move || {
        for (name, display, role, lang) in [
            ("li", "李伟", DeskRole::Dispatcher, Lang::Zh),
            ("wang", "Wang Fang", DeskRole::Manager, Lang::En),
            ("zhao", "赵敏", DeskRole::Analyst, Lang::Zh),
        ] {
            users::add(
                &store,
                name,
                display,
                role,
                lang,
                &format!("{name}-password"),
                T0,
            )?;
        }
        Ok::<_, users::UserError>(())
    })
    .await??;
    Ok(server)
}

/// A browser: a cookie store, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The first CSRF token of the page's forms.
    fn csrf(&self) -> anyhow::Result<String> {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .context("no form with a CSRF token on the page")?;
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        Ok(rest[..rest.find('"').context("unterminated value")?].to_owned())
    }
}

impl Browser {
    fn new(server: &TestServer) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            base: server.http_url(""),
        })
    }

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

    async fn get(&self, path: &str) -> anyhow::Result<Page> {
        Self::page(self.http.get(format!("{}{path}", self.base)).send().await?).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        Self::page(
            self.http
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await?,
        )
        .await
    }

    /// Opens the sign-in page and submits it.
    async fn login(&self, name: &str, password: &str) -> anyhow::Result<Page> {
        let form = self.get("/login").await?;
        ensure!(form.status == StatusCode::OK, "GET /login: {}", form.status);
        let csrf = form.csrf()?;
        self.post(
            "/login",
            &[
                ("name", name),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/board"),
            ],
        )
        .await
    }

    /// Signs in and checks it worked.
    async fn signed_in(server: &TestServer, name: &str) -> anyhow::Result<Self> {
        let browser = Self::new(server)?;
        let answer = browser.login(name, &format!("{name}-password")).await?;
        ensure!(
            answer.status == StatusCode::SEE_OTHER && answer.location.as_deref() == Some("/board"),
            "sign-in of {name}: {} {:?} {}",
            answer.status,
            answer.location,
            answer.body
        );
        Ok(browser)
    }
}

fn audit_actions(csv: &str) -> Vec<(String, String)> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            Some((cells.get(1)?.to_string(), cells.get(3)?.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn a_person_signs_in_reads_the_board_and_signs_out_and_the_audit_log_says_so()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let browser = Browser::new(&server)?;

    // Not signed in: `/` and the board lead to the sign-in page, which comes back after.
    let root = browser.get("/").await?;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location.as_deref(), Some("/login?next=/"));
    let board = browser.get("/board?status=new").await?;
    assert_eq!(board.status, StatusCode::SEE_OTHER);

    // A wrong password is refused, saying nothing about which part was wrong.
    let refused = browser.login("li", "not-her-password").await?;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("用户名或密码错误"),
        "{}",
        refused.body
    );
    let unknown = browser.login("nobody", "whatever-password").await?;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("用户名或密码错误"));

    let signed = browser.login("li", "li-password").await?;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.location.as_deref(), Some("/board"));
    let board = browser.get("/board").await?;
    assert_eq!(board.status, StatusCode::OK);
    assert!(
        board.body.contains("工单看板") && board.body.contains("李伟"),
        "{}",
        board.body
    );
    assert!(board.body.contains("Asia/Shanghai (UTC+08:00)"));
    // Read-only pages carry no script at all: they work with JavaScript off.
    assert!(!board.body.contains("<script"));
    assert_eq!(browser.get("/").await?.location.as_deref(), Some("/board"));

    // The language is the person's and switches from any page (a form with the CSRF token).
    let csrf = board.csrf()?;
    let switched = browser
        .post(
            "/language",
            &[("csrf", &csrf), ("lang", "en"), ("next", "/board")],
        )
        .await?;
    assert_eq!(switched.location.as_deref(), Some("/board"));
    let board = browser.get("/board").await?;
    assert!(board.body.contains("Job board") && board.body.contains("lang=\"en\""));

    let out = browser.post("/logout", &[("csrf", &board.csrf()?)]).await?;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        out.location.as_deref(),
        Some("/login?notice=signed_out&lang=en")
    );
    assert_eq!(browser.get("/board").await?.status, StatusCode::SEE_OTHER);

    // The manager reads the log and exports it; who, what and the ids before and after.
    let manager = Browser::signed_in(&server, "wang").await?;
    let audit = manager.get("/audit").await?;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("language_set") && audit.body.contains("2026-11-20 10:00"));
    let csv = manager.get("/audit.csv").await?;
    assert_eq!(csv.status, StatusCode::OK);
    let actions = audit_actions(&csv.body);
    for expected in [
        ("li", "login_refused"),
        ("nobody", "login_refused"),
        ("li", "login"),
        ("li", "language_set"),
        ("li", "logout"),
        ("wang", "login"),
    ] {
        assert!(
            actions.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {}",
            csv.body
        );
    }
    assert!(
        csv.body.contains(",language_set,user:li,zh,en,"),
        "{}",
        csv.body
    );
    server.stop().await
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_until_the_lockout_ends() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let browser = Browser::new(&server)?;
    for _ in 0..2 {
        assert_eq!(
            browser.login("li", "guess-one-two").await?.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = browser.login("li", "guess-one-two").await?;
    assert_eq!(locked.status, StatusCode::UNAUTHORIZED);
    // Locked for 15 minutes from 10:00 Shanghai time.
    assert!(
        locked.body.contains("账户已锁定至 2026-11-20 10:15"),
        "{}",
        locked.body
    );
    // The right password does not open a locked account.
    let still = browser.login("li", "li-password").await?;
    assert_eq!(still.status, StatusCode::UNAUTHORIZED);
    assert!(still.body.contains("已锁定"));
    server.state.clock.advance(15 * MINUTE);
    assert_eq!(
        browser.login("li", "li-password").await?.status,
        StatusCode::SEE_OTHER
    );
    let manager = Browser::signed_in(&server, "wang").await?;
    let actions = audit_actions(&manager.get("/audit.csv").await?.body);
    assert!(
        actions.contains(&("li".into(), "login_locked".into())),
        "{actions:?}"
    );
    server.stop().await
}

#[tokio::test]
async fn a_session_idle_too_long_ends_on_the_servers_clock() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let browser = Browser::signed_in(&server, "li").await?;
    // Used 29 minutes later: still open, and the idle time starts again from then.
    server.state.clock.advance(29 * MINUTE);
    assert_eq!(browser.get("/board").await?.status, StatusCode::OK);
    server.state.clock.advance(29 * MINUTE);
    assert_eq!(browser.get("/board").await?.status, StatusCode::OK);
    server.state.clock.advance(30 * MINUTE);
    let expired = browser.get("/board").await?;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(
        expired.location.as_deref(),
        Some("/login?next=/board&notice=expired")
    );
    let form = browser.get("/login?notice=expired").await?;
    assert!(form.body.contains("长时间未操作"), "{}", form.body);
    // Ended for good: the old cookie does not come back to life.
    assert_eq!(browser.get("/board").await?.status, StatusCode::SEE_OTHER);
    server.stop().await
}

#[tokio::test]
async fn a_post_without_the_forms_csrf_token_changes_nothing() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let browser = Browser::signed_in(&server, "li").await?;
    for (path, form) in [
        ("/logout", vec![]),
        ("/logout", vec![("csrf", "0000")]),
        ("/language", vec![("lang", "en"), ("next", "/board")]),
    ] {
        let answer = browser.post(path, &form).await?;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path} {form:?}");
        assert!(answer.body.contains("表单已失效"), "{}", answer.body);
    }
    // Still signed in, still in Chinese.
    let board = browser.get("/board").await?;
    assert_eq!(board.status, StatusCode::OK);
    assert!(board.body.contains("工单看板"));

    // The sign-in form: its token must match the cookie the form came with.
    let stranger = Browser::new(&server)?;
    let answer = stranger
        .post(
            "/login",
            &[
                ("name", "li"),
                ("password", "li-password"),
                ("csrf", "forged"),
            ],
        )
        .await?;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(stranger.get("/board").await?.status, StatusCode::SEE_OTHER);
    server.stop().await
}

#[tokio::test]
async fn a_role_sees_what_it_may_and_is_told_which_role_may_otherwise() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    for name in ["li", "zhao"] {
        let browser = Browser::signed_in(&server, name).await?;
        assert_eq!(browser.get("/board").await?.status, StatusCode::OK);
        for path in ["/audit", "/audit.csv"] {
            let refused = browser.get(path).await?;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name} {path}");
            assert!(refused.body.contains("经理"), "{}", refused.body);
        }
    }
    let manager = Browser::signed_in(&server, "wang").await?;
    assert_eq!(manager.get("/audit").await?.status, StatusCode::OK);
    server.stop().await
}

#[tokio::test]
async fn accounts_changed_by_the_cli_beside_the_server_take_effect_at_the_next_request()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let data = dir.path().to_owned();
    let added = tokio::task::spawn_blocking(move || {
        cli_with_stdin(
            &data,
            &[
                "user",
                "add",
                "--name",
                "chen",
                "--role",
                "dispatcher",
                "--display-name",
                "陈静",
            ],
            "chen-password\n",
        )
    })
    .await??;
    assert!(added.contains("\"user_add\""), "{added}");
    let browser = Browser::signed_in(&server, "chen").await?;
    assert!(browser.get("/board").await?.body.contains("陈静"));
    // A token for the person acts as chen (issued on the server's clock: the CLI's would
    // be on the wall clock, ahead of this test's server).
    let token = server
        .state
        .tokens
        .issue_for(
            &Subject::Desk(DeskRole::Dispatcher),
            Some("chen"),
            Duration::from_secs(600),
            server.now(),
        )
        .map_err(anyhow::Error::msg)?;
    let http = reqwest::Client::new();
    let listed = http
        .get(server.http_url("/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(listed.status(), StatusCode::OK);

    let data = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        cli_with_stdin(&data, &["user", "disable", "--name", "chen"], "")
    })
    .await??;
    // The session ends, sign-in is refused, the person's token too.
    assert_eq!(browser.get("/board").await?.status, StatusCode::SEE_OTHER);
    let refused = browser.login("chen", "chen-password").await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("已停用"));
    let listed = http
        .get(server.http_url("/api/jobs"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);

    // A reset enables nothing by itself, but a re-enabled account signs in with the new
    // password only, and the reset ended any session opened before it.
    let data = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        cli_with_stdin(&data, &["user", "enable", "--name", "chen"], "")?;
        cli_with_stdin(
            &data,
            &["user", "reset", "--name", "chen"],
            "a-new-password\n",
        )
    })
    .await??;
    assert_eq!(
        browser.login("chen", "chen-password").await?.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        browser.login("chen", "a-new-password").await?.status,
        StatusCode::SEE_OTHER
    );
    let manager = Browser::signed_in(&server, "wang").await?;
    let actions = audit_actions(&manager.get("/audit.csv").await?.body);
    for action in ["user_add", "user_disable", "user_enable", "user_reset"] {
        assert!(
            actions.contains(&("cli".into(), action.into())),
            "{action}: {actions:?}"
        );
    }
    server.stop().await
}

/// A job body received at `received` asking for arrival at `arrival` (RFC 3339).
fn job(customer: &str, technician: &str, received: &str, arrival: Option<&str>) -> Value {
    let mut body = sample_job_body(technician);
    body["customer"]["name"] = json!(customer);
    body["request"]["received_at"] = json!(received);
    body["request"]["requested_arrival"] = json!(arrival);
    body
}

#[tokio::test]
async fn the_board_lists_filters_sorts_and_pages_the_jobs() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
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
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let (http, token, url) = (http.clone(), token.clone(), server.http_url("/api/jobs"));
        async move {
            let answer = http.post(url).bearer_auth(token).json(&body).send().await?;
            ensure!(
                answer.status() == StatusCode::CREATED,
                "{}",
                answer.text().await?
            );
            let created: Value = answer.json().await?;
            Ok::<String, anyhow::Error>(created["job_id"].as_str().context("job_id")?.to_owned())
        }
    };
    // Now is 2026-11-20T02:00Z. Overdue, due soon (within 4 hours), running, none asked.
    let overdue = create(job(
        "华东机械厂",
        "tech-1",
        "2026-11-19T01:00:00Z",
        Some("2026-11-20T01:00:00Z"),
    ))
    .await?;
    let soon = create(job(
        "Lotus Foods",
        "tech-2",
        "2026-11-19T02:00:00Z",
        Some("2026-11-20T04:00:00Z"),
    ))
    .await?;
    let later = create(job(
        "Lotus Foods",
        "tech-1",
        "2026-11-18T02:00:00Z",
        Some("2026-11-22T04:00:00Z"),
    ))
    .await?;
    let open = create(job(
        "Harbour Cold Store",
        "tech-2",
        "2026-11-17T02:00:00Z",
        None,
    ))
    .await?;

    let list = |query: &str| {
        let (http, token) = (http.clone(), token.clone());
        let url = server.http_url(&format!("/api/jobs{query}"));
        async move {
            let answer = http.get(url).bearer_auth(token).send().await?;
            let status = answer.status();
            let body: Value = answer.json().await?;
            Ok::<(StatusCode, Value), anyhow::Error>((status, body))
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["job_id"].as_str().map(str::to_owned))
            .collect()
    };
    let (status, all) = list("").await?;
    assert_eq!(status, StatusCode::OK, "{all}");
    // Overdue, due soon, then the rest by when they are due or, with no time asked, since
    // when they wait.
    assert_eq!(
        ids(&all),
        [
            overdue.as_str(),
            soon.as_str(),
            open.as_str(),
            later.as_str()
        ],
        "{all}"
    );
    assert_eq!(all["jobs"][0]["status"], "new");
    assert_eq!(all["jobs"][0]["sla"], "overdue");
    assert_eq!(all["jobs"][2]["sla"], Value::Null);

    assert_eq!(ids(&list("?sla=due_soon").await?.1), [soon.as_str()]);
    assert_eq!(ids(&list("?sla=none").await?.1), [open.as_str()]);
    assert_eq!(
        ids(&list("?technician=tech-1").await?.1),
        [overdue.as_str(), later.as_str()]
    );
    assert_eq!(
        ids(&list("?customer=lotus").await?.1),
        [soon.as_str(), later.as_str()]
    );
    // Dates are the branch's (Shanghai): received 2026-11-18T02:00Z is the 18th there.
    assert_eq!(
        ids(&list("?from=2026-11-18&to=2026-11-18").await?.1),
        [later.as_str()]
    );
    assert_eq!(
        ids(&list("?status=new&customer=Harbour").await?.1),
        [open.as_str()]
    );
    assert!(ids(&list("?status=signed").await?.1).is_empty());
    let (_, paged) = list("?per_page=3&page=2").await?;
    assert_eq!(ids(&paged), [later.as_str()]);
    assert_eq!(
        (paged["total"].as_u64(), paged["pages"].as_u64()),
        (Some(4), Some(2))
    );
    for bad in [
        "?status=lost",
        "?sla=late",
        "?from=20-11-2026",
        "?per_page=0",
        "?page=x",
    ] {
        let (status, body) = list(bad).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_query", "{bad}");
    }

    // The same list as a page, and one job in plain language.
    let browser = Browser::signed_in(&server, "li").await?;
    let board = browser.get("/board?customer=lotus").await?;
    assert!(board.body.contains("2 个工单"), "{}", board.body);
    assert!(board.body.contains("即将到期") && board.body.contains("Lotus Foods"));
    let page = browser.get(&format!("/jobs/{overdue}")).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("华东机械厂 · CH-500"), "{}", page.body);
    // Received 2026-11-19T01:00Z, shown at 09:00 in Shanghai.
    assert!(page.body.contains("2026-11-19 09:00"));
    assert!(page.body.contains("0.00 CNY") || page.body.contains(" CNY"));
    assert_eq!(
        browser.get("/jobs/not-a-job").await?.status,
        StatusCode::NOT_FOUND
    );

    // What the API created is audited under the person the token names.
    let manager = Browser::signed_in(&server, "wang").await?;
    let actions = audit_actions(&manager.get("/audit.csv").await?.body);
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == ("li".to_owned(), "job_create".to_owned()))
            .count(),
        4,
        "{actions:?}"
    );
    server.stop().await
}

#[tokio::test]
async fn head_office_serves_the_console_frame_sign_in_and_the_audit_log() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = TestServer::start_with_clock(dir.path(), Clock::manual(T0), |c| {
        c.role = fieldsync_server::config::Role::HeadOffice;
    })
    .await?;
    let store = std::sync::Arc::clone(&server.state.store);
    tokio::task::spawn_blocking(move || {
        users::add(
            &store,
            "zhao",
            "赵敏",
            DeskRole::Analyst,
            Lang::Zh,
            "zhao-password",
            T0,
        )?;
        users::add(
            &store,
            "wang",
            "Wang",
            DeskRole::Manager,
            Lang::En,
            "wang-password",
            T0,
        )?;
        Ok::<_, users::UserError>(())
    })
    .await??;
    let analyst = Browser::new(&server)?;
    let csrf = analyst.get("/login").await?.csrf()?;
    let signed = analyst
        .post(
            "/login",
            &[
                ("name", "zhao"),
                ("password", "zhao-password"),
                ("csrf", &csrf),
            ],
        )
        .await?;
    assert_eq!(signed.location.as_deref(), Some("/"));
    let home = analyst.get("/").await?;
    assert_eq!(home.location.as_deref(), Some("/archive"));
    // No board at head office.
    assert_eq!(analyst.get("/board").await?.status, StatusCode::NOT_FOUND);
    let manager = Browser::new(&server)?;
    let csrf = manager.get("/login").await?.csrf()?;
    manager
        .post(
            "/login",
            &[
                ("name", "wang"),
                ("password", "wang-password"),
                ("csrf", &csrf),
            ],
        )
        .await?;
    assert_eq!(
        manager.get("/").await?.location.as_deref(),
        Some("/archive")
    );
    assert!(manager.get("/audit").await?.body.contains("login"));
    server.stop().await
}

/// Signs in at `server` as `name` (password `<name>-password`) and checks it worked.
async fn signed_in_at_head_office(server: &TestServer, name: &str) -> anyhow::Result<Browser> {
    let browser = Browser::new(server)?;
    let csrf = browser.get("/login").await?.csrf()?;
    let password = format!("{name}-password");
    let answer = browser
        .post(
            "/login",
            &[
                ("name", name),
                ("password", &password),
                ("csrf", &csrf),
                ("next", "/archive"),
            ],
        )
        .await?;
    ensure!(
        answer.location.as_deref() == Some("/archive"),
        "sign-in of {name}: {} {:?}",
        answer.status,
        answer.location
    );
    Ok(browser)
}

/// Issue 14 point 4 (R25, R24, R9): a report the branch signed and head office verified is
/// listed in the archive of its month in head office's zone, read in plain language and as a
/// PDF, counted in the month's statistics (table, chart and CSV); each in the reader's
/// language; nothing is shown to someone not signed in.
#[tokio::test]
async fn r24_r25_head_office_reads_the_archive_a_report_and_the_months_statistics()
-> anyhow::Result<()> {
    let chain = crate::head_office::Chain::start_with(true, |c| {
        c.timezone = "Asia/Shanghai".parse().expect("a known zone");
    })
    .await?;
    // 2026-11-30 16:30 UTC is 00:30 on 1 December in Shanghai: a December report.
    let signing: Timestamp = "2026-11-30T16:30:00Z".parse()?;
    chain.clock.set(signing);
    let (_, report_id) = chain.complete_a_job(signing.as_millis() - 60_000).await?;
    chain.wait_verified(&report_id).await?;
    let ho = &chain.head_office;
    let store = std::sync::Arc::clone(&ho.state.store);
    let now = chain.clock.now();
    tokio::task::spawn_blocking(move || {
        users::add(
            &store,
            "zhao",
            "赵敏",
            DeskRole::Analyst,
            Lang::Zh,
            "zhao-password",
            now,
        )?;
        users::add(
            &store,
            "wang",
            "Wang",
            DeskRole::Manager,
            Lang::En,
            "wang-password",
            now,
        )?;
        Ok::<_, users::UserError>(())
    })
    .await??;

    // Not signed in: to the sign-in page, nothing of the archive.
    let stranger = Browser::new(ho)?;
    let answer = stranger.get("/archive?month=2026-12").await?;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        answer
            .location
            .unwrap_or_default()
            .starts_with("/login?next=")
    );
    let pdf = stranger
        .get(&format!("/archive/{report_id}/report.pdf"))
        .await?;
    assert_eq!(pdf.status, StatusCode::SEE_OTHER);

    let analyst = signed_in_at_head_office(ho, "zhao").await?;
    // The archive of December (Shanghai) lists it; November's does not.
    let december = analyst.get("/archive?month=2026-12").await?;
    assert_eq!(december.status, StatusCode::OK);
    assert!(december.body.contains(&report_id), "{}", december.body);
    assert!(december.body.contains("已验证"), "{}", december.body);
    assert!(december.body.contains("north-01"), "{}", december.body);
    let november = analyst.get("/archive?month=2026-11").await?;
    assert!(!november.body.contains(&report_id));
    assert!(november.body.contains("没有报告"), "{}", november.body);
    // Filters narrow the list; an unknown branch lists nothing.
    let other = analyst
        .get("/archive?month=2026-12&branch=south-02")
        .await?;
    assert!(!other.body.contains(&report_id));
    let bad = analyst.get("/archive?month=2026-13").await?;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("不是月份"), "{}", bad.body);

    // The report in plain language, in Chinese, and its PDF with the signed report inside.
    let report = analyst.get(&format!("/archive/{report_id}")).await?;
    assert_eq!(report.status, StatusCode::OK);
    assert!(report.body.contains(&report_id));
    assert!(report.body.contains("2026-12-01"), "{}", report.body);
    assert!(report.body.contains("report-text"));
    let pdf = analyst
        .http
        .get(format!("{}/archive/{report_id}/report.pdf", analyst.base))
        .send()
        .await?;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(
        pdf.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/pdf")
    );
    assert!(pdf.bytes().await?.starts_with(b"%PDF"));
    let unknown = analyst.get(&format!("/archive/{}", "0".repeat(32))).await?;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.body.contains("档案中没有这份报告"),
        "{}",
        unknown.body
    );

    // December's statistics: one report, on the chart and in the table; the CSV has every
    // line with its definition.
    let stats = analyst.get("/statistics?month=2026-12").await?;
    assert_eq!(stats.status, StatusCode::OK);
    assert!(stats.body.contains("<svg"), "{}", stats.body);
    assert!(
        stats.body.contains("<title>2026-12: 1</title>"),
        "{}",
        stats.body
    );
    assert!(
        stats.body.contains("<title>2026-11: 0</title>"),
        "{}",
        stats.body
    );
    assert!(stats.body.contains("报告数"), "{}", stats.body);
    // R22 across branches: no complaint on one verified report is 0 %; a month without
    // reports has no rate.
    assert!(
        stats
            .body
            .contains("<tr><td>2026-12</td><td>1</td><td>0</td><td>0.0%</td></tr>"),
        "{}",
        stats.body
    );
    assert!(
        stats
            .body
            .contains("<tr><td>2026-11</td><td>0</td><td>0</td><td>–</td></tr>"),
        "{}",
        stats.body
    );
    assert!(stats.body.contains("投诉率 (R22)"), "{}", stats.body);
    let csv = analyst.get("/statistics.csv?month=2026-12").await?;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.contains("north-01"), "{}", csv.body);
    assert!(csv.body.lines().any(|l| l.starts_with('#')), "{}", csv.body);

    // R27: the report's fault on its product type is in December's quality digest (none the
    // month before), and in its CSV.
    let quality = analyst.get("/quality?month=2026-12").await?;
    assert_eq!(quality.status, StatusCode::OK);
    assert!(
        quality.body.contains(
            "<td>chiller</td><td>worn start capacitor</td><td>1</td><td>0</td><td>north-01 1</td>"
        ),
        "{}",
        quality.body
    );
    assert!(quality.body.contains("质量摘要"), "{}", quality.body);
    let csv = analyst.get("/quality.csv?month=2026-12").await?;
    assert!(
        csv.body
            .contains("2026-12,chiller,worn start capacitor,1,0,north-01 1"),
        "{}",
        csv.body
    );
    let november = analyst.get("/quality?month=2026-11").await?;
    assert!(!november.body.contains("worn start capacitor"));

    // Nothing was kept aside.
    let rejected = analyst.get("/rejected").await?;
    assert_eq!(rejected.status, StatusCode::OK);
    assert!(rejected.body.contains("no-rejected"), "{}", rejected.body);

    // The manager reads English.
    let manager = signed_in_at_head_office(ho, "wang").await?;
    let stats = manager.get("/statistics?month=2026-12").await?;
    assert!(stats.body.contains("Monthly statistics"), "{}", stats.body);
    assert!(stats.body.contains("Reports"), "{}", stats.body);
    let archive = manager.get("/archive?month=2026-12").await?;
    assert!(archive.body.contains("Verified"), "{}", archive.body);
    chain.stop().await
}
