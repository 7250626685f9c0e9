//! Capacity offers: what a provider can run, how much is free and at what price.
//!
//! An [`Offer`] is gossiped as a `Signed<Offer>` (at most [`MAX_OFFER_WIRE_BYTES`], well under
//! gossip's 4 KiB budget). Offers live briefly ([`MAX_OFFER_TTL`]); a provider re-advertises
//! before expiry and whenever its free capacity changes, each time with a higher `seq`. An
//! [`OfferWithdrawal`] retracts every offer up to its `seq`.
//!
//! Prices are integers in micro-credits (1 credit = 1,000,000 µcr) per second, so offers
//! compare exactly and deterministically.

use core::time::Duration;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::codec::DecodeError;
use crate::id::AgoraId;
use crate::signed::{Digest, Signed, SignedKind};
use crate::time::Timestamp;

/// Longest validity an offer may claim; longer-lived offers are refused.
pub const MAX_OFFER_TTL: Duration = Duration::from_secs(15 * 60);
/// Largest payload of an offer.
pub const MAX_OFFER_PAYLOAD_BYTES: usize = 3 * 1024 + 512;
/// Largest signed offer on the wire (payload plus envelope).
pub const MAX_OFFER_WIRE_BYTES: usize = Signed::<Offer>::MAX_WIRE_BYTES;

/// How strongly a runtime isolates a workload from the host.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// The embedded process sandbox (namespaces, seccomp, cgroups): starts in milliseconds.
    Sandbox,
    /// A hardened Docker container.
    Docker,
    /// A microVM (own kernel): boots in seconds, the strongest isolation.
    Microvm,
}

impl Isolation {
    /// The lowercase name used in configs, filters and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Docker => "docker",
            Self::Microvm => "microvm",
        }
    }
}

impl core::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sandbox" => Ok(Self::Sandbox),
            "docker" => Ok(Self::Docker),
            "microvm" => Ok(Self::Microvm),
            other => Err(format!(
                "unknown runtime {other:?} (expected sandbox, docker or microvm)"
            )),
        }
    }
}

/// An image or root filesystem a runtime can start, pinned by digest.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Its name, e.g. `busybox` or `python-3.12`.
    pub name: String,
    /// SHA-256 of the image (Docker image id or rootfs archive).
    pub digest: Digest,
}

/// One runtime the provider offers.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOffer {
    /// Its isolation class.
    pub isolation: Isolation,
    /// What it can start (besides uploaded images, where the runtime allows them).
    pub images: Vec<ImageRef>,
}

/// A kind of GPU and how many are free.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Model name, e.g. `nvidia-l4`.
    pub model: String,
    /// Free units.
    pub count: u32,
}

/// Free capacity right now.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Free vCPU in thousandths (1500 = 1.5 vCPU).
    pub vcpu_milli: u32,
    /// Free memory in MiB.
    pub memory_mib: u64,
    /// Free disk in MiB.
    pub disk_mib: u64,
    /// Free GPUs.
    pub gpus: Vec<Gpu>,
}

/// Prices in micro-credits per second, per unit.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    /// Per vCPU.
    pub vcpu: u64,
    /// Per GiB of memory.
    pub memory_gib: u64,
    /// Per GiB of disk.
    pub disk_gib: u64,
    /// Per GPU.
    pub gpu: u64,
}

impl Prices {
    /// Cost per second, in micro-credits, of `vcpu_milli` vCPU and `memory_mib` memory
    /// (saturating): the figure offers are sorted and filtered by.
    pub fn per_second(&self, vcpu_milli: u32, memory_mib: u64) -> u64 {
        let cpu = self.vcpu.saturating_mul(u64::from(vcpu_milli)) / 1000;
        let mem = self.memory_gib.saturating_mul(memory_mib) / 1024;
        cpu.saturating_add(mem)
    }
}

/// What the provider lets workloads do on the network.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Whether workloads may open outbound connections.
    pub egress: bool,
    /// Destination ports always blocked (e.g. 25 for SMTP).
    pub blocked_ports: Vec<u16>,
}

/// A provider's signed advertisement of capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The provider (must be the signer).
    pub provider: AgoraId,
    /// Increases with every new offer or withdrawal by this provider.
    pub seq: u64,
    /// When it was made.
    pub issued_at: Timestamp,
    /// When it stops being valid (at most [`MAX_OFFER_TTL`] after `issued_at`).
    pub expires_at: Timestamp,
    /// The runtimes available.
    pub runtimes: Vec<RuntimeOffer>,
    /// Free capacity.
    pub capacity: Capacity,
    /// Prices.
    pub prices: Prices,
    /// Longest lease it accepts, in seconds.
    pub max_lease_secs: u64,
    /// Network policy summary.
    pub network: NetworkPolicy,
    /// Tiers it accepts (empty: any).
    pub tiers: Vec<String>,
    /// Region, e.g. `eu-west`.
    pub region: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// QUIC tunnel endpoints (`host:port`).
    pub tunnel_endpoints: Vec<String>,
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

