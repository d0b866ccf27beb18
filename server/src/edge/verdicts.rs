//! What head office made of each report the branch delivered (issue 16). Delivery
//! (`upstream`, `meta`/`reports_delivered`) means head office holds the report; only its
//! verdict says whether it was archived. Every `[upstream] verdict_poll` this worker asks head
//! office (`POST /api/archive/verdicts`, the branch token, over HTTP(S) beside the sync link)
//! for the verdict on every delivered report not yet verified, keeps each answer in
//! `meta`/[`VERDICTS`], logs a rejection as an error once (an operator must act: enroll the
//! branch's key at head office, then head office verifies it again by itself), and sets the
//! `fieldsync_reports_at_head_office{verdict}` gauges. A rejected report is asked about again
//! at every poll, so a retry at head office shows here. The worker reads the delivered
//! reports and verdicts from the store once, then follows the link's deliveries
//! (`Edge::reports_delivered`) in memory; a lagged feed reads the store again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use fieldsync_shared::report::SignedReport;
use fieldsync_shared::report_doc::{Verdict, VerdictStatus};
use fieldsync_shared::time::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::TryRecvError;
use utoipa::{IntoParams, ToSchema};

use crate::auth::EVERYONE;
use crate::config::Upstream;
use crate::edge::Edge;
use crate::edge::signer::REPORTS;
use crate::edge::upstream::{DELIVERED, branch_token};
use crate::http::error::ApiError;
use crate::http::wire::{ErrorBody, Instant};
use crate::http::{blocking, query};

/// `meta` namespace of head office's verdicts: key report id, value a [`Verdict`] (JSON).
pub const VERDICTS: &str = "report_verdicts";

/// Report ids one request names (head office's limit).
const BATCH: usize = 1000;

/// Runs until aborted.
pub async fn run(state: Arc<Edge>, upstream: Upstream) {
    // Subscribed before the first read of the store, so no delivery made meanwhile is missed.
    let mut deliveries = state.reports_delivered.subscribe();
    let mut every = tokio::time::interval(upstream.verdict_poll);
    let mut tracked: Option<Tracked> = None;
    let mut last_error: Option<String> = None;
    loop {
        every.tick().await;
        let result = match &mut tracked {
            // Read the store once (and again only after missing deliveries), then follow the
            // upstream's deliveries in memory: a poll costs no scan of every report ever.
            None => Tracked::read(&state).await.map(|t| {
                tracked = Some(t);
            }),
            Some(t) => loop {
                match deliveries.try_recv() {
                    Ok(id) => {
                        t.delivered.insert(id);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break Ok(()),
                    Err(TryRecvError::Lagged(_)) => {
                        tracked = None;
                        break Ok(());
                    }
                }
            },
        };
        let result = match (result, &mut tracked) {
            (Ok(()), Some(t)) => t.poll(&state, &upstream).await,
            (result, _) => result,
        };
        match result {
            Ok(()) => last_error = None,
            Err(e) => {
                // The link's own worker reports an unreachable head office; say this once.
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "cannot ask head office for report verdicts");
                }
                last_error = Some(e);
            }
        }
    }
}

/// Every stored verdict, by report id.
fn stored(state: &Edge) -> Result<HashMap<String, Verdict>, String> {
    Ok(state
        .node
        .store
        .meta_entries(VERDICTS)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|(id, v)| Some((id, serde_json::from_slice(&v).ok()?)))
        .collect())
}

/// The worker's picture of the store: every delivered report, and the verdicts heard.
struct Tracked {
    delivered: HashSet<String>,
    known: HashMap<String, Verdict>,
}

impl Tracked {
    async fn read(state: &Arc<Edge>) -> Result<Self, String> {
        let edge = Arc::clone(state);
        tokio::task::spawn_blocking(move || {
            let delivered = edge
                .node
                .store
                .meta_entries(DELIVERED)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            Ok(Self {
                delivered,
                known: stored(&edge)?,
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn poll(&mut self, state: &Arc<Edge>, upstream: &Upstream) -> Result<(), String> {
        self.set_gauges(state);
        let asking: Vec<String> = self
            .delivered
            .iter()
            .filter(|id| {
                self.known
                    .get(*id)
                    .is_none_or(|v| v.status != VerdictStatus::Verified)
            })
            .take(BATCH)
            .cloned()
            .collect();
        if asking.is_empty() {
            return Ok(());
        }
        for verdict in ask(state, upstream, &asking).await? {
            if !asking.contains(&verdict.report_id)
                || self.known.get(&verdict.report_id) == Some(&verdict)
            {
                continue;
            }
            match verdict.status {
                VerdictStatus::Rejected => tracing::error!(
                    report = verdict.report_id,
                    code = verdict.code.as_deref().unwrap_or_default(),
                    reason = verdict.message.as_deref().unwrap_or_default(),
                    "head office rejected a report: fix the cause there (e.g. enroll this \
                     branch's key: `fieldsync branch enroll`), and it verifies the report again"
                ),
                VerdictStatus::Verified => {
                    tracing::info!(
                        report = verdict.report_id,
                        "head office archived the report"
                    )
                }
                VerdictStatus::Pending | VerdictStatus::Unknown => {}
            }
            let bytes = serde_json::to_vec(&verdict).map_err(|e| e.to_string())?;
            state
                .node
                .store
                .put_meta(VERDICTS, &verdict.report_id, bytes)
                .await
                .map_err(|e| e.to_string())?;
            self.known.insert(verdict.report_id.clone(), verdict);
        }
        self.set_gauges(state);
        Ok(())
    }

    fn set_gauges(&self, state: &Edge) {
        let mut counts: HashMap<VerdictStatus, usize> = HashMap::new();
        for id in &self.delivered {
            let status = self
                .known
                .get(id)
                .map_or(VerdictStatus::Unknown, |v| v.status);
            *counts.entry(status).or_default() += 1;
        }
        for status in [
            VerdictStatus::Verified,
            VerdictStatus::Rejected,
            VerdictStatus::Pending,
            VerdictStatus::Unknown,
        ] {
            state
                .metrics
                .set_at_head_office(status, counts.get(&status).copied().unwrap_or(0));
        }
    }
}

#[derive(Debug, Deserialize)]
struct Verdicts {
    verdicts: Vec<Verdict>,
}

async fn ask(
    state: &Edge,
    upstream: &Upstream,
    reports: &[String],
) -> Result<Vec<Verdict>, String> {
    let url = verdicts_url(&upstream.url)?;
    let token = branch_token(state, upstream)?;
    let client = fieldsync_client::ClientTls::from_optional_ca_file(upstream.ca_file.as_deref())
        .and_then(|tls| tls.http())
        .map_err(|e| e.to_string())?;
    let response = client
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "reports": reports }))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url} answered {status}: {body}"));
    }
    Ok(response
        .json::<Verdicts>()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .verdicts)
}

