//! How this node's bytes travel, and the swarm that carries them.
//!
//! Owns the transport stack and [`build_swarm`]: TCP (wrapped in libp2p's pre-shared-key
//! private network when the group has a secret), noise, yamux, DNS resolution of relay
//! addresses, and the relay client's circuits; QUIC besides TCP with the `quic` feature in
//! an open group. It decides nothing about what is sent.
//!
//! ## What a relay sees in a private group
//! pnet wraps TCP connections only; a circuit through a relay is a stream inside the
//! member's (pnet-wrapped) TCP connection to the relay, upgraded end to end with noise
//! and yamux between the two members. So the relay server of a private group must hold
//! the group secret, or no member can even connect to it, and nobody without the secret
//! can connect to the relay, reserve on it or open a circuit through it. Relayed traffic
//! between members is encrypted end to end (noise, keyed by the members' identities): the
//! relay sees who talks to whom, when, and how many bytes, never the content. A relay
//! holding the secret can itself connect to members like any member can; run it on a host
//! you trust as much as a member's device, or let it store the group's log (`--store`).

use super::NetworkConfig;
use super::behaviour::{Behaviour, CatchUpCodec, IDENTIFY_PROTOCOL, catch_up_protocol};
use libp2p::Transport as _;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::{
    PeerId, Swarm, autonat, dcutr, dns, gossipsub, identify, mdns, noise, ping, relay, rendezvous,
    request_response, tcp, yamux,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// TCP, pnet when private, noise, yamux: one authenticated, multiplexed transport.
fn tcp_transport(
    key: &libp2p::identity::Keypair,
    config: &NetworkConfig,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxError> {
    member_transport(key, config.secret.as_ref())
}

/// The TCP stack every member of a group speaks: in a private group the pre-shared-key
/// handshake (libp2p pnet) first, then noise and yamux. For programs that must reach
/// members or be reached by them with the same stack, such as `wavesync-server`; it
/// needs a tokio runtime (libp2p's TCP is tokio's here).
pub fn member_transport(
    key: &libp2p::identity::Keypair,
    secret: Option<&crate::GroupSecret>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxError> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let upgraded = match secret {
        // Private group: the pre-shared-key handshake comes first on every TCP
        // connection, before noise.
        Some(secret) => {
            let psk = secret.pre_shared_key();
            tcp.and_then(move |socket, _| libp2p::pnet::PnetConfig::new(psk).handshake(socket))
                .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(Duration::from_secs(20))
                .boxed()
        }
        None => tcp
            .upgrade(libp2p::core::upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(Duration::from_secs(20))
            .boxed(),
    };
    Ok(upgraded)
}

/// The TCP transport behind DNS resolution (for `/dns4/relay.example.org/...`). Without a
/// readable system resolver configuration (a container, a bare network namespace) it
/// falls back to the resolver library's defaults.
fn dns_tcp_transport(
    key: &libp2p::identity::Keypair,
    config: &NetworkConfig,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxError> {
    let resolved = match dns::tokio::Transport::system(tcp_transport(key, config)?) {
        Ok(transport) => transport,
        Err(err) => {
            tracing::debug!(%err, "no system DNS configuration; using the resolver's defaults");
            dns::tokio::Transport::custom(
                tcp_transport(key, config)?,
                dns::ResolverConfig::default(),
                dns::ResolverOpts::default(),
            )
        }
    };
    Ok(resolved.boxed())
}

/// Builds the swarm with every protocol of a node.
pub(super) fn build_swarm(
    keypair: libp2p::identity::Keypair,
    config: &NetworkConfig,
    received_bytes: Arc<AtomicU64>,
) -> Result<Swarm<Behaviour>, String> {
    let codec = CatchUpCodec {
        max_request_bytes: 64 << 10,
        max_response_bytes: config.page_bytes * 2 + (1 << 20),
        received_bytes,
    };
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(3600));
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    // QUIC has no pre-shared-key support: it stays off in a private group.
    #[cfg(feature = "quic")]
    if config.secret.is_none() {
        return Ok(builder
            .with_quic()
            .with_other_transport(|key| dns_tcp_transport(key, config))
            .map_err(|e| format!("TCP transport: {e}"))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| format!("relay client: {e}"))?
            .with_behaviour(|key, relay_client| behaviour(key, config, codec, relay_client))
            .map_err(|e| format!("network behaviour: {e}"))?
            .with_swarm_config(swarm_config)
            .build());
    }
    Ok(builder
        .with_other_transport(|key| dns_tcp_transport(key, config))
        .map_err(|e| format!("TCP transport: {e}"))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("relay client: {e}"))?
        .with_behaviour(|key, relay_client| behaviour(key, config, codec, relay_client))
        .map_err(|e| format!("network behaviour: {e}"))?
        .with_swarm_config(swarm_config)
        .build())
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    config: &NetworkConfig,
    codec: CatchUpCodec,
    relay_client: relay::client::Behaviour,
) -> Result<Behaviour, BoxError> {
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(config.max_message_bytes + (64 << 10))
        .validation_mode(gossipsub::ValidationMode::Strict)
        // We validate before gossipsub forwards: an invalid message goes no further.
        .validate_messages()
        .heartbeat_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| e.to_string())?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossipsub_config,
    )?;
    let catch_up = request_response::Behaviour::with_codec(
        codec,
        [(
            catch_up_protocol(&config.topic, config.secret.as_ref()),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    let peer_id = key.public().to_peer_id();
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    let relays = !config.relays.is_empty();
    let autonat = relays.then(|| {
        autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                // A relay on a private network (a test, an office) is a fine judge too.
                only_global_ips: false,
                boot_delay: Duration::from_secs(5),
                ..autonat::Config::default()
            },
        )
    });
    Ok(Behaviour {
        blocked: Default::default(),
        gossipsub,
        catch_up,
        mdns: mdns.into(),
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.to_owned(),
            key.public(),
        )),
        autonat: autonat.into(),
        rendezvous: relays
            .then(|| rendezvous::client::Behaviour::new(key.clone()))
            .into(),
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}
