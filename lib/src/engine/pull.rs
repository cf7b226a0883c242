//! Catch-up glue: asking peers for heads, pulling pages, serving peers' pulls.
//!
//! Decisions live in `protocol::catchup` (what to pull) and `protocol::heads` (what a
//! page may hold, how much may wait between pages, how far a head may advance); this
//! file carries them out between awaits on the database. A head advances in one way
//! only: applying a set (an empty one for a number without entries, see
//! `protocol::heads`) runs `log::advance_head_statement`, which moves a head by one and
//! only from the number just below.

use super::Command;
use super::driver::{Driver, Pending, Pull, node_of};
use crate::clock::NodeId;
use crate::log::{self, PageLimit};
use crate::protocol::attest;
use crate::protocol::catchup::{self, Need};
use crate::protocol::heads::{PULLS_PER_PEER, PageFault, PullProgress, bounded_heads};
use crate::protocol::recovery::Step;
use crate::protocol::strikes::Offense;
use crate::protocol::{
    Attestation, Cursor, Request, RequestV1, Response, ResponseV1, SyncOperation,
};
use libp2p::PeerId;
use std::collections::HashMap;

/// Signed heads statements verified per heads reply (a signature check is not free).
const MAX_VERIFIED_PER_REPLY: usize = 256;
/// Bytes of transactions held between pages for all pulls from one peer.
const PEER_CARRY_BUDGET: usize = 128 << 20;

impl Driver {
    pub(super) async fn ask_heads(&mut self, peer: PeerId) {
        let token = self.token(Pending::Heads);
        self.command(Command::Request {
            peer,
            token,
            request: Request::V1(RequestV1::Heads),
        })
        .await;
    }

    pub(super) async fn on_response(&mut self, peer: PeerId, token: u64, response: Response) {
        match (self.pending.remove(&token), response) {
            (Some(Pending::Heads), Response::V1(ResponseV1::Heads(heads))) => {
                self.prove(peer);
                // A reply without statements says nothing of holding back: final.
                self.on_heads(peer, heads, true).await;
            }
            (
                Some(Pending::Heads),
                Response::V1(ResponseV1::AttestedHeads {
                    heads,
                    attestations,
                }),
            ) => {
                self.prove(peer);
                // A peer that lists its own origin without its signed statement holds
                // numbers back (`protocol::recovery`): its head for itself may grow.
                // Its statement must be signed and cover the head it lists for itself
                // (one signature check a reply).
                let its_own = node_of(&peer);
                let listed = heads.iter().find(|(origin, _)| *origin == its_own);
                let settled = listed.is_none_or(|(_, head)| {
                    attestations.iter().any(|a| {
                        a.origin == its_own && a.seq >= *head && attest::verify(&self.group, a)
                    })
                });
                self.take_attestations(&heads, attestations);
                self.on_heads(peer, heads, settled).await;
            }
            (
                Some(Pending::Pull { origin }),
                Response::V1(ResponseV1::Page { operations, next }),
            ) => {
                self.on_page(peer, token, origin, operations, next).await;
            }
            (Some(Pending::Pull { origin }), _)
                if self
                    .pulls
                    .get(&origin)
                    .is_some_and(|pull| pull.token == token) =>
            {
                // The peer could not serve the pull: another peer's heads restart it.
                self.pulls.remove(&origin);
            }
            _ => {}
        }
    }

    /// Keeps the statements that say more than we knew about an origin the reply
    /// names, verifying at most [`MAX_VERIFIED_PER_REPLY`] of them.
    fn take_attestations(&mut self, heads: &[(NodeId, u64)], attestations: Vec<Attestation>) {
        let named: HashMap<NodeId, u64> = heads.iter().copied().collect();
        let news: Vec<Attestation> = attestations
            .into_iter()
            .filter(|a| {
                // Our own statements too: one of an earlier life proves numbers it issued
                // that this database lost (`protocol::recovery`).
                named.contains_key(&a.origin) && self.attested.says_more(a)
            })
            .take(MAX_VERIFIED_PER_REPLY)
            .collect();
        for attestation in news {
            self.attested.offer(&self.group, attestation);
        }
    }

