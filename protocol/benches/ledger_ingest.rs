//! Evidence-log ingest with full verification (issue 7): entries per second on one core.
//!
//! Run: `cargo bench -p agora-protocol --bench ledger_ingest`
//! (options: `AGORA_BENCH_ENTRIES=20000 AGORA_BENCH_REPEAT=3 AGORA_BENCH_BATCH=256`,
//! `AGORA_BENCH_ONLY=<part of a mode's name>`).
//!
//! A generator (`common/market.rs`) plays a market's life into one log: 16 nodes log the
//! facts of 512 agents (70 % attested by one of two issuers, the rest unattested) leasing
//! from 64 providers. Per lease: the provider's grant (with its capability), a first
//! receipt, a final receipt the agent acknowledges, and (7 leases in 10) the agent's rating;
//! each agent's signup record when it first appears; now and then an issuer's revocation.
//! The entries' wire bytes, in
//! the log's canonical order (what sync pages deliver), are then ingested into fresh logs:
//! one by one (`insert_bytes`) and in pages (`insert_batch`), and, for reference, only
//! decoded. Every signature is verified: the entry's and every nested one.
//!
//! Prints one table: entries/s (median of the repeats), µs per entry and signatures/s.

use std::time::{Duration, Instant};

use agora_protocol::cofactored::Cofactored;
use agora_protocol::ledger::{self, Config, Entry, EvidenceLog, Outcome};
use agora_protocol::{Ed25519, Signed, Timestamp, Verifier};

#[path = "common/market.rs"]
mod market;

use market::{Generated, Res, entries};

fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_900_000_000)
}

fn check(outcome: &Outcome) -> Res<()> {
    match outcome {
        Outcome::Inserted(_) => Ok(()),
        other => Err(format!("entry not inserted: {other:?}").into()),
    }
}

fn one_by_one(wires: &[Vec<u8>], verifier: &impl Verifier) -> Res<Duration> {
    let mut log = EvidenceLog::new(Config::default())?;
    let started = Instant::now();
    for wire in wires {
        check(&log.insert_bytes(now(), wire, verifier))?;
    }
    let took = started.elapsed();
    if log.len() != wires.len() {
        return Err("not every entry was accepted".into());
    }
    Ok(took)
}

/// What the node did before batching: `Signed::decode` (nested signatures verified strictly
/// as serde meets them), then `insert`.
fn decode_then_insert(wires: &[Vec<u8>]) -> Res<Duration> {
    let mut log = EvidenceLog::new(Config::default())?;
    let started = Instant::now();
    for wire in wires {
        let entry = Signed::<Entry>::decode(wire, &Ed25519)?;
        check(&log.insert(now(), entry))?;
    }
    let took = started.elapsed();
    if log.len() != wires.len() {
        return Err("not every entry was accepted".into());
    }
    Ok(took)
}

fn batched(wires: &[Vec<u8>], page: usize, verifier: &impl Verifier) -> Res<Duration> {
    let mut log = EvidenceLog::new(Config::default())?;
    let started = Instant::now();
    for chunk in wires.chunks(page) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        for outcome in log.insert_batch(now(), &refs, verifier) {
            check(&outcome)?;
        }
    }
    let took = started.elapsed();
    if log.len() != wires.len() {
        return Err("not every entry was accepted".into());
    }
    Ok(took)
}

fn decode_only(wires: &[Vec<u8>], page: usize, verifier: &impl Verifier) -> Res<Duration> {
    let started = Instant::now();
    for chunk in wires.chunks(page) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        for decoded in ledger::decode_batch(&refs, verifier) {
            decoded?;
        }
    }
    Ok(started.elapsed())
}

/// One way of ingesting, timed.
type Run<'a> = Box<dyn Fn() -> Res<Duration> + 'a>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Res<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with a tiny load.
    let quick = !std::env::args().any(|a| a == "--bench");
    let count = if quick {
        200
    } else {
        env("AGORA_BENCH_ENTRIES", 20_000)
    };
    let repeat = if quick {
        1
    } else {
        env("AGORA_BENCH_REPEAT", 3)
    };
    let page = env("AGORA_BENCH_BATCH", 256).max(1);
    let Generated {
        wires,
        signatures: sigs,
        kinds,
        log,
    } = entries(count)?;
    if log.len() != wires.len() {
        return Err("the generated log lost entries".into());
    }
    let bytes: usize = wires.iter().map(Vec::len).sum();
    println!(
        "ledger_ingest: {} entries, {} signatures ({:.2} per entry), {:.0} bytes per entry",
        wires.len(),
        sigs,
        sigs as f64 / wires.len() as f64,
        bytes as f64 / wires.len() as f64
    );
    println!("facts: {kinds:?}");
    let runs: Vec<(String, Run<'_>)> = vec![
        (
            "Signed::<Entry>::decode then insert, strict Ed25519 (before)".into(),
            Box::new(|| decode_then_insert(&wires)),
        ),
        (
            "insert_bytes one by one, strict Ed25519".into(),
            Box::new(|| one_by_one(&wires, &Ed25519)),
        ),
        (
            "insert_bytes one by one, Cofactored".into(),
            Box::new(|| one_by_one(&wires, &Cofactored)),
        ),
        (
            format!("insert_batch pages of {page}, strict Ed25519"),
            Box::new(|| batched(&wires, page, &Ed25519)),
        ),
        (
            format!("insert_batch pages of {page}, Cofactored"),
            Box::new(|| batched(&wires, page, &Cofactored)),
        ),
        (
            format!("decode_batch only, pages of {page}, Cofactored"),
            Box::new(|| decode_only(&wires, page, &Cofactored)),
        ),
    ];
    println!("| mode | entries/s | µs per entry | signatures/s |\n|---|---:|---:|---:|");
    let only = std::env::var("AGORA_BENCH_ONLY").unwrap_or_default();
    for (name, run) in runs.into_iter().filter(|(n, _)| n.contains(&only)) {
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            times.push(run()?);
        }
        times.sort();
        let median = times
            .get(times.len() / 2)
            .map_or(f64::NAN, Duration::as_secs_f64);
        let n = wires.len() as f64;
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} |",
            n / median,
            median * 1e6 / n,
            sigs as f64 / median
        );
    }
    Ok(())
}
