//! What a node remembers of leases, and where: the `leases` and `locks` columns.
//!
//! | Column | Key | Value (JSON) |
//! |---|---|---|
//! | `leases` | `provider/` + lease id (32 bytes) | [`ProviderLease`]: a lease this provider runs or ran |
//! | `leases` | `gateway/` + lease id | [`GatewayLease`]: a lease this node relayed (and whether its provider still answers) |
//! | `leases` | `gateway-agent/` + agent id + lease id | empty: lists an agent's relayed leases |
//! | `locks` | `quota/` + agent id | the agent's [`quota::Account`] on this provider |
//!
//! Signed messages are kept as base64url of their wire bytes and verified again on load.

use agora_protocol::admission::ActiveLease;
use agora_protocol::lease::{LeaseGrant, LeaseId, UsageReceipt};
use agora_protocol::lease_rpc::LeaseState;
use agora_protocol::offer::Isolation;
use agora_protocol::quota;
use agora_protocol::{AgoraId, Timestamp};
use serde::{Deserialize, Serialize};

use super::gateway::contact::Contact;
use crate::runtime::WorkloadId;
use crate::store::{Column, Store, StoreError, WriteBatch};

const PROVIDER: &[u8] = b"provider/";
const GATEWAY: &[u8] = b"gateway/";
const GATEWAY_AGENT: &[u8] = b"gateway-agent/";
const QUOTA: &[u8] = b"quota/";
const REFUSED: &[u8] = b"refused/";

/// Most records one scan reads (bounded; far above a provider's `max_leases`).
pub const MAX_SCAN: usize = 100_000;

/// Where a provider's lease is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Admitted, workload launching: no grant yet. Aborted if found after a restart.
    Starting,
    /// Granted and running.
    Running,
    /// Ended.
    Ended {
        /// Why.
        reason: agora_protocol::workload::TerminationReason,
        /// When.
        at: Timestamp,
    },
}

/// What a lease has used, sampled from the runtime's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time, nanoseconds (cumulative, as the runtime reports it).
    pub cpu_nanos: u64,
    /// Memory integral, MiB × milliseconds.
    pub memory_mib_millis: u64,
    /// Bytes sent on the workload's network interfaces (cumulative, as the runtime reports
    /// it).
    pub egress_bytes: u64,
    /// Tunnel bytes from the agent into the workload (cumulative).
    #[serde(default)]
    pub tunnel_in_bytes: u64,
    /// Tunnel bytes from the workload to the agent (cumulative).
    #[serde(default)]
    pub tunnel_out_bytes: u64,
    /// Whether the runtime's interface counters already see tunnel streams (they cross the
    /// workload's interface, as with Docker), so egress must not count them twice.
    #[serde(default)]
    pub tunnels_on_interfaces: bool,
    /// When the last sample was taken.
    pub sampled_at: Timestamp,
}

impl Usage {
    /// Everything the workload sent: its interfaces' bytes, plus its tunnel bytes where they
    /// do not cross those interfaces (a sandbox's tunnels reach it over its own loopback).
    pub fn egress_bytes_total(&self) -> u64 {
        if self.tunnels_on_interfaces {
            self.egress_bytes.max(self.tunnel_out_bytes)
        } else {
            self.egress_bytes.saturating_add(self.tunnel_out_bytes)
        }
    }
}

/// A lease on this provider (the provider's own record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderLease {
    /// What admission granted (kept after the lease ends, for receipts and status).
    pub active: ActiveLease,
    /// The workload running it.
    pub workload: WorkloadId,
    /// Where it is.
    pub phase: Phase,
    /// The latest grant (re-signed on extension).
    #[serde(with = "b64_opt", default)]
    pub grant: Option<agora_protocol::Signed<LeaseGrant>>,
    /// The latest usage receipt.
    #[serde(with = "b64_opt", default)]
    pub receipt: Option<agora_protocol::Signed<UsageReceipt>>,
    /// The agent's acknowledgement of the final receipt, once it sent one.
    #[serde(with = "b64_opt", default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<agora_protocol::Signed<agora_protocol::lease::ReceiptAck>>,
    /// Usage so far.
    pub usage: Usage,
    /// The ids of the owner's service grants revoked on this lease: refused from then on
    /// (kept as long as the lease record; a grant never outlives its lease).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_grants: Vec<agora_protocol::service::GrantId>,
}

