//! Issue 16's figures: head office's month statistics over a large generated archive, on
//! PostgreSQL and on SQLite side by side.
//!
//! The archive is filled with `--reports` rows (default 1,000,000) spread over 36 months and
//! 200 branches, each row's report a copy of the published test vector
//! (`docs/report-vectors/report.signed.json`) with its own report id, job, branch, serial,
//! customer and signing instant (statistics do not verify signatures; the archive holds only
//! verified reports). Then `archive::month_stats` for one month is timed `--runs` times (the
//! median is printed) through [`HeadOfficeStore`], exactly as `GET /api/stats` runs it.
//! PostgreSQL is a throwaway cluster with fsync on (`fieldsync_tests::pg`); SQLite is a file
//! of its own.
//!
//! Run: `cargo run --release -p fieldsync-tests --bin archive-figures [-- --reports N]`
//! (prints JSON). Not a test: timing belongs in benchmarks.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use fieldsync_server::head_office::archive;
use fieldsync_server::head_office::store::{HeadOfficeStore, StorageUrl};
use fieldsync_shared::time::Month;
use fieldsync_shared::zone::Zone;
use fieldsync_storage::{ReportRow, STATS_COLUMNS, StatsValues, Store, StoreConfig};
use fieldsync_tests::pg::PgCluster;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Archived reports to generate.
    #[arg(long, default_value_t = 1_000_000)]
    reports: usize,
    /// Timed runs of the month's statistics per backend.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only this backend: sqlite or postgres.
    #[arg(long)]
    only: Option<String>,
}

const MONTHS: i64 = 36;
const BRANCHES: usize = 200;
const DAY_MS: i64 = 86_400_000;
/// Serials are reused across the archive: about 1 in 5 reports is on a product seen before,
/// so repeat repairs (R4) have something to find.
const SERIALS: usize = 800_000;
/// The measured month: the last of the 36.
const MONTH: &str = "2026-12";

fn template() -> anyhow::Result<Value> {
    let text = include_str!("../../docs/report-vectors/report.signed.json");
    Ok(serde_json::from_str(text)?)
}

/// Row `i` of the generated archive: month `i % 36` counted back from December 2026.
fn row(template: &Value, i: usize) -> anyhow::Result<ReportRow> {
    let back = (i as i64) % MONTHS;
    let (mut year, mut month) = (2026i32, 12i64 - back);
    while month < 1 {
        month += 12;
        year -= 1;
    }
    let month = Month::new(year, u8::try_from(month)?)?;
    let day = (i as i64 / MONTHS) % 28;
    let signed_at =
        Zone::utc().month_start(month)?.as_millis() + day * DAY_MS + (i as i64 % 86_400) * 1000;
    let branch = format!("branch-{:03}", i % BRANCHES);
    let serial = format!("SN-{:07}", (i * 7919) % SERIALS);
    let customer = format!("c-{:06}", i % 50_000);
    let report_id = format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
    let job_id = fieldsync_shared::ids::DocumentId::from_bytes((i as u128).to_be_bytes());
    let mut report = template.clone();
    let body = &mut report["body"];
    body["report_id"] = json!(report_id);
    body["branch_id"] = json!(branch);
    body["job_id"] = json!(job_id.to_string());
    body["signed_at"] = json!(signed_at);
    body["content"]["branch_id"] = json!(branch);
    body["content"]["job_id"] = json!(job_id.to_string());
    body["content"]["customer"]["id"] = json!(customer);
    body["content"]["product"]["serial"] = json!(serial);
    let product_type = body["content"]["product"]["product_type"]
        .as_str()
        .unwrap_or("chiller")
        .to_owned();
    let report = report.to_string();
    // The statistics columns exactly as archiving the report computes them.
    let stats = archive::stats_columns_of(
        &report_id,
        &branch
            .parse()
            .map_err(|e| anyhow::anyhow!("branch: {e:?}"))?,
        fieldsync_shared::time::Timestamp::from_millis(signed_at),
        &report,
    );
    Ok(ReportRow {
        stats,
        report_id,
        report_doc: fieldsync_shared::report_doc::report_doc_id(&format!("{i:032x}"))
            .map(|d| d.to_string())
            .unwrap_or_else(|| format!("doc-{i}")),
        branch_id: branch,
        job_id: job_id.to_string(),
        month: month.to_string(),
        customer_id: customer,
        product_type,
        serial,
        supersedes: None,
        signed_at,
        verified_at: signed_at + 60_000,
        report,
    })
}

async fn fill_sqlite(store: &Arc<Store>, n: usize, template: &Value) -> anyhow::Result<()> {
    let mut last = None;
    for i in 0..n {
        last = Some(store.archive_report(row(template, i)?));
        if i % 20_000 == 19_999
            && let Some(p) = last.take()
        {
            p.await?;
        }
    }
    if let Some(p) = last {
        p.await?;
    }
    Ok(())
}

