//! Issue 16: a month's statistics (R24, R27, R4) read the columns head office keeps beside
//! each archived report, and answer exactly what computing them from the reports themselves
//! answers: on SQLite, on PostgreSQL, and for rows archived before the columns were kept.

use std::sync::Arc;

use fieldsync_server::head_office::archive;
use fieldsync_server::head_office::store::{HeadOfficeStore, StorageUrl};
use fieldsync_shared::job::{Acknowledgement, Job};
use fieldsync_shared::stats::{ReportedJob, monthly};
use fieldsync_shared::time::{Month, Timestamp};
use fieldsync_storage::{ReportRow, Store, StoreConfig};
use fieldsync_tests::pg::{PgCluster, TEST_PG_ENV, create_database};
use fieldsync_tests::temp_dir;
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;
const REPORTS: usize = 80;

/// Report `i`: the published vector with its kind, billing, technicians, fault, training,
/// survey, serial and instant varied, so that every statistic has something to count.
fn report(template: &Value, i: usize) -> anyhow::Result<(ReportRow, ReportedJob)> {
    let mut report = template.clone();
    let body = &mut report["body"];
    let report_id = format!("{:032x}", 0xabc0_0000_u128 + i as u128);
    let branch = ["north-01", "south-02"][i % 2];
    let job_id = fieldsync_shared::ids::DocumentId::from_bytes((i as u128 + 7).to_be_bytes());
    // From 2026-12-28 back two days a report: December, November, October, September.
    let signed_at = 1_798_416_000_000 - (i as i64) * 2 * DAY_MS + (i as i64) * 61_000;
    body["report_id"] = json!(report_id);
    body["branch_id"] = json!(branch);
    body["job_id"] = json!(job_id.to_string());
    body["signed_at"] = json!(signed_at);
    // Report 7 supersedes report 9 (a job reopened): 9 counts nowhere.
    body["supersedes"] = if i == 7 {
        json!(format!("{:032x}", 0xabc0_0000_u128 + 9))
    } else {
        Value::Null
    };
    let content = &mut body["content"];
    content["branch_id"] = json!(branch);
    content["job_id"] = json!(job_id.to_string());
    content["kind"] = json!(["repair", "installation", "maintenance", "follow_up"][i % 4]);
    content["billing"]["mode"] = json!(if i.is_multiple_of(3) {
        "warranty"
    } else {
        "billable"
    });
    content["technicians"] = json!(["tech-wang", "tech-li", "tech-zhao"][..=(i % 3)]);
    content["diagnosis"]["fault_category"] = match i % 5 {
        0 => Value::Null,
        n => json!(["Electrical", " compressor ", "installation", "electrical"][n - 1]),
    };
    if i.is_multiple_of(10) {
        content["diagnosis"]["fault_cause"] = Value::Null;
    }
    if i % 2 == 1 {
        content["visit"]["training"] = Value::Null;
    }
    content["product"]["serial"] = json!(format!("SN-{}", i % 7));
    let survey = &mut body["acknowledgement"]["survey"];
    match i % 4 {
        0 => {
            for score in ["attitude", "skill", "punctuality", "service_items"] {
                survey[score] = Value::Null;
            }
        }
        1 => {
            survey["attitude"] = json!(1 + i % 5);
            survey["skill"] = Value::Null;
        }
        _ => survey["punctuality"] = json!(1 + i % 5),
    }
    // R9: every third customer writes a suggestion (a statistics column of its own).
    survey["suggestions"] = json!(if i.is_multiple_of(3) {
        "Call before coming"
    } else {
        ""
    });
    let mut job: Job = serde_json::from_value(body["content"].clone())?;
    job.acknowledgement = Some(serde_json::from_value::<Acknowledgement>(
        body["acknowledgement"].clone(),
    )?);
    let supersedes = body["supersedes"].as_str().map(str::to_owned);
    let text = report.to_string();
    let branch_id = branch.parse().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let month = Timestamp::from_millis(signed_at).month()?;
    let row = ReportRow {
        stats: archive::stats_columns_of(
            &report_id,
            &branch_id,
            Timestamp::from_millis(signed_at),
            &text,
        ),
        report_id: report_id.clone(),
        report_doc: format!("doc-{i}"),
        branch_id: branch.to_owned(),
        job_id: job_id.to_string(),
        month: month.to_string(),
        customer_id: "c-1".into(),
        product_type: job.product.product_type.clone(),
        serial: job.product.serial.clone(),
        supersedes,
        signed_at,
        verified_at: signed_at + 60_000,
        report: text,
    };
    let reported = ReportedJob {
        report_id,
        branch_id,
        signed_at: Timestamp::from_millis(signed_at),
        job,
    };
    Ok((row, reported))
}

