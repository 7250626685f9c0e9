//! The books the network loop keeps in step with its peers over request-response, as bytes:
//! the offer book on `/agora/offer-sync/2` and the services directory on
//! `/agora/service-sync/1`. Both page the same way ([`agora_protocol::sync`]); the loop runs
//! one exchange per book on every new connection and in each anti-entropy round, and only
//! moves the bytes [`Synced`] builds and reads.
//!
//! Every page is bounded by its codec before it is read, every entry is verified as gossip
//! is, and a peer sends at most [`MAX_SYNC_PAGES`] pages per round.

use agora_protocol::service::sync::{ServiceSync, ServiceSyncRequest, ServiceSyncResponse};
use agora_protocol::sync::{Kind, PageRequest, PageResponse};
use agora_protocol::{DecodeError, Ed25519, Signed, Timestamp};

use crate::market::{Market, Verdict};
use crate::services::Services;

/// Most pages fetched from one peer per round (64 entries each).
pub const MAX_SYNC_PAGES: u32 = 200;

/// Which book an exchange is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Book {
    /// Offers and their withdrawals.
    Offers,
    /// Published services and their withdrawals.
    Services,
}

/// What applying one page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Entries and withdrawals that changed the book.
    pub accepted: usize,
    /// Entries and withdrawals that did not verify (the peer is penalised).
    pub bad: usize,
    /// The encoded request for the next page, if the peer has more.
    pub next: Option<Vec<u8>>,
}

/// A book kept in step with peers.
pub trait Synced {
    /// The first request of a round at `now` (with this book's digest).
    fn first_request(&self, now: Timestamp) -> Option<Vec<u8>>;

    /// The encoded page answering a peer's encoded `request` at `now`.
    ///
    /// # Errors
    /// [`DecodeError`] for a request that does not decode (the peer is penalised).
    fn answer(&self, request: &[u8], now: Timestamp) -> Result<Vec<u8>, DecodeError>;

    /// Verifies and applies an encoded page a peer answered at `now`.
    ///
    /// # Errors
    /// [`DecodeError`] for a page that does not decode (the peer is penalised).
    fn apply(&mut self, page: &[u8], now: Timestamp) -> Result<Applied, DecodeError>;

    /// Counts a page's outcome that is not an entry's (`malformed`, `bad_signature`).
    fn count(&self, result: &str);
}

fn first<K: Kind>(digest: agora_protocol::Digest) -> Option<Vec<u8>> {
    PageRequest::<K>::first(digest).encode().ok()
}

fn answer_with<K: Kind>(
    request: &[u8],
    page: impl FnOnce(&PageRequest<K>) -> PageResponse<K>,
) -> Result<Vec<u8>, DecodeError> {
    let req = PageRequest::<K>::decode(request)?;
    // A page built from our own book always fits its bound; an empty one if not.
    Ok(page(&req).encode().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot encode a sync page");
        PageResponse::<K> {
            entries: Vec::new(),
            withdrawals: Vec::new(),
            next: None,
        }
        .encode()
        .unwrap_or_default()
    }))
}

/// Decodes a page, verifies each entry and withdrawal, hands the good ones to `book` through
/// `entry` and `withdrawal` (which say whether the book accepted them), and counts; `next`
/// builds the request for the page after a cursor from the book as it now stands.
fn apply_with<K: Kind, B: ?Sized>(
    bytes: &[u8],
    book: &mut B,
    entry: impl Fn(&mut B, Signed<K::Entry>) -> bool,
    withdrawal: impl Fn(&mut B, Signed<K::Withdrawal>) -> bool,
    next: impl FnOnce(&B, K::Cursor) -> PageRequest<K>,
) -> Result<Applied, DecodeError> {
    let page = PageResponse::<K>::decode(bytes)?;
    let (entries, bad_entries) = page.verified_entries(&Ed25519);
    let (withdrawals, bad_withdrawals) = page.verified_withdrawals(&Ed25519);
    let mut accepted = 0;
    for e in entries {
        accepted += usize::from(entry(book, e));
    }
    for w in withdrawals {
        accepted += usize::from(withdrawal(book, w));
    }
    Ok(Applied {
        accepted,
        bad: bad_entries + bad_withdrawals,
        next: page
            .next
            .and_then(|cursor| next(book, cursor).encode().ok()),
    })
}

impl Synced for Market {
    fn first_request(&self, now: Timestamp) -> Option<Vec<u8>> {
        // Listing what we hold: the peer sends only what we lack or hold older.
        self.sync_request(None, now).encode().ok()
    }

    fn answer(&self, request: &[u8], now: Timestamp) -> Result<Vec<u8>, DecodeError> {
        answer_with(request, |req| self.page(req, now))
    }

