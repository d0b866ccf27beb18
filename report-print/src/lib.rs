//! The customer's service report (售后服务报告单, R7, R8, R13) of a fieldsync job, as a PDF to
//! hand over and as plain text, in Chinese or English.
//!
//! One renderer serves every tier: the technician's device shows the report *before* the
//! customer signs (`fieldsync-tech preview`, `Device::preview`: no signed report yet), and the
//! desk and head office print the signed one (`report_pdf`, from the signed report alone). A
//! signed PDF carries the signed report's canonical JSON as an embedded file
//! ([`REPORT_ATTACHMENT`]), so `fieldsync verify report.pdf` checks the PDF with nothing else
//! ([`extract_report`]), and a QR code with the report id and its content digest (or a
//! verification link).
//!
//! What is printed comes from [`fieldsync_shared::job::Job`] values and
//! [`fieldsync_shared::rules::charges`], never from the document directly; times are shown in
//! the zone given ([`Zone`]), money as money in the job's currency. The PDF and the text are
//! made from the same list of sections ([`content`]), so they never say different things.
//!
//! Font: WenQuanYi Micro Hei (Debian's `fonts-wqy-microhei`, Apache-2.0), committed under
//! `fonts/` and compiled in; krilla embeds only the glyphs a report uses. This crate does no
//! I/O: bytes in, bytes out.

mod content;
mod extract;
mod font;
mod pdf;
pub mod sample;
mod text;

use fieldsync_shared::job::Job;
use fieldsync_shared::report::SignedReport;

pub use extract::{ExtractError, MAX_REPORT_BYTES, extract_report, looks_like_pdf};
pub use fieldsync_shared::zone::{Zone, ZoneError};

/// The name of the embedded file that carries the signed report in a signed PDF.
pub const REPORT_ATTACHMENT: &str = "fieldsync-report.json";

/// The language of the printed words (values the technician or customer wrote stay as
/// written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// Simplified Chinese (zh-CN).
    Zh,
    /// English.
    En,
}

impl Language {
    /// `zh` (also `zh-CN`, `zh-Hans`) or `en`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "zh-hans" => Some(Language::Zh),
            "en" | "en-us" | "en-gb" => Some(Language::En),
            _ => None,
        }
    }

    /// The BCP 47 tag written into the PDF's metadata.
    pub fn tag(self) -> &'static str {
        match self {
            Language::Zh => "zh-CN",
            Language::En => "en",
        }
    }
}

/// How to print: in which language and time zone, and what the QR code of a signed report
/// points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintOptions {
    pub language: Language,
    pub zone: Zone,
    /// When set, a signed report's QR code is the link `{verify_url}{report_id}?digest=…`
    /// (e.g. head office's `https://ho.example/api/archive/reports/`); otherwise it carries
    /// `fieldsync:report:{report_id}:sha256:{content_digest}`, which a verifier compares with
    /// the report it holds.
    pub verify_url: Option<String>,
}

impl PrintOptions {
    pub fn new(language: Language, zone: Zone) -> Self {
        Self {
            language,
            zone,
            verify_url: None,
        }
    }
}

/// A printed report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    /// The PDF file.
    pub pdf: Vec<u8>,
    /// The same report as plain text (UTF-8, one field a line).
    pub text: String,
}

/// Why a report could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("the signed report is for job {report}, not job {job}")]
    WrongJob { report: String, job: String },
    #[error("the signed report cannot be read: {0}")]
    Report(String),
    #[error("the report's charges cannot be computed: {0}")]
    Charges(#[from] fieldsync_shared::rules::ChargeError),
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

/// Prints `job` (read at the heads the caller chose). With `signed`, the report is the signed
/// one: it must be this job's, it is what the page shows (its content, not `job`'s, as
/// content signed is content printed) and it is embedded in the PDF. Without, the page is
/// the preview the customer reads before signing, marked as such.
pub fn render(
    job: &Job,
    signed: Option<&SignedReport>,
    options: &PrintOptions,
) -> Result<Printed, PrintError> {
    let reported;
    let job = match signed {
        Some(report) => {
            if report.body.job_id != job.job_id {
                return Err(PrintError::WrongJob {
                    report: report.body.job_id.to_string(),
                    job: job.job_id.to_string(),
                });
            }
            reported = report
                .job()
                .map_err(|e| PrintError::Report(e.to_string()))?;
            &reported
        }
        None => job,
    };
    print(job, signed, options)
}

/// Prints a signed report from its canonical JSON alone (what the desk and head office hold:
/// `GET /api/reports/{id}`, the archive's export). The JSON is embedded as given, so
/// `fieldsync verify` on the PDF checks exactly these bytes.
pub fn report_pdf(report_json: &[u8], options: &PrintOptions) -> Result<Printed, PrintError> {
    let page = signed_page(report_json, options)?;
    let pdf = pdf::write(&page, Some(report_json), options)?;
    Ok(Printed {
        pdf,
        text: text::write(&page),
    })
}

/// The plain text of [`report_pdf`] alone, for a page that shows the report and links the
/// PDF: no PDF is written.
pub fn report_text(report_json: &[u8], options: &PrintOptions) -> Result<String, PrintError> {
    Ok(text::write(&signed_page(report_json, options)?))
}

/// What a signed report's JSON prints as.
fn signed_page(report_json: &[u8], options: &PrintOptions) -> Result<content::Page, PrintError> {
    let report: SignedReport =
        serde_json::from_slice(report_json).map_err(|e| PrintError::Report(e.to_string()))?;
    let job = report
        .job()
        .map_err(|e| PrintError::Report(e.to_string()))?;
    content::build(&job, Some(&report), options)
}

fn print(
    job: &Job,
    signed: Option<&SignedReport>,
    options: &PrintOptions,
) -> Result<Printed, PrintError> {
    let page = content::build(job, signed, options)?;
    let embedded = match signed {
        Some(report) => Some(
            report
                .to_canonical_json()
                .map_err(|e| PrintError::Report(e.to_string()))?,
        ),
        None => None,
    };
    let pdf = pdf::write(&page, embedded.as_deref(), options)?;
    Ok(Printed {
        pdf,
        text: text::write(&page),
    })
}

#[cfg(test)]
mod tests;
