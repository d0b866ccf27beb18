//! The web console (issue 14): pages for people with accounts, served by the same binary.
//!
//! This module is what every role's console shares: accounts (`crate::accounts`, a floor lower: `Node::authorize` checks them too), cookie sessions
//! with CSRF tokens ([`session`]), the audit log ([`audit`]), the words in Chinese and
//! English ([`i18n`]), the page frame and its stylesheet, and the routes that are not a
//! role's: `/`, `/login`, `/logout`, `/language`, `/audit`, `/audit.csv`, `/console.css`.
//! The role's pages live with the role (`edge::console`: the desk's board and job pages)
//! and reach this through [`Console`], which each role's state holds; nothing here imports a
//! role.
//!
//! Pages are server-rendered HTML from askama templates (`server/templates/`), checked at
//! compile time and compiled into the binary: no build step, no script. Every page reads
//! and every form posts without JavaScript (none is served), so reading works with it
//! disabled by construction; forms are plain POSTs answered with a redirect.

pub mod audit;
pub mod i18n;
pub mod session;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fieldsync_shared::time::Timestamp;
use serde::Deserialize;

use self::audit::Entry;
use self::i18n::Lang;
use self::session::{LOGIN_COOKIE, NoSession, SESSION_COOKIE, Sessions, cookie, same, set_cookie};
use crate::accounts::{self, Login, User};
use crate::auth::{DeskRole, MANAGERS, role_list};
use crate::config::Role;
use crate::sync::node::Node;

/// What the console pages of any role reach: the node (whose `timezone` people read times
/// in) and the sessions.
#[derive(Debug)]
pub struct Console {
    pub node: Arc<Node>,
    pub sessions: Sessions,
}

/// A signed-in person, as a page handler gets them.
#[derive(Debug, Clone)]
pub struct Signed {
    pub user: User,
    pub role: DeskRole,
    /// The session's CSRF token: every form carries it.
    pub csrf: String,
    /// The session cookie's value (sign-out ends it).
    token: String,
}

/// The page frame's data: language, who is signed in, the navigation.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    pub title: String,
    /// The path of the page (the language switch comes back to it).
    pub path: String,
    /// `None` on the sign-in page.
    pub who: Option<Who>,
    pub zone: String,
    /// The board exists at an edge only.
    pub edge: bool,
}

/// The person in the page frame.
#[derive(Debug, Clone)]
pub struct Who {
    pub display_name: String,
    pub role_label: &'static str,
    pub manager: bool,
    /// A dispatcher or manager: the desk's forms are theirs.
    pub staff: bool,
    pub csrf: String,
}

/// What a form's answer says above the page: done, or refused with the rule's words.
#[derive(Debug, Clone)]
pub struct Notice {
    pub refused: bool,
    /// In the reader's language.
    pub text: String,
    /// The rule's own message (English, with the ids), under the words.
    pub detail: String,
}

impl Notice {
    /// A done notice: the label `key`.
    pub fn done(lang: Lang, key: &str) -> Self {
        Self {
            refused: false,
            text: lang.t(key).to_owned(),
            detail: String::new(),
        }
    }

    /// A refusal by the desk's rules, in words: the code's label (`err_<code>`) in the
    /// reader's language, and the rule's message beside it.
    pub fn refused(lang: Lang, error: &crate::http::error::ApiError) -> Self {
        let text = lang
            .label(&format!("err_{}", error.code))
            .unwrap_or_else(|| lang.t("err_other"));
        Self {
            refused: true,
            text: text.to_owned(),
            detail: error.message.clone(),
        }
    }
}

impl Chrome {
    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }
}

/// The label key of a role.
pub fn role_key(role: DeskRole) -> &'static str {
    match role {
        DeskRole::Dispatcher => "role_dispatcher",
        DeskRole::Manager => "role_manager",
        DeskRole::Director => "role_director",
        DeskRole::Analyst => "role_analyst",
    }
}

