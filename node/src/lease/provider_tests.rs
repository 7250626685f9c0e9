//! The provider's lease service over a [`MemStore`] and a fake runtime: grants, refusals,
//! metering, extension, stop, expiry, launch failure and restart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use agora_protocol::Digest;
use agora_protocol::challenge::Challenge;
use agora_protocol::lease::{Candidate, LeaseRequest, NONCE_LEN};
use agora_protocol::lease_rpc::LeaseState;
use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::signup::{ProofOfWork, TierLimits};
use agora_protocol::workload::WorkloadSpec;
use futures::stream::BoxStream;

use super::*;
use crate::runtime::supervisor::SupervisorConfig;
use crate::runtime::{
    ByteStream, ExecRequest, ExecSession, OutputChunk, Runtime, RuntimeError, Stats, WorkloadInfo,
    WorkloadState,
};
use crate::store::MemStore;

/// A runtime that only keeps states: workloads "run" until stopped or told to exit.
#[derive(Default)]
struct Fake {
    workloads: Mutex<BTreeMap<WorkloadId, WorkloadState>>,
    fail_create: AtomicBool,
}

impl Fake {
    fn table(&self) -> MutexGuard<'_, BTreeMap<WorkloadId, WorkloadState>> {
        self.workloads.lock().unwrap()
    }

    fn exit(&self, id: &WorkloadId, code: i32) {
        self.table().insert(
            id.clone(),
            WorkloadState::Ended(TerminationReason::Exited { code }),
        );
    }

    fn state_of(&self, id: &WorkloadId) -> Option<WorkloadState> {
        self.table().get(id).cloned()
    }
}

#[async_trait::async_trait]
impl Runtime for Fake {
    fn isolation(&self) -> Isolation {
        Isolation::Sandbox
    }
    async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
        Ok(vec![ImageRef {
            name: "busybox".into(),
            digest: Digest::of(b"busybox"),
        }])
    }
    async fn import_image(
        &self,
        _: &std::path::Path,
        _: &Digest,
        _: u64,
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported("fake".into()))
    }
    async fn create(&self, id: &WorkloadId, _: &WorkloadSpec) -> Result<(), RuntimeError> {
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(RuntimeError::host(
                "create",
                std::io::Error::other("no cgroup for you"),
            ));
        }
        self.table().insert(id.clone(), WorkloadState::Created);
        Ok(())
    }
    async fn start(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        self.table().insert(id.clone(), WorkloadState::Running);
        Ok(())
    }
    async fn exec(&self, _: &WorkloadId, _: ExecRequest) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::Unsupported("fake".into()))
    }
    async fn logs(
        &self,
        _: &WorkloadId,
        _: bool,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        Err(RuntimeError::Unsupported("fake".into()))
    }
    async fn stats(&self, id: &WorkloadId) -> Result<Stats, RuntimeError> {
        match self.state_of(id) {
            Some(WorkloadState::Running) => Ok(Stats {
                cpu_nanos: 1_500_000_000,
                memory_bytes: 64 << 20,
                net_tx_bytes: 1000,
                ..Stats::default()
            }),
            _ => Err(RuntimeError::NotFound(id.clone())),
        }
    }
    async fn state(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
        self.state_of(id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))
    }
    async fn stop(
        &self,
        id: &WorkloadId,
        reason: TerminationReason,
        _: Duration,
    ) -> Result<TerminationReason, RuntimeError> {
        let mut t = self.table();
        match t.get(id) {
            Some(WorkloadState::Ended(r)) => Ok(r.clone()),
            Some(_) => {
                t.insert(id.clone(), WorkloadState::Ended(reason.clone()));
                Ok(reason)
            }
            None => Err(RuntimeError::NotFound(id.clone())),
        }
    }
    async fn remove(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        self.table().remove(id);
        Ok(())
    }
    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        Ok(self
            .table()
            .iter()
            .map(|(id, state)| WorkloadInfo {
                id: id.clone(),
                state: state.clone(),
            })
            .collect())
    }
    async fn connect(
        &self,
        _: &WorkloadId,
        port: u16,
    ) -> Result<Box<dyn ByteStream>, RuntimeError> {
        Err(RuntimeError::Connect {
            port,
            reason: "fake".into(),
        })
    }
}

