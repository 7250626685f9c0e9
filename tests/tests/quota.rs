//! The quota committee with real `agora` processes on 127.0.0.1: four validators (n = 4,
//! f = 1) named in a genesis file, two sandbox providers, agents signed up through the CLI
//! (each claims the free tier, certified by the committee).
//!
//! - Lock certificate latency: 30 locks certified one after the other through a gateway
//!   that is itself a validator (each request then refused by the provider on price, so no
//!   workload starts, and the gateway releases each lock with the provider's signed
//!   refusal: nothing stays held); the p50 and p90 of the gateway's aggregation time are
//!   printed.
//! - Bad locks beside a request (not base64url, fallbacks without a lock or not chained,
//!   two at one provider, too many) are refused `malformed_lock` / `bad_lock`, nothing
//!   certified.
//! - Double spend: an agent signs two locks, each within its balance but together above
//!   it, for two providers, and sends both requests at once through two different
//!   gateways: exactly one lease starts, the other is refused with `quota`. The same with
//!   two locks in the same chain position (the agent equivocating): at most one starts.
//! - A request without a lock reaches the provider without a certificate: refused `quota`.
//! - With f = 1 validator killed, a lock still certifies and its lease starts; the
//!   validator restarted restores its votes from its store.
//! - Extension under the committee: `agora agent extend` twice, each paid by a certified
//!   top-up the provider keeps beside the lock; a top-up naming another base than the
//!   lease's locks hold is not certified (`quota`); the stop settles all three locks and
//!   the account is charged the final receipt's cost once.
//! - Acknowledged receipts: `agora agent stop` countersigns the final receipt; the provider
//!   records the acknowledged usage fact (`GET /v1/ledger/state` `acknowledged_receipts`,
//!   gossiped to the gateway), `agora agent status` then has nothing to send, and the
//!   provider's reputation counts the lease as run (`score.ran`).
//! - A delegate under the committee: the node's `/mcp`, under the agent's token, signs the
//!   agent's locks with its delegation: a token capped at 0 credits is refused `quota`, one
//!   capped at 10 runs and stops a lease, and the delegate's lock is settled.
//! - Reputation under the genesis: `GET /v1/providers/{provider}` and `agora provider show`
//!   answer with the provider's provisional epoch and its offer.
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips the test.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use agora_attest::{Identity, keyfile};
use agora_node::agent::quota::{Extension, QuotaAccount, lock_op, top_up_op};
use agora_node::agent::request::{RunPlan, sign_op};
use agora_protocol::committee::Op;
use agora_protocol::lease::LeaseGrant;
use agora_protocol::signup::SignupRecord;
use agora_protocol::{Ed25519, Signed};
use agora_tests::cluster::{agent_cli, cgroup_parent, signup, wait_for_offer};
use agora_tests::committee::{
    FREE_MICRO, key_of, quota_account, validator, wait_connected, write_genesis,
};
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, http_json, wait_for};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn provider(dir: &Path, genesis: &Path, bootstrap: &str) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"provider\", \"gateway\"]\nregion = \"eu\"\ngenesis = \"{}\"\n\n[network]\nkad_server = true\n\n[provider]\nruntimes = [\"sandbox\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\ntunnel_port = {}\nprices = {{ vcpu = 100, memory_gib = 10 }}\n",
            genesis.display(),
            agora_tests::cluster::free_udp_port()
        ),
        Some(bootstrap),
    )
}

