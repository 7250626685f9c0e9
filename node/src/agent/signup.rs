//! The signup service: challenges, the checks a signup passes in order, and accounts.
//!
//! ```text
//! GET /v1/signup/challenge ─▶ rate limit (address, prefix) ─▶ ChallengeIssuer::issue
//! POST /v1/signup ─▶ rate limit ─▶ decode + verify the agent's signature
//!                 ─▶ challenge: this node's, outstanding, fresh, consumed once
//!                 ─▶ standing::assess (proof of work or credential, tier)
//!                 ─▶ Account stored, returned with the signed record
//! ```
//!
//! Challenges and signups have separate buckets with the same limits, so fetching a
//! challenge and using it costs one token of each. Time and randomness are passed in; the
//! HTTP handlers in `http::signup` only translate.

use core::time::Duration;
use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use agora_attest::{ChallengeError, ChallengeIssuer, TrustStore};
use agora_protocol::attestation::decode_base64;
use agora_protocol::challenge::CHALLENGE_NONCE_LEN;
use agora_protocol::signup::SignupRecord;
use agora_protocol::{AgoraId, Challenge, Ed25519, Signed, Timestamp};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::account::{self, Account};
use super::source::{Limited, SourceLimiter};
use super::standing::{SignupPolicy, StandingError, assess};
use crate::config::NodeConfig;
use crate::store::{Store, StoreError};

/// How the proof of work is computed, for agents that implement it themselves.
pub const POW_ALGORITHM: &str = "sha256(\"agora/signup-pow/v1\\0\" || agent id (32 bytes) || challenge nonce (32 bytes) || pow nonce (u64 little-endian)) starts with pow_bits zero bits";

/// A challenge as `GET /v1/signup/challenge` hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedChallenge {
    /// The node that issued it (the record's `challenge.verifier`).
    pub verifier: AgoraId,
    /// The nonce, base64url (32 bytes).
    pub nonce: String,
    /// When it was issued, milliseconds since the Unix epoch (the record's
    /// `challenge.issued_at`).
    pub issued_at_ms: u64,
    /// The same instant, RFC 3339.
    pub issued_at: String,
    /// The signup must arrive before this (RFC 3339).
    pub expires_at: String,
    /// Proof-of-work bits an unattested signup must show here.
    pub pow_bits: u8,
    /// How the proof of work is computed.
    pub pow_algorithm: String,
}

impl IssuedChallenge {
    fn new(c: &Challenge, ttl: Duration, pow_bits: u8) -> Self {
        Self {
            verifier: c.verifier,
            nonce: URL_SAFE_NO_PAD.encode(c.nonce),
            issued_at_ms: c.issued_at.as_unix_millis(),
            issued_at: c.issued_at.to_string(),
            expires_at: c.issued_at.saturating_add(ttl).to_string(),
            pow_bits,
            pow_algorithm: POW_ALGORITHM.to_owned(),
        }
    }

    /// The challenge to embed in a signup record.
    ///
    /// # Errors
    /// The nonce is not 32 bytes of base64url.
    pub fn challenge(&self) -> Result<Challenge, String> {
        let bytes = decode_base64(&self.nonce, CHALLENGE_NONCE_LEN)
            .map_err(|e| format!("challenge nonce: {e}"))?;
        let nonce = <[u8; CHALLENGE_NONCE_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| format!("challenge nonce is not {CHALLENGE_NONCE_LEN} bytes"))?;
        Ok(Challenge {
            verifier: self.verifier,
            nonce,
            issued_at: Timestamp::from_unix_millis(self.issued_at_ms),
        })
    }
}

