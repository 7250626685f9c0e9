//! Agent accounts as a node keeps them: who signed up here, with what standing.
//!
//! An account is a JSON value in [`Column::Accounts`] under the agent's 32 id bytes. It is a
//! convenience for this node (and its HTTP API); the signup record inside it is what
//! matters to everyone else, and any provider re-judges it.

use agora_protocol::signup::TierLimits;
use agora_protocol::{AgoraId, Digest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::store::{Column, Store, StoreError};

/// One agent's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The agent's id.
    pub agent: AgoraId,
    /// Its display name, if it gave one.
    pub name: Option<String>,
    /// The limits that apply to it.
    pub tier: TierLimits,
    /// Who approves its spending above the limit.
    pub owner: Option<AgoraId>,
    /// Whether a trusted attestation backs it.
    pub attested: bool,
    /// The trust root of its attestation.
    pub root: Option<AgoraId>,
    /// The root's display name here.
    pub root_name: Option<String>,
    /// The tier its attestation claims, when this node does not know that tier.
    pub claimed_tier: Option<String>,
    /// Digest of its leaf attestation.
    pub credential_digest: Option<Digest>,
    /// When its attestation expires (RFC 3339).
    #[serde(with = "rfc3339_opt")]
    pub credential_expires_at: Option<Timestamp>,
    /// The node it signed up at.
    pub signup_node: AgoraId,
    /// When it signed up (the challenge's time, RFC 3339).
    #[serde(with = "rfc3339")]
    pub signed_up_at: Timestamp,
    /// The signed signup record (base64url of its wire bytes): attach it to lease requests.
    pub signup_record: String,
}

/// Reads the account of `agent`.
///
/// # Errors
/// [`StoreError`] from the store; a stored value that no longer parses reads as none (and
/// is replaced by the next signup).
pub fn load(store: &dyn Store, agent: &AgoraId) -> Result<Option<Account>, StoreError> {
    Ok(store
        .get(Column::Accounts, agent.as_bytes())?
        .and_then(|v| match serde_json::from_slice::<Account>(&v) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(agent = %agent, error = %e, "unreadable account record ignored");
                None
            }
        }))
}

/// Stores `account`, replacing any previous one for the same agent.
///
/// # Errors
/// [`StoreError`] from the store.
pub fn save(store: &dyn Store, account: &Account) -> Result<(), StoreError> {
    // Serialising these plain types cannot fail; an empty value would simply read as none.
    let value = serde_json::to_vec(account).unwrap_or_default();
    store.put(Column::Accounts, account.agent.as_bytes(), &value)
}

mod rfc3339 {
    use agora_protocol::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(super) fn parse(text: &str) -> Result<Timestamp, String> {
        let t = humantime::parse_rfc3339(text).map_err(|e| format!("{text:?}: {e}"))?;
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{text:?} is before 1970"))?
            .as_millis();
        Ok(Timestamp::from_unix_millis(
            u64::try_from(ms).unwrap_or(u64::MAX),
        ))
    }
}

mod rfc3339_opt {
    use agora_protocol::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::rfc3339::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn accounts_round_trip_through_the_store() {
        let store = MemStore::new();
        let agent = agora_attest::Identity::from_secret_bytes(&[1; 32]).agora_id();
        assert_eq!(load(&store, &agent).unwrap(), None);
        let mut a = Account {
            agent,
            name: Some("a".into()),
            tier: TierLimits::contained(),
            owner: None,
            attested: false,
            root: None,
            root_name: None,
            claimed_tier: None,
            credential_digest: None,
            credential_expires_at: Some(Timestamp::from_unix_millis(1_800_000_000_123)),
            signup_node: agent,
            signed_up_at: Timestamp::from_unix_millis(1_700_000_000_456),
            signup_record: "AQ".into(),
        };
        save(&store, &a).unwrap();
        assert_eq!(load(&store, &agent).unwrap().as_ref(), Some(&a));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["signed_up_at"], "2023-11-14T22:13:20.456Z");
        a.name = None;
        save(&store, &a).unwrap();
        assert_eq!(load(&store, &agent).unwrap().unwrap().name, None);
        // Garbage reads as none rather than failing the node.
        store.put(Column::Accounts, agent.as_bytes(), b"{").unwrap();
        assert_eq!(load(&store, &agent).unwrap(), None);
    }
}
