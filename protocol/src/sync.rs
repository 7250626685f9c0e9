//! Catch-up between two nodes' sequenced books, written once for every book that has one:
//! the offer book ([`crate::gossip::SyncRequest`] on `/agora/offer-sync/2`) and the
//! directory of published services ([`crate::service::sync`] on `/agora/service-sync/1`).
//!
//! ```text
//! asker ── PageRequest { after: cursor, limit, digest of its book (first page),
//!                        held: the asker's own (key, seq) after the cursor } ──▶ peer
//!       ◀── PageResponse { entries the asker lacks or holds older (signed wire bytes),
//!                          withdrawals (first page), next } ──
//!       verify each entry like gossip, apply to the book; ask again after `next`
//! ```
//!
//! - A page holds at most [`MAX_SYNC_PAGE`] entries, unexpired, in key order after the
//!   cursor; the first page also carries the newest signed withdrawals the peer remembers
//!   ([`Remembered`]), so a node that was cut off drops withdrawn entries at once.
//! - A first request carries the asker's [`digest`]: equal books cost one empty answer.
//! - Only the difference travels: a request lists what the asker holds after its cursor
//!   ([`PageRequest::held`], at most [`MAX_SYNC_HELD`] keys with their sequence numbers),
//!   and the page leaves out every entry the asker holds at the same or a newer sequence
//!   number. Books that differ in a few entries exchange those entries and the lists, not
//!   the whole book: periodic anti-entropy between busy books costs what changed since.
//!   A request listing nothing ([`PageRequest::first`], [`PageRequest::after`]) gets
//!   every entry, as from an empty book.
//! - Entries and withdrawals travel as their signers' wire bytes: the asker verifies each
//!   ([`PageResponse::verified_entries`]), so a peer can withhold but never forge.
//! - Requests and answers are bounded before anything is allocated ([`Kind::MAX_RESPONSE_BYTES`],
//!   [`MAX_SYNC_REQUEST_BYTES`]).
//!
//! A [`Kind`] names what one book pages: its cursor (the key of the last entry sent), its
//! signed entry and its signed withdrawal.

use core::fmt::Debug;
use core::time::Duration;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::seq_book::Sequenced;
use crate::signed::{Digest, Signed, SignedKind, Verifier};
use crate::time::Timestamp;

/// Most entries (and, on a first page, withdrawals) in one page.
pub const MAX_SYNC_PAGE: u16 = 64;

/// Most held entries an asker lists in one request ([`PageRequest::held`]).
pub const MAX_SYNC_HELD: u16 = 128;

/// Largest encoded cursor (a book's key) of any kind: an offer's provider is 32 bytes, a
/// service's (owner, lease, port) at most 67.
pub const MAX_SYNC_CURSOR_BYTES: usize = 80;

/// Largest encoded [`PageRequest`] of any kind: the cursor, limit and digest, and a full
/// list of held entries (each a cursor and a sequence number of at most 10 bytes).
pub const MAX_SYNC_REQUEST_BYTES: usize =
    128 + MAX_SYNC_HELD as usize * (MAX_SYNC_CURSOR_BYTES + 10);

/// What one book's sync pages carry.
pub trait Kind {
    /// Where a page resumes: the key of the previous page's last entry.
    type Cursor: Copy + Ord + Debug + Serialize + DeserializeOwned;
    /// A signed entry of the book.
    type Entry: SignedKind;
    /// A signed withdrawal of an entry.
    type Withdrawal: SignedKind;
    /// Largest encoded [`PageResponse`]: a full page of the largest entries and withdrawals.
    const MAX_RESPONSE_BYTES: usize = MAX_SYNC_PAGE as usize
        * (Signed::<Self::Entry>::MAX_WIRE_BYTES
            + 3
            + Signed::<Self::Withdrawal>::MAX_WIRE_BYTES
            + 2)
        + 64;
}

/// An entry the asker already holds: its key and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held<C> {
    /// The entry's key.
    pub key: C,
    /// The sequence number held.
    pub seq: u64,
}

