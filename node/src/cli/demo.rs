//! `agora demo`: a local network on this machine and an agent's journey through it.
//!
//! Starts a bootstrap node, two providers on the embedded sandbox runtime and a gateway,
//! each its own `agora node start` process with its own store, libp2p swarm on 127.0.0.1
//! and HTTP port (ephemeral ports, one temporary directory). The four are the quota
//! committee (n = 4, f = 1): their keys are made first and a genesis for this run names
//! them as validators and the run's issuer as the only issuer ([`committee`]). Prints each
//! node's API, the gateway first, then walks an agent through the market: its attested
//! spending limit is credited at the committee and its lease starts against a lock
//! certificate, which the provider settles with the final receipt. Without `--once` the
//! network stays up for the user to try the CLI until SIGINT or SIGTERM, which stops every
//! child. With `--json` the narrative goes to stderr and a JSON summary to stdout.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use super::GlobalArgs;

mod committee;
mod host;

/// `agora demo` flags.
#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Run the journey once and exit: 0 on success, non-zero naming the failed step.
    #[arg(long)]
    once: bool,
    /// Working directory (default: a fresh temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// How long a node may take to report that it started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the gateway may take to see both providers' offers.
const OFFERS_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the demo waits for the workload's first line of output.
const OUTPUT_WAIT: Duration = Duration::from_secs(15);
/// The four nodes, each a validator of the quota committee.
const NODES: [&str; 4] = ["bootstrap", "provider-1", "provider-2", "gateway"];
/// The agent's attested spending limit, credits (credited at the committee on signup).
const SPENDING_LIMIT_CREDITS: &str = "100";

/// Where the narrative goes: stdout for people, stderr under `--json` (stdout then carries
/// only the JSON summary).
#[derive(Debug, Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn say(self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// One child node.
struct NodeChild {
    name: &'static str,
    child: Child,
    /// `http://127.0.0.1:PORT`.
    api: String,
    /// A TCP listen address with `/p2p/…`, for `--bootstrap`.
    tcp: Option<String>,
    id: String,
}

/// Every child; stopped (SIGTERM, then SIGKILL after a grace) when dropped or on `stop`.
#[derive(Default)]
struct Network {
    nodes: Vec<NodeChild>,
    /// The providers' cgroup parents, released with a temporary demo directory.
    cgroup_parents: Vec<String>,
}

impl Network {
    async fn stop(&mut self) {
        for node in &self.nodes {
            if let Some(pid) = node.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for node in &mut self.nodes {
            if tokio::time::timeout(Duration::from_secs(10), node.child.wait())
                .await
                .is_err()
            {
                let _ = node.child.kill().await;
            }
        }
        self.nodes.clear();
    }

    fn api(&self, name: &str) -> anyhow::Result<&str> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.api.as_str())
            .ok_or_else(|| anyhow!("no node named {name}"))
    }
}

/// A step of the demo that failed, named for the exit message.
#[derive(Debug, thiserror::Error)]
#[error("demo step \"{step}\" failed: {source:#}")]
struct StepFailed {
    step: &'static str,
    source: anyhow::Error,
}

async fn step<T>(
    name: &'static str,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, StepFailed> {
    eprintln!("==> {name}");
    fut.await
        .map_err(|source| StepFailed { step: name, source })
}

/// Runs `agora demo`.
pub(super) fn run(args: &DemoArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(demo(args, global))
}

