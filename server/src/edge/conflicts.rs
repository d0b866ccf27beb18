//! The job page's conflicts (issue 14, point 2; issue 15's coherent merges): each group a
//! merge left unresolved (`job::doc::competing`: the work R7/R10, a part line R10, a part
//! possibly added twice R10/R18), every competing value in plain language (money with its
//! currency, minutes, yes/no) with WHO wrote it (the technician the change names, or the
//! desk person) and WHEN (the change's time in the branch's zone); the resolutions already
//! recorded (who, when, what); and for dispatchers and managers a resolve form per group,
//! `POST /jobs/{id}/resolve`, which calls `resolve::resolve_group`, the function the API's
//! `POST /api/jobs/{id}/resolve` calls, so the rules, the record in the job and the audit
//! entry (`merge_resolve`) are the API's. Analysts read and get no form (the POST is 403).
//!
//! The form: per field a radio for each competing value (its value as the form carries it:
//! text as written, minutes as a number, money as a decimal amount, yes/no) or "another
//! value" with a text box; for a possible duplicate, a checkbox per line to keep. A value
//! that does not read (money, minutes, a quantity) is refused in words (`invalid_value`), like
//! the API's refusals (unknown group, a line that is not a duplicate, nothing left to resolve).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use fieldsync_shared::job::Job;
use fieldsync_shared::job::doc::{
    Chosen, Competing, Resolution, ResolutionRecord, Written, competing, resolutions,
};
use fieldsync_shared::time::Money;
use serde::Deserialize;

use super::Edge;
use super::console::{job_response, money};
use super::forms::{Posted, actor, posted, see_other};
use super::resolve::{ResolveRequest, resolve_group};
use crate::auth::STAFF;
use crate::console::i18n::Lang;
use crate::console::{Console, Notice};
use crate::http::error::ApiError;

/// The form route (the edge's console router gives it its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new().route("/jobs/{id}/resolve", post(resolve_post))
}

/// The value of the "another value" radio; the text box is `<field>__other`.
const OTHER: &str = "__other";

/// Who wrote a value and when, as people read it.
pub(super) struct Writer {
    pub by: String,
    pub at: String,
}

/// One competing value of a field.
pub(super) struct ValueChoice {
    /// As the form carries it.
    pub value: String,
    /// As people read it.
    pub shown: String,
    pub writers: Vec<Writer>,
}

pub(super) struct FieldView {
    /// The form's name for it (`fault_cause`, `labour_minutes`, `unit_price`, …).
    pub key: &'static str,
    pub label: &'static str,
    /// The unit of "another value" (currency, minutes), or empty.
    pub hint: String,
    pub choices: Vec<ValueChoice>,
}

pub(super) struct LineView {
    pub line: String,
    pub shown: String,
    pub writer: Writer,
}

pub(super) struct GroupView {
    pub group: String,
    /// The id the page's anchors and the tests use (`group` with `:` replaced).
    pub anchor: String,
    pub title: String,
    pub rule: &'static str,
    pub fields: Vec<FieldView>,
    pub lines: Vec<LineView>,
}

pub(super) struct ResolvedView {
    pub at: String,
    pub by: String,
    pub title: String,
    pub what: String,
}

fn field_label(key: &str) -> &'static str {
    match key {
        "fault_cause" => "fault_cause",
        "fault_category" => "fault_category",
        "solution" => "solution",
        "labour_minutes" => "labour_minutes",
        "labour_rate_per_hour" => "labour_rate",
        "part_number" => "part_number",
        "quantity" => "quantity",
        "unit_price" => "unit_price",
        _ => "under_warranty",
    }
}

fn is_money(key: &str) -> bool {
    matches!(key, "labour_rate_per_hour" | "unit_price")
}

/// Digits after the point for `currency` (as `console::money` writes it).
fn decimals(currency: &str) -> u32 {
    if matches!(currency, "JPY" | "KRW") {
        0
    } else {
        2
    }
}

