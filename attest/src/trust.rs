//! Trust roots and verification of credentials against them.
//!
//! A [`TrustStore`] holds the issuers this node trusts (from a TOML file, see
//! [`TrustConfig`]), its tolerance for clock skew and chain length, and the revocations it
//! knows. [`TrustStore::verify`] turns a credential into [`EffectiveClaims`] or says
//! precisely why not ([`TrustError`]).
//!
//! Delegation rules: every link but the last must allow delegation; a link may narrow its
//! parent's claims but never widen them (same tier, spending limit no higher, delegation
//! only if the parent allowed it); the effective validity is the intersection of all links.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use agora_protocol::attestation::MAX_CHAIN_LEN;
use agora_protocol::{
    AgoraId, Attestation, Credential, Digest, Revocation, Signed, SignedError, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Largest trust config or revocation list read from disk.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Default tolerance between our clock and an issuer's.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 300;
/// Default longest accepted chain (a root attestation plus two delegations).
pub const DEFAULT_MAX_CHAIN_LEN: usize = 3;

fn default_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECS
}
fn default_chain() -> usize {
    DEFAULT_MAX_CHAIN_LEN
}

/// The trust configuration file (TOML).
///
/// ```toml
/// max_chain_len = 3          # links per credential, root included (1..=8)
/// clock_skew_secs = 300      # tolerated difference between clocks
/// revocation_files = ["revoked.txt"]   # relative to this file; one base64url revocation per line
///
/// [[root]]
/// id = "agora1…"
/// name = "Acme agent fleet"
/// tiers = ["standard", "pro"]          # optional: tiers this root may grant (default: any)
/// max_spending_limit = 100000          # optional cap on the limits it grants
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Longest accepted delegation chain, root attestation included.
    #[serde(default = "default_chain")]
    pub max_chain_len: usize,
    /// Tolerated clock difference in seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    /// Revocation list files, relative to the config file.
    #[serde(default)]
    pub revocation_files: Vec<PathBuf>,
    /// The trusted issuers.
    #[serde(default, rename = "root")]
    pub roots: Vec<TrustRoot>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            max_chain_len: DEFAULT_MAX_CHAIN_LEN,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            revocation_files: Vec::new(),
            roots: Vec::new(),
        }
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// The issuer's id.
    pub id: AgoraId,
    /// A display name.
    pub name: String,
    /// Tiers it may grant; empty means any.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Highest spending limit it may grant.
    #[serde(default)]
    pub max_spending_limit: Option<u64>,
}

/// Why a trust configuration or revocation list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The TOML is invalid (the message names the line and field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported, with its line.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A revocation list line is not a valid signed revocation.
    #[error("{path}:{line}: not a valid revocation: {source}")]
    Revocation {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why it was rejected.
        #[source]
        source: agora_protocol::Error,
    },
}

/// Why a credential is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The credential could not be parsed.
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// A link's signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The root issuer is not a trust root.
    #[error("unknown issuer {issuer}")]
    UnknownIssuer {
        /// The untrusted issuer.
        issuer: AgoraId,
    },
    /// More links than the trust config allows.
    #[error("chain too long: {len} links, at most {max} allowed")]
    ChainTooLong {
        /// Links in the credential.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A link has expired.
    #[error("expired at {expires_at} (link {link}, now {now})")]
    Expired {
        /// 0-based index of the link, root first.
        link: usize,
        /// When it expired.
        expires_at: Timestamp,
        /// Our clock.
        now: Timestamp,
    },
    /// A link is not valid yet.
    #[error("not valid before {not_before} (link {link}, now {now})")]
    NotYetValid {
        /// 0-based index of the link.
        link: usize,
        /// When it becomes valid.
        not_before: Timestamp,
        /// Our clock.
        now: Timestamp,
    },
    /// A link claims to be issued further in the future than the skew tolerance.
    #[error("clock skew beyond tolerance: link {link} issued at {issued_at}, now {now}")]
    ClockSkew {
        /// 0-based index of the link.
        link: usize,
        /// Its issue time.
        issued_at: Timestamp,
        /// Our clock.
        now: Timestamp,
    },
    /// A link was revoked by its issuer.
    #[error("revoked by {issuer} at {revoked_at}: {reason}")]
    Revoked {
        /// The revoking issuer.
        issuer: AgoraId,
        /// When.
        revoked_at: Timestamp,
        /// The issuer's reason.
        reason: String,
    },
    /// A link's issuer was not allowed to delegate.
    #[error(
        "delegation not allowed: link {link} is issued by {issuer}, whose attestation forbids delegation"
    )]
    DelegationNotAllowed {
        /// 0-based index of the offending link.
        link: usize,
        /// Its issuer.
        issuer: AgoraId,
    },
    /// A link widens what its parent granted, or the root grants beyond its configured scope.
    #[error("link {link} exceeds what its issuer may grant: {reason}")]
    Exceeds {
        /// 0-based index of the offending link.
        link: usize,
        /// What it widens.
        reason: String,
    },
}

