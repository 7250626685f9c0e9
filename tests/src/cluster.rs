//! A small Agora network on 127.0.0.1 for tunnel and service tests: a gateway, a provider
//! with its QUIC tunnel endpoint on a UDP port, agents signed up through the `agora` CLI,
//! and `agora tunnel` processes.
//!
//! The network runs under a quota committee of n = 4 ([`crate::committee`]): the gateway
//! and the provider are two of its validators, two validator-only nodes make up the rest.
//! [`signup`] claims the agent's free tier there, and a lease starts only against a lock
//! certificate the gateway gathers.
//!
//! Shared by `tests/tunnels.rs`, `tests/services.rs` and `benches/tunnel_throughput.rs`.

// Test support: failing loudly is the point; indexing a serde_json::Value yields Null.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::committee::Committee;
use crate::node::{NodeProc, wait_for};
use crate::{agora, stderr, stdout};

/// The cgroup parent of provider `node`'s sandboxes (for
/// [`crate::leftovers::Leftovers::add`]).
pub fn cgroup_parent(node: &NodeProc) -> String {
    agora_node::daemon::workloads::default_cgroup_parent(&node.id.parse().unwrap())
}

/// A UDP port free on 127.0.0.1 right now (for a provider's `tunnel_port`).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gateway node in region `eu` (Kademlia server: the others bootstrap from it), without
/// a quota committee (providers keep their own quota book).
pub fn gateway(dir: &Path) -> NodeProc {
    NodeProc::start_configured(
        dir,
        "roles = [\"gateway\"]\nregion = \"eu\"\n\n[network]\nkad_server = true\n",
        None,
    )
}

/// A provider (and gateway) on `runtime` (`sandbox`, `docker`) with its tunnel endpoint on
/// UDP `tunnel_port`, more configuration (whole sections) appended; without a quota
/// committee.
pub fn provider(
    dir: &Path,
    bootstrap: &str,
    runtime: &str,
    tunnel_port: u16,
    extra: &str,
) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"provider\", \"gateway\"]\nregion = \"eu\"\n\n[provider]\nruntimes = [\"{runtime}\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\ntunnel_port = {tunnel_port}\nprices = {{ vcpu = 100, memory_gib = 10 }}\n{extra}"
        ),
        Some(bootstrap),
    )
}

/// [`gateway`], also a validator of `committee`.
pub fn validator_gateway(dir: &Path, committee: &Committee) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"gateway\", \"validator\"]\nregion = \"eu\"\n{}\n[network]\nkad_server = true\n",
            committee.config_line()
        ),
        None,
    )
}

/// [`provider`], also a validator of `committee`: it admits leases only against the
/// committee's lock certificates.
pub fn validator_provider(
    dir: &Path,
    bootstrap: &str,
    runtime: &str,
    tunnel_port: u16,
    extra: &str,
    committee: &Committee,
) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"provider\", \"gateway\", \"validator\"]\nregion = \"eu\"\n{}\n[provider]\nruntimes = [\"{runtime}\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\ntunnel_port = {tunnel_port}\nprices = {{ vcpu = 100, memory_gib = 10 }}\n{extra}",
            committee.config_line()
        ),
        Some(bootstrap),
    )
}

/// The network [`gateway_and_provider`] starts.
#[derive(Debug)]
pub struct Cluster {
    /// Gateway A (a validator).
    pub a: NodeProc,
    /// Provider C (a validator).
    pub c: NodeProc,
    /// C's tunnel endpoint's UDP port.
    pub tunnel_port: u16,
    /// The committee (its validator-only nodes run while this lives).
    pub committee: Committee,
}

/// Gateway A in `root/a` and provider C in `root/c` (bootstrapped from A) on `runtime`,
/// its tunnel endpoint on a free UDP port, `extra` appended to its configuration, under a
/// committee of A, C and two validator-only nodes, all connected to each other.
pub fn gateway_and_provider(root: &Path, runtime: &str, extra: &str) -> Cluster {
    let (a_dir, c_dir) = (root.join("a"), root.join("c"));
    let mut committee = Committee::new(root, &[a_dir.as_path(), c_dir.as_path()]);
    let a = validator_gateway(&a_dir, &committee);
    let tunnel_port = free_udp_port();
    let c = validator_provider(
        &c_dir,
        &a.tcp_addr(),
        runtime,
        tunnel_port,
        extra,
        &committee,
    );
    committee.start_extra(&a.tcp_addr());
    committee.wait_connected(&[&a, &c]);
    Cluster {
        a,
        c,
        tunnel_port,
        committee,
    }
}