impl Console {
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        Arc::new(Self {
            node,
            sessions: Sessions::default(),
        })
    }

    fn secure(&self) -> bool {
        self.node.tls.is_some()
    }

    fn now(&self) -> Timestamp {
        self.node.clock.now()
    }

    /// Where `/` leads `role`: the board at an edge, the archive at head office.
    fn home(&self, role: DeskRole) -> Option<&'static str> {
        match (self.node.config.role, role) {
            (Role::Edge, _) => Some("/board"),
            (Role::HeadOffice, _) => Some("/archive"),
        }
    }

    /// The frame of a page for `signed`.
    pub fn chrome(&self, signed: &Signed, title: &str, path: &str) -> Chrome {
        Chrome {
            lang: signed.user.lang,
            title: title.to_owned(),
            path: path.to_owned(),
            who: Some(Who {
                display_name: signed.user.display_name.clone(),
                role_label: signed.user.lang.t(role_key(signed.role)),
                manager: signed.role == DeskRole::Manager,
                staff: crate::auth::STAFF.contains(&signed.role),
                csrf: signed.csrf.clone(),
            }),
            // The zone with the offset in force now: `Asia/Shanghai (UTC+08:00)`.
            zone: self.node.config.timezone.label_at(self.node.clock.now()),
            edge: self.node.config.role == Role::Edge,
        }
    }

    /// A time as people read it: in the configured zone.
    pub fn time(&self, at: Timestamp) -> String {
        self.node.config.timezone.format(at)
    }

    /// The signed-in person of this request if their role is in `allowed`; otherwise the
    /// answer to send: a redirect to the sign-in page (coming back to `path` after it), or a
    /// 403 page naming the roles that may.
    pub async fn require(
        &self,
        headers: &HeaderMap,
        path: &str,
        allowed: &[DeskRole],
    ) -> Result<Signed, Response> {
        let to_login = |notice: Option<&str>| {
            let mut url = format!("/login?next={}", encode(path));
            if let Some(n) = notice {
                url.push_str("&notice=");
                url.push_str(n);
            }
            Redirect::to(&url).into_response()
        };
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            return Err(to_login(None));
        };
        let now = self.now();
        let session = match self
            .sessions
            .touch(&token, now, self.node.config.console.idle_ms())
        {
            Ok(s) => s,
            Err(NoSession::Missing) => return Err(to_login(None)),
            Err(NoSession::Expired) => return Err(to_login(Some("expired"))),
        };
        let store = Arc::clone(&self.node.store);
        let name = session.user.clone();
        let stored = tokio::task::spawn_blocking(move || accounts::load(&store, &name))
            .await
            .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
            .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
        // Disabled or reset since the sign-in (possibly by the CLI, another process): the
        // session ends here.
        let user = match stored {
            Some(s) if !s.user.disabled && s.user.epoch == session.epoch => s.user,
            _ => {
                self.sessions.close(&token);
                return Err(to_login(None));
            }
        };
        let Some(role) = user.desk_role() else {
            return Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("account {} has an unknown role {:?}", user.name, user.role),
            ));
        };
        let signed = Signed {
            user,
            role,
            csrf: session.csrf,
            token,
        };
        if !allowed.contains(&role) {
            return Err(forbidden_page(self, &signed, path, allowed));
        }
        Ok(signed)
    }

    /// Checks a form's CSRF token against the session's: `None` when it matches, else the
    /// 403 page to answer (and change nothing).
    pub fn csrf_refusal(&self, signed: &Signed, form_token: &str) -> Option<Response> {
        if same(&signed.csrf, form_token) {
            None
        } else {
            Some(message_page(
                StatusCode::FORBIDDEN,
                signed.user.lang,
                "form_expired",
            ))
        }
    }

    /// Writes an audit entry on the blocking pool; a failure is logged and the page says so.
    pub async fn audit(&self, entry: Entry) -> Result<(), Response> {
        let store = Arc::clone(&self.node.store);
        tokio::task::spawn_blocking(move || audit::append(&store, &entry))
            .await
            .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot write the audit log");
                error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            })
    }
}

/// Writes `entry` to the audit log from an API handler (a failure is a 500: the change is
/// made, and not being able to say so is ours to fix).
pub async fn audit_api(node: &Node, entry: Entry) -> Result<(), crate::http::error::ApiError> {
    let store = Arc::clone(&node.store);
    crate::http::blocking(move || audit::append(&store, &entry)).await
}

