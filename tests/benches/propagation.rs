//! Offer propagation with real `agora node` processes on loopback.
//!
//! ```sh
//! cargo build --release -p agora-node --bin agora
//! AGORA_BIN=$CARGO_TARGET_DIR/release/agora cargo test -p agora-tests --bench propagation -- --bench
//! ```
//! (the harness runs in the test profile, the nodes are the release binary; options via
//! env: `AGORA_BENCH_NODES` (default 20), `AGORA_BENCH_OFFERS` (default 100)).
//!
//! One bootstrap node, the rest bootstrap to it; four of them are providers. Each round
//! one provider changes its advertised memory (config edit + SIGHUP) and re-advertises;
//! a poller per node watches its `/v1/offers/{provider}` every 20 ms. Latency of one offer
//! at one node = first time the node shows the new sequence number − the offer's
//! `issued_at` (same host clock). Reported: p50/p90/p99/max over all (offer, node) pairs,
//! the share that arrived at all, and the idle RSS per node afterwards.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_tests::node::{NodeProc, http_get, wait_for};
use indicatif::{ProgressBar, ProgressStyle};

const PROVIDERS: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn provider_config(memory_mib: u64) -> String {
    format!(
        "roles = [\"provider\", \"gateway\"]\nregion = \"bench\"\n\n[provider]\nvcpu = 2\nmemory_mib = {memory_mib}\ndisk_mib = 1024\noffer_ttl = \"10m\"\nprices = {{ vcpu = 100, memory_gib = 10 }}\n"
    )
}

/// (provider index, memory) → the seq and issued_at the provider signed, read from itself.
fn own_offer(node: &NodeProc, provider: &str) -> Option<(u64, u64, u64)> {
    let (status, v) = http_get(node.http, &format!("/v1/offers/{provider}"));
    if status != 200 {
        return None;
    }
    let seq = v["seq"].as_u64()?;
    let mem = v["capacity"]["memory_mib"].as_u64()?;
    let issued = v["issued_at"].as_str()?;
    Some((seq, mem, rfc3339_ms(issued)?))
}

