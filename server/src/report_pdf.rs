//! The signed service report as a PDF for the desk (edge) and head office (issue 15).
//!
//! Report id → PDF bytes, printed from the signed report alone (`fieldsync_report_print::
//! report_pdf`): the PDF carries that report's canonical JSON as an attachment, so
//! `fieldsync verify report.pdf` checks it with nothing else. Written as plain functions over
//! the store so the routers can mount them wherever the server's role folders put them:
//!
//! - edge: `GET /api/reports/{id}/pdf?lang=zh|en&zone=Asia/Shanghai` →
//!   `edge_report_pdf(&state.store, &id, &options(&query)?)` then `pdf_response`;
//! - head office: `GET /api/archive/reports/{id}/pdf?…` → `archived_report_pdf`.
//!
//! Both after the same `authorize` as the JSON they print (every desk role may read them).
//! Rendering takes milliseconds of CPU: call them inside `spawn_blocking`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use fieldsync_report_print::{Language, PrintOptions, Zone};
use fieldsync_storage::Store;
use serde::Deserialize;

use crate::error::ApiError;
use crate::head_office::{ARCHIVE, ArchivedReport};
use crate::reports::REPORTS;

/// The query of a PDF download: `lang` (zh, the default, or en) and `zone` (an IANA name of
/// a zone without daylight saving, or an offset; Asia/Shanghai by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdfQuery {
    pub lang: Option<String>,
    pub zone: Option<String>,
}

/// The print options a query asks for; a language or zone not understood is a 400 naming it.
pub fn options(query: &PdfQuery) -> Result<PrintOptions, ApiError> {
    let language = match query.lang.as_deref() {
        None => Language::Zh,
        Some(s) => Language::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("lang {s:?}: use zh or en"))
        })?,
    };
    let zone = match query.zone.as_deref() {
        None => Zone::china(),
        Some(s) => {
            Zone::parse(s).map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?
        }
    };
    Ok(PrintOptions::new(language, zone))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_report_id",
            "a report id is 32 hex digits",
        ));
    }
    Ok(())
}

fn print(json: &[u8], options: &PrintOptions) -> Result<Vec<u8>, ApiError> {
    fieldsync_report_print::report_pdf(json, options)
        .map(|printed| printed.pdf)
        .map_err(|e| ApiError::internal("report_not_printable", e))
}

/// Edge: the PDF of a report this branch signed (the JSON of `GET /api/reports/{id}`).
pub fn edge_report_pdf(
    store: &Store,
    id: &str,
    options: &PrintOptions,
) -> Result<Vec<u8>, ApiError> {
    check_id(id)?;
    let json = store
        .meta(REPORTS, id)
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no report {id}")))?;
    print(&json, options)
}

/// Head office: the PDF of a verified, archived report (the JSON of
/// `GET /api/archive/reports/{id}/export`).
pub fn archived_report_pdf(
    store: &Store,
    id: &str,
    options: &PrintOptions,
) -> Result<Vec<u8>, ApiError> {
    check_id(id)?;
    let entry = store
        .meta(ARCHIVE, id)
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no verified report {id}")))?;
    let entry: ArchivedReport =
        serde_json::from_slice(&entry).map_err(|e| ApiError::internal("corrupt_record", e))?;
    let json = fieldsync_shared::canonical::to_canonical_bytes(&entry.report)
        .map_err(|e| ApiError::internal("canonical", e))?;
    print(&json, options)
}

/// The PDF as a download named after the report.
pub fn pdf_response(id: &str, pdf: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"service-report-{id}.pdf\""),
            ),
        ],
        pdf,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use fieldsync_shared::keys::KeyPair;
    use fieldsync_shared::report::{SignedReport, TrustStore};
    use fieldsync_shared::time::Timestamp;
    use fieldsync_storage::StoreConfig;

    use super::*;

    #[test]
    fn an_edge_report_is_printed_with_its_json_attached() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("s.sqlite"), StoreConfig::default())?;
        let key = KeyPair::from_seed(&[3; 32]);
        let job = fieldsync_report_print::sample::typical_job();
        let report = SignedReport::sign(
            &job,
            vec!["cd".repeat(32)],
            Timestamp::from_millis(1_790_061_000_000),
            None,
            &key,
        )?;
        let json = report.to_canonical_json()?;
        let id = report.body.report_id.clone();
        store.put_meta(REPORTS, &id, json.clone()).wait()?;

        let options = options(&PdfQuery {
            lang: Some("en".into()),
            zone: Some("+08:00".into()),
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pdf = edge_report_pdf(&store, &id, &options).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(fieldsync_report_print::extract_report(&pdf)?, json);
        let mut trust = TrustStore::new();
        trust.add_branch_key(job.branch_id.clone(), key.public().clone());
        assert!(!matches!(
            trust.verify_json(&json),
            Err(fieldsync_shared::report::VerifyError::BadBranchSignature)
        ));

        let missing = edge_report_pdf(&store, "00ff", &options).expect_err("unknown");
        assert_eq!(missing.code, "unknown_report");
        let bad = edge_report_pdf(&store, "../x", &options).expect_err("not an id");
        assert_eq!(bad.code, "invalid_report_id");
        let bad_zone = super::options(&PdfQuery {
            lang: None,
            zone: Some("Mars/Olympus".into()),
        })
        .expect_err("unknown zone");
        assert_eq!(bad_zone.code, "invalid_query");
        Ok(())
    }
}