/// A field's value as the form carries it, and as people read it.
fn value_of(lang: Lang, key: &str, v: &serde_json::Value, currency: &str) -> (String, String) {
    match v {
        serde_json::Value::Bool(b) => {
            let word = if *b { "yes" } else { "no" };
            (word.to_owned(), lang.t(word).to_owned())
        }
        serde_json::Value::Number(n) if is_money(key) => {
            let minor = n.as_i64().unwrap_or_default();
            let shown = money(Money(minor), currency);
            let plain = shown
                .trim_end_matches(currency)
                .trim()
                .replace(',', "")
                .to_owned();
            (plain, shown)
        }
        serde_json::Value::Number(n) if key == "labour_minutes" => {
            (n.to_string(), format!("{n} {}", lang.t("minutes_unit")))
        }
        serde_json::Value::String(s) => (s.clone(), s.clone()),
        other => (other.to_string(), other.to_string()),
    }
}

fn writer(console: &Console, lang: Lang, w: &Written) -> Writer {
    Writer {
        by: w.by.clone().unwrap_or_else(|| {
            format!(
                "{} {}",
                lang.t("unknown_writer"),
                &w.actor[..w.actor.len().min(8)]
            )
        }),
        at: w
            .at
            .map(|at| console.time(at))
            .unwrap_or_else(|| lang.t("time_unknown").to_owned()),
    }
}

fn group_title(lang: Lang, job: &Job, group: &str) -> String {
    if group == "work" {
        return lang.t("group_work").to_owned();
    }
    if let Some(line) = group.strip_prefix("part:") {
        let name = job
            .parts
            .iter()
            .find(|p| p.id.0 == line)
            .map(|p| format!("{} {}", p.part_number, p.name))
            .unwrap_or_else(|| line.to_owned());
        return format!("{} · {name}", lang.t("group_part"));
    }
    let number = group.strip_prefix("duplicate_part:").unwrap_or(group);
    format!("{} · {number}", lang.t("group_duplicate"))
}

fn line_shown(lang: Lang, job: &Job, line: &str, currency: &str) -> String {
    match job.parts.iter().find(|p| p.id.0 == line) {
        Some(p) => format!(
            "{} {} × {} · {} · {}: {}",
            p.part_number,
            p.name,
            p.quantity,
            money(p.unit_price, currency),
            lang.t("under_warranty"),
            lang.t(if p.warranty { "yes" } else { "no" })
        ),
        None => line.to_owned(),
    }
}

/// The page's view of what is unresolved in `doc` and what was resolved.
pub(super) fn views(
    console: &Console,
    lang: Lang,
    job: &Job,
    doc: &automerge::Automerge,
) -> (Vec<GroupView>, Vec<ResolvedView>) {
    let currency = job.billing.currency.as_str();
    let groups = competing(doc)
        .into_iter()
        .map(|c: Competing| {
            let u = &c.unresolved;
            let fields = c
                .values
                .iter()
                .map(|f| {
                    let mut choices: Vec<ValueChoice> = Vec::new();
                    for w in &f.values {
                        let (value, shown) = value_of(lang, f.key, &w.value, currency);
                        let who = writer(console, lang, w);
                        match choices.iter_mut().find(|c| c.value == value) {
                            Some(c) => c.writers.push(who),
                            None => choices.push(ValueChoice {
                                value,
                                shown,
                                writers: vec![who],
                            }),
                        }
                    }
                    FieldView {
                        key: f.key,
                        label: lang.t(field_label(f.key)),
                        hint: if is_money(f.key) {
                            currency.to_owned()
                        } else if f.key == "labour_minutes" {
                            lang.t("minutes_unit").to_owned()
                        } else if f.key == "warranty" {
                            format!("{} / {}", lang.t("yes"), lang.t("no"))
                        } else {
                            String::new()
                        },
                        choices,
                    }
                })
                .collect();
            let lines = c
                .added
                .iter()
                .map(|l| LineView {
                    line: l.line.0.clone(),
                    shown: line_shown(lang, job, &l.line.0, currency),
                    writer: writer(console, lang, &l.added),
                })
                .collect();
            GroupView {
                group: u.group.clone(),
                anchor: format!("group-{}", u.group.replace([':', ' '], "-")),
                title: group_title(lang, job, &u.group),
                rule: u.rule,
                fields,
                lines,
            }
        })
        .collect();
    let resolved = resolutions(doc)
        .iter()
        .map(|r| resolved_view(console, lang, job, r))
        .collect();
    (groups, resolved)
}

