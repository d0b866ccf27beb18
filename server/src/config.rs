//! Server configuration: defaults that run with no config at all, a TOML file, and
//! `FIELDSYNC_*` environment overrides, in that order of precedence (lowest first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fieldsync_shared::zone::Zone;
use serde::Deserialize;

/// Which tier this server plays (DESIGN.md, "Three tiers, one protocol").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A branch edge server: devices sync with it; it signs completed reports.
    Edge,
    /// Head office: branches sync with it; it verifies and archives reports.
    HeadOffice,
}

impl Role {
    /// The name `serve --role` takes, also recorded in the data directory.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::HeadOffice => "head-office",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        [Role::Edge, Role::HeadOffice]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Limits that protect the server from one peer; each has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous WebSocket connections.
    pub max_connections: usize,
    /// Connections the kernel queues before the server accepts them (`listen(2)`'s backlog;
    /// the kernel caps it at `net.core.somaxconn`). A reconnect storm of hundreds of devices
    /// overflowed tokio's default of 128 (issue 17): each overflow costs a device a SYN
    /// retransmit, a second or more.
    pub accept_backlog: u32,
    /// Most documents held in memory at once (each hub shard holds an even share). The
    /// default, 20,000, keeps the documents within 2 GiB at up to ~100 KiB each: (2,048 − ~50 MiB for the process) / 20,000 ≈ 102 KiB.
    /// Measured (issue 17, docs/BENCHMARKS.md "Memory per idle document"): 24.6 KiB of RSS per
    /// job created at the desk, fetched by its device and idle (about 490 MiB at the limit),
    /// 14.2 KiB once dormant (`document_dormant`). A count cannot bound memory alone (a job
    /// of 2,000 changes holds about 1 MiB awake): `max_document_memory_mb` does.
    pub max_loaded_documents: usize,
    /// Most memory the documents held may take, in MiB (each hub shard holds an even share),
    /// estimated from what automerge holds for each awake document and the saved bytes of
    /// each dormant one. Past it idle documents leave memory, oldest first; while documents
    /// in use take it all, loads are refused with `document_memory_full` and the peer is told
    /// to retry. The default, 1,024, keeps the process within 2 GiB in the worst case: the
    /// estimate errs high, the allocator holds up to ~1.35× what is in use, and the rest is
    /// connections (~9 KiB each) and ~50 MiB for the process (docs/BENCHMARKS.md "A byte
    /// budget for documents"). 0: no budget.
    pub max_document_memory_mb: usize,
    /// Threads the sync engine is split across, each owning the documents that hash to it
    /// (issue 17: a reconnect storm uses every core). Unset: one per core, at most
    /// [`MAX_DEFAULT_HUB_SHARDS`]; 1 runs the whole engine on one thread.
    pub hub_shards: Option<usize>,
    /// A document no peer has used for this long is evicted from memory.
    #[serde(with = "secs")]
    pub document_idle: Duration,
    /// A document no peer has used for this long keeps only its saved bytes in memory until
    /// it is used again (issue 17: about 1.3 KB for a job instead of about 18 KB), then is
    /// loaded from them without a read of the store. 0: never. Documents whose saved bytes
    /// exceed 16 KiB stay awake (loading one back would slow a reconnect; see
    /// docs/BENCHMARKS.md "Dormant documents").
    #[serde(with = "secs")]
    pub document_dormant: Duration,
    /// Interval of WebSocket pings; a connection silent for three intervals is closed.
    #[serde(with = "secs")]
    pub ping_interval: Duration,
    /// How long a graceful shutdown waits for connections to drain.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
    /// The most one compressed change (or the deflated columns of one document) in a sync
    /// message may inflate to; unset: twice `max_frame_bytes`.
    pub max_inflated_chunk_bytes: Option<usize>,
    /// The most all the changes of one sync message may inflate to; unset: four times
    /// `max_frame_bytes`.
    pub max_inflated_message_bytes: Option<usize>,
    /// The most operations the changes of one sync message may hold (run-length encoding
    /// lets a tiny change claim millions).
    pub max_ops_per_message: usize,
    /// The largest attachment (photo, receipt, signature image) the edge takes, in bytes
    /// (issue 15); a larger upload is refused with 413 `attachment_too_large`.
    pub max_attachment_bytes: u64,
}

