//! The provider's advertiser: signs offers from its config, re-advertises before expiry and
//! whenever what it sells changes, and signs the withdrawal on shutdown.
//!
//! Sequence numbers must grow across restarts, or peers would drop a restarted provider's
//! offers as stale. The last one used is kept in [`Column::Meta`]; the next is the larger of
//! that plus one and the current Unix time in milliseconds, so even a provider whose store
//! was wiped moves forward.

use std::collections::BTreeMap;
use std::sync::Arc;

use agora_attest::Identity;
use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::{EncodeError, Offer, OfferWithdrawal, Signed, Timestamp};

use crate::config::{NodeConfig, ProviderConfig};
use crate::store::{Column, Store, StoreError};

/// [`Column::Meta`] key of the last sequence number used.
const SEQ_KEY: &[u8] = b"provider_seq";

/// Why an offer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    /// The offer breaks a protocol bound (e.g. too many labels).
    #[error("cannot sign offer: {0}")]
    Encode(#[from] EncodeError),
    /// The sequence number could not be stored.
    #[error("cannot store offer sequence: {0}")]
    Store(#[from] StoreError),
}

/// Makes this provider's offers.
pub struct Advertiser {
    identity: Arc<Identity>,
    node: NodeConfig,
    config: ProviderConfig,
    store: Arc<dyn Store>,
    /// Runtimes this host really runs, with their images: only these are advertised.
    available: BTreeMap<Isolation, Vec<ImageRef>>,
    last_seq: u64,
    current: Option<Signed<Offer>>,
    /// The QUIC tunnel endpoints offers list.
    tunnel_endpoints: Vec<String>,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// An advertiser for `config`, resuming the sequence stored in `store`, selling the
    /// configured runtimes that are `available` on this host.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub fn new(
        identity: Arc<Identity>,
        node: NodeConfig,
        config: ProviderConfig,
        store: Arc<dyn Store>,
        available: BTreeMap<Isolation, Vec<ImageRef>>,
    ) -> Result<Self, StoreError> {
        let last_seq = store
            .get(Column::Meta, SEQ_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Self {
            identity,
            node,
            config,
            store,
            available,
            last_seq,
            current: None,
            tunnel_endpoints: Vec::new(),
        })
    }

    /// The offer to publish at `now`, if one is due: none yet, past half its life, or the
    /// configuration changed since.
    ///
    /// # Errors
    /// [`AdvertiseError`] when the offer cannot be signed or its sequence stored.
    pub fn due(&mut self, now: Timestamp) -> Result<Option<Signed<Offer>>, AdvertiseError> {
        if let Some(cur) = &self.current {
            let b = cur.body();
            let half = b.issued_at.saturating_add(
                b.expires_at
                    .saturating_duration_since(b.issued_at)
                    .checked_div(2)
                    .unwrap_or_default(),
            );
            if now < half {
                return Ok(None);
            }
        }
        let mut sold = self.config.clone();
        sold.runtimes.retain(|r| self.available.contains_key(r));
        if sold.runtimes.is_empty() {
            return Ok(None); // Nothing this host can run.
        }
        let seq = self.next_seq(now)?;
        let offer = sold.offer(
            &self.identity,
            seq,
            now,
            &self.node,
            &self.available,
            self.tunnel_endpoints.clone(),
        )?;
        self.current = Some(offer.clone());
        Ok(Some(offer))
    }

    /// Sets the tunnel endpoints (`ip:port`) the next offers list.
    pub fn set_tunnel_endpoints(&mut self, endpoints: Vec<String>) {
        if endpoints != self.tunnel_endpoints {
            self.tunnel_endpoints = endpoints;
            self.current = None;
        }
    }

    /// Applies a new provider configuration; returns whether it changed what is sold (the
    /// next [`Advertiser::due`] then re-advertises at once).
    pub fn reconfigure(&mut self, config: ProviderConfig) -> bool {
        if config == self.config {
            return false;
        }
        self.config = config;
        self.current = None;
        true
    }

    /// The withdrawal of every offer made so far, or `None` if none was made this run.
    ///
    /// # Errors
    /// [`AdvertiseError::Encode`] (does not happen for a well-formed withdrawal).
    pub fn withdrawal(
        &mut self,
        now: Timestamp,
    ) -> Result<Option<Signed<OfferWithdrawal>>, AdvertiseError> {
        let Some(cur) = self.current.take() else {
            return Ok(None);
        };
        let w = OfferWithdrawal {
            provider: cur.body().provider,
            seq: cur.body().seq,
            issued_at: now,
        };
        Ok(Some(Signed::sign(w, self.identity.signing_key())?))
    }

    /// The offer most recently made.
    pub fn current(&self) -> Option<&Signed<Offer>> {
        self.current.as_ref()
    }

    fn next_seq(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let seq = self.last_seq.saturating_add(1).max(now.as_unix_millis());
        self.store.put(Column::Meta, SEQ_KEY, &seq.to_be_bytes())?;
        self.last_seq = seq;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;
    use crate::store::MemStore;
    use std::path::Path;

    fn node() -> NodeConfig {
        NodeConfig::parse(
            Path::new("t.toml"),
            "roles = [\"provider\"]\nregion = \"test\"\n[provider]\nvcpu = 2\nmemory_mib = 1024\ndisk_mib = 0\noffer_ttl = \"60s\"\nprices = { vcpu = 1, memory_gib = 1 }\n",
        )
        .unwrap()
    }

    fn busybox() -> BTreeMap<Isolation, Vec<ImageRef>> {
        BTreeMap::from([(
            Isolation::Sandbox,
            vec![ImageRef {
                name: "busybox".into(),
                digest: agora_protocol::Digest::of(b"busybox"),
            }],
        )])
    }

    fn advertiser(store: Arc<dyn Store>) -> Advertiser {
        let n = node();
        let p = n.provider.clone().unwrap();
        Advertiser::new(
            Arc::new(Identity::from_secret_bytes(&[4; 32])),
            n,
            p,
            store,
            busybox(),
        )
        .unwrap()
    }

    #[test]
    fn only_available_runtimes_and_their_images_are_advertised() {
        let mut a = advertiser(Arc::new(MemStore::new()));
        a.config.runtimes = vec![Isolation::Sandbox, Isolation::Docker];
        let offer = a.due(at(1000)).unwrap().unwrap();
        let runtimes = &offer.body().runtimes;
        assert_eq!(runtimes.len(), 1, "docker is not available here");
        assert_eq!(runtimes[0].isolation, Isolation::Sandbox);
        assert_eq!(runtimes[0].images[0].name, "busybox");
        let n = node();
        let p = n.provider.clone().unwrap();
        let mut none = Advertiser::new(
            Arc::new(Identity::from_secret_bytes(&[4; 32])),
            n,
            p,
            Arc::new(MemStore::new()),
            BTreeMap::new(),
        )
        .unwrap();
        assert!(
            none.due(at(1000)).unwrap().is_none(),
            "nothing to sell, nothing advertised"
        );
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    #[test]
    fn re_advertises_at_half_life_and_on_change() {
        let mut a = advertiser(Arc::new(MemStore::new()));
        let first = a.due(at(1000)).unwrap().unwrap();
        assert_eq!(first.body().region, "test");
        assert!(a.due(at(1029)).unwrap().is_none());
        let second = a.due(at(1030)).unwrap().unwrap();
        assert!(second.body().seq > first.body().seq);

        let mut changed = a.config.clone();
        assert!(!a.reconfigure(changed.clone()));
        changed.memory_mib = 512;
        assert!(a.reconfigure(changed));
        let third = a.due(at(1031)).unwrap().unwrap();
        assert_eq!(third.body().capacity.memory_mib, 512);
        assert!(third.body().seq > second.body().seq);
    }

    #[test]
    fn sequence_survives_restart_even_with_a_clock_behind() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let mut a = advertiser(store.clone());
        let before = a.due(at(5000)).unwrap().unwrap().body().seq;
        let mut b = advertiser(store);
        let after = b.due(at(10)).unwrap().unwrap().body().seq;
        assert!(after > before);
    }

    #[test]
    fn withdrawal_covers_the_last_offer() {
        let mut a = advertiser(Arc::new(MemStore::new()));
        assert!(a.withdrawal(at(1)).unwrap().is_none());
        let o = a.due(at(1000)).unwrap().unwrap();
        let w = a.withdrawal(at(1001)).unwrap().unwrap();
        assert_eq!(w.body().seq, o.body().seq);
        assert_eq!(w.body().provider, o.body().provider);
        assert!(a.current().is_none());
    }
}
