//! Whether a relayed lease's provider still answers, as this gateway observes it, and when
//! the gateway gives the lease up with the reason code [`PROVIDER_LOST`].
//!
//! ```text
//!  provider answers (a status, or a refusal) ─▶ reachable again: its signed state wins
//!                                               (a lease it still runs shows running again)
//!  a refresh gets no usable answer ───────────▶ unreachable_since = now (the first one)
//!  …and, while the provider's last word is `running`,
//!     now − unreachable_since ≥ provider_lost_after,
//!     or now ≥ the grant's expiry ──────────────▶ lost_at = now: shown ended, `provider_lost`
//! ```
//!
//! `provider_lost` is this gateway's own observation, never signed by anyone: the record
//! keeps the provider's last signed state, grant and receipt beside it, and the view says
//! which is which (`ended.source`: `provider` or `gateway`). Decisions are taken when a
//! refresh fails (`GET /v1/leases/{id}`, a relayed operation, a stream that cannot be
//! opened), not in the background. Pure: the time comes in as an argument.

use core::time::Duration;

use agora_protocol::Timestamp;
use agora_protocol::lease_rpc::{LeaseState, LeaseStatus};
use serde::{Deserialize, Serialize};

use crate::lease::record::GatewayLease;

/// The reason code of a lease this gateway gave up on because its provider stopped
/// answering (gateway-observed, unsigned; distinct from every provider-signed
/// `TerminationReason`).
pub const PROVIDER_LOST: &str = "provider_lost";

/// What a gateway has observed of a relayed lease's provider (stored with the lease).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Since when refreshes have gone unanswered (`None`: the last one was answered).
    #[serde(default)]
    pub unreachable_since: Option<Timestamp>,
    /// Why the last refresh failed (`unreachable`, `timeout` or `bad_answer`).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When this gateway recorded the lease as ended with [`PROVIDER_LOST`].
    #[serde(default)]
    pub lost_at: Option<Timestamp>,
}

/// What an observation changed (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth a log line.
    Unchanged,
    /// The provider stopped answering.
    Unreachable,
    /// The lease was recorded as ended with [`PROVIDER_LOST`].
    Lost,
    /// The provider answered again after being unreachable (or given up).
    Back,
}

impl Contact {
    /// Whether the last refresh was answered.
    pub fn is_reachable(&self) -> bool {
        self.unreachable_since.is_none()
    }

    /// The provider answered: forget any unreachability and loss.
    fn heard(&mut self) -> Change {
        let change = if self.is_reachable() && self.lost_at.is_none() {
            Change::Unchanged
        } else {
            Change::Back
        };
        *self = Self::default();
        change
    }

    /// A refresh got no usable answer at `now`; `running`: the provider's last word was that
    /// the lease runs, until `expires_at`.
    fn unanswered(
        &mut self,
        error: &str,
        now: Timestamp,
        running: bool,
        expires_at: Timestamp,
        lost_after: Duration,
    ) -> Change {
        self.last_error = Some(error.to_owned());
        let first = self.unreachable_since.is_none();
        let since = *self.unreachable_since.get_or_insert(now);
        let overdue = now.saturating_duration_since(since) >= lost_after || now >= expires_at;
        if running && self.lost_at.is_none() && overdue {
            self.lost_at = Some(now);
            Change::Lost
        } else if first {
            Change::Unreachable
        } else {
            Change::Unchanged
        }
    }
}

impl GatewayLease {
    /// The provider answered at `now` with its signed `status`: its word replaces this
    /// record's (state, grant, latest receipt) and any unreachability or loss is forgotten.
    pub fn answered(&mut self, status: &LeaseStatus, now: Timestamp) -> Change {
        self.grant = status.grant.clone();
        self.state = status.state.clone();
        if status.receipt.is_some() {
            self.receipt.clone_from(&status.receipt);
        }
        self.heard(now)
    }

    /// The provider answered at `now` without a status (a refusal): it is reachable; what it
    /// last signed about the lease stays as it was.
    pub fn heard(&mut self, now: Timestamp) -> Change {
        self.updated_at = now;
        self.contact.heard()
    }

    /// A refresh got no usable answer at `now` (`error`: its code); the lease is recorded
    /// as lost once the provider has been unreachable `lost_after` or the grant's expiry has
    /// passed, unless the provider already signed its end.
    pub fn unanswered(&mut self, error: &str, now: Timestamp, lost_after: Duration) -> Change {
        let running = matches!(self.state, LeaseState::Running);
        let expires_at = self.grant.body().expires_at;
        self.contact
            .unanswered(error, now, running, expires_at, lost_after)
    }

