//! The audit log (issue 14): every action through the console that changes something, and
//! every sign-in, sign-out and refused sign-in, with who, when, what, and the ids before and
//! after. Entries are records of kind `audit` in the store's `records` table, append-only
//! (each id is new: the instant, zero-padded so ids sort by time, and random bytes), written
//! before the action's answer is sent. The CLI's account commands write here too (actor
//! `cli`). Managers read it at `/audit` and export it at `/audit.csv`.

use fieldsync_shared::time::Timestamp;
use fieldsync_storage::{Record, RecordFilter, StorageError, Store};
use serde::{Deserialize, Serialize};

/// The record kind of audit entries.
pub const KIND: &str = "audit";

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub at: Timestamp,
    /// The person (user name), `cli`, or `token:<role>` for a desk token without a person.
    pub actor: String,
    /// The actor's role then.
    pub role: String,
    /// A stable code: `login`, `login_refused`, `login_locked`, `logout`, `language_set`,
    /// `user_add`, `user_disable`, `user_enable`, `user_reset`, `job_create`, ...
    pub action: String,
    /// What it was done to, e.g. `user:li` or `job:<id>`.
    pub target: String,
    /// The id of what was there before (a record revision, document heads), if any.
    pub before: Option<String>,
    /// The id of what is there after.
    pub after: Option<String>,
    /// Anything else a reader needs, in plain words.
    pub detail: String,
}

impl Entry {
    /// An entry at `at`; `id` is made from it.
    pub fn new(
        at: Timestamp,
        actor: impl Into<String>,
        role: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        let mut random = [0u8; 6];
        // Without randomness two entries of the same millisecond would collide; the put
        // below then fails loudly rather than overwrite.
        let _ = getrandom::fill(&mut random);
        Self {
            id: format!("{:016}-{}", at.as_millis().max(0), hex::encode(random)),
            at,
            actor: actor.into(),
            role: role.into(),
            action: action.into(),
            target: target.into(),
            before: None,
            after: None,
            detail: String::new(),
        }
    }

    pub fn before(mut self, id: impl Into<String>) -> Self {
        self.before = Some(id.into());
        self
    }

    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// Appends `entry`; durable when it returns.
pub fn append(store: &Store, entry: &Entry) -> Result<(), StorageError> {
    // Plain strings and numbers: serialising cannot fail.
    let body = serde_json::to_vec(entry).unwrap_or_default();
    store
        .put_record(Record {
            kind: KIND.to_owned(),
            id: entry.id.clone(),
            revision: 1,
            lookup: Some(entry.actor.clone()),
            open: false,
            body,
        })
        .wait()
}

/// Every entry, newest first (an unreadable one is skipped and logged).
pub fn list(store: &Store) -> Result<Vec<Entry>, StorageError> {
    let mut entries: Vec<Entry> = store
        .records(KIND, &RecordFilter::default())?
        .into_iter()
        .filter_map(|r| match serde_json::from_slice(&r.body) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::error!(id = %r.id, error = %e, "unreadable audit entry");
                None
            }
        })
        .collect();
    entries.reverse();
    Ok(entries)
}

/// The entries as CSV (RFC 4180, UTF-8 with a byte-order mark so spreadsheets read the
/// Chinese), instants in RFC 3339 UTC. A cell a spreadsheet would take for a formula is
/// prefixed with `'`.
pub fn csv(entries: &[Entry]) -> String {
    let mut out = String::from("\u{feff}at,actor,role,action,target,before,after,detail\r\n");
    for e in entries {
        let at = e.at.to_string();
        let cells = [
            at.as_str(),
            &e.actor,
            &e.role,
            &e.action,
            &e.target,
            e.before.as_deref().unwrap_or(""),
            e.after.as_deref().unwrap_or(""),
            &e.detail,
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_list_newest_first_and_export_as_csv() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("db.sqlite"), Default::default()).expect("open");
        let t0 = Timestamp::from_millis(1_790_000_000_000);
        append(
            &store,
            &Entry::new(t0, "li", "dispatcher", "login", "user:li"),
        )
        .expect("append");
        let second = Entry::new(
            t0.plus_millis(5),
            "wang",
            "manager",
            "user_reset",
            "user:li",
        )
        .before("rev 1")
        .after("rev 2")
        .detail("=cmd, \"quoted\" 李伟");
        append(&store, &second).expect("append");
        let entries = list(&store).expect("list");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], second);
        let text = csv(&entries);
        assert!(text.starts_with("\u{feff}at,actor"), "{text}");
        assert!(
            text.contains(",user_reset,user:li,rev 1,rev 2,\"'=cmd, \"\"quoted\"\" 李伟\"\r\n"),
            "{text}"
        );
    }
}