async fn fill(store: &HeadOfficeStore, rows: &[ReportRow]) -> anyhow::Result<()> {
    for row in rows {
        store.archive_report(row.clone()).await?;
    }
    Ok(())
}

async fn stats(store: &HeadOfficeStore, month: Month) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(
        archive::month_stats(store, month, 90, &fieldsync_shared::zone::Zone::utc()).await?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn month_statistics_from_the_kept_columns_equal_the_reports_own_on_both_backends()
-> anyhow::Result<()> {
    let template: Value =
        serde_json::from_str(include_str!("../../docs/report-vectors/report.signed.json"))?;
    let (rows, reported): (Vec<ReportRow>, Vec<ReportedJob>) = (0..REPORTS)
        .map(|i| report(&template, i))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    assert!(
        rows.iter().all(|r| r.stats.is_some()),
        "every row gets its columns"
    );
    // What the statistics are, from the reports themselves (the superseded one left out).
    let counted: Vec<ReportedJob> = reported
        .into_iter()
        .filter(|r| {
            !rows
                .iter()
                .any(|s| s.supersedes.as_deref() == Some(&r.report_id))
        })
        .collect();

    let dir = temp_dir()?;
    let with_columns = HeadOfficeStore::Sqlite(Arc::new(Store::open(
        dir.path().join("a.db"),
        StoreConfig::default(),
    )?));
    fill(&with_columns, &rows).await?;
    // Rows archived before the columns were kept: the statistics read their reports.
    let without_columns = HeadOfficeStore::Sqlite(Arc::new(Store::open(
        dir.path().join("b.db"),
        StoreConfig::default(),
    )?));
    let bare: Vec<ReportRow> = rows
        .iter()
        .map(|r| ReportRow {
            stats: None,
            ..r.clone()
        })
        .collect();
    fill(&without_columns, &bare).await?;
    let (_cluster, server) = match std::env::var(TEST_PG_ENV) {
        Ok(server) => (None, server),
        Err(_) => {
            let cluster = PgCluster::start(false)?;
            let server = cluster.server_url();
            (Some(cluster), server)
        }
    };
    let url = create_database(&server, &format!("stats_{}", std::process::id())).await?;
    let node = Arc::new(Store::open(
        dir.path().join("node.db"),
        StoreConfig::default(),
    )?);
    let postgres = HeadOfficeStore::open(&StorageUrl::Postgres(url), &node)?;
    fill(&postgres, &rows).await?;

    for month in ["2026-12", "2026-11", "2026-10"] {
        let month: Month = month.parse()?;
        let expected = serde_json::to_value(monthly(&counted, month, 90)?)?;
        let reports: u64 = expected
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|s| s["summary"]["reports"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        assert!(reports > 10, "{month}: a month with reports to count");
        let suggestions: u64 = expected
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|s| s["summary"]["surveys_with_suggestions"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        assert!(
            suggestions > 0 && suggestions < reports,
            "{month}: some suggestions to count"
        );
        assert_eq!(
            stats(&with_columns, month).await?,
            expected,
            "{month}: SQLite"
        );
        assert_eq!(
            stats(&without_columns, month).await?,
            expected,
            "{month}: old rows"
        );
        assert_eq!(
            stats(&postgres, month).await?,
            expected,
            "{month}: PostgreSQL"
        );
    }
    // The month has repeat repairs and more than one fault to count (the test would prove
    // little otherwise).
    let december = stats(&postgres, "2026-12".parse()?).await?;
    let repeats: usize = december
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|s| s["repeat_repairs"].as_array().map(Vec::len))
                .sum()
        })
        .unwrap_or(0);
    assert!(repeats > 0, "{december}");
    Ok(())
}
