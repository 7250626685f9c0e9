//! The Agora node: the daemon's building blocks and the `agora` command-line tool.
//!
//! - [`agent`]: agent signup, accounts and standing (tiers from signup records).
//! - [`committee`]: the quota committee: validator driver, certifying client, unlocks.
//! - [`config`]: the node configuration file and its validation.
//! - [`store`]: the node's persistent state over RocksDB (one column family per kind).
//! - [`net`]: the libp2p swarm: transports and the composed behaviour.
//! - [`market`]: the offer book fed by gossip and sync, with validation verdicts.
//! - [`services`]: the directory of published services fed by gossip, with verdicts.
//! - [`daemon`]: the running node (network loop, provider advertiser, shutdown).
//! - [`http`]: the HTTP API.
//! - [`lease`]: leases: the provider's service and the gateway's relay.
//! - [`ledger`]: the node's replica of the evidence log, kept in the store and synced.
//! - [`metrics`]: Prometheus metrics.
//! - [`reputation`]: providers' per-epoch reputation over the ledger (with a genesis).
//! - [`surface`]: the agent-facing operations, defined once: OpenAPI, `/llms.txt`, MCP.
//! - [`runtime`]: workload runtimes (today: probing what the host offers a sandbox).

#![forbid(unsafe_code)]

pub mod agent;
pub mod clock;
pub mod committee;
pub mod config;
pub mod daemon;
pub mod http;
pub mod lease;
pub mod ledger;
pub mod market;
pub mod metrics;
pub mod net;
pub mod reputation;
pub mod runtime;
pub mod services;
pub mod store;
pub mod surface;
pub mod tunnel;
