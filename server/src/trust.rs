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
        for record in parse_devices(&text, &devices)? {
            trust.add_device(record)?;
        }
    }
    Ok(trust)
}

/// Parses the text of a `devices.json`; `path` only names it in errors. The records' keys
/// are checked as they are added to a [`TrustStore`].
pub fn parse_devices(text: &str, path: &Path) -> Result<Vec<DeviceRecord>, TrustDirError> {
    serde_json::from_str(text).map_err(|e| TrustDirError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use fieldsync_shared::keys::KeyPair;

    use super::*;

    #[test]
    fn devices_json_parses_from_its_text_as_load_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = DeviceRecord {
            device_id: "dev-1".parse().expect("id"),
            branch_id: "north-01".parse().expect("id"),
            technician: "tech-1".parse().expect("id"),
            public_key: KeyPair::from_seed(&[6; 32]).public().to_hex(),
            revoked_at: None,
        };
        let branch = BranchId::new("north-01").expect("id");
        export(
            dir.path(),
            &branch,
            KeyPair::from_seed(&[7; 32]).public(),
            std::slice::from_ref(&record),
        )
        .expect("export");
        let path = dir.path().join("devices.json");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(parse_devices(&text, &path).expect("parse"), vec![record]);
        let trust = load(dir.path()).expect("load");
        assert!(trust.device(&"dev-1".parse().expect("id")).is_some());
        let e = parse_devices("[{}]", Path::new("d.json")).expect_err("no fields");
        assert!(matches!(e, TrustDirError::Malformed { .. }), "{e}");
        assert!(e.to_string().starts_with("d.json: "), "{e}");
    }
}
