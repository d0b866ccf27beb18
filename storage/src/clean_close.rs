//! Whether the database needs its integrity check at open (issue 17): a file this program
//! closed cleanly, and that nobody has written since, was checked at an earlier open and
//! changed since only through SQLite's own transactions, so `PRAGMA quick_check` (which
//! reads the whole file: 40–50 ms for a device with 2,000 jobs) is run only when that is not
//! known.
//!
//! After a clean close (every write committed, the write-ahead log checkpointed into the
//! database and emptied, the write connection closed), the store writes a stamp beside the
//! database, `<db>-clean`, naming the file's size, inode and modification and change times.
//! The next open skips the check only when the stamp is there, describes the file exactly as
//! it is now, and the log is empty or absent; it removes the stamp before anything is
//! written. So the check still runs after:
//!
//! - a crash, SIGKILL or power loss while the store was open (no stamp: it was removed at
//!   the open before; or a log still holding commits);
//! - anything else writing the file while it was closed — a damaged copy restored, a tool,
//!   bytes overwritten — since that moves its modification and change times (the change
//!   time cannot be set back by a program) or its size or inode;
//! - an open that was not checked (`StoreConfig::quick_check` off): such a store never
//!   writes a stamp, so a file nobody checked is never taken as sound.
//!
//! Not covered (as before: `quick_check` reads structure, not content): the medium changing
//! bytes under a file whose metadata it leaves alone. `Store::integrity_check` remains for
//! that, out of band. Nor, on kernels whose file times tick coarsely (Linux before its
//! fine-grained change times, 6.13), a write of the same size in the same tick as the close.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The stamp's format name, first on its one line.
const FORMAT: &str = "fieldsync-clean-close/1";

/// The stamp file beside `db`.
pub(crate) fn stamp_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-clean");
    PathBuf::from(name)
}

/// The database file as the stamp describes it; `None` if it cannot be read.
fn describe(db: &Path) -> Option<String> {
    let meta = fs::metadata(db).ok()?;
    Some(describe_meta(&meta))
}

#[cfg(unix)]
fn describe_meta(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{FORMAT} len={} dev={} ino={} mtime={}.{:09} ctime={}.{:09}",
        meta.len(),
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

#[cfg(not(unix))]
fn describe_meta(meta: &fs::Metadata) -> String {
    // Without a change time a program cannot set back, only the size and modification time:
    // still every write through the file system, which is what the stamp is for.
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{FORMAT} len={} mtime={modified}", meta.len())
}

/// Whether the database at `db` was closed cleanly by a store whose open was checked and
/// has not been written since. Removes the stamp either way: it speaks for one close only.
pub(crate) fn take(db: &Path) -> bool {
    let stamp = stamp_path(db);
    let written = match fs::read_to_string(&stamp) {
        Ok(text) => text,
        Err(_) => return false,
    };
    let now = describe(db);
    let log_empty = {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        match fs::metadata(PathBuf::from(wal)) {
            Ok(meta) => meta.len() == 0,
            Err(error) => error.kind() == ErrorKind::NotFound,
        }
    };
    // A stamp that cannot be removed could outlive a crash of this open: then check now.
    let removed = fs::remove_file(&stamp).is_ok();
    removed && log_empty && now.is_some_and(|now| now == written.trim_end())
}

/// Writes the stamp after a clean close. A stamp not written only costs the next open its
/// check.
pub(crate) fn stamp(db: &Path) {
    if let Some(description) = describe(db) {
        let _ = fs::write(stamp_path(db), format!("{description}\n"));
    }
}
