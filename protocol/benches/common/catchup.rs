//! What the catch-up benchmarks share (`ledger_sync` here, `ledger_catchup` in the node):
//! the asker's clock, the wire round trip, the paging loop and the printed row.

use std::time::{Duration, Instant};

use agora_protocol::Timestamp;
use agora_protocol::ledger::Cursor;
use agora_protocol::ledger_rpc::{Request, Response};

use super::market::{Generated, Res, entries};

/// When the asker receives the pages: after every generated entry's time.
pub fn now() -> Timestamp {
    Timestamp::from_unix_secs(1_900_000_000)
}

/// A request as the other side reads it off the wire.
pub fn over_the_wire_request(request: &Request) -> Res<Request> {
    Ok(Request::decode(&request.encode()?)?)
}

/// An answer as the asker reads it off the wire.
pub fn over_the_wire_response(response: &Response) -> Res<Response> {
    Ok(Response::decode(&response.encode()?)?)
}

/// How one catch-up went.
pub struct CaughtUp {
    /// From the first request to the last page ingested.
    pub took: Duration,
    /// Pages asked for.
    pub pages: usize,
    /// Entries the asker then holds.
    pub entries: usize,
}

/// Pages from an empty cursor until an answer has no `next`: `page(after)` asks, ingests
/// and returns the answer's `next`. Returns the time taken and the pages.
pub fn page_through(
    mut page: impl FnMut(Option<Cursor>) -> Res<Option<Cursor>>,
) -> Res<(Duration, usize)> {
    let started = Instant::now();
    let mut after = None;
    let mut pages = 0;
    loop {
        pages += 1;
        match page(after)? {
            Some(next) => after = Some(next),
            None => return Ok((started.elapsed(), pages)),
        }
    }
}

/// The entries of a decoded page answer.
pub fn page_of(answer: Response) -> Res<(Vec<Vec<u8>>, Option<Cursor>)> {
    match answer {
        Response::Page { entries, next } => Ok((entries, next)),
        _ => Err("a page answer decoded as something else".into()),
    }
}

/// One table row: mode, entries, total seconds, entries per second, pages.
pub fn row(name: &str, c: &CaughtUp) {
    let secs = c.took.as_secs_f64();
    println!(
        "| {name} | {} | {:.2} | {:.0} | {} |",
        c.entries,
        secs,
        c.entries as f64 / secs,
        c.pages
    );
}

/// The entries the peer holds: `AGORA_BENCH_ENTRIES` (default 100 000) under `cargo bench`,
/// 600 when `cargo test --benches` runs it (no `--bench` argument).
pub fn entry_count() -> usize {
    if !std::env::args().any(|a| a == "--bench") {
        return 600;
    }
    std::env::var("AGORA_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Generates the peer's log of `count` entries and prints what it holds, headed `bench`.
pub fn generate(bench: &str, count: usize) -> Res<Generated> {
    let generating = Instant::now();
    let generated = entries(count)?;
    let wires = &generated.wires;
    let bytes: usize = wires.iter().map(Vec::len).sum();
    println!(
        "{bench}: {} entries, {} signatures ({:.2} per entry), {:.1} MiB ({:.0} bytes per entry), generated in {:.1} s",
        wires.len(),
        generated.signatures,
        generated.signatures as f64 / wires.len() as f64,
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / wires.len() as f64,
        generating.elapsed().as_secs_f64()
    );
    println!("facts: {:?}", generated.kinds);
    println!("| mode | entries | total s | entries/s | pages |\n|---|---:|---:|---:|---:|");
    Ok(generated)
}
