//! The single-threaded discrete-event engine.
//!
//! Events wait in a priority queue ordered by `(time, insertion sequence number)`: the
//! sequence number breaks ties between events due at the same instant in the order they
//! were scheduled, so a run depends on nothing but the seed and the handler. One seeded
//! [`ChaCha20Rng`] is the only source of randomness, handed to the handler through [`Ctx`].

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::io::Write;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::time::{SimDuration, SimTime};
use crate::trace::{TraceError, TraceRecorder, Traced};

/// The default bound on processed events, generous for any planned scenario yet small
/// enough that a runaway event loop fails within seconds instead of spinning forever.
pub const DEFAULT_MAX_EVENTS: u64 = 50_000_000;

/// The identifier of a simulated node; events are addressed to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    /// The node with index `index`.
    pub const fn new(index: u32) -> Self {
        NodeId(index)
    }

    /// The node's index.
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Why an event could not be scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The requested instant has already passed; the clock never runs backwards.
    #[error("cannot schedule an event at {at}: the clock already reads {now}")]
    InPast {
        /// The requested instant.
        at: SimTime,
        /// The clock when the request was made.
        now: SimTime,
    },
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The run processed `limit` events and still had more to do.
    #[error(
        "event limit of {limit} reached at {now} with events still pending (runaway scenario?)"
    )]
    EventLimit {
        /// The configured bound.
        limit: u64,
        /// The clock when the bound was hit.
        now: SimTime,
    },
    /// The trace could not be recorded.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// Why a run returned normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// No events were left.
    QueueEmpty,
    /// The next event lies after the requested end time.
    ReachedEnd,
    /// The handler called [`Ctx::request_stop`].
    Requested,
}

/// The summary of one call to [`Engine::run`] or [`Engine::run_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// Events processed by this call.
    pub events_processed: u64,
    /// Why the call returned.
    pub stop: StopReason,
    /// The clock when the call returned.
    pub now: SimTime,
}

/// An event waiting in the queue.
struct Scheduled<E> {
    at: SimTime,
    seq: u64,
    node: NodeId,
    event: E,
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

/// The pending events, earliest first, ties in insertion order.
struct EventQueue<E> {
    // `BinaryHeap` is a max-heap; `Reverse` turns it into the min-heap we need.
    heap: BinaryHeap<Reverse<Scheduled<E>>>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// Queues `event` at `at`, refusing an instant before `now`: the clock never runs back.
    fn push_not_before(
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

    fn push(&mut self, at: SimTime, node: NodeId, event: E) {
        let seq = self.next_seq;
        // 2^64 insertions cannot happen within any event limit; wrapping is unreachable.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Reverse(Scheduled {
            at,
            seq,
            node,
            event,
        }));
    }

    fn next_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(scheduled)| scheduled.at)
    }

    fn pop(&mut self) -> Option<Scheduled<E>> {
        self.heap.pop().map(|Reverse(scheduled)| scheduled)
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// What a handler may touch while it processes one event.
pub struct Ctx<'a, E> {
    now: SimTime,
    queue: &'a mut EventQueue<E>,
    rng: &'a mut ChaCha20Rng,
    stop_requested: &'a mut bool,
}

impl<E> Ctx<'_, E> {
    /// The current instant: the time of the event being processed.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The run's single seeded random number generator.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        self.rng
    }

    /// Schedules `event` for `node` at the instant `at`, which may equal [`Ctx::now`].
    pub fn schedule(&mut self, at: SimTime, node: NodeId, event: E) -> Result<(), ScheduleError> {
        self.queue.push_not_before(self.now, at, node, event)
    }

    /// Schedules `event` for `node` after `delay` (saturating at [`SimTime::MAX`]).
    pub fn schedule_in(&mut self, delay: SimDuration, node: NodeId, event: E) {
        self.queue.push(self.now.saturating_add(delay), node, event);
    }

    /// Asks the engine to return after the current event, leaving the rest queued.
    pub fn request_stop(&mut self) {
        *self.stop_requested = true;
    }
}

