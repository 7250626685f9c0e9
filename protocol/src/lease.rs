//! Leases: what an agent signs to rent capacity, what a provider signs back, and what every
//! later operation on the lease carries.
//!
//! ```text
//! agent ──Signed<LeaseRequest>──▶ gateway ──LeaseProposal (request-response)──▶ provider
//!                                                    │ admission (capacity, tier, quota)
//! agent ◀─────────── Signed<LeaseGrant> (+ Signed<Capability>) or Signed<LeaseRefusal>
//! agent ──Signed<LeaseOp> (exec, logs, files, extend, stop)──▶ any gateway ──▶ provider
//! agent ◀─────────── Signed<UsageReceipt> (periodically and at the end)
//! ```
//!
//! The gateway only relays: every request and operation is signed by the agent (or by a
//! delegate the agent named in a signed [`Delegation`]), names the provider and carries a
//! nonce and its issue time, so a provider acts on nothing a gateway could have forged or
//! replayed. The lease id is the [`Digest`] of the signed request.
//!
//! A request lists up to [`MAX_CANDIDATES`] offers in the agent's order of preference, so a
//! gateway can fail over to the next when a provider is unreachable or refuses, without
//! asking the agent to sign again. A gateway could also submit one request to several of the
//! listed providers at once; until the replicated ledger makes quota locks unique, the agent
//! bounds that exposure by how many candidates it lists.

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::offer::Isolation;
use crate::signed::{Digest, Signed, SignedKind};
use crate::signup::SignupRecord;
use crate::time::Timestamp;
use crate::workload::{TerminationReason, WorkloadSpec};

/// Length of request and operation nonces.
pub const NONCE_LEN: usize = 16;

/// Most tunnel endpoints a grant lists.
pub const MAX_ENDPOINTS: usize = 8;

/// A lease id: the digest of the agent's signed [`LeaseRequest`].
pub type LeaseId = Digest;

/// Kinds of operation a delegation may allow and a [`LeaseOp`] performs.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Request a lease (spend).
    Lease,
    /// Run a command in the workload.
    Exec,
    /// Read the workload's output.
    Logs,
    /// Copy files in or out.
    Files,
    /// Lengthen the lease.
    Extend,
    /// End the lease.
    Stop,
    /// Read the lease's state and receipts.
    Status,
    /// Open a tunnel to a workload port.
    Tunnel,
    /// Revoke a grant that let another agent's key into the lease's ports.
    Grant,
}

/// An agent's signed permission for another key (a remote MCP endpoint, a helper) to act for
/// it: scoped to operations, capped in spend, expiring. Signed by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The agent granting.
    pub agent: AgoraId,
    /// The key that may act.
    pub delegate: AgoraId,
    /// What it may do.
    pub ops: Vec<OpKind>,
    /// Most credits its lease requests may commit in total, per provider.
    pub spend_cap_credits: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it ends.
    pub expires_at: Timestamp,
}

impl Delegation {
    /// Whether it allows `op` at `now`.
    pub fn allows(&self, op: OpKind, now: Timestamp) -> bool {
        self.ops.contains(&op) && now >= self.issued_at && now < self.expires_at
    }
}

impl SignedKind for Delegation {
    const DOMAIN: &'static str = "agora/delegation/v1";
    const MAX_PAYLOAD_BYTES: usize = 256;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.delegate == self.agent {
            return Err(invalid(
                "delegate",
                "an agent cannot delegate to itself".into(),
            ));
        }
        if self.ops.is_empty() || self.ops.len() > 8 {
            return Err(invalid(
                "ops",
                format!("{} entries, expected 1 to 8", self.ops.len()),
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(invalid("expires_at", "is not after issued_at".into()));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.agent)
    }
}

/// What an agent signs to ask a provider for a lease on one of its offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The agent (the signer, unless `delegation` names a delegate).
    pub agent: AgoraId,
    /// The offers the agent accepts, best first: a gateway tries them in order, and a
    /// provider serves the request only if one of its own offers is listed.
    pub candidates: Vec<Candidate>,
    /// The runtime class wanted.
    pub isolation: Isolation,
    /// What to run.
    pub spec: WorkloadSpec,
    /// The most the agent pays, micro-credits per second.
    pub max_price_per_sec: u64,
    /// Random bytes: makes the request (and so the lease id) unique.
    pub nonce: [u8; NONCE_LEN],
    /// When the agent signed it (providers refuse stale requests).
    pub issued_at: Timestamp,
    /// The agent's signup record: its tier is derived from it by the provider.
    pub signup: Signed<SignupRecord>,
    /// Present when a delegate signs for the agent.
    pub delegation: Option<Signed<Delegation>>,
}

