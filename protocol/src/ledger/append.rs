//! [`EvidenceLog::append`]: a node's own entries.

use core::time::Duration;

use crate::signed::{Digest, Signed, Signer};
use crate::time::Timestamp;

use super::entry::{Entry, MAX_PARENTS};
use super::error::AppendError;
use super::fact::Fact;
use super::log::{EvidenceLog, Outcome};

/// How far ahead of `now` a head may be dated for [`EvidenceLog::append`] to name it as a
/// parent: a node with a clock far ahead must not drag every later entry's time with it.
pub const MAX_PARENT_SKEW: Duration = Duration::from_secs(300);

impl EvidenceLog {
    /// Signs `fact` as `signer`'s next entry and accepts it: `prev` is the author's latest
    /// entry, `parents` the [`MAX_PARENTS`] latest heads of other authors (leaving out
    /// equivocators and heads dated more than [`MAX_PARENT_SKEW`] past `now`), and its time
    /// `now`, or the latest of those if later (an entry is never dated before what it names).
    ///
    /// # Errors
    /// [`AppendError::Encode`] when the fact is invalid or too large,
    /// [`AppendError::Rejected`] when the log is full.
    pub fn append(
        &mut self,
        now: Timestamp,
        signer: &impl Signer,
        fact: Fact,
    ) -> Result<Signed<Entry>, AppendError> {
        let author = signer.id();
        let (seq, prev, mut at) = match self.tip(&author) {
            Some(tip) => (
                tip.body().seq.saturating_add(1),
                Some(tip.digest()),
                tip.body().at.max(now),
            ),
            None => (0, None, now),
        };
        let horizon = now.saturating_add(MAX_PARENT_SKEW);
        let mut heads: Vec<(Timestamp, Digest)> = self
            .heads()
            .filter_map(|d| self.get(d).map(|e| (e.body(), *d)))
            .filter(|(e, _)| {
                e.author != author && !self.is_equivocator(&e.author) && e.at <= horizon
            })
            .map(|(e, d)| (e.at, d))
            .collect();
        heads.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        heads.truncate(MAX_PARENTS);
        at = heads.iter().map(|(t, _)| *t).fold(at, Timestamp::max);
        let mut parents: Vec<Digest> = heads.into_iter().map(|(_, d)| d).collect();
        parents.sort();
        let entry = Signed::sign(
            Entry {
                author,
                seq,
                prev,
                parents,
                at,
                fact,
            },
            signer,
        )?;
        match self.insert(now, entry.clone()) {
            Outcome::Rejected(reason) => Err(reason.into()),
            // Everything it names is accepted, so it cannot wait; a duplicate is the very
            // entry this author signed before (signatures are deterministic).
            Outcome::Inserted(_) | Outcome::Duplicate | Outcome::Pending { .. } => Ok(entry),
        }
    }
}
