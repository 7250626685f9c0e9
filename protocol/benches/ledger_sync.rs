//! Evidence-log catch-up through the sans-IO sync path (issue 7): a log that holds nothing
//! pages a peer's whole log in, verifying every signature (the entry's and every nested
//! one).
//!
//! Run: `cargo bench -p agora-protocol --bench ledger_sync`
//! (options: `AGORA_BENCH_ENTRIES=100000`, the entries the peer holds).
//!
//! The peer's log is a market's life (`common/market.rs`: 16 authoring nodes, 512 agents,
//! 64 providers; grants, receipts with acknowledgements, ratings, signups with credentials,
//! revocations). The asker sends its frontier and cursor (`ledger_rpc::Request::Page`), the
//! peer answers `EvidenceLog::page` (up to 256 entries), both through their wire encoding,
//! and the asker ingests each page with `insert_batch` (the batched cofactored verification),
//! until a page has no `next`; then the two state hashes must match. The node's own path,
//! with its RocksDB store: `cargo bench -p agora-node --bench ledger_catchup`.
//!
//! Prints one row: total time, entries/s, pages.

use agora_protocol::cofactored::Cofactored;
use agora_protocol::ledger::{Config, EvidenceLog, MAX_PAGE_ENTRIES, Outcome};
use agora_protocol::ledger_rpc::{Request, Response};

#[path = "common/market.rs"]
mod market;

#[path = "common/catchup.rs"]
mod catchup;

use catchup::{
    CaughtUp, entry_count, generate, now, over_the_wire_request, over_the_wire_response, page_of,
    page_through, row,
};
use market::{Generated, Res};

/// The sans-IO logs: the asker pages `source` into a fresh log with `insert_batch`.
fn evidence_log(source: &EvidenceLog) -> Res<CaughtUp> {
    let mut log = EvidenceLog::new(Config::default())?;
    let (took, pages) = page_through(|after| {
        let request = over_the_wire_request(&Request::Page {
            have: log.frontier(),
            after,
            limit: u16::try_from(MAX_PAGE_ENTRIES)?,
        })?;
        let Request::Page {
            have,
            after: at,
            limit,
        } = request
        else {
            return Err("a page request decoded as something else".into());
        };
        let page = source.page(&have, at, usize::from(limit));
        let (entries, next) = page_of(over_the_wire_response(&Response::Page {
            entries: page.entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
            next: page.next,
        })?)?;
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        for outcome in log.insert_batch(now(), &refs, &Cofactored) {
            if !matches!(outcome, Outcome::Inserted(_)) {
                return Err(format!("entry not inserted: {outcome:?}").into());
            }
        }
        Ok(next)
    })?;
    if log.state_hash() != source.state_hash() {
        return Err(format!("caught up {} of {} entries", log.len(), source.len()).into());
    }
    Ok(CaughtUp {
        took,
        pages,
        entries: log.len(),
    })
}

fn main() -> Res<()> {
    let Generated { log: source, .. } = generate("ledger_sync", entry_count())?;
    let c = evidence_log(&source)?;
    row("EvidenceLog page → wire → insert_batch (Cofactored)", &c);
    Ok(())
}
