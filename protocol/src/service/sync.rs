//! Catch-up for published services: a node that joins (or was cut off) asks a peer for its
//! directory page by page, as it does for offers ([`crate::sync`], the same pages and
//! rules), so it lists services published before it was there instead of waiting for their
//! owners to republish.
//!
//! Pages hold records in [`ServiceKey`] order (owner, lease, port), each still signed by
//! its owner with the provider-signed capability inside (verified on arrival, exactly as
//! gossip), and on the first page the newest signed withdrawals the peer remembers.
//!
//! ```
//! use agora_protocol::service::Directory;
//! use agora_protocol::service::sync::ServiceSyncRequest;
//! use agora_protocol::Timestamp;
//!
//! let now = Timestamp::from_unix_secs(1_000);
//! let (ours, theirs) = (Directory::default(), Directory::default());
//! // Equal directories: one empty answer.
//! let req = ServiceSyncRequest::first(ours.digest(now));
//! let page = theirs.page(&req, now);
//! assert!(page.entries.is_empty() && page.next.is_none());
//! ```

use super::{ServiceKey, ServiceRecord, ServiceWithdrawal};
use crate::signed::{Digest, Signed};
use crate::sync::{Kind, PageRequest, PageResponse};

/// What services sync pages carry: records by (owner, lease, port), and their withdrawals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSync;

impl Kind for ServiceSync {
    type Cursor = ServiceKey;
    type Entry = ServiceRecord;
    type Withdrawal = ServiceWithdrawal;
}

/// Asks a peer for the records it holds, in key order, after a cursor.
pub type ServiceSyncRequest = PageRequest<ServiceSync>;

/// One page of a peer's directory, each record as its owner signed it.
pub type ServiceSyncResponse = PageResponse<ServiceSync>;

/// Largest encoded [`ServiceSyncResponse`].
pub const MAX_SERVICE_SYNC_RESPONSE_BYTES: usize = <ServiceSync as Kind>::MAX_RESPONSE_BYTES;

