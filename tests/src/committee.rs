//! A quota committee of n = 4 (f = 1) for a test network on 127.0.0.1: a genesis file
//! naming four validators, written before any of them starts. The validators are the
//! test's own nodes where possible (a gateway, providers: each gets the `validator` role
//! and the genesis), plus validator-only processes to make up four.
//!
//! ```text
//! let committee = Committee::new(root, &[&a_dir, &c_dir]);  // keys of A and C, V3, V4
//! let a = NodeProc::start_configured(&a_dir, &format!("roles = [\"gateway\", \"validator\"]\n{}…", committee.config_line()), None);
//! … C likewise …
//! committee.start_extra(&a.tcp_addr());                     // V3, V4 bootstrap from A
//! committee.wait_connected(&[&a, &c]);                      // everyone knows every validator
//! ```
//!
//! Agents then need quota at the committee: `agora agent signup` through a node of the
//! network claims the free tier ([`FREE_MICRO`]), certified by the validators, and `agora
//! agent run` has the gateway certify a lock before the provider starts the lease.
//!
//! Shared by `tests/quota.rs`, `tests/tunnels.rs`, `tests/services.rs`,
//! `tests/journey_leases.rs` (through [`crate::cluster`] where it builds the network) and
//! `benches/journey_latency.rs`.

// Test support: failing loudly is the point; indexing a serde_json::Value yields Null.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_attest::{Identity, keyfile};
use agora_node::agent::quota::QuotaAccount;

use crate::node::{Launch, NodeProc, wait_for};

/// The free-tier grant every agent claims at signup: 10 credits.
pub const FREE_MICRO: u64 = 10_000_000;

/// Validators in a test committee (f = 1).
pub const N: usize = 4;

/// How long [`Committee::wait_connected`] waits.
const WAIT: Duration = Duration::from_secs(60);

/// `agent`'s quota account as `node` shows it (`GET /v1/accounts/{agent}/quota`; the node
/// must have the committee).
pub fn quota_account(node: &NodeProc, agent: &str) -> QuotaAccount {
    let (status, v) = node.get(&format!("/v1/accounts/{agent}/quota"));
    assert_eq!(status, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// The node key in `dir` (`dir/data/identity.key`, where [`NodeProc`] keeps it), created if
/// missing: known before the node starts, so a genesis can name it.
pub fn key_of(dir: &Path) -> Identity {
    let path = dir.join("data").join("identity.key");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    keyfile::load_or_create(&path, &mut rand::rng()).unwrap().0
}

/// Writes a genesis naming `validators` (f = 1) at `path`: epoch 0 started a minute ago,
/// one-day epochs, a free tier of [`FREE_MICRO`] for up to 64 agents an epoch, settlements
/// within 60 s of a lock's expiry.
pub fn write_genesis(path: &Path, validators: &[Identity]) {
    write_genesis_capped(path, validators, 64);
}

/// [`write_genesis`] with up to `cap_per_epoch` free-tier grants an epoch (a benchmark
/// signs up more agents than a test).
pub fn write_genesis_capped(path: &Path, validators: &[Identity], cap_per_epoch: u32) {
    write_genesis_with(path, validators, cap_per_epoch, &[]);
}

/// [`write_genesis_capped`] whose attestations by `issuers` credit quota.
pub fn write_genesis_with(
    path: &Path,
    validators: &[Identity],
    cap_per_epoch: u32,
    issuers: &[agora_protocol::AgoraId],
) {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let ids: Vec<String> = validators
        .iter()
        .map(|v| format!("\"{}\"", v.agora_id()))
        .collect();
    std::fs::write(
        path,
        format!(
            "f = 1\nvalidators = [{}]\nissuers = [{}]\nstart_unix_secs = {start}\nepoch_secs = 86400\n\n[free_tier]\nallowance_micro = {FREE_MICRO}\ncap_per_epoch = {cap_per_epoch}\n\n[locks]\nsettle_grace_secs = 60\n",
            ids.join(", "),
            issuers
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .unwrap();
}

/// A gateway and validator of the committee of `genesis` in region `eu` (a Kademlia
/// server), bootstrapping from `bootstrap` when given.
pub fn validator(dir: &Path, genesis: &Path, bootstrap: Option<&str>) -> NodeProc {
    validator_in(dir, genesis, &Launch::default(), bootstrap)
}

/// [`validator`] where `launch` says (another address, a network namespace).
pub fn validator_in(
    dir: &Path,
    genesis: &Path,
    launch: &Launch,
    bootstrap: Option<&str>,
) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "roles = [\"gateway\", \"validator\"]\nregion = \"eu\"\ngenesis = \"{}\"\n\n[network]\nkad_server = true\n",
            genesis.display()
        ),
    )
    .unwrap();
    let mut args = vec!["--config".to_owned(), config.display().to_string()];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap".to_owned(), b.to_owned()]);
    }
    NodeProc::start_in(dir, launch, &args)
}