    async fn on_heads(&mut self, peer: PeerId, heads: Vec<(NodeId, u64)>, settled: bool) {
        let heads = bounded_heads(heads);
        let ours: HashMap<NodeId, u64> = match log::heads(&self.shared.engine_conn).await {
            Ok(ours) => ours.into_iter().collect(),
            Err(err) => {
                tracing::warn!(%err, "reading heads");
                return;
            }
        };
        let me = self.shared.node_id;
        let head = ours.get(&me).copied().unwrap_or(0);
        let signed = self.attested.statement(me).map_or(0, |(seq, _)| seq);
        let step = self.recovery.on_heads(&heads, head, signed);
        self.recovery_step(Some(peer), step).await;
        {
            // After the recovery's step (a waiter reads whether our numbering is
            // confirmed), and both at once: `behind` is right when the event is read.
            let mut status = self.status();
            status.own_heads = ours.clone();
            status.record_heads(peer, heads.clone(), settled);
        }
        let mut needs = catchup::needs(&ours, &heads, me);
        // The peer's own transactions first: it attests them best.
        let its_own = node_of(&peer);
        needs.sort_by_key(|need| need.origin != its_own);
        let mut in_flight = self.pulls.values().filter(|p| p.peer == peer).count();
        for need in needs {
            if in_flight >= PULLS_PER_PEER {
                break;
            }
            // A pull of an origin from someone else gives way to the origin itself: a
            // peer that claims an origin's transactions and never serves them must not
            // hold up that origin's catch-up (its answers become stale).
            let free = self.pulls.get(&need.origin).is_none_or(|pull| {
                pull.peer != peer && need.origin == its_own && !pull.progress.from_origin
            });
            if free {
                self.start_pull(peer, need).await;
                in_flight += 1;
            }
        }
    }

    async fn start_pull(&mut self, peer: PeerId, need: Need) {
        tracing::debug!(%peer, origin = %need.origin, after = need.after, through = need.through, "catching up");
        let span = need.through.saturating_sub(need.after);
        match self.catch_ups.get_mut(&peer) {
            Some((done, total)) => {
                *total = total.saturating_add(span);
                let (done, total) = (*done, *total);
                self.status().catch_up_progress(peer, done, total);
            }
            None => {
                self.catch_ups.insert(peer, (0, span));
                self.status().catch_up_started(peer, span);
            }
        }
        let token = self.token(Pending::Pull {
            origin: need.origin,
        });
        let from_origin = node_of(&peer) == need.origin;
        self.pulls.insert(
            need.origin,
            Pull {
                peer,
                progress: PullProgress::new(
                    need.origin,
                    need.after,
                    need.through,
                    from_origin,
                    self.attested.statement(need.origin),
                ),
                token,
            },
        );
        let request = Request::V1(RequestV1::Pull {
            origin: need.origin,
            after: need.after,
            through: need.through,
            cursor: None,
        });
        self.command(Command::Request {
            peer,
            token,
            request,
        })
        .await;
    }

