//! The seen cache: message ids a node has received, kept for a fixed time, so that a
//! message arriving again (from another mesh peer, by IWANT) is a duplicate and dropped
//! before validation.

use std::collections::VecDeque;

use super::MsgIdx;
use crate::time::{SimDuration, SimTime};

/// Message ids seen within the last `ttl`.
///
/// Message indices are handed out in publication order and a node sees a message within
/// seconds of its publication, so the ids a node holds lie in a narrow window: they are
/// kept as a bitmap over that window (a few hundred bytes, one cache line per lookup)
/// rather than a tree. The window grows at either end as needed and shrinks as ids expire.
#[derive(Debug, Clone, Default)]
pub struct SeenCache {
    /// Bit `b` of `words[w]` stands for message `(first_word + w) * 64 + b`.
    first_word: u32,
    words: VecDeque<u64>,
    len: usize,
    by_time: VecDeque<(SimTime, MsgIdx)>,
}

impl SeenCache {
    /// Records `msg` as seen at `now`; returns whether it is new.
    pub fn insert(&mut self, msg: MsgIdx, now: SimTime) -> bool {
        let word = msg / 64;
        if self.words.is_empty() {
            self.first_word = word;
        } else if word < self.first_word {
            for _ in word..self.first_word {
                self.words.push_front(0);
            }
            self.first_word = word;
        }
        let index = (word - self.first_word) as usize;
        if index >= self.words.len() {
            self.words.resize(index + 1, 0);
        }
        let bit = 1u64 << (msg % 64);
        match self.words.get_mut(index) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                self.len += 1;
                self.by_time.push_back((now, msg));
                true
            }
            _ => false,
        }
    }

    /// Whether `msg` has been seen (and not yet forgotten).
    pub fn contains(&self, msg: MsgIdx) -> bool {
        let Some(index) = (msg / 64).checked_sub(self.first_word) else {
            return false;
        };
        self.words
            .get(index as usize)
            .is_some_and(|w| w & (1 << (msg % 64)) != 0)
    }

    /// Forgets ids seen more than `ttl` before `now`.
    pub fn expire(&mut self, now: SimTime, ttl: SimDuration) {
        while let Some(&(at, msg)) = self.by_time.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.by_time.pop_front();
            let index = (msg / 64).wrapping_sub(self.first_word) as usize;
            if let Some(w) = self.words.get_mut(index) {
                *w &= !(1 << (msg % 64));
                self.len -= 1;
            }
        }
        while self.words.front() == Some(&0) {
            self.words.pop_front();
            self.first_word += 1;
        }
        while self.words.back() == Some(&0) {
            self.words.pop_back();
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_until_the_id_expires() {
        let mut seen = SeenCache::default();
        let ttl = SimDuration::from_secs(120);
        assert!(seen.insert(1, SimTime::ZERO));
        assert!(!seen.insert(1, SimTime::from_micros(5)));
        assert!(seen.insert(2, SimTime::from_micros(60_000_000)));
        seen.expire(SimTime::from_micros(119_999_999), ttl);
        assert!(seen.contains(1));
        seen.expire(SimTime::from_micros(120_000_000), ttl);
        assert!(!seen.contains(1) && seen.contains(2));
        assert_eq!(seen.len(), 1);
        assert!(seen.insert(1, SimTime::from_micros(130_000_000)));
    }

    proptest::proptest! {
        /// The bitmap agrees with a plain set under any inserts and expiries.
        #[test]
        fn agrees_with_a_set(ops in proptest::collection::vec((0u32..2_000, 0u64..3), 0..300)) {
            let mut seen = SeenCache::default();
            let mut reference = std::collections::BTreeMap::new();
            let ttl = SimDuration::from_micros(50);
            for (step, (msg, op)) in ops.into_iter().enumerate() {
                let now = SimTime::from_micros(step as u64 * 10);
                if op == 0 {
                    seen.expire(now, ttl);
                    reference.retain(|_, at: &mut SimTime| at.saturating_add(ttl) > now);
                } else {
                    let new = !reference.contains_key(&msg);
                    if new {
                        reference.insert(msg, now);
                    }
                    proptest::prop_assert_eq!(seen.insert(msg, now), new);
                }
                proptest::prop_assert_eq!(seen.len(), reference.len());
                for probe in [msg, msg + 1, msg.saturating_sub(64)] {
                    proptest::prop_assert_eq!(seen.contains(probe), reference.contains_key(&probe));
                }
            }
        }
    }
}