async fn demo(args: &DemoArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (work, temporary) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), false)
        }
        None => (fresh_dir()?, true),
    };
    let exe = std::env::current_exe().context("finding the agora binary")?;
    let mut net = Network::default();
    let out = Out { json: global.json };
    let started = std::time::Instant::now();
    let outcome = journey(&exe, &work, &mut net, args.once, out).await;
    let outcome = outcome.and_then(|mut summary| {
        // The journey's wall time, up to the settled lock (stopping the nodes follows).
        summary["journey_ms"] =
            serde_json::json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        if out.json {
            super::print_json(&summary).map_err(|source| StepFailed {
                step: "print the summary",
                source,
            })?;
        }
        Ok(())
    });
    let code = match outcome {
        Ok(()) if args.once => {
            out.say("demo: every step succeeded");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            out.say("");
            out.say("The network keeps running; try the CLI against the gateway, e.g.");
            out.say(&format!(
                "  agora offers --node {}",
                net.api("gateway").unwrap_or("?")
            ));
            out.say(&format!(
                "Press Ctrl-C to stop every node (files in {}).",
                work.display()
            ));
            wait_for_signal().await?;
            ExitCode::SUCCESS
        }
        Err(failed) => {
            eprintln!("{failed}");
            eprintln!("logs: {}/*.log", work.display());
            ExitCode::from(super::EXIT_ERROR)
        }
    };
    net.stop().await;
    if temporary && code == ExitCode::SUCCESS {
        // Ended workloads keep their scratch mount and cgroup past their node (see
        // `host`); the directory cannot go while they do.
        host::release(&work, &net.cgroup_parents);
        if let Err(e) = std::fs::remove_dir_all(&work) {
            eprintln!("warning: could not remove {}: {e}", work.display());
        }
    }
    Ok(code)
}