fn max_count(field: &'static str, n: usize, max: usize) -> Result<(), DecodeError> {
    if n > max {
        return Err(invalid(
            field,
            format!("{n} entries, at most {max} allowed"),
        ));
    }
    Ok(())
}

impl SignedKind for Offer {
    const DOMAIN: &'static str = "agora/offer/v1";
    const MAX_PAYLOAD_BYTES: usize = MAX_OFFER_PAYLOAD_BYTES;

    fn validate(&self) -> Result<(), DecodeError> {
        if self.expires_at <= self.issued_at {
            return Err(invalid(
                "expires_at",
                format!(
                    "{} is not after issued_at {}",
                    self.expires_at, self.issued_at
                ),
            ));
        }
        if self.expires_at > self.issued_at.saturating_add(MAX_OFFER_TTL) {
            return Err(invalid(
                "expires_at",
                format!(
                    "offers live at most {}s after issued_at",
                    MAX_OFFER_TTL.as_secs()
                ),
            ));
        }
        if self.runtimes.is_empty() {
            return Err(invalid("runtimes", "an offer needs at least one".into()));
        }
        max_count("runtimes", self.runtimes.len(), 3)?;
        let mut isolations: Vec<_> = self.runtimes.iter().map(|r| r.isolation).collect();
        isolations.sort();
        isolations.dedup();
        if isolations.len() != self.runtimes.len() {
            return Err(invalid(
                "runtimes",
                "each isolation class at most once".into(),
            ));
        }
        for r in &self.runtimes {
            max_count("runtimes.images", r.images.len(), 16)?;
            for image in &r.images {
                bounds::token("runtimes.images.name", &image.name, 64)?;
            }
        }
        max_count("capacity.gpus", self.capacity.gpus.len(), 4)?;
        for gpu in &self.capacity.gpus {
            bounds::token("capacity.gpus.model", &gpu.model, 64)?;
        }
        max_count(
            "network.blocked_ports",
            self.network.blocked_ports.len(),
            64,
        )?;
        max_count("tiers", self.tiers.len(), 8)?;
        for tier in &self.tiers {
            bounds::token("tiers", tier, 32)?;
        }
        bounds::token("region", &self.region, 32)?;
        bounds::labels("labels", &self.labels, 16)?;
        max_count("tunnel_endpoints", self.tunnel_endpoints.len(), 4)?;
        for endpoint in &self.tunnel_endpoints {
            bounds::max_len("tunnel_endpoints", endpoint, 128)?;
            if endpoint.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    "tunnel_endpoints",
                    format!("{endpoint:?} is not an ip:port address"),
                ));
            }
        }
        Ok(())
    }

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

impl Offer {
    /// A typical offer, the one sample used by examples, tests, fuzz seeds and the
    /// simulator's workload: `provider`'s offer number `seq`, issued at `issued_at` and
    /// valid for five minutes, in region `eu-west`, with a sandbox runtime (image `busybox`)
    /// and a Docker runtime, 4 vCPU, 8 GiB of memory and 50,000 MiB of disk free, leases up
    /// to 72 h, egress with SMTP blocked, the label `arch = x86_64` and one tunnel endpoint.
    /// It passes validation; change fields to taste (and keep it valid) before signing.
    ///
    /// ```
    /// use agora_protocol::{Offer, Signed, Signer as _, Timestamp};
    ///
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    /// let mut offer = Offer::example(key.id(), 1, Timestamp::from_unix_secs(1_000));
    /// offer.region = "us-east".into();
    /// let signed = Signed::sign(offer, &key)?;
    /// assert_eq!(signed.body().capacity.memory_mib, 8192);
    /// # Ok::<(), agora_protocol::EncodeError>(())
    /// ```
    pub fn example(provider: AgoraId, seq: u64, issued_at: Timestamp) -> Self {
        Self {
            provider,
            seq,
            issued_at,
            expires_at: issued_at.saturating_add(Duration::from_secs(300)),
            runtimes: vec![
                RuntimeOffer {
                    isolation: Isolation::Sandbox,
                    images: vec![ImageRef {
                        name: "busybox".into(),
                        digest: Digest::of(b"busybox"),
                    }],
                },
                RuntimeOffer {
                    isolation: Isolation::Docker,
                    images: vec![],
                },
            ],
            capacity: Capacity {
                vcpu_milli: 4000,
                memory_mib: 8192,
                disk_mib: 50_000,
                gpus: vec![],
            },
            prices: Prices {
                vcpu: 100,
                memory_gib: 10,
                disk_gib: 1,
                gpu: 0,
            },
            max_lease_secs: 72 * 3600,
            network: NetworkPolicy {
                egress: true,
                blocked_ports: vec![25],
            },
            tiers: vec![],
            region: "eu-west".into(),
            labels: BTreeMap::from([("arch".into(), "x86_64".into())]),
            tunnel_endpoints: vec!["127.0.0.1:7001".into()],
        }
    }