const AGENT: u8 = 1;
const PROVIDER: u8 = 2;
const STRANGER: u8 = 7;
/// An agent whose attestation names [`OWNER`].
const OWNED: u8 = 8;
const OWNER: u8 = 9;

fn key(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; 32])
}

fn id(seed: u8) -> AgoraId {
    key(seed).agora_id()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn offer() -> Signed<Offer> {
    Signed::sign(Offer::example(id(PROVIDER), 1, t(0)), &key(PROVIDER)).unwrap()
}

struct Harness {
    store: Arc<dyn Store>,
    fake: Arc<Fake>,
    supervisor: Arc<Supervisor>,
    provider: Provider,
}

/// Trusts everyone with the contained tier, except [`STRANGER`].
fn judge() -> Judge {
    Arc::new(|record: &Signed<SignupRecord>, _now| {
        let agent = record.body().agent;
        if agent == id(STRANGER) {
            return Err(refusal(RefusalCode::Untrusted, "unknown issuer"));
        }
        Ok(Standing {
            agent,
            tier: TierLimits::contained(),
            owner: (agent == id(OWNED)).then(|| id(OWNER)),
        })
    })
}

fn open(store: Arc<dyn Store>, fake: Arc<Fake>) -> Harness {
    let runtime: Arc<dyn Runtime> = fake.clone();
    let supervisor = Arc::new(
        Supervisor::new(store.clone(), vec![runtime], SupervisorConfig::default()).unwrap(),
    );
    let provider = Provider::open(
        Arc::new(key(PROVIDER)),
        store.clone(),
        supervisor.clone(),
        AdmissionConfig::default(),
        judge(),
        Settings {
            receipt_interval: Duration::from_secs(60),
            retention: Duration::from_secs(600),
        },
        t(13),
    )
    .unwrap();
    provider.offer_published(&offer());
    Harness {
        store,
        fake,
        supervisor,
        provider,
    }
}

fn harness() -> Harness {
    open(Arc::new(MemStore::new()), Arc::new(Fake::default()))
}

fn signup(agent: u8) -> Signed<SignupRecord> {
    Signed::sign(
        SignupRecord {
            agent: id(agent),
            challenge: Challenge {
                verifier: id(3),
                nonce: [5; 32],
                issued_at: t(0),
            },
            credential: None,
            pow: ProofOfWork::NONE,
            name: None,
        },
        &key(agent),
    )
    .unwrap()
}

fn proposal(agent: u8, nonce: u8, edit: impl FnOnce(&mut LeaseRequest)) -> LeaseProposal {
    let mut r = LeaseRequest {
        agent: id(agent),
        candidates: vec![Candidate {
            provider: id(PROVIDER),
            offer: offer().digest(),
        }],
        isolation: Isolation::Sandbox,
        spec: WorkloadSpec::example(Digest::of(b"busybox"), &["sleep", "1000"]),
        max_price_per_sec: 100,
        nonce: [nonce; NONCE_LEN],
        issued_at: t(10),
        signup: signup(agent),
        delegation: None,
    };
    edit(&mut r);
    LeaseProposal {
        request: Signed::sign(r, &key(agent)).unwrap(),
        approval: None,
        lock: None,
    }
}

fn op(signer: u8, lease: LeaseId, what: Op, nonce: u8, at: Timestamp) -> Signed<LeaseOp> {
    Signed::sign(
        LeaseOp {
            agent: id(signer),
            provider: id(PROVIDER),
            lease,
            op: what,
            nonce: [nonce; NONCE_LEN],
            issued_at: at,
            delegation: None,
        },
        &key(signer),
    )
    .unwrap()
}

fn granted(r: rpc::Response) -> Signed<LeaseGrant> {
    match r {
        rpc::Response::Answer(LeaseAnswer::Granted(g)) => g,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn refused(r: rpc::Response) -> RefusalCode {
    match r {
        rpc::Response::Answer(LeaseAnswer::Refused(r)) => {
            assert_eq!(r.signer(), id(PROVIDER), "refusals are the provider's");
            r.body().refusal.code
        }
        rpc::Response::Refused(r) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn status(r: rpc::Response) -> LeaseStatus {
    match r {
        rpc::Response::Status(s) => *s,
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test]
async fn a_lease_is_granted_metered_extended_and_stopped() {
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    let grant = granted(h.provider.propose(&p, t(11)).await);
    let g = grant.body();
    assert_eq!(grant.signer(), id(PROVIDER));
    assert_eq!((g.lease, g.agent), (lease, id(AGENT)));
    assert_eq!(g.token.body().expires_at, g.expires_at);
    assert_eq!(g.expires_at, t(11 + 3600));
    let workload = workload_id(&lease);
    assert_eq!(h.fake.state_of(&workload), Some(WorkloadState::Running));
    let locked = h.provider.account(&id(AGENT)).unwrap().locked_micro();
    assert_eq!(locked, g.price_per_sec * 3600);
    // The same request again is a replay.
    assert_eq!(
        refused(h.provider.propose(&p, t(12)).await),
        RefusalCode::Replay
    );

    // A minute later: usage sampled and a first receipt signed.
    h.provider.tick(t(72)).await;
    let s = status(h.provider.query(&lease));
    let r = s.receipt.expect("a periodic receipt");
    assert_eq!(r.signer(), id(PROVIDER));
    assert_eq!(r.body().seq, 0);
    assert_eq!(r.body().cpu_ms, 1500);
    assert!(r.body().memory_mib_secs > 0);
    assert_eq!(r.body().total_micro, g.price_per_sec * 61);
    assert!(r.body().ended.is_none());

    // Extend by 10 minutes: a re-signed grant, a longer workload, a bigger lock.
    let s = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Extend { secs: 600 }, 1, t(80)), t(80))
            .await,
    );
    assert_eq!(s.grant.body().expires_at, t(11 + 4200));
    assert_eq!(s.grant.body().token.body().expires_at, t(11 + 4200));
    assert_eq!(
        h.supervisor.record(&workload).unwrap().expires_at,
        t(11 + 4200)
    );
    assert_eq!(
        h.provider.account(&id(AGENT)).unwrap().locked_micro(),
        g.price_per_sec * 4200
    );
    // The same signed operation again is a replay.
    assert_eq!(
        refused(
            h.provider
                .operate(&op(AGENT, lease, Op::Extend { secs: 600 }, 1, t(80)), t(81))
                .await
        ),
        RefusalCode::Replay
    );
    // A top-up certificate (the committee's extension) at a provider without a committee,
    // or beside another operation than an extension: refused as invalid, nothing extended.
    let unlock = agora_protocol::committee::Op::Unlock(agora_protocol::committee::Unlock {
        account: id(AGENT),
        lock_seq: 0,
        lock: Digest::of(b"lock"),
    });
    let top_up = agora_protocol::committee::UncheckedCertificate {
        op: unlock,
        votes: Vec::new(),
    };
    for what in [Op::Extend { secs: 60 }, Op::Status] {
        let request = rpc::Request::Extend {
            op: op(AGENT, lease, what, 9, t(82)),
            top_up: top_up.clone(),
        };
        assert_eq!(
            refused(h.provider.handle(&request, t(82)).await),
            RefusalCode::Invalid
        );
    }
    assert_eq!(
        status(h.provider.query(&lease)).grant.body().expires_at,
        t(11 + 4200)
    );

    // Stop: the workload ends for the agent, the quota is charged what it cost.
    let s = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Stop, 2, t(100)), t(100))
            .await,
    );
    assert_eq!(
        s.state,
        LeaseState::Ended {
            reason: TerminationReason::StoppedByAgent,
            at: t(100)
        }
    );
    let last = s.receipt.expect("a final receipt");
    assert_eq!(last.body().seq, 1);
    assert_eq!(last.body().ended, Some(TerminationReason::StoppedByAgent));
    assert_eq!(last.body().total_micro, g.price_per_sec * 89);
    assert_eq!(
        h.fake.state_of(&workload),
        Some(WorkloadState::Ended(TerminationReason::StoppedByAgent))
    );
    let account = h.provider.account(&id(AGENT)).unwrap();
    assert_eq!(account.locked_micro(), 0);
    assert_eq!(account.spent_micro, g.price_per_sec * 89);
    // Stopping again answers the final state; extending is refused.
    let again = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Stop, 3, t(101)), t(101))
            .await,
    );
    assert_eq!(again.receipt, Some(last));
    assert_eq!(
        refused(
            h.provider
                .operate(&op(AGENT, lease, Op::Extend { secs: 5 }, 4, t(102)), t(102))
                .await
        ),
        RefusalCode::Ended
    );
}

