//! Request-to-first-output through a gateway on loopback, beside the sandbox runtime's own
//! create-to-first-output in the same run.
//!
//! ```sh
//! cargo build --release -p agora-node --bin agora
//! AGORA_BIN=$CARGO_TARGET_DIR/release/agora cargo test --release -p agora-tests --bench journey_latency -- --bench
//! ```
//! Options via env: `AGORA_BENCH_RUNS` (default 100), `AGORA_BENCH_CONCURRENT` (default 100),
//! `AGORA_BENCH_VCPU_MILLI` (the workload's vCPU share, default 100), `AGORA_BENCH_WARM`
//! (warm sandboxes kept by the runtime and by C, `[runtime] warm_sandboxes`; default the
//! concurrency, 0 for cold launches). With warm sandboxes, each series waits (untimed)
//! before every sequential sample and before the batch until the pool is full again, as
//! after a pause between leases: the runtime's own count, C's `agora_warm_sandboxes` metric.
//!
//! Two networks of `agora node` processes, one after the other, each with a gateway A and a
//! sandbox provider C (its contained tier raised to 256 concurrent leases):
//! - local quota book: no genesis, C admits leases against its own quota book;
//! - committee n = 4: A and C are validators of a genesis with two validator-only nodes
//!   (f = 1); every request carries the agent's lock op, which A has certified by the
//!   validators before it relays the proposal, and C admits the lease only against that
//!   certificate (and settles it when the lease stops). Agents sign up through the CLI
//!   (claiming the free tier); one agent per concurrent sample, since an agent's locks are
//!   one chain, certified one after the other.
//!
//! One sample = an agent-signed lease request POSTed to A (relayed to C over libp2p:
//! admission, quota, launch, signed grant) and then `GET /v1/leases/{id}/logs` with a signed
//! `follow` operation (relayed over a libp2p stream), until the first line of the workload's
//! output arrives. Each lease is then stopped (untimed); under the committee the agent's
//! account view (for its lock's chain position) is fetched before the clock starts. The
//! marketplace's overhead is the difference of the p50s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_attest::{Identity, keyfile};
use agora_node::agent::quota::{QuotaAccount, lock_op};
use agora_node::runtime::Runtime;
use agora_node::runtime::sandbox::net::SandboxNetwork;
use agora_node::runtime::sandbox::{SandboxConfig, SandboxRuntime};
use agora_protocol::lease::{Candidate, LeaseOp, LeaseRequest, NONCE_LEN, Op};
use agora_protocol::offer::Isolation;
use agora_protocol::signup::SignupRecord;
use agora_protocol::workload::{ImageSource, WorkloadSpec};
use agora_protocol::{AgoraId, Digest, Ed25519, Signed, Timestamp};
use agora_tests::agora;
use agora_tests::committee::Committee;
use agora_tests::node::{NodeProc, wait_for};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use serde_json::{Value, json};

#[path = "common/mod.rs"]
mod common;
use common::{env_usize, ms, quantile, sample, settle, spec};

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap())
}

fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

fn node(dir: &Path, config: &str, extra: &[String]) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config".to_owned(), path.display().to_string()];
    args.extend_from_slice(extra);
    NodeProc::start(dir, &args)
}

/// An agent that takes samples: its key and signup record.
#[derive(Clone)]
struct Agent {
    key: Arc<Identity>,
    signup: Signed<SignupRecord>,
}

/// What every sample needs.
struct Setup {
    http: reqwest::Client,
    gateway: String,
    provider: AgoraId,
    candidates: Vec<Candidate>,
    spec: WorkloadSpec,
    /// Agents free to take a sample (each sample holds one, then puts it at the back).
    agents: tokio::sync::Mutex<VecDeque<Agent>>,
    /// Under a committee: requests carry the agent's lock op and a price ceiling its
    /// free tier covers.
    committee: bool,
    /// The provider's HTTP address (its metrics) and the warm sandboxes it keeps.
    provider_http: std::net::SocketAddr,
    warm: usize,
}

impl Setup {
    fn op(&self, agent: &Agent, lease: Digest, op: Op) -> String {
        b64(&Signed::sign(
            LeaseOp {
                agent: agent.key.agora_id(),
                provider: self.provider,
                lease,
                op,
                nonce: rand::random::<[u8; NONCE_LEN]>(),
                issued_at: now(),
                delegation: None,
            },
            agent.key.as_ref(),
        )
        .unwrap())
    }