/// One offer an agent accepts: the provider and the digest of its signed offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Candidate {
    /// The provider.
    pub provider: AgoraId,
    /// The digest of the signed offer (its exact bytes).
    pub offer: Digest,
}

/// Most candidates one request lists.
pub const MAX_CANDIDATES: usize = 8;

impl LeaseRequest {
    /// The candidate naming `provider`, if any.
    pub fn candidate_for(&self, provider: &AgoraId) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.provider == *provider)
    }

    /// The most this lease can cost, micro-credits: price ceiling × lifetime.
    pub fn max_cost_micro(&self) -> u64 {
        self.max_price_per_sec
            .saturating_mul(self.spec.lifetime_secs)
    }
}

impl SignedKind for LeaseRequest {
    const DOMAIN: &'static str = "agora/lease-request/v1";
    // Room for the largest signup record (its credential chain) beside a 64 KiB spec.
    const MAX_PAYLOAD_BYTES: usize = SignupRecord::MAX_PAYLOAD_BYTES + 64 * 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        self.spec.validate()?;
        if self.candidates.is_empty() || self.candidates.len() > MAX_CANDIDATES {
            return Err(invalid(
                "candidates",
                format!(
                    "{} entries, expected 1 to {MAX_CANDIDATES}",
                    self.candidates.len()
                ),
            ));
        }
        for (i, c) in self.candidates.iter().enumerate() {
            if self
                .candidates
                .iter()
                .take(i)
                .any(|p| p.provider == c.provider)
            {
                return Err(invalid(
                    "candidates",
                    format!("lists provider {} twice", c.provider),
                ));
            }
        }
        if self.signup.body().agent != self.agent {
            return Err(invalid("signup", "is another agent's signup record".into()));
        }
        check_delegation(self.agent, self.delegation.as_ref())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(author_of(self.agent, self.delegation.as_ref()))
    }
}

/// A delegation attached to a message for `agent` must be one `agent` granted.
pub(crate) fn check_delegation(
    agent: AgoraId,
    delegation: Option<&Signed<Delegation>>,
) -> Result<(), DecodeError> {
    match delegation {
        Some(d) if d.body().agent != agent => {
            Err(invalid("delegation", "was granted by another agent".into()))
        }
        _ => Ok(()),
    }
}

/// Who signs a message for `agent`: the agent itself, or the delegate its delegation names.
pub(crate) fn author_of(agent: AgoraId, delegation: Option<&Signed<Delegation>>) -> AgoraId {
    delegation.map_or(agent, |d| d.body().delegate)
}

/// The owner's signed consent to a lease request above the agent's spending limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The owner (from the agent's attestation; the signer).
    pub owner: AgoraId,
    /// The request approved (its lease id).
    pub request: LeaseId,
    /// The agent it is for.
    pub agent: AgoraId,
    /// The most the owner allows this lease to cost, micro-credits.
    pub max_cost_micro: u64,
    /// When the owner signed.
    pub approved_at: Timestamp,
}

impl SignedKind for Approval {
    const DOMAIN: &'static str = "agora/approval/v1";
    const MAX_PAYLOAD_BYTES: usize = 192;

    fn author(&self) -> Option<AgoraId> {
        Some(self.owner)
    }
}

/// What a gateway sends a provider: the agent's signed request, when the agent is above
/// its spending limit the owner's approval, and where the network has a quota committee
/// the certificate of the agent's lock for this lease. Not signed itself: every part is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseProposal {
    /// The agent's request.
    pub request: Signed<LeaseRequest>,
    /// The owner's approval, if any.
    pub approval: Option<Signed<Approval>>,
    /// The quota committee's certificate of the agent's lock for this lease (the op's
    /// signature is verified as it decodes; the votes by the provider, against its own
    /// committee: [`crate::committee::UncheckedCertificate::verify`]).
    pub lock: Option<crate::committee::UncheckedCertificate>,
}

/// A provider's signed proof of what a lease allows: presented on every tunnel stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// The lease.
    pub lease: LeaseId,
    /// Its agent.
    pub agent: AgoraId,
    /// The provider (the signer).
    pub provider: AgoraId,
    /// The workload ports it opens.
    pub ports: Vec<u16>,
    /// When it stops working.
    pub expires_at: Timestamp,
}

