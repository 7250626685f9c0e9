//! The engine's tests: ordering, determinism, limits and the trace.

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
    assert_eq!(lines[0], "agora-trace v2 seed 11");
    assert_eq!(lines.len() as u64, engine.events_processed() + 1);

    // Another seed in the header gives another hash, even with the same events.
    let reseeded = dir.path().join("reseeded.trace");
    let mut other: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    other[0] = "agora-trace v2 seed 12".into();
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
    // An empty payload's fingerprint: its length, zero.
    let empty_payload = "00";
    assert_eq!(
        text,
        format!("agora-trace v2 seed 5\n42 3 tick {empty_payload}\n")
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
