//! The server's own swarm: circuit relay v2, rendezvous, identify, AutoNAT (answering
//! probes) and ping, on TCP wrapped in the group's pre-shared key when it has a secret.
//!
//! It serves any peer that can complete a connection; in a private group only members
//! can (pnet), so only members reserve, register or open circuits. It never reads
//! relayed bytes (members' noise sessions run end to end inside the circuits) and keeps
//! no state but reservations, circuits and registrations, all bounded.

use crate::Limits;
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, autonat, connection_limits, identify, ping, relay, rendezvous};
use std::num::NonZeroU32;
use std::time::Duration;

/// The identify protocol version of WaveSyncDB nodes (the library announces the same).
const IDENTIFY_PROTOCOL: &str = "/wavesyncdb/id/1";

/// What the server speaks.
#[derive(NetworkBehaviour)]
pub struct ServerBehaviour {
    limits: connection_limits::Behaviour,
    relay: relay::Behaviour,
    rendezvous: rendezvous::server::Behaviour,
    identify: identify::Behaviour,
    autonat: autonat::Behaviour,
    ping: ping::Behaviour,
}

/// The relay's limits: sized for sync (a catch-up of a large group must not be cut), with
/// the numbers of reservations and circuits bounded.
fn relay_config(limits: &Limits) -> relay::Config {
    let per_minute = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(60 * 60),
        reservation_rate_limiters: Vec::new(),
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: 16,
        max_circuit_duration: Duration::from_secs(limits.max_circuit_minutes * 60),
        max_circuit_bytes: limits.max_circuit_mib.saturating_mul(1 << 20),
        circuit_src_rate_limiters: Vec::new(),
    }
    // A peer that restarts or loses its network reserves again: allow that, not a flood.
    .reservation_rate_per_peer(per_minute(30), Duration::from_secs(2))
    .circuit_src_per_peer(per_minute(60), Duration::from_secs(1))
}

/// Bounds on connections: in all (`--max-connections`), half-open incoming ones (a
/// handshake flood), and per peer (a member needs one or two; circuits' ends are counted
/// on their own peers).
fn connection_limits(limits: &Limits) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.max_connections))
        .with_max_pending_incoming(Some((limits.max_connections / 8).max(16)))
        .with_max_established_per_peer(Some(8))
}

/// Errors of the relay's start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The swarm could not be built.
    #[error("building the relay's network stack: {0}")]
    Build(String),
    /// An address could not be listened on.
    #[error("cannot listen on {address}: {reason}; is the port free and the address local?")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// The cause.
        reason: String,
    },
}

/// Builds the server's swarm and listens; returns once every address is bound.
pub async fn start(
    keypair: libp2p::identity::Keypair,
    secret: Option<&wavesyncdb::GroupSecret>,
    listen: &[Multiaddr],
    external: &[Multiaddr],
    limits: &Limits,
) -> Result<(Swarm<ServerBehaviour>, Vec<Multiaddr>), RelayError> {
    let peer_id = keypair.public().to_peer_id();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| wavesyncdb::member_transport(key, secret))
        .map_err(|e| RelayError::Build(e.to_string()))?
        .with_behaviour(|key| ServerBehaviour {
            limits: connection_limits::Behaviour::new(connection_limits(limits)),
            relay: relay::Behaviour::new(peer_id, relay_config(limits)),
            rendezvous: rendezvous::server::Behaviour::new(
                // Members register for two hours and renew at half; a registration may
                // not outlive that, so throwaway identities cannot hold slots for days.
                rendezvous::server::Config::default()
                    .with_max_registration_total(10_000)
                    .with_max_ttl(2 * 60 * 60)
                    .with_max_registration_per_peer(8),
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.to_owned(),
                key.public(),
            )),
            autonat: autonat::Behaviour::new(
                peer_id,
                autonat::Config {
                    // It answers probes; it need not probe itself.
                    use_connected: false,
                    only_global_ips: false,
                    ..autonat::Config::default()
                },
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .map_err(|e| RelayError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut pending = 0;
    for address in listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| RelayError::Listen {
                address: address.clone(),
                // libp2p's `TransportError::Other` displays as nothing: say its cause.
                reason: match e {
                    libp2p::TransportError::Other(cause) => cause.to_string(),
                    other => other.to_string(),
                },
            })?;
        pending += 1;
    }
    for address in external {
        swarm.add_external_address(address.clone());
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while bound.len() < pending {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    // The relay serves only with an address to announce.
                    swarm.add_external_address(address.clone());
                    bound.push(address);
                }
                SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                    return Err(RelayError::Listen {
                        address: addresses.first().cloned().unwrap_or_else(|| listen[0].clone()),
                        reason: format!("{reason:?}"),
                    });
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(RelayError::Listen { address: listen[0].clone(), reason: error.to_string() });
                }
                _ => {}
            },
            _ = &mut deadline => {
                return Err(RelayError::Listen { address: listen[0].clone(), reason: "no address bound after 10 s".into() });
            }
        }
    }
    Ok((swarm, bound))
}

/// Serves until the swarm ends (never, unless the process is stopped).
pub async fn run(mut swarm: Swarm<ServerBehaviour>) {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                swarm.add_external_address(address.clone());
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(%peer_id, address = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                tracing::debug!(%peer_id, "disconnected");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                // In a private group: most often a peer without the secret.
                tracing::info!(%send_back_addr, %error, "refused an incoming connection");
            }
            SwarmEvent::Behaviour(ServerBehaviourEvent::Relay(event)) => {
                tracing::info!(?event, "relay");
            }
            SwarmEvent::Behaviour(ServerBehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::server::Event::PeerRegistered { peer, registration } => {
                    tracing::info!(%peer, namespace = %registration.namespace, "registered");
                }
                rendezvous::server::Event::DiscoverServed {
                    enquirer,
                    registrations,
                } => {
                    tracing::debug!(%enquirer, found = registrations.len(), "lookup served");
                }
                other => tracing::debug!(?other, "rendezvous"),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuits_outlast_libp2p_defaults_and_counts_stay_bounded() {
        let limits = Limits {
            max_circuit_minutes: 6 * 60,
            max_circuit_mib: 1024,
            max_circuits: 256,
            max_reservations: 1024,
            max_connections: 4096,
        };
        let config = relay_config(&limits);
        let default = relay::Config::default();
        assert!(config.max_circuit_duration > default.max_circuit_duration * 100);
        assert!(config.max_circuit_bytes > default.max_circuit_bytes * 1000);
        assert_eq!(config.max_circuits, 256);
        assert_eq!(config.max_reservations, 1024);
        assert!(config.max_circuits_per_peer <= 16);
        assert!(!config.reservation_rate_limiters.is_empty());
        assert!(!config.circuit_src_rate_limiters.is_empty());
    }
}