/// Head office's verdicts endpoint on the host of its sync URL (`ws://` → `http://`,
/// `wss://` → `https://`).
fn verdicts_url(sync_url: &str) -> Result<String, String> {
    let (scheme, rest) = if let Some(rest) = sync_url.strip_prefix("wss://") {
        ("https", rest)
    } else if let Some(rest) = sync_url.strip_prefix("ws://") {
        ("http", rest)
    } else {
        return Err(format!("[upstream] url {sync_url} is not ws:// or wss://"));
    };
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{host}/api/archive/verdicts"))
}

/// One signed report of the branch and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportEntry {
    pub report_id: String,
    pub job_id: String,
    pub signed_at: Instant,
    /// When head office confirmed holding it; absent while it waits in the outbox.
    pub delivered_at: Option<Instant>,
    /// Head office's verdict, as last heard (absent before the first answer).
    pub verdict: Option<Verdict>,
}

/// What `GET /api/reports` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    pub reports: Vec<ReportEntry>,
}

/// Query of `GET /api/reports`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Only reports with this verdict: verified, rejected, pending, unknown (delivered, no
    /// verdict yet) or undelivered.
    verdict: Option<String>,
}

/// The branch's signed reports with their delivery and head office's verdict.
#[utoipa::path(
    get,
    path = "/api/reports",
    tag = "reports",
    description = "The branch's signed reports, newest first, each with its delivery to head \
        office and head office's verdict (verified = archived). Roles: dispatcher, manager, \
        analyst.",
    params(ReportQuery),
    responses(
        (status = 200, body = ReportList),
        (status = 400, body = ErrorBody, description = "invalid_query"),
    ),
)]
pub async fn list_reports(
    State(state): State<Arc<Edge>>,
    headers: HeaderMap,
    asked: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ReportList>, ApiError> {
    state.node.authorize(&headers, EVERYONE, "read reports")?;
    let asked = query(asked)?;
    let wanted = match asked.verdict.as_deref() {
        None => None,
        Some(v @ ("verified" | "rejected" | "pending" | "unknown" | "undelivered")) => {
            Some(v.to_owned())
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "verdict {other:?}: one of verified, rejected, pending, unknown, undelivered"
                ),
            ));
        }
    };
    let edge = Arc::clone(&state);
    let (reports, delivered, verdicts) = blocking(move || {
        let store = &edge.node.store;
        Ok((
            store.meta_entries(REPORTS)?,
            store.meta_entries(DELIVERED)?,
            store.meta_entries(VERDICTS)?,
        ))
    })
    .await?;
    let delivered: HashMap<String, i64> = delivered
        .into_iter()
        .filter_map(|(id, v)| Some((id, std::str::from_utf8(&v).ok()?.parse().ok()?)))
        .collect();
    let verdicts: HashMap<String, Verdict> = verdicts
        .into_iter()
        .filter_map(|(id, v)| Some((id, serde_json::from_slice(&v).ok()?)))
        .collect();
    let mut list: Vec<ReportEntry> = reports
        .into_iter()
        .filter_map(|(id, bytes)| {
            let report: SignedReport = serde_json::from_slice(&bytes).ok()?;
            let delivered_at = delivered
                .get(&id)
                .map(|ms| Instant(Timestamp::from_millis(*ms)));
            let verdict = verdicts.get(&id).cloned();
            let standing = match (&delivered_at, &verdict) {
                (None, _) => "undelivered",
                (Some(_), None) => "unknown",
                (Some(_), Some(v)) => v.status.as_str(),
            };
            if wanted.as_deref().is_some_and(|w| w != standing) {
                return None;
            }
            Some(ReportEntry {
                job_id: report.body.job_id.to_string(),
                signed_at: Instant(report.body.signed_at),
                report_id: id,
                delivered_at,
                verdict,
            })
        })
        .collect();
    list.sort_by_key(|r| std::cmp::Reverse(r.signed_at));
    Ok(Json(ReportList { reports: list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdicts_url_is_on_head_offices_host() {
        assert_eq!(
            verdicts_url("wss://ho.example:3040/sync").as_deref(),
            Ok("https://ho.example:3040/api/archive/verdicts")
        );
        assert_eq!(
            verdicts_url("ws://127.0.0.1:9/sync").as_deref(),
            Ok("http://127.0.0.1:9/api/archive/verdicts")
        );
        assert!(verdicts_url("http://x/sync").is_err());
    }
}