    async fn on_page(
        &mut self,
        peer: PeerId,
        token: u64,
        origin: NodeId,
        operations: Vec<(u64, SyncOperation)>,
        next: Option<Cursor>,
    ) {
        let Some(pull) = self.pulls.get_mut(&origin) else {
            return;
        };
        if pull.peer != peer || pull.token != token {
            // An answer to an abandoned pull.
            return;
        }
        self.shared.metrics.catch_up_page(operations.len() as u64);
        let sets = match pull.progress.page(operations, next.is_none()) {
            Ok(sets) => sets,
            Err(fault) => {
                self.pulls.remove(&origin);
                match fault {
                    PageFault::OutOfRange { seq } => {
                        tracing::warn!(%peer, %origin, seq, "catch-up stopped: a page outside the range asked for");
                        self.shared.metrics.rejected("forged_page");
                        self.count_rejected(peer);
                        self.strike(peer, Offense::Forged).await;
                    }
                    PageFault::TooLarge { seq, bytes } => tracing::warn!(
                        %peer, %origin, seq, bytes,
                        "catch-up stopped: a transaction larger than the catch-up budget"
                    ),
                }
                return;
            }
        };
        let held: usize = self
            .pulls
            .values()
            .filter(|pull| pull.peer == peer)
            .map(|pull| pull.progress.carry_bytes())
            .sum();
        if held > PEER_CARRY_BUDGET {
            tracing::warn!(%peer, %origin, held, "catch-up stopped: too much held for one peer");
            self.pulls.remove(&origin);
            return;
        }
        if let Some(cursor) = next.clone() {
            // Ask for the next page before applying this one: the peer reads it from its
            // log while we write.
            let token = self.token(Pending::Pull { origin });
            let Some(pull) = self.pulls.get_mut(&origin) else {
                return;
            };
            pull.token = token;
            let request = Request::V1(RequestV1::Pull {
                origin,
                after: pull.progress.after,
                through: pull.progress.through,
                cursor: Some(cursor),
            });
            self.command(Command::Request {
                peer,
                token,
                request,
            })
            .await;
        }
        // The page's transactions commit together: one database transaction per page.
        let applied_sets = sets.len() as u64;
        let applied = if origin == self.shared.node_id {
            crate::apply::apply_recovered_batch(&self.shared, sets).await
        } else if sets.is_empty() {
            Ok(0)
        } else {
            crate::apply::apply_remote_batch(&self.shared, sets).await
        };
        if let Err(err) = applied {
            tracing::warn!(%origin, %peer, %err, "catch-up stopped: a page could not be applied");
            self.pulls.remove(&origin);
            self.rejected_change_set(peer, &err).await;
            self.end_idle_catch_ups();
            return;
        }
        if applied_sets > 0 {
            // `peers()` counts `behind` against these: fresh before the progress event.
            self.refresh_own_heads().await;
        }
        if let Some((done, total)) = self.catch_ups.get_mut(&peer) {
            *done = done.saturating_add(applied_sets).min(*total);
            let (done, total) = (*done, *total);
            self.status().catch_up_progress(peer, done, total);
        }
        if next.is_none()
            && let Some(pull) = self.pulls.remove(&origin)
        {
            tracing::debug!(%peer, %origin, through = pull.progress.through, "caught up");
            if origin == self.shared.node_id {
                let step = self.recovery.on_pull_end(true);
                self.recovery_step(None, step).await;
            }
            self.end_idle_catch_ups();
        }
    }

    /// Reads this node's heads into the status (what `peers()` counts `behind` against).
    async fn refresh_own_heads(&mut self) {
        match log::heads(&self.shared.engine_conn).await {
            Ok(ours) => self.status().own_heads = ours.into_iter().collect(),
            Err(err) => tracing::debug!(%err, "reading heads"),
        }
    }

    /// Ends the catch-up of every peer that no pull is running from any more (finished,
    /// failed, or the peer left): reported as `SyncEvent::CatchUpFinished`.
    pub(super) fn end_idle_catch_ups(&mut self) {
        let idle: Vec<PeerId> = self
            .catch_ups
            .keys()
            .filter(|peer| !self.pulls.values().any(|pull| pull.peer == **peer))
            .copied()
            .collect();
        for peer in idle {
            if let Some((done, _)) = self.catch_ups.remove(&peer) {
                self.status().catch_up_finished(peer, done);
            }
        }
    }

