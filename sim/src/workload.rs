//! Providers and the offers they sign: real ed25519 keys, real `Signed<Offer>`s.
//!
//! Keys come from the run's seeded RNG ([`Provider::from_seed`]), so a seed fixes every
//! provider id and every signature. Offers are the protocol's sample offer
//! ([`Offer::example`]: a sandbox and a Docker runtime, prices, a tunnel endpoint) in the
//! provider's region, with free memory that changes between advertisements. Sequence
//! numbers follow the node's rule (at least the current Unix milliseconds), so a restarted
//! provider still moves forward. A provider that leaves withdraws everything it signed
//! ([`Provider::sign_withdrawal`]).

use core::time::Duration;

use agora_protocol::offer::MAX_OFFER_TTL;
use agora_protocol::{AgoraId, EncodeError, Offer, OfferWithdrawal, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

use crate::market::setup::OfferTerms;
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
        self.sign_offer_with(now, ttl, region, memory_mib, None)
    }

    /// As [`Provider::sign_offer`], with a market provider's own prices and advertised
    /// capacity (`terms`) in place of the sample offer's and `memory_mib`.
    ///
    /// # Errors
    /// As [`Provider::sign_offer`].
    pub fn sign_offer_with(
        &mut self,
        now: Timestamp,
        ttl: Duration,
        region: &str,
        memory_mib: u64,
        terms: Option<&OfferTerms>,
    ) -> Result<Signed<Offer>, EncodeError> {
        let seq = now.as_unix_millis().max(self.last_seq.saturating_add(1));
        let mut offer = Offer::example(self.id, seq, now);
        region.clone_into(&mut offer.region);
        offer.capacity.memory_mib = memory_mib;
        if let Some(terms) = terms {
            offer.prices = terms.prices;
            offer.capacity.vcpu_milli = terms.vcpu_milli;
            offer.capacity.memory_mib = terms.memory_mib;
        }
        offer.expires_at = now.saturating_add(ttl.min(MAX_OFFER_TTL));
        let signed = Signed::sign(offer, &self.key)?;
        // Only a signed offer uses up its number: a withdrawal names the last one.
        self.last_seq = seq;
        Ok(signed)
    }

    /// Signs a withdrawal, issued at `now`, of every offer signed so far; `None` when the
    /// provider has signed none.
    ///
    /// # Errors
    /// [`EncodeError`] if the withdrawal fails the protocol's validation.
    pub fn sign_withdrawal(
        &self,
        now: Timestamp,
    ) -> Option<Result<Signed<OfferWithdrawal>, EncodeError>> {
        (self.last_seq > 0).then(|| {
            let withdrawal = OfferWithdrawal {
                provider: self.id,
                seq: self.last_seq,
                issued_at: now,
            };
            Signed::sign(withdrawal, &self.key)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use agora_protocol::Ed25519;

    use super::*;

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
        let w = p.sign_withdrawal(now).unwrap().unwrap();
        assert_eq!((w.body().provider, w.body().seq), (p.id(), b.body().seq));
        assert!(Provider::from_seed([4; 32]).sign_withdrawal(now).is_none());
    }
}
