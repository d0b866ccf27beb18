//! Desk accounts, one per person (issue 14; used by the web console, `crate::console`, and by
//! `Node::authorize` for desk tokens that name a person): name, role, argon2id password hash, language,
//! the disabled flag and the lock-out counters. Stored as records of kind `user` in the
//! store's `records` table, written by compare-and-set, so the CLI (`fieldsync user add |
//! disable | reset`, a second process beside a running server) and the server never
//! overwrite each other. The server reads the record at every sign-in and every request of a
//! session, so a disabled account or a reset password ends its sessions at their next
//! request without any signal between the processes.
//!
//! Everything here is synchronous (the CLI calls it directly; the server on the blocking
//! pool: hashing takes tens of milliseconds by design).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Record, RecordFilter, StorageError, Store};
use serde::{Deserialize, Serialize};

use crate::auth::DeskRole;
use crate::config::Console as ConsoleConfig;

/// A language a person reads (the console's words are `console::i18n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Chinese, the seed's language: the default.
    #[default]
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The `lang` attribute of a page.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The other language: what a switch offers.
    pub fn other(self) -> Self {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }
}

/// The record kind of desk accounts.
pub const KIND: &str = "user";

/// Passwords shorter than this are refused (NIST SP 800-63B's minimum for chosen ones is 8).
pub const MIN_PASSWORD_CHARS: usize = 10;

/// One person's desk account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The sign-in name: `[a-z0-9._-]`, 1–64 characters.
    pub name: String,
    /// What the console shows (any script, e.g. 李伟).
    pub display_name: String,
    /// dispatcher, manager or analyst (`auth::DeskRole`).
    pub role: String,
    /// argon2id, PHC string format.
    pub password_hash: String,
    pub disabled: bool,
    pub lang: Lang,
    /// Wrong passwords in a row since the last sign-in or lock-out.
    pub failed_logins: u32,
    /// Sign-in is refused until then (too many wrong passwords).
    pub locked_until: Option<Timestamp>,
    /// Bumped by every reset and disable: sessions opened under an older epoch end.
    pub epoch: u64,
    pub created_at: Timestamp,
}

impl User {
    pub fn desk_role(&self) -> Option<DeskRole> {
        DeskRole::parse(&self.role)
    }