impl ProviderLease {
    /// The lease's state as the wire shows it.
    pub fn state(&self) -> LeaseState {
        match &self.phase {
            Phase::Ended { reason, at } => LeaseState::Ended {
                reason: reason.clone(),
                at: *at,
            },
            Phase::Starting | Phase::Running => LeaseState::Running,
        }
    }
}

/// A lease this node relayed as a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayLease {
    /// The lease id.
    pub lease: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The provider that granted it.
    pub provider: AgoraId,
    /// Runtime class.
    pub isolation: Isolation,
    /// Image name (or `tarball`).
    pub image: String,
    /// The command (for listings).
    pub command: Vec<String>,
    /// When it was relayed.
    pub created_at: Timestamp,
    /// The latest grant seen.
    #[serde(with = "b64")]
    pub grant: agora_protocol::Signed<LeaseGrant>,
    /// The latest state seen.
    pub state: LeaseState,
    /// The latest receipt seen.
    #[serde(with = "b64_opt", default)]
    pub receipt: Option<agora_protocol::Signed<UsageReceipt>>,
    /// When the provider was last heard from about it.
    pub updated_at: Timestamp,
    /// Whether the provider still answers about it, as this node observes it (unsigned;
    /// see [`crate::lease::gateway::contact`]).
    #[serde(default)]
    pub contact: Contact,
}

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Why a stored record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record does not parse (or its signatures no longer verify).
    #[error("lease record {key} is corrupt: {reason}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn parse<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(value).map_err(|e| RecordError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data (no maps with non-string keys): serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Adds a provider lease record to `batch`.
pub fn put_provider(batch: &mut WriteBatch, lease: &ProviderLease) {
    batch.put(
        Column::Leases,
        key(PROVIDER, &[&lease.active.lease.0]),
        json(lease),
    );
}

/// Adds the removal of a provider lease record to `batch`.
pub fn delete_provider(batch: &mut WriteBatch, lease: &LeaseId) {
    batch.delete(Column::Leases, key(PROVIDER, &[&lease.0]));
}

/// Adds an agent's quota account to `batch` (or its removal when it holds nothing).
pub fn put_account(batch: &mut WriteBatch, agent: &AgoraId, account: Option<&quota::Account>) {
    let k = key(QUOTA, &[agent.as_bytes()]);
    match account {
        Some(a) => batch.put(Column::Locks, k, json(a)),
        None => batch.delete(Column::Locks, k),
    };
}

/// The 32 bytes after `prefix` in `key`, made into a `T` by `make` (`what` names it in
/// the error).
fn id_after<T>(
    key: &[u8],
    prefix: &[u8],
    what: &str,
    make: impl FnOnce([u8; 32]) -> Option<T>,
) -> Result<T, RecordError> {
    key.get(prefix.len()..)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(make)
        .ok_or_else(|| RecordError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("not {what}"),
        })
}

/// Adds a request this provider refused under a quota committee, remembered until `until`
/// (see [`crate::lease::provider`]: it is never granted afterwards).
pub fn put_refused(batch: &mut WriteBatch, lease: &LeaseId, until: Timestamp) {
    batch.put(Column::Leases, key(REFUSED, &[&lease.0]), json(&until));
}

/// Adds the removal of a remembered refusal to `batch`.
pub fn delete_refused(batch: &mut WriteBatch, lease: &LeaseId) {
    batch.delete(Column::Leases, key(REFUSED, &[&lease.0]));
}