/// Why a challenge or signup was refused. [`SignupError::code`] is the stable code.
#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    /// Too many requests from this address or prefix.
    #[error("too many signup requests from this {} ({}); retry in {}s", .0.scope.as_str(), .0.key, .0.retry_after.as_secs())]
    RateLimited(Limited),
    /// Too many challenges outstanding on this node.
    #[error("too many outstanding challenges ({max}); retry shortly")]
    ChallengesExhausted {
        /// The bound.
        max: usize,
    },
    /// The body's record does not decode or its signature does not verify.
    #[error("invalid signup record: {0}")]
    InvalidRecord(String),
    /// The record answers another node's challenge.
    #[error(
        "the challenge was issued by {issued_by}, not by this node ({this}); fetch one from this node"
    )]
    ChallengeWrongNode {
        /// Who issued it.
        issued_by: AgoraId,
        /// This node.
        this: AgoraId,
    },
    /// Not a challenge this node issued (or it was forgotten).
    #[error("unknown challenge: this node did not issue it, or no longer remembers it")]
    ChallengeUnknown,
    /// The challenge was answered too late.
    #[error("challenge expired: issued at {issued_at}, valid for {ttl_secs}s, now {now}")]
    ChallengeExpired {
        /// When it was issued.
        issued_at: Timestamp,
        /// Its time-to-live.
        ttl_secs: u64,
        /// Our clock.
        now: Timestamp,
    },
    /// The challenge was already used.
    #[error("challenge already used: each challenge is good for one signup attempt")]
    ChallengeReplayed,
    /// Proof of work missing or invalid, or the credential is not trusted.
    #[error(transparent)]
    Standing(#[from] StandingError),
    /// The account could not be stored or read.
    #[error("account store: {0}")]
    Store(#[from] StoreError),
}

impl SignupError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::ChallengesExhausted { .. } => "challenges_exhausted",
            Self::InvalidRecord(_) => "invalid_record",
            Self::ChallengeWrongNode { .. } => "challenge_wrong_node",
            Self::ChallengeUnknown => "challenge_unknown",
            Self::ChallengeExpired { .. } => "challenge_expired",
            Self::ChallengeReplayed => "challenge_replayed",
            Self::Standing(StandingError::PowRequired { .. }) => "pow_required",
            Self::Standing(StandingError::PowInvalid { .. }) => "pow_invalid",
            Self::Standing(StandingError::Untrusted(_)) => "untrusted",
            Self::Store(_) => "store_error",
        }
    }

    /// When to retry, for refusals that pass with time.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(l) => Some(l.retry_after),
            Self::ChallengesExhausted { .. } => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// Nonces consumed recently, so a replay is told apart from a made-up challenge. Bounded;
/// forgetting one early only turns `challenge_replayed` into `challenge_unknown`.
#[derive(Debug)]
struct Consumed {
    max: usize,
    set: HashSet<[u8; CHALLENGE_NONCE_LEN]>,
    order: VecDeque<([u8; CHALLENGE_NONCE_LEN], Timestamp)>,
}

impl Consumed {
    fn prune(&mut self, now: Timestamp, ttl: Duration) {
        while let Some(&(nonce, issued_at)) = self.order.front() {
            if now < issued_at.saturating_add(ttl) && self.order.len() <= self.max {
                break;
            }
            self.order.pop_front();
            self.set.remove(&nonce);
        }
    }

    fn insert(&mut self, c: &Challenge) {
        if self.set.insert(c.nonce) {
            self.order.push_back((c.nonce, c.issued_at));
        }
    }
}

struct State {
    issuer: ChallengeIssuer,
    consumed: Consumed,
    challenge_limits: SourceLimiter,
    signup_limits: SourceLimiter,
}

/// Everything signup needs; shared by the HTTP handlers.
pub struct SignupService {
    node: AgoraId,
    ttl: Duration,
    max_outstanding: usize,
    store: Arc<dyn Store>,
    state: Mutex<State>,
    trust: RwLock<Arc<TrustStore>>,
    policy: RwLock<Arc<SignupPolicy>>,
}