#[tokio::test]
async fn refusals_are_signed_and_hold_nothing() {
    let h = harness();
    let cases = [
        (proposal(STRANGER, 1, |_| {}), RefusalCode::Untrusted),
        (
            proposal(AGENT, 2, |r| {
                r.candidates[0].offer = Digest::of(b"not an offer")
            }),
            RefusalCode::OfferMismatch,
        ),
        (
            proposal(AGENT, 3, |r| r.spec.resources.memory_mib = 64 * 1024),
            RefusalCode::TierLimit,
        ),
        (
            proposal(AGENT, 4, |r| r.issued_at = t(11 + 3600)),
            RefusalCode::Stale,
        ),
        (
            proposal(AGENT, 5, |r| r.max_price_per_sec = 1),
            RefusalCode::Price,
        ),
    ];
    for (p, code) in cases {
        assert_eq!(refused(h.provider.propose(&p, t(11)).await), code);
    }
    assert!(h.provider.account(&id(AGENT)).is_none());
    assert!(h.provider.leases().is_empty());
    assert!(h.fake.table().is_empty(), "nothing was launched");
}

#[tokio::test]
async fn a_launch_failure_aborts_and_returns_the_quota() {
    let h = harness();
    h.fake.fail_create.store(true, Ordering::SeqCst);
    let p = proposal(AGENT, 1, |_| {});
    assert_eq!(
        refused(h.provider.propose(&p, t(11)).await),
        RefusalCode::Unavailable
    );
    let account = h.provider.account(&id(AGENT)).unwrap_or_default();
    assert_eq!((account.locked_micro(), account.spent_micro), (0, 0));
    assert!(h.provider.lease(&p.request.digest()).is_none());
    // Nothing is held: the next request is granted.
    h.fake.fail_create.store(false, Ordering::SeqCst);
    let next = proposal(AGENT, 2, |_| {});
    granted(h.provider.propose(&next, t(12)).await);
}

