//! `agora offers`: the market as a node sees it, filtered and sorted.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::process::ExitCode;

use agora_protocol::offer::Isolation;
use clap::Args;

use super::http_client::{DEFAULT_NODE, NodeClient};
use super::{GlobalArgs, print_json};

#[derive(Debug, Args)]
pub(crate) struct OffersArgs {
    /// Only providers offering this runtime (sandbox, docker, microvm).
    #[arg(long)]
    runtime: Option<Isolation>,
    /// Only providers that can start this image.
    #[arg(long)]
    image: Option<String>,
    /// At least this many free vCPUs (fractions allowed).
    #[arg(long)]
    min_cpu: Option<f64>,
    /// At least this much free memory, MiB.
    #[arg(long)]
    min_memory_mib: Option<u64>,
    /// At most this price, micro-credits per second (for --min-cpu/--min-memory-mib, or one
    /// vCPU and 1 GiB).
    #[arg(long)]
    max_price: Option<u64>,
    /// Only this region.
    #[arg(long)]
    region: Option<String>,
    /// Only providers accepting this tier.
    #[arg(long)]
    tier: Option<String>,
    /// Only providers with this label (key=value, repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Order: price, newest or reputation (highest first, then price).
    #[arg(long, default_value = "price")]
    sort: String,
    /// Most offers shown.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
}

impl OffersArgs {
    fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        let mut add = |k: &str, v: String| q.push((k.to_owned(), v));
        if let Some(r) = self.runtime {
            add("runtime", r.as_str().to_owned());
        }
        if let Some(i) = &self.image {
            add("image", i.clone());
        }
        if let Some(c) = self.min_cpu {
            add("min_cpu", c.to_string());
        }
        if let Some(m) = self.min_memory_mib {
            add("min_memory_mib", m.to_string());
        }
        if let Some(p) = self.max_price {
            add("max_price", p.to_string());
        }
        if let Some(r) = &self.region {
            add("region", r.clone());
        }
        if let Some(t) = &self.tier {
            add("tier", t.clone());
        }
        for l in &self.labels {
            add("label", l.clone());
        }
        add("sort", self.sort.clone());
        add("limit", self.limit.to_string());
        q
    }
}

pub(crate) fn run(args: &OffersArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = NodeClient::new(&args.node)?;
    let body = client.get_json("/v1/offers", &args.query())?;
    if global.json {
        print_json(&body)?;
        return Ok(ExitCode::SUCCESS);
    }
    let offers = body["offers"].as_array().cloned().unwrap_or_default();
    if offers.is_empty() {
        println!("no offers match");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<10} {:<16} {:>6} {:>9} {:>10}  EXPIRES",
        "PROVIDER", "REGION", "RUNTIMES", "VCPU", "MEM MiB", "µCR/S"
    );
    for o in &offers {
        let provider = o["provider"].as_str().unwrap_or("-");
        let short: String = provider.chars().take(20).collect();
        let runtimes: Vec<&str> = o["runtimes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["isolation"].as_str())
            .collect();
        let vcpu = o["capacity"]["vcpu_milli"].as_u64().unwrap_or(0) as f64 / 1000.0;
        println!(
            "{:<20} {:<10} {:<16} {:>6} {:>9} {:>10}  {}",
            short,
            o["region"].as_str().unwrap_or("-"),
            runtimes.join(","),
            vcpu,
            o["capacity"]["memory_mib"].as_u64().unwrap_or(0),
            o["price_per_second"].as_u64().unwrap_or(0),
            o["expires_at"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
