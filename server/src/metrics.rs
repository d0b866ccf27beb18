//! Prometheus metrics, hand-rolled: a few atomic counters, gauges and histograms rendered in
//! the text exposition format at `/metrics`. Small enough that a metrics crate would cost more
//! than it saves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Role;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Which role's servers export a metric.
#[derive(Debug, Clone, Copy)]
enum Scope {
    All,
    Edge,
    HeadOffice,
}

impl Scope {
    fn includes(self, role: Role) -> bool {
        match self {
            Scope::All => true,
            Scope::Edge => role == Role::Edge,
            Scope::HeadOffice => role == Role::HeadOffice,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Gauge(&'a AtomicI64),
    Counter(&'a AtomicU64),
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub loaded_documents: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Time from a frame's arrival to the engine finishing with it.
    pub sync_latency: Histogram,
    /// Time from a storage write being queued to it being durable.
    pub storage_latency: Histogram,
    /// Edge: 1 while the link to head office is up.
    pub upstream_connected: AtomicI64,
    pub upstream_dial_failures: AtomicU64,
    /// Edge: reports head office confirmed holding, and those still waiting.
    pub upstream_delivered: AtomicU64,
    pub upstream_undelivered: AtomicI64,
    /// Edge: complaint documents with a revision head office has not confirmed.
    pub upstream_complaints_undelivered: AtomicI64,
    /// Edge: approval requests (R12, R18, R31) no manager has decided yet.
    pub approvals_waiting: AtomicI64,
    /// Head office: reports archived as verified, and reports kept aside.
    pub reports_verified: AtomicU64,
    pub reports_rejected: AtomicU64,
    /// Head office: complaint revisions archived, and complaint documents kept aside.
    pub complaints_archived: AtomicU64,
    pub complaints_rejected: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a refusal by its reason code (auth failures, bad frames, forbidden documents…).
    pub fn refused(&self, reason: &'static str) {
        let mut map = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(reason).or_default() += 1;
    }

    /// The count of refusals for one reason (tests read it).
    pub fn refusals(&self, reason: &str) -> u64 {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    /// The text exposition format, with the metrics of `role` only: an edge shows no head
    /// office counters and the reverse. `upstream_configured` is an edge's `[upstream]`.
    pub fn render(&self, role: Role, upstream_configured: bool) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let metrics: [(Scope, &str, &str, Value<'_>); 17] = [
            (
                Scope::All,
                "fieldsync_connections",
                "Open WebSocket connections.",
                Value::Gauge(&self.connections),
            ),
            (
                Scope::All,
                "fieldsync_connections_total",
                "WebSocket connections accepted.",
                Value::Counter(&self.connections_total),
            ),
            (
                Scope::Edge,
                "fieldsync_upstream_connected",
                "1 while the link to head office is up (edge).",
                Value::Gauge(&self.upstream_connected),
            ),
            (
                Scope::Edge,
                "fieldsync_upstream_dial_failures_total",
                "Failed attempts to reach head office (edge).",
                Value::Counter(&self.upstream_dial_failures),
            ),
            (
                Scope::Edge,
                "fieldsync_upstream_delivered_total",
                "Reports head office confirmed holding (edge).",
                Value::Counter(&self.upstream_delivered),
            ),
            (
                Scope::Edge,
                "fieldsync_upstream_undelivered",
                "Signed reports not yet confirmed by head office (edge).",
                Value::Gauge(&self.upstream_undelivered),
            ),
            (
                Scope::Edge,
                "fieldsync_upstream_complaints_undelivered",
                "Complaints whose latest revision head office has not confirmed (edge).",
                Value::Gauge(&self.upstream_complaints_undelivered),
            ),
            (
                Scope::HeadOffice,
                "fieldsync_complaints_archived_total",
                "Complaint revisions verified and archived (head office).",
                Value::Counter(&self.complaints_archived),
            ),
            (
                Scope::HeadOffice,
                "fieldsync_complaints_rejected_total",
                "Complaint documents kept aside (head office).",
                Value::Counter(&self.complaints_rejected),
            ),
            (
                Scope::Edge,
                "fieldsync_approvals_waiting",
                "Approval requests (R12, R18, R31) not decided yet (edge).",
                Value::Gauge(&self.approvals_waiting),
            ),
            (
                Scope::HeadOffice,
                "fieldsync_reports_verified_total",
                "Reports verified and archived (head office).",
                Value::Counter(&self.reports_verified),
            ),
            (
                Scope::HeadOffice,
                "fieldsync_reports_rejected_total",
                "Reports kept aside because a check failed (head office).",
                Value::Counter(&self.reports_rejected),
            ),
            (
                Scope::All,
                "fieldsync_loaded_documents",
                "Documents held in memory.",
                Value::Gauge(&self.loaded_documents),
            ),
            (
                Scope::All,
                "fieldsync_messages_in_total",
                "Protocol messages received.",
                Value::Counter(&self.messages_in),
            ),
            (
                Scope::All,
                "fieldsync_messages_out_total",
                "Protocol messages sent.",
                Value::Counter(&self.messages_out),
            ),
            (
                Scope::All,
                "fieldsync_bytes_in_total",
                "Bytes of protocol messages received.",
                Value::Counter(&self.bytes_in),
            ),
            (
                Scope::All,
                "fieldsync_bytes_out_total",
                "Bytes of protocol messages sent.",
                Value::Counter(&self.bytes_out),
            ),
        ];
        for (scope, name, help, value) in metrics {
            if !scope.includes(role) {
                continue;
            }
            let (kind, value) = match value {
                Value::Gauge(a) => ("gauge", a.load(Ordering::Relaxed).to_string()),
                Value::Counter(a) => ("counter", a.load(Ordering::Relaxed).to_string()),
            };
            line(name, kind, help, value);
        }
        if role == Role::Edge {
            line(
                "fieldsync_upstream_configured",
                "gauge",
                "1 when this edge has an [upstream] link to head office.",
                u8::from(upstream_configured).to_string(),
            );
        }
        self.sync_latency.render(
            &mut out,
            "fieldsync_sync_seconds",
            "Time the sync engine took per received message.",
        );
        self.storage_latency.render(
            &mut out,
            "fieldsync_storage_write_seconds",
            "Time from a storage write being queued to being durable.",
        );
        let _ = writeln!(
            out,
            "# HELP fieldsync_refusals_total Requests refused, by reason.\n# TYPE fieldsync_refusals_total counter"
        );
        let map = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (reason, n) in map.iter() {
            let _ = writeln!(out, "fieldsync_refusals_total{{reason=\"{reason}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_refusals() {
        let m = Metrics::default();
        m.connections.fetch_add(2, Ordering::Relaxed);
        m.sync_latency.observe(Duration::from_millis(3));
        m.refused("forbidden");
        m.refused("forbidden");
        let text = m.render(Role::Edge, false);
        assert!(text.contains("fieldsync_connections 2"));
        assert!(text.contains("fieldsync_sync_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("fieldsync_sync_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("fieldsync_refusals_total{reason=\"forbidden\"} 2"));
        assert_eq!(m.refusals("forbidden"), 2);
    }

    #[test]
    fn each_role_shows_its_own_metrics() {
        let m = Metrics::default();
        let edge = m.render(Role::Edge, true);
        assert!(edge.contains("fieldsync_upstream_configured 1"));
        assert!(edge.contains("fieldsync_upstream_undelivered "));
        assert!(edge.contains("fieldsync_connections "));
        assert!(!edge.contains("fieldsync_reports_verified_total"));
        assert!(!edge.contains("fieldsync_complaints_archived_total"));
        let head_office = m.render(Role::HeadOffice, false);
        assert!(head_office.contains("fieldsync_reports_verified_total 0"));
        assert!(head_office.contains("fieldsync_connections "));
        assert!(!head_office.contains("fieldsync_upstream"));
        assert!(!head_office.contains("fieldsync_approvals_waiting"));
    }
}
