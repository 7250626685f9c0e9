//! Node tokens: a short bearer token that authenticates an agent to this node only, and lets
//! this node act for it within a delegation the agent signed to the node.
//!
//! The agent signs a [`Delegation`] whose delegate is this node (scoped to operations, capped
//! in spend, expiring) and exchanges it once at `POST /v1/tokens`, with its signup record. The
//! node answers with a random token. The token is only a key into this node's memory: it means
//! nothing at any other node, ends with the delegation (at most [`MAX_TOKEN_TTL`] after it
//! was issued) or when revoked, and is forgotten when the node restarts (the agent asks
//! again). Under it, the node's `/mcp` tools sign as the delegate with the node's own key and
//! attach the delegation: providers verify the chain (agent → delegation → node) and its
//! scope, so the node cannot do more than the agent signed.
//!
//! Tokens are kept as their SHA-256, so the table never holds a usable token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agora_protocol::lease::{Delegation, OpKind};
use agora_protocol::signup::SignupRecord;
use agora_protocol::{AgoraId, Digest, Signed, Timestamp};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::CryptoRng;
use sha2::{Digest as _, Sha256};

/// Every token starts with this, so it is recognisable in logs and configs.
pub const TOKEN_PREFIX: &str = "agt_";
/// Longest a token lives, whatever its delegation says.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most live tokens on a node.
pub const MAX_TOKENS: usize = 10_000;
/// Most live tokens per agent.
pub const MAX_TOKENS_PER_AGENT: usize = 16;

/// Why a token was not issued or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The delegation is for another key.
    #[error("the delegation's delegate is {delegate}, not this node ({node})")]
    WrongNode {
        /// Whom the delegation names.
        delegate: AgoraId,
        /// This node.
        node: AgoraId,
    },
    /// Not yet valid, or already expired.
    #[error("the delegation is not valid now (valid from {from} until {until})")]
    NotNow {
        /// Its `issued_at`.
        from: Timestamp,
        /// Its `expires_at`.
        until: Timestamp,
    },
    /// Already exchanged for a token.
    #[error("this delegation was already exchanged for a token: sign a new one")]
    Reused,
    /// The signup record is another agent's.
    #[error("the signup record is {record}'s, not the delegating agent's ({agent})")]
    SignupMismatch {
        /// The record's agent.
        record: AgoraId,
        /// The delegation's agent.
        agent: AgoraId,
    },
    /// Too many tokens live, on the node or for this agent.
    #[error("too many live tokens ({0}): revoke one or wait for one to expire")]
    Full(&'static str),
    /// Unknown, revoked or expired.
    #[error("unknown, revoked or expired token: exchange a delegation at POST /v1/tokens")]
    Unknown,
}

impl TokenError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongNode { .. } => "delegation_wrong_node",
            Self::NotNow { .. } => "delegation_expired",
            Self::Reused => "delegation_reused",
            Self::SignupMismatch { .. } => "signup_mismatch",
            Self::Full(_) => "tokens_exhausted",
            Self::Unknown => "bad_token",
        }
    }
}

/// What a live token stands for.
#[derive(Debug, Clone)]
pub struct Session {
    /// The agent.
    pub agent: AgoraId,
    /// What it allowed this node.
    pub delegation: Arc<Signed<Delegation>>,
    /// Its signup record, attached to lease requests.
    pub signup: Arc<Signed<SignupRecord>>,
    /// When the token ends.
    pub expires_at: Timestamp,
}

impl Session {
    /// Whether the delegation allows `op` at `now`.
    pub fn allows(&self, op: OpKind, now: Timestamp) -> bool {
        self.delegation.body().allows(op, now)
    }
}

/// A token just issued, and what it stands for.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The bearer token (shown once).
    pub token: String,
    /// What it stands for.
    pub session: Session,
}

#[derive(Debug, Default)]
struct Table {
    /// SHA-256 of a token → its session.
    live: HashMap<[u8; 32], Session>,
    /// Delegations exchanged, until they expire (so each buys one token).
    spent: HashMap<Digest, Timestamp>,
}

impl Table {
    fn prune(&mut self, now: Timestamp) {
        self.live.retain(|_, s| s.expires_at > now);
        self.spent.retain(|_, until| *until > now);
    }
}

