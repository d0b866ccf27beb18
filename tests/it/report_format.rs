//! The published report format (`docs/REPORT-FORMAT.md`, issue 16 point 5).
//!
//! 1. The test vectors under `docs/report-vectors/` are exactly what the code produces: they
//!    are regenerated here from fixed seeds and inputs and compared byte for byte
//!    (`FIELDSYNC_WRITE_VECTORS=1` rewrites them deliberately). Each signed statement is
//!    rebuilt here as the document describes it, and the code's signature over it is checked
//!    to be the signature the code made (ed25519 is deterministic), so the document and the
//!    code cannot drift apart silently.
//! 2. The independent verifier (`tools/verify-report`, Python with `cryptography` and
//!    `rfc8785`, installed by `tools/verify-report/install`) agrees with the Rust verifier on
//!    the vectors, genuine and tampered, and on reports signed by a real edge server and
//!    exported by it and by head office: genuine ones pass, tampered ones fail, naming the
//!    same failure code as `fieldsync verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::canonical::{self, Digest};
use fieldsync_shared::complaint_doc::{COMPLAINT_FORMAT, ComplaintDoc, complaint_doc_id};
use fieldsync_shared::ids::{BranchId, CustomerId, DeviceId, DocumentId, TechnicianId};
use fieldsync_shared::job::approvals::ApprovedExpense;
use fieldsync_shared::job::attachments::{AttachmentKind, AttachmentRef, blob_digest};
use fieldsync_shared::job::{
    Acknowledgement, Billing, BillingMode, Channel, CheckOut, Completion, Customer, Diagnosis,
    JOB_SCHEMA_VERSION, Job, JobKind, Labour, PartLineId, PartUsed, Product, SafetyBriefing,
    ServiceRequest, SignatureMark, Survey, TimelineEvent, Training, Travel, Visit,
};
use fieldsync_shared::keys::{KeyPair, PublicKey, signature_from_hex};
use fieldsync_shared::report::{
    ACK_FORMAT, AckDraft, DeviceRecord, SignedReport, acknowledged_content, acknowledged_digest,
    report_content, report_id, sign_acknowledgement,
};
use fieldsync_shared::report_doc::{ATTESTATION_FORMAT, DeviceAttestation, report_doc_id};
use fieldsync_shared::time::{CalendarDate, Money, Timestamp};
use fieldsync_tests::temp_dir;
use serde_json::{Value, json};

use crate::head_office::Chain;
use crate::reports::T0;

/// Set to `1` to rewrite `docs/report-vectors/` from the code (after a deliberate change of
/// the format; the diff is then the format change, to be reviewed like code).
const WRITE_VECTORS: &str = "FIELDSYNC_WRITE_VECTORS";

/// The seeds of the vector keys. Test keys only: published, so never to be enrolled.
const BRANCH_SEED: [u8; 32] = [0x11; 32];
const DEVICE_SEED: [u8; 32] = [0x22; 32];
const STRANGER_SEED: [u8; 32] = [0x33; 32];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vectors_dir() -> PathBuf {
    repo().join("docs/report-vectors")
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid id")
}

fn branch_id() -> BranchId {
    id("north-01")
}

fn device_id() -> DeviceId {
    id("dev-a1")
}