/// Percent-encodes a path for a query parameter.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `next` that stays on this server: a path, never `//host` or a URL.
fn local_path(next: Option<&str>) -> Option<&str> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
}

/// An HTML answer with the console's headers: no caching, no framing, no foreign forms,
/// no scripts at all.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Renders a template into an HTML answer; a template that fails to render is a 500 page.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Debug, Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub text: String,
}

/// A page that only says something (in `lang`), with `status`.
pub fn message_page(status: StatusCode, lang: Lang, key: &str) -> Response {
    let page = MessagePage {
        chrome: Chrome {
            lang,
            title: lang.t(key).to_owned(),
            path: "/".into(),
            who: None,
            zone: String::new(),
            edge: false,
        },
        heading: lang.t(key),
        text: String::new(),
    };
    render(status, &page)
}

/// A failure of ours, as a page (the cause is logged).
pub fn error_page(status: StatusCode, cause: &str) -> Response {
    tracing::error!(%cause, "console page failed");
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{0}</title><h1>{0}</h1><p>{1}</p>",
        status.as_u16(),
        askama::filters::escape(cause, askama::filters::Html)
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    html(status, body)
}

/// 403: the role may not see `path`; says which roles may.
pub fn forbidden_page(
    console: &Console,
    signed: &Signed,
    path: &str,
    allowed: &[DeskRole],
) -> Response {
    let lang = signed.user.lang;
    let roles: Vec<&str> = allowed.iter().map(|r| lang.t(role_key(*r))).collect();
    let page = MessagePage {
        chrome: console.chrome(signed, lang.t("forbidden"), path),
        heading: lang.t("forbidden"),
        text: format!(
            "{} {} ({})",
            lang.t("forbidden_text"),
            roles.join(", "),
            role_list(allowed)
        ),
    };
    render(StatusCode::FORBIDDEN, &page)
}

/// The routes every role's console has, on the shared state.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/language", post(set_language))
        .route("/audit", get(audit_page))
        .route("/audit.csv", get(audit_csv))
        .route("/console.css", get(stylesheet))
        .with_state(console)
}