/// The most hub shards the default takes, however many cores the machine has: past a few, the
/// storm is bound by the sockets and storage threads, not the engine (docs/BENCHMARKS.md "Hub
/// shards"), and every shard costs a thread and an even share of the loaded documents.
pub const MAX_DEFAULT_HUB_SHARDS: usize = 4;

impl Limits {
    /// How many shards the hub runs: `hub_shards`, else one per core (at most
    /// [`MAX_DEFAULT_HUB_SHARDS`]).
    pub fn hub_shards(&self) -> usize {
        self.hub_shards
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .min(MAX_DEFAULT_HUB_SHARDS)
            })
            .max(1)
    }

    /// `max_document_memory_mb` in bytes, `None` for no budget.
    pub fn max_document_memory(&self) -> Option<usize> {
        (self.max_document_memory_mb > 0)
            .then(|| self.max_document_memory_mb.saturating_mul(1024 * 1024))
    }

    /// The bounds the engine puts on a peer's sync messages.
    pub fn sync_limits(&self) -> fieldsync_shared::protocol::SyncLimits {
        let mut limits =
            fieldsync_shared::protocol::SyncLimits::for_message_bytes(self.max_frame_bytes);
        if let Some(chunk) = self.max_inflated_chunk_bytes {
            limits.max_inflated_chunk_bytes = chunk;
        }
        if let Some(message) = self.max_inflated_message_bytes {
            limits.max_inflated_message_bytes = message;
        }
        limits.max_ops = self.max_ops_per_message;
        limits
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024 * 1024,
            max_connections: 20_000,
            accept_backlog: 1024,
            max_loaded_documents: 20_000,
            max_document_memory_mb: 1024,
            hub_shards: None,
            document_idle: Duration::from_secs(300),
            document_dormant: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_inflated_chunk_bytes: None,
            max_inflated_message_bytes: None,
            max_ops_per_message: 200_000,
            max_attachment_bytes: 25 * 1024 * 1024,
        }
    }
}

/// The service desk's settings (issue #6); each has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Desk {
    /// R2: a clock due within this many hours is listed as due soon.
    pub due_soon_hours: u32,
    /// R18: a warranty-claim part above this amount (minor units) is flagged as a large
    /// amount, the after-sales director's to approve.
    pub director_approval_above: i64,
}

impl Default for Desk {
    fn default() -> Self {
        Self {
            due_soon_hours: 4,
            director_approval_above: 100_000,
        }
    }
}

impl Desk {
    pub fn due_soon_ms(&self) -> i64 {
        i64::from(self.due_soon_hours) * 60 * 60 * 1000
    }
}

/// Enrollment over the network (issue 15): how long a one-time code and a device token live.
/// Durations in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Enrollment {
    /// An enrollment code the desk issues is refused after this long (default a day).
    #[serde(with = "secs")]
    pub code_ttl: Duration,
    /// The lifetime of the tokens issued at enrollment and renewal (default 12 h); the device
    /// renews before it ends by signing a challenge with its key.
    #[serde(with = "secs")]
    pub device_token_ttl: Duration,
    /// How long a renewal challenge may be answered (default 2 min).
    #[serde(with = "secs")]
    pub challenge_ttl: Duration,
}

impl Default for Enrollment {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(24 * 3600),
            device_token_ttl: Duration::from_secs(12 * 3600),
            challenge_ttl: Duration::from_secs(120),
        }
    }
}

/// The web console's sessions and sign-in (issue 14); each has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// A session nobody used for this many minutes ends (the person signs in again).
    pub idle_minutes: u32,
    /// This many wrong passwords in a row lock the account ...
    pub max_failed_logins: u32,
    /// ... for this many minutes (`fieldsync user reset` unlocks at once).
    pub lockout_minutes: u32,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            idle_minutes: 30,
            max_failed_logins: 5,
            lockout_minutes: 15,
        }
    }
}

impl Console {
    pub fn idle_ms(&self) -> i64 {
        i64::from(self.idle_minutes) * 60_000
    }

    pub fn lockout_ms(&self) -> i64 {
        i64::from(self.lockout_minutes) * 60_000
    }
}

