//! The renderer on its own: a typical Chinese repair job, previewed and signed.

use fieldsync_shared::ids::DocumentId;
use fieldsync_shared::job::*;
use fieldsync_shared::keys::KeyPair;
use fieldsync_shared::report::{SignedReport, TrustStore};
use fieldsync_shared::time::Timestamp;

use super::*;
use crate::sample::typical_job;

fn options(language: Language) -> PrintOptions {
    PrintOptions::new(language, Zone::china())
}

fn signed(job: &Job) -> (SignedReport, KeyPair) {
    let key = KeyPair::from_seed(&[9; 32]);
    let report = SignedReport::sign(
        job,
        vec!["ab".repeat(32)],
        Timestamp::from_millis(1_790_061_000_000),
        None,
        &key,
    )
    .expect("signs");
    (report, key)
}

#[test]
fn the_text_holds_every_field_in_chinese_and_english() {
    let job = typical_job();
    let zh = render(&job, None, &options(Language::Zh)).expect("renders");
    for expected in [
        "售后服务报告单",
        "预览",
        "north-01",
        "莲花食品有限公司",
        "SN-88812",
        "冷库压缩机运行十分钟后跳闸",
        // Arrival 2026-09-22T03:50:00Z is 11:50 in Shanghai.
        "到场时间: 2026-09-22 11:50",
        "启动电容老化",
        "更换启动电容，试运行30分钟正常",
        "启动电容 | CAP-45 / 45 µF 450 V | 2 | CNY 12.50 | CNY 25.00 | 否",
        "工时: 90 分钟 × CNY 60.00/小时 = CNY 90.00",
        "差旅: 18.0 km, CNY 25.00",
        "客户应付: CNY 140.00",
        "无（现场完成）",
        "服务态度: 5 / 5",
        "希望提前电话通知",
        "维修及时，态度很好",
        "签字人: 陈丽",
    ] {
        assert!(
            zh.text.contains(expected),
            "{expected:?} not in:\n{}",
            zh.text
        );
    }
    let en = render(&job, None, &options(Language::En)).expect("renders");
    for expected in [
        "After-sales service report",
        "Preview",
        "Arrival: 2026-09-22 11:50",
        "Customer pays: CNY 140.00",
        "Attitude: 5 / 5",
    ] {
        assert!(
            en.text.contains(expected),
            "{expected:?} not in:\n{}",
            en.text
        );
    }
    assert!(zh.pdf.starts_with(b"%PDF-"));
}

#[test]
fn r10_a_warranty_job_says_what_it_cost_and_that_the_customer_pays_nothing() {
    let mut job = typical_job();
    job.billing.mode = BillingMode::Warranty;
    let zh = render(&job, None, &options(Language::Zh)).expect("renders");
    assert!(zh.text.contains("客户应付: CNY 0.00"), "{}", zh.text);
    assert!(
        zh.text
            .contains("本次服务成本 CNY 143.00 由公司承担，客户无需付费"),
        "{}",
        zh.text
    );
    let en = render(&job, None, &options(Language::En)).expect("renders");
    assert!(
        en.text
            .contains("the company bears the cost of CNY 143.00; the customer pays nothing"),
        "{}",
        en.text
    );
}

#[test]
fn r9_a_skipped_survey_prints_as_not_answered() {
    let mut job = typical_job();
    job.acknowledgement.as_mut().expect("has one").survey = Survey::not_answered();
    let zh = render(&job, None, &options(Language::Zh)).expect("renders");
    assert!(zh.text.contains("服务态度: 未作答"), "{}", zh.text);
    assert!(!zh.text.contains("/ 5"), "{}", zh.text);
}

#[test]
fn a_signed_pdf_carries_the_report_and_it_verifies_from_the_pdf_alone() {
    let job = typical_job();
    let (report, key) = signed(&job);
    let printed = render(&job, Some(&report), &options(Language::Zh)).expect("renders");
    assert!(
        printed
            .text
            .contains(&format!("报告编号: {}", report.body.report_id))
    );
    assert!(
        printed.text.contains("签发时间: 2026-09-22 15:10"),
        "{}",
        printed.text
    );
    assert!(printed.text.contains(&format!(
        "QR: fieldsync:report:{}:sha256:{}",
        report.body.report_id, report.body.content_digest
    )));
    let json = extract_report(&printed.pdf).expect("the report is attached");
    assert_eq!(json, report.to_canonical_json().expect("canonical"));
    let mut trust = TrustStore::new();
    trust.add_branch_key(job.branch_id.clone(), key.public().clone());
    // The device is unknown to this store: the branch signature itself verifies, and the
    // failure is the next check's, never the signature's.
    let verdict = trust.verify_json(&json);
    assert!(
        !matches!(
            verdict,
            Err(fieldsync_shared::report::VerifyError::BadBranchSignature)
        ),
        "{verdict:?}"
    );
    // The same report printed from its JSON alone (the desk and head office) embeds the same.
    let again = report_pdf(&json, &options(Language::En)).expect("renders");
    assert_eq!(extract_report(&again.pdf).expect("attached"), json);
    // Its text alone is the PDF's text; a report that does not parse is refused, named.
    assert_eq!(
        report_text(&json, &options(Language::En)).expect("renders"),
        again.text
    );
    assert!(matches!(
        report_text(b"{\"not\": \"a report\"}", &options(Language::En)),
        Err(PrintError::Report(_))
    ));
}

#[test]
fn a_preview_carries_no_report_and_printing_is_deterministic() {
    let job = typical_job();
    let a = render(&job, None, &options(Language::Zh)).expect("renders");
    let b = render(&job, None, &options(Language::Zh)).expect("renders");
    assert_eq!(a, b);
    assert_eq!(extract_report(&a.pdf), Err(ExtractError::NoReport));
    assert!(matches!(
        extract_report(b"not a pdf"),
        Err(ExtractError::NotPdf(_))
    ));
}

#[test]
fn a_report_of_another_job_is_refused() {
    let job = typical_job();
    let (report, _) = signed(&job);
    let mut other = job.clone();
    other.job_id = DocumentId::from_bytes([8; 16]);
    assert!(matches!(
        render(&other, Some(&report), &options(Language::En)),
        Err(PrintError::WrongJob { .. })
    ));
}

#[test]
fn a_signature_image_that_cannot_be_decoded_is_named_not_fatal() {
    let mut job = typical_job();
    job.acknowledgement.as_mut().expect("has one").signature = SignatureMark::Image {
        mime: "image/png".into(),
        data: b"not a png".to_vec(),
    };
    let printed = render(&job, None, &options(Language::En)).expect("renders");
    assert!(printed.pdf.starts_with(b"%PDF-"));
}

/// Writes the typical job's PDFs for a look (`FIELDSYNC_PRINT_DIR=/tmp/x cargo test …`).
#[test]
fn writes_samples_when_asked() {
    let Ok(dir) = std::env::var("FIELDSYNC_PRINT_DIR") else {
        return;
    };
    let job = typical_job();
    let (report, _) = signed(&job);
    for (name, lang, signed) in [
        ("preview-zh", Language::Zh, None),
        ("signed-zh", Language::Zh, Some(&report)),
        ("signed-en", Language::En, Some(&report)),
    ] {
        let printed = render(&job, signed, &options(lang)).expect("renders");
        std::fs::write(format!("{dir}/{name}.pdf"), &printed.pdf).expect("writes");
    }
}
