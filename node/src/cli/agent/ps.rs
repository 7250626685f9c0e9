//! `agora agent ps`: your leases, as a node knows them (it lists them only to you: the
//! request carries a read proof signed with your key for that node).

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::lease::{credits, list_leases, load_agent};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Any node's HTTP API (the one that relayed your leases knows them).
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Most leases shown.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

pub(crate) fn run(args: &PsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let agent = load_agent(args.key.as_deref())?;
    let client = NodeClient::new(&args.node)?;
    let body = list_leases(&client, &agent.identity, Some(args.limit))?;
    if global.json {
        print_json(&body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let leases = body["leases"].as_array().cloned().unwrap_or_default();
    if leases.is_empty() {
        println!("no leases");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<20} {:<22} {:<10} {:>10}  COMMAND",
        "LEASE", "PROVIDER", "STATE", "IMAGE", "CREDITS"
    );
    for l in &leases {
        let short = |k: &str, n: usize| -> String {
            l[k].as_str().unwrap_or("-").chars().take(n).collect()
        };
        let state = match l["ended"]["reason"].as_str() {
            Some(r) => r.to_owned(),
            None => format!(
                "running {}s left",
                l["remaining_secs"].as_u64().unwrap_or(0)
            ),
        };
        let command: Vec<&str> = l["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{:<14} {:<20} {:<22} {:<10} {:>10}  {}",
            short("lease", 12),
            short("provider", 20),
            state,
            l["image"].as_str().unwrap_or("-"),
            credits(l["receipt"]["total_micro"].as_u64().unwrap_or(0)),
            command.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