async fn fill_postgres(url: &str, n: usize, template: &Value) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut i = 0;
    while i < n {
        let rows: Vec<ReportRow> = (i..n.min(i + 5_000))
            .map(|j| row(template, j))
            .collect::<Result<_, _>>()?;
        i += rows.len();
        let col = |f: fn(&ReportRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let num = |f: fn(&ReportRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let values: Vec<StatsValues> = rows
            .iter()
            .map(|r| StatsValues::of(r.stats.as_ref()))
            .collect();
        let text = |f: fn(&StatsValues) -> Option<String>| values.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&StatsValues) -> Option<i64>| values.iter().map(f).collect::<Vec<_>>();
        let flag = |f: fn(&StatsValues) -> Option<bool>| values.iter().map(f).collect::<Vec<_>>();
        client
            .execute(
                &format!(
                    "INSERT INTO ho_reports (report_id, report_doc, branch_id, job_id, month,
                         customer_id, product_type, serial, signed_at, verified_at, report,
                         {STATS_COLUMNS})
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                         $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
                         $10::bigint[], $11::text[], $12::text[], $13::text[], $14::bigint[],
                         $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[],
                         $19::bigint[], $20::bigint[], $21::boolean[], $22::boolean[],
                         $23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[],
                         $27::text[])"
                ),
                &[
                    &col(|r| r.report_id.clone()),
                    &col(|r| r.report_doc.clone()),
                    &col(|r| r.branch_id.clone()),
                    &col(|r| r.job_id.clone()),
                    &col(|r| r.month.clone()),
                    &col(|r| r.customer_id.clone()),
                    &col(|r| r.product_type.clone()),
                    &col(|r| r.serial.clone()),
                    &num(|r| r.signed_at),
                    &num(|r| r.verified_at),
                    &col(|r| r.report.clone()),
                    &text(|v| v.kind.clone()),
                    &text(|v| v.billing.clone()),
                    &int(|v| v.people),
                    &int(|v| v.days_on_site),
                    &int(|v| v.charges[0]),
                    &int(|v| v.charges[1]),
                    &int(|v| v.charges[2]),
                    &int(|v| v.charges[3]),
                    &int(|v| v.charges[4]),
                    &flag(|v| v.training),
                    &flag(|v| v.acknowledged),
                    &int(|v| v.scores[0]),
                    &int(|v| v.scores[1]),
                    &int(|v| v.scores[2]),
                    &int(|v| v.scores[3]),
                    &text(|v| v.fault.clone()),
                ],
            )
            .await?;
    }
    client.batch_execute("ANALYZE ho_reports").await?;
    Ok(())
}

/// PostgreSQL's plan of the month's statistics query, run (`EXPLAIN (ANALYZE, BUFFERS)`).
async fn explain(url: &str) -> anyhow::Result<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let month: Month = MONTH.parse()?;
    let look_back_from = Zone::utc().month_start(month)?.as_millis() - 91 * DAY_MS;
    let rows = client
        .query(
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS) {}",
                fieldsync_storage::month_stats_query("$1", "$2")
            ),
            &[&MONTH, &look_back_from],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The month's statistics timed `runs` times; the figures and the last answer.
async fn measure(store: &HeadOfficeStore, runs: usize) -> anyhow::Result<(Value, Value)> {
    let month: Month = MONTH.parse()?;
    let mut times = Vec::new();
    let mut reports = 0;
    let mut answer = Value::Null;
    for _ in 0..runs {
        let started = Instant::now();
        let stats = archive::month_stats(store, month, 90, &Zone::utc()).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        reports = stats.iter().map(|s| s.summary.reports).sum::<u32>();
        answer = serde_json::to_value(&stats)?;
    }
    Ok((
        json!({
            "month_stats_ms_median": median(times.clone()),
            "month_stats_ms_runs": times,
            "reports_in_month": reports,
        }),
        answer,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let template = template()?;
    let mut out = json!({ "archived_reports": args.reports, "months": MONTHS,
        "branches": BRANCHES, "month": MONTH });
    let mut answers = Vec::new();
    if args.only.as_deref() != Some("postgres") {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("archive.sqlite");
        let store = Arc::new(Store::open(&path, StoreConfig::default())?);
        let started = Instant::now();
        fill_sqlite(&store, args.reports, &template).await?;
        let fill = started.elapsed().as_secs_f64();
        let store = HeadOfficeStore::Sqlite(store);
        let (mut figures, answer) = measure(&store, args.runs).await?;
        figures["fill_s"] = json!(fill);
        out["sqlite"] = figures;
        answers.push(answer);
    }
    if args.only.as_deref() != Some("sqlite") {
        let cluster = PgCluster::start(true)?;
        let url = cluster.database("figures").await?;
        let node_dir = tempfile::tempdir()?;
        let node = Arc::new(Store::open(
            node_dir.path().join("node.sqlite"),
            StoreConfig::default(),
        )?);
        let store = HeadOfficeStore::open(&StorageUrl::Postgres(url.clone()), &node)
            .context("cannot open the archive on PostgreSQL")?;
        let started = Instant::now();
        fill_postgres(&url, args.reports, &template).await?;
        let fill = started.elapsed().as_secs_f64();
        let (mut figures, answer) = measure(&store, args.runs).await?;
        figures["fill_s"] = json!(fill);
        figures["explain_analyze"] = json!(explain(&url).await?);
        out["postgres"] = figures;
        answers.push(answer);
    }
    // Both backends must answer the same statistics from the same rows.
    if let [sqlite, postgres] = answers.as_slice() {
        out["same_statistics_on_both"] = json!(sqlite == postgres);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