    /// Whether the offer has a runtime of this isolation class.
    pub fn has_runtime(&self, isolation: Isolation) -> bool {
        self.runtimes.iter().any(|r| r.isolation == isolation)
    }

    /// Whether any runtime can start an image of this name.
    pub fn has_image(&self, name: &str) -> bool {
        self.runtimes
            .iter()
            .any(|r| r.images.iter().any(|i| i.name == name))
    }
}

/// A provider's signed retraction of its offers up to `seq` (e.g. on shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferWithdrawal {
    /// The provider (must be the signer).
    pub provider: AgoraId,
    /// Every offer with a sequence number up to this one is withdrawn.
    pub seq: u64,
    /// When.
    pub issued_at: Timestamp,
}

impl SignedKind for OfferWithdrawal {
    const DOMAIN: &'static str = "agora/offer-withdrawal/v1";
    const MAX_PAYLOAD_BYTES: usize = 64;

    fn author(&self) -> Option<AgoraId> {
        Some(self.provider)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signed::{Ed25519, Signer};
    use ed25519_dalek::SigningKey;

    pub(crate) fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// A typical offer by key `n`.
    pub(crate) fn offer(n: u8, seq: u64, issued_s: u64) -> Offer {
        Offer::example(key(n).id(), seq, Timestamp::from_unix_secs(issued_s))
    }

    /// [`offer`], signed by key `n`.
    pub(crate) fn signed(n: u8, seq: u64, issued_s: u64) -> Signed<Offer> {
        Signed::sign(offer(n, seq, issued_s), &key(n)).unwrap()
    }

    /// Key `n`'s signed withdrawal up to `seq`, issued at `issued_s`.
    pub(crate) fn withdrawal(n: u8, seq: u64, issued_s: u64) -> Signed<OfferWithdrawal> {
        let withdrawal = OfferWithdrawal {
            provider: key(n).id(),
            seq,
            issued_at: Timestamp::from_unix_secs(issued_s),
        };
        Signed::sign(withdrawal, &key(n)).unwrap()
    }

    #[test]
    fn round_trip_and_size() {
        let signed = Signed::sign(offer(1, 1, 1000), &key(1)).unwrap();
        assert!(signed.as_bytes().len() < 1024);
        let back = Signed::<Offer>::decode(signed.as_bytes(), &Ed25519).unwrap();
        assert_eq!(back.body(), signed.body());
    }

    // Gossip messages stay under 4 KiB.
    const _: () = assert!(MAX_OFFER_WIRE_BYTES < 4096);

    #[test]
    fn validation() {
        type Mutation = Box<dyn Fn(&mut Offer)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("expires_at", Box::new(|o| o.expires_at = o.issued_at)),
            (
                "expires_at",
                Box::new(|o| o.expires_at = o.issued_at.saturating_add(MAX_OFFER_TTL * 2)),
            ),
            ("runtimes", Box::new(|o| o.runtimes.clear())),
            (
                "runtimes",
                Box::new(|o| {
                    let dup = o.runtimes[0].clone();
                    o.runtimes.push(dup);
                }),
            ),
            ("region", Box::new(|o| o.region = "EU West".into())),
            (
                "tunnel_endpoints",
                Box::new(|o| o.tunnel_endpoints = vec!["example.com".into()]),
            ),
        ];
        for (field, mutate) in cases {
            let mut o = offer(1, 1, 1000);
            mutate(&mut o);
            match Signed::sign(o, &key(1)) {
                Err(crate::EncodeError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        // Only the provider may sign its offer.
        assert!(Signed::sign(offer(1, 1, 1000), &key(2)).is_err());
    }

    #[test]
    fn price_per_second() {
        let p = offer(1, 1, 0).prices;
        // 1.5 vCPU * 100 + 2 GiB * 10
        assert_eq!(p.per_second(1500, 2048), 150 + 20);
        assert_eq!(
            Prices {
                vcpu: u64::MAX,
                ..p
            }
            .per_second(u32::MAX, 0),
            u64::MAX / 1000
        );
    }
}