/// A deterministic discrete-event engine over events of type `E`.
pub struct Engine<E> {
    now: SimTime,
    seed: u64,
    queue: EventQueue<E>,
    rng: ChaCha20Rng,
    trace: TraceRecorder,
    events_processed: u64,
    max_events: u64,
    stop_requested: bool,
}

impl<E> fmt::Debug for Engine<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("seed", &self.seed)
            .field("pending_events", &self.queue.len())
            .field("events_processed", &self.events_processed)
            .field("max_events", &self.max_events)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

impl<E: Traced> Engine<E> {
    /// An engine at time zero with an empty queue, its RNG seeded from `seed`, bounded by
    /// [`DEFAULT_MAX_EVENTS`] and recording the trace hash without a trace file.
    pub fn new(seed: u64) -> Self {
        let mut trace = TraceRecorder::new();
        // Without a sink, folding the header into the hash cannot fail.
        let _ = trace.header(seed);
        Engine {
            now: SimTime::ZERO,
            seed,
            queue: EventQueue::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
            trace,
            events_processed: 0,
            max_events: DEFAULT_MAX_EVENTS,
            stop_requested: false,
        }
    }

    /// Replaces the bound on the total number of events processed.
    pub fn with_max_events(mut self, max_events: u64) -> Self {
        self.max_events = max_events;
        self
    }

    /// Also writes one trace line per processed event to `sink`.
    ///
    /// Call before processing any event, or the file will miss the earlier lines.
    ///
    /// # Errors
    /// [`TraceError::Write`] when the header line cannot be written.
    pub fn with_trace_sink(mut self, sink: Box<dyn Write>) -> Result<Self, TraceError> {
        let mut recorder = TraceRecorder::with_sink(sink);
        recorder.header(self.seed)?;
        self.trace = recorder;
        Ok(self)
    }

    /// The seed the RNG was created from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current instant.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The run's single seeded random number generator.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// The number of events waiting in the queue.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// The number of events processed since the engine was created.
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    /// Schedules `event` for `node` at the instant `at`, which may equal [`Engine::now`].
    pub fn schedule(&mut self, at: SimTime, node: NodeId, event: E) -> Result<(), ScheduleError> {
        self.queue.push_not_before(self.now, at, node, event)
    }

    /// Schedules `event` for `node` after `delay` (saturating at [`SimTime::MAX`]).
    pub fn schedule_in(&mut self, delay: SimDuration, node: NodeId, event: E) {
        self.queue.push(self.now.saturating_add(delay), node, event);
    }

    /// The trace hash of the events processed so far, as 64 lowercase hex digits.
    pub fn trace_hash(&self) -> String {
        self.trace.trace_hash()
    }

    /// Flushes the trace file, if any; call it once the run is over.
    pub fn flush_trace(&mut self) -> Result<(), TraceError> {
        self.trace.flush()
    }