/// A branch's link to head office (DESIGN.md: the branch dials out, head office never dials
/// in). Without it the branch keeps its reports to itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Head office's sync endpoint, e.g. `wss://head-office.example:3040/sync`.
    pub url: String,
    /// A file holding the branch token from `fieldsync branch token` (read at every dial, so
    /// a renewed token is picked up without a restart).
    pub token_file: PathBuf,
    /// Longest wait between two dial attempts; waits double from one second up to this.
    #[serde(default = "default_retry_max", with = "secs")]
    pub retry_max: Duration,
    /// For a `wss://` URL: trust only the CA certificate(s) in this PEM file (head office's
    /// own CA) instead of the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How often the branch asks head office for its verdict on the reports it delivered and
    /// that are not verified yet (`edge::verdicts`).
    #[serde(default = "default_verdict_poll", with = "secs")]
    pub verdict_poll: Duration,
}

fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}

fn default_verdict_poll() -> Duration {
    Duration::from_secs(10)
}

/// `[storage]` in head office's config: where its archive lives (issue 16). No `url`: the
/// data directory's own SQLite database. `postgres://user@host:port/database`: a PostgreSQL
/// database that several head-office processes share. `sqlite:/path/file.db`: a SQLite file
/// that several processes on one machine share. (`FIELDSYNC_STORAGE_URL`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    pub url: Option<String>,
}

/// `[tls]` in the server's config: the certificate chain and its private key, PEM files
/// (`FIELDSYNC_TLS_CERT`, `FIELDSYNC_TLS_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate, followed by any intermediate CA certificates.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The whole configuration of `fieldsync serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub role: Role,
    /// The branch this edge server serves (ignored at head office). An edge needs one at its
    /// first start (`--branch-id`, `branch_id`, `FIELDSYNC_BRANCH_ID`); it is recorded in the
    /// data directory then, and later starts use the recorded one (`fieldsync branch rename`
    /// changes it).
    pub branch_id: Option<String>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// Edge only: where to deliver signed reports.
    pub upstream: Option<Upstream>,
    /// R4: a repeat repair is the same product and fault within this many days (head
    /// office's statistics, and the edge desk's flags at job creation and signing).
    pub repeat_window_days: i64,
    pub desk: Desk,
    /// Enrollment over the network: codes and device tokens (issue 15).
    pub enrollment: Enrollment,
    /// Serve HTTPS and `wss://` with this certificate and key (`crate::tls`).
    pub tls: Option<TlsFiles>,
    /// The zone this server reads its calendar in (IANA name, `FIELDSYNC_TIMEZONE`; UTC by
    /// default): the month a report or complaint counts in (R22, R24, R25) and the day of a
    /// follow-up call (R14). Stored and signed instants stay UTC.
    pub timezone: Zone,
    pub console: Console,
    /// Head office only: where the archive lives.
    pub storage: Storage,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            role: Role::Edge,
            branch_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 3030)),
            data_dir: PathBuf::from("fieldsync-data"),
            limits: Limits::default(),
            upstream: None,
            repeat_window_days: 90,
            desk: Desk::default(),
            enrollment: Enrollment::default(),
            tls: None,
            timezone: Zone::utc(),
            console: Console::default(),
            storage: Storage::default(),
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
}

impl Config {
    /// R4's window in milliseconds.
    pub fn repeat_window_ms(&self) -> i64 {
        self.repeat_window_days.saturating_mul(24 * 60 * 60 * 1000)
    }