#[tokio::test]
async fn a_workload_that_exits_ends_its_lease_with_its_reason() {
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    let g = granted(h.provider.propose(&p, t(11)).await);
    h.fake.exit(&workload_id(&lease), 3);
    h.supervisor.tick(t(20)).await;
    h.provider.tick(t(20)).await;
    let s = status(h.provider.query(&lease));
    assert!(matches!(
        s.state,
        LeaseState::Ended {
            reason: TerminationReason::Exited { code: 3 },
            ..
        }
    ));
    let r = s.receipt.unwrap();
    assert_eq!(r.body().ended, Some(TerminationReason::Exited { code: 3 }));
    assert_eq!(r.body().total_micro, g.body().price_per_sec * 9);
    assert_eq!(
        h.provider.account(&id(AGENT)).unwrap().spent_micro,
        g.body().price_per_sec * 9
    );
    // Ended leases are forgotten after the retention.
    h.provider.tick(t(20 + 600)).await;
    assert!(matches!(
        h.provider.query(&lease),
        rpc::Response::Refused(Refusal {
            code: RefusalCode::UnknownLease,
            ..
        })
    ));
}

#[tokio::test]
async fn a_lease_ends_at_its_expiry_charged_in_full() {
    let h = harness();
    let p = proposal(AGENT, 1, |r| r.spec.lifetime_secs = 30);
    let lease = p.request.digest();
    let g = granted(h.provider.propose(&p, t(11)).await);
    h.provider.tick(t(41)).await;
    let s = status(h.provider.query(&lease));
    assert!(matches!(
        s.state,
        LeaseState::Ended {
            reason: TerminationReason::LifetimeExpired,
            ..
        }
    ));
    assert_eq!(
        s.receipt.unwrap().body().total_micro,
        g.body().reserved_micro
    );
    assert_eq!(h.provider.account(&id(AGENT)).unwrap().locked_micro(), 0);
}

