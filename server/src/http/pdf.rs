//! The signed service report as a PDF (issue 15), for the edge's `GET /api/reports/{id}/pdf`
//! and head office's `GET /api/archive/reports/{id}/pdf`: the query (`lang`, `zone`), the
//! printing of a signed report's JSON (`fieldsync_report_print::report_pdf`: the PDF carries
//! that JSON as an attachment, so `fieldsync verify report.pdf` checks it with nothing else)
//! and the download response. Rendering takes milliseconds of CPU: call [`print`] inside
//! `spawn_blocking`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use fieldsync_report_print::{Language, PrintOptions, Zone};
use serde::Deserialize;

use crate::http::error::ApiError;

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

pub fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "invalid_report_id",
            "a report id is 32 hex digits",
        ));
    }
    Ok(())
}

/// The PDF of a signed report's canonical JSON, which it carries as an attachment.
pub fn print(json: &[u8], options: &PrintOptions) -> Result<Vec<u8>, ApiError> {
    fieldsync_report_print::report_pdf(json, options)
        .map(|printed| printed.pdf)
        .map_err(|e| ApiError::internal("report_not_printable", e))
}

/// A report's PDF as a download: `asked` (the query) checked, `id` checked, `load` (a
/// storage read: the report's canonical JSON, `None` if unknown) run on the blocking pool,
/// the PDF printed there too. `what` names the report in the 404 (`no {what} {id}`).
pub async fn download(
    id: String,
    asked: Result<axum::extract::Query<PdfQuery>, axum::extract::rejection::QueryRejection>,
    what: &str,
    load: impl FnOnce() -> Result<Option<Vec<u8>>, fieldsync_storage::StorageError> + Send + 'static,
) -> Result<Response, ApiError> {
    let options = options(&crate::http::query(asked)?)?;
    check_id(&id)?;
    let json = crate::http::blocking(load)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_report", format!("no {what} {id}")))?;
    let pdf = tokio::task::spawn_blocking(move || print(&json, &options))
        .await
        .map_err(|e| ApiError::internal("render_error", e))??;
    Ok(pdf_response(&id, pdf))
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

    use super::*;

    #[test]
    fn a_report_is_printed_with_its_json_attached() -> anyhow::Result<()> {
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
        let options = options(&PdfQuery {
            lang: Some("en".into()),
            zone: Some("+08:00".into()),
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let pdf = print(&json, &options).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(fieldsync_report_print::extract_report(&pdf)?, json);
        let mut trust = TrustStore::new();
        trust.add_branch_key(job.branch_id.clone(), key.public().clone());
        assert!(!matches!(
            trust.verify_json(&json),
            Err(fieldsync_shared::report::VerifyError::BadBranchSignature)
        ));
        assert_eq!(
            check_id("../x").map_err(|e| e.code),
            Err("invalid_report_id")
        );
        let bad_zone = super::options(&PdfQuery {
            lang: None,
            zone: Some("Mars/Olympus".into()),
        })
        .expect_err("unknown zone");
        assert_eq!(bad_zone.code, "invalid_query");
        Ok(())
    }
}
