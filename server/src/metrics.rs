//! Prometheus metrics through `prometheus-client`: one [`Registry`] per server process (tests
//! run several servers in one process, so nothing is global), the sync node's metrics here,
//! each role's beside its code (`edge::EdgeMetrics`, `head_office::HeadOfficeMetrics`), each
//! registering what it exports. `/metrics` answers in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A registry whose metric names all start with `fieldsync_`.
pub fn registry() -> Registry {
    Registry::with_prefix("fieldsync")
}

/// The text exposition of every metric registered.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; a metric that could not be encoded would be a bug in
    // the label types above, and the scrape shows what was written before it.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// A gauge set from a count (saturating: a count never overflows an i64 in practice).
pub fn set_count(gauge: &Gauge, count: usize) {
    gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
}

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The label of `fieldsync_refusals_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

/// What every server exports, whatever its role: connections, the sync engine's traffic and
/// latency, storage latency, refusals by reason.
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub loaded_documents: Gauge,
    /// Of those, the ones held as their saved bytes only (`limits.document_dormant`).
    pub dormant_documents: Gauge,
    /// What the documents held take, as `limits.max_document_memory_mb` counts it (bytes).
    pub document_memory: Gauge,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    /// Time from a frame's arrival to the engine finishing with it.
    sync_latency: Histogram,
    /// Time from a storage write being queued to it being durable.
    storage_latency: Histogram,
    refusals: Family<Reason, Counter>,
    /// Per worker that follows the stored documents (`sync::progress`): documents read at
    /// start (those changed since its watermark), and documents changed that it has not
    /// taken in yet, as of its last checkpoint.
    worker_read_at_start: Family<Worker, Gauge>,
    worker_behind: Family<Worker, Gauge>,
    /// Bytes the process holds from the allocator, as of the last time the hub gave free
    /// memory back (issue 17): beside the RSS, what is live and what the allocator kept.
    pub heap_in_use: Gauge,
    /// Times the hub gave the allocator's free memory back to the system.
    pub memory_released: Counter,
}

/// The label of the `fieldsync_worker_*` gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: &'static str,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        Self {
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            loaded_documents: Gauge::default(),
            dormant_documents: Gauge::default(),
            document_memory: Gauge::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            sync_latency: latency(),
            storage_latency: latency(),
            refusals: Family::default(),
            worker_read_at_start: Family::default(),
            worker_behind: Family::default(),
            heap_in_use: Gauge::default(),
            memory_released: Counter::default(),
        }
    }
}

impl SyncMetrics {
    /// New metrics, registered in `registry`.
    pub fn registered(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "connections",
            "Open WebSocket connections.",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "WebSocket connections accepted.",
            m.connections_accepted.clone(),
        );
        registry.register(
            "loaded_documents",
            "Documents held in memory.",
            m.loaded_documents.clone(),
        );
        registry.register(
            "dormant_documents",
            "Documents held in memory as their saved bytes only, idle for document_dormant.",
            m.dormant_documents.clone(),
        );
        registry.register(
            "document_memory_bytes",
            "Memory the documents held take, estimated as limits.max_document_memory_mb counts it.",
            m.document_memory.clone(),
        );
        registry.register(
            "messages_in",
            "Protocol messages received.",
            m.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Protocol messages sent.",
            m.messages_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes of protocol messages received.",
            m.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes of protocol messages sent.",
            m.bytes_out.clone(),
        );
        registry.register(
            "sync_seconds",
            "Time the sync engine took per received message.",
            m.sync_latency.clone(),
        );
        registry.register(
            "storage_write_seconds",
            "Time from a storage write being queued to being durable.",
            m.storage_latency.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused, by reason.",
            m.refusals.clone(),
        );
        registry.register(
            "worker_read_at_start",
            "Documents a worker read at start: those changed since its watermark.",
            m.worker_read_at_start.clone(),
        );
        registry.register(
            "worker_behind",
            "Documents changed that a worker had not taken in at its last checkpoint.",
            m.worker_behind.clone(),
        );
        registry.register(
            "heap_in_use_bytes",
            "Bytes held from the allocator when the hub last gave free memory back.",
            m.heap_in_use.clone(),
        );
        registry.register(
            "memory_released",
            "Times the hub gave the allocator's free memory back to the system.",
            m.memory_released.clone(),
        );
        m
    }

    /// How many documents `worker` read at start.
    pub fn worker_read_at_start(&self, worker: &'static str, count: usize) {
        set_count(
            &self.worker_read_at_start.get_or_create(&Worker { worker }),
            count,
        );
    }

    /// How many changed documents `worker` had not taken in at its last checkpoint.
    pub fn worker_behind(&self, worker: &'static str, count: usize) {
        set_count(&self.worker_behind.get_or_create(&Worker { worker }), count);
    }

    /// Counts a refusal by its reason code (auth failures, bad frames, forbidden documents…).
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The count of refusals for one reason (tests read it). Reading creates no series.
    pub fn refusals(&self, reason: &str) -> u64 {
        self.refusals
            .get(&Reason {
                reason: reason.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    /// The number of open connections.
    pub fn open_connections(&self) -> usize {
        usize::try_from(self.connections.get()).unwrap_or(0)
    }

    pub fn observe_sync(&self, took: Duration) {
        self.sync_latency.observe(took.as_secs_f64());
    }

    pub fn observe_storage(&self, took: Duration) {
        self.storage_latency.observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_refusals() {
        let mut registry = registry();
        let m = SyncMetrics::registered(&mut registry);
        m.connections.inc();
        m.connections.inc();
        m.observe_sync(Duration::from_millis(3));
        m.refused("forbidden");
        m.refused("forbidden");
        let text = render(&registry);
        assert!(text.contains("fieldsync_connections 2"), "{text}");
        assert!(
            text.contains("fieldsync_sync_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fieldsync_sync_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("fieldsync_refusals_total{reason=\"forbidden\"} 2"),
            "{text}"
        );
        assert_eq!(m.refusals("forbidden"), 2);
        assert_eq!(m.refusals("never"), 0);
        assert!(!render(&registry).contains("never"), "a read made a series");
    }
}