/// `agora --json agent SUB ARGS… --node N --key HOME/agent.key [-- COMMAND…]`: (success,
/// JSON, stderr).
pub fn agent_cli(home: &Path, node: &NodeProc, args: &[&str]) -> (bool, Value, String) {
    let (sub, rest) = args.split_first().unwrap();
    let (before, after) = match rest.iter().position(|a| *a == "--") {
        Some(i) => rest.split_at(i),
        None => (rest, &[][..]),
    };
    let out = agora(home)
        .args(["--json", "agent", sub])
        .args(before)
        .arg("--node")
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(home.join("agent.key"))
        .args(after)
        .output()
        .unwrap();
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out.status.success(), v, stderr(&out))
}

/// `agora agent grant LEASE --to GRANTEE --port PORT [EXTRA…] --out OUT` by the lease's
/// owner (key at `home/agent.key`) through `node`; asserts success, returns its JSON.
pub fn grant(
    home: &Path,
    node: &NodeProc,
    lease: &str,
    grantee: &str,
    port: &str,
    extra: &[&str],
    out: &Path,
) -> Value {
    let mut args = vec!["grant", lease, "--to", grantee, "--port", port];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    let (ok, granted, err) = agent_cli(home, node, &args);
    assert!(ok, "agent grant: {err}");
    granted
}

/// Signs up a new agent at `node`: its key at `home/agent.key` (created), its record
/// beside it; under a committee, the CLI also claims the agent's free tier there. Returns
/// the agent's id.
pub fn signup(home: &Path, node: &NodeProc) -> String {
    std::fs::create_dir_all(home).unwrap();
    let (ok, _, err) = agent_cli(home, node, &["signup"]);
    assert!(ok, "signup: {err}");
    agora_attest::keyfile::load(&home.join("agent.key"))
        .unwrap()
        .agora_id()
        .to_string()
}

/// How long [`wait_for_offer`] waits.
const OFFER_WAIT: Duration = Duration::from_secs(60);

/// Waits until `provider`'s offer reaches `gateway`.
pub fn wait_for_offer(gateway: &NodeProc, provider: &NodeProc) {
    wait_for(OFFER_WAIT, || {
        gateway
            .offer_providers("")
            .contains(&provider.id)
            .then_some(())
    })
    .expect("the provider's offer reaches the gateway");
}

/// `agora agent run FLAGS -- sh -c COMMAND` at `node` (FLAGS split at spaces), which must
/// succeed (else `provider`'s log is shown): the lease's view.
pub fn run_lease(
    home: &Path,
    node: &NodeProc,
    provider: &NodeProc,
    flags: &str,
    command: &str,
) -> Value {
    let mut args = vec!["run"];
    args.extend(flags.split_whitespace());
    args.extend(["--", "sh", "-c", command]);
    let (ok, run, err) = agent_cli(home, node, &args);
    assert!(
        ok,
        "agent run {flags}: {err}\nthe provider's log:\n{}",
        provider.log()
    );
    run["lease"].clone()
}

/// The capability in a lease view (`run`'s or `extend`'s `lease`), as wire bytes.
pub fn capability(view: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(view["capability"].as_str().unwrap())
        .unwrap()
}

/// An `agora --json tunnel …` process, killed on drop.
pub struct TunnelProc(Child);

impl TunnelProc {
    /// `agora --json tunnel LEASE -L 127.0.0.1:0:REMOTE… --node N --key HOME/agent.key`:
    /// the process and the local address of each forward, in order.
    pub fn start(
        home: &Path,
        node: &NodeProc,
        lease: &str,
        remotes: &[u16],
    ) -> (Self, Vec<SocketAddr>) {
        Self::start_with(home, node, &[lease], remotes)
    }

    /// As [`TunnelProc::start`] with any arguments before the `-L`s (a lease, `--grant
    /// FILE`, `--relay always`, …); its stderr goes to `home/tunnel.log`.
    pub fn start_with(
        home: &Path,
        node: &NodeProc,
        args: &[&str],
        remotes: &[u16],
    ) -> (Self, Vec<SocketAddr>) {
        let mut child = agora(home)
            .args(["--json", "tunnel"])
            .args(args)
            .args(
                remotes
                    .iter()
                    .flat_map(|r| ["-L".to_owned(), format!("127.0.0.1:0:{r}")]),
            )
            .arg("--node")
            .arg(format!("http://{}", node.http))
            .arg("--key")
            .arg(home.join("agent.key"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("tunnel.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "agora tunnel printed {line:?}; log: {}",
                std::fs::read_to_string(home.join("tunnel.log")).unwrap_or_default()
            )
        });
        let locals = remotes
            .iter()
            .enumerate()
            .map(|(i, remote)| {
                assert_eq!(v["forwards"][i]["remote"], *remote, "{v}");
                v["forwards"][i]["local"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        (Self(child), locals)
    }

    /// The process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for TunnelProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl -i http://ADDR/index.html`, as any client would fetch the page through a tunnel:
/// the whole answer with its headers, or `None` if curl failed (the workload not listening
/// yet).
pub fn http_get(addr: SocketAddr) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .arg(format!("http://{addr}/index.html"))
        .output()
        .ok()?;
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !answer.is_empty()).then_some(answer)
}
