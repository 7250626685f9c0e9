//! What an agent signs for the quota committee, and the account view nodes answer.
//!
//! ```text
//! GET /v1/accounts/{agent}/quota ─▶ QuotaAccount { next_seq, head, available_micro, … }
//! signup:  credential ─▶ credit_op (ChainOp Credit at next_seq)  ┐
//!          none       ─▶ free_tier_claim (pool slot of the epoch)  ├─▶ POST /v1/accounts/{agent}/quota
//! run:     lease request ─▶ lock_ops (one ChainOp Lock per candidate, chained from next_seq)
//!                        ──▶ POST /v1/leases { lock, fallback_locks }
//! extend:  lease + secs ─▶ top_up_op (ChainOp TopUp at next_seq over the lease's open locks)
//!                        ──▶ POST /v1/leases/{id}/extend { op, top_up }
//! ```
//!
//! The agent's own key signs these; a delegate (a node's `/mcp` endpoint under the agent's
//! delegation) may sign locks and top-ups, carrying the delegation: the committee checks it
//! allows the operation and that its spend cap holds over what is locked and charged under
//! it. Credits and free-tier claims are the agent's alone.

use core::time::Duration;

use agora_attest::Identity;

use super::request::Author;
use agora_protocol::committee::{Action, ChainOp, FreeTierClaim, LockTerms, Op, TopUpTerms};
use agora_protocol::lease::{LeaseId, LeaseRequest};
use agora_protocol::{AgoraId, Credential, Digest, EncodeError, Signed, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much longer than the lease's lifetime a lock lasts from the request's signing: the
/// request may wait up to its freshness window (5 min) before a provider starts it, and the
/// provider wants a margin after the lease ends (`lease::provider::LOCK_MARGIN`).
pub const LOCK_SLACK: Duration = Duration::from_secs(600);

/// How many pool slots an agent tries for its free-tier grant before giving up.
pub const FREE_TIER_TRIES: usize = 8;

/// One open lock, as `GET /v1/accounts/{agent}/quota` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LockEntry {
    /// The chain position that made it.
    pub seq: u64,
    /// The lease it pays for (hex).
    pub lease: String,
    /// The provider that may settle it.
    pub provider: String,
    /// Micro-credits locked.
    pub amount_micro: u64,
    /// When it lapses (RFC 3339).
    pub expires_at: String,
    /// Whether the agent's owner approved it: it holds the owner's approval, not the
    /// agent's balance.
    #[serde(default)]
    pub approved: bool,
}

/// An agent's quota account at the committee (`GET /v1/accounts/{agent}/quota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaAccount {
    /// The agent.
    pub agent: String,
    /// The committee's genesis digest (hex).
    pub genesis: String,
    /// The current epoch (`null` before the genesis start).
    pub epoch: Option<u64>,
    /// Free-tier grants per epoch network-wide (pool slots 0 to this − 1).
    pub free_tier_cap: u32,
    /// Micro-credits one free-tier grant is worth.
    pub free_tier_micro: u64,
    /// The position the agent's next chain op takes (proven by the head certificate).
    pub next_seq: u64,
    /// The digest the next chain op names as `prev` (hex; `null` before the first op).
    pub head: Option<String>,
    /// Micro-credits credited from attestations.
    pub credited_micro: u64,
    /// Micro-credits granted by the free tier.
    pub granted_micro: u64,
    /// Micro-credits charged by settlements.
    pub spent_micro: u64,
    /// Micro-credits charged by settlements of owner-approved locks (outside the balance).
    #[serde(default)]
    pub approved_spent_micro: u64,
    /// Micro-credits open locks hold against the balance (owner-approved ones do not).
    pub locked_micro: u64,
    /// What may still be locked.
    pub available_micro: u64,
    /// Open locks.
    pub locks: Vec<LockEntry>,
}