/// Waits until `node` is connected to every node of `others`.
///
/// # Panics
/// When it is not within 60 s (with its log).
pub fn wait_connected(node: &NodeProc, others: &[&NodeProc]) {
    wait_for(WAIT, || {
        let (_, peers) = node.get("/v1/peers");
        let ids: Vec<&str> = peers["peers"]
            .as_array()?
            .iter()
            .filter_map(|p| p["agora_id"].as_str())
            .collect();
        others
            .iter()
            .all(|o| o.id == node.id || ids.contains(&o.id.as_str()))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{} does not reach the others:\n{}", node.id, node.log()));
}

/// A test network's committee: its genesis file and the validator-only processes that
/// make up [`N`] validators (killed on drop).
#[derive(Debug)]
pub struct Committee {
    /// The genesis file.
    pub genesis: PathBuf,
    extra_dirs: Vec<PathBuf>,
    extra: Vec<NodeProc>,
}

impl Committee {
    /// Writes `root/genesis.toml` naming the keys of the nodes to run in `members` (at most
    /// [`N`]; their keys are created now) and of `N - members.len()` validator-only nodes
    /// in `root/validator-<i>`, started later by [`Committee::start_extra`].
    ///
    /// # Panics
    /// With more than [`N`] members, or when a key or the file cannot be written.
    pub fn new(root: &Path, members: &[&Path]) -> Self {
        Self::new_capped(root, members, 64)
    }

    /// [`Committee::new`] with up to `cap_per_epoch` free-tier grants an epoch.
    ///
    /// # Panics
    /// As [`Committee::new`].
    pub fn new_capped(root: &Path, members: &[&Path], cap_per_epoch: u32) -> Self {
        Self::new_with(root, members, cap_per_epoch, &[])
    }

    /// [`Committee::new_capped`] whose attestations by `issuers` credit quota.
    ///
    /// # Panics
    /// As [`Committee::new`].
    pub fn new_with(
        root: &Path,
        members: &[&Path],
        cap_per_epoch: u32,
        issuers: &[agora_protocol::AgoraId],
    ) -> Self {
        assert!(members.len() <= N, "a test committee has {N} validators");
        let extra_dirs: Vec<PathBuf> = (members.len()..N)
            .map(|i| root.join(format!("validator-{i}")))
            .collect();
        let keys: Vec<Identity> = members
            .iter()
            .copied()
            .chain(extra_dirs.iter().map(PathBuf::as_path))
            .map(key_of)
            .collect();
        let genesis = root.join("genesis.toml");
        write_genesis_with(&genesis, &keys, cap_per_epoch, issuers);
        Self {
            genesis,
            extra_dirs,
            extra: Vec::new(),
        }
    }

    /// The node configuration line naming the genesis (top level, before any section).
    pub fn config_line(&self) -> String {
        format!("genesis = \"{}\"\n", self.genesis.display())
    }

    /// Starts the validator-only nodes (gateway and validator), bootstrapping from
    /// `bootstrap`.
    pub fn start_extra(&mut self, bootstrap: &str) {
        self.start_extra_in(&Launch::default(), bootstrap);
    }

    /// [`Committee::start_extra`] where `launch` says (an address every member can reach).
    pub fn start_extra_in(&mut self, launch: &Launch, bootstrap: &str) {
        for dir in &self.extra_dirs {
            self.extra
                .push(validator_in(dir, &self.genesis, launch, Some(bootstrap)));
        }
    }

    /// The validator-only nodes started.
    pub fn extra(&self) -> &[NodeProc] {
        &self.extra
    }

    /// Waits until each of `nodes` and every validator-only node is connected to all the
    /// others: a gateway then reaches every validator when it certifies.
    ///
    /// # Panics
    /// As [`wait_connected`].
    pub fn wait_connected(&self, nodes: &[&NodeProc]) {
        let all: Vec<&NodeProc> = nodes.iter().copied().chain(self.extra.iter()).collect();
        for node in &all {
            wait_connected(node, &all);
        }
    }
}