/// The job of the vectors: an installation with every record filled, Chinese text (UTF-8 in
/// the signed bytes), characters JCS escapes (a tab, quotes), two part lines and a training.
pub(crate) fn vector_job() -> Job {
    let tech: TechnicianId = id("tech-wang");
    Job {
        schema_version: JOB_SCHEMA_VERSION,
        job_id: DocumentId::from_bytes(*b"fieldsync-vector"),
        branch_id: branch_id(),
        kind: JobKind::Installation,
        request: ServiceRequest {
            channel: Channel::Phone,
            received_at: at(1_793_000_000_000),
            fault_description: "新冷水機安裝調試 (install and commission the new chiller)".into(),
            requested_arrival: Some(at(1_793_080_000_000)),
        },
        customer: Customer {
            id: id::<CustomerId>("c-1001"),
            name: "港灣冷庫有限公司".into(),
            contact: "林女士, 555-0101".into(),
            site_address: "碼頭路12號".into(),
        },
        product: Product {
            model: "CX-400".into(),
            serial: "SN-991".into(),
            product_type: "chiller".into(),
            purchase_date: Some(CalendarDate::from_ymd(2026, 10, 20).expect("a date")),
            warranty_end: Some(CalendarDate::from_ymd(2028, 10, 19).expect("a date")),
        },
        technicians: vec![tech.clone()],
        visit: Visit {
            appointment: Some(at(1_793_070_000_000)),
            arrival: Some(at(1_793_079_000_000)),
            safety_briefing: Some(SafetyBriefing {
                at: at(1_793_079_100_000),
                by: tech.clone(),
                notes: "安全帽區域 (hard hat zone)".into(),
            }),
            check_out: Some(CheckOut {
                at: at(1_793_095_000_000),
                by: tech.clone(),
                note: "reported to the desk".into(),
            }),
            training: Some(Training {
                at: at(1_793_090_000_000),
                by: tech.clone(),
                trainees: vec!["陳女士 (shift lead)".into(), "cold-room operators".into()],
                topics: "Start-up, alarm reset, weekly filter cleaning".into(),
            }),
        },
        diagnosis: Diagnosis {
            fault_cause: Some("New installation".into()),
            fault_category: Some("installation".into()),
            solution: Some("Installed, commissioned, tested 30 min at full load".into()),
        },
        parts: vec![
            PartUsed {
                id: PartLineId("6f1c2a9e0b7d4e3f8a5b1c2d3e4f5a6b".into()),
                part_number: "CAP-45".into(),
                name: "啟動電容 (start capacitor)".into(),
                specification: "45 µF".into(),
                quantity: 1,
                unit_price: Money(1250),
                warranty: false,
            },
            PartUsed {
                id: PartLineId("0a9b8c7d6e5f40312233445566778899".into()),
                part_number: "FLT-2".into(),
                name: "Filter".into(),
                specification: "G4, 595×595".into(),
                quantity: 2,
                unit_price: Money(4800),
                warranty: true,
            },
        ],
        labour: Labour {
            minutes: 150,
            rate_per_hour: Money(12000),
        },
        travel: Travel {
            distance_m: 18_400,
            cost: Money(3000),
        },
        billing: Billing {
            mode: BillingMode::Billable,
            currency: "CNY".into(),
            invoice_number: Some("INV-2026-0042".into()),
        },
        handover: None,
        customer_opinion: Some("師傅很專業, \"quick\" and tidy".into()),
        acknowledgement: None,
        completion: Some(Completion {
            at: at(1_793_095_000_001),
            by: tech.clone(),
        }),
        report: None,
        timeline: vec![TimelineEvent {
            at: at(1_793_079_000_000),
            actor: "tech-wang".into(),
            kind: "arrived".into(),
            text: "on site".into(),
        }],
        notes: "left a card\tat reception".into(),
        // A photo the customer acknowledges and a receipt (R28) they do not.
        attachments: sorted(vec![
            AttachmentRef {
                digest: blob_digest(b"photo of the cleaned condenser"),
                kind: AttachmentKind::After,
                media_type: "image/jpeg".into(),
                size: 30,
                name: "冷凝器-after.jpg".into(),
                at: at(1_793_085_000_000),
                by: tech.clone(),
            },
            AttachmentRef {
                digest: blob_digest(b"taxi receipt"),
                kind: AttachmentKind::Receipt,
                media_type: "image/png".into(),
                size: 12,
                name: "taxi.png".into(),
                at: at(1_793_096_000_000),
                by: tech.clone(),
            },
        ]),
        // R28: the taxi claim the desk approved, with that receipt (the customer does not
        // acknowledge it either).
        expenses: vec![ApprovedExpense {
            id: "exp-1".into(),
            date: "2026-10-27".parse().expect("a date"),
            from: "浦东分公司".into(),
            to: "华东机械厂".into(),
            category: "taxi".into(),
            amount: Money(8600),
            reason: "no bus to the site".into(),
            receipt: Some(blob_digest(b"taxi receipt")),
            by: "tech-wang".into(),
            claimed_at: at(1_793_096_000_000),
            approved_by: "desk:manager".into(),
            approved_at: at(1_793_097_000_000),
        }],
    }
}

