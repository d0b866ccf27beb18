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
pub(crate) const T0: Timestamp = Timestamp::from_millis(1_795_140_000_000);
pub(crate) const MINUTE: i64 = 60_000;

/// A server at `T0` on a manual clock, in Shanghai time, locking after 3 wrong passwords,
/// with a dispatcher `li`, a manager `wang` and an analyst `zhao`.
pub(crate) async fn console_server(dir: &Path) -> anyhow::Result<TestServer> {
    console_server_with(dir, |_| {}).await
}

/// [`console_server`] with `adjust` applied to its config after those settings.
pub(crate) async fn console_server_with(
    dir: &Path,
    adjust: impl FnOnce(&mut fieldsync_server::config::Config),
) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_clock(dir, Clock::manual(T0), |c| {
        c.timezone = "Asia/Shanghai".parse().expect("a known zone");
        c.console.max_failed_logins = 3;
        c.console.lockout_minutes = 15;
        c.console.idle_minutes = 30;
        adjust(c);
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
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Page {
    /// The first CSRF token of the page's forms.
    pub(crate) fn csrf(&self) -> anyhow::Result<String> {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .context("no form with a CSRF token on the page")?;
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        Ok(rest[..rest.find('"').context("unterminated value")?].to_owned())
    }
}

impl Browser {
    pub(crate) fn new(server: &TestServer) -> anyhow::Result<Self> {
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

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Page> {
        Self::page(self.http.get(format!("{}{path}", self.base)).send().await?).await
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
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
    pub(crate) async fn login(&self, name: &str, password: &str) -> anyhow::Result<Page> {
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
    pub(crate) async fn signed_in(server: &TestServer, name: &str) -> anyhow::Result<Self> {
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

pub(crate) fn audit_actions(csv: &str) -> Vec<(String, String)> {
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

/// A desk token for `person` (role `role`) on the server's clock.
pub(crate) fn person_token(
    server: &TestServer,
    role: DeskRole,
    person: &str,
) -> anyhow::Result<String> {
    server
        .state
        .tokens
        .issue_for(
            &Subject::Desk(role),
            Some(person),
            Duration::from_secs(600),
            server.now(),
        )
        .map_err(anyhow::Error::msg)
}

/// The path of a redirect without its query: `/requests/req-…`.
fn path_of(location: Option<&str>) -> String {
    location
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The intake form filled in for the chiller at Lotus Foods.
fn intake_form(csrf: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", csrf.to_owned()),
        ("channel", "phone".into()),
        // Typed in Shanghai time: 2026-11-20T01:30Z.
        ("received_at", "2026-11-20T09:30".into()),
        ("customer_id", "c-2001".into()),
        ("customer_name", "华东机械厂".into()),
        ("contact", "陈先生 138 0000 0000".into()),
        ("site_address", "上海市嘉定区 8 号".into()),
        ("model", "CH-900".into()),
        ("serial", "SN-2001".into()),
        ("product_type", "chiller".into()),
        ("purchase_date", "2026-01-05".into()),
        ("warranty_end", "2028-01-05".into()),
        ("fault_description", "新机安装调试".into()),
        ("fault_category", "".into()),
        ("requested_arrival", "".into()),
    ]
}

fn pairs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn a_dispatcher_registers_a_request_and_dispatches_it_from_the_console_forms()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let li = Browser::signed_in(&server, "li").await?;

    // The intake form says "now" in the branch's zone (T0 is 10:00 in Shanghai).
    let intake = li.get("/intake").await?;
    assert_eq!(intake.status, StatusCode::OK);
    assert!(
        intake.body.contains("value=\"2026-11-20T10:00\"") && intake.body.contains("登记报修"),
        "{}",
        intake.body
    );
    assert!(!intake.body.contains("<script"));
    let csrf = intake.csrf()?;

    // Without the form's token, or with another, nothing is registered.
    let mut forged = intake_form("");
    assert_eq!(
        li.post("/intake", &pairs(&forged)).await?.status,
        StatusCode::FORBIDDEN
    );
    forged[0].1 = "0000".into();
    let refused = li.post("/intake", &pairs(&forged)).await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("表单已失效"), "{}", refused.body);

    // A time that is not one is refused in words, and the form keeps what was typed.
    let mut bad = intake_form(&csrf);
    bad[2].1 = "昨天".into();
    let refused = li.post("/intake", &pairs(&bad)).await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("时间格式不对") && refused.body.contains("value=\"华东机械厂\""),
        "{}",
        refused.body
    );

    // An analyst may read but not register: a 403 page naming the roles that may.
    let zhao = Browser::signed_in(&server, "zhao").await?;
    let page = zhao.get("/intake").await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("调度员"), "{}", page.body);
    let zhao_csrf = zhao.get("/board").await?.csrf()?;
    let refused = zhao
        .post("/intake", &pairs(&intake_form(&zhao_csrf)))
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let done = li.post("/intake", &pairs(&intake_form(&csrf))).await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let request_path = path_of(done.location.as_deref());
    let request_id = request_path
        .strip_prefix("/requests/")
        .context("the request's page")?
        .to_owned();
    let request = li
        .get(done.location.as_deref().context("location")?)
        .await?;
    assert!(
        request.body.contains("报修已登记") && request.body.contains("2026-11-20 09:30"),
        "{}",
        request.body
    );
    // The analyst got nowhere: one request waits for dispatch.
    let waiting = li.get("/intake").await?;
    assert_eq!(waiting.body.matches("href=\"/requests/").count(), 1);

    // R16: an installation's appointment after the contract's date is refused, in words.
    let dispatch = |appointment: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("kind", "installation".to_owned()),
            ("technician", "tech-1".to_owned()),
            ("billing_mode", "".to_owned()),
            ("contract_due", "2026-11-25".to_owned()),
            ("appointment_at", appointment.to_owned()),
            ("contacted_by", "李伟".to_owned()),
            ("fault_rechecked", "新机安装调试，客户确认".to_owned()),
            ("pre_assign", "on".to_owned()),
        ]
    };
    let path = format!("{request_path}/dispatch");
    let refused = li
        .post(&path, &pairs(&dispatch("2026-11-26T09:00")))
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // The words in the reader's language, the rule's own message beside them.
    assert!(
        refused.body.contains("R16：安装须在合同完工日期前完成")
            && refused
                .body
                .contains("R16: installation must be done by the contract date"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("value=\"2026-11-26T09:00\""));
    // Without the token: refused before any rule.
    let mut forged = dispatch("2026-11-24T09:00");
    forged[0].1 = String::new();
    assert_eq!(
        li.post(&path, &pairs(&forged)).await?.status,
        StatusCode::FORBIDDEN
    );

    let done = li
        .post(&path, &pairs(&dispatch("2026-11-24T09:00")))
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let job_path = path_of(done.location.as_deref());
    let job_id = job_path
        .strip_prefix("/jobs/")
        .context("the job's page")?
        .to_owned();
    let job = li
        .get(done.location.as_deref().context("location")?)
        .await?;
    assert!(
        job.body.contains("已派工") && job.body.contains("2026-11-24 09:00"),
        "{}",
        job.body
    );
    // Twice is refused: the request has its job.
    let again = li
        .post(&path, &pairs(&dispatch("2026-11-24T09:00")))
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("此报修已经派工"), "{}", again.body);

    // The same rules through the API, with a person's token: audited under the person.
    let token = person_token(&server, DeskRole::Dispatcher, "li")?;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(server.http_url("/api/requests"))
        .bearer_auth(&token)
        .json(&json!({
            "channel": "web",
            "received_at": "2026-11-20T01:00:00Z",
            "customer": {"id": "c-3001", "name": "Lotus Foods Ltd"},
            "product": {"serial": "SN-3001", "product_type": "chiller"},
            "fault_description": "Compressor trips",
        }))
        .send()
        .await?
        .json()
        .await?;
    let api_request = created["id"].as_str().context("request id")?.to_owned();
    let answer = http
        .post(server.http_url(&format!("/api/requests/{api_request}/job")))
        .bearer_auth(&token)
        .json(&json!({"kind": "repair", "technician": "tech-2", "pre_assign": true}))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::CREATED);
    // A write whose desk function has no entry of its own is audited by the API's layer.
    let answer = http
        .post(server.http_url(&format!("/api/requests/{api_request}/reply")))
        .bearer_auth(&token)
        .json(&json!({"by": "李伟", "text": "明天上午上门"}))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::OK);

    let manager = Browser::signed_in(&server, "wang").await?;
    let csv = manager.get("/audit.csv").await?.body;
    assert!(
        csv.contains(&format!(
            ",api_write,/api/requests/{api_request}/reply,,200,POST /api/requests/{{id}}/reply"
        )),
        "{csv}"
    );
    // Once per write: the writes with their own entry have no second one.
    assert!(!csv.contains(",api_write,/api/requests,"), "{csv}");
    assert!(
        !csv.contains(&format!(",api_write,/api/requests/{api_request}/job,")),
        "{csv}"
    );
    let actions = audit_actions(&csv);
    for expected in ["request_create", "job_dispatch"] {
        assert_eq!(
            actions
                .iter()
                .filter(|a| **a == ("li".to_owned(), expected.to_owned()))
                .count(),
            2,
            "{expected}: {csv}"
        );
    }
    assert!(!actions.iter().any(|a| a.0 == "zhao" && a.1 != "login"));
    assert!(
        csv.contains(&format!(
            ",job_dispatch,request:{request_id},{request_id},{job_id},"
        )),
        "{csv}"
    );
    server.stop().await
}