#[tokio::test]
async fn operations_by_anyone_but_the_agent_are_refused() {
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    granted(h.provider.propose(&p, t(11)).await);
    // Another agent signing for itself: not the lease's agent.
    let foreign = op(STRANGER, lease, Op::Stop, 1, t(12));
    assert_eq!(
        refused(h.provider.operate(&foreign, t(12)).await),
        RefusalCode::Unauthorized
    );
    // An unknown lease; a stale operation.
    let unknown = op(AGENT, Digest::of(b"nope"), Op::Status, 2, t(12));
    assert_eq!(
        refused(h.provider.operate(&unknown, t(12)).await),
        RefusalCode::UnknownLease
    );
    let stale = op(AGENT, lease, Op::Stop, 3, t(12));
    assert_eq!(
        refused(h.provider.operate(&stale, t(12 + 3600)).await),
        RefusalCode::Stale
    );
    // Streamed operations are not answered here, but authorize() checks them.
    let exec = op(
        AGENT,
        lease,
        Op::Exec {
            command: vec!["true".into()],
            stdin: false,
            tty: false,
        },
        4,
        t(13),
    );
    assert_eq!(
        refused(h.provider.operate(&exec, t(13)).await),
        RefusalCode::Unsupported
    );
    let exec = op(AGENT, lease, Op::Logs { follow: false }, 5, t(13));
    let auth = h.provider.authorize(&exec, t(13)).unwrap();
    assert_eq!(auth.workload, workload_id(&lease));
    assert_eq!(
        h.provider.authorize(&exec, t(13)).unwrap_err().code,
        RefusalCode::Replay
    );
    assert_eq!(
        status(h.provider.query(&lease)).state,
        LeaseState::Running,
        "refused operations changed nothing"
    );
}

#[tokio::test]
async fn a_restarted_provider_restores_leases_and_locks() {
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    let g = granted(h.provider.propose(&p, t(11)).await);
    // A lease caught mid-launch by the crash (never granted).
    let half = proposal(AGENT, 2, |_| {});
    h.provider.admit(&half, t(12)).unwrap();
    let half_workload = workload_id(&half.request.digest());
    h.supervisor
        .launch(
            half_workload.clone(),
            Isolation::Sandbox,
            half.request.body().spec.clone(),
            t(12),
        )
        .await
        .unwrap();
    let locked_before = h.provider.account(&id(AGENT)).unwrap().locked_micro();
    assert_eq!(locked_before, 2 * g.body().reserved_micro);

    let Harness { store, fake, .. } = h;
    let h = open(store, fake);
    assert_eq!(status(h.provider.query(&lease)).grant, g);
    assert_eq!(
        h.provider.account(&id(AGENT)).unwrap().locked_micro(),
        g.body().reserved_micro,
        "the half-started lease's quota came back"
    );
    // An operation signed before the restart may have been performed already: refused.
    assert_eq!(
        refused(
            h.provider
                .operate(&op(AGENT, lease, Op::Extend { secs: 60 }, 8, t(12)), t(13))
                .await
        ),
        RefusalCode::Stale
    );
    // The replayed request is still known; the running lease answers operations.
    assert_eq!(
        refused(h.provider.propose(&p, t(13)).await),
        RefusalCode::Replay
    );
    h.provider.tick(t(14)).await;
    assert!(matches!(
        h.fake.state_of(&half_workload),
        Some(WorkloadState::Ended(_))
    ));
    let s = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Stop, 9, t(15)), t(15))
            .await,
    );
    assert!(matches!(s.state, LeaseState::Ended { .. }));
    assert_eq!(
        h.provider.account(&id(AGENT)).unwrap().spent_micro,
        g.body().price_per_sec * 4
    );
}

