//! `agora ledger status|verify`: a running node's evidence log, or a stopped node's data
//! dir checked offline.
//!
//! Exit codes of `verify`: 0 when every entry verifies and the indexes agree, 3
//! ([`super::EXIT_REJECTED`]) when anything fails verification (each failure is printed),
//! 1 when the data dir cannot be opened (missing, or in use by a running node).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;

use agora_node::config::NodeConfig;
use agora_node::ledger::verify;
use agora_node::store::{OpenError, RocksStore};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::json;

use super::http_client::{DEFAULT_NODE, NodeClient};
use super::{EXIT_REJECTED, GlobalArgs, print_json};

#[derive(Debug, Subcommand)]
pub(super) enum LedgerCommand {
    /// Ask a running node where its evidence log stands: state hash, entries by kind of
    /// fact, heads, entries waiting for parents, equivocators.
    Status {
        /// The node's HTTP API.
        #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// Check a stopped node's data dir offline: re-verify every entry's signatures,
    /// rebuild the log, recompute the state hash, and check the heads index and the node's
    /// own chain. Exits 3 on any failure.
    Verify {
        /// The data dir (default: the config's, or the built-in default).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Read the data dir from this node config file.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: LedgerCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCommand::Status { node } => status(&node, global),
        LedgerCommand::Verify { data_dir, config } => {
            let dir = match (data_dir, config) {
                (Some(d), _) => d,
                (None, Some(c)) => NodeConfig::load(&c)?.data_dir,
                (None, None) => NodeConfig::default().data_dir,
            };
            verify_dir(dir, global)
        }
    }
}

fn status(node: &str, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = NodeClient::new(node)?;
    let s = client.get_json("/v1/ledger/state", &[])?;
    if global.json {
        print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("state hash    {}", s["state_hash"].as_str().unwrap_or("-"));
    println!(
        "entries       {} ({} bytes) by {} authors",
        s["entries"], s["bytes"], s["authors"]
    );
    let facts: Vec<String> = s["facts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
        .unwrap_or_default();
    println!(
        "facts         {}",
        if facts.is_empty() {
            "none".to_owned()
        } else {
            facts.join(", ")
        }
    );
    println!("heads         {}", s["heads_total"]);
    println!(
        "pending       {} ({} bytes)",
        s["pending"], s["pending_bytes"]
    );
    let equivocators = s["equivocators"].as_array().map_or(0, Vec::len);
    println!("equivocators  {equivocators}");
    match s["own"]["seq"].as_u64() {
        Some(seq) => println!(
            "own chain     {} entries, latest {}",
            seq.saturating_add(1),
            s["own"]["digest"].as_str().unwrap_or("-")
        ),
        None => println!("own chain     empty"),
    }
    if let Some(why) = s["halted"].as_str() {
        println!("HALTED        {why}");
    } else if s["appending"] == false {
        println!("appending     no (own chain incomplete: waiting for peers)");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_dir(dir: PathBuf, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if !dir.join("CURRENT").is_file() {
        bail!("{} is not a node data dir (no store in it)", dir.display());
    }
    let store = match RocksStore::open(&dir) {
        Ok(s) => s,
        Err(OpenError::Locked { .. }) => bail!(
            "data dir {} is in use by a running node: stop it first, or ask it with `agora ledger status`",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening {}", dir.display())),
    };
    let report = verify::verify(&store, super::now()?)
        .with_context(|| format!("reading the ledger of {}", dir.display()))?;
    let failures = report.failures();
    if global.json {
        print_json(&json!({
            "ok": failures.is_empty(),
            "data_dir": dir.display().to_string(),
            "read": report.read,
            "entries": report.entries,
            "state_hash": report.state_hash.to_string(),
            "facts": report.facts,
            "authors": report.authors,
            "heads": report.heads,
            "heads_agree": report.heads_agree,
            "equivocators": report.equivocators.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "owner": report.owner.map(|o| o.to_string()),
            "own": report.own.map(|o| json!({ "seq": o.seq, "digest": o.digest.to_string() })),
            "own_chain_complete": report.own_chain_complete,
            "failures": failures,
        }))?;
    } else {
        println!("data dir      {}", dir.display());
        println!(
            "entries       {} of {} stored verified",
            report.entries, report.read
        );
        println!("state hash    {}", report.state_hash);
        let facts: Vec<String> = report
            .facts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("facts         {}", facts.join(", "));
        println!("heads         {}", report.heads);
        if failures.is_empty() {
            println!("ok: every signature verifies, the state hash is recomputed");
        } else {
            for f in &failures {
                eprintln!("FAILED: {f}");
            }
            eprintln!(
                "{} failure(s): this data dir's ledger does not verify",
                failures.len()
            );
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    })
}
