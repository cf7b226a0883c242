//! The Prometheus exporter (feature `prometheus`): [`WaveSyncDb::encode_metrics`].
//!
//! Owns the OpenMetrics names of the sync counters ([`crate::MetricsSnapshot`], read at
//! each scrape) and puts them in front of libp2p's own metrics, which the engine's event
//! loop records into its registry (`libp2p-metrics`). It only reads counters; it never
//! serves HTTP (the app does, with whatever server it has) and never holds a lock the
//! engine waits on longer than one encoding.

use crate::connection::WaveSyncDb;
use crate::metrics::MetricsSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

/// The sync counters at one moment, as a collector.
#[derive(Debug)]
struct Snapshot(MetricsSnapshot);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let counters: [(&str, &str, u64); 9] = [
            (
                "wavesync_local_change_sets",
                "Local transactions committed with synced writes",
                m.local_change_sets,
            ),
            (
                "wavesync_remote_change_sets_applied",
                "Remote change sets applied (duplicates included)",
                m.remote_change_sets_applied,
            ),
            (
                "wavesync_remote_rows_changed",
                "Rows inserted, updated or deleted here by remote changes",
                m.remote_rows_changed,
            ),
            (
                "wavesync_gossip_published",
                "Gossip messages published",
                m.gossip_published,
            ),
            (
                "wavesync_gossip_received",
                "Gossip messages received",
                m.gossip_received,
            ),
            (
                "wavesync_catch_up_pages_received",
                "Catch-up pages received from peers",
                m.catch_up_pages_received,
            ),
            (
                "wavesync_catch_up_operations_received",
                "Operations received through catch-up",
                m.catch_up_operations_received,
            ),
            (
                "wavesync_catch_up_operations_served",
                "Operations served to peers through catch-up",
                m.catch_up_operations_served,
            ),
            (
                "wavesync_received_bytes",
                "Sync payload bytes received from peers (gossip and catch-up)",
                m.bytes_received,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "wavesync_rejected",
            "Remote changes rejected or set aside, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, count) in &m.rejected {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl WaveSyncDb {
    /// The sync counters and libp2p's metrics in the OpenMetrics text format, for a
    /// Prometheus scrape endpoint the app serves (`Content-Type:
    /// application/openmetrics-text; version=1.0.0; charset=utf-8`). Sync counters are
    /// named `wavesync_*_total`, libp2p's `libp2p_*` (connections, gossipsub, identify,
    /// ping, hole punching). Feature `prometheus`.
    pub fn encode_metrics(&self) -> String {
        let mut ours = Registry::default();
        ours.register_collector(Box::new(Snapshot(self.metrics())));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &ours).is_err() {
            tracing::warn!("encoding the sync counters failed");
        }
        if let Some(engine) = &self.engine {
            // One `# EOF`, at the very end.
            if let Some(body) = text.strip_suffix("# EOF\n") {
                text.truncate(body.len());
            }
            let registry = engine.telemetry.registry();
            if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                tracing::warn!("encoding libp2p's metrics failed");
            }
        }
        text
    }
}
