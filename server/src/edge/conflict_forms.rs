//! The job page's resolve form (issue 14, point 2; issue 15's coherent merges):
//! `POST /jobs/{id}/resolve` (dispatcher, manager) calls `resolve::resolve_group`, the
//! function the API's `POST /api/jobs/{id}/resolve` calls, so the rules, the record in the
//! job and the audit entry (`merge_resolve`) are the API's. Analysts get 403.
//!
//! The form: per field a radio for each competing value (its value as the form carries it:
//! text as written, minutes as a number, money as a decimal amount, yes/no) or "another
//! value" with a text box (`conflicts::OTHER`); for a possible duplicate, a checkbox per line
//! to keep. A value that does not read (money, minutes, a quantity) is refused in words
//! (`invalid_value`), like the API's refusals (unknown group, a line that is not a
//! duplicate, nothing left to resolve), on the job page again.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use fieldsync_shared::job::doc::Chosen;
use serde::Deserialize;

use super::Edge;
use super::conflicts::{OTHER, decimals};
use super::console::job_response;
use super::forms::{Posted, actor, posted, see_other};
use super::resolve::{ResolveRequest, resolve_group};
use crate::auth::STAFF;
use crate::console::Notice;
use crate::http::error::ApiError;

/// The form route (the edge's console router gives it its state).
pub fn router() -> Router<Arc<Edge>> {
    Router::new().route("/jobs/{id}/resolve", post(resolve_post))
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
    use crate::console::i18n::Lang;
    use crate::edge::conflicts::value_of;

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