fn resolved_view(console: &Console, lang: Lang, job: &Job, r: &ResolutionRecord) -> ResolvedView {
    let currency = job.billing.currency.as_str();
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| lang.t("cleared").to_owned());
    let what = match &r.resolution {
        Resolution::Work {
            fault_cause,
            fault_category,
            solution,
            labour,
        } => format!(
            "{}: {} · {}: {} · {}: {} · {}: {} {} · {}: {}",
            lang.t("fault_cause"),
            text(fault_cause),
            lang.t("fault_category"),
            text(fault_category),
            lang.t("solution"),
            text(solution),
            lang.t("labour_minutes"),
            labour.minutes,
            lang.t("minutes_unit"),
            lang.t("labour_rate"),
            money(labour.rate_per_hour, currency),
        ),
        Resolution::Part {
            part_number,
            quantity,
            unit_price,
            warranty,
            ..
        } => format!(
            "{}: {part_number} · {}: {quantity} · {}: {} · {}: {}",
            lang.t("part_number"),
            lang.t("quantity"),
            lang.t("unit_price"),
            money(*unit_price, currency),
            lang.t("under_warranty"),
            lang.t(if *warranty { "yes" } else { "no" }),
        ),
        Resolution::DuplicatePart { keep, .. } => format!(
            "{}: {}",
            lang.t("lines_kept"),
            keep.iter()
                .map(|l| line_shown(lang, job, &l.0, currency))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    ResolvedView {
        at: console.time(r.at),
        by: r.by.clone(),
        title: group_title(lang, job, &r.group),
        what,
    }
}

/// The resolve form as posted: repeated keys (`keep`) kept.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct ResolveForm(Vec<(String, String)>);

impl ResolveForm {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Posted for ResolveForm {
    fn csrf(&self) -> &str {
        self.get("csrf").unwrap_or_default()
    }
}

fn invalid_value(key: &str, value: &str, wanted: &str) -> ApiError {
    ApiError::bad_request("invalid_value", format!("{key}: {value:?} is not {wanted}"))
}

/// An amount typed as a decimal (`120`, `120.5`, `1,234.50`) in minor units of `currency`.
fn parse_money(key: &str, typed: &str, currency: &str) -> Result<i64, ApiError> {
    let cleaned: String = typed
        .trim()
        .trim_end_matches(currency)
        .trim()
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let wrong = || invalid_value(key, typed, &format!("an amount in {currency}"));
    let places = decimals(currency);
    let (whole, frac) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if whole.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > places as usize
    {
        return Err(wrong());
    }
    let whole: i64 = whole.parse().map_err(|_| wrong())?;
    let mut frac_minor: i64 = 0;
    if places > 0 {
        let padded = format!("{frac:0<width$}", width = places as usize);
        frac_minor = padded.parse().map_err(|_| wrong())?;
    }
    whole
        .checked_mul(10i64.pow(places))
        .and_then(|m| m.checked_add(frac_minor))
        .ok_or_else(wrong)
}

/// What the form chose, as the API's `Chosen` values.
fn chosen(form: &ResolveForm, group: &str, currency: &str) -> Result<Chosen, ApiError> {
    let mut c = Chosen::default();
    if group.starts_with("duplicate_part:") {
        c.keep = Some(
            form.0
                .iter()
                .filter(|(k, _)| k == "keep")
                .map(|(_, v)| v.clone())
                .collect(),
        );
        return Ok(c);
    }
    let keys: &[&str] = if group == "work" {
        &[
            "fault_cause",
            "fault_category",
            "solution",
            "labour_minutes",
            "labour_rate_per_hour",
        ]
    } else {
        &["part_number", "quantity", "unit_price", "warranty"]
    };
    for key in keys {
        let Some(picked) = form.get(key) else {
            continue;
        };
        let typed = if picked == OTHER {
            form.get(&format!("{key}{OTHER}")).unwrap_or_default()
        } else {
            picked
        };
        let number = |wanted: &str| {
            typed
                .trim()
                .parse::<u32>()
                .map_err(|_| invalid_value(key, typed, wanted))
        };
        match *key {
            "fault_cause" => c.fault_cause = Some(typed.to_owned()),
            "fault_category" => c.fault_category = Some(typed.to_owned()),
            "solution" => c.solution = Some(typed.to_owned()),
            "part_number" => c.part_number = Some(typed.trim().to_owned()),
            "labour_minutes" => c.labour_minutes = Some(number("a number of minutes")?),
            "quantity" => c.quantity = Some(number("a quantity")?),
            "labour_rate_per_hour" => {
                c.labour_rate_per_hour = Some(parse_money(key, typed, currency)?)
            }
            "unit_price" => c.unit_price = Some(parse_money(key, typed, currency)?),
            _ => {
                c.warranty = Some(match typed.trim().to_lowercase().as_str() {
                    "yes" | "true" | "是" => true,
                    "no" | "false" | "否" => false,
                    _ => return Err(invalid_value(key, typed, "yes or no")),
                })
            }
        }
    }
    Ok(c)
}

/// `POST /jobs/{id}/resolve` (dispatcher, manager): one group resolved as the form chose.
async fn resolve_post(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ResolveForm>, FormRejection>,
) -> Response {
    let path = format!("/jobs/{id}");
    let (signed, form) = match posted(&edge, &headers, &path, STAFF, form).await {
        Ok(posted) => posted,
        Err(answer) => return answer,
    };
    let lang = signed.user.lang;
    let group = form.get("group").unwrap_or_default().to_owned();
    let outcome = async {
        let currency = currency_of(&edge, &id).await?;
        let values = chosen(&form, &group, &currency)?;
        resolve_group(
            &edge,
            &actor(&signed),
            &id,
            ResolveRequest {
                group: group.clone(),
                values,
            },
        )
        .await
    }
    .await;
    match outcome {
        Ok(_) => see_other(&format!("/jobs/{id}?done=resolved")),
        Err(e) => {
            let notice = Notice::refused(lang, &e);
            job_response(&edge, &signed, &id, e.status, Some(notice)).await
        }
    }
}

/// The job's currency (money typed on the form is in it); an unknown job is the API's 404.
async fn currency_of(edge: &Edge, id: &str) -> Result<String, ApiError> {
    let job_id = crate::http::parse_job_id(id)?;
    if edge.node.registry_read().job(&job_id).is_none() {
        return Err(ApiError::not_found(
            "unknown_job",
            format!("no job {job_id} at this branch"),
        ));
    }
    let doc = edge
        .node
        .load_document(job_id)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("no job {job_id} stored")))?;
    let job = fieldsync_shared::job::doc::read_job(&doc)
        .map_err(|e| ApiError::internal("document_error", e))?;
    Ok(job.billing.currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_typed_on_the_form_reads_in_minor_units() {
        assert_eq!(parse_money("unit_price", "120", "CNY").ok(), Some(12000));
        assert_eq!(
            parse_money("unit_price", "1,234.5", "CNY").ok(),
            Some(123_450)
        );
        assert_eq!(
            parse_money("unit_price", "25.00 CNY", "CNY").ok(),
            Some(2500)
        );
        assert_eq!(parse_money("unit_price", "1500", "JPY").ok(), Some(1500));
        for bad in ["", "-1", "1.234", "ten", "1.5.0", "15.5"] {
            let currency = if bad == "15.5" { "JPY" } else { "CNY" };
            let e = parse_money("unit_price", bad, currency).expect_err(bad);
            assert_eq!(e.code, "invalid_value");
        }
    }

    #[test]
    fn the_value_a_radio_carries_reads_back_as_written() {
        let (value, shown) = value_of(Lang::En, "unit_price", &serde_json::json!(123_450), "CNY");
        assert_eq!(shown, "1,234.50 CNY");
        assert_eq!(parse_money("unit_price", &value, "CNY").ok(), Some(123_450));
        let (value, shown) = value_of(Lang::En, "warranty", &serde_json::json!(true), "CNY");
        assert_eq!((value.as_str(), shown.as_str()), ("yes", "Yes"));
        let (value, _) = value_of(Lang::En, "labour_minutes", &serde_json::json!(45), "CNY");
        assert_eq!(value, "45");
    }
}