impl From<SignedError> for TrustError {
    fn from(e: SignedError) -> Self {
        match e {
            SignedError::Verify(v) => Self::BadSignature(v.to_string()),
            SignedError::Decode(d) => Self::Malformed(d.to_string()),
        }
    }
}

/// What a verified credential grants its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveClaims {
    /// The key the credential is about.
    pub holder: AgoraId,
    /// The trust root it chains to.
    pub root: AgoraId,
    /// The root's display name.
    pub root_name: String,
    /// Links in the chain (1 = issued directly by the root).
    pub chain_len: usize,
    /// The tier.
    pub tier: String,
    /// The smallest spending limit along the chain.
    pub spending_limit_credits: u64,
    /// The owner who approves spending above the limit: the nearest one named in the chain.
    pub owner: Option<AgoraId>,
    /// Whether the holder may delegate further.
    pub may_delegate: bool,
    /// The holder's organisation (nearest in the chain).
    pub organisation: Option<String>,
    /// The holder's model or runtime name (leaf).
    pub model: Option<String>,
    /// Labels, leaf values overriding ancestors'.
    pub labels: BTreeMap<String, String>,
    /// Valid from (latest `not_before` along the chain).
    pub not_before: Timestamp,
    /// Valid until (earliest `expires_at` along the chain).
    pub expires_at: Timestamp,
    /// Digest of the leaf attestation (the credit key: issuer, subject, nonce are inside).
    pub leaf_digest: Digest,
}

/// Verifies credentials against trust roots and revocations.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    max_chain_len: usize,
    clock_skew_ms: u64,
    roots: HashMap<AgoraId, TrustRoot>,
    revoked: HashMap<Digest, Revocation>,
}

