//! The data directory: where the SQLite files and keys of one server live.
//!
//! Only `fieldsync serve` (first start) and `fieldsync keygen` create one ([`DataDir::open`]);
//! every other command opens an existing one ([`DataDir::existing`]), so a command run in the
//! wrong folder says so instead of making a new directory and key. One server process at a
//! time holds a directory ([`DataDir::lock`]).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use fieldsync_shared::ids::BranchId;
use fieldsync_shared::keys::{KeyError, KeyPair};
use fieldsync_storage::{StorageError, Store};

use crate::config::Role;

/// Where the role a data directory serves is recorded (store meta namespace and key).
pub const ROLE_META: (&str, &str) = ("server", "role");
/// `meta` record of the branch an edge's directory serves (recorded at its first `serve`).
pub const BRANCH_META: (&str, &str) = ("server", "branch_id");

/// The branch id recorded at an edge directory's first `serve`; `None` before it, or at
/// head office.
pub fn recorded_branch(store: &Store) -> Result<Option<BranchId>, StorageError> {
    Ok(store
        .meta(BRANCH_META.0, BRANCH_META.1)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|name| BranchId::new(name).ok()))
}

/// The branch a command speaks for: the one the directory recorded, else the config's; an
/// error naming both ways to give one when neither says.
pub fn branch_for(config: &crate::config::Config, store: &Store) -> Result<BranchId, String> {
    if let Some(recorded) = recorded_branch(store).map_err(|e| e.to_string())? {
        return Ok(recorded);
    }
    let Some(id) = &config.branch_id else {
        return Err(
            "this edge has no branch id yet: give one (`--branch-id north-01`, `branch_id` in \
             the config, or FIELDSYNC_BRANCH_ID); its first `serve` records it"
                .to_owned(),
        );
    };
    BranchId::new(id.clone()).map_err(|_| format!("branch_id {id:?} is not a valid id"))
}

/// The role recorded at the directory's first `serve`; `None` before it.
pub fn recorded_role(store: &Store) -> Result<Option<Role>, StorageError> {
    Ok(store
        .meta(ROLE_META.0, ROLE_META.1)?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|name| Role::parse(&name)))
}

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "no data directory at {path}: `fieldsync serve` creates one on first start, \
         `fieldsync keygen --data-dir {path}` creates one with its key (or pass --data-dir)"
    )]
    Missing { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} is not a fieldsync data directory (it holds neither keys/server.key nor \
         fieldsync.sqlite): check --data-dir, or create it with `fieldsync serve` or \
         `fieldsync keygen --data-dir {path}`"
    )]
    NotADataDir { path: PathBuf },
    #[error(
        "data directory {path} is in use by another fieldsync server (pid {holder}); stop \
         it first, or give this one another --data-dir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The exclusive hold of one server process on its data directory: an advisory lock on
/// `fieldsync.lock` (flock on Unix), released when this is dropped or the process dies in any
/// way, SIGKILL included, so a crash leaves no stale lock. The file keeps the holder's pid for
/// the message a second server prints.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// The files of a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens the directory, creating it (mode 0700 on Unix) if it does not exist: for `serve`
    /// and `keygen` only.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// Opens a directory that must exist already: every command but `serve` and `keygen`.
    pub fn existing(root: &Path) -> Result<Self, DataDirError> {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {
                let dir = Self {
                    root: root.to_owned(),
                };
                if dir.server_key_path().exists() || dir.database_path().exists() {
                    Ok(dir)
                } else {
                    Err(DataDirError::NotADataDir {
                        path: root.to_owned(),
                    })
                }
            }
            Ok(_) => Err(DataDirError::NotADirectory {
                path: root.to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataDirError::Missing {
                path: root.to_owned(),
            }),
            Err(source) => Err(DataDirError::Io {
                path: root.to_owned(),
                source,
            }),
        }
    }

    /// Takes the directory for this process, or says which process holds it.
    pub fn lock(&self) -> Result<DirLock, DataDirError> {
        let path = self.root.join("fieldsync.lock");
        let io = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataDirError::Locked {
                    path: self.root.clone(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // A pid left by a crashed holder is simply overwritten.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DirLock { _file: file })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The branch (or head office) signing key.
    pub fn server_key_path(&self) -> PathBuf {
        self.root.join("keys").join("server.key")
    }

    /// The public half of the server key, to hand to head office.
    pub fn server_public_key_path(&self) -> PathBuf {
        self.root.join("keys").join("server.pub")
    }

    pub fn database_path(&self) -> PathBuf {
        self.root.join("fieldsync.sqlite")
    }

    /// Loads the server key, which must exist: commands that sign tokens or export keys never
    /// make a new one (it would not be the key the server uses).
    pub fn server_key(&self) -> Result<KeyPair, KeyError> {
        KeyPair::load(&self.server_key_path())
    }

    /// Loads the server key, creating it (and its `.pub` file) on first run.
    pub fn load_or_create_server_key(&self) -> Result<(KeyPair, bool), KeyError> {
        let (key, created) = KeyPair::load_or_generate(&self.server_key_path())?;
        if created || !self.server_public_key_path().exists() {
            key.public().save(&self.server_public_key_path())?;
        }
        Ok((key, created))
    }
}