/// Attachments as a job holds them: by digest.
fn sorted(mut attachments: Vec<AttachmentRef>) -> Vec<AttachmentRef> {
    attachments.sort_by(|a, b| a.digest.cmp(&b.digest));
    attachments
}

/// The heads the customer signed at, as a device might list them: unsorted, one in capitals,
/// one twice (the signed statement has them normalised).
fn ack_heads_input() -> Vec<String> {
    vec![
        "B2".repeat(32),
        "a1".repeat(32),
        "a1".repeat(32).to_uppercase(),
    ]
}

/// The heads the branch read the job at when it signed (later than the acknowledgement).
fn report_heads_input() -> Vec<String> {
    vec!["d4".repeat(32), "c3".repeat(32)]
}

const ACK_SIGNED_AT: i64 = 1_793_094_000_000;
const REPORT_SIGNED_AT: i64 = 1_793_095_060_000;

fn ack_draft() -> AckDraft {
    AckDraft {
        signer_name: "陳力".into(),
        signature: SignatureMark::Strokes {
            strokes: vec![vec![[0, 0], [12, 9], [30, 4]], vec![[40, -2], [41, 7]]],
        },
        signed_at: at(ACK_SIGNED_AT),
        survey: Survey {
            attitude: Some(5),
            skill: Some(5),
            punctuality: Some(4),
            service_items: Some(5),
            suggestions: "下次請提前電話 (call ahead next time)".into(),
        },
    }
}

fn device_record(key: &KeyPair) -> DeviceRecord {
    DeviceRecord {
        device_id: device_id(),
        branch_id: branch_id(),
        technician: id("tech-wang"),
        public_key: key.public().to_hex(),
        revoked_at: None,
    }
}

/// JCS text of `value`.
fn jcs(value: &Value) -> anyhow::Result<String> {
    Ok(canonical::to_canonical_string(value)?)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Digest::of(bytes).to_hex()
}

/// The device acknowledgement statement as `docs/REPORT-FORMAT.md` describes it.
fn ack_statement(job_id: &DocumentId, branch: &BranchId, ack: &Acknowledgement) -> Value {
    json!({
        "format": ACK_FORMAT,
        "job_id": job_id,
        "branch_id": branch,
        "device_id": ack.device_id,
        "job_digest": ack.job_digest,
        "heads": ack.heads,
        "signer_name": ack.signer_name,
        "signed_at": ack.signed_at,
        "survey": ack.survey,
        "signature_mark_digest": canonical::digest_of(&ack.signature).expect("canonical").to_hex(),
    })
}

/// Checks that `signature` (hex) is what `key` makes over `message`: the code signed exactly
/// these bytes (ed25519 signatures are deterministic).
fn signed_over(key: &KeyPair, message: &[u8], signature: &str, what: &str) -> anyhow::Result<()> {
    ensure!(
        hex::encode(key.sign(message).to_bytes()) == signature,
        "{what}: the code signed other bytes than the ones REPORT-FORMAT.md describes"
    );
    Ok(())
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON");
    text.push('\n');
    text.into_bytes()
}

/// The body of a report re-signed with `key` after `change`: what a faulty or malicious
/// signer would send. `key_id` is set to the signer's.
fn resign(report: &Value, key: &KeyPair, change: impl FnOnce(&mut Value)) -> Value {
    let mut report = report.clone();
    change(&mut report["body"]);
    report["body"]["key_id"] = json!(key.id());
    let bytes = canonical::to_canonical_bytes(&report["body"]).expect("canonical");
    report["signature"] = json!(hex::encode(key.sign(&bytes).to_bytes()));
    report
}

/// Flips the lowest bit of the first byte of the branch signature.
fn flip_signature(report: &Value) -> Value {
    let mut report = report.clone();
    let mut sig = hex::decode(report["signature"].as_str().expect("hex")).expect("hex");
    sig[0] ^= 1;
    report["signature"] = json!(hex::encode(sig));
    report
}

/// Changes the unit price of the first part line by 1 minor unit (a charge), leaving every
/// signature as it was.
fn change_charge(report: &Value) -> Value {
    let mut report = report.clone();
    let price = &mut report["body"]["content"]["parts"][0]["unit_price"];
    *price = json!(price.as_i64().expect("an amount") + 100);
    report
}

