//! [`Genesis`]: the quota committee's founding file, and [`Committee`], its checked form.
//!
//! ```toml
//! f = 1
//! validators = ["agora1…", "agora1…", "agora1…", "agora1…"]   # n = 3f + 1
//! issuers = ["agora1…"]                 # roots whose attestations credit quota
//! start_unix_secs = 1800000000          # epoch 0 begins here
//! epoch_secs = 86400
//!
//! [free_tier]
//! allowance_micro = 10000000            # credited per grant
//! cap_per_epoch = 1000                  # grants network-wide per epoch
//!
//! [locks]                               # optional, these are the defaults
//! max_lifetime_secs = 259200
//! settle_grace_secs = 3600
//! max_open = 64
//! ```
//!
//! Every member of the network must load the same genesis: votes name its digest, so a
//! vote made for one committee never counts in another's certificate.

use core::time::Duration;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::id::AgoraId;
use crate::signed::Digest;
use crate::time::Timestamp;

/// Most validators a committee may have (f ≤ 21).
pub const MAX_VALIDATORS: usize = 64;

/// Most trusted issuers a genesis may list.
pub const MAX_ISSUERS: usize = 256;

/// Domain prefix of the genesis digest.
const GENESIS_DOMAIN: &[u8] = b"agora/quota-genesis/v1\0";

/// The committee's founding file, as written (TOML; JSON through serde works as well).
/// [`Committee::new`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// How many validators may misbehave; the committee has `3f + 1` members.
    pub f: u32,
    /// The validators' ids (any order, no duplicates).
    pub validators: Vec<AgoraId>,
    /// Keys whose attestations (directly or through a delegation chain) credit quota.
    #[serde(default)]
    pub issuers: Vec<AgoraId>,
    /// When epoch 0 begins, seconds since the Unix epoch.
    pub start_unix_secs: u64,
    /// Length of an epoch, seconds (free-tier grants are capped per epoch).
    pub epoch_secs: u64,
    /// The free-tier allowance.
    pub free_tier: FreeTier,
    /// Rules for locks.
    #[serde(default)]
    pub locks: LockRules,
}

/// The genesis allowance every account may claim once per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeTier {
    /// Micro-credits credited per grant (0 disables the free tier).
    pub allowance_micro: u64,
    /// Grants certified network-wide per epoch at most (0 disables the free tier).
    pub cap_per_epoch: u32,
}

/// Bounds on locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockRules {
    /// Longest a lock may last from when it is voted, seconds.
    pub max_lifetime_secs: u64,
    /// After a lock's expiry, how long its provider may still settle it; only then may
    /// anyone unlock it. Seconds.
    pub settle_grace_secs: u64,
    /// Most open locks per account.
    pub max_open: u32,
}

impl Default for LockRules {
    /// 72 h locks (the contained tier's longest lease), 1 h to settle, 64 open locks.
    fn default() -> Self {
        Self {
            max_lifetime_secs: 72 * 3600,
            settle_grace_secs: 3600,
            max_open: 64,
        }
    }
}

/// Why a genesis is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// The text is not a genesis file (the message names the line and the field).
    #[error("genesis does not parse: {0}")]
    Parse(String),
    /// The number of validators is not `3f + 1`.
    #[error("{n} validators listed, but f = {f} needs exactly {expected}")]
    NotThreeFPlusOne {
        /// Validators listed.
        n: usize,
        /// The `f` given.
        f: u32,
        /// `3f + 1`.
        expected: u64,
    },
    /// More validators than [`MAX_VALIDATORS`].
    #[error("{n} validators, at most {MAX_VALIDATORS} allowed")]
    TooManyValidators {
        /// Validators listed.
        n: usize,
    },
    /// More issuers than [`MAX_ISSUERS`].
    #[error("{n} issuers, at most {MAX_ISSUERS} allowed")]
    TooManyIssuers {
        /// Issuers listed.
        n: usize,
    },
    /// A validator is listed twice.
    #[error("validator {0} is listed twice")]
    DuplicateValidator(AgoraId),
    /// An issuer is listed twice.
    #[error("issuer {0} is listed twice")]
    DuplicateIssuer(AgoraId),
    /// A field that must be positive is zero.
    #[error("{field} must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
}

impl Genesis {
    /// Parses a genesis from TOML text and checks it.
    ///
    /// # Errors
    /// [`GenesisError::Parse`] (with the line and field) or any check of [`Committee::new`].
    pub fn from_toml(text: &str) -> Result<Committee, GenesisError> {
        let genesis: Self = toml::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        Committee::new(genesis)
    }

    /// The genesis as TOML text (what `from_toml` reads back).
    ///
    /// # Errors
    /// [`GenesisError::Parse`] if serialization fails (it does not for valid values).
    pub fn to_toml(&self) -> Result<String, GenesisError> {
        toml::to_string(self).map_err(|e| GenesisError::Parse(e.to_string()))
    }
}

