//! `agora services`: the services agents published, as a node's directory holds them.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::process::ExitCode;

use agora_protocol::service::ServiceKind;
use clap::Args;

use super::http_client::{DEFAULT_NODE, NodeClient};
use super::{GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    /// Only services of this kind (mcp, http, tcp).
    #[arg(long)]
    kind: Option<ServiceKind>,
    /// Only services with exactly this name.
    #[arg(long)]
    name: Option<String>,
    /// Only services this agent published.
    #[arg(long)]
    owner: Option<String>,
    /// Only services of this lease.
    #[arg(long)]
    lease: Option<String>,
    /// Most services shown.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
}

impl ServicesArgs {
    fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if let Some(k) = self.kind {
            q.push(("kind".to_owned(), k.as_str().to_owned()));
        }
        for (name, value) in [
            ("name", &self.name),
            ("owner", &self.owner),
            ("lease", &self.lease),
        ] {
            if let Some(v) = value {
                q.push((name.to_owned(), v.clone()));
            }
        }
        q.push(("limit".to_owned(), self.limit.to_string()));
        q
    }
}

pub(crate) fn run(args: &ServicesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = NodeClient::new(&args.node)?;
    let body = client.get_json("/v1/services", &args.query())?;
    if global.json {
        print_json(&body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let services = body["services"].as_array().cloned().unwrap_or_default();
    if services.is_empty() {
        println!("no services match");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<5} {:>5}  {:<20} {:<16}  DESCRIPTION",
        "NAME", "KIND", "PORT", "OWNER", "LEASE"
    );
    for s in &services {
        let short = |k: &str, n: usize| -> String {
            s[k].as_str().unwrap_or("-").chars().take(n).collect()
        };
        println!(
            "{:<24} {:<5} {:>5}  {:<20} {:<16}  {}",
            short("name", 24),
            short("kind", 5),
            s["port"].as_u64().unwrap_or(0),
            short("owner", 20),
            short("lease", 16),
            s["description"].as_str().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}