/// Every remembered refusal: the request and until when it is remembered.
///
/// # Errors
/// [`RecordError`] when the store fails or a record is corrupt.
pub fn load_refused(store: &dyn Store) -> Result<Vec<(LeaseId, Timestamp)>, RecordError> {
    let mut out = Vec::new();
    for (k, v) in store.scan_prefix(Column::Leases, REFUSED, MAX_SCAN)? {
        let lease = id_after(&k, REFUSED, "a lease id", |b| {
            Some(agora_protocol::Digest(b))
        })?;
        out.push((lease, parse(&k, &v)?));
    }
    Ok(out)
}

/// Every provider lease record.
///
/// # Errors
/// [`RecordError`] when the store fails or a record is corrupt.
pub fn load_provider(store: &dyn Store) -> Result<Vec<ProviderLease>, RecordError> {
    store
        .scan_prefix(Column::Leases, PROVIDER, MAX_SCAN)?
        .iter()
        .map(|(k, v)| parse(k, v))
        .collect()
}

/// Every quota account.
///
/// # Errors
/// [`RecordError`] when the store fails or a record is corrupt.
pub fn load_accounts(store: &dyn Store) -> Result<Vec<(AgoraId, quota::Account)>, RecordError> {
    let mut out = Vec::new();
    for (k, v) in store.scan_prefix(Column::Locks, QUOTA, MAX_SCAN)? {
        let agent = id_after(&k, QUOTA, "an agent id", |b| AgoraId::from_bytes(b).ok())?;
        out.push((agent, parse(&k, &v)?));
    }
    Ok(out)
}

/// Stores a relayed lease (and its entry in the agent's list).
///
/// # Errors
/// [`StoreError`].
pub fn put_gateway(store: &dyn Store, lease: &GatewayLease) -> Result<(), StoreError> {
    let mut batch = WriteBatch::new();
    batch
        .put(Column::Leases, key(GATEWAY, &[&lease.lease.0]), json(lease))
        .put(
            Column::Leases,
            key(GATEWAY_AGENT, &[lease.agent.as_bytes(), &lease.lease.0]),
            Vec::new(),
        );
    store.write(batch)
}

/// A relayed lease.
///
/// # Errors
/// [`RecordError`].
pub fn gateway_lease(store: &dyn Store, id: &LeaseId) -> Result<Option<GatewayLease>, RecordError> {
    let k = key(GATEWAY, &[&id.0]);
    store
        .get(Column::Leases, &k)?
        .map(|v| parse(&k, &v))
        .transpose()
}

/// Forgets the relayed leases that were over more than `retention` before `now`: ended
/// then, or (the provider never said) past the grant's expiry then. Answers how many went.
/// A record that does not parse is left for an operator to see.
///
/// # Errors
/// [`RecordError`] when the store fails.
pub fn prune_gateway(
    store: &dyn Store,
    now: Timestamp,
    retention: core::time::Duration,
) -> Result<usize, RecordError> {
    let mut batch = WriteBatch::new();
    let mut pruned = 0;
    for (k, v) in store.scan_prefix(Column::Leases, GATEWAY, MAX_SCAN)? {
        let Ok(lease) = parse::<GatewayLease>(&k, &v) else {
            continue;
        };
        let over_since = match &lease.state {
            LeaseState::Ended { at, .. } => *at,
            LeaseState::Running => lease.grant.body().expires_at,
        };
        if over_since <= now && now.saturating_duration_since(over_since) >= retention {
            batch.delete(Column::Leases, k.clone()).delete(
                Column::Leases,
                key(GATEWAY_AGENT, &[lease.agent.as_bytes(), &lease.lease.0]),
            );
            pruned += 1;
        }
    }
    if pruned > 0 {
        store.write(batch)?;
    }
    Ok(pruned)
}