/// Asks a peer for one page of its book, in key order after a cursor, leaving out what
/// the asker already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct PageRequest<K: Kind> {
    /// Start after this key (the previous page's `next`); `None` from the beginning.
    pub after: Option<K::Cursor>,
    /// Most entries wanted (capped at [`MAX_SYNC_PAGE`] by the answering side).
    pub limit: u16,
    /// The asker's [`digest`]; when it equals the answerer's, the answer is an empty page
    /// (nothing to catch up on), which keeps periodic anti-entropy cheap.
    pub digest: Option<Digest>,
    /// The asker's own entries after `after`, in increasing key order, at most
    /// [`MAX_SYNC_HELD`]: the page leaves out every entry the asker holds at the same or a
    /// newer sequence number.
    pub held: Vec<Held<K::Cursor>>,
    /// Whether `held` lists every entry the asker holds after `after`. When not, the page
    /// ends at the last key listed (its `next` resumes there, and the asker lists the
    /// following entries in its next request); `held` is then not empty.
    pub held_all: bool,
}

/// One page of a peer's book, each entry as its signer signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct PageResponse<K: Kind> {
    /// Signed entries' wire bytes; the receiver verifies each like gossip.
    pub entries: Vec<Vec<u8>>,
    /// Signed withdrawals the peer still remembers (first page only, newest first), so a
    /// node that missed one while cut off drops the entry now rather than at its expiry.
    pub withdrawals: Vec<Vec<u8>>,
    /// Cursor for the next page, `None` at the end.
    pub next: Option<K::Cursor>,
}

impl<K: Kind> PageRequest<K> {
    /// The first request of a round: from the beginning, a full page, with the asker's
    /// digest, listing nothing held (the answer is the whole book unless the digests are
    /// equal; [`PageRequest::holding`] asks for the difference only).
    pub fn first(digest: Digest) -> Self {
        Self {
            after: None,
            limit: MAX_SYNC_PAGE,
            digest: Some(digest),
            held: Vec::new(),
            held_all: true,
        }
    }

    /// The request for the page after `cursor`, listing nothing held.
    pub fn after(cursor: K::Cursor) -> Self {
        Self {
            after: Some(cursor),
            limit: MAX_SYNC_PAGE,
            digest: None,
            held: Vec::new(),
            held_all: true,
        }
    }

    /// The request for the page after `after` (from the beginning for `None`, with the
    /// asker's `digest` there) from an asker whose entries after `after` are `held`, in
    /// increasing key order: the first [`MAX_SYNC_HELD`] are listed.
    pub fn holding(
        after: Option<K::Cursor>,
        digest: Option<Digest>,
        held: impl IntoIterator<Item = Held<K::Cursor>>,
    ) -> Self {
        let mut held = held.into_iter();
        let mut listed = Vec::with_capacity(usize::from(MAX_SYNC_HELD));
        listed.extend(held.by_ref().take(usize::from(MAX_SYNC_HELD)));
        let held_all = listed.len() < usize::from(MAX_SYNC_HELD) || held.next().is_none();
        Self {
            after,
            limit: MAX_SYNC_PAGE,
            digest: if after.is_none() { digest } else { None },
            held: listed,
            held_all,
        }
    }

    /// Canonical encoding.
    ///
    /// # Errors
    /// [`EncodeError::InvalidField`] for a `held` list that is too long, out of order or
    /// (with `held_all` false) empty; [`EncodeError`] otherwise does not happen.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Some(reason) = self.held_error() {
            return Err(EncodeError::InvalidField {
                field: "held",
                reason,
            });
        }
        codec::encode(self, MAX_SYNC_REQUEST_BYTES)
    }

    /// The length of [`PageRequest::encode`]'s bytes, counted without encoding.
    pub fn encoded_len(&self) -> usize {
        // Serialising into a counter cannot fail; the bound is the worst case.
        codec::encoded_len(self).unwrap_or(MAX_SYNC_REQUEST_BYTES)
    }

    /// Decodes a request.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical request whose `held` list is at most
    /// [`MAX_SYNC_HELD`] keys, increasing, after `after`, and not empty unless `held_all`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let req: Self = codec::decode(bytes, MAX_SYNC_REQUEST_BYTES)?;
        if let Some(reason) = req.held_error() {
            return Err(DecodeError::InvalidField {
                field: "held",
                reason,
            });
        }
        Ok(req)
    }

    /// What is wrong with the `held` list, if anything.
    fn held_error(&self) -> Option<String> {
        if self.held.len() > usize::from(MAX_SYNC_HELD) {
            return Some(format!(
                "{} entries, at most {MAX_SYNC_HELD}",
                self.held.len()
            ));
        }
        if !self.held_all && self.held.is_empty() {
            return Some("empty, but not all the asker holds".to_owned());
        }
        let mut previous = self.after;
        for (i, h) in self.held.iter().enumerate() {
            if previous.is_some_and(|p| h.key <= p) {
                return Some(format!("entry {i} is not after the one before it"));
            }
            previous = Some(h.key);
        }
        None
    }

    /// The key where a page for this request stops: the last key listed, unless the list
    /// is all the asker holds.
    fn bound(&self) -> Option<K::Cursor> {
        if self.held_all {
            None
        } else {
            self.held.last().map(|h| h.key)
        }
    }
}

