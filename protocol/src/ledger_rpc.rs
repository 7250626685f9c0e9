//! What nodes exchange to keep their [evidence logs](crate::ledger) in step: head
//! announcements on gossip, and entries by hash or by frontier page point to point
//! (libp2p request-response `/agora/ledger/1`).
//!
//! ```text
//! every node ──Announce { state hash, entry count, heads, time }──▶ gossip agora/v1/ledger
//! a peer whose hash differs and that lacks a head:
//!   ──Request::Page { frontier, after, limit }──▶ ◀── Response::Page { entries, next }
//!   ──Request::Fetch(digests)──────────────────▶ ◀── Response::Entries(entries)
//! ```
//!
//! Entries travel as their signed wire bytes: the receiver verifies each one itself
//! ([`EvidenceLog::insert_bytes`](crate::ledger::EvidenceLog::insert_bytes)), so one bad
//! entry in a page costs the sender a penalty without spoiling the others. Every message is
//! one postcard value, canonical and bounded ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]);
//! counts are checked on decode.
//!
//! An announcement is one kind byte ([`KIND_ANNOUNCE`], in the registry of
//! [`crate::gossip`]) and the postcard value, under [`MAX_GOSSIP_BYTES`]. It is not signed
//! by itself: gossipsub signs every message with its origin's key, and an announcement is a
//! hint to sync, never evidence.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::gossip::{GossipError, MAX_GOSSIP_BYTES, frame, unframe};
use crate::ledger::{Cursor, Entry, Frontier, MAX_FETCH, MAX_PAGE_BYTES, MAX_PAGE_ENTRIES};
use crate::signed::{Digest, Signed};
use crate::time::Timestamp;

/// The gossip topic of ledger announcements.
pub const LEDGER_TOPIC: &str = "agora/v1/ledger";

/// The kind byte of an [`Announce`] (gossip kinds 1 and 2 are offers', 3 and 4 services').
pub const KIND_ANNOUNCE: u8 = 5;

/// Most heads one announcement lists (2 KiB of digests); beyond them it says there are more.
pub const MAX_ANNOUNCED_HEADS: usize = 64;

/// Most authors a [`Request::Page`] frontier names (about 700 KB). An asker that knows more
/// sends those with the highest seqs; the peer then also sends the other authors' entries,
/// which the asker finds it already holds.
pub const MAX_FRONTIER_AUTHORS: usize = 16_384;

/// Largest encoded [`Request`]: a page request with a full frontier (each author a key and
/// a varint seq).
pub const MAX_REQUEST_BYTES: usize = MAX_FRONTIER_AUTHORS * (32 + 10) + 128;

/// Largest encoded [`Response`]: a full page, or one entry larger than a page, with the
/// length prefixes.
pub const MAX_RESPONSE_BYTES: usize =
    MAX_PAGE_BYTES + Signed::<Entry>::MAX_WIRE_BYTES + MAX_PAGE_ENTRIES * 5 + 128;

/// "This is where my log stands": what a node announces now and then and after it accepted
/// new entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The sender's [`EvidenceLog::state_hash`](crate::ledger::EvidenceLog::state_hash).
    pub state_hash: Digest,
    /// Its number of accepted entries.
    pub entries: u64,
    /// Its heads, ascending, at most [`MAX_ANNOUNCED_HEADS`].
    pub heads: Vec<Digest>,
    /// Whether it has more heads than listed.
    pub more_heads: bool,
    /// When it was sent (so that a periodic announcement of an unchanged log is a new
    /// gossip message, not a duplicate gossipsub drops).
    pub at: Timestamp,
}

/// Why gossip bytes on [`LEDGER_TOPIC`] were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// Too large, empty, or not an announcement's kind byte.
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// The value did not decode canonically or breaks a bound.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Announce {
    /// The gossip bytes: [`KIND_ANNOUNCE`], then the value.
    ///
    /// # Errors
    /// [`EncodeError::InvalidField`] when the heads break a bound or are not ascending.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Err(reason) = self.check() {
            return Err(EncodeError::InvalidField {
                field: "heads",
                reason,
            });
        }
        let body = codec::encode(self, MAX_GOSSIP_BYTES - 1)?;
        Ok(frame(KIND_ANNOUNCE, &body))
    }

    /// Decodes gossip bytes.
    ///
    /// # Errors
    /// [`AnnounceError`] for anything but one canonical announcement within the bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, AnnounceError> {
        let (kind, rest) = unframe(bytes)?;
        if kind != KIND_ANNOUNCE {
            return Err(GossipError::UnknownKind(Some(kind)).into());
        }
        let announce: Self = codec::decode(rest, MAX_GOSSIP_BYTES - 1)?;
        announce
            .check()
            .map_err(|reason| DecodeError::InvalidField {
                field: "heads",
                reason,
            })?;
        Ok(announce)
    }

    fn check(&self) -> Result<(), String> {
        if self.heads.len() > MAX_ANNOUNCED_HEADS {
            return Err(format!(
                "{} heads, at most {MAX_ANNOUNCED_HEADS}",
                self.heads.len()
            ));
        }
        if self.heads.windows(2).any(|w| w.first() >= w.get(1)) {
            return Err("are not strictly ascending".to_owned());
        }
        Ok(())
    }
}

