//! Cookie sessions of the console. A session is 32 random bytes in an HttpOnly,
//! SameSite=Strict cookie (Secure when the server runs TLS); the server keeps, in memory and
//! keyed by the SHA-256 of that value, whose session it is, the account's epoch at sign-in,
//! the session's CSRF token and when it was last used. A server restart ends every session
//! (people sign in again), which keeps sessions out of the database and out of backups.
//!
//! A session ends when it is idle for `[console] idle_minutes` (judged by the server's
//! clock, so tests move a manual clock), at sign-out, and when its account was disabled or
//! reset since (the epoch moved on) — checked against the stored account at every request.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use fieldsync_shared::time::Timestamp;
use sha2::{Digest, Sha256};

/// The session cookie.
pub const SESSION_COOKIE: &str = "fs_session";
/// The sign-in form's CSRF cookie (double submit: there is no session yet).
pub const LOGIN_COOKIE: &str = "fs_login";

/// One signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The account's epoch at sign-in (`accounts::User::epoch`).
    pub epoch: u64,
    /// Every form of this session carries it; every POST is checked against it.
    pub csrf: String,
    pub created: Timestamp,
    pub last_seen: Timestamp,
}

/// Why a cookie did not lead to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie, or one this server does not know (e.g. from before a restart).
    Missing,
    /// Idle too long: ended now.
    Expired,
}

/// The sessions of one server.
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `user`; returns the cookie value.
    pub fn open(&self, user: &str, epoch: u64, now: Timestamp) -> Result<String, getrandom::Error> {
        let token = random_token()?;
        let session = Session {
            user: user.to_owned(),
            epoch,
            csrf: random_token()?,
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        // Sessions idle past any sensible limit are dropped as new ones open, so the map
        // does not grow with people who never sign out.
        map.retain(|_, s| now.as_millis() - s.last_seen.as_millis() < 7 * 86_400_000);
        map.insert(key(&token), session);
        Ok(token)
    }

    /// The session of `token` at `now`, marked as used; one idle for `idle_ms` or more ends.
    pub fn touch(&self, token: &str, now: Timestamp, idle_ms: i64) -> Result<Session, NoSession> {
        let mut map = self.lock();
        let k = key(token);
        let Some(session) = map.get_mut(&k) else {
            return Err(NoSession::Missing);
        };
        if now.as_millis() - session.last_seen.as_millis() >= idle_ms {
            map.remove(&k);
            return Err(NoSession::Expired);
        }
        session.last_seen = now;
        Ok(session.clone())
    }

    /// Ends the session of `token`, if any.
    pub fn close(&self, token: &str) -> Option<Session> {
        self.lock().remove(&key(token))
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure under TLS; `None` clears
/// the cookie.
pub fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle_or_closed() {
        let sessions = Sessions::default();
        let token = sessions.open("li", 0, T0).expect("open");
        let idle = 30 * 60_000;
        let s = sessions
            .touch(&token, T0.plus_millis(idle - 1), idle)
            .expect("alive");
        assert_eq!(s.user, "li");
        // Used a moment ago: the idle time counts from then.
        assert!(
            sessions
                .touch(&token, T0.plus_millis(2 * idle - 2), idle)
                .is_ok()
        );
        assert_eq!(
            sessions.touch(&token, T0.plus_millis(3 * idle), idle),
            Err(NoSession::Expired)
        );
        assert_eq!(sessions.touch(&token, T0, idle), Err(NoSession::Missing));
        let other = sessions.open("li", 0, T0).expect("open");
        assert!(sessions.close(&other).is_some());
        assert_eq!(sessions.touch(&other, T0, idle), Err(NoSession::Missing));
        assert!(sessions.is_empty());
    }

    #[test]
    fn cookies_are_read_and_written() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; fs_session=abc; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
        assert_eq!(
            set_cookie(SESSION_COOKIE, Some("abc"), true),
            "fs_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(set_cookie(SESSION_COOKIE, None, false).contains("Max-Age=0"));
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