#[tokio::test]
async fn tunnel_bytes_are_in_receipts_and_survive_a_restart() {
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    granted(h.provider.propose(&p, t(11)).await);
    let meter = h.provider.tunnel_meter();
    meter.stream(&lease);
    meter.add(&lease, true, 10);
    meter.add(&lease, false, 300);
    h.provider.tick(t(72)).await;
    let r = status(h.provider.query(&lease)).receipt.unwrap();
    assert_eq!(
        (r.body().tunnel_in_bytes, r.body().tunnel_out_bytes),
        (10, 300)
    );
    // The fake runtime's 1000 interface bytes, and the tunnel's: a sandbox's tunnels do not
    // cross its interfaces.
    assert_eq!(r.body().egress_bytes, 1300);

    // A sample between receipts writes moved tunnel counts to the lease's record, and a
    // restarted provider counts on from what the record kept.
    meter.add(&lease, false, 50);
    h.provider.tick(t(78)).await;
    let Harness { store, fake, .. } = h;
    let h = open(store, fake);
    h.provider.tunnel_meter().add(&lease, true, 5);
    let s = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Stop, 2, t(80)), t(80))
            .await,
    );
    let last = s.receipt.unwrap();
    assert!(last.body().ended.is_some());
    assert_eq!(
        (last.body().tunnel_in_bytes, last.body().tunnel_out_bytes),
        (15, 350)
    );
    // Counted in the final receipt: the counters are gone.
    assert_eq!(
        h.provider.tunnel_meter().traffic(&lease),
        crate::tunnel::Traffic::default()
    );
}

#[tokio::test]
async fn a_revoked_grant_is_kept_with_the_lease_and_wakes_its_streams() {
    use agora_protocol::service::GrantId;
    let h = harness();
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    granted(h.provider.propose(&p, t(11)).await);
    let gid = GrantId([3; 16]);
    let revoke = |signer, nonce, at| op(signer, lease, Op::RevokeGrant { grant: gid }, nonce, at);
    let mut watch = h.provider.revocations();
    assert!(!h.provider.grant_revoked(&lease, &gid));
    // Only the lease's agent revokes its grants.
    assert_eq!(
        refused(h.provider.operate(&revoke(STRANGER, 1, t(20)), t(20)).await),
        RefusalCode::Unauthorized
    );
    assert!(!h.provider.grant_revoked(&lease, &gid));
    let s = status(h.provider.operate(&revoke(AGENT, 2, t(20)), t(20)).await);
    assert_eq!(s.lease, lease);
    assert!(h.provider.grant_revoked(&lease, &gid));
    assert!(!h.provider.grant_revoked(&lease, &GrantId([4; 16])));
    assert!(
        watch.has_changed().unwrap(),
        "streams under the grant are woken"
    );
    watch.mark_unchanged();
    // A replay is refused; revoking again is harmless and kept once.
    assert_eq!(
        refused(h.provider.operate(&revoke(AGENT, 2, t(21)), t(21)).await),
        RefusalCode::Replay
    );
    h.provider.operate(&revoke(AGENT, 3, t(21)), t(21)).await;
    assert_eq!(h.provider.lease(&lease).unwrap().revoked_grants, vec![gid]);

    // The revocation survives a restart (kept in the lease's record).
    let Harness { store, fake, .. } = h;
    let h = open(store, fake);
    assert!(h.provider.grant_revoked(&lease, &gid));
    // Revoking on an ended lease is refused as ended.
    h.provider
        .operate(&op(AGENT, lease, Op::Stop, 4, t(22)), t(22))
        .await;
    assert_eq!(
        refused(h.provider.operate(&revoke(AGENT, 5, t(23)), t(23)).await),
        RefusalCode::Ended
    );
}

fn acknowledgement(
    signer: u8,
    receipt: Digest,
    at: Timestamp,
) -> Signed<agora_protocol::lease::ReceiptAck> {
    Signed::sign(
        agora_protocol::lease::ReceiptAck {
            agent: id(signer),
            receipt,
            acked_at: at,
            delegation: None,
        },
        &key(signer),
    )
    .unwrap()
}

/// `signer`'s `Acknowledge` of `ack` on `lease` (op nonce `nonce`) at `at`, as `provider`
/// answers it.
async fn send_ack(
    provider: &Provider,
    signer: u8,
    lease: LeaseId,
    ack: Signed<agora_protocol::lease::ReceiptAck>,
    nonce: u8,
    at: Timestamp,
) -> rpc::Response {
    provider
        .operate(&op(signer, lease, Op::Acknowledge { ack }, nonce, at), at)
        .await
}

