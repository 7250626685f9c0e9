//! Agent signup settings: `[signup]` (proof of work, challenges, rate limits) and the
//! `[tiers.<name>]` tables of limits. Trust roots are `[trust]` (see
//! [`agora_attest::TrustConfig`]).
//!
//! ```toml
//! [signup]
//! pow_bits = 16              # proof of work for unattested agents (0 to 32)
//! challenge_ttl = "2m"       # a challenge must be answered within this
//! max_outstanding = 10000    # challenges issued and not yet answered
//! per_address = "10/min"     # signups (and challenges) per source address: burst/period
//! per_prefix = "100/min"     # ... per /24 (IPv4) or /56 (IPv6)
//! ipv4_prefix = 24
//! ipv6_prefix = 56
//!
//! [tiers.contained]          # what unattested agents get (built in; override any field)
//! max_vcpu = 1.0
//! max_memory_mib = 1024
//! max_disk_mib = 1024
//! max_lifetime = "72h"
//! max_concurrent = 3
//! egress = true
//! egress_ports = [53, 80, 443]   # or "any"; SMTP ports are never allowed
//! max_file_mib = 64
//! spending_limit_credits = 10    # the free allowance
//!
//! [tiers.pro]                # a tier attestations may name; unset fields as `contained`
//! max_vcpu = 8.0
//! max_memory_mib = 16384
//! egress_ports = "any"
//! ```
//!
//! For attested agents the spending limit comes from the attestation, not from the tier.

use core::time::Duration;
use std::collections::BTreeMap;

use agora_protocol::bounds;
use agora_protocol::rate::RateLimit;
use agora_protocol::signup::{CONTAINED_TIER, MAX_POW_BITS, TierLimits};
use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Ports no tier may open egress to: SMTP, submission and SMTPS.
pub const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// `[signup]`: abuse controls for `POST /v1/signup`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupSection {
    /// Proof-of-work bits an unattested signup must show (0 turns it off).
    #[serde(default = "default_pow_bits")]
    pub pow_bits: u8,
    /// How long a challenge stays answerable.
    #[serde(default = "default_challenge_ttl", with = "super::duration")]
    pub challenge_ttl: Duration,
    /// Most challenges outstanding at once.
    #[serde(default = "default_max_outstanding")]
    pub max_outstanding: usize,
    /// Challenges and signups per source address (`"N/period"`: a burst of N, refilled N
    /// per period).
    #[serde(default = "default_per_address", deserialize_with = "rate")]
    pub per_address: RateLimit,
    /// Challenges and signups per source prefix (`ipv4_prefix`/`ipv6_prefix` bits).
    #[serde(default = "default_per_prefix", deserialize_with = "rate")]
    pub per_prefix: RateLimit,
    /// IPv4 prefix length grouping source addresses.
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 prefix length grouping source addresses.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

fn default_pow_bits() -> u8 {
    16
}
fn default_challenge_ttl() -> Duration {
    Duration::from_secs(120)
}
fn default_max_outstanding() -> usize {
    10_000
}
fn default_per_address() -> RateLimit {
    RateLimit {
        burst: 10,
        interval: Duration::from_secs(6),
    }
}
fn default_per_prefix() -> RateLimit {
    RateLimit {
        burst: 100,
        interval: Duration::from_millis(600),
    }
}
fn default_ipv4_prefix() -> u8 {
    24
}
fn default_ipv6_prefix() -> u8 {
    56
}

impl Default for SignupSection {
    fn default() -> Self {
        Self {
            pow_bits: default_pow_bits(),
            challenge_ttl: default_challenge_ttl(),
            max_outstanding: default_max_outstanding(),
            per_address: default_per_address(),
            per_prefix: default_per_prefix(),
            ipv4_prefix: default_ipv4_prefix(),
            ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

/// Parses `"N/period"`: a burst of `N` refilled at `N` per period. The period is `s`,
/// `sec`, `min`, `h`, `hour`, `day` or a duration such as `30s`.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse_rate(text: &str) -> Result<RateLimit, String> {
    let bad = |why: &str| format!("{text:?} is not a rate ({why}); use e.g. \"10/min\"");
    let (n, period) = text
        .split_once('/')
        .ok_or_else(|| bad("no `/` between count and period"))?;
    let burst: u32 = n
        .trim()
        .parse()
        .map_err(|_| bad("the count is not a whole number"))?;
    if burst == 0 {
        return Err(bad("the count must be positive"));
    }
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other).map_err(|_| bad("unknown period"))?,
    };
    let interval = period / burst;
    if interval < Duration::from_millis(1) {
        return Err(bad("more than 1000 per second"));
    }
    if period > Duration::from_secs(86_400) {
        return Err(bad("the period is longer than a day"));
    }
    Ok(RateLimit { burst, interval })
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
    let text = String::deserialize(d)?;
    parse_rate(&text).map_err(serde::de::Error::custom)
}

impl SignupSection {
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.pow_bits > MAX_POW_BITS {
            return Err(invalid(
                "signup.pow_bits",
                format!("{} is above the maximum {MAX_POW_BITS}", self.pow_bits),
            ));
        }
        if self.challenge_ttl < Duration::from_secs(5)
            || self.challenge_ttl > Duration::from_secs(3600)
        {
            return Err(invalid(
                "signup.challenge_ttl",
                format!(
                    "{} is not between 5s and 1h",
                    humantime::format_duration(self.challenge_ttl)
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_outstanding) {
            return Err(invalid(
                "signup.max_outstanding",
                format!("{} is not between 1 and 1000000", self.max_outstanding),
            ));
        }
        if !(8..=32).contains(&self.ipv4_prefix) {
            return Err(invalid(
                "signup.ipv4_prefix",
                format!("{} is not between 8 and 32", self.ipv4_prefix),
            ));
        }
        if !(16..=128).contains(&self.ipv6_prefix) {
            return Err(invalid(
                "signup.ipv6_prefix",
                format!("{} is not between 16 and 128", self.ipv6_prefix),
            ));
        }
        Ok(())
    }
}

/// Which ports egress may use: a list, or `"any"` (SMTP ports stay blocked regardless).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum EgressPorts {
    /// `"any"`.
    Any(AnyPorts),
    /// Only these destination ports.
    Only(Vec<u16>),
}

/// The word `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnyPorts {
    /// Every port but SMTP's.
    Any,
}