impl std::fmt::Debug for SignupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupService")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl SignupService {
    /// The service of node `node` with `config`'s `[trust]`, `[signup]` and `[tiers]`,
    /// keeping accounts in `store`.
    ///
    /// # Errors
    /// The trust config or a revocation list cannot be loaded, or a tier is invalid (a
    /// validated config has neither, but revocation files may have changed since).
    pub fn new(node: AgoraId, store: Arc<dyn Store>, config: &NodeConfig) -> Result<Self, String> {
        let (trust, policy) = Self::settings(config)?;
        let s = &config.signup;
        let limiter =
            || SourceLimiter::new(s.per_address, s.per_prefix, s.ipv4_prefix, s.ipv6_prefix);
        Ok(Self {
            node,
            ttl: s.challenge_ttl,
            max_outstanding: s.max_outstanding,
            store,
            state: Mutex::new(State {
                issuer: ChallengeIssuer::new(node, s.challenge_ttl, s.max_outstanding),
                consumed: Consumed {
                    max: s.max_outstanding,
                    set: HashSet::new(),
                    order: VecDeque::new(),
                },
                challenge_limits: limiter(),
                signup_limits: limiter(),
            }),
            trust: RwLock::new(Arc::new(trust)),
            policy: RwLock::new(Arc::new(policy)),
        })
    }

    fn settings(config: &NodeConfig) -> Result<(TrustStore, SignupPolicy), String> {
        let trust = config.trust_store().map_err(|e| format!("[trust]: {e}"))?;
        let policy = SignupPolicy::from_config(config)
            .map_err(|(field, reason)| format!("{field}: {reason}"))?;
        Ok((trust, policy))
    }

    /// Applies a reloaded config's trust roots, revocation lists, proof of work and tiers.
    /// Rate limits and challenge settings keep their values until a restart.
    ///
    /// # Errors
    /// As [`SignupService::new`]; the running settings are then kept.
    pub fn reload(&self, config: &NodeConfig) -> Result<(), String> {
        let (trust, policy) = Self::settings(config)?;
        *self
            .trust
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(trust);
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
        Ok(())
    }

    /// The trust store in force.
    pub fn trust(&self) -> Arc<TrustStore> {
        Arc::clone(
            &self
                .trust
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<SignupPolicy> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Locked state. A poisoned lock is recovered: every completed call leaves the issuer
    /// and limiters consistent.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh challenge for a request from `source`.
    ///
    /// # Errors
    /// [`SignupError::RateLimited`], [`SignupError::ChallengesExhausted`].
    pub fn challenge<R: CryptoRng + ?Sized>(
        &self,
        source: IpAddr,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<IssuedChallenge, SignupError> {
        let pow_bits = self.policy().pow_bits;
        let mut state = self.state();
        state
            .challenge_limits
            .check(source, now)
            .map_err(SignupError::RateLimited)?;
        let c = state.issuer.issue(now, rng).map_err(|e| match e {
            ChallengeError::TooMany { max } => SignupError::ChallengesExhausted { max },
            _ => SignupError::ChallengesExhausted {
                max: self.max_outstanding,
            },
        })?;
        Ok(IssuedChallenge::new(&c, self.ttl, pow_bits))
    }

    /// Signs up the agent whose signed record (base64url) arrived from `source`; on success
    /// its account is stored (replacing an earlier one) and returned.
    ///
    /// # Errors
    /// [`SignupError`], checked in this order: rate limit, record, challenge, standing.
    pub fn signup(
        &self,
        source: IpAddr,
        record_base64: &str,
        now: Timestamp,
    ) -> Result<Account, SignupError> {
        self.state()
            .signup_limits
            .check(source, now)
            .map_err(SignupError::RateLimited)?;
        let bytes = decode_base64(record_base64, Signed::<SignupRecord>::MAX_WIRE_BYTES)
            .map_err(|e| SignupError::InvalidRecord(e.to_string()))?;
        let record = Signed::<SignupRecord>::decode(&bytes, &Ed25519)
            .map_err(|e| SignupError::InvalidRecord(e.to_string()))?;
        let r = record.body();
        self.take_challenge(&r.challenge, now)?;
        let standing = assess(&record, &self.trust(), &self.policy(), now).inspect_err(|e| {
            debug!(agent = %r.agent, reason = %e, "signup refused");
        })?;
        let account = Account {
            agent: standing.agent,
            name: r.name.clone(),
            tier: standing.tier,
            owner: standing.owner,
            attested: standing.attested,
            root: standing.root,
            root_name: standing.root_name,
            claimed_tier: standing.claimed_tier,
            credential_digest: standing.credential_digest,
            credential_expires_at: standing.expires_at,
            signup_node: r.challenge.verifier,
            signed_up_at: record.body().signed_up_at(),
            signup_record: URL_SAFE_NO_PAD.encode(record.as_bytes()),
        };
        account::save(self.store.as_ref(), &account)?;
        info!(agent = %account.agent, tier = %account.tier.name, attested = account.attested, "agent signed up");
        Ok(account)
    }

    /// The account of `agent`, if it signed up here.
    ///
    /// # Errors
    /// [`SignupError::Store`].
    pub fn account(&self, agent: &AgoraId) -> Result<Option<Account>, SignupError> {
        Ok(account::load(self.store.as_ref(), agent)?)
    }

    fn take_challenge(&self, c: &Challenge, now: Timestamp) -> Result<(), SignupError> {
        if c.verifier != self.node {
            return Err(SignupError::ChallengeWrongNode {
                issued_by: c.verifier,
                this: self.node,
            });
        }
        let expired = || SignupError::ChallengeExpired {
            issued_at: c.issued_at,
            ttl_secs: self.ttl.as_secs(),
            now,
        };
        let mut state = self.state();
        state.consumed.prune(now, self.ttl);
        if state.consumed.set.contains(&c.nonce) {
            return Err(SignupError::ChallengeReplayed);
        }
        match state.issuer.consume(c, now) {
            Ok(()) => {
                state.consumed.insert(c);
                Ok(())
            }
            Err(ChallengeError::Stale { .. }) => {
                state.consumed.insert(c);
                Err(expired())
            }
            Err(ChallengeError::Unknown) if now >= c.issued_at.saturating_add(self.ttl) => {
                Err(expired())
            }
            Err(_) => Err(SignupError::ChallengeUnknown),
        }
    }
}

#[cfg(test)]
#[path = "signup_tests.rs"]
mod tests;
