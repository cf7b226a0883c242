//! Failed connections, told in words: what libp2p reports when a dial or an incoming
//! handshake fails, turned into a [`ConnectionFailure`] the app can show.
//!
//! Owns the wording (the whole cause chain, which libp2p's own messages drop, and a hint
//! when the cause is a known mistake) and the bounded list of recent failures kept in the
//! network status. It decides nothing about retrying and never touches the swarm.

use crate::status::ConnectionFailure;
use libp2p::swarm::{DialError, ListenError};
use libp2p::{Multiaddr, PeerId, TransportError};
use std::collections::VecDeque;
use std::error::Error as StdError;

/// How many failures `sync_status()` keeps (the most recent).
pub(crate) const RECENT_FAILURES: usize = 16;

/// An error and its sources, each said once, joined by ": ".
fn chain(error: &dyn StdError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn StdError> = Some(error);
    while let Some(error) = next {
        // One line: libp2p lists several causes on lines of their own (" - cause").
        let text = error
            .to_string()
            .lines()
            .map(|line| line.trim().trim_start_matches("- "))
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // libp2p wraps a cause and often repeats it, or says nothing at all.
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    if parts.is_empty() {
        "unknown cause".to_owned()
    } else {
        parts.join(": ")
    }
}

/// What to check, for causes that come from a known mistake.
fn hint(cause: &str, private: bool) -> Option<&'static str> {
    let cause = cause.to_ascii_lowercase();
    if cause.contains("refused") {
        return Some("nothing listens there: is the peer running, and is the port right?");
    }
    if cause.contains("timed out") || cause.contains("timeout") {
        return Some(if private {
            "no answer in time: the peer may have another group secret (a private group's \
             handshake then stalls), or a firewall or NAT drops the traffic (beyond the LAN, \
             use a relay)"
        } else {
            "no answer in time: a firewall or NAT drops the traffic? Beyond the LAN, use a \
             relay"
        });
    }
    if cause.contains("unreachable") {
        return Some("no route to that address from this host");
    }
    let handshake = [
        "handshake",
        "negotiat",
        "multistream",
        "unexpected end",
        "eof",
        "noise",
    ];
    if handshake.iter().any(|word| cause.contains(word)) {
        return Some(if private {
            "the handshake failed: the peer has another group secret (or none), or is not a \
             WaveSyncDB peer"
        } else {
            "the handshake failed: the peer is in a private group (it has a group secret), or \
             is not a WaveSyncDB peer"
        });
    }
    None
}

fn worded(cause: String, private: bool) -> String {
    match hint(&cause, private) {
        Some(hint) => format!("{cause} ({hint})"),
        None => cause,
    }
}

fn transport_cause(error: &TransportError<std::io::Error>) -> String {
    match error {
        TransportError::MultiaddrNotSupported(_) => {
            "no transport of this build dials this kind of address (TCP over IPv4, IPv6 or \
             DNS; QUIC with the `quic` feature)"
                .to_owned()
        }
        TransportError::Other(source) => chain(source),
    }
}

/// A failed dial as the app sees it; `None` for failures that are not failures (a dial
/// skipped because a connection is open or being made).
pub(crate) fn outgoing(
    peer: Option<PeerId>,
    error: &DialError,
    private: bool,
) -> Option<ConnectionFailure> {
    let (address, cause) = match error {
        DialError::DialPeerConditionFalse(_) | DialError::Aborted => return None,
        DialError::Transport(attempts) => {
            let address = attempts.first().map(|(address, _)| address.clone());
            let causes: Vec<String> = match attempts.as_slice() {
                // The failure names the address already.
                [(_, error)] => vec![transport_cause(error)],
                _ => attempts
                    .iter()
                    .map(|(address, error)| format!("{address}: {}", transport_cause(error)))
                    .collect(),
            };
            (address, causes.join("; "))
        }
        DialError::WrongPeerId { obtained, address } => (
            Some(address.clone()),
            format!("the peer there is {obtained}, not the one the address names"),
        ),
        DialError::LocalPeerId { address } => (
            Some(address.clone()),
            "that address is this node itself".to_owned(),
        ),
        DialError::NoAddresses => (None, "no address is known for this peer".to_owned()),
        DialError::Denied { cause } => (None, format!("refused here: {}", chain(cause))),
    };
    Some(ConnectionFailure {
        peer,
        address,
        incoming: false,
        reason: worded(cause, private),
        at: std::time::SystemTime::now(),
    })
}

/// A failed incoming connection (its handshake, mostly) as the app sees it.
pub(crate) fn incoming(
    peer: Option<PeerId>,
    from: &Multiaddr,
    error: &ListenError,
    private: bool,
) -> Option<ConnectionFailure> {
    let cause = match error {
        ListenError::Aborted => return None,
        ListenError::Transport(error) => transport_cause(error),
        other => chain(other),
    };
    Some(ConnectionFailure {
        peer,
        address: Some(from.clone()),
        incoming: true,
        reason: worded(cause, private),
        at: std::time::SystemTime::now(),
    })
}

/// Keeps `failure` among the most recent ones.
pub(crate) fn remember(recent: &mut VecDeque<ConnectionFailure>, failure: ConnectionFailure) {
    if recent.len() == RECENT_FAILURES {
        recent.pop_front();
    }
    recent.push_back(failure);
}

/// A failed `listen_on` as the app's error, with the cause libp2p keeps out of its own
/// message (`TransportError::Other` displays as nothing).
pub(super) fn listen_error(
    address: &Multiaddr,
    error: libp2p::TransportError<std::io::Error>,
) -> crate::error::Error {
    let source = match error {
        libp2p::TransportError::MultiaddrNotSupported(_) => std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no transport of this build takes this kind of address (TCP over IPv4, IPv6 or DNS; \
             QUIC with the `quic` feature)",
        ),
        libp2p::TransportError::Other(source) => source,
    };
    crate::error::Error::Listen {
        address: address.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_cause_chain_is_said_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        // `io::Error::other` displays its inner error, and has it as source: said once.
        assert_eq!(chain(&outer), "refused");
    }

    #[test]
    fn known_mistakes_get_a_hint() {
        assert!(
            worded("Connection refused (os error 111)".into(), false)
                .contains("is the peer running")
        );
        assert!(
            worded("Handshake failed: unexpected end of file".into(), true)
                .contains("another group secret")
        );
        assert_eq!(worded("something new".into(), true), "something new");
    }

    #[test]
    fn the_list_keeps_the_most_recent() {
        let mut recent = VecDeque::new();
        for n in 0..RECENT_FAILURES + 3 {
            remember(
                &mut recent,
                ConnectionFailure {
                    peer: None,
                    address: None,
                    incoming: false,
                    reason: n.to_string(),
                    at: std::time::SystemTime::UNIX_EPOCH,
                },
            );
        }
        assert_eq!(recent.len(), RECENT_FAILURES);
        assert_eq!(recent.front().map(|f| f.reason.as_str()), Some("3"));
    }
}
