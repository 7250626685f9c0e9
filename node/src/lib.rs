//! The Agora node: the daemon's building blocks and the `agora` command-line tool.
//!
//! - [`config`]: the node configuration file and its validation.
//! - [`store`]: the node's persistent state over RocksDB (one column family per kind).

pub mod config;
pub mod store;