/// A checked [`Genesis`]: members sorted, quorum and digest computed. Cloning shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    inner: Arc<Inner>,
}

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    genesis: Genesis,
    digest: Digest,
}

impl Committee {
    /// Checks `genesis`: `3f + 1` distinct validators (at most [`MAX_VALIDATORS`]), distinct
    /// issuers, a positive epoch length, lock lifetime and open-lock bound.
    ///
    /// # Errors
    /// The first [`GenesisError`] found.
    pub fn new(mut genesis: Genesis) -> Result<Self, GenesisError> {
        let n = genesis.validators.len();
        if n > MAX_VALIDATORS {
            return Err(GenesisError::TooManyValidators { n });
        }
        let expected = 3 * u64::from(genesis.f) + 1;
        if u64::try_from(n).ok() != Some(expected) {
            return Err(GenesisError::NotThreeFPlusOne {
                n,
                f: genesis.f,
                expected,
            });
        }
        if genesis.issuers.len() > MAX_ISSUERS {
            return Err(GenesisError::TooManyIssuers {
                n: genesis.issuers.len(),
            });
        }
        genesis.validators.sort();
        if let Some(dup) = first_duplicate(&genesis.validators) {
            return Err(GenesisError::DuplicateValidator(dup));
        }
        genesis.issuers.sort();
        if let Some(dup) = first_duplicate(&genesis.issuers) {
            return Err(GenesisError::DuplicateIssuer(dup));
        }
        for (field, value) in [
            ("epoch_secs", genesis.epoch_secs),
            ("locks.max_lifetime_secs", genesis.locks.max_lifetime_secs),
            ("locks.max_open", u64::from(genesis.locks.max_open)),
        ] {
            if value == 0 {
                return Err(GenesisError::Zero { field });
            }
        }
        let mut bytes = GENESIS_DOMAIN.to_vec();
        bytes.extend(
            codec::encode(&genesis, usize::MAX).map_err(|e| GenesisError::Parse(e.to_string()))?,
        );
        let digest = Digest::of(&bytes);
        Ok(Self {
            inner: Arc::new(Inner { genesis, digest }),
        })
    }

    /// The genesis (validators and issuers sorted).
    pub fn genesis(&self) -> &Genesis {
        &self.inner.genesis
    }

    /// The digest votes name: SHA-256 over a domain prefix and the canonical encoding.
    pub fn digest(&self) -> Digest {
        self.inner.digest
    }

    /// The validators, ascending.
    pub fn validators(&self) -> &[AgoraId] {
        &self.inner.genesis.validators
    }

    /// Whether `id` is a validator.
    pub fn is_member(&self, id: &AgoraId) -> bool {
        self.validators().binary_search(id).is_ok()
    }

    /// Whether `id` is a trusted issuer.
    pub fn is_issuer(&self, id: &AgoraId) -> bool {
        self.inner.genesis.issuers.binary_search(id).is_ok()
    }

    /// How many validators may misbehave.
    pub fn f(&self) -> usize {
        // `f` ≤ 21: checked against MAX_VALIDATORS.
        usize::try_from(self.inner.genesis.f).unwrap_or(usize::MAX)
    }

    /// Votes a certificate needs: `2f + 1`.
    pub fn quorum(&self) -> usize {
        2 * self.f() + 1
    }

    /// The epoch `now` falls in (`None` before the start).
    pub fn epoch_at(&self, now: Timestamp) -> Option<u64> {
        let start = Timestamp::from_unix_secs(self.inner.genesis.start_unix_secs);
        if now < start {
            return None;
        }
        let secs = now.saturating_duration_since(start).as_secs();
        Some(secs / self.inner.genesis.epoch_secs.max(1))
    }

    /// When `epoch` begins.
    pub fn epoch_start(&self, epoch: u64) -> Timestamp {
        let g = &self.inner.genesis;
        Timestamp::from_unix_secs(g.start_unix_secs)
            .saturating_add(Duration::from_secs(epoch.saturating_mul(g.epoch_secs)))
    }

    /// The free-tier allowance and cap.
    pub fn free_tier(&self) -> FreeTier {
        self.inner.genesis.free_tier
    }

    /// Whether free-tier grants exist at all.
    pub fn free_tier_enabled(&self) -> bool {
        let ft = self.free_tier();
        ft.allowance_micro > 0 && ft.cap_per_epoch > 0
    }

    /// The lock rules.
    pub fn locks(&self) -> LockRules {
        self.inner.genesis.locks
    }

    /// How long after a lock's expiry its provider may settle it.
    pub fn settle_grace(&self) -> Duration {
        Duration::from_secs(self.inner.genesis.locks.settle_grace_secs)
    }

    /// The longest lock.
    pub fn max_lock_lifetime(&self) -> Duration {
        Duration::from_secs(self.inner.genesis.locks.max_lifetime_secs)
    }
}

fn first_duplicate(sorted: &[AgoraId]) -> Option<AgoraId> {
    sorted.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}
