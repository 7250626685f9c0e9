//! The single-threaded discrete-event engine.
//!
//! Events wait in a priority queue ordered by `(time, insertion sequence number)`: the
//! sequence number breaks ties between events due at the same instant in the order they
//! were scheduled, so a run depends on nothing but the seed and the handler. One seeded
//! [`ChaCha20Rng`] is the only source of randomness, handed to the handler through [`Ctx`].

use std::fmt;
use std::io::Write;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::time::{SimDuration, SimTime};
use crate::trace::{TraceError, TraceRecorder, Traced};

mod queue;

use queue::{EventQueue, Scheduled};

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
mod tests;
