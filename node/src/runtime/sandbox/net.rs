//! Outbound networking for sandboxes that ask for it (`network.egress`).
//!
//! Such a sandbox gets a veth pair: `eth0` inside its network namespace, `ag<tag>` on the
//! host, on a /30 of its own carved from the node's pool (default `10.213.0.0/16`): the
//! host side is `.1` and the sandbox's default route, the sandbox is `.2`. Routed /30s
//! rather than one shared bridge keep workloads from seeing each other at layer 2; the
//! provider's policy ([`crate::runtime::netpolicy`]) is installed on the host interface
//! before the workload's command runs (bubblewrap waits on `--block-fd` until then), and
//! removed when the workload goes. Sandboxes without egress have loopback only.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::runtime::netpolicy::{self, Attachment, Policy};
use crate::runtime::{RuntimeError, WorkloadId};

/// The node's address pool and policy for sandboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNetwork {
    /// The pool the /30s come from.
    pub pool: (Ipv4Addr, u8),
    /// What workloads may reach.
    pub policy: Policy,
}

impl Default for SandboxNetwork {
    fn default() -> Self {
        Self {
            pool: (Ipv4Addr::new(10, 213, 0, 0), 16),
            policy: Policy {
                egress: false,
                blocked_ports: Vec::new(),
                allow: Vec::new(),
            },
        }
    }
}

/// A sandbox's network, as recorded in its `net.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Index of its /30 in the pool.
    pub slot: u32,
    /// Host-side interface.
    pub host_if: String,
    /// Host-side address (the sandbox's gateway).
    pub gateway: Ipv4Addr,
    /// The sandbox's address.
    pub address: Ipv4Addr,
}

impl Lease {
    /// The policy layer's view.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            host_if: self.host_if.clone(),
            address: self.address,
        }
    }
}

impl SandboxNetwork {
    /// How many /30s the pool holds.
    pub fn slots(&self) -> u32 {
        let host_bits = 32u32.saturating_sub(u32::from(self.pool.1));
        (1u32.checked_shl(host_bits).unwrap_or(u32::MAX)) / 4
    }

    /// The lowest free slot's lease for workload `id`.
    ///
    /// # Errors
    /// [`RuntimeError::Unsupported`] when the pool is exhausted.
    pub fn allocate(&self, id: &WorkloadId, used: &BTreeSet<u32>) -> Result<Lease, RuntimeError> {
        // Another node on this host may use the same pool: skip /30s the host already routes.
        let routed = routed_networks();
        let slot = (0..self.slots())
            .find(|s| {
                let net = u32::from(self.pool.0).saturating_add(s.saturating_mul(4));
                !used.contains(s) && !routed.contains(&net)
            })
            .ok_or_else(|| {
                RuntimeError::Unsupported("the sandbox address pool is exhausted".into())
            })?;
        let base = u32::from(self.pool.0).saturating_add(slot.saturating_mul(4));
        Ok(Lease {
            slot,
            host_if: format!("ag{}", netpolicy::tag(id)),
            gateway: Ipv4Addr::from(base + 1),
            address: Ipv4Addr::from(base + 2),
        })
    }
}

async fn ip_batch(netns_of: Option<u32>, script: &str) -> Result<(), RuntimeError> {
    let cmd = match netns_of {
        Some(pid) => {
            let mut c = tokio::process::Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net"))
                .args(["--", "ip", "-batch", "-"]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["-batch", "-"]);
            c
        }
    };
    crate::runtime::command::run_with_input(
        cmd,
        script,
        "ip (sandbox network)",
        std::time::Duration::from_secs(10),
    )
    .await
}

/// Wires the sandbox whose init is `init` to the host and installs the policy.
///
/// # Errors
/// [`RuntimeError::Host`]; whatever was set up is torn down again.
pub async fn attach(
    id: &WorkloadId,
    init: u32,
    lease: &Lease,
    policy: &Policy,
) -> Result<(), RuntimeError> {
    let host = format!(
        "link add {h} type veth peer name eth0 netns {init}\naddr add {g}/30 dev {h}\nlink set {h} up\n",
        h = lease.host_if,
        g = lease.gateway,
    );
    ip_batch(None, &host).await?;
    let inside = format!(
        "addr add {a}/30 dev eth0\nlink set eth0 up\nroute add default via {g}\n",
        a = lease.address,
        g = lease.gateway,
    );
    let wired = async {
        ip_batch(Some(init), &inside).await?;
        netpolicy::restore(&netpolicy::install_script(id, &lease.attachment(), policy)).await
    }
    .await;
    if wired.is_err() {
        let _ = ip_batch(None, &format!("link del {}\n", lease.host_if)).await;
    }
    wired
}

/// Removes the policy and the host interface (best effort: either may be gone already).
pub async fn detach(id: &WorkloadId, lease: &Lease) {
    if let Err(e) = netpolicy::restore(&netpolicy::remove_script(id, &lease.attachment())).await {
        tracing::debug!(workload = %id, error = %e, "policy rules already gone");
    }
    if Path::new("/sys/class/net").join(&lease.host_if).exists()
        && let Err(e) = ip_batch(None, &format!("link del {}\n", lease.host_if)).await
    {
        tracing::warn!(workload = %id, error = %e, "cannot delete host interface");
    }
}

/// Destination networks of the host's IPv4 routes (`/proc/net/route`, little-endian hex).
fn routed_networks() -> BTreeSet<u32> {
    std::fs::read_to_string("/proc/net/route")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|hex| u32::from_str_radix(hex, 16).ok())
        // The kernel prints the address's bytes in memory order as a native (x86: LE) number.
        .map(|n| u32::from_be_bytes(n.to_ne_bytes()))
        .collect()
}

/// Whether the kernel forwards IPv4 (egress needs it; the node does not change it).
pub fn forwarding_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_slash_30s() {
        let net = SandboxNetwork::default();
        assert_eq!(net.slots(), 16384);
        let a: WorkloadId = "w-a".parse().unwrap();
        let first = net.allocate(&a, &BTreeSet::new()).unwrap();
        assert_eq!(first.gateway, Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(first.address, Ipv4Addr::new(10, 213, 0, 2));
        let second = net.allocate(&a, &BTreeSet::from([0])).unwrap();
        assert_eq!(second.address, Ipv4Addr::new(10, 213, 0, 6));
        let tiny = SandboxNetwork {
            pool: (Ipv4Addr::new(10, 0, 0, 0), 30),
            ..SandboxNetwork::default()
        };
        assert!(tiny.allocate(&a, &BTreeSet::from([0])).is_err());
    }

    #[test]
    fn host_routes_parse() {
        // Every host has some route; a default route is 0.0.0.0.
        let routes = routed_networks();
        assert!(
            routes.is_empty()
                || routes
                    .iter()
                    .all(|n| Ipv4Addr::from(*n).octets().len() == 4)
        );
    }
}
