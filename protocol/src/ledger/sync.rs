//! "Send me what I lack": entries by digest, and pages of everything past a frontier.
//!
//! ```text
//! asker ──frontier() (highest seq held per author)──▶ peer: page(frontier, None, n)
//!       ◀── Page { entries in canonical order, next } ── insert each; repeat with `next`
//! asker ──missing() digests──▶ peer: fetch(digests) ──▶ entries, parents first
//! ```
//!
//! Pages come in the canonical (height, digest) order, so what an entry names arrives before
//! it and a receiver's pending set stays small however far behind it is. A frontier
//! summarises an author's chain by its highest seq, which is exact for honest authors; an
//! equivocator's other fork below that seq is found by digest instead (heads, `missing`).

use core::ops::Bound;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::AgoraId;
use crate::signed::{Digest, Signed};

use super::entry::Entry;
use super::log::{DIGEST_MIN, EvidenceLog};

/// Most entries in one page.
pub const MAX_PAGE_ENTRIES: usize = 256;

/// Most wire bytes in one page or fetch answer. The first entry is always sent, so even the
/// largest entry gets through.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// Most index positions one page call looks at, so a request costs bounded work even when
/// the asker already holds most of what follows its cursor.
pub const MAX_PAGE_SCAN: usize = 16_384;

/// Most digests one fetch looks up.
pub const MAX_FETCH: usize = 64;

/// The highest seq held per author: what an asker has (for honest authors, every entry up
/// to that seq).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontier {
    /// Highest seq per author.
    pub seqs: BTreeMap<AgoraId, u64>,
}

impl Frontier {
    /// Whether the asker holds `entry` by this summary.
    pub fn covers(&self, entry: &Entry) -> bool {
        self.seqs
            .get(&entry.author)
            .is_some_and(|s| entry.seq <= *s)
    }
}

/// A position in the canonical order: resume after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// The entry's height.
    pub height: u64,
    /// The entry's digest.
    pub digest: Digest,
}

/// A page of entries in canonical order, and where the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The entries (verified signed entries; as wire bytes on the wire).
    pub entries: Vec<Signed<Entry>>,
    /// Ask again from here; `None` when nothing is left.
    pub next: Option<Cursor>,
}

impl EvidenceLog {
    /// The highest accepted seq of every author.
    pub fn frontier(&self) -> Frontier {
        Frontier {
            seqs: self.authors().clone(),
        }
    }

    /// Accepted entries that `have` does not cover, in canonical order, from after `after`
    /// (or from the start): at most `limit` (clamped to 1 ..= [`MAX_PAGE_ENTRIES`]) and
    /// [`MAX_PAGE_BYTES`], looking at most [`MAX_PAGE_SCAN`] positions.
    pub fn page(&self, have: &Frontier, after: Option<Cursor>, limit: usize) -> Page {
        let limit = limit.clamp(1, MAX_PAGE_ENTRIES);
        let start = match after {
            Some(c) => Bound::Excluded((c.height, c.digest)),
            None => match self.first_lacking(have) {
                Some(height) => Bound::Included((height, DIGEST_MIN)),
                None => return Page::default(),
            },
        };
        let mut page = Page::default();
        let mut bytes = 0usize;
        let mut last = None;
        for (scanned, &(height, digest)) in self
            .by_height()
            .range((start, Bound::Unbounded))
            .enumerate()
        {
            if scanned >= MAX_PAGE_SCAN {
                page.next = last;
                return page;
            }
            let Some(node) = self.node(&digest) else {
                continue;
            };
            if !have.covers(node.entry.body()) {
                let len = node.entry.as_bytes().len();
                let full =
                    page.entries.len() >= limit || bytes.saturating_add(len) > MAX_PAGE_BYTES;
                if full && !page.entries.is_empty() {
                    page.next = last;
                    return page;
                }
                page.entries.push(node.entry.clone());
                bytes = bytes.saturating_add(len);
            }
            last = Some(Cursor { height, digest });
        }
        page
    }

    /// The lowest height of an entry `have` lacks: each author's first entry above the
    /// frontier (an author's chain rises in height).
    fn first_lacking(&self, have: &Frontier) -> Option<u64> {
        self.authors()
            .iter()
            .filter_map(|(author, top)| {
                let from = match have.seqs.get(author) {
                    None => 0,
                    Some(s) if s < top => s.saturating_add(1),
                    Some(_) => return None,
                };
                self.first_from(*author, from)
            })
            .filter_map(|d| self.node(&d).map(|n| n.height))
            .min()
    }

    /// The accepted entries among the first [`MAX_FETCH`] of `digests`, in canonical order
    /// (parents first), within [`MAX_PAGE_BYTES`].
    pub fn fetch(&self, digests: &[Digest]) -> Vec<Signed<Entry>> {
        let mut found: Vec<(u64, Digest)> = digests
            .iter()
            .take(MAX_FETCH)
            .filter_map(|d| self.node(d).map(|n| (n.height, *d)))
            .collect();
        found.sort_unstable();
        found.dedup();
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for (_, digest) in found {
            let Some(entry) = self.get(&digest) else {
                continue;
            };
            let len = entry.as_bytes().len();
            if !out.is_empty() && bytes.saturating_add(len) > MAX_PAGE_BYTES {
                break;
            }
            bytes = bytes.saturating_add(len);
            out.push(entry.clone());
        }
        out
    }
}