    /// Carries out a step of `protocol::recovery`; `peer` is the one whose heads reply
    /// led to it.
    pub(super) async fn recovery_step(&mut self, peer: Option<PeerId>, step: Step) {
        let me = self.shared.node_id;
        let conn = &self.shared.engine_conn;
        match step {
            Step::Nothing => {}
            Step::Confirm => {
                let head = log::head(conn, me).await;
                if let Err(err) = match head {
                    Ok(head) => log::set_confirmed(conn, head).await,
                    Err(err) => Err(err),
                } {
                    tracing::warn!(%err, "recording this node's numbering as confirmed");
                }
                if let Some(feed) = &self.outbox {
                    feed.set_confirmed(true);
                }
                self.status().own_confirmed = true;
                tracing::debug!("this node's numbering is confirmed");
            }
            Step::Pull { after, through } => {
                tracing::warn!(
                    ?peer,
                    after,
                    through,
                    "a peer holds transactions of this node that its database lost \
                     (power cut, or restored from a backup): taking them back, then \
                     issuing this node's transactions since again under new numbers"
                );
                match peer {
                    Some(peer) => {
                        let need = Need {
                            origin: me,
                            after,
                            through,
                        };
                        self.start_pull(peer, need).await;
                    }
                    None => {
                        let step = self.recovery.on_pull_end(false);
                        Box::pin(self.recovery_step(None, step)).await;
                    }
                }
            }
            Step::Reissue { floor, top } => match log::reissue(conn, me, floor, top).await {
                Ok(head) => {
                    self.recovery.on_reissued(true);
                    if let Some(feed) = self.outbox.as_mut() {
                        feed.restart_after(head);
                        feed.set_confirmed(true);
                    }
                    self.status().own_confirmed = true;
                    tracing::warn!(
                        floor,
                        top,
                        head,
                        "this node's transactions since its lost ones are issued again \
                         under new numbers; peers pull them"
                    );
                }
                Err(err) => {
                    tracing::warn!(%err, "issuing this node's transactions again failed; trying again");
                    self.recovery.on_reissued(false);
                }
            },
        }
    }

    // ---- serving ----

    /// Our heads, with our signed statement and the ones we relay.
    async fn heads_reply(&self) -> Result<Response, sea_orm::DbErr> {
        let conn = &self.shared.engine_conn;
        let mut heads = log::heads(conn).await?;
        let me = self.shared.node_id;
        if let Some(floor) = self.recovery.held_back_above() {
            // Numbers above the floor are unconfirmed: not ours to announce yet.
            for (origin, seq) in &mut heads {
                if *origin == me {
                    *seq = (*seq).min(floor);
                }
            }
        }
        let issued = heads.iter().find(|(o, _)| *o == me).map_or(0, |(_, s)| *s);
        let live = self.last_with_entries(issued).await?;
        // No statement of ours while numbers are held back: it could say no more than
        // peers know, and its absence tells them our head for ourselves may still grow
        // (`WaveSyncDb::wait_until_caught_up` waits for it).
        let mut attestations: Vec<Attestation> = if self.recovery.held_back_above().is_some() {
            Vec::new()
        } else {
            attest::sign(&self.keypair, &self.group, issued, live)
                .into_iter()
                .collect()
        };
        attestations.extend(
            self.attested
                .for_origins(heads.iter().map(|(o, _)| *o).filter(|o| *o != me)),
        );
        Ok(Response::V1(ResponseV1::AttestedHeads {
            heads,
            attestations,
        }))
    }

    /// The highest of our transactions up to `issued` that still has entries in our
    /// log (0 if none).
    async fn last_with_entries(&self, issued: u64) -> Result<u64, sea_orm::DbErr> {
        log::last_seq_with_entries(&self.shared.engine_conn, self.shared.node_id, issued).await
    }

    pub(super) async fn serve(&mut self, peer: PeerId, id: u64, request: Request) {
        let conn = &self.shared.engine_conn;
        let response = match request {
            Request::V1(RequestV1::Heads) => self.heads_reply().await,
            Request::V1(RequestV1::Pull {
                origin,
                after,
                through,
                cursor,
            }) => {
                let limit = PageLimit {
                    entries: self.config.page_entries,
                    bytes: self.config.page_bytes,
                };
                let through = match self.recovery.held_back_above() {
                    Some(floor) if origin == self.shared.node_id => through.min(floor),
                    _ => through,
                };
                log::page(conn, origin, after, through, cursor.as_ref(), limit)
                    .await
                    .map(|(operations, next)| {
                        self.shared.metrics.catch_up_served(operations.len() as u64);
                        Response::V1(ResponseV1::Page { operations, next })
                    })
            }
        };
        let response = response.unwrap_or_else(|err| {
            tracing::warn!(%peer, %err, "cannot serve a catch-up request");
            Response::V1(ResponseV1::Unavailable)
        });
        self.command(Command::Respond { id, response }).await;
    }
}
