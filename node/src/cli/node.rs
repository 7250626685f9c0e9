//! `agora node start|status`: run the daemon, or ask a running one how it is.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agora_node::config::{NodeConfig, PriceConfig, ProviderConfig, Role};
use agora_node::daemon::RunningNode;
use agora_protocol::offer::Isolation;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use libp2p::Multiaddr;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::http_client::NodeClient;
use super::{GlobalArgs, print_json};

#[derive(Debug, Subcommand)]
pub(super) enum NodeCommand {
    /// Run a node until SIGINT or SIGTERM (SIGHUP reloads the [provider] section).
    Start(Box<StartArgs>),
    /// Show a running node's id, addresses, peers and offer count.
    Status {
        /// The node's HTTP API.
        #[arg(long, env = "AGORA_NODE", default_value = super::http_client::DEFAULT_NODE)]
        node: String,
    },
}

/// Flags override the config file, field by field.
#[derive(Debug, Clone, Args)]
pub(super) struct StartArgs {
    /// The TOML config file (see the README for every field).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data dir (store and, by default, the identity key).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Identity key file (created on first start).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// libp2p listen address (repeatable), e.g. /ip4/0.0.0.0/udp/7000/quic-v1.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Bootstrap peer (repeatable): a multiaddr ending in /p2p/<peer id>.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,
    /// HTTP API address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Role (repeatable): provider, gateway, validator.
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<Role>,
    /// The quota committee's genesis file (a node it lists is a validator).
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Region, e.g. eu-west.
    #[arg(long)]
    region: Option<String>,
    /// Label key=value (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Serve Kademlia queries (default true; false behind NAT).
    #[arg(long)]
    kad_server: Option<bool>,
    /// Runtime to offer (repeatable): sandbox, docker.
    #[arg(long = "runtime", value_name = "RUNTIME")]
    runtimes: Vec<Isolation>,
    /// vCPUs to sell.
    #[arg(long)]
    vcpu: Option<f64>,
    /// Memory to sell, MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Disk to sell, MiB.
    #[arg(long)]
    disk_mib: Option<u64>,
    /// Price per vCPU, micro-credits per second.
    #[arg(long)]
    price_vcpu: Option<u64>,
    /// Price per GiB of memory, micro-credits per second.
    #[arg(long)]
    price_memory_gib: Option<u64>,
    /// Offer lifetime before re-advertising, e.g. 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    offer_ttl: Option<core::time::Duration>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

impl StartArgs {
    /// The config file (or defaults) with these flags applied, validated.
    fn effective_config(&self) -> anyhow::Result<NodeConfig> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("<flags>"));
        let mut c = match &self.config {
            Some(p) => NodeConfig::load(p)?,
            None => NodeConfig::default(),
        };
        if let Some(d) = &self.data_dir {
            c.data_dir.clone_from(d);
        }
        if let Some(k) = &self.key {
            c.key_file = Some(k.clone());
        }
        if !self.listen.is_empty() {
            c.listen.clone_from(&self.listen);
        }
        if !self.bootstrap.is_empty() {
            c.bootstrap.clone_from(&self.bootstrap);
        }
        if let Some(h) = self.http {
            c.http = h;
        }
        if !self.roles.is_empty() {
            c.roles.clone_from(&self.roles);
        }
        if let Some(g) = &self.genesis {
            c.genesis = Some(g.clone());
        }
        if let Some(r) = &self.region {
            c.region.clone_from(r);
        }
        c.labels.extend(self.labels.iter().cloned());
        if self.kad_server.is_some() {
            c.network.kad_server = self.kad_server;
        }
        self.apply_provider_flags(&mut c);
        c.validate(&path)?;
        Ok(c)
    }

    fn apply_provider_flags(&self, c: &mut NodeConfig) {
        let any = !self.runtimes.is_empty()
            || self.vcpu.is_some()
            || self.memory_mib.is_some()
            || self.disk_mib.is_some()
            || self.price_vcpu.is_some()
            || self.price_memory_gib.is_some()
            || self.offer_ttl.is_some();
        if !any {
            return;
        }
        let p = c.provider.get_or_insert_with(|| {
            // Flags alone describe a provider: start from modest defaults.
            ProviderConfig::new(
                1.0,
                1024,
                1024,
                PriceConfig {
                    vcpu: 100,
                    memory_gib: 10,
                    disk_gib: 0,
                    gpu: 0,
                },
            )
        });
        if !self.runtimes.is_empty() {
            p.runtimes.clone_from(&self.runtimes);
        }
        if let Some(v) = self.vcpu {
            p.vcpu = v;
        }
        if let Some(m) = self.memory_mib {
            p.memory_mib = m;
        }
        if let Some(d) = self.disk_mib {
            p.disk_mib = d;
        }
        if let Some(v) = self.price_vcpu {
            p.prices.vcpu = v;
        }
        if let Some(m) = self.price_memory_gib {
            p.prices.memory_gib = m;
        }
        if let Some(t) = self.offer_ttl {
            p.offer_ttl = t;
        }
    }
}

