//! Multi-host: nodes as containers on a private Docker network. One node is cut off with
//! `docker network disconnect` while the market changes (a provider arrives, another leaves),
//! then re-attached: its offer book must catch up with the rest of the network. A, B, C and
//! P2 are the quota committee (n = 4), as in every multi-node test.
//!
//! Latencies are printed as benchmark figures; the assertions only use generous deadlines.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use agora_tests::docker_net::{Container, DockerNet};
use agora_tests::require_docker;

/// Deadline for gossip to spread on a healthy network: a provider re-advertises every 10 s
/// (half the offer TTL), so even a first advertisement that missed the mesh arrives in time.
const SPREAD: Duration = Duration::from_secs(60);
/// Deadline for the cut-off node to catch up once re-attached. Its connections died silently
/// with the cut, and it only notices on ping failure, up to ~30 s later (libp2p-ping ignores
/// the first failure: 5 s interval + 10 s timeout, twice); it then redials within 10 s and
/// syncs. About 40 s in the worst case, plus slack for a loaded machine.
const CATCH_UP: Duration = Duration::from_secs(90);
/// Short offers, so a provider that vanished without a withdrawal is gone within seconds.
const OFFER_TTL: &str = "20s";

/// The quota committee (n = 4), as in every multi-node test: it plays no part in offer
/// gossip, but runs beside it.
const VALIDATORS: [&str; 4] = ["a", "b", "c", "p2"];

fn gateway(bootstrap: &str) -> Vec<&str> {
    vec!["--role", "gateway", "--bootstrap", bootstrap]
}

fn provider(bootstrap: &str) -> Vec<&str> {
    vec![
        "--role",
        "provider",
        "--runtime",
        "docker",
        "--vcpu",
        "2",
        "--memory-mib",
        "2048",
        "--region",
        "eu",
        "--offer-ttl",
        OFFER_TTL,
        "--bootstrap",
        bootstrap,
    ]
}

/// Waits until every node's offer book lists exactly the providers in `want`, returning how
/// long it took. Prints each change it observes on the way (convergence is a benchmark
/// figure); panics with the last books seen (the network guard then prints the logs).
fn await_books(
    nodes: &[&Container],
    want: &[&Container],
    deadline: Duration,
    what: &str,
) -> Duration {
    let mut want: Vec<String> = want.iter().map(|c| c.id.clone()).collect();
    want.sort();
    let start = Instant::now();
    let mut last = Vec::new();
    loop {
        let books: Vec<Option<Vec<String>>> = nodes.iter().map(|n| n.offer_providers()).collect();
        if books != last {
            eprintln!(
                "  {what} +{:.1?}: {}",
                start.elapsed(),
                describe(nodes, &books)
            );
            last.clone_from(&books);
        }
        if books.iter().all(|b| b.as_ref() == Some(&want)) {
            return start.elapsed();
        }
        if start.elapsed() > deadline {
            panic!(
                "{what}: not converged after {deadline:?}; want {want:?}, saw {}",
                describe(nodes, &books)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `c: ["..k427"]` per node, providers shortened to their last characters.
fn describe(nodes: &[&Container], books: &[Option<Vec<String>>]) -> String {
    let short = |id: &String| format!("..{}", &id[id.len().saturating_sub(6)..]);
    nodes
        .iter()
        .zip(books)
        .map(|(n, b)| {
            let node = n.name.rsplit('-').next().unwrap_or(&n.name);
            match b {
                Some(ids) => format!("{node}: {:?}", ids.iter().map(short).collect::<Vec<_>>()),
                None => format!("{node}: unreachable"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn disconnected_node_catches_up_after_reconnect() {
    if !require_docker("disconnected_node_catches_up_after_reconnect") {
        return;
    }
    let conf = tempfile::tempdir().unwrap();
    let net = DockerNet::create().with_committee(conf.path(), &VALIDATORS);

    // 1. A bootstrap gateway (also the Kademlia server), two gateways and a provider.
    let a = net.start("a", &["--role", "gateway", "--kad-server", "true"]);
    let boot = a.bootstrap_addr();
    let b = net.start("b", &gateway(&boot));
    let mut c = net.start("c", &gateway(&boot));
    let p1 = net.start("p1", &provider(&boot));
    eprintln!("providers: p1 {}", p1.id);
    let took = await_books(&[&a, &b, &c], &[&p1], SPREAD, "P1 reaches A, B, C");
    eprintln!("P1's offer on A, B, C {took:.1?} after P1 started");

    // 2. Cut C off, then change the market behind its back: P2 arrives, then P1 leaves on
    //    SIGTERM with a signed withdrawal, which C cannot receive.
    net.disconnect(&mut c);
    let cut_at = Instant::now();
    let p2 = net.start("p2", &provider(&boot));
    eprintln!("providers: p2 {}", p2.id);
    let took = await_books(&[&a, &b], &[&p1, &p2], SPREAD, "P2 reaches A, B");
    eprintln!("P2's offer on A, B {took:.1?} after P2 started");
    let stop_at = Instant::now();
    let code = net.stop(&p1, Duration::from_secs(20));
    assert_eq!(code, Some(0), "P1 exits cleanly on SIGTERM");
    let took = await_books(&[&a, &b], &[&p2], SPREAD, "P1 leaves A, B");
    eprintln!(
        "P1 gone from A, B {:.1?} after SIGTERM (its offer's TTL is {OFFER_TTL})",
        stop_at.elapsed().max(took)
    );

    // 3. Re-attach C (possibly at a new address). It catches up by syncing the offer book of
    //    the peers it reconnects to; P1's offer, whose withdrawal it missed, is gone by then
    //    or expires within the TTL.
    let cut_for = cut_at.elapsed();
    net.connect(&mut c);
    let took = await_books(&[&c], &[&p2], CATCH_UP, "C catches up");
    eprintln!(
        "C caught up {took:.1?} after reconnecting ({:.1?} after the cut, which lasted {cut_for:.1?})",
        cut_at.elapsed()
    );
}
