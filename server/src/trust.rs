//! Trust directories: the public keys a verifier needs, as files, so a report can be checked
//! offline (`fieldsync verify REPORT.json --trust DIR`) without trusting anything in between.
//!
//! Layout: `branches/<branch-id>.pub` (a branch's public key file) and `devices.json` (the
//! enrolled device records: id, branch, technician, public key, revocation time).

use std::path::{Path, PathBuf};

use fieldsync_shared::ids::BranchId;
use fieldsync_shared::keys::{KeyError, PublicKey};
use fieldsync_shared::report::{DeviceRecord, TrustStore};

/// Why a trust directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrustDirError {
    #[error("trust directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("trust directory {0} holds no branch key (expected branches/<branch-id>.pub)")]
    Empty(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustDirError + '_ {
    move |source| TrustDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a branch key and device records into `dir`.
pub fn export(
    dir: &Path,
    branch_id: &BranchId,
    key: &PublicKey,
    devices: &[DeviceRecord],
) -> Result<(), TrustDirError> {
    let branches = dir.join("branches");
    std::fs::create_dir_all(&branches).map_err(io(&branches))?;
    key.save(&branches.join(format!("{branch_id}.pub")))?;
    let path = dir.join("devices.json");
    let text = serde_json::to_string_pretty(devices).map_err(|e| TrustDirError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(())
}

/// Reads every branch key and device record in `dir`.
pub fn load(dir: &Path) -> Result<TrustStore, TrustDirError> {
    let mut trust = TrustStore::new();
    let branches = dir.join("branches");
    let mut found = 0;
    for entry in std::fs::read_dir(&branches).map_err(io(&branches))? {
        let path = entry.map_err(io(&branches))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pub") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let branch = BranchId::new(stem).map_err(|e| TrustDirError::Malformed {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        trust.add_branch_key(branch, PublicKey::load(&path)?);
        found += 1;
    }
    if found == 0 {
        return Err(TrustDirError::Empty(dir.to_owned()));
    }
    let devices = dir.join("devices.json");
    if devices.exists() {
        let text = std::fs::read_to_string(&devices).map_err(io(&devices))?;
        let records: Vec<DeviceRecord> =
            serde_json::from_str(&text).map_err(|e| TrustDirError::Malformed {
                path: devices.clone(),
                reason: e.to_string(),
            })?;
        for record in records {
            trust.add_device(record)?;
        }
    }
    Ok(trust)
}