    /// Waits (at most 60 s) until the provider has all its warm sandboxes ready.
    async fn settle(&self) {
        if self.warm == 0 {
            return;
        }
        let url = format!("http://{}/metrics", self.provider_http);
        for _ in 0..3000 {
            let text = self
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let ready = text
                .lines()
                .find_map(|l| l.strip_prefix("agora_warm_sandboxes "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if ready >= Some(self.warm) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("warning: the provider's warm sandboxes not ready after 60 s");
    }

    /// Request → grant → first output line through the gateway; then stops the lease.
    async fn sample(&self) -> Duration {
        let agent = self
            .agents
            .lock()
            .await
            .pop_front()
            .expect("an agent for every concurrent sample");
        let took = self.sample_as(&agent).await;
        self.agents.lock().await.push_back(agent);
        took
    }

    async fn sample_as(&self, agent: &Agent) -> Duration {
        let request = Signed::sign(
            LeaseRequest {
                agent: agent.key.agora_id(),
                candidates: self.candidates.clone(),
                isolation: Isolation::Sandbox,
                spec: self.spec.clone(),
                // The committee's lock is of price ceiling × lifetime, within the free tier.
                max_price_per_sec: if self.committee { 100 } else { 1_000_000 },
                nonce: rand::random::<[u8; NONCE_LEN]>(),
                issued_at: now(),
                signup: agent.signup.clone(),
                delegation: None,
            },
            agent.key.as_ref(),
        )
        .unwrap();
        let body = if self.committee {
            let view: QuotaAccount = self
                .http
                .get(format!(
                    "{}/v1/accounts/{}/quota",
                    self.gateway,
                    agent.key.agora_id()
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let lock = lock_op(agent.key.as_ref(), &view, &request).unwrap();
            json!({ "request": b64(&request), "lock": b64(&lock) })
        } else {
            json!({ "request": b64(&request) })
        };
        let lease = request.digest();
        let started = Instant::now();
        let resp = self
            .http
            .post(format!("{}/v1/leases", self.gateway))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert_eq!(status, 201, "{}", resp.text().await.unwrap_or_default());
        let logs = self
            .http
            .get(format!("{}/v1/leases/{lease}/logs", self.gateway))
            .query(&[("op", self.op(agent, lease, Op::Logs { follow: true }))])
            .send()
            .await
            .unwrap();
        assert_eq!(logs.status(), 200);
        let mut body = logs.bytes_stream();
        let mut seen = Vec::new();
        let first = loop {
            let chunk = body
                .next()
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "no output before the end: {}",
                        String::from_utf8_lossy(&seen)
                    )
                })
                .unwrap();
            seen.extend_from_slice(&chunk);
            if seen.windows(15).any(|w| w == b"\"type\":\"stdout\"") {
                break started.elapsed();
            }
        };
        drop(body);
        let stop = self
            .http
            .delete(format!("{}/v1/leases/{lease}", self.gateway))
            .json(&json!({ "op": self.op(agent, lease, Op::Stop) }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            stop.status(),
            200,
            "{}",
            stop.text().await.unwrap_or_default()
        );
        first
    }
}

async fn series(
    name: &str,
    runs: usize,
    concurrent: usize,
    one: impl Fn() -> futures::future::BoxFuture<'static, Duration>,
    settle: impl Fn() -> futures::future::BoxFuture<'static, ()>,
) -> [String; 6] {
    let bar = indicatif::ProgressBar::new(runs as u64);
    bar.set_message(name.to_owned());
    one().await; // warm-up
    let mut seq = Vec::with_capacity(runs);
    for _ in 0..runs {
        settle().await;
        seq.push(one().await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    seq.sort();
    settle().await;
    let conc_started = Instant::now();
    let mut conc: Vec<Duration> = futures::future::join_all((0..concurrent).map(|_| one())).await;
    let wall = conc_started.elapsed();
    conc.sort();
    [
        name.to_owned(),
        ms(quantile(&seq, 0.5)),
        ms(quantile(&seq, 0.95)),
        ms(quantile(&conc, 0.5)),
        ms(quantile(&conc, 0.95)),
        ms(wall),
    ]
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("journey_latency: benchmark skipped (run it with cargo bench)");
        return;
    }
    let runs = env_usize("AGORA_BENCH_RUNS", 100).max(1);
    let concurrent = env_usize("AGORA_BENCH_CONCURRENT", 100).max(1);
    let warm = env_usize("AGORA_BENCH_WARM", concurrent);
    let tmp = tempfile::tempdir().unwrap();

    // The runtime alone, in process.
    let sandbox = SandboxRuntime::open(SandboxConfig {
        state_dir: tmp.path().join("sandbox"),
        cgroup_parent: format!("agora-bench-{:06x}", rand::random::<u32>() & 0xff_ffff),
        network: SandboxNetwork::default(),
        warm,
        warm_gauge: None,
    })
    .await
    .expect("the sandbox runtime (root, bubblewrap, busybox-static)");
    let busybox = sandbox.images_store().by_name("busybox").unwrap();
    let mut workload = spec(ImageSource::Named {
        name: "busybox".into(),
        digest: busybox,
    });
    // A service that prints, then stays up (so the lease is still running when its logs are
    // asked for, even at 100 at once); the same command on both paths.
    workload.command = vec!["sh".into(), "-c".into(), "echo ready; exec sleep 60".into()];
    workload.resources.vcpu_milli =
        u32::try_from(env_usize("AGORA_BENCH_VCPU_MILLI", 100)).unwrap();
    workload.resources.memory_mib = 32;
    let sandbox = Arc::new(sandbox);
    let runtime: Arc<dyn Runtime> = sandbox.clone();
    let runtime_row = {
        let (runtime, workload) = (runtime.clone(), workload.clone());
        series(
            "sandbox runtime alone",
            runs,
            concurrent,
            move || {
                let (runtime, workload) = (runtime.clone(), workload.clone());
                Box::pin(async move { sample(&runtime, &workload).await })
            },
            move || {
                let sandbox = sandbox.clone();
                Box::pin(async move { settle(&sandbox, &busybox, warm).await })
            },
        )
        .await
    };
    drop(runtime);

    // The marketplace: gateway A, provider C, first on their own quota book, then under a
    // committee of four.
    let local_row = {
        let setup = market(&tmp.path().join("local"), None, concurrent, warm, &workload).await;
        market_series(
            "through a gateway, local quota book",
            setup,
            runs,
            concurrent,
        )
        .await
    };
    let committee_row = {
        let root = tmp.path().join("committee");
        // Every agent claims a free-tier grant at a random pool slot: the genesis allows
        // eight times as many an epoch, so a few retries find a free slot.
        let committee = Committee::new_capped(
            &root,
            &[root.join("a").as_path(), root.join("c").as_path()],
            u32::try_from(concurrent * 8 + 8).unwrap(),
        );
        let setup = market(&root, Some(committee), concurrent, warm, &workload).await;
        market_series(
            "through a gateway, committee n = 4 (lock certified)",
            setup,
            runs,
            concurrent,
        )
        .await
    };

    println!(
        "\n| path | p50 ms | p95 ms | p50 of {concurrent} at once | p95 of {concurrent} at once | wall of {concurrent} at once |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in [&runtime_row, &local_row, &committee_row] {
        println!("| {} |", row.join(" | "));
    }
    for row in [&local_row, &committee_row] {
        let overhead = row[1].parse::<f64>().unwrap() - runtime_row[1].parse::<f64>().unwrap();
        println!(
            "\nmarketplace overhead at p50, {}: {overhead:.1} ms ({runs} sequential samples each)",
            row[0]
        );
    }
}

/// Starts gateway A and provider C in `root` (under `committee` when given, with its
/// validator-only nodes), signs up agents at A (one under the local book, `concurrent`
/// under a committee) and quotes C's offer for `workload`: the setup of a series. The
/// nodes run until the returned setup is dropped.
/// [`series`] of launches through `setup`'s gateway.
async fn market_series(name: &str, setup: Market, runs: usize, concurrent: usize) -> [String; 6] {
    let setup = Arc::new(setup);
    let ready = setup.clone();
    series(
        name,
        runs,
        concurrent,
        move || {
            let setup = setup.clone();
            Box::pin(async move { setup.sample().await })
        },
        move || {
            let setup = ready.clone();
            Box::pin(async move { setup.settle().await })
        },
    )
    .await
}

async fn market(
    root: &Path,
    committee: Option<Committee>,
    concurrent: usize,
    warm: usize,
    workload: &WorkloadSpec,
) -> Market {
    let (roles, genesis) = match &committee {
        Some(c) => (", \"validator\"", c.config_line()),
        None => ("", String::new()),
    };
    let a = node(
        &root.join("a"),
        &format!(
            "roles = [\"gateway\"{roles}]\nregion = \"eu\"\n{genesis}\n[network]\nkad_server = true\n\n[signup]\npow_bits = 8\nper_address = \"1000/min\"\nper_prefix = \"1000/min\"\n"
        ),
        &[],
    );
    let c = node(
        &root.join("c"),
        &format!(
            "roles = [\"provider\", \"gateway\"{roles}]\nregion = \"eu\"\n{genesis}\n[provider]\nruntimes = [\"sandbox\"]\nvcpu = 32\nmemory_mib = 16384\ndisk_mib = 16384\nprices = {{ vcpu = 1, memory_gib = 1 }}\n\n[signup]\npow_bits = 8\nper_address = \"1000/min\"\nper_prefix = \"1000/min\"\n\n[tiers.contained]\nmax_concurrent = 256\nspending_limit_credits = 1000000\n\n[runtime]\nwarm_sandboxes = {warm}\n"
        ),
        &["--bootstrap".to_owned(), a.tcp_addr()],
    );
    let committee = committee.map(|mut committee| {
        committee.start_extra(&a.tcp_addr());
        committee.wait_connected(&[&a, &c]);
        committee
    });
    let agents: VecDeque<Agent> = if committee.is_some() {
        (0..concurrent)
            .map(|i| sign_up(&root.join(format!("agent-{i}")), &a))
            .collect()
    } else {
        let agent = sign_up(&root.join("agent"), &a);
        std::iter::repeat_n(agent, concurrent).collect()
    };
    let quote = wait_for(Duration::from_secs(60), || {
        let (status, v) = agora_tests::node::http_get(a.http, "/v1/offers");
        (status == 200 && v["count"].as_u64() >= Some(1)).then_some(())
    });
    assert!(quote.is_some(), "C's offer reached A");
    let http = reqwest::Client::new();
    let q: Value = http
        .post(format!("http://{}/v1/leases/quote", a.http))
        .json(&json!({ "vcpu_milli": 100, "memory_mib": 32, "disk_mib": 16, "lifetime_secs": 60 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = &q["offers"][0];
    let provider: AgoraId = offer["provider"].as_str().unwrap().parse().unwrap();
    let digest: Digest = offer["image"]["digest"].as_str().unwrap().parse().unwrap();
    let mut workload = workload.clone();
    workload.image = ImageSource::Named {
        name: "busybox".into(),
        digest,
    };
    let setup = Setup {
        http,
        gateway: format!("http://{}", a.http),
        provider,
        candidates: vec![Candidate {
            provider,
            offer: offer["offer"].as_str().unwrap().parse().unwrap(),
        }],
        spec: workload,
        agents: tokio::sync::Mutex::new(agents),
        committee: committee.is_some(),
        provider_http: c.http,
        warm,
    };
    Market {
        setup,
        _nodes: (a, c, committee),
    }
}

/// A series' setup and the nodes it runs on (stopped on drop).
struct Market {
    setup: Setup,
    _nodes: (NodeProc, NodeProc, Option<Committee>),
}

impl std::ops::Deref for Market {
    type Target = Setup;
    fn deref(&self) -> &Setup {
        &self.setup
    }
}

/// `agora agent signup` at `node` with the key at `home/agent.key` (under a committee the
/// CLI claims the free tier too).
fn sign_up(home: &Path, node: &NodeProc) -> Agent {
    std::fs::create_dir_all(home).unwrap();
    let key = home.join("agent.key");
    let out = agora(home)
        .args(["--json", "agent", "signup", "--node"])
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = std::fs::read_to_string(home.join("agent.key.signup")).unwrap();
    Agent {
        key: Arc::new(keyfile::load(&key).unwrap()),
        signup: Signed::decode(&URL_SAFE_NO_PAD.decode(record.trim()).unwrap(), &Ed25519).unwrap(),
    }
}