/// Parses the RFC 3339 form the API prints (`2026-11-29T06:31:04.476Z`) to Unix ms.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms).ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and a 20-node run has no place in the test suite: only check the clock parser.
    if !std::env::args().any(|a| a == "--bench") {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(
            rfc3339_ms("2026-11-29T06:31:04.476Z"),
            Some(1_795_933_864_476)
        );
        println!("propagation: benchmark skipped (run it with cargo bench)");
        return;
    }
    let n_nodes = env_usize("AGORA_BENCH_NODES", 20).max(PROVIDERS + 1);
    let n_offers = env_usize("AGORA_BENCH_OFFERS", 100);
    let tmp = tempfile::tempdir().unwrap();

    let bar = ProgressBar::new(n_nodes as u64).with_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message("starting");
    let boot = NodeProc::start(
        &tmp.path().join("n0"),
        &["--kad-server".into(), "true".into()],
    );
    bar.inc(1);
    let b = vec!["--bootstrap".to_owned(), boot.tcp_addr()];
    let mut nodes = vec![boot];
    let mut configs = Vec::new();
    for i in 1..n_nodes {
        let dir = tmp.path().join(format!("n{i}"));
        let mut args = b.clone();
        if i <= PROVIDERS {
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = dir.join("node.toml");
            std::fs::write(&cfg, provider_config(1000)).unwrap();
            args.extend(["--config".into(), cfg.display().to_string()]);
            configs.push(cfg);
        }
        nodes.push(NodeProc::start(&dir, &args));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let providers: Vec<String> = nodes[1..=PROVIDERS].iter().map(|n| n.id.clone()).collect();

    // Warm-up: every node sees every provider's first offer, meshes settle.
    for n in &nodes {
        let all = wait_for(Duration::from_secs(120), || {
            (n.offer_providers("").len() >= PROVIDERS).then_some(())
        });
        assert!(all.is_some(), "warm-up: node {} incomplete", n.id);
    }
    std::thread::sleep(Duration::from_secs(3));

    // Pollers: per node, the first time each (provider, seq) was seen.
    type Seen = Arc<Mutex<Vec<(usize, u64, u64)>>>; // (provider idx, seq, seen ms)
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Seen> = nodes.iter().map(|_| Arc::default()).collect();
    let mut threads = Vec::new();
    for (node, log) in nodes.iter().zip(&seen) {
        let (http, log, stop, providers) = (
            node.http,
            Arc::clone(log),
            Arc::clone(&stop),
            providers.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut last = vec![0u64; providers.len()];
            while !stop.load(Ordering::Relaxed) {
                let (_, v) = http_get(http, "/v1/offers?limit=1000&region=bench");
                let t = now_ms();
                for o in v["offers"].as_array().into_iter().flatten() {
                    let (Some(p), Some(seq)) = (o["provider"].as_str(), o["seq"].as_u64()) else {
                        continue;
                    };
                    if let Some(i) = providers.iter().position(|x| x == p)
                        && seq > last[i]
                    {
                        last[i] = seq;
                        log.lock().unwrap().push((i, seq, t));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    // Rounds: one provider at a time re-advertises; each provider at most every
    // PROVIDERS × 0.6 s, inside the per-provider gossip rate limit (1 per 2 s + burst).
    let bar = ProgressBar::new(n_offers as u64).with_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message("offers");
    let mut published = Vec::new(); // (provider idx, seq, issued ms)
    for round in 0..n_offers {
        let p = round % PROVIDERS;
        let memory = 1001 + round as u64;
        std::fs::write(&configs[p], provider_config(memory)).unwrap();
        nodes[p + 1].signal("HUP");
        let own = wait_for(Duration::from_secs(10), || {
            own_offer(&nodes[p + 1], &providers[p]).filter(|(_, m, _)| *m == memory)
        });
        let (seq, _, issued) = own.expect("provider re-advertised");
        published.push((p, seq, issued));
        bar.inc(1);
        std::thread::sleep(Duration::from_millis(600));
    }
    bar.finish_and_clear();
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    // Latency per (offer, node other than its provider).
    let mut lat = Vec::new();
    let mut missing = 0usize;
    for &(p, seq, issued) in &published {
        for (i, log) in seen.iter().enumerate() {
            if i == p + 1 {
                continue;
            }
            let log = log.lock().unwrap();
            // Seen with this seq, or already a later one (superseded before the poll).
            match log
                .iter()
                .filter(|(pi, s, _)| *pi == p && *s >= seq)
                .map(|(_, _, t)| *t)
                .min()
            {
                Some(t) => lat.push(t.saturating_sub(issued)),
                None => missing += 1,
            }
        }
    }
    lat.sort_unstable();

    // Idle memory: give the nodes a quiet moment, then read RSS.
    std::thread::sleep(Duration::from_secs(10));
    let mut rss: Vec<u64> = nodes
        .iter()
        .filter_map(|n| n.pid().and_then(rss_kib))
        .collect();
    rss.sort_unstable();
    let mean_rss = rss.iter().sum::<u64>() / rss.len().max(1) as u64;

    println!("offer propagation, {n_nodes} nodes on loopback, {n_offers} offers");
    println!("| metric | value |");
    println!("|---|---|");
    println!("| deliveries measured | {} |", lat.len());
    println!("| missing deliveries | {missing} |");
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        println!("| latency {name} | {} ms |", percentile(&lat, p));
    }
    println!(
        "| idle RSS per node, mean | {:.1} MiB |",
        mean_rss as f64 / 1024.0
    );
    println!(
        "| idle RSS per node, max | {:.1} MiB |",
        rss.last().copied().unwrap_or(0) as f64 / 1024.0
    );
    for n in nodes {
        n.stop();
    }
    if std::env::var_os("AGORA_BENCH_KEEP").is_some() {
        println!("node dirs and logs kept in {}", tmp.keep().display());
    }
}