/// The agent countersigns the final receipt of its stopped lease: the provider keeps the
/// acknowledgement with the lease, shows it in the status, logs the acknowledged usage fact
/// after the bare one (the ledger then counts the receipt as acknowledged), answers the
/// same acknowledgement again, and refuses one for a running lease, for another receipt,
/// by another agent, or a second, different one.
#[tokio::test]
async fn the_agents_acknowledgement_of_the_final_receipt_becomes_evidence() {
    let mut h = harness();
    let ledger = Arc::new(
        crate::ledger::Ledger::open(
            Arc::new(key(PROVIDER)),
            Arc::new(MemStore::new()),
            agora_protocol::ledger::Config::default(),
            crate::metrics::NodeMetrics::default(),
            t(13),
        )
        .unwrap(),
    );
    h.provider = h.provider.with_ledger(Some(ledger.clone()));
    let p = proposal(AGENT, 1, |_| {});
    let lease = p.request.digest();
    granted(h.provider.propose(&p, t(11)).await);
    h.provider.tick(t(72)).await;
    let periodic = status(h.provider.query(&lease)).receipt.unwrap();
    // While the lease runs there is no final receipt to acknowledge.
    let early = acknowledgement(AGENT, periodic.digest(), t(73));
    assert_eq!(
        refused(send_ack(&h.provider, AGENT, lease, early, 1, t(73)).await),
        RefusalCode::Invalid
    );
    let stopped = status(
        h.provider
            .operate(&op(AGENT, lease, Op::Stop, 2, t(100)), t(100))
            .await,
    );
    let last = stopped.receipt.unwrap();
    assert!(stopped.ack.is_none());
    assert_eq!(ledger.state().acknowledged_receipts, 0);
    assert_eq!(ledger.state().facts.get("usage"), Some(&1));
    // Another receipt (the periodic one), or another agent's acknowledgement: refused.
    let stale = acknowledgement(AGENT, periodic.digest(), t(101));
    assert_eq!(
        refused(send_ack(&h.provider, AGENT, lease, stale, 3, t(101)).await),
        RefusalCode::Invalid
    );
    let foreign = acknowledgement(STRANGER, last.digest(), t(101));
    assert_eq!(
        refused(send_ack(&h.provider, STRANGER, lease, foreign, 4, t(101)).await),
        RefusalCode::Unauthorized
    );
    // Dated far ahead of the provider's clock: refused.
    let ahead = acknowledgement(AGENT, last.digest(), t(101 + 3600));
    assert_eq!(
        refused(send_ack(&h.provider, AGENT, lease, ahead, 5, t(101)).await),
        RefusalCode::Stale
    );
    // The agent's acknowledgement of the final receipt: kept, shown, logged.
    let ack = acknowledgement(AGENT, last.digest(), t(102));
    let s = status(send_ack(&h.provider, AGENT, lease, ack.clone(), 6, t(102)).await);
    assert_eq!(s.ack.as_ref(), Some(&ack));
    assert_eq!(status(h.provider.query(&lease)).ack, Some(ack.clone()));
    let state = ledger.state();
    assert_eq!(state.acknowledged_receipts, 1);
    assert_eq!(
        state.facts.get("usage"),
        Some(&2),
        "the bare fact, then the acknowledged one"
    );
    // The reconciled evidence carries the acknowledgement, which the ledger already holds.
    let usage: Vec<Fact> = h
        .provider
        .ledger_facts()
        .into_iter()
        .filter(|f| matches!(f, Fact::Usage(_)))
        .collect();
    assert!(matches!(&usage[..], [Fact::Usage(u)] if u.ack.as_ref() == Some(&ack)));
    assert!(ledger.records(&usage[0]));
    // The same acknowledgement again answers the status; another one is a replay.
    let again = status(send_ack(&h.provider, AGENT, lease, ack.clone(), 7, t(103)).await);
    assert_eq!(again.ack, Some(ack.clone()));
    let second = acknowledgement(AGENT, last.digest(), t(104));
    assert_eq!(
        refused(send_ack(&h.provider, AGENT, lease, second, 8, t(104)).await),
        RefusalCode::Replay
    );
    assert_eq!(ledger.state().facts.get("usage"), Some(&2));
    // Kept across a restart with the lease record.
    let reopened = open(h.store.clone(), h.fake.clone());
    assert_eq!(status(reopened.provider.query(&lease)).ack, Some(ack));
}

