//! The demo's quota committee: the four nodes' keys made before they start, the genesis
//! naming them as validators (n = 4, f = 1) and the run's issuer as the only issuer, and the
//! reads of an agent's quota account at the gateway.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_attest::keyfile;
use agora_protocol::AgoraId;
use agora_protocol::committee::{Committee, FreeTier, Genesis, LockRules};
use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

/// How long the four validators may take to connect to one another.
const MESH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the provider may take to settle a stopped lease's lock.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Faulty validators tolerated: four nodes make `3f + 1` with f = 1.
const F: u32 = 1;
/// Epochs of a day (free-tier grants are capped per epoch).
const EPOCH_SECS: u64 = 86_400;
/// The free tier: 10 credits per account and epoch, for up to 1,000 accounts an epoch.
const FREE_TIER: FreeTier = FreeTier {
    allowance_micro: 10_000_000,
    cap_per_epoch: 1_000,
};
/// Locks for the demo's short leases: at most a day, settled within 5 minutes of expiry,
/// 16 open per account.
const LOCKS: LockRules = LockRules {
    max_lifetime_secs: 86_400,
    settle_grace_secs: 300,
    max_open: 16,
};

/// A node's identity, made before the node starts so the genesis can name it.
pub(super) struct NodeKey {
    /// The node's name in the demo.
    pub name: &'static str,
    /// Its Agora id.
    pub id: AgoraId,
    /// Its key file (`agora node start --key`).
    pub key_file: PathBuf,
}

/// Makes (or, in a kept `--dir`, loads) the key of each node named.
pub(super) fn node_keys(work: &Path, names: &[&'static str]) -> anyhow::Result<Vec<NodeKey>> {
    names
        .iter()
        .map(|&name| {
            let dir = work.join(name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let key_file = dir.join("identity.key");
            let (identity, _) = keyfile::load_or_create(&key_file, &mut rand::rng())
                .with_context(|| format!("making {}", key_file.display()))?;
            Ok(NodeKey {
                name,
                id: identity.agora_id(),
                key_file,
            })
        })
        .collect()
}

/// Writes `genesis.toml` in `work`: `validators` (f = 1), `issuer` as the only issuer, epoch 0
/// starting now. Returns its path and the checked committee.
pub(super) fn write_genesis(
    work: &Path,
    validators: &[AgoraId],
    issuer: AgoraId,
) -> anyhow::Result<(PathBuf, Committee)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let genesis = Genesis {
        f: F,
        validators: validators.to_vec(),
        issuers: vec![issuer],
        start_unix_secs: now.as_secs(),
        epoch_secs: EPOCH_SECS,
        free_tier: FREE_TIER,
        locks: LOCKS,
    };
    let text = genesis.to_toml().context("writing the genesis as TOML")?;
    // Read back exactly as the nodes will: what they load is what was checked here.
    let committee = Genesis::from_toml(&text).context("checking the demo's genesis")?;
    let path = work.join("genesis.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok((path, committee))
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("making an HTTP client")
}

/// Waits until every node in `nodes` (API, Agora id) is connected to every other: votes and
/// certificates travel over direct connections.
pub(super) async fn wait_mesh(nodes: &[(String, String)]) -> anyhow::Result<()> {
    let client = client()?;
    let deadline = tokio::time::Instant::now() + MESH_TIMEOUT;
    loop {
        let mut missing = Vec::new();
        for (api, id) in nodes {
            let peers: Vec<String> = match client.get(format!("{api}/v1/peers")).send().await {
                Ok(resp) => resp
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["peers"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p["agora_id"].as_str().map(str::to_owned))
                    .collect(),
                Err(_) => Vec::new(),
            };
            let lacks = nodes
                .iter()
                .filter(|(_, other)| other != id && !peers.contains(other))
                .count();
            if lacks > 0 {
                missing.push(format!("{api} lacks {lacks}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the validators are not all connected after {MESH_TIMEOUT:?}: {}",
                missing.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /v1/accounts/{agent}/quota` at `api`: the agent's account at the committee.
pub(super) async fn account(api: &str, agent: &str) -> anyhow::Result<Value> {
    let resp = client()?
        .get(format!("{api}/v1/accounts/{agent}/quota"))
        .send()
        .await
        .with_context(|| format!("asking {api} for {agent}'s quota account"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the quota account answer is not JSON")?;
    if !status.is_success() {
        bail!("the quota account answer is HTTP {status}: {body}");
    }
    Ok(body)
}

/// The open lock paying for `lease` in an account view.
pub(super) fn lock_of<'a>(account: &'a Value, lease: &str) -> Option<&'a Value> {
    account["locks"]
        .as_array()?
        .iter()
        .find(|l| l["lease"] == lease)
}

/// Polls the account at `api` until no open lock pays for `lease` (its provider settled it
/// with the final receipt); the account then.
pub(super) async fn wait_settled(api: &str, agent: &str, lease: &str) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let view = account(api, agent).await?;
        if lock_of(&view, lease).is_none() {
            return Ok(view);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(anyhow!(
                "the lock for {lease} is still open after {SETTLE_TIMEOUT:?}: {view}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long the gateway took to gather the newest lock certificate, microseconds, from its
/// log's `certified` line (`None` if it logged none).
pub(super) fn lock_latency_us(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter(|l| l.contains("certified") && l.contains("kind=\"lock\""))
        .find_map(|l| {
            let (_, rest) = l.split_once("elapsed_us=")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

/// Micro-credits as credits, for people: `100`, `99.952`.
pub(super) fn credits(micro: u64) -> String {
    let whole = micro / 1_000_000;
    let frac = micro % 1_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:06}")
            .trim_end_matches('0')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_print_without_trailing_zeros() {
        assert_eq!(credits(100_000_000), "100");
        assert_eq!(credits(99_952_000), "99.952");
        assert_eq!(credits(1), "0.000001");
        assert_eq!(credits(0), "0");
    }

    #[test]
    fn the_genesis_names_four_validators_and_the_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let keys = node_keys(dir.path(), &["a", "b", "c", "d"]).unwrap();
        let ids: Vec<AgoraId> = keys.iter().map(|k| k.id).collect();
        let issuer = node_keys(dir.path(), &["issuer"]).unwrap()[0].id;
        let (path, committee) = write_genesis(dir.path(), &ids, issuer).unwrap();
        let read = Genesis::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(read, committee);
        assert_eq!(committee.validators().len(), 4);
        assert_eq!(committee.quorum(), 3);
        assert_eq!(committee.genesis().issuers, vec![issuer]);
        // Loading the same keys again names the same nodes.
        let again = node_keys(dir.path(), &["a", "b", "c", "d"]).unwrap();
        assert!(again.iter().zip(&keys).all(|(x, y)| x.id == y.id));
    }

    #[test]
    fn the_lock_latency_is_read_from_the_newest_lock_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gateway.log");
        std::fs::write(
            &log,
            "INFO agora_node::committee: certified slot=a kind=\"credit\" elapsed_us=900\n\
             INFO agora_node::committee: certified slot=b kind=\"lock\" elapsed_us=1234\n\
             INFO agora_node::committee: certified slot=c kind=\"lock\" elapsed_us=2345\n",
        )
        .unwrap();
        assert_eq!(lock_latency_us(&log), Some(2345));
        assert_eq!(lock_latency_us(&dir.path().join("none.log")), None);
    }
}