impl SignedKind for Capability {
    const DOMAIN: &'static str = "agora/capability/v1";
    const MAX_PAYLOAD_BYTES: usize = 256;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.ports.len() > crate::workload::MAX_PORTS {
            return Err(invalid("ports", format!("{} ports", self.ports.len())));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

/// A provider's signed acceptance of a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// The lease id (the request's digest).
    pub lease: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The provider (the signer).
    pub provider: AgoraId,
    /// The price charged, micro-credits per second (at most the request's ceiling).
    pub price_per_sec: u64,
    /// Micro-credits reserved for the lease's whole lifetime.
    pub reserved_micro: u64,
    /// When the lease began.
    pub starts_at: Timestamp,
    /// When it ends unless extended.
    pub expires_at: Timestamp,
    /// The provider's QUIC tunnel endpoints (`host:port`).
    pub tunnel_endpoints: Vec<String>,
    /// The capability presented on tunnel streams.
    pub token: Signed<Capability>,
    /// The owner the agent's attestation names, as the provider's trust roots found it:
    /// who approves spending above the agent's limit (an extension over it waits for
    /// them). None when the attestation names no owner.
    pub owner: Option<AgoraId>,
}

impl SignedKind for LeaseGrant {
    const DOMAIN: &'static str = "agora/lease-grant/v1";
    const MAX_PAYLOAD_BYTES: usize = 2048;

    fn validate(&self) -> Result<(), DecodeError> {
        let token = self.token.body();
        if token.lease != self.lease || token.agent != self.agent || token.provider != self.provider
        {
            return Err(invalid("token", "is for another lease".into()));
        }
        if self.tunnel_endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(
                "tunnel_endpoints",
                format!(
                    "{} entries, at most {MAX_ENDPOINTS}",
                    self.tunnel_endpoints.len()
                ),
            ));
        }
        for e in &self.tunnel_endpoints {
            bounds::max_len("tunnel_endpoints", e, 128)?;
        }
        if self.expires_at < self.starts_at {
            return Err(invalid("expires_at", "is before starts_at".into()));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

/// Why a provider refused a request or operation: stable codes for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// Not enough free capacity now.
    Capacity,
    /// The request exceeds what the agent's tier allows.
    TierLimit,
    /// The agent already runs as many leases as its tier allows here.
    TooManyLeases,
    /// Longer than the offer or tier allows.
    Lifetime,
    /// The price ceiling is below the provider's price.
    Price,
    /// The agent's quota does not cover the lease.
    Quota,
    /// Above the spending limit: the owner must approve (the refusal names the request).
    ApprovalRequired,
    /// The attached approval is not by the agent's owner, or does not cover the cost.
    ApprovalInvalid,
    /// The owner did not answer in time.
    ApprovalTimeout,
    /// The offer named is not this provider's current offer, or does not fit the request.
    OfferMismatch,
    /// The runtime or image asked for is not offered.
    Unsupported,
    /// The provider's policy forbids it (ports, egress, tier not served).
    Policy,
    /// The signup record or credential does not verify, is revoked or expired.
    Untrusted,
    /// The signature is not by the agent or its delegate, or the delegation does not cover it.
    Unauthorized,
    /// The request or operation was seen before.
    Replay,
    /// The request or operation is too old or from the future.
    Stale,
    /// No such lease here.
    UnknownLease,
    /// The lease has ended.
    Ended,
    /// The provider is shutting down or its runtime failed.
    Unavailable,
    /// Malformed input.
    Invalid,
    /// The provider is rate-limiting this agent.
    RateLimited,
}

impl RefusalCode {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Capacity => "capacity",
            Self::TierLimit => "tier_limit",
            Self::TooManyLeases => "too_many_leases",
            Self::Lifetime => "lifetime",
            Self::Price => "price",
            Self::Quota => "quota",
            Self::ApprovalRequired => "approval_required",
            Self::ApprovalInvalid => "approval_invalid",
            Self::ApprovalTimeout => "approval_timeout",
            Self::OfferMismatch => "offer_mismatch",
            Self::Unsupported => "unsupported",
            Self::Policy => "policy",
            Self::Untrusted => "untrusted",
            Self::Unauthorized => "unauthorized",
            Self::Replay => "replay",
            Self::Stale => "stale",
            Self::UnknownLease => "unknown_lease",
            Self::Ended => "ended",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
        }
    }
}

impl core::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code and a bounded explanation for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Stable code.
    pub code: RefusalCode,
    /// What exactly (≤ 512 bytes).
    pub detail: String,
}