fn approval_of(
    signer: u8,
    op: &Signed<LeaseOp>,
    max_cost_micro: u64,
    at: Timestamp,
) -> Signed<Approval> {
    Signed::sign(
        Approval {
            owner: id(signer),
            request: op.digest(),
            agent: op.body().agent,
            max_cost_micro,
            approved_at: at,
        },
        &key(signer),
    )
    .unwrap()
}

#[tokio::test]
async fn an_extension_over_the_limit_waits_for_the_owners_approval_of_it() {
    let h = harness();
    let grant = granted(
        h.provider
            .handle(&rpc::Request::Propose(proposal(OWNED, 1, |_| {})), t(20))
            .await,
    );
    let lease = grant.body().lease;
    // The grant names the owner the provider found in the attestation.
    assert_eq!(grant.body().owner, Some(id(OWNER)));
    let limit = TierLimits::contained().spending_limit_micro();
    let price = grant.body().price_per_sec;
    let secs = (limit - grant.body().reserved_micro) / price + 1;
    let cost = price * secs;
    let extend = op(OWNED, lease, Op::Extend { secs }, 1, t(30));
    // Over the limit: the owner is asked, and the operation may come back approved.
    assert_eq!(
        refused(h.provider.operate(&extend, t(30)).await),
        RefusalCode::ApprovalRequired
    );
    let approved = |approval| rpc::Request::ApprovedExtend {
        op: extend.clone(),
        approval,
    };
    // Another key's approval, one of another operation, one short of the cost: refused.
    for (bad, why) in [
        (approval_of(STRANGER, &extend, cost, t(40)), "a stranger"),
        (
            approval_of(
                OWNER,
                &op(OWNED, lease, Op::Extend { secs }, 2, t(30)),
                cost,
                t(40),
            ),
            "another operation",
        ),
        (approval_of(OWNER, &extend, cost - 1, t(40)), "short"),
    ] {
        assert_eq!(
            refused(h.provider.handle(&approved(bad), t(40)).await),
            RefusalCode::ApprovalInvalid,
            "{why}"
        );
    }
    // The owner's approval, long after the operation was signed, extends the lease.
    let later = t(30 + 600);
    let st = status(
        h.provider
            .handle(&approved(approval_of(OWNER, &extend, cost, later)), later)
            .await,
    );
    assert_eq!(
        st.grant.body().expires_at,
        grant
            .body()
            .expires_at
            .saturating_add(Duration::from_secs(secs))
    );
    let account = h.provider.account(&id(OWNED)).unwrap();
    let lock = account.locks[&lease];
    assert_eq!(lock.approved_extra_micro, cost);
    assert_eq!(account.committed_micro(), grant.body().reserved_micro);
    // Once: the same approved operation again is a replay.
    assert_eq!(
        refused(
            h.provider
                .handle(&approved(approval_of(OWNER, &extend, cost, later)), later)
                .await
        ),
        RefusalCode::Replay
    );
}

#[tokio::test]
async fn without_an_owner_an_extension_over_the_limit_is_refused_for_quota() {
    let h = harness();
    let grant = granted(
        h.provider
            .handle(&rpc::Request::Propose(proposal(AGENT, 1, |_| {})), t(20))
            .await,
    );
    assert_eq!(grant.body().owner, None);
    let limit = TierLimits::contained().spending_limit_micro();
    let secs = (limit - grant.body().reserved_micro) / grant.body().price_per_sec + 1;
    let extend = op(AGENT, grant.body().lease, Op::Extend { secs }, 1, t(30));
    assert_eq!(
        refused(h.provider.operate(&extend, t(30)).await),
        RefusalCode::Quota
    );
}