    fn apply(&mut self, page: &[u8], now: Timestamp) -> Result<Applied, DecodeError> {
        apply_with::<agora_protocol::gossip::OfferSync, _>(
            page,
            self,
            |m, o| m.on_synced(o, now) == Verdict::Accept,
            |m, w| m.on_synced_withdrawal(w, now) == Verdict::Accept,
            |m, cursor| m.sync_request(Some(cursor), now),
        )
    }

    fn count(&self, result: &str) {
        self.count_synced(result);
    }
}

impl Synced for Services {
    fn first_request(&self, now: Timestamp) -> Option<Vec<u8>> {
        first::<ServiceSync>(self.digest(now))
    }

    fn answer(&self, request: &[u8], now: Timestamp) -> Result<Vec<u8>, DecodeError> {
        answer_with(request, |req: &ServiceSyncRequest| -> ServiceSyncResponse {
            self.page(req, now)
        })
    }

    fn apply(&mut self, page: &[u8], now: Timestamp) -> Result<Applied, DecodeError> {
        apply_with::<ServiceSync, _>(
            page,
            self,
            |s, r| s.on_synced(r, now) == Verdict::Accept,
            |s, w| s.on_synced_withdrawal(w, now) == Verdict::Accept,
            |_, cursor| PageRequest::after(cursor),
        )
    }

    fn count(&self, result: &str) {
        self.count_synced("service", result);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_attest::Identity;
    use agora_protocol::lease::Capability;
    use agora_protocol::service::{ServiceBookConfig, ServiceFilter, ServiceKind, ServiceRecord};
    use agora_protocol::{Digest, Signed};

    use super::*;
    use crate::metrics::NodeMetrics;

    fn record(
        owner: &Identity,
        provider: &Identity,
        port: u16,
        now: Timestamp,
    ) -> Signed<ServiceRecord> {
        let lease = Digest::of(b"lease");
        let capability = Signed::sign(
            Capability {
                lease,
                agent: owner.agora_id(),
                provider: provider.agora_id(),
                ports: vec![port],
                expires_at: now.saturating_add(std::time::Duration::from_secs(3600)),
            },
            provider,
        )
        .unwrap();
        Signed::sign(
            ServiceRecord {
                owner: owner.agora_id(),
                lease,
                provider: provider.agora_id(),
                port,
                name: format!("svc-{port}"),
                kind: ServiceKind::Http,
                description: String::new(),
                tunnel_endpoints: vec![],
                capability,
                seq: 1,
                issued_at: now,
                expires_at: now.saturating_add(std::time::Duration::from_secs(600)),
            },
            owner,
        )
        .unwrap()
    }

    /// Runs one round of `asker` against `peer` through the byte interface, as the loop
    /// does; returns the pages exchanged.
    fn round(asker: &mut dyn Synced, peer: &dyn Synced, now: Timestamp) -> u32 {
        let mut request = asker.first_request(now).unwrap();
        let mut pages = 0;
        loop {
            pages += 1;
            let answer = peer.answer(&request, now).unwrap();
            let applied = asker.apply(&answer, now).unwrap();
            assert_eq!(applied.bad, 0);
            match applied.next {
                Some(next) if pages < MAX_SYNC_PAGES => request = next,
                _ => return pages,
            }
        }
    }

    #[test]
    fn a_directory_catches_up_through_the_byte_interface() {
        let now = Timestamp::from_unix_secs(1_000_000);
        let metrics = NodeMetrics::default();
        let mut peer = Services::new(ServiceBookConfig::default(), NodeMetrics::default());
        let provider = Identity::generate(&mut rand::rng());
        for _ in 0..3 {
            let owner = Identity::generate(&mut rand::rng());
            for port in 1..=30 {
                let r = record(&owner, &provider, port, now);
                assert_eq!(peer.on_synced(r, now), Verdict::Accept);
            }
        }
        let mut late = Services::new(ServiceBookConfig::default(), metrics.clone());
        assert_eq!(round(&mut late, &peer, now), 2);
        assert_eq!(late.query(&ServiceFilter::default(), 1000, now).len(), 90);
        // In step now: one empty answer.
        assert_eq!(round(&mut late, &peer, now), 1);
        // Garbage is refused, not applied.
        assert!(late.apply(&[0xff, 1, 2], now).is_err());
        assert!(peer.answer(&[0xff; 3], now).is_err());
        let synced = metrics
            .sync_services
            .get_or_create(&crate::metrics::GossipLabels {
                kind: "service".into(),
                result: "accepted".into(),
            })
            .get();
        assert_eq!(synced, 90);
    }
}