async fn stylesheet() -> Response {
    let mut response = include_str!("../../templates/console/console.css").into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// `GET /`: the role's first page when signed in, the sign-in page otherwise.
async fn root(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.require(&headers, "/", crate::auth::EVERYONE).await {
        Ok(signed) => match console.home(signed.role) {
            Some(home) => Redirect::to(home).into_response(),
            None => {
                let lang = signed.user.lang;
                let page = MessagePage {
                    chrome: console.chrome(&signed, lang.t("product"), "/"),
                    heading: lang.t("product"),
                    text: lang.t("nothing_here_yet").to_owned(),
                };
                render(StatusCode::OK, &page)
            }
        },
        Err(answer) => answer,
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
    lang: Option<String>,
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    name: String,
    /// A notice or refusal, already in the page's language.
    message: Option<String>,
    /// A refusal (shown as an alert) rather than a notice.
    refused: bool,
}

fn login_page(
    status: StatusCode,
    lang: Lang,
    next: &str,
    name: &str,
    message: Option<String>,
    refused: bool,
    secure: bool,
) -> Response {
    let Ok(csrf) = session::random_token() else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    };
    let page = LoginPage {
        chrome: Chrome {
            lang,
            title: lang.t("sign_in").to_owned(),
            path: "/login".into(),
            who: None,
            zone: String::new(),
            edge: false,
        },
        csrf: csrf.clone(),
        next: next.to_owned(),
        name: name.to_owned(),
        message,
        refused,
    };
    let mut response = render(status, &page);
    if let Ok(v) = HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, Some(&csrf), secure)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /login`: the sign-in form (in the language asked for, Chinese by default).
async fn login_form(
    State(console): State<Arc<Console>>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or(LoginQuery {
        next: None,
        notice: None,
        lang: None,
    });
    let lang = q.lang.as_deref().and_then(Lang::parse).unwrap_or_default();
    let message = match q.notice.as_deref() {
        Some("expired") => Some(lang.t("session_expired").to_owned()),
        Some("signed_out") => Some(lang.t("signed_out").to_owned()),
        _ => None,
    };
    let next = local_path(q.next.as_deref()).unwrap_or("/");
    login_page(
        StatusCode::OK,
        lang,
        next,
        "",
        message,
        false,
        console.secure(),
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    lang: String,
}

/// `POST /login`: checks the password (argon2id, on the blocking pool), counts wrong ones,
/// opens a session.
async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message_page(StatusCode::BAD_REQUEST, Lang::Zh, "form_expired");
    };
    let lang = Lang::parse(&form.lang).unwrap_or_default();
    let next = local_path(Some(&form.next)).unwrap_or("/").to_owned();
    let name = form.name.trim().to_ascii_lowercase();
    let secure = console.secure();
    // Double submit: the form's token must be the one the sign-in page set as a cookie.
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie_token.is_empty() || !same(&cookie_token, &form.csrf) {
        let message = Some(lang.t("form_expired").to_owned());
        return login_page(
            StatusCode::FORBIDDEN,
            lang,
            &next,
            &name,
            message,
            true,
            secure,
        );
    }
    let now = console.now();
    let store = Arc::clone(&console.node.store);
    let config = console.node.config.console.clone();
    let (n, password) = (name.clone(), form.password);
    let outcome =
        tokio::task::spawn_blocking(move || accounts::login(&store, &n, &password, now, &config))
            .await;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    // The name as typed is kept short in the log: it is whatever a stranger sent.
    let who: String = name.chars().take(64).collect();
    let (status, message, action) = match outcome {
        Login::Accepted(user) => return open_session(&console, user, &next).await,
        Login::Refused => (
            StatusCode::UNAUTHORIZED,
            lang.t("login_refused").to_owned(),
            "login_refused",
        ),
        Login::Locked(until) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "{} {} ({}).",
                lang.t("login_locked"),
                console.time(until),
                console.node.config.timezone
            ),
            "login_locked",
        ),
        Login::Disabled => (
            StatusCode::FORBIDDEN,
            lang.t("login_disabled").to_owned(),
            "login_disabled",
        ),
    };
    if let Err(answer) = console
        .audit(Entry::new(
            now,
            who.clone(),
            "",
            action,
            format!("user:{who}"),
        ))
        .await
    {
        return answer;
    }
    login_page(status, lang, &next, &name, Some(message), true, secure)
}

async fn open_session(console: &Console, user: User, next: &str) -> Response {
    let now = console.now();
    let Ok(token) = console.sessions.open(&user.name, user.epoch, now) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    };
    let entry = Entry::new(
        now,
        &user.name,
        &user.role,
        "login",
        format!("user:{}", user.name),
    );
    if let Err(answer) = console.audit(entry).await {
        console.sessions.close(&token);
        return answer;
    }
    let mut response = Redirect::to(next).into_response();
    let secure = console.secure();
    for value in [
        set_cookie(SESSION_COOKIE, Some(&token), secure),
        set_cookie(LOGIN_COOKIE, None, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session.
async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let signed = match console.require(&headers, "/", crate::auth::EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Some(answer) = console.csrf_refusal(&signed, &csrf) {
        return answer;
    }
    console.sessions.close(&signed.token);
    let now = console.now();
    let entry = Entry::new(
        now,
        &signed.user.name,
        signed.role.as_str(),
        "logout",
        format!("user:{}", signed.user.name),
    );
    if let Err(answer) = console.audit(entry).await {
        return answer;
    }
    let mut response = Redirect::to(&format!(
        "/login?notice=signed_out&lang={}",
        signed.user.lang.code()
    ))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, None, console.secure())) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct LanguageForm {
    #[serde(default)]
    csrf: String,
    lang: String,
    #[serde(default)]
    next: String,
}

/// `POST /language`: the language this person reads the console in (stored with the
/// account), then back to the page they were on.
async fn set_language(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    form: Result<Form<LanguageForm>, FormRejection>,
) -> Response {
    let signed = match console.require(&headers, "/", crate::auth::EVERYONE).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let Ok(Form(form)) = form else {
        return message_page(StatusCode::BAD_REQUEST, signed.user.lang, "form_expired");
    };
    if let Some(answer) = console.csrf_refusal(&signed, &form.csrf) {
        return answer;
    }
    let Some(lang) = Lang::parse(&form.lang) else {
        return message_page(StatusCode::BAD_REQUEST, signed.user.lang, "form_expired");
    };
    let store = Arc::clone(&console.node.store);
    let name = signed.user.name.clone();
    match tokio::task::spawn_blocking(move || accounts::set_lang(&store, &name, lang)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let entry = Entry::new(
        console.now(),
        &signed.user.name,
        signed.role.as_str(),
        "language_set",
        format!("user:{}", signed.user.name),
    )
    .before(signed.user.lang.code())
    .after(lang.code());
    if let Err(answer) = console.audit(entry).await {
        return answer;
    }
    let next = local_path(Some(&form.next)).unwrap_or("/");
    Redirect::to(next).into_response()
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

/// Entries on one page of `/audit`.
const AUDIT_PAGE: usize = 50;

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    rows: Vec<AuditRow>,
    page: usize,
    pages: usize,
}

struct AuditRow {
    at: String,
    actor: String,
    role: String,
    action: String,
    target: String,
    before: String,
    after: String,
    detail: String,
}

async fn audit_entries(console: &Console) -> Result<Vec<Entry>, Response> {
    let store = Arc::clone(&console.node.store);
    tokio::task::spawn_blocking(move || audit::list(&store))
        .await
        .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .map_err(|e| error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// `GET /audit`: the audit log, newest first, for managers.
async fn audit_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let signed = match console.require(&headers, "/audit", MANAGERS).await {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let entries = match audit_entries(&console).await {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    let pages = entries.len().div_ceil(AUDIT_PAGE).max(1);
    let page = query
        .ok()
        .and_then(|Query(q)| q.page)
        .unwrap_or(1)
        .clamp(1, pages);
    let rows = entries
        .iter()
        .skip((page - 1) * AUDIT_PAGE)
        .take(AUDIT_PAGE)
        .map(|e| AuditRow {
            at: console.time(e.at),
            actor: e.actor.clone(),
            role: DeskRole::parse(&e.role)
                .map(|r| signed.user.lang.t(role_key(r)).to_owned())
                .unwrap_or_else(|| e.role.clone()),
            action: e.action.clone(),
            target: e.target.clone(),
            before: e.before.clone().unwrap_or_default(),
            after: e.after.clone().unwrap_or_default(),
            detail: e.detail.clone(),
        })
        .collect();
    let lang = signed.user.lang;
    let page = AuditPage {
        chrome: console.chrome(&signed, lang.t("audit"), "/audit"),
        rows,
        page,
        pages,
    };
    render(StatusCode::OK, &page)
}

/// `GET /audit.csv`: the whole audit log as CSV, for managers.
async fn audit_csv(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Err(answer) = console.require(&headers, "/audit", MANAGERS).await {
        return answer;
    }
    let entries = match audit_entries(&console).await {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    let mut response = audit::csv(&entries).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"fieldsync-audit.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An amount in minor units with its currency: `1,234.50 CNY` (no minor unit for JPY, KRW).
pub fn money(amount: fieldsync_shared::time::Money, currency: &str) -> String {
    let decimals = if matches!(currency, "JPY" | "KRW") {
        0
    } else {
        2
    };
    let minor = amount.0;
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(decimals);
    let (whole, frac) = (abs / scale, abs % scale);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if decimals == 0 {
        format!("{sign}{grouped} {currency}")
    } else {
        format!("{sign}{grouped}.{frac:02} {currency}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path(Some("/board?page=2")), Some("/board?page=2"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "board",
            "/\\evil",
        ] {
            assert_eq!(local_path(Some(bad)), None, "{bad}");
        }
        assert_eq!(encode("/jobs/a b?x=1&y"), "/jobs/a%20b%3Fx%3D1%26y");
    }
}
