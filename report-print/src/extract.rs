//! Reading the signed report back out of a PDF, for `fieldsync verify report.pdf`.
//!
//! The PDF is parsed with lopdf (pure Rust, its clock and thread-pool features off), so a PDF
//! that went through another tool (re-saved, object streams, incremental updates) still
//! reads. What is found is the file attached as [`REPORT_ATTACHMENT`]: a file specification
//! with that name and its embedded stream, decoded within [`MAX_REPORT_BYTES`].
//!
//! Limits: only the attachment is checked, never what the pages draw. The signature proves the
//! attached report; a page redrawn by someone else is not detected here (print the report again
//! from the verified JSON to compare). Encrypted PDFs are refused.

use lopdf::{Document, Object};

use crate::REPORT_ATTACHMENT;

/// The largest signed report accepted (a report with a signature image is some tens of KB).
pub const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;

/// Why no signed report could be read from a PDF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("not a readable PDF: {0}")]
    NotPdf(String),
    #[error("the PDF is encrypted: a fieldsync report never is")]
    Encrypted,
    #[error("the PDF carries no signed report (no attachment named {REPORT_ATTACHMENT})")]
    NoReport,
    #[error(
        "the PDF carries {0} attachments named {REPORT_ATTACHMENT}: which one was signed is unclear"
    )]
    SeveralReports(usize),
    #[error("the attached report cannot be read: {0}")]
    Unreadable(String),
}

/// Whether `bytes` start like a PDF file (`%PDF-`), for tools that take a report as JSON or
/// PDF.
pub fn looks_like_pdf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"%PDF-")
}

/// The bytes of the signed report attached to `pdf`.
pub fn extract_report(pdf: &[u8]) -> Result<Vec<u8>, ExtractError> {
    if !looks_like_pdf(pdf) {
        return Err(ExtractError::NotPdf("it does not start with %PDF-".into()));
    }
    let doc = Document::load_mem(pdf).map_err(|e| ExtractError::NotPdf(e.to_string()))?;
    if doc.trailer.get(b"Encrypt").is_ok() {
        return Err(ExtractError::Encrypted);
    }
    let mut found = Vec::new();
    for object in doc.objects.values() {
        let Ok(dict) = object.as_dict() else {
            continue;
        };
        let is_filespec = dict
            .get(b"Type")
            .and_then(Object::as_name)
            .is_ok_and(|n| n == b"Filespec");
        let named = [b"UF".as_slice(), b"F".as_slice()].iter().any(|key| {
            dict.get(key)
                .and_then(Object::as_str)
                .is_ok_and(|name| name == REPORT_ATTACHMENT.as_bytes())
        });
        if is_filespec && named {
            found.push(dict);
        }
    }
    let spec = match found.as_slice() {
        [] => return Err(ExtractError::NoReport),
        [one] => *one,
        many => return Err(ExtractError::SeveralReports(many.len())),
    };
    let unreadable = |what: &str| ExtractError::Unreadable(what.to_owned());
    let ef = spec
        .get(b"EF")
        .map_err(|_| unreadable("the file specification has no /EF"))?;
    let (_, ef) = doc
        .dereference(ef)
        .map_err(|e| ExtractError::Unreadable(e.to_string()))?;
    let file = ef
        .as_dict()
        .and_then(|d| d.get(b"F"))
        .map_err(|_| unreadable("the file specification has no embedded file"))?;
    let (_, file) = doc
        .dereference(file)
        .map_err(|e| ExtractError::Unreadable(e.to_string()))?;
    let stream = file
        .as_stream()
        .map_err(|_| unreadable("the embedded file is not a stream"))?;
    let bytes = if stream.dict.get(b"Filter").is_ok() {
        stream.decompressed_content_with_limit(MAX_REPORT_BYTES)
    } else {
        stream.get_plain_content_with_limit(MAX_REPORT_BYTES)
    };
    bytes.map_err(|e| ExtractError::Unreadable(e.to_string()))
}