/// Tampered copies of a genuine export, each with the failure code every verifier must give.
/// `branch` is the key that signed the genuine report; `stranger` is not in the trust data.
fn tampered(
    genuine: &Value,
    branch: &KeyPair,
    stranger: &KeyPair,
) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        (
            "changed-charge",
            "bad_branch_signature",
            "a part's unit price raised by 1.00 after signing",
            change_charge(genuine),
        ),
        (
            "changed-signature-byte",
            "bad_branch_signature",
            "one bit of the branch signature flipped",
            flip_signature(genuine),
        ),
        (
            "wrong-key",
            "bad_branch_signature",
            "signed by a key that is not the branch's, under the branch's key id",
            {
                let mut r = resign(genuine, stranger, |_| {});
                r["body"]["key_id"] = genuine["body"]["key_id"].clone();
                let bytes = canonical::to_canonical_bytes(&r["body"]).expect("canonical");
                r["signature"] = json!(hex::encode(stranger.sign(&bytes).to_bytes()));
                r
            },
        ),
        (
            "unknown-key",
            "unknown_key",
            "signed by a key the trust data does not hold, under that key's id",
            resign(genuine, stranger, |_| {}),
        ),
        (
            "changed-job-digest",
            "bad_device_signature",
            "the acknowledgement's job digest replaced, re-signed by the branch",
            resign(genuine, branch, |body| {
                body["acknowledgement"]["job_digest"] = json!("00".repeat(32));
            }),
        ),
        (
            "content-digest-not-updated",
            "digest_mismatch",
            "a charge changed and re-signed by the branch, the content digest left as it was",
            resign(genuine, branch, |body| {
                body["content"]["labour"]["minutes"] = json!(600);
            }),
        ),
        (
            "content-after-acknowledgement",
            "acknowledgement_mismatch",
            "a charge changed, content digest and report id recomputed, re-signed by the \
             branch: the customer did not acknowledge this content",
            resign(genuine, branch, |body| {
                body["content"]["labour"]["minutes"] = json!(600);
                let digest =
                    sha256_hex(&canonical::to_canonical_bytes(&body["content"]).expect("jcs"));
                let job_id: DocumentId = body["job_id"].as_str().expect("id").parse().expect("id");
                body["report_id"] = json!(report_id(&job_id, &digest));
                body["content_digest"] = json!(digest);
            }),
        ),
    ]
}

