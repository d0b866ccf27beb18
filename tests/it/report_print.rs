//! Issue 15: the customer's service report as a PDF, read the way a person or a verifier reads
//! it: `pdftotext` for the words, `pdftoppm` for a picture, `fieldsync verify` on the PDF.
//! Needs Debian's poppler-utils (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};
use fieldsync_client::{AckDraft, JobEdit, Language, PartDraft, PrintOptions, Zone};
use fieldsync_server::auth::DeskRole;
use fieldsync_shared::job::{BillingMode, Labour, ReportOutcome, SignatureMark, Survey, Travel};
use fieldsync_shared::time::Money;
use fieldsync_tests::{fieldsync_binary, sample_job_body};

use crate::client_sdk::{online_device, setup, until};

/// The words of a PDF page as `pdftotext` reads them, without any whitespace (a reader's
/// layout puts spaces and line breaks where it likes).
fn pdf_words(pdf: &Path) -> anyhow::Result<String> {
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(pdf)
        .arg("-")
        .output()
        .context("pdftotext (Debian's poppler-utils) must be installed")?;
    ensure!(out.status.success(), "pdftotext failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect())
}

fn assert_words(words: &str, expected: &[&str]) -> anyhow::Result<()> {
    for e in expected {
        let e: String = e.chars().filter(|c| !c.is_whitespace()).collect();
        ensure!(
            words.contains(&e),
            "{e:?} is not in the PDF's text:\n{words}"
        );
    }
    Ok(())
}

fn verify(pdf: &Path, trust: &Path) -> anyhow::Result<(bool, String)> {
    let out = Command::new(fieldsync_binary()?)
        .arg("verify")
        .arg(pdf)
        .arg("--trust")
        .arg(trust)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The signed PDF with one byte string of its attached report replaced (the file saved
/// again by lopdf, as any PDF tool would).
fn alter_attached_report(pdf: &[u8], from: &str, to: &str) -> anyhow::Result<Vec<u8>> {
    let mut doc = lopdf::Document::load_mem(pdf)?;
    let mut altered = 0;
    for object in doc.objects.values_mut() {
        let Ok(stream) = object.as_stream_mut() else {
            continue;
        };
        let is_file = stream
            .dict
            .get(b"Type")
            .and_then(lopdf::Object::as_name)
            .is_ok_and(|n| n == b"EmbeddedFile");
        if !is_file {
            continue;
        }
        let json = String::from_utf8(stream.decompressed_content()?)?;
        ensure!(
            json.contains(from),
            "{from:?} is not in the attached report"
        );
        stream.set_plain_content(json.replace(from, to).into_bytes());
        altered += 1;
    }
    ensure!(altered == 1, "{altered} attached files");
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

/// A typical repair in Chinese, from the desk's registration to the branch's signature: the
/// preview the customer reads before signing and the signed report hold every field of the
/// issue, a page renders to PNG, and `fieldsync verify` passes on the signed PDF and fails
/// on one whose attached report was altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_report_pdf_holds_every_field_and_verifies_from_the_pdf_alone()
-> anyhow::Result<()> {
    let s = setup().await?;
    let mut body = sample_job_body("tech-wang");
    body["customer"]["name"] = "莲花食品有限公司".into();
    body["customer"]["contact"] = "陈女士 138-0000-0101".into();
    body["customer"]["site_address"] = "上海市浦东新区港湾路12号".into();
    body["request"]["fault_description"] = "冷库压缩机运行十分钟后跳闸".into();
    let created = s.server.create_job_from(&body).await?;
    let job = created.job;
    let device = online_device(&s, "dev-a", "tech-wang", Some(created.index), job).await?;

    device
        .add_part(
            job,
            PartDraft {
                part_number: "CAP-45".into(),
                name: "启动电容".into(),
                specification: "45 µF 450 V".into(),
                quantity: 2,
                unit_price: Money(1250),
                warranty: false,
            },
        )
        .await?;
    device
        .edit_all(
            job,
            vec![
                JobEdit::Arrival(Some(s.server.now())),
                JobEdit::FaultCause(Some("启动电容老化".into())),
                JobEdit::Solution(Some("更换启动电容，试运行30分钟正常".into())),
                JobEdit::Labour(Labour {
                    minutes: 90,
                    rate_per_hour: Money(6000),
                }),
                JobEdit::Travel(Travel {
                    distance_m: 18_000,
                    cost: Money(2500),
                }),
                JobEdit::BillingMode(BillingMode::Billable),
                JobEdit::InvoiceNumber(Some("INV-2026-0001".into())),
                JobEdit::CustomerOpinion(Some("维修及时，态度很好".into())),
            ],
        )
        .await?;
    device.check_out(job, "已电话报备服务台").await?;

    // Before the customer signs: the preview, in both languages.
    let dir = tempfile::tempdir()?;
    let zh = PrintOptions::new(Language::Zh, Zone::china());
    let preview = device.preview(job, zh.clone()).await?;
    let preview_pdf = dir.path().join("preview.pdf");
    std::fs::write(&preview_pdf, &preview.pdf)?;
    let arrival = device
        .job(job)
        .await?
        .visit
        .arrival
        .context("arrival recorded")?;
    let arrival = Zone::china().format(arrival);
    let words = pdf_words(&preview_pdf)?;
    assert_words(
        &words,
        &[
            "售后服务报告单",
            "预览",
            "north-01",
            "莲花食品有限公司",
            "上海市浦东新区港湾路12号",
            "CH-500",
            "SN-88812",
            "冷库压缩机运行十分钟后跳闸",
            "2026-11-02 16:30",
            &format!("到场时间 {arrival}"),
            "已电话报备服务台",
            "启动电容老化",
            "更换启动电容，试运行30分钟正常",
            "启动电容 CAP-45 / 45 µF 450 V 2 CNY 12.50 CNY 25.00",
            "90 分钟 × CNY 60.00/小时 = CNY 90.00",
            "18.0 km, CNY 25.00",
            "客户应付 CNY 140.00",
            "INV-2026-0001",
            "无（现场完成）",
            "维修及时，态度很好",
            "客户阅读以上内容后在此签字",
        ],
    )?;
    let en = device
        .preview(job, PrintOptions::new(Language::En, Zone::utc()))
        .await?;
    let en_pdf = dir.path().join("preview-en.pdf");
    std::fs::write(&en_pdf, &en.pdf)?;
    assert_words(
        &pdf_words(&en_pdf)?,
        &[
            "After-sales service report",
            "Preview",
            "Request received 2026-11-02 08:30 (phone)",
            "Customer pays CNY 140.00",
            "times in UTC",
        ],
    )?;

    // The customer signs once, the job completes, the branch signs the report.
    device
        .acknowledge(
            job,
            AckDraft {
                signer_name: "陈丽".into(),
                signature: SignatureMark::Strokes {
                    strokes: vec![
                        vec![[0, 40], [20, 0], [40, 40], [60, 5], [80, 38]],
                        vec![[90, 10], [130, 30]],
                    ],
                },
                signed_at: s.server.now(),
                survey: Survey::answered(5, 4, 5, 3, "希望提前电话通知"),
            },
        )
        .await?;
    device.request_completion(job).await?;
    until(&device, "the report is signed", || async {
        matches!(
            device.job(job).await.map(|j| j.report),
            Ok(Some(ReportOutcome::Signed { .. }))
        )
    })
    .await?;
    let Some(ReportOutcome::Signed { report_id, .. }) = device.job(job).await?.report else {
        bail!("not signed");
    };
    let json = reqwest::Client::new()
        .get(s.server.http_url(&format!("/api/reports/{report_id}")))
        .bearer_auth(s.server.desk_token(DeskRole::Dispatcher)?)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let signed = fieldsync_report_print::report_pdf(&json, &zh)?;
    let signed_pdf = dir.path().join("signed.pdf");
    std::fs::write(&signed_pdf, &signed.pdf)?;
    let report: fieldsync_shared::report::SignedReport = serde_json::from_slice(&json)?;
    assert_words(
        &pdf_words(&signed_pdf)?,
        &[
            "已签发报告",
            "莲花食品有限公司",
            "启动电容老化",
            "服务态度 5 / 5",
            "服务项目 3 / 5",
            "希望提前电话通知",
            "签字人 陈丽",
            &format!(
                "签字时间 {}",
                Zone::china().format(report.body.acknowledgement.signed_at)
            ),
            &format!("报告编号 {report_id}"),
            "签发网点 north-01",
            &format!("签发时间 {}", Zone::china().format(report.body.signed_at)),
            &report.body.content_digest[..20],
        ],
    )?;

    // A page renders to a picture (kept under docs/ when asked: FIELDSYNC_SCREENSHOT_DIR).
    let png = dir.path().join("page");
    let out = Command::new("pdftoppm")
        .args(["-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&signed_pdf)
        .arg(&png)
        .output()
        .context("pdftoppm (Debian's poppler-utils) must be installed")?;
    ensure!(out.status.success(), "pdftoppm failed: {out:?}");
    let png = png.with_extension("png");
    let picture = std::fs::read(&png)?;
    ensure!(picture.starts_with(b"\x89PNG\r\n\x1a\n") && picture.len() > 10_000);
    if let Some(docs) = std::env::var_os("FIELDSYNC_SCREENSHOT_DIR") {
        let docs = Path::new(&docs);
        std::fs::copy(&signed_pdf, docs.join("service-report-zh.pdf"))?;
        let out = Command::new("pdftoppm")
            .args(["-png", "-r", "80"])
            .arg(&signed_pdf)
            .arg(docs.join("service-report-zh"))
            .output()?;
        ensure!(out.status.success(), "pdftoppm failed: {out:?}");
    }

    // `fieldsync verify` on the PDF alone, and on one whose attached report was altered.
    let trust = dir.path().join("trust");
    // The test server's branch is north-01 (its config, not a file the command reads).
    let out = Command::new(fieldsync_binary()?)
        .args(["trust", "export", "--out"])
        .arg(&trust)
        .arg("--data-dir")
        .arg(&s.server.data_dir)
        .env("FIELDSYNC_BRANCH_ID", "north-01")
        .output()?;
    ensure!(out.status.success(), "trust export: {out:?}");
    let (ok, out) = verify(&signed_pdf, &trust)?;
    ensure!(ok && out.contains("\"valid\": true"), "{out}");
    ensure!(out.contains(&report_id), "{out}");
    let altered = alter_attached_report(&signed.pdf, "莲花食品", "荷花食品")?;
    let altered_pdf = dir.path().join("altered.pdf");
    std::fs::write(&altered_pdf, &altered)?;
    let (ok, out) = verify(&altered_pdf, &trust)?;
    ensure!(!ok && out.contains("\"valid\": false"), "{out}");
    // A PDF with no report (the preview) is refused, named.
    let (ok, out) = verify(&preview_pdf, &trust)?;
    ensure!(!ok && out.contains("no signed report"), "{out}");

    device.close().await;
    s.server.stop().await
}