impl<K: Kind> PageResponse<K> {
    /// Canonical encoding.
    ///
    /// # Errors
    /// [`EncodeError::InvalidField`] for a page over [`MAX_SYNC_PAGE`],
    /// [`EncodeError::TooLong`] over [`Kind::MAX_RESPONSE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Some((field, reason)) = self.over_page_bound() {
            return Err(EncodeError::InvalidField { field, reason });
        }
        codec::encode(self, K::MAX_RESPONSE_BYTES)
    }

    /// Decodes a response; the entries inside are still unverified bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for anything but one canonical response within the bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let resp: Self = codec::decode(bytes, K::MAX_RESPONSE_BYTES)?;
        if let Some((field, reason)) = resp.over_page_bound() {
            return Err(DecodeError::InvalidField { field, reason });
        }
        Ok(resp)
    }

    /// The list holding more than [`MAX_SYNC_PAGE`] entries, if any, and why.
    fn over_page_bound(&self) -> Option<(&'static str, String)> {
        [
            ("entries", &self.entries),
            ("withdrawals", &self.withdrawals),
        ]
        .into_iter()
        .find(|(_, list)| list.len() > usize::from(MAX_SYNC_PAGE))
        .map(|(field, list)| {
            (
                field,
                format!("{} {field}, at most {MAX_SYNC_PAGE}", list.len()),
            )
        })
    }

    /// Verifies each entry, keeping those that verify; returns them and the count refused.
    pub fn verified_entries(&self, verifier: &impl Verifier) -> (Vec<Signed<K::Entry>>, usize) {
        verify_all(&self.entries, verifier)
    }

    /// Verifies each withdrawal, keeping those that verify; returns them and the count
    /// refused.
    pub fn verified_withdrawals(
        &self,
        verifier: &impl Verifier,
    ) -> (Vec<Signed<K::Withdrawal>>, usize) {
        verify_all(&self.withdrawals, verifier)
    }

    /// The request for the page after this one, if there is one, listing nothing held
    /// (an asker with a book lists what it holds with [`PageRequest::holding`] instead).
    pub fn next_request(&self) -> Option<PageRequest<K>> {
        self.next.map(PageRequest::after)
    }
}