impl Refusal {
    /// A refusal with `code` and `detail` (cut to 512 bytes at a character boundary).
    pub fn new(code: RefusalCode, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > 512 {
            let mut end = 512;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Self { code, detail }
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// A provider's signed refusal of a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRefusal {
    /// The request refused (its would-be lease id).
    pub request: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The provider (the signer).
    pub provider: AgoraId,
    /// Why.
    pub refusal: Refusal,
    /// When.
    pub at: Timestamp,
}

impl SignedKind for LeaseRefusal {
    const DOMAIN: &'static str = "agora/lease-refusal/v1";
    const MAX_PAYLOAD_BYTES: usize = 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        bounds::max_len("refusal.detail", &self.refusal.detail, 512)
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

/// A provider's answer to a [`LeaseProposal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseAnswer {
    /// Accepted: the lease runs.
    Granted(Signed<LeaseGrant>),
    /// Refused, with the reason.
    Refused(Signed<LeaseRefusal>),
}

/// What an operation on a lease does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Run a command in the workload; output is streamed back.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
        /// Whether the caller will stream stdin.
        stdin: bool,
        /// Allocate a terminal.
        tty: bool,
    },
    /// Read the workload's output.
    Logs {
        /// Keep streaming new output until the lease ends.
        follow: bool,
    },
    /// Upload a tar stream, unpacked under `path`.
    PutFiles {
        /// Destination directory inside the workload.
        path: String,
    },
    /// Download `path` as a tar stream.
    GetFiles {
        /// File or directory inside the workload.
        path: String,
    },
    /// Lengthen the lease by `secs`.
    Extend {
        /// Seconds to add.
        secs: u64,
    },
    /// End the lease now.
    Stop,
    /// The lease's state and latest receipt.
    Status,
    /// Ask the node that receives it (not the provider) to relay the agent's QUIC tunnel
    /// packets to the lease's provider, for an agent that cannot reach the provider itself.
    /// TLS stays end to end; the provider still checks the capability on every stream.
    Relay,
    /// Revoke a [`crate::service::ServiceGrant`] of this lease: the provider refuses it
    /// from now on and cuts the streams open under it.
    RevokeGrant {
        /// The grant's id.
        grant: crate::service::GrantId,
    },
    /// Countersign the lease's final receipt: the provider records the receipt with this
    /// acknowledgement as evidence (`ledger::Fact::Usage`). Accepted for an ended lease the
    /// provider still retains; the acknowledgement must be by the operation's agent (or
    /// its delegate) and name the provider's final receipt.
    Acknowledge {
        /// The agent's signed acknowledgement of the final receipt.
        ack: Signed<ReceiptAck>,
    },
}

impl Op {
    /// The operation's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::Exec { .. } => OpKind::Exec,
            Self::Logs { .. } => OpKind::Logs,
            Self::PutFiles { .. } | Self::GetFiles { .. } => OpKind::Files,
            Self::Extend { .. } => OpKind::Extend,
            Self::Stop => OpKind::Stop,
            Self::Status => OpKind::Status,
            Self::Relay => OpKind::Tunnel,
            Self::RevokeGrant { .. } => OpKind::Grant,
            // Countersigning the final receipt is the last step of ending the lease: a
            // delegate that may stop the lease may acknowledge what it cost.
            Self::Acknowledge { .. } => OpKind::Stop,
        }
    }
}

/// An agent's signed operation on one of its leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOp {
    /// The agent.
    pub agent: AgoraId,
    /// The provider that must perform it.
    pub provider: AgoraId,
    /// The lease.
    pub lease: LeaseId,
    /// What to do.
    pub op: Op,
    /// Random bytes: no operation is performed twice.
    pub nonce: [u8; NONCE_LEN],
    /// When it was signed.
    pub issued_at: Timestamp,
    /// Present when a delegate signs for the agent.
    pub delegation: Option<Signed<Delegation>>,
}

impl SignedKind for LeaseOp {
    const DOMAIN: &'static str = "agora/lease-op/v1";
    const MAX_PAYLOAD_BYTES: usize = 2 * crate::workload::MAX_ARG_BYTES + 2048;