/// `[tiers.<name>]`: a tier's limits; fields left out keep the built-in tier's value (or,
/// for a tier that is not built in, the `contained` tier's).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Most vCPUs per lease (fractions allowed).
    pub max_vcpu: Option<f64>,
    /// Most memory per lease, MiB.
    pub max_memory_mib: Option<u64>,
    /// Most writable disk per lease, MiB.
    pub max_disk_mib: Option<u64>,
    /// Longest lease.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_lifetime: Option<Duration>,
    /// Most leases running at once, per provider.
    pub max_concurrent: Option<u32>,
    /// Whether workloads may reach the Internet.
    pub egress: Option<bool>,
    /// Destination ports egress may use.
    pub egress_ports: Option<EgressPorts>,
    /// Most bytes one file transfer moves, MiB.
    pub max_file_mib: Option<u64>,
    /// Credits spendable without the owner's approval: the free allowance of `contained`;
    /// for attested agents the attestation's limit is used instead.
    pub spending_limit_credits: Option<u64>,
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::duration::deserialize(d).map(Some)
}

/// The tiers every node knows before its config adds any: `contained` (unattested agents)
/// and `standard` (a common attested tier: 4 vCPU, 8 GiB, 7 days, any port but SMTP).
pub fn builtin_tiers() -> BTreeMap<String, TierLimits> {
    let contained = TierLimits::contained();
    let standard = TierLimits {
        name: "standard".into(),
        max_vcpu_milli: 4000,
        max_memory_mib: 8192,
        max_disk_mib: 20 * 1024,
        max_lifetime_secs: 7 * 86_400,
        max_concurrent: 10,
        egress: true,
        egress_ports: None,
        max_file_bytes: 1024 * 1024 * 1024,
        spending_limit_credits: 0,
    };
    BTreeMap::from([
        (CONTAINED_TIER.to_owned(), contained),
        ("standard".to_owned(), standard),
    ])
}

/// Built-in tiers with the configured tables applied.
///
/// # Errors
/// The dotted field (`tiers.NAME.FIELD`) and what is wrong with it.
pub fn resolve_tiers(
    tables: &BTreeMap<String, TierConfig>,
) -> Result<BTreeMap<String, TierLimits>, (String, String)> {
    if tables.len() > 32 {
        return Err((
            "tiers".into(),
            format!("{} tiers, at most 32", tables.len()),
        ));
    }
    let mut tiers = builtin_tiers();
    for (name, table) in tables {
        let field = |f: &str| format!("tiers.{name}.{f}");
        bounds::token("tiers", name, 32).map_err(|e| (format!("tiers.{name}"), e.to_string()))?;
        let mut t = tiers.get(name).cloned().unwrap_or_else(|| TierLimits {
            name: name.clone(),
            ..TierLimits::contained()
        });
        if let Some(v) = table.max_vcpu {
            if !(v.is_finite() && v > 0.0 && v <= 4096.0) {
                return Err((field("max_vcpu"), format!("{v} is not in (0, 4096]")));
            }
            // In range, so the product fits.
            t.max_vcpu_milli = (v * 1000.0).round() as u32;
        }
        if let Some(v) = table.max_memory_mib {
            if v == 0 {
                return Err((field("max_memory_mib"), "must be positive".into()));
            }
            t.max_memory_mib = v;
        }
        if let Some(v) = table.max_disk_mib {
            t.max_disk_mib = v;
        }
        if let Some(v) = table.max_lifetime {
            if v < Duration::from_secs(60) || v > Duration::from_secs(365 * 86_400) {
                return Err((
                    field("max_lifetime"),
                    format!(
                        "{} is not between 1m and 365d",
                        humantime::format_duration(v)
                    ),
                ));
            }
            t.max_lifetime_secs = v.as_secs();
        }
        if let Some(v) = table.max_concurrent {
            if !(1..=10_000).contains(&v) {
                return Err((
                    field("max_concurrent"),
                    format!("{v} is not between 1 and 10000"),
                ));
            }
            t.max_concurrent = v;
        }
        if let Some(v) = table.egress {
            t.egress = v;
        }
        match &table.egress_ports {
            None => {}
            Some(EgressPorts::Any(_)) => t.egress_ports = None,
            Some(EgressPorts::Only(ports)) => {
                if ports.len() > 64 {
                    return Err((
                        field("egress_ports"),
                        format!("{} ports, at most 64", ports.len()),
                    ));
                }
                if let Some(p) = ports.iter().find(|p| **p == 0 || SMTP_PORTS.contains(p)) {
                    return Err((
                        field("egress_ports"),
                        format!("port {p} is not allowed (0 and SMTP's 25, 465, 587 never are)"),
                    ));
                }
                t.egress_ports = Some(ports.clone());
            }
        }
        if let Some(v) = table.max_file_mib {
            t.max_file_bytes = v.saturating_mul(1024 * 1024);
        }
        if let Some(v) = table.spending_limit_credits {
            t.spending_limit_credits = v;
        }
        t.validate()
            .map_err(|e| (format!("tiers.{name}"), e.to_string()))?;
        tiers.insert(name.clone(), t);
    }
    Ok(tiers)
}
