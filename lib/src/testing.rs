//! Hooks for WaveSyncDB's own tests and fuzz targets: not a stable API.
//!
//! It exposes the wire encoding and the inbound checks so a test peer can send crafted
//! messages over a real swarm and a fuzzer can drive the decoder and the validation. It
//! must never offer a way around validation: everything here goes through the same code
//! as real traffic.

use crate::protocol::codec;
use crate::protocol::{ChangeSet, Gossip, GossipV1};

/// The gossip bytes of a whole change set, as a peer publishes it.
pub fn encode_live(change_set: &ChangeSet) -> Vec<u8> {
    codec::encode_gossip(&Gossip::V1(GossipV1::ChangeSet(change_set.clone())))
}

/// Runs the wire decoders on arbitrary bytes (gossip, catch-up request and response);
/// returns how many of them accepted the bytes. Never panics.
pub fn decode_any(bytes: &[u8]) -> usize {
    let max = 1 << 20;
    usize::from(codec::decode_gossip(bytes, max).is_ok())
        + usize::from(codec::decode_request(bytes, max).is_ok())
        + usize::from(codec::decode_response(bytes, max).is_ok())
}

/// A database without network, with one synced table `t` (`id` TEXT key, `n` INTEGER NOT
/// NULL, `note` TEXT, `data` BLOB, `r` REAL), into which arbitrary gossip bytes are fed
/// exactly as the engine feeds received messages: decode, validate, merge, apply.
pub struct ApplyHarness {
    db: crate::WaveSyncDb,
}

impl ApplyHarness {
    /// Opens the in-memory database and registers `t`.
    pub fn new() -> Result<ApplyHarness, crate::Error> {
        use crate::schema::{ColumnMeta, TableMeta, ValueKind};
        use sea_orm::ConnectionTrait;
        futures::executor::block_on(async {
            let db = crate::WaveSyncDbBuilder::new("sqlite::memory:", "fuzz")
                .without_network()
                .build()
                .await?;
            db.shared
                .conn
                .execute_unprepared(
                    "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL, \
                     note TEXT, data BLOB, r REAL NOT NULL)",
                )
                .await?;
            let column = |name: &str, kind, nullable| ColumnMeta {
                name: name.into(),
                kind,
                nullable,
            };
            let meta = TableMeta::new(
                "t",
                vec!["id".into()],
                vec![
                    column("id", ValueKind::Text, false),
                    column("n", ValueKind::Integer, false),
                    column("note", ValueKind::Text, true),
                    column("data", ValueKind::Blob, true),
                    column("r", ValueKind::Real, false),
                ],
            )?;
            db.shared.registry_mut().insert_synced(meta);
            Ok(ApplyHarness { db })
        })
    }

    /// Feeds `bytes` as a received gossip message; `true` if it was applied.
    pub fn apply_gossip(&self, bytes: &[u8]) -> bool {
        let Ok(Gossip::V1(GossipV1::ChangeSet(change_set))) = codec::decode_gossip(bytes, 1 << 20)
        else {
            return false;
        };
        futures::executor::block_on(self.db.apply_remote(change_set)).is_ok()
    }
}

/// Applies change sets as catch-up applies one page: all in one database transaction.
pub async fn apply_remote_batch(
    db: &crate::WaveSyncDb,
    change_sets: Vec<ChangeSet>,
) -> Result<usize, crate::Error> {
    crate::apply::apply_remote_batch(&db.shared, change_sets).await
}

/// The gossip bytes of one part of a split transaction, as a peer publishes it.
pub fn encode_part(
    origin: crate::NodeId,
    seq: u64,
    index: u32,
    count: u32,
    operations: Vec<crate::SyncOperation>,
) -> Vec<u8> {
    codec::encode_gossip(&Gossip::V1(GossipV1::Part {
        origin,
        seq,
        index,
        count,
        operations,
    }))
}

pub use scripted::{ScriptedPeer, ScriptedRequest, ScriptedResponse};

mod scripted {
    //! A peer that speaks only the catch-up protocol and answers from a script: the
    //! hostile (or merely broken) server of the catch-up tests. It goes through the real
    //! codec and the real protocol id; what it sends is checked by the receiver like any
    //! other peer's answer.