    pub fn locked_at(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

/// A user record as read, with the revision a write builds on.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub revision: u64,
    pub user: User,
}

/// Why an account operation failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("user record {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("{0:?} is not a valid user name: use 1–64 of a-z, 0-9, '.', '_' and '-'")]
    BadName(String),
    #[error("the password is too short: at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("there is no user {0:?}")]
    Unknown(String),
    #[error("user {0:?} exists already (`fieldsync user reset` gives a new password)")]
    Exists(String),
    #[error("user {0:?} was changed by someone else meanwhile; run the command again")]
    Conflict(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Checks a sign-in name.
pub fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

/// An argon2id hash (the crate's default parameters: 19 MiB, 2 passes) with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches `hash`; a hash that cannot be read matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The user named `name`, if any.
pub fn load(store: &Store, name: &str) -> Result<Option<StoredUser>, UserError> {
    let Some(record) = store.record(KIND, name)? else {
        return Ok(None);
    };
    decode(record).map(Some)
}

fn decode(record: Record) -> Result<StoredUser, UserError> {
    let user = serde_json::from_slice(&record.body)
        .map_err(|e| UserError::Corrupt(record.id.clone(), e.to_string()))?;
    Ok(StoredUser {
        revision: record.revision,
        user,
    })
}

/// Every account, by name.
pub fn list(store: &Store) -> Result<Vec<StoredUser>, UserError> {
    store
        .records(KIND, &RecordFilter::default())?
        .into_iter()
        .map(decode)
        .collect()
}

/// Stores `user` as the revision after `previous` (0: a new account). Durable when it
/// returns.
pub fn save(store: &Store, previous: u64, user: &User) -> Result<(), UserError> {
    let body = serde_json::to_vec(user)
        .map_err(|e| UserError::Corrupt(user.name.clone(), e.to_string()))?;
    let record = Record {
        kind: KIND.to_owned(),
        id: user.name.clone(),
        revision: previous + 1,
        lookup: None,
        open: !user.disabled,
        body,
    };
    match store.put_record(record).wait() {
        Ok(()) => Ok(()),
        Err(StorageError::RevisionConflict { .. }) if previous == 0 => {
            Err(UserError::Exists(user.name.clone()))
        }
        Err(StorageError::RevisionConflict { .. }) => Err(UserError::Conflict(user.name.clone())),
        Err(e) => Err(e.into()),
    }
}

/// A new account.
pub fn add(
    store: &Store,
    name: &str,
    display_name: &str,
    role: DeskRole,
    lang: Lang,
    password: &str,
    now: Timestamp,
) -> Result<User, UserError> {
    check_name(name)?;
    let user = User {
        name: name.to_owned(),
        display_name: if display_name.trim().is_empty() {
            name.to_owned()
        } else {
            display_name.trim().to_owned()
        },
        role: role.as_str().to_owned(),
        password_hash: hash_password(password)?,
        disabled: false,
        lang,
        failed_logins: 0,
        locked_until: None,
        epoch: 0,
        created_at: now,
    };
    save(store, 0, &user)?;
    Ok(user)
}

/// Changes an account with `change`, ending its sessions (the epoch moves on).
fn change(
    store: &Store,
    name: &str,
    change: impl FnOnce(&mut User) -> Result<(), UserError>,
) -> Result<User, UserError> {
    let stored = load(store, name)?.ok_or_else(|| UserError::Unknown(name.to_owned()))?;
    let mut user = stored.user;
    change(&mut user)?;
    user.epoch += 1;
    save(store, stored.revision, &user)?;
    Ok(user)
}

/// Disables an account (or enables it again): its sessions end, sign-in is refused.
pub fn set_disabled(store: &Store, name: &str, disabled: bool) -> Result<User, UserError> {
    change(store, name, |u| {
        u.disabled = disabled;
        Ok(())
    })
}

/// A new password; unlocks the account and ends its sessions.
pub fn reset(store: &Store, name: &str, password: &str) -> Result<User, UserError> {
    let hash = hash_password(password)?;
    change(store, name, |u| {
        u.password_hash = hash;
        u.failed_logins = 0;
        u.locked_until = None;
        Ok(())
    })
}

/// What a sign-in attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Login {
    Accepted(User),
    /// Unknown name or wrong password: the person is told the same either way.
    Refused,
    /// Too many wrong passwords: refused until then, whatever the password.
    Locked(Timestamp),
    /// The password was right but the account is disabled.
    Disabled,
}

/// A sign-in attempt at `now`: counts wrong passwords and locks the account after
/// `config.max_failed_logins` of them in a row for `config.lockout_minutes`.
pub fn login(
    store: &Store,
    name: &str,
    password: &str,
    now: Timestamp,
    config: &ConsoleConfig,
) -> Result<Login, UserError> {
    let stored = match check_name(name) {
        Ok(()) => load(store, name)?,
        Err(_) => None,
    };
    let Some(StoredUser { revision, mut user }) = stored else {
        // The same work as for a real account, so the answer's timing does not tell which
        // names exist.
        let _ = verify_password(DUMMY_HASH, password);
        return Ok(Login::Refused);
    };
    if let Some(until) = user.locked_until.filter(|until| now < *until) {
        return Ok(Login::Locked(until));
    }
    if !verify_password(&user.password_hash, password) {
        user.failed_logins += 1;
        let locked = user.failed_logins >= config.max_failed_logins;
        if locked {
            user.failed_logins = 0;
            user.locked_until = Some(now.plus_millis(config.lockout_ms()));
        }
        save(store, revision, &user)?;
        return Ok(match user.locked_until {
            Some(until) if locked => Login::Locked(until),
            _ => Login::Refused,
        });
    }
    if user.disabled {
        return Ok(Login::Disabled);
    }
    if user.failed_logins > 0 || user.locked_until.is_some() {
        user.failed_logins = 0;
        user.locked_until = None;
        save(store, revision, &user)?;
    }
    Ok(Login::Accepted(user))
}

/// Sets the language an account reads the console in.
pub fn set_lang(store: &Store, name: &str, lang: Lang) -> Result<User, UserError> {
    let stored = load(store, name)?.ok_or_else(|| UserError::Unknown(name.to_owned()))?;
    let mut user = stored.user;
    user.lang = lang;
    save(store, stored.revision, &user)?;
    Ok(user)
}

/// An argon2id hash of a random password nobody knows, verified against for unknown names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Q4f0zOtg7NWKvrDyNnlnRSBsB4tCCWaXk6JC7JZ4GQ";

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("db.sqlite"), Default::default()).expect("open");
        (dir, store)
    }

    const NOW: Timestamp = Timestamp::from_millis(1_790_000_000_000);

    #[test]
    fn names_are_checked() {
        assert!(check_name("li.wei-2").is_ok());
        for bad in ["", "Li", "li wei", "李伟", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct house"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(matches!(
            hash_password("short"),
            Err(UserError::ShortPassword)
        ));
        // The dummy is a well-formed hash, so an unknown name costs the same work.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn wrong_passwords_lock_the_account_until_the_lockout_ends_or_a_reset() {
        let (_dir, store) = store();
        let config = ConsoleConfig {
            max_failed_logins: 3,
            lockout_minutes: 10,
            ..ConsoleConfig::default()
        };
        add(
            &store,
            "li",
            "李伟",
            DeskRole::Dispatcher,
            Lang::Zh,
            "right password",
            NOW,
        )
        .expect("add");
        for _ in 0..2 {
            assert_eq!(
                login(&store, "li", "wrong password", NOW, &config).expect("login"),
                Login::Refused
            );
        }
        let until = NOW.plus_millis(600_000);
        assert_eq!(
            login(&store, "li", "wrong password", NOW, &config).expect("login"),
            Login::Locked(until)
        );
        // Locked: even the right password is refused, until the lock-out ends.
        assert_eq!(
            login(&store, "li", "right password", NOW, &config).expect("login"),
            Login::Locked(until)
        );
        assert!(matches!(
            login(&store, "li", "right password", until, &config).expect("login"),
            Login::Accepted(_)
        ));
        for _ in 0..3 {
            login(&store, "li", "wrong password", until, &config).expect("login");
        }
        assert!(matches!(
            login(&store, "li", "right password", until, &config).expect("login"),
            Login::Locked(_)
        ));
        let user = reset(&store, "li", "a new password").expect("reset");
        assert_eq!(user.epoch, 1);
        assert!(matches!(
            login(&store, "li", "a new password", until, &config).expect("login"),
            Login::Accepted(_)
        ));
        assert_eq!(
            login(&store, "nobody", "a new password", until, &config).expect("login"),
            Login::Refused
        );
    }

    #[test]
    fn a_disabled_account_is_refused_and_a_second_add_is_refused() {
        let (_dir, store) = store();
        let config = ConsoleConfig::default();
        add(
            &store,
            "wang",
            "",
            DeskRole::Manager,
            Lang::En,
            "right password",
            NOW,
        )
        .expect("add");
        assert!(matches!(
            add(
                &store,
                "wang",
                "",
                DeskRole::Manager,
                Lang::En,
                "right password",
                NOW
            ),
            Err(UserError::Exists(_))
        ));
        set_disabled(&store, "wang", true).expect("disable");
        assert_eq!(
            login(&store, "wang", "right password", NOW, &config).expect("login"),
            Login::Disabled
        );
        assert!(matches!(
            set_disabled(&store, "nobody", true),
            Err(UserError::Unknown(_))
        ));
    }
}
