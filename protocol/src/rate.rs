//! Token-bucket rate limits keyed by who is talking, sans-IO (time is passed in).
//!
//! Gossip validation uses one per provider: an honest provider re-advertises every few
//! minutes and when its capacity changes, so a flood from one key is dropped before it costs
//! the network more than a burst. The number of keys tracked is bounded; when full, the key
//! idle longest is forgotten (it would have refilled by now anyway).

use core::time::Duration;
use std::collections::BTreeMap;

use crate::time::Timestamp;

/// A limit: `burst` events at once, refilled at one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Time to earn one more event.
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Credit in milliseconds of refill time; one event costs one interval. Counting time
    /// rather than fractional tokens keeps refills exact.
    credit_ms: u64,
    last: Timestamp,
}

impl Bucket {
    /// Refills for the time since the last event (at most `full`), then takes one event's
    /// worth (`interval_ms`) at `now` if there is enough; `false` means over the limit.
    fn spend(&mut self, now: Timestamp, interval_ms: u64, full: u64) -> bool {
        // A clock that steps back refills nothing rather than panicking or granting tokens.
        let elapsed = now
            .as_unix_millis()
            .saturating_sub(self.last.as_unix_millis());
        self.credit_ms = self.credit_ms.saturating_add(elapsed).min(full);
        if now > self.last {
            self.last = now;
        }
        if self.credit_ms >= interval_ms {
            self.credit_ms -= interval_ms;
            true
        } else {
            false
        }
    }
}

/// Per-key token buckets, at most `max_keys` of them.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    buckets: BTreeMap<K, Bucket>,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// A limiter applying `limit` to each key, tracking at most `max_keys` (at least 1).
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Takes one token for `key` at `now`; `false` means over the limit.
    pub fn check(&mut self, key: &K, now: Timestamp) -> bool {
        let interval_ms = u64::try_from(self.limit.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let full = u64::from(self.limit.burst).saturating_mul(interval_ms);
        // One tree search for a key already tracked (every message but a signer's first).
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.spend(now, interval_ms, full);
        }
        if self.buckets.len() >= self.max_keys {
            self.forget_idlest();
        }
        let mut bucket = Bucket {
            credit_ms: full,
            last: now,
        };
        let passed = bucket.spend(now, interval_ms, full);
        self.buckets.insert(key.clone(), bucket);
        passed
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn forget_idlest(&mut self) {
        if let Some(k) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.last)
            .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: RateLimit = RateLimit {
        burst: 3,
        interval: Duration::from_secs(2),
    };

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn burst_then_refill() {
        let mut r = RateLimiter::new(LIMIT, 10);
        assert!(r.check(&1, at(0)));
        assert!(r.check(&1, at(0)));
        assert!(r.check(&1, at(0)));
        assert!(!r.check(&1, at(0)));
        assert!(!r.check(&1, at(1_999)));
        assert!(r.check(&1, at(2_000)));
        assert!(!r.check(&1, at(2_000)));
        // Other keys have their own bucket.
        assert!(r.check(&2, at(2_000)));
    }

    #[test]
    fn keys_are_bounded_and_the_idlest_is_forgotten() {
        let mut r = RateLimiter::new(LIMIT, 2);
        r.check(&1, at(0));
        r.check(&2, at(10));
        r.check(&3, at(20));
        assert_eq!(r.len(), 2);
        assert!(!r.buckets.contains_key(&1));
    }

    #[test]
    fn a_clock_stepping_back_grants_nothing() {
        let mut r = RateLimiter::new(LIMIT, 10);
        for _ in 0..3 {
            assert!(r.check(&1, at(10_000)));
        }
        assert!(!r.check(&1, at(0)));
        assert!(!r.check(&1, at(10_000)));
    }

    proptest! {
        /// Over any window, at most burst + window/interval events pass.
        #[test]
        fn never_more_than_the_limit(steps in proptest::collection::vec(0u64..3_000, 1..200)) {
            let mut r = RateLimiter::new(LIMIT, 4);
            let mut now = 0;
            let mut passed = 0u64;
            for s in &steps {
                now += s;
                if r.check(&7, at(now)) {
                    passed += 1;
                }
            }
            prop_assert!(passed <= u64::from(LIMIT.burst) + now / 2_000);
        }
    }
}