/// Every file of `docs/report-vectors/`, as the code makes it (path relative to it → bytes).
fn generate() -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let branch = KeyPair::from_seed(&BRANCH_SEED);
    let device = KeyPair::from_seed(&DEVICE_SEED);
    let stranger = KeyPair::from_seed(&STRANGER_SEED);

    // Keys: seed → public key → key id (first 16 bytes of SHA-256 of the public key).
    let key = |name: &str, seed: &[u8; 32], pair: &KeyPair| {
        json!({
            "role": name,
            "seed": hex::encode(seed),
            "public_key": pair.public().to_hex(),
            "key_id": pair.id(),
        })
    };
    files.insert(
        "keys.json".into(),
        pretty(&json!({
            "branch": key("branch north-01 (signs reports, attestations, complaints)", &BRANCH_SEED, &branch),
            "device": key("device dev-a1 (signs the customer's acknowledgement)", &DEVICE_SEED, &device),
            "stranger": key("a key no trust data holds", &STRANGER_SEED, &stranger),
        })),
    );

    // RFC 8785 on its own: the RFC's examples and the cases our data meets.
    let cases = [
        r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
        r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        r#"{ "b" : [ 1, { "z" : null, "a" : [ true ] } ], "a" : { } }"#,
        r#"{"amount":-1250,"at":1793095060000,"zero":-0.0,"big":9007199254740991,"small":5e-324}"#,
        r#"{"text":"港灣 tab\there \"quoted\" back\\slash \u0001 \u007f \u2028 é"}"#,
    ];
    let mut canonical_cases = Vec::new();
    for input in cases {
        let value: Value = serde_json::from_str(input)?;
        let text = jcs(&value)?;
        canonical_cases.push(json!({
            "input": input,
            "canonical": text,
            "sha256": sha256_hex(text.as_bytes()),
        }));
    }
    files.insert(
        "canonical.json".into(),
        pretty(&Value::Array(canonical_cases)),
    );

    // The device acknowledgement over the job as it is when the customer signs.
    let mut job = vector_job();
    let ack = sign_acknowledgement(&job, ack_heads_input(), ack_draft(), device_id(), &device)?;
    let ack_content = jcs(&acknowledged_content(&job)?)?;
    ensure!(sha256_hex(ack_content.as_bytes()) == ack.job_digest);
    ensure!(acknowledged_digest(&job)?.to_hex() == ack.job_digest);
    let mark = jcs(&serde_json::to_value(&ack.signature)?)?;
    let statement = jcs(&ack_statement(&job.job_id, &job.branch_id, &ack))?;
    signed_over(
        &device,
        statement.as_bytes(),
        &ack.device_signature,
        "acknowledgement",
    )?;
    let image_mark = SignatureMark::Image {
        mime: "image/png".into(),
        data: vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a],
    };
    let image_mark_text = jcs(&serde_json::to_value(&image_mark)?)?;
    files.insert(
        "acknowledgement.json".into(),
        pretty(&json!({
            "job": job,
            "heads_input": ack_heads_input(),
            "draft": {
                "signer_name": ack.signer_name,
                "signature": ack.signature,
                "signed_at": ack.signed_at,
                "survey": ack.survey,
            },
            "device_id": ack.device_id,
            "acknowledged_content_canonical": ack_content,
            "job_digest": ack.job_digest,
            "heads": ack.heads,
            "signature_mark_canonical": mark,
            "signature_mark_digest": sha256_hex(mark.as_bytes()),
            "image_mark_example": {
                "mark": image_mark,
                "canonical": image_mark_text,
                "digest": sha256_hex(image_mark_text.as_bytes()),
            },
            "statement_canonical": statement,
            "device_signature": ack.device_signature,
            "acknowledgement": ack,
        })),
    );

    // The branch's report over the acknowledged job, read at later heads.
    job.acknowledgement = Some(ack);
    let report = SignedReport::sign(
        &job,
        report_heads_input(),
        at(REPORT_SIGNED_AT),
        None,
        &branch,
    )?;
    let content = jcs(&report_content(&job)?)?;
    ensure!(sha256_hex(content.as_bytes()) == report.body.content_digest);
    let preimage = format!(
        "fieldsync/report/v1\n{}\n{}",
        job.job_id, report.body.content_digest
    );
    ensure!(sha256_hex(preimage.as_bytes())[..32] == report.body.report_id);
    let body = String::from_utf8(canonical::canonicalize(&report.body)?)?;
    signed_over(&branch, body.as_bytes(), &report.signature, "report body")?;
    let export = report.to_canonical_json()?;
    let doc_id = report_doc_id(&report.body.report_id).context("a report id is 16 bytes of hex")?;
    files.insert(
        "report.json".into(),
        pretty(&json!({
            "job": job,
            "heads_input": report_heads_input(),
            "signed_at": REPORT_SIGNED_AT,
            "supersedes": null,
            "content_canonical": content,
            "content_digest": report.body.content_digest,
            "report_id_preimage": preimage,
            "report_id": report.body.report_id,
            "report_document_id": doc_id,
            "body_canonical": body,
            "signature": report.signature,
            "export_file": "report.signed.json",
        })),
    );
    files.insert("report.signed.json".into(), export.clone());

    // The branch's attestation of the device's enrolled key.
    let record = device_record(&device);
    let attestation = DeviceAttestation::sign(record.clone(), &branch)?;
    let statement = jcs(&json!({"format": ATTESTATION_FORMAT, "record": record}))?;
    signed_over(
        &branch,
        statement.as_bytes(),
        &attestation.signature,
        "attestation",
    )?;
    files.insert(
        "attestation.json".into(),
        pretty(&json!({
            "record": record,
            "statement_canonical": statement,
            "signature": attestation.signature,
            "attestation": attestation,
        })),
    );

    // One revision of a complaint, signed by the branch.
    let complaint = json!({
        "id": "cmp-7",
        "channel": "phone",
        "category": "service",
        "received_at": "2026-10-28T02:15:00Z",
        "complainant": "林女士",
        "contact": "555-0101",
        "customer_id": "c-1001",
        "against_job": job.job_id,
        "against_technician": "tech-wang",
        "content": "技師遲到兩小時 (two hours late)",
        "asks": "an apology",
        "valid": true,
        "unit": null,
        "solution": null,
        "customer_reaction": null,
        "responsible": null,
        "penalty": null,
        "outcome": null,
        "steps": [],
    });
    let signed = ComplaintDoc::sign(branch_id(), "cmp-7".into(), 2, &complaint, &branch)?;
    let statement = jcs(&json!({
        "format": COMPLAINT_FORMAT,
        "branch_id": "north-01",
        "complaint_id": "cmp-7",
        "revision": 2,
        "record": complaint,
    }))?;
    signed_over(
        &branch,
        statement.as_bytes(),
        &signed.signature,
        "complaint",
    )?;
    let mut preimage = b"fieldsync/complaint-document/v1".to_vec();
    preimage.push(0);
    preimage.extend_from_slice(b"north-01");
    preimage.push(0);
    preimage.extend_from_slice(b"cmp-7");
    let doc_id = complaint_doc_id(&branch_id(), "cmp-7");
    ensure!(hex::encode(doc_id.as_bytes()) == sha256_hex(&preimage)[..32]);
    files.insert(
        "complaint.json".into(),
        pretty(&json!({
            "branch_id": "north-01",
            "complaint_id": "cmp-7",
            "revision": 2,
            "record": complaint,
            "record_json": signed.record_json,
            "statement_canonical": statement,
            "key_id": signed.key_id,
            "signature": signed.signature,
            "document_id_preimage_hex": hex::encode(&preimage),
            "document_id_bytes_hex": hex::encode(doc_id.as_bytes()),
            "document_id": doc_id,
        })),
    );

    // The trust directory a verifier of these vectors takes (`fieldsync trust export`).
    let trust = temp_dir()?;
    fieldsync_server::trust::export(
        trust.path(),
        &branch_id(),
        branch.public(),
        std::slice::from_ref(&record),
    )?;
    for name in ["branches/north-01.pub", "devices.json"] {
        files.insert(
            format!("trust/{name}"),
            std::fs::read(trust.path().join(name))?,
        );
    }

    // Tampered copies of the export, each with the failure every verifier must name.
    let genuine: Value = serde_json::from_slice(&export)?;
    let mut index = Vec::new();
    for (name, code, what, report) in tampered(&genuine, &branch, &stranger) {
        let file = format!("tampered/{name}.json");
        index.push(json!({"file": file, "expect": code, "what": what}));
        files.insert(file, canonical::to_canonical_bytes(&report)?);
    }
    files.insert("tampered/index.json".into(), pretty(&Value::Array(index)));
    Ok(files)
}