/// A request to a peer for entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The entries with these digests (at most [`MAX_FETCH`]).
    Fetch(Vec<Digest>),
    /// Accepted entries `have` does not cover, in canonical order, after `after` (see
    /// [`EvidenceLog::page`](crate::ledger::EvidenceLog::page)).
    Page {
        /// The asker's highest seq per author (at most [`MAX_FRONTIER_AUTHORS`]).
        have: Frontier,
        /// Resume after this position (the previous page's `next`).
        after: Option<Cursor>,
        /// Most entries wanted (the answerer caps it at [`MAX_PAGE_ENTRIES`]).
        limit: u16,
    },
}

/// A peer's answer: signed entries' wire bytes, for the asker to verify one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a [`Request::Fetch`]: the entries found, parents first.
    Entries(Vec<Vec<u8>>),
    /// The answer to a [`Request::Page`].
    Page {
        /// The entries, in canonical order.
        entries: Vec<Vec<u8>>,
        /// Ask again from here; `None` when nothing is left.
        next: Option<Cursor>,
    },
}

impl Request {
    /// Canonical encoding.
    ///
    /// # Errors
    /// [`EncodeError::InvalidField`] over a count bound, [`EncodeError::TooLong`] over
    /// [`MAX_REQUEST_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Some((field, reason)) = self.over_bound() {
            return Err(EncodeError::InvalidField { field, reason });
        }
        codec::encode(self, MAX_REQUEST_BYTES)
    }

    /// Decodes a request.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical request within the bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let req: Self = codec::decode(bytes, MAX_REQUEST_BYTES)?;
        if let Some((field, reason)) = req.over_bound() {
            return Err(DecodeError::InvalidField { field, reason });
        }
        Ok(req)
    }

    fn over_bound(&self) -> Option<(&'static str, String)> {
        match self {
            Self::Fetch(digests) if digests.len() > MAX_FETCH => Some((
                "fetch",
                format!("{} digests, at most {MAX_FETCH}", digests.len()),
            )),
            Self::Page { have, .. } if have.seqs.len() > MAX_FRONTIER_AUTHORS => Some((
                "have",
                format!(
                    "{} authors, at most {MAX_FRONTIER_AUTHORS}",
                    have.seqs.len()
                ),
            )),
            Self::Fetch(_) | Self::Page { .. } => None,
        }
    }
}

impl Response {
    /// The entries' wire bytes.
    pub fn entries(&self) -> &[Vec<u8>] {
        match self {
            Self::Entries(entries) | Self::Page { entries, .. } => entries,
        }
    }