    /// When this gateway gave the lease up ([`PROVIDER_LOST`]); `None` while the provider's
    /// own word stands (running, or ended as it signed).
    pub fn lost_at(&self) -> Option<Timestamp> {
        match self.state {
            LeaseState::Running => self.contact.lost_at,
            LeaseState::Ended { .. } => None,
        }
    }
}

/// Signed leases for tests (here, in the HTTP views and in the tunnel tools).
#[cfg(test)]
pub(crate) mod fixtures {
    use agora_attest::Identity;
    use agora_protocol::lease::{Capability, LeaseGrant, UsageReceipt};
    use agora_protocol::lease_rpc::LeaseState;
    use agora_protocol::offer::Isolation;
    use agora_protocol::workload::TerminationReason;
    use agora_protocol::{AgoraId, Digest, Signed, Timestamp};

    use super::Contact;
    use crate::lease::record::GatewayLease;

    pub(crate) fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(1_800_000_000 + secs)
    }

    pub(crate) fn provider() -> Identity {
        Identity::from_secret_bytes(&[7; 32])
    }

    pub(crate) fn grant(expires: u64) -> Signed<LeaseGrant> {
        let agent = Identity::from_secret_bytes(&[8; 32]).agora_id();
        signed_grant(&provider(), agent, vec![], (at(0), at(expires)), vec![])
    }

    /// The grant `provider` signs for `agent`'s lease `Digest::of(b"lease")` over `during`
    /// (start, expiry), its capability opening `ports`, its tunnel at `endpoints`.
    pub(crate) fn signed_grant(
        provider: &Identity,
        agent: AgoraId,
        ports: Vec<u16>,
        (starts_at, expires_at): (Timestamp, Timestamp),
        endpoints: Vec<String>,
    ) -> Signed<LeaseGrant> {
        let lease = Digest::of(b"lease");
        let token = Signed::sign(
            Capability {
                lease,
                agent,
                provider: provider.agora_id(),
                ports,
                expires_at,
            },
            provider,
        )
        .unwrap();
        Signed::sign(
            LeaseGrant {
                owner: None,
                lease,
                agent,
                provider: provider.agora_id(),
                price_per_sec: 10,
                reserved_micro: 36_000,
                starts_at,
                expires_at,
                tunnel_endpoints: endpoints,
                token,
            },
            provider,
        )
        .unwrap()
    }

    pub(crate) fn receipt(seq: u32, ended: Option<TerminationReason>) -> Signed<UsageReceipt> {
        let g = grant(3600);
        let b = g.body();
        Signed::sign(
            UsageReceipt {
                lease: b.lease,
                agent: b.agent,
                provider: b.provider,
                seq,
                from: at(0),
                to: at(u64::from(seq) * 60),
                cpu_ms: 1,
                memory_mib_secs: 1,
                egress_bytes: 0,
                tunnel_in_bytes: 0,
                tunnel_out_bytes: 0,
                price_per_sec: 10,
                total_micro: u64::from(seq) * 600,
                ended,
            },
            &provider(),
        )
        .unwrap()
    }

    pub(crate) fn lease(expires: u64) -> GatewayLease {
        let grant = grant(expires);
        let g = grant.body();
        GatewayLease {
            lease: g.lease,
            agent: g.agent,
            provider: g.provider,
            isolation: Isolation::Sandbox,
            image: "busybox".into(),
            command: vec!["sleep".into(), "1000".into()],
            created_at: at(0),
            grant: grant.clone(),
            state: LeaseState::Running,
            receipt: Some(receipt(1, None)),
            updated_at: at(0),
            contact: Contact::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{at, grant, lease, receipt};
    use super::*;
    use agora_protocol::Signed;
    use agora_protocol::lease::UsageReceipt;
    use agora_protocol::workload::TerminationReason;

    const GRACE: Duration = Duration::from_secs(120);

    fn status(state: LeaseState, receipt: Signed<UsageReceipt>) -> LeaseStatus {
        let grant = grant(3600);
        LeaseStatus {
            lease: grant.body().lease,
            state,
            grant,
            receipt: Some(receipt),
            ack: None,
        }
    }

    #[test]
    fn a_silent_provider_is_unreachable_then_lost_after_the_grace() {
        let mut l = lease(3600);
        assert_eq!(l.unanswered("timeout", at(10), GRACE), Change::Unreachable);
        assert_eq!(l.contact.unreachable_since, Some(at(10)));
        assert_eq!(l.contact.last_error.as_deref(), Some("timeout"));
        assert_eq!(l.lost_at(), None, "still within the grace");
        assert_eq!(
            l.unanswered("unreachable", at(129), GRACE),
            Change::Unchanged
        );
        assert_eq!(
            l.contact.unreachable_since,
            Some(at(10)),
            "the first failure"
        );
        assert_eq!(l.contact.last_error.as_deref(), Some("unreachable"));
        assert_eq!(l.lost_at(), None);
        assert_eq!(l.unanswered("timeout", at(130), GRACE), Change::Lost);
        assert_eq!(l.lost_at(), Some(at(130)));
        // Lost once: later failures change nothing.
        assert_eq!(l.unanswered("timeout", at(500), GRACE), Change::Unchanged);
        assert_eq!(l.lost_at(), Some(at(130)));
        // The provider's last signed word is kept beside the gateway's verdict.
        assert_eq!(l.state, LeaseState::Running);
        assert_eq!(l.receipt.as_ref().unwrap().body().seq, 1);
        assert_eq!(l.updated_at, at(0), "last heard at the grant");
    }

    #[test]
    fn a_lease_past_its_expiry_without_word_is_lost_at_once() {
        let mut l = lease(60);
        assert_eq!(
            l.unanswered("unreachable", at(59), GRACE),
            Change::Unreachable
        );
        assert_eq!(l.lost_at(), None);
        let mut l = lease(60);
        assert_eq!(l.unanswered("unreachable", at(60), GRACE), Change::Lost);
        assert_eq!(l.lost_at(), Some(at(60)));
    }

    #[test]
    fn a_lease_the_provider_ended_is_never_lost() {
        let mut l = lease(60);
        let end = LeaseState::Ended {
            reason: TerminationReason::Exited { code: 0 },
            at: at(5),
        };
        l.answered(
            &status(
                end.clone(),
                receipt(2, Some(TerminationReason::Exited { code: 0 })),
            ),
            at(6),
        );
        assert_eq!(l.unanswered("timeout", at(10), GRACE), Change::Unreachable);
        assert_eq!(l.unanswered("timeout", at(1000), GRACE), Change::Unchanged);
        assert_eq!(l.lost_at(), None, "the provider's signed end stands");
        assert_eq!(l.state, end);
        assert!(!l.contact.is_reachable(), "but the view says it is silent");
    }

    #[test]
    fn a_provider_that_answers_again_wins() {
        let mut l = lease(3600);
        l.unanswered("timeout", at(10), GRACE);
        l.unanswered("timeout", at(200), GRACE);
        assert_eq!(l.lost_at(), Some(at(200)));
        // It still runs the lease: shown running again, with its newer receipt.
        let back = l.answered(&status(LeaseState::Running, receipt(5, None)), at(300));
        assert_eq!(back, Change::Back);
        assert_eq!(l.lost_at(), None);
        assert!(l.contact.is_reachable());
        assert_eq!(l.contact, Contact::default());
        assert_eq!(l.state, LeaseState::Running);
        assert_eq!(l.receipt.as_ref().unwrap().body().seq, 5);
        assert_eq!(l.updated_at, at(300));
        // A fresh silence starts a fresh count.
        assert_eq!(l.unanswered("timeout", at(400), GRACE), Change::Unreachable);
        assert_eq!(l.contact.unreachable_since, Some(at(400)));
        assert_eq!(l.lost_at(), None);
    }

    #[test]
    fn a_refusal_is_word_from_the_provider() {
        let mut l = lease(3600);
        l.unanswered("timeout", at(10), GRACE);
        assert_eq!(l.heard(at(20)), Change::Back);
        assert!(l.contact.is_reachable());
        assert_eq!(l.updated_at, at(20));
        assert_eq!(l.state, LeaseState::Running, "a refusal changes no state");
        assert_eq!(l.heard(at(30)), Change::Unchanged);
    }

    #[test]
    fn records_written_before_contact_existed_still_load() {
        let l = lease(3600);
        let mut json = serde_json::to_value(&l).unwrap();
        json.as_object_mut().unwrap().remove("contact");
        let back: GatewayLease = serde_json::from_value(json).unwrap();
        assert_eq!(back, l);
    }
}
