//! Evidence-log catch-up (issue 7): a replica that holds nothing fetches a peer's whole log
//! through the sync path, verifying every signature (the entry's and every nested one).
//!
//! Run: `cargo bench -p agora-node --bench ledger_catchup`
//! (options: `AGORA_BENCH_ENTRIES=100000`, the entries the peer holds;
//! `AGORA_BENCH_ONLY=<part of a mode's name>`).
//!
//! The peer's log is a market's life (`protocol/benches/common/market.rs`: 16 authoring
//! nodes, 512 agents, 64 providers; grants, receipts with acknowledgements, ratings,
//! signups with credentials, revocations). The asker pages through it from an empty
//! frontier, as the node's network loop does (`daemon/network/ledger.rs`), every request
//! and answer through its wire encoding (`protocol::ledger_rpc`), until the answer has no
//! `next`; then it checks that its state hash equals the peer's. (The same with the sans-IO
//! `EvidenceLog` on both sides: `cargo bench -p agora-protocol --bench ledger_sync`.) Modes:
//!
//! - `node Ledger, RocksDB`: `agora_node::ledger::Ledger` on both sides, each on its own
//!   RocksDB store in a temporary directory: `page_request` → `answer` → `ingest`, which
//!   verifies each entry, inserts it and writes each page's accepted entries in one store
//!   batch (the node's real path, minus libp2p).
//! - `node Ledger restart`: the asker's store reopened (`Ledger::open`: every stored entry
//!   re-read, re-verified and inserted parents first).
//!
//! Prints one table: total time, entries/s, pages.

use std::sync::Arc;
use std::time::Instant;

use agora_attest::Identity;
use agora_node::ledger::Ledger;
use agora_node::metrics::NodeMetrics;
use agora_node::store::{RocksStore, Store};
use agora_protocol::Digest;
use agora_protocol::ledger::{Config, MAX_PAGE_ENTRIES};

#[path = "../../protocol/benches/common/market.rs"]
mod market;

#[path = "../../protocol/benches/common/catchup.rs"]
mod catchup;

use catchup::{
    CaughtUp, entry_count, generate, now, over_the_wire_request, over_the_wire_response, page_of,
    page_through, row,
};
use market::{Generated, Res};

/// A node's ledger on a fresh RocksDB store in `dir`.
fn node_ledger(n: u8, dir: &std::path::Path) -> Res<Ledger> {
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir)?);
    Ok(Ledger::open(
        Arc::new(Identity::from_secret_bytes(&[n; 32])),
        store,
        Config::default(),
        NodeMetrics::default(),
        now(),
    )?)
}

/// Nodes' ledgers: the asker pages `source` into the fresh ledger `asker`.
fn node_ledgers(source: &Ledger, asker: &Ledger) -> Res<CaughtUp> {
    let (took, pages) = page_through(|after| {
        let request = over_the_wire_request(&asker.page_request(after))?;
        let (entries, next) = page_of(over_the_wire_response(&source.answer(&request))?)?;
        let ingested = asker.ingest(now(), &entries);
        if !ingested.faults.is_empty() || ingested.pending > 0 || ingested.refused > 0 {
            return Err(format!("page not accepted whole: {ingested:?}").into());
        }
        Ok(next)
    })?;
    if asker.state_hash() != source.state_hash() {
        return Err(format!(
            "caught up {} of {} entries",
            asker.state().entries,
            source.state().entries
        )
        .into());
    }
    Ok(CaughtUp {
        took,
        pages,
        entries: usize::try_from(asker.state().entries)?,
    })
}

fn main() -> Res<()> {
    let Generated {
        wires,
        log: generated,
        ..
    } = generate("ledger_catchup", entry_count())?;
    let only = std::env::var("AGORA_BENCH_ONLY").unwrap_or_default();
    let node_mode = "node Ledger, RocksDB: page_request → answer → wire → ingest";
    if node_mode.contains(&only) {
        let tmp = tempfile::tempdir()?;
        let peer = node_ledger(1, &tmp.path().join("peer"))?;
        // The peer's store is filled outside the clock, a page at a time.
        for chunk in wires.chunks(MAX_PAGE_ENTRIES) {
            let ingested = peer.ingest(now(), chunk);
            if ingested.accepted != chunk.len() {
                return Err(format!("the peer refused generated entries: {ingested:?}").into());
            }
        }
        if peer.state_hash() != generated.state_hash() {
            return Err("the peer's log differs from the generated one".into());
        }
        let asker_dir = tmp.path().join("asker");
        let asker = node_ledger(2, &asker_dir)?;
        row(node_mode, &node_ledgers(&peer, &asker)?);
        let hash: Digest = asker.state_hash();
        drop(asker);
        let started = Instant::now();
        let reopened = node_ledger(2, &asker_dir)?;
        let took = started.elapsed();
        if reopened.state_hash() != hash {
            return Err("the reopened store lost entries".into());
        }
        row(
            "node Ledger restart: Ledger::open re-verifies the store",
            &CaughtUp {
                took,
                pages: 0,
                entries: usize::try_from(reopened.state().entries)?,
            },
        );
    }
    Ok(())
}
