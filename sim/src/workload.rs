//! Providers and the offers they sign: real ed25519 keys, real `Signed<Offer>`s.
//!
//! Keys come from the run's seeded RNG ([`Provider::from_seed`]), so a seed fixes every
//! provider id and every signature. Offers look like the node's: a sandbox and a Docker
//! runtime, free capacity that changes between advertisements, prices, the provider's
//! region and a tunnel endpoint. Sequence numbers follow the node's rule (at least the
//! current Unix milliseconds), so a restarted provider still moves forward.

use core::time::Duration;
use std::collections::BTreeMap;

use agora_protocol::offer::{
    Capacity, ImageRef, MAX_OFFER_TTL, NetworkPolicy, Prices, RuntimeOffer,
};
use agora_protocol::{AgoraId, Digest, EncodeError, Isolation, Offer, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

use crate::time::SimTime;

/// The wall-clock instant simulated time zero stands for (2027-01-15T08:00:00Z): offers
/// carry real-looking timestamps, and the protocol's machines compare them as usual.
pub const START_UNIX_MILLIS: u64 = 1_800_000_000_000;

/// The protocol timestamp of simulated instant `t`.
pub fn timestamp(t: SimTime) -> Timestamp {
    Timestamp::from_unix_millis(START_UNIX_MILLIS.saturating_add(t.as_micros() / 1_000))
}

/// A provider's signing key and its id.
#[derive(Debug)]
pub struct Provider {
    key: SigningKey,
    id: AgoraId,
    last_seq: u64,
}

impl Provider {
    /// The provider whose secret key is `secret` (drawn from the run's RNG).
    pub fn from_seed(secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let id = key.id();
        Provider {
            key,
            id,
            last_seq: 0,
        }
    }

    /// The provider's id (its public key).
    pub fn id(&self) -> AgoraId {
        self.id
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a fresh offer issued at `now`, valid for `ttl` (capped at the protocol's
    /// maximum), in `region`, with `memory_mib` free. The sequence number is at least
    /// `now` in Unix milliseconds and above every earlier one.
    ///
    /// # Errors
    /// [`EncodeError`] if the offer fails the protocol's validation (a bad region token).
    pub fn sign_offer(
        &mut self,
        now: Timestamp,
        ttl: Duration,
        region: &str,
        memory_mib: u64,
    ) -> Result<Signed<Offer>, EncodeError> {
        let seq = now.as_unix_millis().max(self.last_seq.saturating_add(1));
        self.last_seq = seq;
        let mut offer = offer_body(self.id, seq, now, region, memory_mib);
        offer.expires_at = now.saturating_add(ttl.min(MAX_OFFER_TTL));
        Signed::sign(offer, &self.key)
    }
}

/// A typical offer body (five minutes' validity).
fn offer_body(provider: AgoraId, seq: u64, now: Timestamp, region: &str, memory_mib: u64) -> Offer {
    Offer {
        provider,
        seq,
        issued_at: now,
        expires_at: now.saturating_add(Duration::from_secs(300)),
        runtimes: vec![
            RuntimeOffer {
                isolation: Isolation::Sandbox,
                images: vec![ImageRef {
                    name: "busybox".into(),
                    digest: Digest::of(b"busybox"),
                }],
            },
            RuntimeOffer {
                isolation: Isolation::Docker,
                images: vec![ImageRef {
                    name: "python-3.12".into(),
                    digest: Digest::of(b"python-3.12"),
                }],
            },
        ],
        capacity: Capacity {
            vcpu_milli: 8_000,
            memory_mib,
            disk_mib: 100_000,
            gpus: vec![],
        },
        prices: Prices {
            vcpu: 100,
            memory_gib: 10,
            disk_gib: 1,
            gpu: 0,
        },
        max_lease_secs: 24 * 3600,
        network: NetworkPolicy {
            egress: true,
            blocked_ports: vec![25],
        },
        tiers: vec![],
        region: region.to_owned(),
        labels: BTreeMap::from([("arch".into(), "x86_64".into())]),
        tunnel_endpoints: vec!["192.0.2.10:7001".into()],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use agora_protocol::Ed25519;

    use super::*;

    /// An unsigned offer by `provider` (for tests that sign or tamper themselves).
    pub(crate) fn sample_offer(provider: &Provider, seq: u64, now: Timestamp) -> Offer {
        offer_body(provider.id(), seq, now, "eu-west", 16_384)
    }

    #[test]
    fn offers_verify_and_sequence_numbers_move_forward() {
        let mut p = Provider::from_seed([3; 32]);
        let now = timestamp(SimTime::from_micros(5_000_000));
        assert_eq!(now.as_unix_millis(), START_UNIX_MILLIS + 5_000);
        let a = p
            .sign_offer(now, Duration::from_secs(300), "eu-west", 1024)
            .unwrap();
        let b = p
            .sign_offer(now, Duration::from_secs(3600), "eu-west", 2048)
            .unwrap();
        assert!(b.body().seq > a.body().seq);
        assert_eq!(a.body().seq, now.as_unix_millis());
        assert_eq!(
            b.body().expires_at,
            now.saturating_add(MAX_OFFER_TTL),
            "validity is capped"
        );
        let back = Signed::<Offer>::decode(a.as_bytes(), &Ed25519).unwrap();
        assert_eq!(back.signer(), p.id());
        assert!(
            p.sign_offer(now, Duration::from_secs(1), "Bad Region", 1)
                .is_err()
        );
    }
}