/// The leases relayed for `agent`, at most `limit`, in lease-id order.
///
/// # Errors
/// [`RecordError`].
pub fn gateway_leases_of(
    store: &dyn Store,
    agent: &AgoraId,
    limit: usize,
) -> Result<Vec<GatewayLease>, RecordError> {
    let prefix = key(GATEWAY_AGENT, &[agent.as_bytes()]);
    let mut out = Vec::new();
    for (k, _) in store.scan_prefix(Column::Leases, &prefix, limit)? {
        let Some(id) = k
            .get(prefix.len()..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            continue;
        };
        if let Some(l) = gateway_lease(store, &agora_protocol::Digest(id))? {
            out.push(l);
        }
    }
    Ok(out)
}

/// Serde of a signed message as base64url of its wire bytes (verified on load).
pub mod b64 {
    use agora_protocol::{Ed25519, Signed, SignedKind};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Serialises `msg`.
    ///
    /// # Errors
    /// What the serializer says.
    pub fn serialize<S: Serializer, T>(msg: &Signed<T>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(msg.as_bytes()))
    }

    /// Deserialises and verifies a message.
    ///
    /// # Errors
    /// Not base64url, or not a well-signed message of kind `T`.
    pub fn deserialize<'de, D: Deserializer<'de>, T: SignedKind>(
        d: D,
    ) -> Result<Signed<T>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Signed::decode(&bytes, &Ed25519).map_err(serde::de::Error::custom)
    }
}

/// [`b64`] for an optional message.
pub mod b64_opt {
    use agora_protocol::{Signed, SignedKind};
    use serde::{Deserialize as _, Deserializer, Serializer};

    /// Serialises `msg` (or null).
    ///
    /// # Errors
    /// What the serializer says.
    pub fn serialize<S: Serializer, T>(msg: &Option<Signed<T>>, s: S) -> Result<S::Ok, S::Error> {
        match msg {
            Some(m) => super::b64::serialize(m, s),
            None => s.serialize_none(),
        }
    }

    /// Deserialises and verifies an optional message.
    ///
    /// # Errors
    /// As [`super::b64::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>, T: SignedKind>(
        d: D,
    ) -> Result<Option<Signed<T>>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(bound = "T: SignedKind")]
        struct Wrap<T: SignedKind>(#[serde(with = "super::b64")] Signed<T>);
        Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use core::time::Duration;

    use agora_protocol::workload::TerminationReason;

    use super::*;
    use crate::lease::gateway::contact::fixtures::{at, lease};
    use crate::store::MemStore;

    #[test]
    fn relayed_leases_are_forgotten_after_retention() {
        let store = MemStore::new();
        let hour = Duration::from_secs(3600);
        // Running until its expiry at 100 s; the provider never says it ended.
        let running = lease(100);
        put_gateway(&store, &running).unwrap();
        assert_eq!(prune_gateway(&store, at(100 + 3599), hour).unwrap(), 0);
        assert_eq!(prune_gateway(&store, at(100 + 3600), hour).unwrap(), 1);
        assert!(gateway_lease(&store, &running.lease).unwrap().is_none());
        assert!(
            gateway_leases_of(&store, &running.agent, 10)
                .unwrap()
                .is_empty()
        );
        // Ended at 50 s, well before its expiry: retention counts from the end.
        let mut ended = lease(10_000);
        ended.state = LeaseState::Ended {
            reason: TerminationReason::StoppedByAgent,
            at: at(50),
        };
        put_gateway(&store, &ended).unwrap();
        assert_eq!(prune_gateway(&store, at(50 + 3599), hour).unwrap(), 0);
        assert_eq!(
            gateway_leases_of(&store, &ended.agent, 10).unwrap().len(),
            1
        );
        assert_eq!(prune_gateway(&store, at(50 + 3600), hour).unwrap(), 1);
        assert!(
            gateway_leases_of(&store, &ended.agent, 10)
                .unwrap()
                .is_empty()
        );
    }
}
