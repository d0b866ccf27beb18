//! Signed reports and the trust files that verify them: the first byte picks what the rest
//! is.
//!
//! - 0: an exported report, verified (`TrustStore::verify_json`) against the branch and
//!   device keys of the report tests.
//! - 1: a report whose digest, id and branch signature are made right here before it is
//!   verified, so the checks behind the signature (the content read back as a job, the
//!   device's acknowledgement) are reached.
//! - 2: a trust directory's `devices.json` (`trust::parse_devices`), each record added to a
//!   trust store.
//! - 3: a public key file (`PublicKey::parse_file`); 4: a secret key file
//!   (`KeyPair::parse_file`).

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use fieldsync_server::trust::parse_devices;
use fieldsync_shared::canonical::{Digest, to_canonical_bytes};
use fieldsync_shared::ids::{BranchId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::keys::{KeyPair, PublicKey};
use fieldsync_shared::report::{DeviceRecord, TrustStore, report_id};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static BRANCH: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::from_seed(&[1; 32]));

static TRUST: LazyLock<TrustStore> = LazyLock::new(|| {
    let branch_id = BranchId::new("north-01").unwrap_or_else(|e| panic!("{e}"));
    let mut trust = TrustStore::new();
    trust.add_branch_key(branch_id.clone(), BRANCH.public().clone());
    trust
        .add_device(DeviceRecord {
            device_id: DeviceId::new("dev-1").unwrap_or_else(|e| panic!("{e}")),
            branch_id,
            technician: TechnicianId::new("tech-wang").unwrap_or_else(|e| panic!("{e}")),
            public_key: KeyPair::from_seed(&[2; 32]).public().to_hex(),
            revoked_at: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    trust
});

/// Makes the digest, report id and branch signature of a report match its body.
fn resign(value: &mut Value) {
    let Some(body) = value.get_mut("body").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Ok(content)) = body.get("content").map(to_canonical_bytes) {
        let digest = Digest::of(&content).to_hex();
        let job_id = body
            .get("job_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<DocumentId>().ok());
        if let Some(job_id) = job_id {
            body.insert("report_id".into(), report_id(&job_id, &digest).into());
        }
        body.insert("content_digest".into(), digest.into());
    }
    let Ok(bytes) = to_canonical_bytes(&Value::Object(body.clone())) else {
        return;
    };
    let signature = BRANCH.sign(&bytes).to_bytes();
    if let Some(report) = value.as_object_mut() {
        let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
        report.insert("signature".into(), hex.into());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz-input");
    match mode % 5 {
        0 => {
            let _ = TRUST.verify_json(rest);
        }
        1 => {
            let Ok(mut value) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            resign(&mut value);
            let Ok(bytes) = serde_json::to_vec(&value) else {
                return;
            };
            if let Ok(verified) = TRUST.verify_json(&bytes) {
                assert_eq!(verified.job.job_id, verified.report.body.job_id);
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(records) = parse_devices(text, path) {
                let mut trust = TrustStore::new();
                for record in records {
                    let _ = trust.add_device(record);
                }
            }
        }
        3 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = PublicKey::parse_file(text, path);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = KeyPair::parse_file(text, path);
            }
        }
    }
});