/// Why the agent could not build an op.
#[derive(Debug, thiserror::Error)]
pub enum QuotaOpError {
    /// The node's account view is malformed.
    #[error("the node's quota account is malformed: {0}")]
    BadView(&'static str),
    /// Signing failed (a bound was broken).
    #[error("cannot sign: {0}")]
    Sign(#[from] EncodeError),
}

impl QuotaAccount {
    fn head_digest(&self) -> Result<Option<Digest>, QuotaOpError> {
        self.head
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| QuotaOpError::BadView("head is not a digest"))
    }

    fn chain_op(
        &self,
        author: Author<'_>,
        action: Action,
    ) -> Result<Signed<ChainOp>, QuotaOpError> {
        Ok(sign_chain_op(
            author,
            self.next_seq,
            self.head_digest()?,
            action,
        )?)
    }
}

/// `action` at chain position `seq` after `prev`, for the author's agent, signed by the
/// author (with its delegation when a delegate signs).
fn sign_chain_op(
    author: Author<'_>,
    seq: u64,
    prev: Option<Digest>,
    action: Action,
) -> Result<Signed<ChainOp>, EncodeError> {
    let op = ChainOp {
        account: author.agent_id(),
        seq,
        prev,
        action,
        delegation: author.delegation(),
    };
    Signed::sign(op, author.key())
}

/// The lock for `request` at `provider`: price ceiling × lifetime, until the request's time
/// plus its lifetime and [`LOCK_SLACK`].
fn lock_action(request: &Signed<LeaseRequest>, provider: AgoraId) -> Action {
    let body = request.body();
    Action::Lock(LockTerms {
        lease: request.digest(),
        provider,
        amount_micro: body.max_cost_micro().max(1),
        expires_at: body
            .issued_at
            .saturating_add(Duration::from_secs(body.spec.lifetime_secs))
            .saturating_add(LOCK_SLACK),
    })
}

/// The agent's lock for `request` at its first candidate: price ceiling × lifetime, until
/// the request's time + lifetime + [`LOCK_SLACK`].
///
/// # Errors
/// [`QuotaOpError`].
pub fn lock_op<'a>(
    author: impl Into<Author<'a>>,
    view: &QuotaAccount,
    request: &Signed<LeaseRequest>,
) -> Result<Signed<ChainOp>, QuotaOpError> {
    let provider = request
        .body()
        .candidates
        .first()
        .map(|c| c.provider)
        .ok_or(QuotaOpError::BadView("the request names no candidate"))?;
    view.chain_op(author.into(), lock_action(request, provider))
}

/// The agent's locks for `request`, one per candidate in its order, chained: the first at
/// the account's next position, each next one at the position after, naming the one before
/// as `prev`. A gateway certifies the first and, failing over from a candidate that refused
/// or did not answer, the next (`POST /v1/leases` with `lock` and `fallback_locks`); a
/// refusing provider's lock is released at once, an unanswering one's lapses. Each lock
/// holds price ceiling × lifetime until the request's time + lifetime + [`LOCK_SLACK`], so
/// a gateway can make the agent pay for at most one run at each candidate it signed for.
/// A delegate's locks carry its delegation: validators check it allows leases and that its
/// spend cap holds over everything locked and charged under it.
///
/// # Errors
/// [`QuotaOpError`].
pub fn lock_ops<'a>(
    author: impl Into<Author<'a>>,
    view: &QuotaAccount,
    request: &Signed<LeaseRequest>,
) -> Result<Vec<Signed<ChainOp>>, QuotaOpError> {
    let author = author.into();
    let candidates = &request.body().candidates;
    let mut locks: Vec<Signed<ChainOp>> = Vec::with_capacity(candidates.len());
    let (mut seq, mut prev) = (view.next_seq, view.head_digest()?);
    for candidate in candidates {
        let signed = sign_chain_op(author, seq, prev, lock_action(request, candidate.provider))?;
        prev = Some(Op::Chain(signed.clone()).digest());
        seq = seq.saturating_add(1);
        locks.push(signed);
    }
    if locks.is_empty() {
        return Err(QuotaOpError::BadView("the request names no candidate"));
    }
    Ok(locks)
}

/// The `lock` and `fallback_locks` fields of a `POST /v1/leases` body for `locks` (from
/// [`lock_ops`]), base64url each.
pub fn lock_fields(locks: &[Signed<ChainOp>]) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine as _;
    let encode = |l: &Signed<ChainOp>| -> serde_json::Value {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(l.as_bytes())
            .into()
    };
    let mut fields = serde_json::Map::new();
    if let Some((first, rest)) = locks.split_first() {
        fields.insert("lock".into(), encode(first));
        if !rest.is_empty() {
            let rest: Vec<serde_json::Value> = rest.iter().map(encode).collect();
            fields.insert("fallback_locks".into(), rest.into());
        }
    }
    fields
}

/// What an extension costs and until when its lease then runs: the lease's price × `secs`,
/// its end + `secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    /// The lease.
    pub lease: LeaseId,
    /// Its provider.
    pub provider: AgoraId,
    /// Its price, micro-credits per second.
    pub price_per_sec: u64,
    /// Its current end.
    pub expires_at: Timestamp,
    /// Seconds added.
    pub secs: u64,
}

impl Extension {
    /// `secs` more of the lease `grant` (its provider's latest signed grant) is for.
    pub fn of(grant: &agora_protocol::lease::LeaseGrant, secs: u64) -> Self {
        Self {
            lease: grant.lease,
            provider: grant.provider,
            price_per_sec: grant.price_per_sec,
            expires_at: grant.expires_at,
            secs,
        }
    }
}