    /// Canonical encoding.
    ///
    /// # Errors
    /// [`EncodeError::InvalidField`] over a count bound, [`EncodeError::TooLong`] over
    /// [`MAX_RESPONSE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Some((field, reason)) = self.over_bound() {
            return Err(EncodeError::InvalidField { field, reason });
        }
        codec::encode(self, MAX_RESPONSE_BYTES)
    }

    /// Decodes a response; the entries inside are still unverified bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical response within the bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let resp: Self = codec::decode(bytes, MAX_RESPONSE_BYTES)?;
        if let Some((field, reason)) = resp.over_bound() {
            return Err(DecodeError::InvalidField { field, reason });
        }
        Ok(resp)
    }

    fn over_bound(&self) -> Option<(&'static str, String)> {
        let entries = self.entries();
        let max = match self {
            Self::Entries(_) => MAX_FETCH,
            Self::Page { .. } => MAX_PAGE_ENTRIES,
        };
        if entries.len() > max {
            return Some((
                "entries",
                format!("{} entries, at most {max}", entries.len()),
            ));
        }
        entries
            .iter()
            .find(|e| e.len() > Signed::<Entry>::MAX_WIRE_BYTES)
            .map(|e| {
                (
                    "entries",
                    format!(
                        "an entry of {} bytes, at most {}",
                        e.len(),
                        Signed::<Entry>::MAX_WIRE_BYTES
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::Signer as _;
    use ed25519_dalek::SigningKey;

    fn announce(heads: usize) -> Announce {
        let mut heads: Vec<Digest> = (0..heads)
            .map(|i| Digest::of(&u64::try_from(i).unwrap().to_be_bytes()))
            .collect();
        heads.sort();
        Announce {
            state_hash: Digest::of(b"state"),
            entries: 12,
            heads,
            more_heads: false,
            at: Timestamp::from_unix_secs(1_800_000_000),
        }
    }

    #[test]
    fn announcements_round_trip_within_gossip_bounds() {
        let full = announce(MAX_ANNOUNCED_HEADS);
        let bytes = full.encode().unwrap();
        assert!(bytes.len() <= MAX_GOSSIP_BYTES, "{}", bytes.len());
        assert_eq!(bytes.first(), Some(&KIND_ANNOUNCE));
        assert_eq!(Announce::decode(&bytes).unwrap(), full);
    }

    #[test]
    fn bad_announcements_are_refused() {
        assert!(announce(MAX_ANNOUNCED_HEADS + 1).encode().is_err());
        let mut unsorted = announce(3);
        unsorted.heads.reverse();
        assert!(unsorted.encode().is_err());
        // Forged past `encode`'s checks: decode refuses them too.
        let body = codec::encode(&unsorted, MAX_GOSSIP_BYTES).unwrap();
        assert!(matches!(
            Announce::decode(&frame(KIND_ANNOUNCE, &body)),
            Err(AnnounceError::Decode(DecodeError::InvalidField { .. }))
        ));
        let good = announce(2).encode().unwrap();
        let mut other_kind = good.clone();
        other_kind[0] = 1;
        assert!(matches!(
            Announce::decode(&other_kind),
            Err(AnnounceError::Gossip(GossipError::UnknownKind(Some(1))))
        ));
        assert!(Announce::decode(&[]).is_err());
        let mut trailing = good;
        trailing.push(0);
        assert!(Announce::decode(&trailing).is_err());
    }

    #[test]
    fn requests_round_trip_and_bounds_hold() {
        let fetch = Request::Fetch(vec![Digest::of(b"a"); MAX_FETCH]);
        assert_eq!(Request::decode(&fetch.encode().unwrap()).unwrap(), fetch);
        let too_many = Request::Fetch(vec![Digest::of(b"a"); MAX_FETCH + 1]);
        assert!(too_many.encode().is_err());
        let forged = codec::encode(&too_many, MAX_REQUEST_BYTES).unwrap();
        assert!(Request::decode(&forged).is_err());

        let mut have = Frontier::default();
        for i in 0..MAX_FRONTIER_AUTHORS {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&u64::try_from(i).unwrap().to_be_bytes());
            have.seqs
                .insert(SigningKey::from_bytes(&seed).id(), u64::MAX);
        }
        assert_eq!(have.seqs.len(), MAX_FRONTIER_AUTHORS);
        let page = Request::Page {
            have,
            after: Some(Cursor {
                height: u64::MAX,
                digest: Digest::of(b"c"),
            }),
            limit: u16::MAX,
        };
        let bytes = page.encode().unwrap();
        assert!(bytes.len() <= MAX_REQUEST_BYTES);
        assert_eq!(Request::decode(&bytes).unwrap(), page);
    }

    #[test]
    fn responses_round_trip_and_bounds_hold() {
        let page = Response::Page {
            entries: vec![vec![1; MAX_PAGE_BYTES / MAX_PAGE_ENTRIES]; MAX_PAGE_ENTRIES],
            next: None,
        };
        let bytes = page.encode().unwrap();
        assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        assert_eq!(Response::decode(&bytes).unwrap(), page);
        let one_big = Response::Entries(vec![vec![2; Signed::<Entry>::MAX_WIRE_BYTES]]);
        assert_eq!(
            Response::decode(&one_big.encode().unwrap()).unwrap(),
            one_big
        );
        let too_big = Response::Entries(vec![vec![2; Signed::<Entry>::MAX_WIRE_BYTES + 1]]);
        assert!(too_big.encode().is_err());
        let forged = codec::encode(&too_big, MAX_RESPONSE_BYTES).unwrap();
        assert!(Response::decode(&forged).is_err());
        let too_many = Response::Entries(vec![vec![]; MAX_FETCH + 1]);
        assert!(too_many.encode().is_err());
    }
}