/// The journey; its summary (nodes, committee, the agent's quota, the lease's receipt).
async fn journey(
    exe: &Path,
    work: &Path,
    net: &mut Network,
    once: bool,
    out: Out,
) -> Result<Value, StepFailed> {
    let issuer = step("make an attestation issuer for this run", async {
        let key = work.join("issuer.key");
        cli(exe, &["id", "new", "--out", path(&key)?]).await?;
        let id = cli(exe, &["id", "show", "--key", path(&key)?]).await?;
        let id = id["id"]
            .as_str()
            .ok_or_else(|| anyhow!("`agora id show` printed no id"))?
            .to_owned();
        // Every node trusts this run's issuer, and nothing else: no built-in trust root.
        let config = format!(
            "[trust]\nmax_chain_len = 2\n\n[[trust.root]]\nid = \"{id}\"\nname = \"demo issuer\"\n"
        );
        std::fs::write(work.join("node.toml"), config).context("writing node.toml")?;
        Ok(id)
    })
    .await?;
    let (keys, genesis, members) = step(
        "make the four nodes' keys and the quota committee's genesis",
        async {
            let keys = committee::node_keys(work, &NODES)?;
            let validators: Vec<_> = keys.iter().map(|k| k.id).collect();
            let issuer_id: agora_protocol::AgoraId = issuer
                .parse()
                .map_err(|e| anyhow!("the issuer id {issuer:?} does not parse: {e}"))?;
            let (genesis, members) = committee::write_genesis(work, &validators, issuer_id)?;
            Ok((keys, genesis, members))
        },
    )
    .await?;
    let config = work.join("node.toml");
    // Every node: the shared config (trust), its own key, the genesis, and the validator
    // role (a node refuses to start as a validator the genesis does not list).
    let node_args =
        |name: &str, roles: &[&str], mut args: Vec<String>| -> anyhow::Result<Vec<String>> {
            let key = keys
                .iter()
                .find(|k| k.name == name)
                .ok_or_else(|| anyhow!("no key made for {name}"))?;
            for role in roles.iter().chain(&["validator"]) {
                args.extend(["--role".to_owned(), (*role).to_owned()]);
            }
            args.extend([
                "--key".to_owned(),
                path(&key.key_file)?.to_owned(),
                "--genesis".to_owned(),
                path(&genesis)?.to_owned(),
                "--config".to_owned(),
                path(&config)?.to_owned(),
            ]);
            Ok(args)
        };
    step("start the bootstrap node", async {
        let args = node_args(
            "bootstrap",
            &["gateway"],
            vec!["--kad-server".into(), "true".into()],
        )?;
        let boot = start_node(exe, work, "bootstrap", &args).await?;
        net.nodes.push(boot);
        Ok(())
    })
    .await?;
    let bootstrap = net
        .nodes
        .first()
        .and_then(|n| n.tcp.clone())
        .ok_or_else(|| StepFailed {
            step: "start the bootstrap node",
            source: anyhow!("it reported no TCP listen address"),
        })?;
    for (name, region, price) in [
        ("provider-1", "eu-west", "120"),
        ("provider-2", "us-east", "80"),
    ] {
        step("start a provider", async {
            let args: Vec<String> = [
                "--bootstrap",
                &bootstrap,
                "--runtime",
                "sandbox",
                "--region",
                region,
                "--vcpu",
                "2",
                "--memory-mib",
                "2048",
                "--price-vcpu",
                price,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let args = node_args(name, &["provider"], args)?;
            net.nodes.push(start_node(exe, work, name, &args).await?);
            if let Some(key) = keys.iter().find(|k| k.name == name) {
                net.cgroup_parents
                    .push(agora_node::daemon::workloads::default_cgroup_parent(
                        &key.id,
                    ));
            }
            Ok(())
        })
        .await?;
    }
    step("start the gateway", async {
        let args = node_args(
            "gateway",
            &["gateway"],
            vec!["--bootstrap".to_owned(), bootstrap.clone()],
        )?;
        let gw = start_node(exe, work, "gateway", &args).await?;
        net.nodes.insert(0, gw);
        Ok(())
    })
    .await?;
    step(
        "check each node runs with the key the genesis names",
        async {
            for node in &net.nodes {
                let key = keys
                    .iter()
                    .find(|k| k.name == node.name)
                    .ok_or_else(|| anyhow!("no key made for {}", node.name))?;
                if node.id != key.id.to_string() {
                    bail!(
                        "{} started as {}, the genesis names {}",
                        node.name,
                        node.id,
                        key.id
                    );
                }
            }
            Ok(())
        },
    )
    .await?;
    out.say(&format!(
        "Local Agora network (work dir {}):",
        work.display()
    ));
    for node in &net.nodes {
        out.say(&format!("  {:<11} {}   {}", node.name, node.api, node.id));
    }
    out.say(&format!(
        "Quota committee: the {} nodes above are its validators (f = {}, {} votes certify), \
         issuer {issuer}; genesis {} ({})",
        members.validators().len(),
        members.genesis().f,
        members.quorum(),
        genesis.display(),
        members.digest()
    ));
    let gateway = net.nodes.first().map(|n| n.api.clone()).unwrap_or_default();
    step("see both providers' offers at the gateway", async {
        wait_offers(&gateway, 2).await
    })
    .await?;
    step("connect the committee's four validators", async {
        let nodes: Vec<(String, String)> = net
            .nodes
            .iter()
            .map(|n| (n.api.clone(), n.id.clone()))
            .collect();
        committee::wait_mesh(&nodes).await
    })
    .await?;
    let agent_key = work.join("agent.key");
    let (agent, signed_up) = step(
        "sign up an agent with an attestation from the issuer",
        async {
            let key = path(&agent_key)?;
            cli(exe, &["id", "new", "--out", key]).await?;
            let agent = cli(exe, &["id", "show", "--key", key]).await?;
            let agent = agent["id"].as_str().unwrap_or_default().to_owned();
            let cred = work.join("agent.cred");
            cli(
                exe,
                &[
                    "attest",
                    "issue",
                    "--issuer-key",
                    path(&work.join("issuer.key"))?,
                    "--subject",
                    &agent,
                    "--tier",
                    "standard",
                    "--expires",
                    "24h",
                    "--spending-limit",
                    SPENDING_LIMIT_CREDITS,
                    "--model",
                    "demo-agent",
                    "--out",
                    path(&cred)?,
                ],
            )
            .await?;
            let account = cli(
                exe,
                &[
                    "agent",
                    "signup",
                    "--node",
                    &gateway,
                    "--key",
                    key,
                    "--credential",
                    path(&cred)?,
                    "--name",
                    "demo-agent",
                ],
            )
            .await?;
            out.say(&format!(
                "agent {agent} signed up at the gateway (issuer {issuer}): {}",
                account["account"]["tier"]["name"]
            ));
            // The signup credited the attestation's spending limit at the committee.
            let quota = account["quota"].clone();
            let credited = quota["credited_micro"].as_u64().unwrap_or(0);
            if credited == 0 {
                bail!("the committee credited nothing for the attestation: {quota}");
            }
            out.say(&format!(
                "quota at the committee: {} credits credited from the attestation (certified \
                 by {} of {} validators), {} available",
                committee::credits(credited),
                members.quorum(),
                members.validators().len(),
                committee::credits(quota["available_micro"].as_u64().unwrap_or(0))
            ));
            Ok((agent, quota))
        },
    )
    .await?;
    let (lease, lock) = step(
        "run a workload on a provider chosen through the gateway, against a lock certificate",
        async {
            let lease = cli(
                exe,
                &[
                    "agent",
                    "run",
                    "--node",
                    &gateway,
                    "--key",
                    path(&agent_key)?,
                    "--lifetime",
                    "10m",
                    "--",
                    "sh",
                    "-c",
                    "echo hello from an Agora sandbox; uname -sm; exec sleep 600",
                ],
            )
            .await?;
            let lease = &lease["lease"];
            let id = lease["lease"]
                .as_str()
                .ok_or_else(|| anyhow!("the gateway answered without a lease id: {lease}"))?
                .to_owned();
            out.say(&format!(
                "lease {id} granted by {} at {} µcr/s",
                lease["provider"].as_str().unwrap_or("?"),
                lease["price_per_sec"]
            ));
            // The lease started against the agent's lock: certified, it is in the account.
            let account = committee::account(&gateway, &agent).await?;
            let lock = committee::lock_of(&account, &id)
                .cloned()
                .ok_or_else(|| anyhow!("no certified lock pays for lease {id}: {account}"))?;
            let latency_us = committee::lock_latency_us(&work.join("gateway.log"));
            let took = latency_us.map_or_else(String::new, |us| {
                format!(" in {}.{:03} ms", us / 1000, us % 1000)
            });
            out.say(&format!(
                "lock certificate{took}: {} credits held for {} until {} (chain seq {}); \
                 {} available",
                committee::credits(lock["amount_micro"].as_u64().unwrap_or(0)),
                lock["provider"].as_str().unwrap_or("?"),
                lock["expires_at"].as_str().unwrap_or("?"),
                lock["seq"],
                committee::credits(account["available_micro"].as_u64().unwrap_or(0))
            ));
            let mut lock = lock;
            lock["certified_us"] = latency_us.map_or(Value::Null, Value::from);
            Ok((id, lock))
        },
    )
    .await?;
    let key_text = agent_key.to_string_lossy().into_owned();
    let key = key_text.as_str();
    step("read the workload's output through the gateway", async {
        // The grant comes once the sandbox is launched, not once its command has printed:
        // on a busy host the first line may take a moment.
        let deadline = tokio::time::Instant::now() + OUTPUT_WAIT;
        let lines = loop {
            let lines = cli_lines(
                exe,
                &["agent", "logs", &lease, "--node", &gateway, "--key", key],
            )
            .await?;
            if lines.iter().any(|l| l["type"] == "stdout")
                || tokio::time::Instant::now() >= deadline
            {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let text: String = lines
            .iter()
            .filter(|l| l["type"] == "stdout")
            .filter_map(|l| l["text"].as_str())
            .collect();
        print_output(out, &text);
        if !lines.iter().any(|l| l["type"] == "stdout") {
            bail!(
                "the workload printed nothing within {} s",
                OUTPUT_WAIT.as_secs()
            );
        }
        Ok(())
    })
    .await?;
    step(
        "run a command inside it (exec, relayed over libp2p)",
        async {
            let exec = cli(
                exe,
                &[
                    "agent",
                    "exec",
                    &lease,
                    "--node",
                    &gateway,
                    "--key",
                    key,
                    "--",
                    "sh",
                    "-c",
                    "echo \"6 x 7 = $((6 * 7))\"; ls /tmp | wc -l",
                ],
            )
            .await?;
            print_output(out, exec["stdout"].as_str().unwrap_or(""));
            if exec["exit_code"] != 0 {
                bail!("exec exited with {}", exec["exit_code"]);
            }
            Ok(())
        },
    )
    .await?;
    let receipt = step(
        "stop it and check the provider-signed final receipt",
        async {
            let stopped = cli(
                exe,
                &["agent", "stop", &lease, "--node", &gateway, "--key", key],
            )
            .await?;
            let view = &stopped["lease"];
            if stopped["verified"] != true || view["receipt"].is_null() {
                bail!("no verified final receipt: {stopped}");
            }
            out.say(&format!("lease ended: {}", view["ended"]));
            out.say(&format!(
                "final receipt, signed by the provider: {}",
                view["receipt"]
            ));
            Ok(view["receipt"].clone())
        },
    )
    .await?;
    let settled = step(
        "see the provider settle the lock with that receipt",
        async {
            let account = committee::wait_settled(&gateway, &agent, &lease).await?;
            out.say(&format!(
                "lock settled at the committee: {} credits spent, {} available",
                committee::credits(account["spent_micro"].as_u64().unwrap_or(0)),
                committee::credits(account["available_micro"].as_u64().unwrap_or(0))
            ));
            Ok(account)
        },
    )
    .await?;
    if !once {
        out.say(&format!(
            "\ntry it yourself (the agent's key is {key}):\n  agora agent run --node {gateway} --key {key} -- sh -c 'echo hi; sleep 300'\n  agora agent exec LEASE --node {gateway} --key {key} -- uname -a\n  agora agent logs LEASE --node {gateway} --key {key}\n  curl {gateway}/v1/accounts/{agent}/quota"
        ));
    }
    let nodes: Vec<Value> = net
        .nodes
        .iter()
        .map(|n| serde_json::json!({ "name": n.name, "api": n.api, "id": n.id }))
        .collect();
    Ok(serde_json::json!({
        "ok": true,
        "work_dir": work.display().to_string(),
        "nodes": nodes,
        "committee": {
            "genesis": genesis.display().to_string(),
            "digest": members.digest().to_string(),
            "f": members.genesis().f,
            "validators": members.validators(),
            "issuers": members.genesis().issuers,
        },
        "agent": agent,
        "quota": {
            "after_signup": signed_up,
            "lock": lock,
            "after_settle": settled,
        },
        "lease": lease,
        "receipt": receipt,
    }))
}

/// A workload's output, each line marked as such.
fn print_output(out: Out, text: &str) {
    for line in text.lines() {
        out.say(&format!("  | {line}"));
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}

/// Runs `agora --json ARGS` and returns its JSON output (the last line).
async fn cli(exe: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let text = cli_text(exe, args).await?;
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("null");
    serde_json::from_str(last)
        .with_context(|| format!("`agora {}` printed {last:?}", args.join(" ")))
}

/// Runs `agora --json ARGS` and returns every line it printed, as JSON (NDJSON output).
async fn cli_lines(exe: &Path, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let text = cli_text(exe, args).await?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .with_context(|| format!("`agora {}` printed {l:?}", args.join(" ")))
        })
        .collect()
}

/// Runs `agora --json ARGS` and returns what it printed; a failure names the command.
async fn cli_text(exe: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(exe)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("`agora {}` took over 30 s", args.join(" ")))?
    .with_context(|| format!("running agora {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`agora {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn fresh_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("agora-demo-{:012x}", rand::random::<u64>() >> 16));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Starts `agora node start` for `name` and waits for its `started` line.
async fn start_node(
    exe: &Path,
    work: &Path,
    name: &'static str,
    extra: &[String],
) -> anyhow::Result<NodeChild> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = std::fs::File::create(work.join(format!("{name}.log")))
        .with_context(|| format!("creating {name}.log"))?;
    let mut child = Command::new(exe)
        .args(["--json", "--log", "info", "node", "start", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--http", "127.0.0.1:0"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| anyhow!("{name} did not start within {START_TIMEOUT:?} (see {name}.log)"))?
        .with_context(|| format!("reading {name}'s output"))?
        .ok_or_else(|| anyhow!("{name} exited at start (see {name}.log)"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let started: Value =
        serde_json::from_str(&first).with_context(|| format!("{name} printed {first:?}"))?;
    let http = started["http"]
        .as_str()
        .ok_or_else(|| anyhow!("{name}'s start line has no http address"))?;
    let tcp = started["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.contains("/tcp/"))
        .map(str::to_owned);
    Ok(NodeChild {
        name,
        child,
        api: format!("http://{http}"),
        tcp,
        id: started["id"].as_str().unwrap_or_default().to_owned(),
    })
}

async fn wait_offers(api: &str, want: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = tokio::time::Instant::now() + OFFERS_TIMEOUT;
    loop {
        let count = match client.get(format!("{api}/v1/offers")).send().await {
            Ok(resp) => resp
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["count"].as_u64())
                .unwrap_or(0),
            Err(_) => 0,
        };
        if usize::try_from(count).unwrap_or(0) >= want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the gateway sees {count} offers after {OFFERS_TIMEOUT:?}, expected {want}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
