//! Known peers in the store, so a restarted node finds the network without its bootstrap list.
//!
//! [`Column::Peers`]: key = the peer's id bytes, value = [`StoredPeer`] (postcard). Bounded:
//! at most [`MAX_ADDRS`] addresses per peer, at most [`MAX_PEERS`] peers (the least recently
//! seen are dropped).

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::store::{Column, Store, StoreError};

/// Addresses kept per peer.
pub const MAX_ADDRS: usize = 8;
/// Peers kept.
pub const MAX_PEERS: usize = 512;
/// Longest address kept, in bytes.
const MAX_ADDR_BYTES: usize = 256;

/// What the store keeps about a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPeer {
    /// Dialable addresses (without the `/p2p` suffix).
    pub addrs: Vec<String>,
    /// Unix milliseconds of the last identify exchange.
    pub last_seen_ms: u64,
}

/// Whether an address is worth remembering and dialling (not a wildcard, not a relay hop).
pub fn dialable(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => !ip.is_unspecified(),
        Protocol::Ip6(ip) => !ip.is_unspecified(),
        Protocol::P2pCircuit => false,
        _ => true,
    })
}

/// Records `peer` as seen at `now_ms` with `addrs`.
///
/// # Errors
/// [`StoreError`] when the write fails.
pub fn remember(
    store: &dyn Store,
    peer: &PeerId,
    addrs: &[Multiaddr],
    now_ms: u64,
) -> Result<(), StoreError> {
    let addrs: Vec<String> = addrs
        .iter()
        .filter(|a| dialable(a))
        .map(ToString::to_string)
        .filter(|a| a.len() <= MAX_ADDR_BYTES)
        .take(MAX_ADDRS)
        .collect();
    if addrs.is_empty() {
        return Ok(());
    }
    let value = postcard::to_allocvec(&StoredPeer {
        addrs,
        last_seen_ms: now_ms,
    })
    .map_err(|e| StoreError::Encode {
        what: "peer record",
        detail: e.to_string(),
    })?;
    store.put(Column::Peers, &peer.to_bytes(), &value)
}

/// Loads known peers, most recently seen first; malformed records are deleted.
///
/// # Errors
/// [`StoreError`] when the store cannot be read.
pub fn load(store: &dyn Store) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, StoreError> {
    let mut peers = Vec::new();
    for (key, value) in store.scan_prefix(Column::Peers, b"", MAX_PEERS * 2)? {
        let parsed = PeerId::from_bytes(&key).ok().zip(
            postcard::from_bytes::<StoredPeer>(&value)
                .ok()
                .filter(|p| p.addrs.len() <= MAX_ADDRS),
        );
        match parsed {
            Some((peer, record)) => {
                let addrs = record
                    .addrs
                    .iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .collect();
                peers.push((record.last_seen_ms, peer, addrs));
            }
            None => store.delete(Column::Peers, &key)?,
        }
    }
    peers.sort_by_key(|p| core::cmp::Reverse(p.0));
    for (_, peer, _) in peers.iter().skip(MAX_PEERS) {
        store.delete(Column::Peers, &peer.to_bytes())?;
    }
    Ok(peers
        .into_iter()
        .take(MAX_PEERS)
        .map(|(_, p, a)| (p, a))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn peers_round_trip_newest_first_and_garbage_is_dropped() {
        let store = MemStore::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/7000".parse().unwrap();
        let wildcard: Multiaddr = "/ip4/0.0.0.0/tcp/7000".parse().unwrap();
        remember(&store, &a, &[addr.clone(), wildcard.clone()], 10).unwrap();
        remember(&store, &b, std::slice::from_ref(&addr), 20).unwrap();
        remember(&store, &PeerId::random(), &[wildcard], 30).unwrap();
        store.put(Column::Peers, b"junk", b"junk").unwrap();
        let loaded = load(&store).unwrap();
        assert_eq!(loaded, vec![(b, vec![addr.clone()]), (a, vec![addr])]);
        assert!(store.get(Column::Peers, b"junk").unwrap().is_none());
    }
}
