//! The Agora node: the daemon's building blocks and the `agora` command-line tool.
//!
//! - [`config`]: the node configuration file and its validation.
//! - [`store`]: the node's persistent state over RocksDB (one column family per kind).
//! - [`net`]: the libp2p swarm: transports and the composed behaviour.
//! - [`market`]: the offer book fed by gossip and sync, with validation verdicts.
//! - [`daemon`]: the running node (network loop, provider advertiser, shutdown).
//! - [`http`]: the HTTP API.
//! - [`metrics`]: Prometheus metrics.
//! - [`runtime`]: workload runtimes (today: probing what the host offers a sandbox).

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod daemon;
pub mod http;
pub mod market;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod store;
