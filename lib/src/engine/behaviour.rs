//! The libp2p side of the engine: which protocols a node speaks and how bytes travel.
//!
//! Owns the [`Behaviour`] (gossipsub for live changes, request-response for catch-up, mDNS
//! for discovery on the LAN; beyond it a relay client, rendezvous, DCUtR hole punching,
//! AutoNAT, identify and ping) and the request-response [`CatchUpCodec`]. It decides
//! nothing about sync: messages are opaque, size-bounded frames here; `protocol::codec`
//! gives them meaning. The group is part of every protocol id, topic and rendezvous
//! namespace ([`group_id`], [`rendezvous_namespace`]). Only the event loop may hold the
//! `Swarm` built from it.

use crate::protocol::codec::{decode_request, decode_response, encode_request, encode_response};
use crate::protocol::{Request, Response};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, autonat, dcutr, gossipsub, identify, mdns, ping, relay,
    rendezvous, request_response,
};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Only if a group's protocol id could not be formed (it always can: it starts with `/`).
const FALLBACK_PROTOCOL: StreamProtocol = StreamProtocol::new("/wavesync/catchup/2");

/// The group's id on the wire: a SHA-256 of the topic and, in a private group, the
/// secret, so neither the topic nor the secret travels, and two groups never share an
/// id. URL-safe base64 without padding.
pub(crate) fn group_id(topic: &str, secret: Option<&crate::secret::GroupSecret>) -> String {
    let secret = secret.map(|s| s.to_hex()).unwrap_or_default();
    let preimage = format!("wavesyncdb-group/1\n{}\n{topic}\n{secret}", topic.len());
    gossipsub::Sha256Topic::new(preimage)
        .hash()
        .into_string()
        .chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// The identify protocol version WaveSyncDB nodes and servers announce.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/wavesyncdb/id/1";

/// The rendezvous namespace a group registers under on a relay server: a hash of the
/// group id with its own label, so the server learns neither the topic nor the secret,
/// and a namespace cannot be mistaken for a topic or protocol id.
pub(crate) fn rendezvous_namespace(
    topic: &str,
    secret: Option<&crate::secret::GroupSecret>,
) -> rendezvous::Namespace {
    let hashed = gossipsub::Sha256Topic::new(format!(
        "wavesyncdb-rendezvous/1\n{}",
        group_id(topic, secret)
    ))
    .hash()
    .into_string();
    // 44 characters of base64: always within rendezvous' 255-byte bound.
    rendezvous::Namespace::new(format!("wavesync/{hashed}"))
        .unwrap_or_else(|_| rendezvous::Namespace::from_static("wavesync/fallback"))
}

/// The catch-up protocol id of a group: the version and the group are part of it, so a
/// peer of another group (or version) cannot even open a catch-up stream.
pub(crate) fn catch_up_protocol(
    topic: &str,
    secret: Option<&crate::secret::GroupSecret>,
) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/wavesync/catchup/2/{}", group_id(topic, secret)))
        .unwrap_or(FALLBACK_PROTOCOL)
}

/// The gossip topic of a group.
pub(crate) fn gossip_topic(
    topic: &str,
    secret: Option<&crate::secret::GroupSecret>,
) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("wavesync/2/{}", group_id(topic, secret)))
}

/// The protocols of a WaveSyncDB node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers refused for a while after sending too many invalid messages.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub gossipsub: gossipsub::Behaviour,
    pub catch_up: request_response::Behaviour<CatchUpCodec>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Reservations on relay servers and circuits through them (inert without relays).
    pub relay_client: relay::client::Behaviour,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// Tells peers our addresses and protocols and what address they see us at (DCUtR
    /// and AutoNAT need it).
    pub identify: identify::Behaviour,
    /// Whether we are reachable from outside; only with relays.
    pub autonat: Toggle<autonat::Behaviour>,
    /// Registration and discovery of the group's members on the relays; only with relays.
    pub rendezvous: Toggle<rendezvous::client::Behaviour>,
    /// Keeps idle connections through NATs alive and notices dead ones.
    pub ping: ping::Behaviour,
}

/// Length-prefixed frames of [`Request`]s and [`Response`]s, each bounded in size.
#[derive(Clone, Debug)]
pub(crate) struct CatchUpCodec {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// Counts the bytes of the frames read (the metrics' `bytes_received`).
    pub received_bytes: Arc<AtomicU64>,
}

impl CatchUpCodec {
    fn count(&self, frame: &[u8]) {
        self.received_bytes
            .fetch_add(4 + frame.len() as u64, Ordering::Relaxed);
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes exceeds the {max}-byte bound"),
        ));
    }
    let mut frame = vec![0u8; length];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, frame: &[u8]) -> io::Result<()> {
    let length = u32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

impl request_response::Codec for CatchUpCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.max_request_bytes).await?;
        self.count(&frame);
        decode_request(&frame, self.max_request_bytes).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, self.max_response_bytes).await?;
        self.count(&frame);
        decode_response(&frame, self.max_response_bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_request(&request)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_response(&response)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_differ_by_topic_and_secret_and_never_show_them() {
        let secret = crate::secret::GroupSecret::from_bytes([7; 32]);
        let open = group_id("alpha", None);
        assert_ne!(open, group_id("beta", None));
        assert_ne!(open, group_id("alpha", Some(&secret)));
        assert_eq!(open, group_id("alpha", None));
        assert!(!open.contains("alpha"));
        assert!(!group_id("alpha", Some(&secret)).contains(&secret.to_hex()));
        let protocol = catch_up_protocol("alpha", None);
        assert!(protocol.as_ref().starts_with("/wavesync/catchup/2/"));
        assert_ne!(protocol, FALLBACK_PROTOCOL);
        let namespace = rendezvous_namespace("alpha", None);
        assert_ne!(namespace, rendezvous_namespace("alpha", Some(&secret)));
        assert_ne!(namespace, rendezvous_namespace("beta", None));
        assert!(!namespace.to_string().contains("alpha"));
        assert!(!namespace.to_string().contains(&open));
    }
}