/// The files under `dir`, relative to it.
fn committed(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(root)?
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out)?;
    }
    Ok(out)
}

#[test]
fn the_published_vectors_are_what_the_code_produces() -> anyhow::Result<()> {
    let made = generate()?;
    let dir = vectors_dir();
    if std::env::var(WRITE_VECTORS).as_deref() == Ok("1") {
        for (name, bytes) in &made {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
    }
    let on_disk = committed(&dir)?;
    let mut differ = Vec::new();
    for (name, bytes) in &made {
        if on_disk.get(name) != Some(bytes) {
            differ.push(format!("{name} differs or is missing"));
        }
    }
    for name in on_disk.keys().filter(|n| !made.contains_key(*n)) {
        differ.push(format!("{name} is not made by the code any more"));
    }
    ensure!(
        differ.is_empty(),
        "docs/report-vectors/ is not what the code produces: {}. If the format changed on \
         purpose, run with {WRITE_VECTORS}=1, review the diff and update docs/REPORT-FORMAT.md",
        differ.join("; ")
    );
    Ok(())
}

/// The Rust verifier on the vectors: the export verifies with the trust directory, each
/// tampered copy fails with the code its index names.
#[test]
fn the_rust_verifier_agrees_with_the_vectors() -> anyhow::Result<()> {
    let dir = vectors_dir();
    let trust = fieldsync_server::trust::load(&dir.join("trust"))?;
    let verified = trust.verify_json(&std::fs::read(dir.join("report.signed.json"))?)?;
    assert_eq!(verified.job.customer.name, "港灣冷庫有限公司");
    let index: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("tampered/index.json"))?)?;
    ensure!(index.len() >= 5, "too few tampered vectors: {index:?}");
    for entry in index {
        let file = entry["file"].as_str().context("file")?;
        let got = trust
            .verify_json(&std::fs::read(dir.join(file))?)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(
            got,
            Err(entry["expect"].as_str().context("expect")?),
            "{file}"
        );
    }

    // The attestation and the complaint verify with the branch key of the trust directory.
    let branch = PublicKey::load(&dir.join("trust/branches/north-01.pub"))?;
    let attestation: Value = serde_json::from_slice(&std::fs::read(dir.join("attestation.json"))?)?;
    let attestation: DeviceAttestation =
        serde_json::from_value(attestation["attestation"].clone())?;
    attestation.verify(&branch)?;
    let complaint: Value = serde_json::from_slice(&std::fs::read(dir.join("complaint.json"))?)?;
    let doc = ComplaintDoc {
        branch_id: branch_id(),
        complaint_id: "cmp-7".into(),
        revision: complaint["revision"].as_u64().context("revision")?,
        record_json: complaint["record_json"]
            .as_str()
            .context("record")?
            .to_owned(),
        key_id: serde_json::from_value(complaint["key_id"].clone())?,
        signature: complaint["signature"]
            .as_str()
            .context("signature")?
            .to_owned(),
    };
    let doc_id: DocumentId = complaint["document_id"].as_str().context("id")?.parse()?;
    doc.verify(doc_id, &branch)?;
    ensure!(signature_from_hex(&doc.signature).is_some());
    Ok(())
}