/// A signed lease request of `home`'s agent for `provider`'s offer as `node` quotes it.
fn lease_request(
    home: &Path,
    node: &NodeProc,
    provider: &NodeProc,
    max_price: u64,
    lifetime_secs: u64,
) -> (Identity, Signed<agora_protocol::lease::LeaseRequest>) {
    let key_path = home.join("agent.key");
    let agent = keyfile::load(&key_path).unwrap();
    let text =
        agora_node::agent::record_file::load(&agora_node::agent::record_file::path_for(&key_path))
            .unwrap()
            .unwrap();
    let bytes =
        agora_protocol::attestation::decode_base64(&text, Signed::<SignupRecord>::MAX_WIRE_BYTES)
            .unwrap();
    let record = Signed::<SignupRecord>::decode(&bytes, &Ed25519).unwrap();
    let plan = RunPlan {
        lifetime_secs,
        max_price_per_sec: Some(max_price),
        candidates: 8,
        command: vec!["sleep".into(), "600".into()],
        ..RunPlan::default()
    };
    // Quote without the ceiling (a ceiling under the price would filter the offer out).
    let quote_plan = RunPlan {
        max_price_per_sec: None,
        ..plan.clone()
    };
    let (_, quote) = http_json(
        node.http,
        "POST",
        "/v1/leases/quote",
        &[],
        Some(&quote_plan.quote_body()),
    );
    // Name only `provider`'s offer (the lock names the first candidate).
    let mut quote = quote;
    let offers: Vec<Value> = quote["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["provider"] == provider.id.as_str())
        .cloned()
        .collect();
    assert!(!offers.is_empty(), "no offer of {} quoted", provider.id);
    quote["offers"] = Value::Array(offers);
    let request = plan
        .request(&quote, &agent, record, agora_node::clock::now())
        .unwrap();
    (agent, request)
}

/// `view` once `op` (the op at its next position) is certified, as the agent's next op
/// names it: one position on, `op` the head.
fn after(view: &QuotaAccount, op: &Signed<agora_protocol::committee::ChainOp>) -> QuotaAccount {
    QuotaAccount {
        next_seq: view.next_seq + 1,
        head: Some(Op::Chain(op.clone()).digest().to_string()),
        ..view.clone()
    }
}

fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

fn post_lease(node: &NodeProc, body: &Value) -> (u16, Value) {
    http_json(node.http, "POST", "/v1/leases", &[], Some(body))
}

/// The gateway's aggregation times of lock certificates, microseconds, from its log.
fn lock_latencies_us(node: &NodeProc) -> Vec<u64> {
    let text = std::fs::read_to_string(node.dir.join("node.log")).unwrap();
    text.lines()
        .filter(|l| l.contains("certified") && l.contains("kind=\"lock\""))
        .filter_map(|l| {
            let at = l.find("elapsed_us=")? + "elapsed_us=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Calls the tool `name` with `arguments` at `node`'s `/mcp` under the bearer `token`
/// (streamable HTTP, the current protocol revision, no handshake): the tool's structured
/// result (its `error` object when the tool failed).
fn mcp_call(node: &NodeProc, token: &str, name: &str, arguments: Value) -> Value {
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", name),
    ];
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    let (status, v) = http_json(node.http, "POST", "/mcp", &headers, Some(&body));
    assert_eq!(status, 200, "{name}: {v}");
    v["result"]["structuredContent"].clone()
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn locks_are_certified_once_and_leases_start_only_against_them() {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut leftovers = Leftovers::new(root);
    let dirs: Vec<_> = (1..=4).map(|i| root.join(format!("v{i}"))).collect();
    let keys: Vec<Identity> = dirs.iter().map(|d| key_of(d)).collect();
    let genesis = root.join("genesis.toml");
    write_genesis(&genesis, &keys);

    let v1 = validator(&dirs[0], &genesis, None);
    let boot = v1.tcp_addr();
    let v2 = validator(&dirs[1], &genesis, Some(&boot));
    let v3 = validator(&dirs[2], &genesis, Some(&boot));
    let mut v4 = Some(validator(&dirs[3], &genesis, Some(&boot)));
    let p1 = provider(&root.join("p1"), &genesis, &boot);
    let p2 = provider(&root.join("p2"), &genesis, &boot);
    leftovers.add(cgroup_parent(&p1));
    leftovers.add(cgroup_parent(&p2));
    let all = [&v1, &v2, &v3, v4.as_ref().unwrap(), &p1, &p2];
    for n in all {
        wait_connected(n, &all);
    }
    for g in [&v1, &v2, &v3] {
        wait_for_offer(g, &p1);
        wait_for_offer(g, &p2);
    }

    // Signup claims the free tier: certified, so every validator's view has it.
    let home = root.join("agent");
    let agent = signup(&home, &v2);
    let account = quota_account(&v3, &agent);
    assert_eq!(account.granted_micro, FREE_MICRO, "{account:?}");
    assert_eq!(account.next_seq, 0);

    // Latency: locks certified by gateway v1, each request then refused on price by p1.
    for _ in 0..30 {
        let (agent_key, request) = lease_request(&home, &v1, &p1, 1, 60);
        let view = quota_account(&v1, &agent);
        let lock = lock_op(&agent_key, &view, &request).unwrap();
        let (status, v) = post_lease(
            &v1,
            &json!({ "request": b64(&request), "lock": b64(&lock) }),
        );
        assert_ne!(status, 201, "a lease under its price started: {v}");
        assert_eq!(
            v["attempts"][0]["code"], "price",
            "the lock certified and the provider refused on price: {v}"
        );
    }
    let mut latencies = lock_latencies_us(&v1);
    latencies.sort_unstable();
    assert!(latencies.len() >= 30, "{latencies:?}");
    println!(
        "lock certificate latency, 4 validators on loopback, {} locks: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 50) as f64 / 1000.0,
        percentile(&latencies, 90) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    // Each provider refusal released its lock at once (a `Release` with p1's signed
    // refusal): nothing stays held, nothing was spent.
    let released = wait_for(WAIT, || {
        let account = quota_account(&v2, &agent);
        (account.locked_micro == 0).then_some(account)
    })
    .expect("the 30 refused leases' locks are released");
    assert_eq!(released.spent_micro, 0, "{released:?}");
    assert_eq!(released.next_seq, 30, "{released:?}");

    // Bad locks beside a request are refused before anything is certified, each with its
    // code: not base64url, fallback locks without a lock, a fallback not chained on the lock
    // before it, two locks naming one provider, more fallbacks than a request has candidates.
    let (agent_key, request) = lease_request(&home, &v1, &p1, 1, 60);
    let view = quota_account(&v1, &agent);
    let first = lock_op(&agent_key, &view, &request).unwrap();
    let after_first = after(&view, &first);
    let same_provider = lock_op(&agent_key, &after_first, &request).unwrap();
    let req = b64(&request);
    let cases = [
        (
            "not base64url",
            json!({ "request": req, "lock": "%%%" }),
            "malformed_lock",
        ),
        (
            "fallbacks without a lock",
            json!({ "request": req, "fallback_locks": [b64(&first)] }),
            "bad_lock",
        ),
        (
            "a fallback not chained",
            json!({ "request": req, "lock": b64(&first), "fallback_locks": [b64(&first)] }),
            "bad_lock",
        ),
        (
            "two locks at one provider",
            json!({ "request": req, "lock": b64(&first), "fallback_locks": [b64(&same_provider)] }),
            "bad_lock",
        ),
        (
            "more fallbacks than candidates",
            json!({ "request": req, "lock": b64(&first), "fallback_locks": vec![b64(&first); 8] }),
            "bad_lock",
        ),
    ];
    for (case, body, code) in cases {
        let (status, v) = post_lease(&v1, &body);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{case}: {v}"
        );
    }
    assert_eq!(
        quota_account(&v1, &agent).next_seq,
        view.next_seq,
        "nothing certified"
    );

    // Double spend: two locks of 6 credits each (10 available), chained, for two
    // providers, sent at once through two gateways.
    let available = quota_account(&v2, &agent).available_micro;
    let price = available * 6 / 10 / 600;
    let (agent_key, req_a) = lease_request(&home, &v2, &p1, price, 600);
    let (_, req_b) = lease_request(&home, &v3, &p2, price, 600);
    let view = quota_account(&v2, &agent);
    let lock_a = lock_op(&agent_key, &view, &req_a).unwrap();
    let after_a = after(&view, &lock_a);
    let lock_b = lock_op(&agent_key, &after_a, &req_b).unwrap();
    assert!(lock_a.body().seq + 1 == lock_b.body().seq);
    let body_a = json!({ "request": b64(&req_a), "lock": b64(&lock_a) });
    let body_b = json!({ "request": b64(&req_b), "lock": b64(&lock_b) });
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(|| post_lease(&v2, &body_a));
        let b = s.spawn(|| post_lease(&v3, &body_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    let started = [&ra, &rb].iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(
        started,
        1,
        "exactly one of two over-committing leases starts:\n{ra:?}\n{rb:?}\n{}",
        v2.log()
    );
    let refused = if ra.0 == 201 { &rb } else { &ra };
    assert_eq!(refused.0, 409, "{refused:?}");
    assert_eq!(refused.1["error"]["code"], "quota", "{refused:?}");
    let after = quota_account(&v1, &agent);
    assert!(
        after.locked_micro <= FREE_MICRO,
        "never more locked than held: {after:?}"
    );

    // The same chain position twice (the agent equivocates): at most one starts.
    let home2 = root.join("agent2");
    let agent2 = signup(&home2, &v3);
    let (key2, req_c) = lease_request(&home2, &v2, &p1, price, 600);
    let (_, req_d) = lease_request(&home2, &v3, &p2, price, 600);
    let view2 = quota_account(&v2, &agent2);
    let lock_c = lock_op(&key2, &view2, &req_c).unwrap();
    let lock_d = lock_op(&key2, &view2, &req_d).unwrap();
    let body_c = json!({ "request": b64(&req_c), "lock": b64(&lock_c) });
    let body_d = json!({ "request": b64(&req_d), "lock": b64(&lock_d) });
    let (rc, rd) = std::thread::scope(|s| {
        let c = s.spawn(|| post_lease(&v2, &body_c));
        let d = s.spawn(|| post_lease(&v3, &body_d));
        (c.join().unwrap(), d.join().unwrap())
    });
    let started2 = [&rc, &rd].iter().filter(|(s, _)| *s == 201).count();
    println!("same position twice at once: {started2} of 2 leases started");
    assert!(started2 <= 1, "{rc:?}\n{rd:?}");

    // No lock, no certificate: the provider refuses with `quota`.
    let (_, req_e) = lease_request(&home, &v1, &p1, price, 60);
    let (status, v) = post_lease(&v1, &json!({ "request": b64(&req_e) }));
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "quota", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("lock certificate"),
        "{v}"
    );

    // f = 1 validator down: a lock still certifies and its lease starts (the CLI signs it).
    let home3 = root.join("agent3");
    let agent3 = signup(&home3, &v1);
    drop(v4.take());
    let (ok, run, err) = agent_cli(
        &home3,
        &v2,
        &[
            "run",
            "--lifetime",
            "2m",
            "--candidates",
            "1",
            "--",
            "sleep",
            "60",
        ],
    );
    assert!(ok, "with one validator down: {err}\n{}", v2.log());
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    // The gateway picked one of the two providers.
    let runner = if run["lease"]["provider"] == p1.id.as_str() {
        &p1
    } else {
        &p2
    };
    let account3 = quota_account(&v3, &agent3);
    assert_eq!(account3.next_seq, 1, "the lock is certified: {account3:?}");

    // The validator restarts from its store.
    let v4 = validator(&dirs[3], &genesis, Some(&boot));
    let log = std::fs::read_to_string(v4.dir.join("node.log")).unwrap();
    let restored = log
        .lines()
        .rev()
        .find(|l| l.contains("quota validator restored"))
        .expect("the restart restores the validator");
    assert!(!restored.contains("votes=0 "), "{restored}");

    // Extending it under the committee: the CLI signs a top-up over the lease's lock, the
    // gateway has it certified, the provider checks and keeps it beside the lock.
    let before = quota_account(&v3, &agent3);
    let (ok, extended, err) = agent_cli(&home3, &v2, &["extend", &lease, "1m"]);
    assert!(ok, "extend under the committee: {err}\n{}", runner.log());
    assert_eq!(extended["verified"], true, "{extended}");
    let account3 = wait_for(WAIT, || {
        let a = quota_account(&v3, &agent3);
        (a.next_seq == 2).then_some(a)
    })
    .unwrap_or_else(|| panic!("the top-up is certified:\n{}", v2.log()));
    assert_eq!(account3.locks.len(), 2, "{account3:?}");
    assert!(
        account3.locked_micro > before.locked_micro,
        "{before:?} then {account3:?}"
    );
    // A second extension: its top-up's base is what both locks hold.
    let (ok, _, err) = agent_cli(&home3, &v2, &["extend", &lease, "30"]);
    assert!(ok, "a second extension: {err}\n{}", runner.log());
    assert_eq!(quota_account(&v3, &agent3).locks.len(), 3);
    // A top-up naming a base the lease's locks do not hold (here only the first lock's) is
    // not certified: the extension is refused `quota` and nothing more is locked.
    let view = wait_for(WAIT, || {
        let a = quota_account(&v3, &agent3);
        (a.next_seq == 3).then_some(a)
    })
    .unwrap();
    let mut partial = view.clone();
    partial.locks.truncate(1);
    let key3 = keyfile::load(&home3.join("agent.key")).unwrap();
    let (status, shown) = v2.get(&format!("/v1/leases/{lease}"));
    assert_eq!(status, 200, "{shown}");
    let grant_bytes = URL_SAFE_NO_PAD
        .decode(shown["grant"].as_str().unwrap())
        .unwrap();
    let grant: Signed<LeaseGrant> = Signed::decode(&grant_bytes, &Ed25519).unwrap();
    let extension = Extension::of(grant.body(), 30);
    let wrong_base = top_up_op(&key3, &partial, &extension).unwrap();
    let op = sign_op(
        &key3,
        grant.body().provider,
        grant.body().lease,
        agora_protocol::lease::Op::Extend { secs: 30 },
        agora_protocol::Timestamp::from_unix_millis(
            u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap(),
        ),
    )
    .unwrap();
    let (status, refused) = http_json(
        v2.http,
        "POST",
        &format!("/v1/leases/{lease}/extend"),
        &[],
        Some(&json!({ "op": b64(&op), "top_up": b64(&wrong_base) })),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("quota")),
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("top-up")),
        "the validators say why: {refused}"
    );
    // A top-up that is not base64url, or one for another lease: refused at the gateway
    // with their codes before the committee is asked.
    let another = agora_protocol::Digest::of(b"another lease");
    let mut elsewhere = view.clone();
    for lock in &mut elsewhere.locks {
        lock.lease = another.to_string();
    }
    let other_lease = top_up_op(
        &key3,
        &elsewhere,
        &Extension {
            lease: another,
            ..extension
        },
    )
    .unwrap();
    for (top_up, code) in [
        ("not base64url!".to_owned(), "malformed_top_up"),
        (b64(&other_lease), "bad_top_up"),
    ] {
        let (status, v) = http_json(
            v2.http,
            "POST",
            &format!("/v1/leases/{lease}/extend"),
            &[],
            Some(&json!({ "op": b64(&op), "top_up": top_up })),
        );
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{v}"
        );
    }
    assert_eq!(quota_account(&v3, &agent3).locks.len(), 3);

    // Stopping the lease settles its locks with the provider's final receipt, which the CLI
    // countersigns: the provider shows the acknowledgement and logs it as evidence.
    let (ok, stopped, err) = agent_cli(&home3, &v2, &["stop", &lease]);
    assert!(ok, "stop: {err}");
    assert_eq!(stopped["acknowledged"], true, "{stopped}\n{err}");
    assert!(stopped["lease"]["acknowledgement"].is_string(), "{stopped}");
    // `status` of the lease now acknowledged sends nothing more.
    let (ok, shown, err) = agent_cli(&home3, &v2, &["status", &lease]);
    assert!(ok, "status: {err}");
    assert_eq!(shown["acknowledged"], false, "{shown}");
    assert_eq!(
        shown["lease"]["acknowledgement"], stopped["lease"]["acknowledgement"],
        "{shown}"
    );
    // In the provider's evidence log, and by gossip in the gateway's.
    for node in [runner, &v2] {
        wait_for(WAIT, || {
            let (_, state) = node.get("/v1/ledger/state");
            (state["acknowledged_receipts"].as_u64()? >= 1).then_some(())
        })
        .unwrap_or_else(|| panic!("{} logs the acknowledged receipt:\n{}", node.id, node.log()));
    }
    // Reputation counts the lease as one that ran only with the agent's word for it.
    // (Recomputed every 30 s.)
    wait_for(Duration::from_secs(90), || {
        let (_, v) = runner.get(&format!("/v1/providers/{}", runner.id));
        (v["reputation"]["current"]["score"]["ran"].as_u64()? >= 1).then_some(())
    })
    .unwrap_or_else(|| {
        let (_, v) = runner.get(&format!("/v1/providers/{}", runner.id));
        panic!(
            "the acknowledged lease counts as run: {v}\n{}",
            runner.log()
        )
    });
    let settled = wait_for(WAIT, || {
        let a = quota_account(&v3, &agent3);
        a.locks.is_empty().then_some(a)
    })
    .unwrap_or_else(|| panic!("the locks are settled:\n{}", runner.log()));
    // Settled by the provider (an unlock would wait for expiry + grace): what the final
    // receipt charged is spent once over the lock and its top-ups, the rest returned.
    assert!(
        settled.spent_micro + settled.available_micro == FREE_MICRO,
        "{settled:?}"
    );
    let total = stopped["lease"]["receipt"]["total_micro"].as_u64().unwrap();
    assert_eq!(settled.spent_micro, total, "{settled:?}\n{stopped}");

    // A delegate under the committee: the node's `/mcp`, under the agent's token, signs the
    // agent's locks with the agent's delegation; the validators check the delegation allows
    // leases and its spend cap over everything locked and charged under it.
    let home4 = root.join("agent4");
    let agent4 = signup(&home4, &v1);
    let token = |cap: &str| {
        let (ok, v, err) = agent_cli(&home4, &v1, &["token", "--spend-cap", cap]);
        assert!(ok, "agent token: {err}");
        v["token"].as_str().unwrap().to_owned()
    };
    let run = json!({ "command": ["sleep", "60"], "lifetime_secs": 60 });
    let refused = mcp_call(&v1, &token("0"), "run", run.clone());
    assert_eq!(
        refused["error"]["code"], "quota",
        "a cap of 0 locks nothing: {refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spend cap")
            || refused.to_string().contains("delegation"),
        "{refused}"
    );
    let open = token("10");
    let ran = mcp_call(&v1, &open, "run", run);
    let lease = ran["lease"]["lease"]
        .as_str()
        .unwrap_or_else(|| panic!("run under a token: {ran}"))
        .to_owned();
    let runner = ran["lease"]["provider"].as_str().unwrap().to_owned();
    let ours = |a: &QuotaAccount| {
        a.locks
            .iter()
            .any(|l| l.lease == lease && l.provider == runner)
    };
    // (Validators learn the certificate in the background: v2 may answer a moment late.)
    wait_for(WAIT, || ours(&quota_account(&v2, &agent4)).then_some(()))
        .expect("the delegate's lock is held at the committee");
    let stopped = mcp_call(&v1, &open, "stop", json!({ "id": lease }));
    assert_eq!(stopped["lease"]["state"], "ended", "{stopped}");
    let settled = wait_for(WAIT, || {
        let a = quota_account(&v2, &agent4);
        (!ours(&a)).then_some(a)
    })
    .unwrap_or_else(|| {
        panic!(
            "the delegated lock is settled: {:?}\n{stopped}",
            quota_account(&v2, &agent4)
        )
    });
    let total = stopped["lease"]["receipt"]["total_micro"].as_u64();
    assert_eq!(Some(settled.spent_micro), total, "{settled:?}\n{stopped}");

    // Reputation under the genesis: the provider as a validator and as itself see it (the
    // first epoch is still open: provisional, none completed).
    for node in [&v2, &p1] {
        let (status, v) = node.get(&format!("/v1/providers/{}", p1.id));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["provider"], p1.id.as_str(), "{v}");
        assert_eq!(v["offer"]["provider"], p1.id.as_str(), "{v}");
        let rep = &v["reputation"];
        assert_eq!(rep["available"], true, "{v}");
        assert_eq!(rep["current"]["epoch"], 0, "{v}");
        assert_eq!(rep["current"]["provisional"], true, "{v}");
        assert!(rep["completed"].is_null(), "{v}");
        assert!(v["history"].as_array().unwrap().is_empty(), "{v}");
    }
    let (status, v) = v2.get("/v1/providers/agora1nope");
    assert_eq!((status, &v["error"]["code"]), (400, &json!("bad_provider")));
    let (status, v) = v2.get("/v1/offers?sort=reputation");
    assert_eq!(status, 200, "{v}");
    assert!(v["count"].as_u64().unwrap() >= 2, "{v}");
    let out = std::process::Command::new(agora_tests::agora_bin())
        .args(["provider", "show", &p1.id, "--node"])
        .arg(format!("http://{}", v2.http))
        .output()
        .unwrap();
    let text = agora_tests::stdout(&out);
    assert!(out.status.success(), "{}", agora_tests::stderr(&out));
    assert!(text.contains(&p1.id) && text.contains("current"), "{text}");
    drop(v4);
}
