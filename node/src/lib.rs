//! The Agora node: the daemon's building blocks and the `agora` command-line tool.
//!
//! - [`store`]: the node's persistent state over RocksDB (one column family per kind).

pub mod store;