// ---- the independent verifier --------------------------------------------------------------

/// The Python interpreter of the verifier's virtual environment (`tools/verify-report/
/// install` makes it; `scripts/test` and `.ci/run` run that), or `$FIELDSYNC_VERIFY_PYTHON`.
fn verifier_python() -> anyhow::Result<PathBuf> {
    let python = match std::env::var_os("FIELDSYNC_VERIFY_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo().join("tools/verify-report/.venv/bin/python"),
    };
    ensure!(
        python.exists(),
        "the independent verifier's Python is missing at {}: run `tools/verify-report/install` \
         (scripts/test does)",
        python.display()
    );
    Ok(python)
}

/// What one run of the independent verifier said.
pub(crate) struct Verdict {
    pub(crate) success: bool,
    /// The JSON it printed on stdout.
    pub(crate) out: Value,
    stderr: String,
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exit = if self.success {
            "exit 0"
        } else {
            "exit non-zero"
        };
        write!(f, "{exit}: {} (stderr: {:?})", self.out, self.stderr)
    }
}

fn run_verifier(args: &[&std::ffi::OsStr]) -> anyhow::Result<Verdict> {
    let output = Command::new(verifier_python()?)
        .arg(repo().join("tools/verify-report/verify_report.py"))
        .args(args)
        .output()
        .context("cannot run the independent verifier")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let out = serde_json::from_str(stdout.trim()).with_context(|| {
        format!("the verifier printed no JSON: stdout {stdout:?}, stderr {stderr:?}")
    })?;
    Ok(Verdict {
        success: output.status.success(),
        out,
        stderr,
    })
}

/// The independent verifier on one exported report with a trust directory (also used on the
/// report the technician's app had signed, `pwa_browser`).
pub(crate) fn verify_with_python(report: &Path, trust: &Path) -> anyhow::Result<Verdict> {
    run_verifier(&[
        "report".as_ref(),
        report.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
    ])
}

#[test]
fn the_independent_verifier_checks_every_vector() -> anyhow::Result<()> {
    let verdict = run_verifier(&["vectors".as_ref(), vectors_dir().as_os_str()])?;
    ensure!(
        verdict.success && verdict.out["valid"] == true,
        "the Python verifier disagrees with the vectors: {verdict:?}"
    );
    // It did check something of each kind (a checker that checks nothing passes too).
    for kind in [
        "keys",
        "canonical",
        "acknowledgement",
        "report",
        "attestation",
        "complaint",
        "tampered",
    ] {
        ensure!(
            verdict.out["checked"][kind].as_u64().unwrap_or(0) > 0,
            "nothing checked of {kind}: {verdict:?}"
        );
    }
    Ok(())
}