    /// Defaults, then the file (if any), then `FIELDSYNC_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
        };
        for (name, value) in env {
            config.apply_env(&name, &value)?;
        }
        config.check()?;
        Ok(config)
    }

    /// What no server could run with, said before it starts rather than at every dial.
    fn check(&self) -> Result<(), ConfigError> {
        if self.limits.hub_shards == Some(0) {
            return Err(ConfigError::Invalid(
                "limits.hub_shards must be at least 1 (unset: one per core, at most 4)".into(),
            ));
        }
        if self.limits.accept_backlog == 0 {
            return Err(ConfigError::Invalid(
                "limits.accept_backlog must be at least 1 (default 1024)".into(),
            ));
        }
        if self.console.idle_minutes == 0 || self.console.max_failed_logins == 0 {
            return Err(ConfigError::Invalid(
                "console: idle_minutes and max_failed_logins must be at least 1".into(),
            ));
        }
        if let Some(upstream) = &self.upstream {
            let url = upstream.url.to_ascii_lowercase();
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(ConfigError::Invalid(format!(
                    "upstream url {:?} must start with ws:// or wss:// (head office's sync \
                     endpoint, e.g. wss://head-office.example:3040/sync)",
                    upstream.url
                )));
            }
            if upstream.token_file.as_os_str().is_empty() {
                return Err(ConfigError::Invalid(
                    "upstream needs token_file (FIELDSYNC_UPSTREAM_TOKEN_FILE): the file \
                     holding the token from `fieldsync branch token`"
                        .into(),
                ));
            }
            if self.role == Role::HeadOffice {
                return Err(ConfigError::Invalid(
                    "upstream is for a branch edge server; head office has none".into(),
                ));
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Env {
            name: name.to_owned(),
            value: value.to_owned(),
            message,
        };
        let secs = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|e| bad(format!("expected whole seconds: {e}")))
        };
        let count = |v: &str| {
            v.parse::<usize>()
                .map_err(|e| bad(format!("expected a count: {e}")))
        };
        match name {
            "FIELDSYNC_ROLE" => {
                self.role = match value {
                    "edge" => Role::Edge,
                    "head-office" => Role::HeadOffice,
                    _ => return Err(bad("expected edge or head-office".into())),
                }
            }
            "FIELDSYNC_BRANCH_ID" => self.branch_id = Some(value.to_owned()),
            "FIELDSYNC_TIMEZONE" => {
                self.timezone = value.parse().map_err(|e| bad(format!("{e}")))?
            }
            "FIELDSYNC_LISTEN" => {
                self.listen = value
                    .parse()
                    .map_err(|e| bad(format!("expected host:port: {e}")))?
            }
            "FIELDSYNC_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "FIELDSYNC_MAX_FRAME_BYTES" => self.limits.max_frame_bytes = count(value)?,
            "FIELDSYNC_MAX_CONNECTIONS" => self.limits.max_connections = count(value)?,
            "FIELDSYNC_ACCEPT_BACKLOG" => {
                self.limits.accept_backlog = value
                    .parse()
                    .map_err(|e| bad(format!("expected a count: {e}")))?
            }
            "FIELDSYNC_MAX_LOADED_DOCUMENTS" => self.limits.max_loaded_documents = count(value)?,
            "FIELDSYNC_MAX_DOCUMENT_MEMORY_MB" => {
                self.limits.max_document_memory_mb = count(value)?
            }
            "FIELDSYNC_HUB_SHARDS" => self.limits.hub_shards = Some(count(value)?),
            "FIELDSYNC_DOCUMENT_IDLE_SECS" => self.limits.document_idle = secs(value)?,
            "FIELDSYNC_DOCUMENT_DORMANT_SECS" => self.limits.document_dormant = secs(value)?,
            "FIELDSYNC_PING_INTERVAL_SECS" => self.limits.ping_interval = secs(value)?,
            "FIELDSYNC_SHUTDOWN_GRACE_SECS" => self.limits.shutdown_grace = secs(value)?,
            "FIELDSYNC_MAX_INFLATED_CHUNK_BYTES" => {
                self.limits.max_inflated_chunk_bytes = Some(count(value)?)
            }
            "FIELDSYNC_MAX_INFLATED_MESSAGE_BYTES" => {
                self.limits.max_inflated_message_bytes = Some(count(value)?)
            }
            "FIELDSYNC_MAX_OPS_PER_MESSAGE" => self.limits.max_ops_per_message = count(value)?,
            "FIELDSYNC_MAX_ATTACHMENT_BYTES" => {
                self.limits.max_attachment_bytes = count(value)? as u64
            }
            "FIELDSYNC_STORAGE_URL" => self.storage.url = Some(value.to_owned()),
            "FIELDSYNC_UPSTREAM_URL"
            | "FIELDSYNC_UPSTREAM_TOKEN_FILE"
            | "FIELDSYNC_UPSTREAM_CA_FILE" => {
                let upstream = self.upstream.get_or_insert_with(|| Upstream {
                    url: String::new(),
                    token_file: PathBuf::new(),
                    retry_max: default_retry_max(),
                    verdict_poll: default_verdict_poll(),
                    ca_file: None,
                });
                match name {
                    "FIELDSYNC_UPSTREAM_URL" => upstream.url = value.to_owned(),
                    "FIELDSYNC_UPSTREAM_TOKEN_FILE" => upstream.token_file = PathBuf::from(value),
                    _ => upstream.ca_file = Some(PathBuf::from(value)),
                }
            }
            "FIELDSYNC_TLS_CERT" | "FIELDSYNC_TLS_KEY" => {
                // The other file may come from the config file or the other variable;
                // `tls::server_config` refuses a pair with one missing.
                let tls = self.tls.get_or_insert_with(|| TlsFiles {
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                });
                if name == "FIELDSYNC_TLS_CERT" {
                    tls.cert = PathBuf::from(value);
                } else {
                    tls.key = PathBuf::from(value);
                }
            }
            // Other FIELDSYNC_* variables (e.g. FIELDSYNC_CONFIG, FIELDSYNC_LOG) are read
            // elsewhere; unrelated variables are none of our business.
            _ => {}
        }
        Ok(())
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_config_at_all_gives_the_documented_defaults() {
        let c = Config::load(None, []).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:3030");
        assert_eq!(c.data_dir, PathBuf::from("fieldsync-data"));
        assert_eq!(c.role, Role::Edge);
        // The inflation caps follow the frame limit unless set.
        let limits = c.limits.sync_limits();
        assert_eq!(
            limits.max_inflated_chunk_bytes,
            2 * c.limits.max_frame_bytes
        );
        assert_eq!(
            limits.max_inflated_message_bytes,
            4 * c.limits.max_frame_bytes
        );
        let set = Config::load(
            None,
            [("FIELDSYNC_MAX_INFLATED_CHUNK_BYTES".into(), "1000".into())],
        )
        .expect("valid");
        assert_eq!(set.limits.sync_limits().max_inflated_chunk_bytes, 1000);
    }

    #[test]
    fn file_then_environment_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\nbranch_id = \"north-01\"\n[limits]\nmax_connections = 5\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&path),
            [("FIELDSYNC_LISTEN".to_owned(), "127.0.0.1:5000".to_owned())],
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 5000);
        assert_eq!(c.branch_id.as_deref(), Some("north-01"));
        assert_eq!(c.limits.max_connections, 5);
    }

    #[test]
    fn tls_files_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(
            &path,
            "[tls]\ncert = \"/etc/fieldsync/cert.pem\"\nkey = \"/etc/fieldsync/key.pem\"\n\
             [upstream]\nurl = \"wss://ho.example:3040/sync\"\ntoken_file = \"t\"\n\
             ca_file = \"/etc/fieldsync/ho-ca.pem\"\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&path),
            [("FIELDSYNC_TLS_KEY".to_owned(), "/run/key.pem".to_owned())],
        )
        .expect("valid");
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/fieldsync/cert.pem"));
        assert_eq!(tls.key, PathBuf::from("/run/key.pem"));
        assert_eq!(
            c.upstream.and_then(|u| u.ca_file),
            Some(PathBuf::from("/etc/fieldsync/ho-ca.pem"))
        );
        let c = Config::load(
            None,
            [
                ("FIELDSYNC_TLS_CERT".to_owned(), "c.pem".to_owned()),
                ("FIELDSYNC_TLS_KEY".to_owned(), "k.pem".to_owned()),
                (
                    "FIELDSYNC_UPSTREAM_URL".to_owned(),
                    "wss://ho:3040/sync".to_owned(),
                ),
                (
                    "FIELDSYNC_UPSTREAM_TOKEN_FILE".to_owned(),
                    "up.token".to_owned(),
                ),
                ("FIELDSYNC_UPSTREAM_CA_FILE".to_owned(), "ca.pem".to_owned()),
            ],
        )
        .expect("valid");
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(c.upstream.and_then(|u| u.ca_file), Some("ca.pem".into()));
    }

    #[test]
    fn errors_name_the_file_or_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = 3\nunknown_key = 1\n").expect("write");
        let e = Config::load(Some(&path), []).expect_err("invalid");
        assert!(e.to_string().contains("bad.toml"), "{e}");
        let e = Config::load(None, [("FIELDSYNC_LISTEN".into(), "nowhere".into())])
            .expect_err("invalid");
        assert!(e.to_string().contains("FIELDSYNC_LISTEN"), "{e}");
    }

    #[test]
    fn an_upstream_that_cannot_work_is_refused_before_the_server_starts() {
        let env = |url: &str, token: &str| {
            [
                ("FIELDSYNC_UPSTREAM_URL".to_owned(), url.to_owned()),
                ("FIELDSYNC_UPSTREAM_TOKEN_FILE".to_owned(), token.to_owned()),
            ]
        };
        let e = Config::load(None, env("http://ho:3040/sync", "t")).expect_err("http");
        assert!(e.to_string().contains("ws:// or wss://"), "{e}");
        let e = Config::load(None, env("wss://ho:3040/sync", "")).expect_err("no token");
        assert!(e.to_string().contains("token_file"), "{e}");
        let c = Config::load(None, env("wss://ho:3040/sync", "up.token")).expect("valid");
        assert!(c.upstream.is_some());
    }

    #[test]
    fn the_time_zone_and_the_accept_backlog_come_from_the_file_or_the_environment() {
        assert_eq!(
            Config::load(None, []).expect("defaults").timezone.name(),
            "UTC"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(&path, "timezone = \"Asia/Shanghai\"\n").expect("write");
        let c = Config::load(Some(&path), []).expect("valid");
        assert_eq!(c.timezone.name(), "Asia/Shanghai");
        let env = [("FIELDSYNC_TIMEZONE".to_owned(), "Asia/Hong_Kong".to_owned())];
        let c = Config::load(Some(&path), env).expect("valid");
        assert_eq!(c.timezone.name(), "Asia/Hong_Kong");
        std::fs::write(&path, "timezone = \"Asia/Shangai\"\n").expect("write");
        let e = Config::load(Some(&path), []).expect_err("a typo");
        assert!(e.to_string().contains("Asia/Shangai"), "{e}");
        let env = [("FIELDSYNC_TIMEZONE".to_owned(), "CST".to_owned())];
        let e = Config::load(None, env).expect_err("not an IANA name");
        assert!(e.to_string().contains("FIELDSYNC_TIMEZONE"), "{e}");
    }

    #[test]
    fn the_hub_shards_default_to_one_per_core_and_come_from_the_file_or_the_environment() {
        let c = Config::load(None, []).expect("defaults");
        assert_eq!(c.limits.hub_shards, None);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(
            c.limits.hub_shards(),
            cores.clamp(1, MAX_DEFAULT_HUB_SHARDS)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(&path, "[limits]\nhub_shards = 3\n").expect("write");
        let c = Config::load(Some(&path), []).expect("valid");
        assert_eq!(c.limits.hub_shards(), 3);
        let env = [("FIELDSYNC_HUB_SHARDS".to_owned(), "1".to_owned())];
        let c = Config::load(Some(&path), env).expect("valid");
        assert_eq!(c.limits.hub_shards(), 1);
        let env = [("FIELDSYNC_HUB_SHARDS".to_owned(), "0".to_owned())];
        let e = Config::load(None, env).expect_err("no shard at all");
        assert!(e.to_string().contains("hub_shards"), "{e}");
    }

    /// Issue 17: the byte budget for documents is 1,024 MiB unless the file or the
    /// environment says otherwise; 0 turns it off; a value that is no count is refused,
    /// naming the variable.
    #[test]
    fn the_document_memory_budget_comes_from_the_file_or_the_environment() {
        let c = Config::load(None, []).expect("defaults");
        assert_eq!(c.limits.max_document_memory(), Some(1024 * 1024 * 1024));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fieldsync.toml");
        std::fs::write(&path, "[limits]\nmax_document_memory_mb = 64\n").expect("write");
        let c = Config::load(Some(&path), []).expect("valid");
        assert_eq!(c.limits.max_document_memory(), Some(64 * 1024 * 1024));
        let env = [(
            "FIELDSYNC_MAX_DOCUMENT_MEMORY_MB".to_owned(),
            "0".to_owned(),
        )];
        let c = Config::load(Some(&path), env).expect("valid");
        assert_eq!(c.limits.max_document_memory(), None);
        let env = [(
            "FIELDSYNC_MAX_DOCUMENT_MEMORY_MB".to_owned(),
            "1G".to_owned(),
        )];
        let e = Config::load(None, env).expect_err("not a count");
        assert!(
            e.to_string().contains("FIELDSYNC_MAX_DOCUMENT_MEMORY_MB"),
            "{e}"
        );
    }
}