pub(super) fn run(cmd: NodeCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Start(args) => start(&args, global),
        NodeCommand::Status { node } => status(&node, global),
    }
}

fn start(args: &StartArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    close_inherited_descriptors();
    let config = args.effective_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agora")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, args, global))?;
    Ok(ExitCode::SUCCESS)
}

/// Closes every descriptor above stderr that this process inherited without close-on-exec.
///
/// Whatever a provider's shell or supervisor left open would otherwise pass on to every
/// child the daemon starts, sandbox launchers included, and so into workloads (bubblewrap
/// closes nothing). Sound without `unsafe`: it runs before the daemon opens anything, and
/// every descriptor Rust opens is close-on-exec, so no object in this process owns one of
/// these.
fn close_inherited_descriptors() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // The listing's own descriptor is closed by now (its fdinfo is gone or reused).
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        // fdinfo prints the kernel's open flags in octal, with this architecture's values.
        if flags.is_some_and(|f| f & libc::O_CLOEXEC.unsigned_abs() == 0) {
            match nix::unistd::close(fd) {
                Ok(()) => tracing::info!(fd, "closed a descriptor inherited from the parent"),
                Err(e) => tracing::warn!(fd, error = %e, "cannot close an inherited descriptor"),
            }
        }
    }
}

async fn serve(config: NodeConfig, args: &StartArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Install handlers before anything starts, so an early signal is not lost.
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;

    let node = RunningNode::start(config).await?;
    announce(&node, global).await?;
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => match args.effective_config() {
                Ok(c) => {
                    tracing::info!("SIGHUP: configuration reloaded");
                    node.reload(c).await;
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "SIGHUP: configuration refused; keeping the running one"),
            },
        }
    }
    node.shutdown().await?;
    if global.json {
        print_json(&json!({ "event": "stopped" }))?;
    } else {
        println!("stopped");
    }
    Ok(())
}

/// Prints where the node listens, once the swarm reports its addresses (at most ~3 s).
async fn announce(node: &RunningNode, global: &GlobalArgs) -> anyhow::Result<()> {
    let shared = node.shared();
    let want = shared.config.listen.len();
    for _ in 0..30 {
        if shared.status().listen_addrs.len() >= want {
            break;
        }
        tokio::time::sleep(core::time::Duration::from_millis(100)).await;
    }
    let listen: Vec<String> = shared
        .status()
        .listen_addrs
        .iter()
        .map(|a| format!("{a}/p2p/{}", shared.peer_id))
        .collect();
    if global.json {
        print_json(&json!({
            "event": "started",
            "id": shared.id.to_string(),
            "peer_id": shared.peer_id.to_string(),
            "http": node.http_addr().to_string(),
            "listen_addrs": listen,
        }))?;
    } else {
        println!("agora node {}", shared.id);
        println!("  peer id  {}", shared.peer_id);
        println!("  http     http://{}", node.http_addr());
        for a in &listen {
            println!("  listen   {a}");
        }
    }
    Ok(())
}

fn status(node: &str, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = NodeClient::new(node)?;
    let info = client.get_json("/v1/node", &[])?;
    let peers = client.get_json("/v1/peers", &[])?;
    if global.json {
        print_json(&json!({ "node": info, "peers": peers["peers"] }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    println!("node     {}", s(&info["id"]));
    println!("peer id  {}", s(&info["peer_id"]));
    println!("version  {}", s(&info["version"]));
    println!("region   {}", s(&info["region"]));
    println!("roles    {}", join(&info["roles"]));
    println!("offers   {}", info["offers"]);
    println!("started  {}", s(&info["started_at"]));
    for a in info["listen_addrs"].as_array().into_iter().flatten() {
        println!("listen   {}", s(a));
    }
    let list = peers["peers"].as_array().cloned().unwrap_or_default();
    println!("peers    {}", list.len());
    for p in &list {
        println!(
            "  {}  rtt {:>5}  score {:>7}  {}",
            s(&p["peer_id"]),
            p["rtt_ms"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |r| format!("{r}ms")),
            p["score"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}")),
            join(&p["addresses"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn join(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