/// The test issue 16 asks for: genuine reports from a real run (signed by the edge, exported
/// by the edge and by head office, with the trust data from `fieldsync trust export`) pass the
/// independent verifier; tampered copies fail it, each naming the same code as the Rust
/// verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_verifier_passes_genuine_reports_and_fails_tampered_ones()
-> anyhow::Result<()> {
    // Fail at once, saying how to install it, before starting any server.
    verifier_python()?;
    let chain = Chain::start().await?;
    let (_, report_id) = chain.complete_a_job(T0 + 60_000).await?;
    chain.wait_verified(&report_id).await?;

    let out = temp_dir()?;
    let get = |server: &fieldsync_tests::TestServer, path: String| {
        let url = server.http_url(&path);
        let token = server.desk_token(DeskRole::Analyst);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token?)
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(response.bytes().await?.to_vec())
        }
    };
    let at_edge = get(&chain.branch, format!("/api/reports/{report_id}")).await?;
    let at_head_office = get(
        &chain.head_office,
        format!("/api/archive/reports/{report_id}/export"),
    )
    .await?;

    // The trust data as an operator exports it: the real binary, beside the running server.
    let trust = out.path().join("trust");
    let exported = Command::new(fieldsync_tests::fieldsync_binary()?)
        .args(["trust", "export", "--out"])
        .arg(&trust)
        .arg("--data-dir")
        .arg(&chain.branch.data_dir)
        .env_remove("FIELDSYNC_CONFIG")
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .env("FIELDSYNC_LOG", "warn")
        .output()?;
    ensure!(
        exported.status.success(),
        "fieldsync trust export: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let rust_trust = fieldsync_server::trust::load(&trust)?;

    for (name, bytes) in [("edge", &at_edge), ("head-office", &at_head_office)] {
        let path = out.path().join(format!("{name}.json"));
        std::fs::write(&path, bytes)?;
        let verdict = verify_with_python(&path, &trust)?;
        ensure!(
            verdict.success && verdict.out["valid"] == true,
            "the genuine report exported by the {name} fails the independent verifier: \
             {verdict:?}"
        );
        assert_eq!(verdict.out["report_id"], report_id.as_str());
        rust_trust.verify_json(bytes)?;
    }

    // Tampered copies: each fails, with the code the Rust verifier gives.
    let genuine: Value = serde_json::from_slice(&at_edge)?;
    let stranger = KeyPair::from_seed(&STRANGER_SEED);
    let branch_key = &chain.branch.state.server_key;
    let mut cases = tampered(&genuine, branch_key, &stranger);
    // Also the genuine report against trust data that holds another key for the branch.
    let wrong_trust = out.path().join("wrong-trust");
    fieldsync_server::trust::export(
        &wrong_trust,
        &chain.branch.state.branch_id,
        stranger.public(),
        &chain
            .branch
            .state
            .registry_read()
            .devices()
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    cases.push((
        "genuine-with-wrong-trust",
        "unknown_key",
        "the genuine report, checked against another key for its branch",
        genuine.clone(),
    ));
    for (name, code, what, report) in cases {
        let path = out.path().join(format!("{name}.json"));
        let bytes = canonical::to_canonical_bytes(&report)?;
        std::fs::write(&path, &bytes)?;
        let trust_dir = if name == "genuine-with-wrong-trust" {
            &wrong_trust
        } else {
            &trust
        };
        let verdict = verify_with_python(&path, trust_dir)?;
        ensure!(
            !verdict.success && verdict.out["valid"] == false,
            "{name} ({what}) passes the independent verifier: {verdict:?}"
        );
        assert_eq!(verdict.out["code"], code, "{name} ({what}): {verdict:?}");
        let rust = fieldsync_server::trust::load(trust_dir)?
            .verify_json(&bytes)
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(rust, Err(code), "{name}: the Rust verifier");
    }

    // A file that is not a report is refused with a reason, not a traceback.
    let junk = out.path().join("junk.json");
    std::fs::write(&junk, b"{\"body\": 1")?;
    let verdict = verify_with_python(&junk, &trust)?;
    ensure!(
        !verdict.success && verdict.out["code"] == "malformed_report",
        "{verdict:?}"
    );
    chain.stop().await
}
