//! Command-line parsing and dispatch for the `agora` binary.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_protocol::Timestamp;
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod agent;
mod approvals;
mod attest;
mod demo;
mod http_client;
mod id;
mod ledger;
mod mcp;
mod node;
mod offers;
mod provider;
mod services;
mod tunnel;
mod tunnel_grant;

/// Exit code for errors (bad input, I/O).
pub const EXIT_ERROR: u8 = 1;
/// Exit code when something was checked and rejected (a credential, a ledger that does not
/// verify).
pub const EXIT_REJECTED: u8 = 3;

/// Largest input read from stdin or an argument file (a credential is far smaller).
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Agora: a peer-to-peer compute marketplace for AI agents.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, propagate_version = true)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by all commands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log filter (tracing env-filter syntax, e.g. `info` or `agora_node=debug`); also
    /// `RUST_LOG`.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "warn")]
    pub log: String,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and show identities (ed25519 keys).
    #[command(subcommand)]
    Id(id::IdCommand),
    /// Issue, verify and revoke attestations.
    #[command(subcommand)]
    Attest(Box<attest::AttestCommand>),
    /// Run a node, or ask a running one for its status.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// List offers the network advertises, as a node sees them.
    Offers(Box<offers::OffersArgs>),
    /// A provider as a node sees it: reputation, history and offer.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// List the services agents published (MCP servers, web apps, TCP services in their
    /// leases), as a node sees them.
    Services(Box<services::ServicesArgs>),
    /// Serve MCP tools over stdio (for an agent's MCP client), calling a node's API.
    Mcp(mcp::McpArgs),
    /// Run a local demo network (bootstrap, two sandbox providers, a gateway) and an
    /// agent's journey through it.
    Demo(demo::DemoArgs),
    /// Act as an agent: sign up at a node.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// As an agent's owner: approve a lease request waiting above the agent's spending
    /// limit.
    Approve(approvals::ApproveArgs),
    /// As an agent's owner: list or watch the lease requests waiting for your approval.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// The replicated evidence log: a node's state, or a data dir verified offline.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Forward local TCP ports to a lease's workload ports over the provider's QUIC tunnel
    /// (`-L [BIND:]LOCAL:REMOTE`, repeatable); runs until interrupted.
    Tunnel(Box<tunnel::TunnelArgs>),
}

/// Sets up `tracing` to stderr; a bad filter falls back to `warn` with a notice.
pub fn init_logging(args: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|e| {
        eprintln!("warning: ignoring log filter {:?}: {e}", args.log);
        tracing_subscriber::EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs a parsed command.
///
/// # Errors
/// Any failure, as one `anyhow` chain for `main` to print.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(cmd) => id::run(cmd, &cli.global),
        Command::Attest(cmd) => attest::run(*cmd, &cli.global),
        Command::Node(cmd) => node::run(cmd, &cli.global),
        Command::Offers(args) => offers::run(&args, &cli.global),
        Command::Provider(cmd) => provider::run(&cmd, &cli.global),
        Command::Services(args) => services::run(&args, &cli.global),
        Command::Mcp(args) => mcp::run(&args, &cli.global),
        Command::Demo(args) => demo::run(&args, &cli.global),
        Command::Agent(cmd) => agent::run(cmd, &cli.global),
        Command::Approve(args) => approvals::approve(&args, &cli.global),
        Command::Approvals(cmd) => approvals::run(&cmd, &cli.global),
        Command::Tunnel(args) => tunnel::run(&args, &cli.global),
        Command::Ledger(cmd) => ledger::run(cmd, &cli.global),
    }
}

/// The current time from the system clock (the protocol never reads clocks itself).
pub fn now() -> anyhow::Result<Timestamp> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?;
    let ms = u64::try_from(since.as_millis()).context("system clock is out of range")?;
    Ok(Timestamp::from_unix_millis(ms))
}

/// The default key file: `$AGORA_KEY`, else `$HOME/.agora/identity.key`.
pub fn default_key_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("AGORA_KEY") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --key or set AGORA_KEY")?;
    Ok(PathBuf::from(home).join(".agora").join("identity.key"))
}

/// Reads a text argument that may be `-` (stdin) or `@FILE`, bounded in size.
pub fn read_text_arg(arg: &str, what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    if arg == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {what} from stdin"))?;
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::File::open(path)
            .with_context(|| format!("opening {what} file {path}"))?
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {what} file {path}"))?;
    } else {
        text = arg.to_owned();
    }
    let text = text.trim();
    if text.is_empty() {
        bail!("{what} is empty");
    }
    Ok(text.to_owned())
}

/// The async runtime of a command that mostly waits on the network (`agora mcp`): two
/// worker threads.
pub fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The async runtime of `agora tunnel` (own lease or granted service): one thread, as
/// `ssh -L` has. Every chunk a forwarder moves is a chain of hand-offs (TCP socket, the
/// stream's pipe task, quinn's connection driver, the UDP socket); on one thread each is a
/// local wake-up instead of one across threads. Measured against two workers (the tunnel
/// bench, 1 GiB transfers): about a fifth less CPU per GiB on the agent side and about a
/// tenth more throughput. Token renewals, the only blocking work, have their own thread.
pub fn forwarder_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints a value as one line of JSON.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
