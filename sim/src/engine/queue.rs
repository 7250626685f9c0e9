//! The pending events: a calendar queue that pops in `(time, insertion sequence)` order.
//!
//! A binary heap over every pending event costs a cache miss per level once the queue
//! outgrows the caches (tens of thousands of frames in flight at 10,000 nodes), and that
//! sift dominated the engine's profile. Here time is cut into buckets of about a
//! millisecond (1,024 µs):
//!
//! - the *current* bucket's events are sorted once, latest first, and popped from the end
//!   (a few hundred entries at most in the heaviest scenarios, so they stay in the L1/L2
//!   cache); events scheduled into the current bucket after that (same-millisecond
//!   timers, zero-latency links) go to a small binary heap beside it;
//! - the next 4,096 buckets (4.2 s) each have an unsorted vector in a ring (appending is one
//!   sequential write), and a bitmap says which ones hold anything;
//! - events further ahead wait in an overflow heap (timers of tens of seconds: sync ticks,
//!   re-advertisements), moved into the ring as the clock comes within reach.
//!
//! When the current bucket runs dry, the next non-empty bucket's vector is sorted and
//! becomes the current one. Every event of a bucket is earlier than every event of a later
//! bucket, and within a bucket the order is `(time, sequence)` (the sorted list and the
//! heap merged), so the order is exactly that of one binary heap over `(time, sequence)`:
//! the same trace.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{NodeId, ScheduleError};
use crate::time::SimTime;

/// log2 of the bucket width in microseconds: buckets of 1,024 µs.
const BUCKET_SHIFT: u32 = 10;
/// Buckets in the ring: about 4.2 s of simulated time ahead of the current bucket.
const SLOTS: usize = 4096;
const WORDS: usize = SLOTS / 64;

/// An event waiting in the queue.
pub(super) struct Scheduled<E> {
    pub(super) at: SimTime,
    pub(super) seq: u64,
    pub(super) node: NodeId,
    pub(super) event: E,
}

// Ordering looks at `(at, seq)` only; `seq` is unique, so the order is total and the
// payload never needs to be comparable.
impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The bucket an instant falls in.
fn bucket_of(at: SimTime) -> u64 {
    at.as_micros() >> BUCKET_SHIFT
}

/// The ring slot of a bucket.
fn slot_of(bucket: u64) -> usize {
    (bucket % SLOTS as u64) as usize
}

/// The pending events, earliest first, ties in insertion order.
pub(super) struct EventQueue<E> {
    /// The events of bucket `current_bucket` when it became current, sorted latest first.
    current: Vec<Scheduled<E>>,
    /// Events placed in bucket `current_bucket` (or an earlier one, which can only be at
    /// `now` after the clock moved on) once it was current: a min-heap.
    late: BinaryHeap<Reverse<Scheduled<E>>>,
    current_bucket: u64,
    /// Slot `b % SLOTS` holds the events of bucket `b`, for `current_bucket < b <
    /// current_bucket + SLOTS`.
    ring: Vec<Vec<Scheduled<E>>>,
    /// Bit `s` is set when `ring[s]` is not empty.
    occupied: [u64; WORDS],
    in_ring: usize,
    /// Events at least `SLOTS` buckets ahead when they were scheduled.
    far: BinaryHeap<Reverse<Scheduled<E>>>,
    next_seq: u64,
    /// Emptied bucket buffers, handed to ring slots that start filling, so that a bucket
    /// does not grow its vector from nothing (up to [`SPARE_BUFFERS`] of at most
    /// [`SPARE_CAPACITY`] events).
    spare: Vec<Vec<Scheduled<E>>>,
}

