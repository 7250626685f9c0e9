//! `agora provider show ID`: a provider's reputation, history and offer, as a node sees it.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::process::ExitCode;

use agora_protocol::AgoraId;
use clap::Subcommand;
use serde_json::Value;

use super::http_client::{DEFAULT_NODE, NodeClient};
use super::{GlobalArgs, print_json};

#[derive(Debug, Subcommand)]
pub(super) enum ProviderCommand {
    /// Show a provider's reputation (the current, provisional epoch and the latest
    /// completed one), its history over completed epochs and its current offer.
    Show {
        /// The provider's Agora id (`agora1…`).
        id: AgoraId,
        /// The node's HTTP API.
        #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
}

pub(super) fn run(cmd: &ProviderCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        ProviderCommand::Show { id, node } => show(id, node, global),
    }
}

fn show(id: &AgoraId, node: &str, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = NodeClient::new(node)?;
    let p = client.get_json(&format!("/v1/providers/{id}"), &[])?;
    if global.json {
        print_json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("provider      {}", p["provider"].as_str().unwrap_or("-"));
    let offer = &p["offer"];
    if offer.is_object() {
        println!(
            "offer         seq {} in {}, {} µcr/s (1 vCPU, 1 GiB), expires {}",
            offer["seq"],
            offer["region"].as_str().unwrap_or("-"),
            offer["price_per_second"],
            offer["expires_at"].as_str().unwrap_or("-"),
        );
    } else {
        println!("offer         none current");
    }
    let rep = &p["reputation"];
    if rep["available"] != true {
        println!(
            "reputation    unavailable: {}",
            rep["reason"].as_str().unwrap_or("unknown reason")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "computed      {} (log {})",
        rep["computed_at"].as_str().unwrap_or("-"),
        short(rep["state_hash"].as_str().unwrap_or("-")),
    );
    println!();
    header();
    for (label, e) in [
        ("current", &rep["current"]),
        ("completed", &rep["completed"]),
    ] {
        if e.is_object() {
            row(label, e);
        }
    }
    let history = p["history"].as_array().cloned().unwrap_or_default();
    // The newest completed epoch is already shown above.
    for e in history.iter().skip(1) {
        row("history", e);
    }
    Ok(ExitCode::SUCCESS)
}

fn short(hash: &str) -> String {
    hash.chars().take(16).collect()
}

fn header() {
    println!(
        "{:<10} {:>6} {:<24} {:>12} {:>12} {:>8} {:>6} {:>5} {:>6} {:>9} {:>12}",
        "EPOCH",
        "#",
        "START",
        "TRUST ppb",
        "SHARE ppb",
        "RANK",
        "LEASES",
        "RAN",
        "FAILED",
        "NEVER RAN",
        "PAID µcr"
    );
}

fn row(label: &str, e: &Value) {
    let epoch = e["epoch"].as_u64().unwrap_or(0);
    let start = e["start"].as_str().unwrap_or("-");
    let s = &e["score"];
    if !s.is_object() {
        println!(
            "{label:<10} {epoch:>6} {start:<24} {:>12} (no lease judged; {} providers ranked)",
            "-", e["providers"]
        );
        return;
    }
    let rank = format!("{}/{}", s["rank"], s["of"]);
    println!(
        "{label:<10} {epoch:>6} {start:<24} {:>12} {:>12} {:>8} {:>6} {:>5} {:>6} {:>9} {:>12}",
        s["trust_ppb"],
        s["share_ppb"],
        rank,
        s["leases"],
        s["ran"],
        s["failed"],
        s["never_ran"],
        s["paid_micro"],
    );
}