    /// Processes the earliest pending event, if any; returns whether one was processed.
    pub fn step<H>(&mut self, mut handler: H) -> Result<bool, EngineError>
    where
        H: FnMut(&mut Ctx<'_, E>, NodeId, E),
    {
        self.process_next(&mut handler)
    }

    /// Processes events until the queue is empty or the handler requests a stop.
    pub fn run<H>(&mut self, mut handler: H) -> Result<RunOutcome, EngineError>
    where
        H: FnMut(&mut Ctx<'_, E>, NodeId, E),
    {
        self.run_loop(None, &mut handler)
    }

    /// Processes every event due at or before `end`, then advances the clock to `end`.
    ///
    /// If the handler requests a stop, returns at once with the clock at that event.
    pub fn run_until<H>(&mut self, end: SimTime, mut handler: H) -> Result<RunOutcome, EngineError>
    where
        H: FnMut(&mut Ctx<'_, E>, NodeId, E),
    {
        let outcome = self.run_loop(Some(end), &mut handler)?;
        if outcome.stop == StopReason::Requested {
            return Ok(outcome);
        }
        self.now = self.now.max(end);
        Ok(RunOutcome {
            now: self.now,
            ..outcome
        })
    }

    fn run_loop<H>(
        &mut self,
        end: Option<SimTime>,
        handler: &mut H,
    ) -> Result<RunOutcome, EngineError>
    where
        H: FnMut(&mut Ctx<'_, E>, NodeId, E),
    {
        self.stop_requested = false;
        let start_count = self.events_processed;
        let stop = loop {
            match (self.queue.next_time(), end) {
                (None, _) => break StopReason::QueueEmpty,
                (Some(next), Some(end)) if next > end => break StopReason::ReachedEnd,
                _ => {}
            }
            self.process_next(handler)?;
            if self.stop_requested {
                break StopReason::Requested;
            }
        };
        Ok(RunOutcome {
            events_processed: self.events_processed.saturating_sub(start_count),
            stop,
            now: self.now,
        })
    }

    fn process_next<H>(&mut self, handler: &mut H) -> Result<bool, EngineError>
    where
        H: FnMut(&mut Ctx<'_, E>, NodeId, E),
    {
        if self.queue.is_empty() {
            return Ok(false);
        }
        if self.events_processed >= self.max_events {
            return Err(EngineError::EventLimit {
                limit: self.max_events,
                now: self.now,
            });
        }
        let Some(Scheduled {
            at, node, event, ..
        }) = self.queue.pop()
        else {
            return Ok(false);
        };
        // Only `schedule`'s check keeps `at >= now`; `max` makes the clock monotone regardless.
        self.now = self.now.max(at);
        self.trace.record(self.now, node, &event)?;
        self.events_processed = self.events_processed.saturating_add(1);
        let mut ctx = Ctx {
            now: self.now,
            queue: &mut self.queue,
            rng: &mut self.rng,
            stop_requested: &mut self.stop_requested,
        };
        handler(&mut ctx, node, event);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    use proptest::prelude::*;
    use rand_core::Rng;

    use super::*;
    use crate::trace::verify_trace;

    /// A toy epidemic: an infected node forwards the rumour to random peers after random
    /// delays, all drawn from the engine's RNG.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Gossip {
        Rumour { from: u32, hops: u32 },
        Tick,
    }

    impl Traced for Gossip {
        fn kind(&self) -> &'static str {
            match self {
                Gossip::Rumour { .. } => "rumour",
                Gossip::Tick => "tick",
            }
        }

        fn write_payload(&self, out: &mut Vec<u8>) {
            if let Gossip::Rumour { from, hops } = self {
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&hops.to_le_bytes());
            }
        }
    }

    const NODES: u32 = 64;
    const FANOUT: u32 = 3;

    fn epidemic(engine: &mut Engine<Gossip>) -> (RunOutcome, Vec<bool>) {
        let mut infected = vec![false; NODES as usize];
        engine
            .schedule(
                SimTime::ZERO,
                NodeId::new(0),
                Gossip::Rumour { from: 0, hops: 0 },
            )
            .unwrap();
        let outcome = engine
            .run(|ctx, node, event| {
                let Gossip::Rumour { hops, .. } = event else {
                    return;
                };
                let seen = &mut infected[node.as_u32() as usize];
                if *seen {
                    return;
                }
                *seen = true;
                for _ in 0..FANOUT {
                    let peer = (ctx.rng().next_u64() % u64::from(NODES)) as u32;
                    let delay = SimDuration::from_micros(1 + ctx.rng().next_u64() % 50_000);
                    let rumour = Gossip::Rumour {
                        from: node.as_u32(),
                        hops: hops + 1,
                    };
                    ctx.schedule_in(delay, NodeId::new(peer), rumour);
                }
            })
            .unwrap();
        (outcome, infected)
    }

    fn epidemic_hash(seed: u64) -> String {
        let mut engine = Engine::new(seed);
        let (outcome, infected) = epidemic(&mut engine);
        assert_eq!(outcome.stop, StopReason::QueueEmpty);
        assert!(infected.iter().filter(|&&i| i).count() > 1);
        engine.trace_hash()
    }

    #[test]
    fn same_seed_gives_the_same_trace_hash() {
        assert_eq!(epidemic_hash(7), epidemic_hash(7));
    }

    #[test]
    fn different_seeds_give_different_trace_hashes() {
        let hashes: std::collections::BTreeSet<String> = (0..8).map(epidemic_hash).collect();
        assert_eq!(hashes.len(), 8);
    }

    #[test]
    fn ties_are_processed_in_insertion_order() {
        let mut engine = Engine::new(1);
        let at = SimTime::from_micros(10);
        for node in [5, 3, 9, 0, 7] {
            engine
                .schedule(at, NodeId::new(node), Gossip::Tick)
                .unwrap();
        }
        // Scheduled from inside a handler at the same instant: still after the others.
        let mut order = Vec::new();
        engine
            .run(|ctx, node, _| {
                order.push(node.as_u32());
                if node.as_u32() == 5 {
                    ctx.schedule(ctx.now(), NodeId::new(42), Gossip::Tick)
                        .unwrap();
                }
            })
            .unwrap();
        assert_eq!(order, vec![5, 3, 9, 0, 7, 42]);
        assert_eq!(engine.now(), at);
    }

    #[test]
    fn scheduling_in_the_past_is_refused() {
        let mut engine = Engine::new(1);
        engine
            .schedule(SimTime::from_micros(100), NodeId::new(0), Gossip::Tick)
            .unwrap();
        let mut refused = None;
        engine
            .run(|ctx, _, _| {
                refused = ctx
                    .schedule(SimTime::from_micros(99), NodeId::new(0), Gossip::Tick)
                    .err();
            })
            .unwrap();
        assert_eq!(
            refused,
            Some(ScheduleError::InPast {
                at: SimTime::from_micros(99),
                now: SimTime::from_micros(100)
            })
        );
        assert_eq!(engine.pending_events(), 0);
    }

    #[test]
    fn max_events_stops_a_self_rescheduling_event() {
        let mut engine = Engine::new(3).with_max_events(1_000);
        engine
            .schedule(SimTime::ZERO, NodeId::new(0), Gossip::Tick)
            .unwrap();
        let result = engine.run(|ctx, node, event| {
            ctx.schedule_in(SimDuration::from_millis(1), node, event);
        });
        match result {
            Err(EngineError::EventLimit { limit, now }) => {
                assert_eq!(limit, 1_000);
                assert_eq!(now, SimTime::from_micros(999_000));
            }
            other => panic!("expected the event limit, got {other:?}"),
        }
        assert_eq!(engine.events_processed(), 1_000);
    }

    #[test]
    fn run_until_stops_at_end_and_advances_the_clock() {
        let mut engine = Engine::new(3);
        engine
            .schedule(SimTime::ZERO, NodeId::new(0), Gossip::Tick)
            .unwrap();
        let end = SimTime::from_micros(10_500);
        let outcome = engine
            .run_until(end, |ctx, node, event| {
                ctx.schedule_in(SimDuration::from_millis(1), node, event);
            })
            .unwrap();
        // Ticks at 0, 1 ms, ..., 10 ms are due by 10.5 ms; the one at 11 ms waits.
        assert_eq!(outcome.events_processed, 11);
        assert_eq!(outcome.stop, StopReason::ReachedEnd);
        assert_eq!(outcome.now, end);
        assert_eq!(engine.now(), end);
        assert_eq!(engine.pending_events(), 1);
    }

    #[test]
    fn request_stop_returns_after_the_current_event() {
        let mut engine = Engine::new(3);
        for t in 0..5 {
            engine
                .schedule(SimTime::from_micros(t), NodeId::new(0), Gossip::Tick)
                .unwrap();
        }
        let outcome = engine
            .run(|ctx, _, _| {
                if ctx.now() == SimTime::from_micros(2) {
                    ctx.request_stop();
                }
            })
            .unwrap();
        assert_eq!(outcome.stop, StopReason::Requested);
        assert_eq!(outcome.events_processed, 3);
        assert_eq!(engine.pending_events(), 2);
        assert!(engine.step(|_, _, _| {}).unwrap());
        assert_eq!(engine.pending_events(), 1);
    }

    /// A `Write` whose bytes stay readable after the engine has taken ownership of it.
    #[derive(Clone, Default)]
    struct SharedBuffer(Rc<RefCell<Vec<u8>>>);

    impl io::Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn trace_file_verifies_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.trace");
        let file = io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut engine = Engine::new(11).with_trace_sink(Box::new(file)).unwrap();
        epidemic(&mut engine);
        engine.flush_trace().unwrap();
        let recorded = engine.trace_hash();
        assert_eq!(verify_trace(&path).unwrap(), recorded);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The header line, then one line per event.
        assert_eq!(lines[0], "agora-trace v1 seed 11");
        assert_eq!(lines.len() as u64, engine.events_processed() + 1);

        // Another seed in the header gives another hash, even with the same events.
        let reseeded = dir.path().join("reseeded.trace");
        let mut other: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        other[0] = "agora-trace v1 seed 12".into();
        std::fs::write(&reseeded, other.join("\n") + "\n").unwrap();
        assert_ne!(verify_trace(&reseeded).unwrap(), recorded);

        // Change one payload digest digit on one line.
        let mut tampered_lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        let victim = &mut tampered_lines[lines.len() / 2];
        let last = victim.pop().unwrap();
        victim.push(if last == '0' { '1' } else { '0' });
        let tampered = dir.path().join("tampered.trace");
        std::fs::write(&tampered, tampered_lines.join("\n") + "\n").unwrap();
        let tampered_hash = verify_trace(&tampered).unwrap();
        assert_ne!(tampered_hash, recorded);

        // Dropping a line changes it too.
        let shortened = dir.path().join("shortened.trace");
        std::fs::write(&shortened, lines[1..].join("\n") + "\n").unwrap();
        assert_ne!(verify_trace(&shortened).unwrap(), recorded);
    }

    #[test]
    fn trace_sink_receives_one_line_per_event() {
        let buffer = SharedBuffer::default();
        let mut engine = Engine::new(5)
            .with_trace_sink(Box::new(buffer.clone()))
            .unwrap();
        engine
            .schedule(SimTime::from_micros(42), NodeId::new(3), Gossip::Tick)
            .unwrap();
        engine.run(|_, _, _| {}).unwrap();
        let text = String::from_utf8(buffer.0.borrow().clone()).unwrap();
        let empty_payload_digest =
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            text,
            format!("agora-trace v1 seed 5\n42 3 tick {empty_payload_digest}\n")
        );
    }

    proptest! {
        #[test]
        fn distinct_times_pop_in_time_order(
            times in proptest::collection::btree_set(0u64..1_000_000, 0..200)
                .prop_map(|set| set.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
        ) {
            let mut engine = Engine::new(0);
            for (index, &t) in times.iter().enumerate() {
                engine.schedule(SimTime::from_micros(t), NodeId::new(index as u32), Gossip::Tick).unwrap();
            }
            let mut popped = Vec::new();
            engine.run(|ctx, _, _| popped.push(ctx.now().as_micros())).unwrap();
            let mut expected = times.clone();
            expected.sort_unstable();
            prop_assert_eq!(popped, expected);
        }

        #[test]
        fn any_times_pop_in_time_then_insertion_order(
            times in proptest::collection::vec(0u64..20, 0..200)
        ) {
            let mut engine = Engine::new(0);
            for (index, &t) in times.iter().enumerate() {
                engine.schedule(SimTime::from_micros(t), NodeId::new(index as u32), Gossip::Tick).unwrap();
            }
            let mut popped = Vec::new();
            engine.run(|ctx, node, _| popped.push((ctx.now().as_micros(), node.as_u32()))).unwrap();
            let mut expected: Vec<(u64, u32)> =
                times.iter().enumerate().map(|(i, &t)| (t, i as u32)).collect();
            // A stable sort by time keeps insertion order among ties.
            expected.sort_by_key(|&(t, _)| t);
            prop_assert_eq!(popped, expected);
        }
    }
}