/// The agent's top-up paying for `extension`: price × seconds, lasting until the new end
/// plus [`LOCK_SLACK`], over what the lease's open locks at its provider in `view` hold (locks
/// at other candidates a gateway failed over from are not the running lease's). Signed by
/// the agent, or by a delegate under a delegation allowing extensions.
///
/// # Errors
/// [`QuotaOpError::BadView`] when the view shows no open lock for the lease (it ended and
/// was settled, or it was started without the committee).
pub fn top_up_op<'a>(
    author: impl Into<Author<'a>>,
    view: &QuotaAccount,
    extension: &Extension,
) -> Result<Signed<ChainOp>, QuotaOpError> {
    let (lease, provider) = (extension.lease.to_string(), extension.provider.to_string());
    let base_micro = view
        .locks
        .iter()
        .filter(|l| l.lease == lease && l.provider == provider)
        .fold(0u64, |sum, l| sum.saturating_add(l.amount_micro));
    if base_micro == 0 {
        return Err(QuotaOpError::BadView(
            "the committee shows no open lock for this lease to top up",
        ));
    }
    let terms = LockTerms {
        lease: extension.lease,
        provider: extension.provider,
        amount_micro: extension
            .price_per_sec
            .saturating_mul(extension.secs)
            .max(1),
        expires_at: extension
            .expires_at
            .saturating_add(Duration::from_secs(extension.secs))
            .saturating_add(LOCK_SLACK),
    };
    view.chain_op(
        author.into(),
        Action::TopUp(TopUpTerms {
            lock: terms,
            base_micro,
        }),
    )
}

/// The agent's credit of `credential`'s spending limit.
///
/// # Errors
/// [`QuotaOpError`].
pub fn credit_op(
    agent: &Identity,
    view: &QuotaAccount,
    credential: Credential,
) -> Result<Op, QuotaOpError> {
    Ok(Op::Chain(view.chain_op(
        Author::agent(agent),
        Action::Credit(credential),
    )?))
}

/// The agent's claim of a random free-tier pool slot of the current epoch.
///
/// # Errors
/// [`QuotaOpError::BadView`] before the genesis start or without a free tier.
pub fn free_tier_claim(agent: &Identity, view: &QuotaAccount) -> Result<Op, QuotaOpError> {
    let epoch = view.epoch.ok_or(QuotaOpError::BadView(
        "the committee's first epoch has not begun",
    ))?;
    if view.free_tier_cap == 0 {
        return Err(QuotaOpError::BadView("the committee has no free tier"));
    }
    let claim = FreeTierClaim {
        account: agent.agora_id(),
        epoch,
        index: rand::random_range(0..view.free_tier_cap),
    };
    Ok(Op::FreeTier(Signed::sign(claim, agent)?))
}

/// The base64url of an op's canonical encoding (the body of
/// `POST /v1/accounts/{agent}/quota`).
///
/// # Errors
/// [`EncodeError`] (not reachable for ops within the bounds).
pub fn op_base64(op: &Op) -> Result<String, EncodeError> {
    use base64::Engine as _;
    let bytes = agora_protocol::codec::encode(op, agora_protocol::committee::MAX_OP_BYTES)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The view for `agent` from `view` at `now`.
pub fn account_view(
    agent: AgoraId,
    committee: &agora_protocol::committee::Committee,
    view: &agora_protocol::quota_rpc::AccountView,
    now: Timestamp,
) -> QuotaAccount {
    let free = committee.free_tier();
    QuotaAccount {
        agent: agent.to_string(),
        genesis: committee.digest().to_string(),
        epoch: committee.epoch_at(now),
        free_tier_cap: if committee.free_tier_enabled() {
            free.cap_per_epoch
        } else {
            0
        },
        free_tier_micro: free.allowance_micro,
        next_seq: view.next_seq(),
        head: view.head_digest().map(|d| d.to_string()),
        credited_micro: view.credited_micro,
        granted_micro: view.granted_micro,
        spent_micro: view.spent_micro,
        approved_spent_micro: view.approved_spent_micro,
        locked_micro: view.locked_micro(),
        available_micro: view.available_micro(),
        locks: view
            .locks
            .iter()
            .map(|l| LockEntry {
                seq: l.seq,
                lease: l.lease.to_string(),
                provider: l.provider.to_string(),
                amount_micro: l.amount_micro,
                expires_at: l.expires_at.to_string(),
                approved: l.approved,
            })
            .collect(),
    }
}