    fn validate(&self) -> Result<(), DecodeError> {
        match &self.op {
            Op::Exec { command, .. } => {
                if command.is_empty() || command.len() > 64 {
                    return Err(invalid(
                        "op.command",
                        format!("{} arguments, expected 1 to 64", command.len()),
                    ));
                }
                let total: usize = command.iter().map(String::len).sum();
                if total > crate::workload::MAX_ARG_BYTES {
                    return Err(invalid("op.command", format!("{total} bytes")));
                }
                if command.iter().any(|a| a.contains('\0')) {
                    return Err(invalid("op.command", "contains a NUL byte".into()));
                }
            }
            Op::PutFiles { path } | Op::GetFiles { path } => {
                bounds::max_len("op.path", path, 1024)?;
                if !path.starts_with('/') || path.contains('\0') {
                    return Err(invalid("op.path", "must be absolute, without NUL".into()));
                }
            }
            Op::Acknowledge { ack } => {
                if ack.body().agent != self.agent {
                    return Err(invalid(
                        "op.ack",
                        format!(
                            "acknowledges for {}, not for the operation's agent {}",
                            ack.body().agent,
                            self.agent
                        ),
                    ));
                }
            }
            Op::Logs { .. }
            | Op::Extend { .. }
            | Op::Stop
            | Op::Status
            | Op::Relay
            | Op::RevokeGrant { .. } => {}
        }
        check_delegation(self.agent, self.delegation.as_ref())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(author_of(self.agent, self.delegation.as_ref()))
    }
}

/// A provider's signed statement of what a lease used and costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// The lease.
    pub lease: LeaseId,
    /// The agent.
    pub agent: AgoraId,
    /// The provider (the signer).
    pub provider: AgoraId,
    /// 0, 1, 2, …: receipts of one lease are ordered and cumulative.
    pub seq: u32,
    /// When the lease began.
    pub from: Timestamp,
    /// Up to when this receipt counts.
    pub to: Timestamp,
    /// CPU time used, milliseconds.
    pub cpu_ms: u64,
    /// Memory integral, MiB × seconds (sampled).
    pub memory_mib_secs: u64,
    /// Bytes sent out of the workload (network and tunnels): everything it sent on its
    /// network interfaces, plus its tunnel bytes where tunnels do not cross those.
    pub egress_bytes: u64,
    /// Of the lease's tunnels: bytes from the agent into the workload.
    pub tunnel_in_bytes: u64,
    /// Of the lease's tunnels: bytes from the workload to the agent (also in `egress_bytes`).
    pub tunnel_out_bytes: u64,
    /// The lease's price, micro-credits per second.
    pub price_per_sec: u64,
    /// What the lease costs up to `to`, micro-credits (price × elapsed seconds).
    pub total_micro: u64,
    /// Set on the final receipt: why the lease ended.
    pub ended: Option<TerminationReason>,
}

impl SignedKind for UsageReceipt {
    const DOMAIN: &'static str = "agora/usage-receipt/v1";
    const MAX_PAYLOAD_BYTES: usize = 1024;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.to < self.from {
            return Err(invalid("to", "is before from".into()));
        }
        if let Some(
            TerminationReason::PolicyViolation { detail }
            | TerminationReason::RuntimeError { detail },
        ) = &self.ended
        {
            bounds::max_len("ended.detail", detail, 512)?;
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

/// An agent's signed acknowledgement of a provider's usage receipt: "this is what my lease
/// used". A receipt with one weighs more than a provider's word alone (see
/// `ledger::reputation`). Signed by the agent, or by a delegate whose delegation (carried
/// here) allows [`OpKind::Stop`] at `acked_at`: acknowledging what a lease cost is part of
/// ending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptAck {
    /// The agent (the signer, unless `delegation` names a delegate).
    pub agent: AgoraId,
    /// The digest of the provider's signed receipt.
    pub receipt: Digest,
    /// When it was signed.
    pub acked_at: Timestamp,
    /// Present when a delegate signs for the agent.
    pub delegation: Option<Signed<Delegation>>,
}

impl ReceiptAck {
    /// The kind of operation a delegation must allow for a delegate to acknowledge.
    pub const DELEGATED_AS: OpKind = OpKind::Stop;
}

impl SignedKind for ReceiptAck {
    const DOMAIN: &'static str = "agora/receipt-ack/v1";
    /// A key, a digest and a varint time (74 bytes at most), the option tag and a delegation.
    const MAX_PAYLOAD_BYTES: usize = 96 + Signed::<Delegation>::MAX_WIRE_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        check_delegation(self.agent, self.delegation.as_ref())?;
        // Checked here, against the acknowledgement's own time, so every replica of the
        // evidence log decides alike whenever it reads it.
        if let Some(d) = &self.delegation
            && !d.body().allows(Self::DELEGATED_AS, self.acked_at)
        {
            return Err(invalid(
                "delegation",
                format!(
                    "does not allow {:?} at {}",
                    Self::DELEGATED_AS,
                    self.acked_at
                ),
            ));
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(author_of(self.agent, self.delegation.as_ref()))
    }
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