    use crate::clock::NodeId;
    use crate::engine::behaviour::{CatchUpCodec, catch_up_protocol};
    use crate::protocol::{Cursor, Request, RequestV1, Response, ResponseV1, SyncOperation};
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Multiaddr, PeerId, noise, request_response, tcp, yamux};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A catch-up request the scripted peer received.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum ScriptedRequest {
        /// "Which transactions have you applied?"
        Heads,
        /// A pull of `origin`'s range (after, through]; `continued` after the first page.
        Pull {
            /// The origin pulled.
            origin: NodeId,
            /// The puller holds everything up to here.
            after: u64,
            /// The end of the range asked for.
            through: u64,
            /// Whether this asks for a page after the first.
            continued: bool,
        },
    }

    /// What the scripted peer answers.
    #[derive(Clone, Debug)]
    pub enum ScriptedResponse {
        /// Per origin, a claimed head.
        Heads(Vec<(NodeId, u64)>),
        /// A page of operations tagged with their sequence numbers; `last` ends the pull.
        Page {
            /// The operations.
            operations: Vec<(u64, SyncOperation)>,
            /// Whether no page follows.
            last: bool,
        },
        /// "Cannot serve this."
        Unavailable,
        /// No answer at all: the request stays open until the asker gives up.
        Silent,
    }

    /// A running scripted peer; dropping it stops it.
    pub struct ScriptedPeer {
        /// Its libp2p id.
        pub peer_id: PeerId,
        /// The address to bootstrap to.
        pub address: Multiaddr,
        requests: Arc<AtomicU64>,
        stop: async_channel::Sender<()>,
    }

    impl ScriptedPeer {
        /// Starts a peer of the open group `topic` on 127.0.0.1 that answers every
        /// catch-up request with `script`.
        pub fn start(
            topic: &str,
            mut script: impl FnMut(ScriptedRequest) -> ScriptedResponse + Send + 'static,
        ) -> Result<ScriptedPeer, String> {
            let keypair = libp2p::identity::Keypair::generate_ed25519();
            let peer_id = keypair.public().to_peer_id();
            let protocol = catch_up_protocol(topic, None);
            let (stop, stopped) = async_channel::bounded::<()>(1);
            let (ready_tx, ready_rx) =
                std::sync::mpsc::sync_channel::<Result<Multiaddr, String>>(1);
            let requests = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&requests);
            std::thread::Builder::new()
                .name("wavesync-scripted-peer".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err.to_string()));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let codec = CatchUpCodec {
                            max_request_bytes: 64 << 10,
                            max_response_bytes: 64 << 20,
                            received_bytes: Arc::new(AtomicU64::new(0)),
                        };
                        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
                            .with_tokio()
                            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
                            .map_err(|e| e.to_string())
                            .and_then(|builder| {
                                builder
                                    .with_behaviour(|_| {
                                        request_response::Behaviour::with_codec(
                                            codec,
                                            [(protocol, request_response::ProtocolSupport::Full)],
                                            request_response::Config::default(),
                                        )
                                    })
                                    .map_err(|e| e.to_string())
                            });
                        let mut swarm = match swarm {
                            Ok(builder) => builder
                                .with_swarm_config(|c| {
                                    c.with_idle_connection_timeout(Duration::from_secs(3600))
                                })
                                .build(),
                            Err(err) => {
                                let _ = ready_tx.send(Err(err));
                                return;
                            }
                        };
                        let listen = "/ip4/127.0.0.1/tcp/0".parse().map_err(|_| ());
                        if let Err(err) = listen.map(|address| swarm.listen_on(address)) {
                            let _ = ready_tx.send(Err(format!("listen: {err:?}")));
                            return;
                        }
                        let mut unanswered = Vec::new();
                        loop {
                            tokio::select! {
                                event = swarm.select_next_some() => match event {
                                    SwarmEvent::NewListenAddr { address, .. } => {
                                        let _ = ready_tx.send(Ok(address));
                                    }
                                    SwarmEvent::Behaviour(request_response::Event::Message {
                                        message: request_response::Message::Request { request, channel, .. },
                                        ..
                                    }) => {
                                        counter.fetch_add(1, Ordering::Relaxed);
                                        match answer(&mut script, request) {
                                            Some(response) => {
                                                let _ = swarm.behaviour_mut().send_response(channel, response);
                                            }
                                            None => unanswered.push(channel),
                                        }
                                    }
                                    _ => {}
                                },
                                _ = stopped.recv() => break,
                            }
                        }
                    });
                })
                .map_err(|e| e.to_string())?;
            let address = ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| e.to_string())??;
            Ok(ScriptedPeer {
                peer_id,
                address,
                requests,
                stop,
            })
        }

        /// How many requests it has answered.
        pub fn requests(&self) -> u64 {
            self.requests.load(Ordering::Relaxed)
        }
    }

    impl Drop for ScriptedPeer {
        fn drop(&mut self) {
            self.stop.close();
        }
    }

    fn answer(
        script: &mut impl FnMut(ScriptedRequest) -> ScriptedResponse,
        request: Request,
    ) -> Option<Response> {
        let asked = match request {
            Request::V1(RequestV1::Heads) => ScriptedRequest::Heads,
            Request::V1(RequestV1::Pull {
                origin,
                after,
                through,
                cursor,
            }) => ScriptedRequest::Pull {
                origin,
                after,
                through,
                continued: cursor.is_some(),
            },
        };
        Some(Response::V1(match script(asked) {
            ScriptedResponse::Silent => return None,
            ScriptedResponse::Heads(heads) => ResponseV1::Heads(heads),
            ScriptedResponse::Unavailable => ResponseV1::Unavailable,
            ScriptedResponse::Page { operations, last } => {
                let next = (!last).then(|| Cursor {
                    seq: operations.last().map_or(0, |(seq, _)| *seq),
                    table: String::new(),
                    key: Vec::new(),
                    column: String::new(),
                });
                ResponseV1::Page { operations, next }
            }
        }))
    }
}

/// Writes `origin`'s head directly, as an older release did after a false heads claim
/// (it took a peer's claim as evidence): for tests that a node whose database already
/// holds such a head still takes that origin's writes. Not a network path.
pub async fn poison_head(
    db: &crate::WaveSyncDb,
    origin: crate::NodeId,
    seq: u64,
) -> Result<(), crate::Error> {
    Ok(crate::log::set_head(&db.shared.conn, origin, seq).await?)
}
