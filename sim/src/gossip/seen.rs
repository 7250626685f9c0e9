//! The seen cache: message ids a node has received, kept for a fixed time, so that a
//! message arriving again (from another mesh peer, by IWANT) is a duplicate and dropped
//! before validation.

use std::collections::{BTreeSet, VecDeque};

use super::MsgIdx;
use crate::time::{SimDuration, SimTime};

/// Message ids seen within the last `ttl`.
#[derive(Debug, Clone, Default)]
pub struct SeenCache {
    ids: BTreeSet<MsgIdx>,
    by_time: VecDeque<(SimTime, MsgIdx)>,
}

impl SeenCache {
    /// Records `msg` as seen at `now`; returns whether it is new.
    pub fn insert(&mut self, msg: MsgIdx, now: SimTime) -> bool {
        if self.ids.insert(msg) {
            self.by_time.push_back((now, msg));
            true
        } else {
            false
        }
    }

    /// Whether `msg` has been seen (and not yet forgotten).
    pub fn contains(&self, msg: MsgIdx) -> bool {
        self.ids.contains(&msg)
    }

    /// Forgets ids seen more than `ttl` before `now`.
    pub fn expire(&mut self, now: SimTime, ttl: SimDuration) {
        while let Some(&(at, msg)) = self.by_time.front() {
            if at.saturating_add(ttl) > now {
                break;
            }
            self.by_time.pop_front();
            self.ids.remove(&msg);
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
}