/// A digest of a directory's records: every (owner, lease, port, seq) in key order. Two
/// directories holding the same records have the same digest.
pub fn directory_digest<'a>(
    records: impl IntoIterator<Item = &'a Signed<ServiceRecord>>,
) -> Digest {
    crate::sync::digest(records, |r, bytes| {
        bytes.extend_from_slice(r.owner.as_bytes());
        bytes.extend_from_slice(&r.lease.0);
        bytes.extend_from_slice(&r.port.to_be_bytes());
        bytes.extend_from_slice(&r.seq.to_be_bytes());
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::market::Verdict;
    use crate::offer::tests::key;
    use crate::service::tests::{at, signed_record, withdrawal};
    use crate::service::{Directory, ServiceFilter, ServiceGossip};
    use crate::signed::{Ed25519, Signer as _};
    use crate::sync::{MAX_SYNC_PAGE, MAX_SYNC_REQUEST_BYTES};
    use proptest::prelude::*;

    /// `asker` catches up from `peer` at `now` the way a node does: first page with its
    /// digest, then page after page through the wire form, verifying every entry; returns
    /// the pages asked for.
    fn catch_up(asker: &mut Directory, peer: &Directory, now: crate::time::Timestamp) -> usize {
        let mut req = ServiceSyncRequest::first(asker.digest(now));
        let mut pages = 0;
        loop {
            pages += 1;
            let wire = peer.page(&req, now).to_response().encode().unwrap();
            let page = ServiceSyncResponse::decode(&wire).unwrap();
            let (records, bad) = page.verified_entries(&Ed25519);
            let (withdrawals, bad_w) = page.verified_withdrawals(&Ed25519);
            assert_eq!(bad + bad_w, 0);
            for r in records {
                let _ = asker.on_synced(r, now);
            }
            for w in withdrawals {
                let _ = asker.on_synced_withdrawal(w, now);
            }
            match page.next_request() {
                Some(next) => req = next,
                None => return pages,
            }
        }
    }

    fn listed(d: &Directory, now: crate::time::Timestamp) -> Vec<(ServiceKey, u64)> {
        d.book()
            .query(&ServiceFilter::default(), usize::MAX, now)
            .iter()
            .map(|r| (r.body().key(), r.body().seq))
            .collect()
    }

    #[test]
    fn a_request_after_the_largest_key_fits_and_pages_round_trip() {
        let key = ServiceKey {
            owner: key(1).id(),
            lease: Digest([0xff; 32]),
            port: u16::MAX,
        };
        let req = ServiceSyncRequest {
            after: Some(key),
            limit: u16::MAX,
            digest: Some(Digest([0xff; 32])),
            held: Vec::new(),
            held_all: true,
        };
        let bytes = req.encode().unwrap();
        assert!(bytes.len() <= MAX_SYNC_REQUEST_BYTES);
        assert_eq!(ServiceSyncRequest::decode(&bytes).unwrap(), req);

        let good = signed_record(1, 1, 8080, 5, 1_000);
        let mut bad = good.as_bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let page = ServiceSyncResponse {
            entries: vec![good.as_bytes().to_vec(), bad],
            withdrawals: Vec::new(),
            next: Some(key),
        };
        let back = ServiceSyncResponse::decode(&page.encode().unwrap()).unwrap();
        assert_eq!(back.verified_entries(&Ed25519), (vec![good.clone()], 1));
        assert_eq!(back.next_request().unwrap().after, Some(key));

        let full = ServiceSyncResponse {
            entries: vec![vec![0u8; Signed::<ServiceRecord>::MAX_WIRE_BYTES]; 64],
            withdrawals: vec![vec![0u8; Signed::<ServiceWithdrawal>::MAX_WIRE_BYTES]; 64],
            next: Some(key),
        };
        let bytes = full.encode().unwrap();
        assert!(bytes.len() <= MAX_SERVICE_SYNC_RESPONSE_BYTES);
        let over = ServiceSyncResponse {
            entries: vec![Vec::new(); usize::from(MAX_SYNC_PAGE) + 1],
            ..full
        };
        assert!(over.encode().is_err());
        assert!(
            ServiceSyncResponse::decode(&vec![0xff; MAX_SERVICE_SYNC_RESPONSE_BYTES + 1]).is_err()
        );
    }

    #[test]
    fn a_late_directory_catches_up_page_by_page_withdrawals_included() {
        let now = at(150);
        let mut peer = Directory::default();
        // 5 owners × 30 records: more than two pages.
        for owner in 1..=5u8 {
            for port in 0..30u16 {
                let r = signed_record(owner, 1, 8000 + port, 1, 100);
                assert_eq!(peer.on_synced(r, now).verdict, Verdict::Accept);
            }
        }
        let w = withdrawal(3, 1, 8007, 2, 120);
        assert_eq!(peer.on_synced_withdrawal(w, now).verdict, Verdict::Accept);
        // Someone cut off while it was withdrawn still holds the record.
        let mut late = Directory::default();
        let stale = signed_record(3, 1, 8007, 1, 100);
        let _ = late.on_decoded(Ok(ServiceGossip::Record(stale.clone())), now);

        let first = peer.page(&ServiceSyncRequest::first(late.digest(now)), now);
        assert_eq!(first.entries.len(), usize::from(MAX_SYNC_PAGE));
        assert_eq!(first.withdrawals.len(), 1);
        assert_eq!(catch_up(&mut late, &peer, now), 3);
        assert_eq!(late.book().len(), 149);
        assert_eq!(listed(&late, now), listed(&peer, now));
        assert_eq!(late.digest(now), peer.digest(now));
        // The withdrawal's tombstone came along: the old record cannot come back.
        assert_ne!(late.on_synced(stale, now).verdict, Verdict::Accept);
        // Equal directories: one empty page, nothing more to ask.
        let again = peer.page(&ServiceSyncRequest::first(late.digest(now)), now);
        assert!(again.entries.is_empty() && again.withdrawals.is_empty() && again.next.is_none());
        // Expired records are not offered.
        let later = peer.page(&ServiceSyncRequest::first(Digest([0; 32])), at(100 + 600));
        assert!(later.entries.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever each side holds, after the asker catches up it lists everything the
        /// peer lists (per key the newest; a withdrawal the peer saw wins over an older
        /// record the asker had), and the pages stay bounded.
        #[test]
        fn catching_up_covers_the_peers_directory(
            peer_has in proptest::collection::vec((1u8..5, 0u16..40, 1u64..4), 0..120),
            asker_has in proptest::collection::vec((1u8..5, 0u16..40, 1u64..4), 0..20),
            withdrawn in proptest::collection::vec((1u8..5, 0u16..40), 0..10),
        ) {
            let now = at(150);
            let mut peer = Directory::default();
            for (o, p, s) in peer_has {
                let _ = peer.on_synced(signed_record(o, 1, 9000 + p, s, 100), now);
            }
            for (o, p) in withdrawn {
                let _ = peer.on_synced_withdrawal(withdrawal(o, 1, 9000 + p, 3, 120), now);
            }
            let mut asker = Directory::default();
            for (o, p, s) in asker_has {
                let _ = asker.on_synced(signed_record(o, 1, 9000 + p, s, 100), now);
            }
            let pages = catch_up(&mut asker, &peer, now);
            prop_assert!(pages <= peer.book().len() / usize::from(MAX_SYNC_PAGE) + 1);
            let theirs = listed(&peer, now);
            let ours = listed(&asker, now);
            for (key, seq) in &theirs {
                prop_assert!(
                    ours.iter().any(|(k, s)| k == key && s >= seq),
                    "{key:?} seq {seq} missing"
                );
            }
            // Nothing the peer withdrew (and holds no newer record of) is listed.
            for (key, _) in &ours {
                let tomb = peer.book().get(key, now).is_none()
                    && peer.page(&ServiceSyncRequest::first(Digest([0; 32])), now)
                        .withdrawals
                        .iter()
                        .any(|w| w.body().key() == *key);
                prop_assert!(!tomb, "{key:?} withdrawn at the peer but listed");
            }
        }
    }
}