#[tokio::test]
async fn the_job_page_reassigns_and_cancels_with_a_reason_and_the_device_sees_it()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let created = server.create_job("tech-1").await?.job;
    let other = server.create_job("tech-1").await?.job;
    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get(&format!("/jobs/{created}")).await?;
    assert!(
        page.body.contains("改派技术员") && page.body.contains("取消工单"),
        "{}",
        page.body
    );
    let csrf = page.csrf()?;
    let reassign = format!("/jobs/{created}/technicians");
    let cancel = format!("/jobs/{created}/cancel");

    // R3: a technician no device belongs to is refused in words unless pre-assigned.
    let refused = li
        .post(&reassign, &[("csrf", &csrf), ("technicians", "tech-9")])
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("没有已登记的设备"),
        "{}",
        refused.body
    );
    let done = li
        .post(
            &reassign,
            &[
                ("csrf", &csrf),
                ("technicians", "tech-2，tech-3"),
                ("pre_assign", "on"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let job = server.get_job(created).await?;
    assert_eq!(job["job"]["technicians"], json!(["tech-2", "tech-3"]));

    // Cancelling needs a reason, the form's token and a desk role.
    let refused = li
        .post(&cancel, &[("csrf", &csrf), ("reason", "  ")])
        .await?;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("表单中有一项填写不对"));
    assert_eq!(
        li.post(&cancel, &[("reason", "客户取消")]).await?.status,
        StatusCode::FORBIDDEN
    );
    let zhao = Browser::signed_in(&server, "zhao").await?;
    let zhao_csrf = zhao.get("/board").await?.csrf()?;
    let refused = zhao
        .post(&cancel, &[("csrf", &zhao_csrf), ("reason", "客户取消")])
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("调度员"), "{}", refused.body);

    let done = li
        .post(&cancel, &[("csrf", &csrf), ("reason", "客户已自行修好")])
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = li
        .get(done.location.as_deref().context("location")?)
        .await?;
    assert!(
        page.body.contains("工单已取消") && page.body.contains("客户已自行修好"),
        "{}",
        page.body
    );
    // No more desk forms on a cancelled job; a second cancel is refused in words.
    assert!(!page.body.contains("id=\"cancel-form\""));
    let again = li
        .post(&cancel, &[("csrf", &csrf), ("reason", "again")])
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("此工单已经取消"), "{}", again.body);

    // In the job document (what the technician's device reads): a timeline event.
    let job = server.get_job(created).await?;
    let events = job["job"]["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events.iter().any(|e| e["kind"] == "cancelled"
            && e["text"]
                .as_str()
                .is_some_and(|t| t.contains("客户已自行修好"))),
        "{job}"
    );
    // The board says so, and its clock no longer runs.
    let token = person_token(&server, DeskRole::Dispatcher, "li")?;
    let http = reqwest::Client::new();
    let board: Value = http
        .get(server.http_url("/api/jobs?status=cancelled"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(board["total"], 1, "{board}");
    assert_eq!(board["jobs"][0]["job_id"], created.to_string());
    assert_eq!(board["jobs"][0]["sla"], Value::Null);

    // The API does the same, under the token's role when it names no person.
    let answer = http
        .post(server.http_url(&format!("/api/jobs/{other}/cancel")))
        .bearer_auth(server.desk_token(DeskRole::Manager)?)
        .json(&json!({"reason": "duplicate of another job"}))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = http
        .post(server.http_url(&format!("/api/jobs/{other}/cancel")))
        .bearer_auth(server.desk_token(DeskRole::Manager)?)
        .json(&json!({"reason": "twice"}))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let body: Value = answer.json().await?;
    assert_eq!(body["code"], "already_cancelled");

    let manager = Browser::signed_in(&server, "wang").await?;
    let csv = manager.get("/audit.csv").await?.body;
    assert!(
        csv.contains(&format!(
            ",job_reassign,job:{created},tech-1,tech-2 tech-3,"
        )),
        "{csv}"
    );
    assert!(
        csv.contains(&format!(
            ",job_cancel,job:{created},new,cancelled,客户已自行修好"
        )),
        "{csv}"
    );
    let actions = audit_actions(&csv);
    assert!(actions.contains(&("token:manager".into(), "job_cancel".into())));
    server.stop().await
}

/// Writes an approval request into `job` as a device's change would (the SDK path is the
/// browser test's).
async fn raise_approval(
    server: &TestServer,
    job: fieldsync_shared::ids::DocumentId,
    approval: fieldsync_shared::job::approvals::Approval,
) -> anyhow::Result<()> {
    use fieldsync_shared::sync::{LocalEdit, edit_via_autocommit};
    let edit = LocalEdit::Change(Box::new(move |doc: &mut automerge::Automerge| {
        edit_via_autocommit(doc, |ac| {
            fieldsync_shared::job::approvals::request_approval(ac, &approval)
                .map_err(|e| e.to_string())
        })
    }));
    server.state.hub.edit(job, edit).await?;
    Ok(())
}

#[tokio::test]
async fn approvals_wait_for_a_managers_decision_and_large_amounts_for_the_directors()
-> anyhow::Result<()> {
    use fieldsync_shared::job::approvals::{Approval, ApprovalKind};
    use fieldsync_shared::time::Money;
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let store = std::sync::Arc::clone(&server.state.store);
    tokio::task::spawn_blocking(move || {
        users::add(
            &store,
            "sun",
            "孙总",
            DeskRole::Director,
            Lang::Zh,
            "sun-password",
            T0,
        )
    })
    .await??;
    let job = server.create_job("tech-1").await?.job;
    let request = |id: &str, kind, amount: Option<i64>| Approval {
        id: id.to_owned(),
        kind,
        reason: format!("{id}: compressor"),
        requested_by: "tech-1".into(),
        requested_at: T0,
        amount: amount.map(Money),
        expense: None,
        decision: None,
    };
    raise_approval(
        &server,
        job,
        request("ext-1", ApprovalKind::Extension, None),
    )
    .await?;
    // Above the default director_approval_above (1000.00).
    raise_approval(
        &server,
        job,
        request("part-1", ApprovalKind::WarrantyPart, Some(250_000)),
    )
    .await?;

    // A dispatcher sees what waits, without the decide action, and may not decide.
    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get("/approvals").await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("ext-1: compressor") && page.body.contains("保修索赔件（R18）"),
        "{}",
        page.body
    );
    assert!(page.body.contains("2,500.00 CNY") && page.body.contains("由售后总监审批"));
    assert!(!page.body.contains("name=\"decision\""));
    let csrf = page.csrf()?;
    let decide = |id: &str| format!("/approvals/{job}/{id}");
    let refused = li
        .post(
            &decide("ext-1"),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("经理"), "{}", refused.body);

    // The manager (in English) decides the extension, not the large part.
    let wang = Browser::signed_in(&server, "wang").await?;
    let page = wang.get("/approvals").await?;
    assert!(
        page.body.contains("name=\"decision\"")
            && page.body.contains("the after-sales director decides"),
        "{}",
        page.body
    );
    let csrf = page.csrf()?;
    let refused = wang
        .post(
            &decide("part-1"),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("R18: the amount is above the limit; the after-sales director decides"),
        "{}",
        refused.body
    );
    assert_eq!(
        wang.post(&decide("ext-1"), &[("decision", "approve")])
            .await?
            .status,
        StatusCode::FORBIDDEN
    );
    let done = wang
        .post(
            &decide("ext-1"),
            &[
                ("csrf", &csrf),
                ("decision", "refuse"),
                ("note", "finish it this week"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = wang
        .get(done.location.as_deref().context("location")?)
        .await?;
    assert!(
        page.body.contains("The decision is recorded")
            && page.body.contains("Refused: finish it this week"),
        "{}",
        page.body
    );
    let again = wang
        .post(
            &decide("ext-1"),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("This request is already decided"));

    // The director decides the large amount.
    let sun = Browser::new(&server)?;
    sun.login("sun", "sun-password").await?;
    let csrf = sun.get("/approvals").await?.csrf()?;
    let done = sun
        .post(
            &decide("part-1"),
            &[("csrf", &csrf), ("decision", "approve")],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

    // Both decisions are in the job document, where the device reads them.
    let doc = server.stored_doc(job)?;
    let stored = fieldsync_shared::job::approvals::read_approvals(&doc)?;
    let decision = |id: &str| {
        stored
            .iter()
            .find(|a| a.id == id)
            .and_then(|a| a.decision.clone())
            .map(|d| (d.approved, d.by))
    };
    assert_eq!(decision("ext-1"), Some((false, "desk:manager".into())));
    assert_eq!(decision("part-1"), Some((true, "desk:director".into())));

    let csv = wang.get("/audit.csv").await?.body;
    assert!(
        csv.contains(&format!(
            ",approval_decide,approval:{job}/ext-1,waiting,refused,"
        )),
        "{csv}"
    );
    let actions = audit_actions(&csv);
    assert!(actions.contains(&("sun".into(), "approval_decide".into())));
    server.stop().await
}

#[tokio::test]
async fn the_follow_up_page_lists_the_days_calls_records_their_outcome_and_refuses_one_before_the_service()
-> anyhow::Result<()> {
    let dir = temp_dir()?;
    let server = console_server(dir.path()).await?;
    let job = server.create_job("tech-1").await?.job;
    let li = Browser::signed_in(&server, "li").await?;
    let page = li.get("/follow-ups").await?;
    assert_eq!(page.status, StatusCode::OK);
    // Today in Shanghai, nobody served yesterday.
    assert!(
        page.body.contains("value=\"2026-11-20\"") && page.body.contains("这一天没有要回访的客户"),
        "{}",
        page.body
    );
    let csrf = page.csrf()?;
    let path = format!("/follow-ups/{job}/call");
    // R14: the call follows the service; this job has no signed report.
    let refused = li
        .post(&path, &[("csrf", &csrf), ("outcome", "satisfied")])
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("R14：服务报告尚未签发"),
        "{}",
        refused.body
    );
    assert_eq!(
        li.post(&path, &[("outcome", "satisfied")]).await?.status,
        StatusCode::FORBIDDEN
    );
    let zhao = Browser::signed_in(&server, "zhao").await?;
    assert_eq!(zhao.get("/follow-ups").await?.status, StatusCode::OK);
    let zhao_csrf = zhao.get("/board").await?.csrf()?;
    assert_eq!(
        zhao.post(&path, &[("csrf", &zhao_csrf), ("outcome", "satisfied")])
            .await?
            .status,
        StatusCode::FORBIDDEN
    );

    // What the report signer calls once the report is signed: served yesterday (Shanghai),
    // so today's list has it.
    let served = server.fetch_job(job).await?;
    fieldsync_server::edge::desk::dispatch::on_report_signed(
        server.edge()?,
        &served,
        "r-1",
        T0.plus_millis(-20 * 60 * MINUTE),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let page = li.get("/follow-ups").await?;
    assert!(
        page.body.contains("Lotus Foods Ltd") && page.body.contains(&format!("call-{job}")),
        "{}",
        page.body
    );
    let not_reached = li
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("outcome", "not_reached"),
                ("date", "2026-11-20"),
            ],
        )
        .await?;
    assert_eq!(not_reached.status, StatusCode::SEE_OTHER);
    let done = li
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("outcome", "satisfied"),
                ("comments", "很满意"),
                ("date", "2026-11-20"),
            ],
        )
        .await?;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/follow-ups?done=called&date=2026-11-20")
    );
    let page = li.get("/follow-ups?done=called&date=2026-11-20").await?;
    assert!(
        page.body.contains("回访已记录")
            && page.body.contains("未接通")
            && page.body.contains("满意 — 很满意"),
        "{}",
        page.body
    );
    // Reached once, done: no form, and a second call is refused in words.
    assert!(!page.body.contains(&format!("action=\"{path}\"")));
    let again = li
        .post(&path, &[("csrf", &csrf), ("outcome", "satisfied")])
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("已经回访过这位客户"), "{}", again.body);
    let manager = Browser::signed_in(&server, "wang").await?;
    let csv = manager.get("/audit.csv").await?.body;
    assert!(
        csv.contains(&format!(
            ",follow_up_call,job:{job},calls:1,calls:2,satisfied"
        )),
        "{csv}"
    );
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
    // A malformed id and an unknown report's PDF are refused the same way.
    let malformed = analyst.get("/archive/not-a-report-id/report.pdf").await?;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    assert!(
        malformed.body.contains("档案中没有这份报告"),
        "{}",
        malformed.body
    );
    // A download for a month that does not parse is a 400 saying so, not a page.
    for csv in ["/statistics.csv?month=2026-13", "/quality.csv?month=last"] {
        let refused = analyst.get(csv).await?;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{csv}");
        assert!(refused.body.contains("不是月份"), "{csv}: {}", refused.body);
    }
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