/// Decodes and verifies each wire message; the good ones and how many were refused.
fn verify_all<T: SignedKind>(
    wires: &[Vec<u8>],
    verifier: &impl Verifier,
) -> (Vec<Signed<T>>, usize) {
    let mut ok = Vec::with_capacity(wires.len());
    let mut bad = 0;
    for wire in wires {
        match Signed::<T>::decode(wire, verifier) {
            Ok(m) => ok.push(m),
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

/// A digest of a book's contents: `write` appends what names each entry (its key and
/// `seq`), in the order given. Two books holding the same entries have the same digest.
pub fn digest<'a, T: 'a>(
    entries: impl IntoIterator<Item = &'a Signed<T>>,
    write: impl Fn(&T, &mut Vec<u8>),
) -> Digest {
    let mut bytes = Vec::new();
    for e in entries {
        write(e.body(), &mut bytes);
    }
    Digest::of(&bytes)
}

/// One page of a book for a peer's request, borrowing what it names; [`Page::to_response`]
/// puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a, K: Kind> {
    /// Unexpired entries in key order after the request's cursor, at most a page.
    pub entries: Vec<&'a Signed<K::Entry>>,
    /// On the first page, the newest remembered withdrawals (at most a page), newest first.
    pub withdrawals: Vec<&'a Signed<K::Withdrawal>>,
    /// The cursor for the next page, `None` at the end.
    pub next: Option<K::Cursor>,
}

impl<K: Kind> Page<'_, K> {
    /// The wire form: each entry and withdrawal as its signer's bytes.
    pub fn to_response(&self) -> PageResponse<K> {
        PageResponse {
            entries: self.entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
            withdrawals: self
                .withdrawals
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect(),
            next: self.next,
        }
    }
}

/// The page answering `req`: `ours` is the answerer's digest (an asker starting from the
/// beginning with an equal one gets an empty page); `after` yields the unexpired entries
/// after the request's cursor in key order, `cursor` names an entry's key; entries the
/// asker holds at the same or a newer sequence number are left out, and the page stops at
/// the request's last held key unless it listed all it holds; the first page also carries
/// `withdrawals`' newest.
pub(crate) fn page<'a, K: Kind, W: Ord + Copy>(
    req: &PageRequest<K>,
    ours: impl FnOnce() -> Digest,
    after: impl Iterator<Item = &'a Signed<K::Entry>>,
    cursor: impl Fn(&K::Entry) -> K::Cursor,
    withdrawals: &'a Remembered<W, K::Withdrawal>,
) -> Page<'a, K>
where
    K::Entry: 'a + Sequenced,
    K::Withdrawal: Sequenced,
{
    let limit = usize::from(req.limit.clamp(1, MAX_SYNC_PAGE));
    let bound = req.bound();
    let mut entries = Vec::with_capacity(limit);
    let mut more = false;
    let mut beyond = false;
    // Whether the books differ in the range compared: then the digests differ too, and
    // ours need not be computed.
    let mut differs = false;
    // A merge of our entries with the asker's list, both in key order.
    let mut held = req.held.iter().peekable();
    for entry in after {
        let key = cursor(entry.body());
        if bound.is_some_and(|b| key > b) {
            beyond = true;
            break;
        }
        while held.next_if(|h| h.key < key).is_some() {
            differs = true;
        }
        let seq = entry.body().seq();
        if let Some(h) = held.next_if(|h| h.key == key && h.seq >= seq) {
            differs |= h.seq != seq;
            continue;
        }
        differs = true;
        if entries.len() == limit {
            more = true;
            break;
        }
        entries.push(entry);
    }
    differs |= held.peek().is_some();
    // An asker starting from the beginning with a book equal to ours gets an empty page
    // (one that listed nothing held, as [`PageRequest::first`], is compared by digest
    // alone).
    let compare = req.after.is_none() && (req.held.is_empty() || !differs);
    if compare && req.digest.is_some_and(|d| d == ours()) {
        return Page {
            entries: Vec::new(),
            withdrawals: Vec::new(),
            next: None,
        };
    }
    // Withdrawals ride on the first page only: the newest, as many as a page holds.
    let withdrawals = if req.after.is_none() {
        withdrawals.newest(usize::from(MAX_SYNC_PAGE))
    } else {
        Vec::new()
    };
    let next = if more {
        entries.last().map(|e| cursor(e.body()))
    } else if beyond {
        bound
    } else {
        None
    };
    Page {
        entries,
        withdrawals,
        next,
    }
}

/// Signed withdrawals a node passes on in sync pages, one per key, while their tombstones
/// last; bounded (when full, the oldest other key's is forgotten).
#[derive(Debug, Clone)]
pub(crate) struct Remembered<K, W> {
    by_key: BTreeMap<K, Signed<W>>,
    max: usize,
    ttl: Duration,
}

impl<K: Ord + Copy, W: Sequenced> Remembered<K, W> {
    /// Remembers at most `max` withdrawals, each for `ttl` after it was issued.
    pub(crate) fn new(max: usize, ttl: Duration) -> Self {
        Self {
            by_key: BTreeMap::new(),
            max,
            ttl,
        }
    }

    /// Keeps `w` for `key`; when full, forgets the oldest other key's.
    pub(crate) fn remember(&mut self, key: K, w: Signed<W>) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= self.max {
            let oldest = self
                .by_key
                .iter()
                .min_by_key(|(k, w)| (w.body().issued_at(), **k))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.by_key.remove(&k);
            }
        }
        self.by_key.insert(key, w);
    }

    /// Forgets `key`'s withdrawal (a newer entry replaced it).
    pub(crate) fn forget(&mut self, key: &K) {
        self.by_key.remove(key);
    }

    /// Forgets withdrawals past their time at `now`.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        self.by_key
            .retain(|_, w| w.body().issued_at().saturating_add(ttl) > now);
    }

    /// The newest `n`, newest first.
    pub(crate) fn newest(&self, n: usize) -> Vec<&Signed<W>> {
        let mut recent: Vec<&Signed<W>> = self.by_key.values().collect();
        recent.sort_by_key(|w| core::cmp::Reverse(w.body().issued_at()));
        recent.truncate(n);
        recent
    }
}