/// The node's live tokens.
#[derive(Debug)]
pub struct Tokens {
    node: AgoraId,
    table: Mutex<Table>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// No tokens yet, for the node `node`.
    pub fn new(node: AgoraId) -> Self {
        Self {
            node,
            table: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exchanges `delegation` (checked: for this node, valid now, never exchanged before)
    /// and the agent's `signup` record for a new token.
    ///
    /// # Errors
    /// [`TokenError`].
    pub fn issue(
        &self,
        delegation: Signed<Delegation>,
        signup: Signed<SignupRecord>,
        now: Timestamp,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Issued, TokenError> {
        let d = delegation.body();
        if d.delegate != self.node {
            return Err(TokenError::WrongNode {
                delegate: d.delegate,
                node: self.node,
            });
        }
        if now < d.issued_at || now >= d.expires_at {
            return Err(TokenError::NotNow {
                from: d.issued_at,
                until: d.expires_at,
            });
        }
        if signup.body().agent != d.agent {
            return Err(TokenError::SignupMismatch {
                record: signup.body().agent,
                agent: d.agent,
            });
        }
        let expires_at = d.expires_at.min(now.saturating_add(MAX_TOKEN_TTL));
        let agent = d.agent;
        let mut table = self.table();
        table.prune(now);
        let digest = delegation.digest();
        if table.spent.contains_key(&digest) {
            return Err(TokenError::Reused);
        }
        if table.live.len() >= MAX_TOKENS {
            return Err(TokenError::Full("on this node"));
        }
        if table.live.values().filter(|s| s.agent == agent).count() >= MAX_TOKENS_PER_AGENT {
            return Err(TokenError::Full("for this agent"));
        }
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let until = d.expires_at;
        let session = Session {
            agent,
            delegation: Arc::new(delegation),
            signup: Arc::new(signup),
            expires_at,
        };
        table.spent.insert(digest, until);
        table.live.insert(hash(&token), session.clone());
        Ok(Issued { token, session })
    }

    /// The session behind `token` at `now`.
    ///
    /// # Errors
    /// [`TokenError::Unknown`] when it is not live.
    pub fn find(&self, token: &str, now: Timestamp) -> Result<Session, TokenError> {
        let table = self.table();
        table
            .live
            .get(&hash(token))
            .filter(|s| s.expires_at > now)
            .cloned()
            .ok_or(TokenError::Unknown)
    }

    /// Ends `token` at once; whether it was live.
    pub fn revoke(&self, token: &str) -> bool {
        self.table().live.remove(&hash(token)).is_some()
    }

    /// How many tokens are live (some may have just expired).
    pub fn len(&self) -> usize {
        self.table().live.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An unattested signup record of `agent` at `node` (tests).
#[cfg(test)]
pub(crate) fn signup_record(agent: &agora_attest::Identity, node: AgoraId) -> Signed<SignupRecord> {
    let record = SignupRecord {
        agent: agent.agora_id(),
        challenge: agora_protocol::challenge::Challenge {
            verifier: node,
            nonce: [7; 32],
            issued_at: Timestamp::from_unix_secs(1),
        },
        credential: None,
        pow: agora_protocol::signup::ProofOfWork { bits: 0, nonce: 0 },
        name: None,
    };
    #[allow(clippy::unwrap_used)]
    Signed::sign(record, agent).unwrap()
}

/// The token in an `Authorization: Bearer …` header value, if it is one of ours.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.starts_with(TOKEN_PREFIX)).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use agora_attest::Identity;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_unix_secs(s)
    }

    struct Fixture {
        agent: Identity,
        node: Identity,
        signup: Signed<SignupRecord>,
    }

    fn fixture() -> Fixture {
        let agent = Identity::generate(&mut rand::rng());
        let node = Identity::generate(&mut rand::rng());
        let signup = signup_record(&agent, node.agora_id());
        Fixture {
            agent,
            node,
            signup,
        }
    }

    fn delegation(f: &Fixture, to: AgoraId, from: u64, until: u64) -> Signed<Delegation> {
        Signed::sign(
            Delegation {
                agent: f.agent.agora_id(),
                delegate: to,
                ops: vec![OpKind::Lease, OpKind::Exec],
                spend_cap_credits: 10,
                issued_at: t(from),
                expires_at: t(until),
            },
            &f.agent,
        )
        .unwrap()
    }

    /// Issues a token for `d` with `f`'s signup record at `now` (seconds).
    fn issue(
        tokens: &Tokens,
        f: &Fixture,
        d: Signed<Delegation>,
        now: u64,
    ) -> Result<Issued, TokenError> {
        tokens.issue(d, f.signup.clone(), t(now), &mut rand::rng())
    }

    #[test]
    fn a_delegation_to_this_node_buys_one_token_that_works_here_until_it_ends() {
        let f = fixture();
        let tokens = Tokens::new(f.node.agora_id());
        let d = delegation(&f, f.node.agora_id(), 10, 100);
        let issued = issue(&tokens, &f, d.clone(), 20).unwrap();
        assert!(issued.token.starts_with(TOKEN_PREFIX));
        assert_eq!(issued.session.expires_at, t(100));
        let s = tokens.find(&issued.token, t(50)).unwrap();
        assert_eq!(s.agent, f.agent.agora_id());
        assert!(s.allows(OpKind::Exec, t(50)));
        assert!(!s.allows(OpKind::Stop, t(50)));
        // Once only.
        assert_eq!(issue(&tokens, &f, d, 21).unwrap_err(), TokenError::Reused);
        // Ends with the delegation; an unknown token is refused alike.
        assert_eq!(
            tokens.find(&issued.token, t(100)).unwrap_err(),
            TokenError::Unknown
        );
        assert_eq!(
            tokens.find("agt_nope", t(50)).unwrap_err(),
            TokenError::Unknown
        );
    }

    #[test]
    fn revoked_tokens_stop_working() {
        let f = fixture();
        let tokens = Tokens::new(f.node.agora_id());
        let issued = issue(&tokens, &f, delegation(&f, f.node.agora_id(), 10, 100), 20).unwrap();
        assert!(tokens.revoke(&issued.token));
        assert!(!tokens.revoke(&issued.token));
        assert!(tokens.find(&issued.token, t(30)).is_err());
    }

    #[test]
    fn delegations_for_another_key_or_time_or_agent_are_refused() {
        let f = fixture();
        let tokens = Tokens::new(f.node.agora_id());
        let other = Identity::generate(&mut rand::rng()).agora_id();
        let e = issue(&tokens, &f, delegation(&f, other, 10, 100), 20).unwrap_err();
        assert_eq!(e.code(), "delegation_wrong_node");
        for now in [5, 100, 200] {
            let e =
                issue(&tokens, &f, delegation(&f, f.node.agora_id(), 10, 100), now).unwrap_err();
            assert_eq!(e.code(), "delegation_expired", "at {now}");
        }
        let stranger = fixture();
        let e = tokens
            .issue(
                delegation(&f, f.node.agora_id(), 10, 100),
                stranger.signup,
                t(20),
                &mut rand::rng(),
            )
            .unwrap_err();
        assert_eq!(e.code(), "signup_mismatch");
    }

    #[test]
    fn a_token_lives_at_most_a_day_and_an_agent_holds_a_bounded_number() {
        let f = fixture();
        let tokens = Tokens::new(f.node.agora_id());
        let week = 7 * 24 * 3600;
        let first = issue(&tokens, &f, delegation(&f, f.node.agora_id(), 10, week), 10).unwrap();
        assert_eq!(
            first.session.expires_at,
            t(10).saturating_add(MAX_TOKEN_TTL)
        );
        for i in 1..MAX_TOKENS_PER_AGENT {
            let until = week + u64::try_from(i).unwrap();
            issue(
                &tokens,
                &f,
                delegation(&f, f.node.agora_id(), 10, until),
                10,
            )
            .unwrap();
        }
        let e = issue(
            &tokens,
            &f,
            delegation(&f, f.node.agora_id(), 10, week * 2),
            10,
        )
        .unwrap_err();
        assert_eq!(e.code(), "tokens_exhausted");
        assert_eq!(tokens.len(), MAX_TOKENS_PER_AGENT);
    }

    #[test]
    fn bearer_headers_are_read_leniently_but_only_for_our_tokens() {
        assert_eq!(bearer("Bearer agt_abc"), Some("agt_abc"));
        assert_eq!(bearer("  bearer   agt_abc "), Some("agt_abc"));
        assert_eq!(bearer("Bearer other"), None);
        assert_eq!(bearer("Basic agt_abc"), None);
        assert_eq!(bearer("agt_abc"), None);
    }
}
