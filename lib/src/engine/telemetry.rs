//! libp2p's own metrics (feature `prometheus`): the registry the event loop records swarm
//! and protocol events into, read by `WaveSyncDb::encode_metrics`.
//!
//! Owns the registry and libp2p's recorders. Without the feature it is empty and every
//! call is a no-op, so the event loop records without `cfg` of its own. Recording only
//! counts; it must never decide anything or wait on a reader.

use super::behaviour::BehaviourEvent;
use libp2p::swarm::SwarmEvent;

/// Where swarm events are counted (shared between the event loop and the handle).
#[derive(Clone, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "prometheus")]
    inner: std::sync::Arc<Recorders>,
}

#[cfg(feature = "prometheus")]
struct Recorders {
    registry: std::sync::Mutex<prometheus_client::registry::Registry>,
    metrics: libp2p::metrics::Metrics,
}

#[cfg(feature = "prometheus")]
impl Default for Recorders {
    fn default() -> Recorders {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = libp2p::metrics::Metrics::new(&mut registry);
        Recorders {
            registry: std::sync::Mutex::new(registry),
            metrics,
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Counts `event` (and the protocol event inside it, for the protocols libp2p's
    /// metrics know).
    #[cfg_attr(not(feature = "prometheus"), allow(unused_variables))]
    pub(crate) fn record(&self, event: &SwarmEvent<BehaviourEvent>) {
        #[cfg(feature = "prometheus")]
        {
            use libp2p::metrics::Recorder;
            let metrics = &self.inner.metrics;
            metrics.record(event);
            match event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => metrics.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => metrics.record(e),
                _ => {}
            }
        }
    }

    /// The registry libp2p's metrics live in.
    #[cfg(feature = "prometheus")]
    pub(crate) fn registry(
        &self,
    ) -> std::sync::MutexGuard<'_, prometheus_client::registry::Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