fn read_bounded(path: &Path) -> Result<String, TrustConfigError> {
    let io = |source| TrustConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() > MAX_FILE_BYTES {
        return Err(TrustConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

/// Parses a revocation list: one base64url signed revocation per line; blank lines and
/// lines starting with `#` are ignored. Every revocation's signature is verified.
///
/// # Errors
/// [`TrustConfigError::Revocation`] naming the line.
pub fn parse_revocations(
    path: &Path,
    text: &str,
) -> Result<Vec<Signed<Revocation>>, TrustConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = Signed::<Revocation>::from_base64(line).map_err(|source| {
            TrustConfigError::Revocation {
                path: path.to_owned(),
                line: i + 1,
                source,
            }
        })?;
        out.push(r);
    }
    Ok(out)
}

/// Reads and parses a revocation list file.
///
/// # Errors
/// I/O or [`parse_revocations`] errors.
pub fn load_revocations(path: &Path) -> Result<Vec<Signed<Revocation>>, TrustConfigError> {
    parse_revocations(path, &read_bounded(path)?)
}

impl TrustStore {
    /// A store from a parsed config (revocation files are not read; see [`TrustStore::load`]).
    ///
    /// # Errors
    /// [`TrustConfigError::Invalid`] for out-of-range values or duplicate roots; `origin`
    /// names the source in messages.
    pub fn from_config(config: &TrustConfig, origin: &Path) -> Result<Self, TrustConfigError> {
        let invalid = |field, reason: String| TrustConfigError::Invalid {
            path: origin.to_owned(),
            field,
            reason,
        };
        if config.max_chain_len == 0 || config.max_chain_len > MAX_CHAIN_LEN {
            return Err(invalid(
                "max_chain_len",
                format!("{} is not in 1..={MAX_CHAIN_LEN}", config.max_chain_len),
            ));
        }
        if config.clock_skew_secs > 86_400 {
            return Err(invalid(
                "clock_skew_secs",
                format!("{} is more than a day", config.clock_skew_secs),
            ));
        }
        let mut roots = HashMap::new();
        for root in &config.roots {
            if roots.insert(root.id, root.clone()).is_some() {
                return Err(invalid("root.id", format!("{} is listed twice", root.id)));
            }
        }
        Ok(Self {
            max_chain_len: config.max_chain_len,
            clock_skew_ms: config.clock_skew_secs.saturating_mul(1000),
            roots,
            revoked: HashMap::new(),
        })
    }

    /// Parses a trust config's text; `path` is used in messages and to resolve revocation
    /// files.
    ///
    /// # Errors
    /// [`TrustConfigError`] naming the file, line and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TrustConfigError> {
        let config: TrustConfig = toml::from_str(text).map_err(|e| TrustConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let mut store = Self::from_config(&config, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in &config.revocation_files {
            for r in load_revocations(&base.join(file))? {
                store.add_revocation(r);
            }
        }
        Ok(store)
    }

    /// Loads a trust config file and the revocation lists it names.
    ///
    /// # Errors
    /// [`TrustConfigError`].
    pub fn load(path: &Path) -> Result<Self, TrustConfigError> {
        Self::parse(path, &read_bounded(path)?)
    }

    /// Records a (verified) revocation. It takes effect for the attestation with that digest
    /// only if the revocation's signer is that attestation's issuer.
    pub fn add_revocation(&mut self, revocation: Signed<Revocation>) {
        let body = revocation.body().clone();
        self.revoked.entry(body.attestation).or_insert(body);
    }

    /// The number of known revocations.
    pub fn revocation_count(&self) -> usize {
        self.revoked.len()
    }

    /// The configured trust roots.
    pub fn roots(&self) -> impl Iterator<Item = &TrustRoot> {
        self.roots.values()
    }

    /// Parses and verifies a credential in its printable (base64url) form.
    ///
    /// # Errors
    /// [`TrustError`].
    pub fn verify_base64(&self, text: &str, now: Timestamp) -> Result<EffectiveClaims, TrustError> {
        let credential = Credential::from_base64(text)?;
        self.verify(&credential, now)
    }

    /// Verifies a decoded credential at time `now`.
    ///
    /// Signatures were checked when it was decoded; this checks trust, time, revocation and
    /// delegation rules, in an order that reports the most fundamental problem first.
    ///
    /// # Errors
    /// [`TrustError`].
    pub fn verify(
        &self,
        credential: &Credential,
        now: Timestamp,
    ) -> Result<EffectiveClaims, TrustError> {
        let root_att = credential.root().body();
        let root = self
            .roots
            .get(&root_att.issuer)
            .ok_or(TrustError::UnknownIssuer {
                issuer: root_att.issuer,
            })?;
        if credential.len() > self.max_chain_len {
            return Err(TrustError::ChainTooLong {
                len: credential.len(),
                max: self.max_chain_len,
            });
        }
        self.check_root_scope(root, root_att)?;
        let skew = core::time::Duration::from_millis(self.clock_skew_ms);
        let mut seen = HashSet::new();
        let mut parent: Option<&Attestation> = None;
        for (i, link) in credential.chain().enumerate() {
            let a = link.body();
            if !seen.insert(a.subject) {
                return Err(TrustError::Malformed(format!(
                    "link {i} repeats subject {} (a cycle)",
                    a.subject
                )));
            }
            if a.issued_at > now.saturating_add(skew) {
                return Err(TrustError::ClockSkew {
                    link: i,
                    issued_at: a.issued_at,
                    now,
                });
            }
            if a.not_before > now.saturating_add(skew) {
                return Err(TrustError::NotYetValid {
                    link: i,
                    not_before: a.not_before,
                    now,
                });
            }
            if now >= a.expires_at.saturating_add(skew) {
                return Err(TrustError::Expired {
                    link: i,
                    expires_at: a.expires_at,
                    now,
                });
            }
            if let Some(r) = self.revoked.get(&link.digest())
                && r.issuer == a.issuer
            {
                return Err(TrustError::Revoked {
                    issuer: r.issuer,
                    revoked_at: r.revoked_at,
                    reason: r.reason.clone(),
                });
            }
            if let Some(p) = parent {
                check_narrows(i, p, a)?;
            }
            parent = Some(a);
        }
        Ok(effective(credential, root))
    }

    fn check_root_scope(&self, root: &TrustRoot, a: &Attestation) -> Result<(), TrustError> {
        if !root.tiers.is_empty() && !root.tiers.contains(&a.claims.tier) {
            return Err(TrustError::Exceeds {
                link: 0,
                reason: format!(
                    "tier {:?} is not among those {} may grant ({})",
                    a.claims.tier,
                    root.name,
                    root.tiers.join(", ")
                ),
            });
        }
        if let Some(max) = root.max_spending_limit
            && a.claims.spending_limit_credits > max
        {
            return Err(TrustError::Exceeds {
                link: 0,
                reason: format!(
                    "spending limit {} is above {}'s cap of {max}",
                    a.claims.spending_limit_credits, root.name
                ),
            });
        }
        Ok(())
    }
}

fn check_narrows(i: usize, parent: &Attestation, child: &Attestation) -> Result<(), TrustError> {
    if !parent.claims.may_delegate {
        return Err(TrustError::DelegationNotAllowed {
            link: i,
            issuer: child.issuer,
        });
    }
    let exceeds = |reason: String| TrustError::Exceeds { link: i, reason };
    if child.claims.tier != parent.claims.tier {
        return Err(exceeds(format!(
            "tier {:?} differs from the parent's {:?}",
            child.claims.tier, parent.claims.tier
        )));
    }
    if child.claims.spending_limit_credits > parent.claims.spending_limit_credits {
        return Err(exceeds(format!(
            "spending limit {} is above the parent's {}",
            child.claims.spending_limit_credits, parent.claims.spending_limit_credits
        )));
    }
    Ok(())
}

fn effective(credential: &Credential, root: &TrustRoot) -> EffectiveClaims {
    let leaf = credential.leaf().body();
    let mut out = EffectiveClaims {
        holder: leaf.subject,
        root: root.id,
        root_name: root.name.clone(),
        chain_len: credential.len(),
        tier: leaf.claims.tier.clone(),
        spending_limit_credits: u64::MAX,
        owner: None,
        may_delegate: leaf.claims.may_delegate,
        organisation: None,
        model: leaf.claims.model.clone(),
        labels: BTreeMap::new(),
        not_before: Timestamp::EPOCH,
        expires_at: Timestamp::MAX,
        leaf_digest: credential.leaf().digest(),
    };
    for link in credential.chain() {
        let a = link.body();
        out.spending_limit_credits = out
            .spending_limit_credits
            .min(a.claims.spending_limit_credits);
        out.owner = a.claims.owner.or(out.owner);
        out.organisation = a.claims.organisation.clone().or(out.organisation.take());
        out.labels.extend(a.claims.labels.clone());
        out.not_before = out.not_before.max(a.not_before);
        out.expires_at = out.expires_at.min(a.expires_at);
    }
    out
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