/// Emptied bucket buffers kept for reuse: a few more than the buckets a burst of deliveries
/// spans.
const SPARE_BUFFERS: usize = 64;
/// The largest buffer kept for reuse (events): a burst's giant bucket is dropped rather than
/// handed on, so recycled buffers stay about the size of ordinary buckets.
const SPARE_CAPACITY: usize = 1_024;

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        EventQueue {
            current: Vec::new(),
            late: BinaryHeap::new(),
            current_bucket: 0,
            ring: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            in_ring: 0,
            far: BinaryHeap::new(),
            next_seq: 0,
            spare: Vec::new(),
        }
    }

    /// Queues `event` at `at`, refusing an instant before `now`: the clock never runs back.
    pub(super) fn push_not_before(
        &mut self,
        now: SimTime,
        at: SimTime,
        node: NodeId,
        event: E,
    ) -> Result<(), ScheduleError> {
        if at < now {
            return Err(ScheduleError::InPast { at, now });
        }
        self.push(at, node, event);
        Ok(())
    }

    pub(super) fn push(&mut self, at: SimTime, node: NodeId, event: E) {
        let seq = self.next_seq;
        // 2^64 insertions cannot happen within any event limit; wrapping is unreachable.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.place(Scheduled {
            at,
            seq,
            node,
            event,
        });
    }

    /// Puts an event where the invariants want it.
    fn place(&mut self, scheduled: Scheduled<E>) {
        let bucket = bucket_of(scheduled.at);
        if bucket <= self.current_bucket {
            self.late.push(Reverse(scheduled));
        } else if bucket - self.current_bucket < SLOTS as u64 {
            let slot = slot_of(bucket);
            if let Some(list) = self.ring.get_mut(slot) {
                if list.capacity() == 0
                    && let Some(buffer) = self.spare.pop()
                {
                    *list = buffer;
                }
                list.push(scheduled);
                self.in_ring += 1;
                if let Some(word) = self.occupied.get_mut(slot / 64) {
                    *word |= 1 << (slot % 64);
                }
            }
        } else {
            self.far.push(Reverse(scheduled));
        }
    }

    /// The earliest pending instant, if any.
    pub(super) fn next_time(&mut self) -> Option<SimTime> {
        self.refill();
        match (self.current.last(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.at.min(b.at)),
            (Some(a), None) => Some(a.at),
            (None, Some(Reverse(b))) => Some(b.at),
            (None, None) => None,
        }
    }

    pub(super) fn pop(&mut self) -> Option<Scheduled<E>> {
        self.refill();
        let late_first = match (self.current.last(), self.late.peek()) {
            (Some(a), Some(Reverse(b))) => b < a,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if late_first {
            self.late.pop().map(|Reverse(s)| s)
        } else {
            self.current.pop()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.current.len() + self.late.len() + self.in_ring + self.far.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the current bucket the earliest non-empty one, unless the heap still holds
    /// events (which are then the earliest of all).
    fn refill(&mut self) {
        if !self.current.is_empty() || !self.late.is_empty() {
            return;
        }
        let next_ring = (self.in_ring > 0).then(|| self.next_occupied_bucket());
        let next_far = self.far.peek().map(|Reverse(s)| bucket_of(s.at));
        let next = match (next_ring, next_far) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        self.current_bucket = next;
        let slot = slot_of(next);
        if let Some(list) = self.ring.get_mut(slot)
            && !list.is_empty()
        {
            self.in_ring -= list.len();
            if let Some(word) = self.occupied.get_mut(slot / 64) {
                *word &= !(1 << (slot % 64));
            }
            let mut events = std::mem::take(list);
            // Keys are unique, so an unstable sort gives the one order.
            events.sort_unstable_by_key(|s| Reverse((s.at, s.seq)));
            // The emptied current buffer goes to the spares unless it grew for a burst
            // (kept, such buffers would make every bucket as large as the largest).
            let emptied = std::mem::replace(&mut self.current, events);
            if (1..=SPARE_CAPACITY).contains(&emptied.capacity())
                && self.spare.len() < SPARE_BUFFERS
            {
                self.spare.push(emptied);
            }
        }
        // The far events the horizon now reaches move into the ring (or the heap).
        while let Some(Reverse(top)) = self.far.peek() {
            if bucket_of(top.at).saturating_sub(next) >= SLOTS as u64 {
                break;
            }
            if let Some(Reverse(scheduled)) = self.far.pop() {
                self.place(scheduled);
            }
        }
    }

    /// The first occupied bucket after the current one (the ring is not empty).
    fn next_occupied_bucket(&self) -> u64 {
        let start = slot_of(self.current_bucket.wrapping_add(1));
        // Scan the bitmap circularly from `start`, one 64-slot word at a time.
        let (first_word, first_bit) = (start / 64, start % 64);
        for step in 0..=WORDS {
            let word_index = (first_word + step) % WORDS;
            let mut word = self.occupied.get(word_index).copied().unwrap_or(0);
            if step == 0 {
                word &= u64::MAX << first_bit;
            }
            if word != 0 {
                let slot = word_index * 64 + word.trailing_zeros() as usize;
                let distance = (slot + SLOTS - start) % SLOTS;
                return self.current_bucket + 1 + distance as u64;
            }
        }
        // Unreachable while `in_ring > 0`; the far horizon is a safe answer regardless.
        self.current_bucket + SLOTS as u64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the mix of near, far and same-instant events, and pushes made while
        /// popping, the queue pops exactly in `(time, sequence)` order.
        #[test]
        fn pops_in_time_then_insertion_order(
            ops in proptest::collection::vec((0u64..3, 0u64..40_000_000), 1..400)
        ) {
            let mut queue = EventQueue::new();
            let mut reference = std::collections::BTreeMap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            let mut popped = Vec::new();
            let mut expected = Vec::new();
            for (op, value) in ops {
                if op == 0 {
                    if let Some(s) = queue.pop() {
                        let (key, ()) = reference.pop_first().unwrap();
                        now = s.at.as_micros();
                        popped.push((s.at.as_micros(), s.seq));
                        expected.push(key);
                    }
                } else {
                    // Near (within a few buckets) or far ahead of the clock.
                    let delay = if op == 1 { value % 5_000 } else { value };
                    let at = now + delay;
                    queue.push(SimTime::from_micros(at), NodeId::new(0), ());
                    reference.insert((at, seq), ());
                    seq += 1;
                }
            }
            while let Some(s) = queue.pop() {
                popped.push((s.at.as_micros(), s.seq));
                expected.push(reference.pop_first().unwrap().0);
            }
            prop_assert!(reference.is_empty());
            prop_assert_eq!(queue.len(), 0);
            prop_assert_eq!(popped, expected);
        }
    }
}
