//! `[network]`: links between regions, latency distributions, partition timeouts.

use serde::Deserialize;
use toml::Spanned;

use super::super::values::{NonNegative, Positive, Probability, Span};

/// The network between nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Link properties between regions without a `links` entry.
    pub default: Link,
    /// Per-region-pair overrides (symmetric).
    pub links: Vec<RegionLink>,
    /// How long an unreachable peer stays connected before its connection is closed
    /// (libp2p ping: two failures of a 3 s interval with a 5 s timeout, about 16 s).
    pub link_timeout: Span,
    /// After a heal, each closed connection is redialled at a uniform time within this.
    pub reconnect_delay: Span,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            default: Link::default(),
            links: Vec::new(),
            link_timeout: Span::secs(16),
            reconnect_delay: Span::secs(5),
        }
    }
}

/// Latency, bandwidth and loss of a link.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Link {
    /// One-way latency distribution.
    pub latency: Latency,
    /// Link bandwidth in Mbit/s; a frame of `b` bytes takes `8 b / bandwidth` on the wire.
    pub bandwidth_mbps: Positive,
    /// Probability each frame is lost.
    pub loss: Probability,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            latency: Latency::Uniform {
                base_ms: 50.0,
                jitter_ms: 10.0,
            },
            bandwidth_mbps: Positive(100.0),
            loss: Probability(0.0),
        }
    }
}

/// Overrides for the links between two regions (in both directions).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionLink {
    /// The two regions (equal for links inside one region).
    pub regions: [Spanned<String>; 2],
    /// Latency distribution, if not the default's.
    pub latency: Option<Latency>,
    /// Bandwidth in Mbit/s, if not the default's.
    pub bandwidth_mbps: Option<Positive>,
    /// Loss probability, if not the default's.
    pub loss: Option<Probability>,
}

/// A one-way latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawLatency")]
pub enum Latency {
    /// `base_ms` plus a uniform draw from `[0, jitter_ms)`.
    Uniform {
        /// The minimum.
        base_ms: f64,
        /// Width of the uniform spread above the minimum.
        jitter_ms: f64,
    },
    /// `median_ms * exp(sigma * N(0, 1))`, at least `min_ms`.
    LogNormal {
        /// The median.
        median_ms: f64,
        /// The standard deviation of the underlying normal.
        sigma: f64,
        /// A floor (propagation delay); draws below it are raised to it.
        min_ms: f64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    #[serde(default)]
    dist: Dist,
    base_ms: Option<NonNegative>,
    jitter_ms: Option<NonNegative>,
    median_ms: Option<Positive>,
    sigma: Option<NonNegative>,
    min_ms: Option<NonNegative>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Dist {
    #[default]
    Uniform,
    Lognormal,
}

impl TryFrom<RawLatency> for Latency {
    type Error = String;
    fn try_from(raw: RawLatency) -> Result<Self, String> {
        match raw.dist {
            Dist::Uniform => {
                if raw.median_ms.is_some() || raw.sigma.is_some() || raw.min_ms.is_some() {
                    return Err(
                        "median_ms, sigma and min_ms belong to dist = \"lognormal\"; \
                                a uniform latency takes base_ms and jitter_ms"
                            .into(),
                    );
                }
                let base_ms = raw
                    .base_ms
                    .ok_or("a uniform latency needs base_ms (and optionally jitter_ms)")?
                    .0;
                Ok(Latency::Uniform {
                    base_ms,
                    jitter_ms: raw.jitter_ms.unwrap_or_default().0,
                })
            }
            Dist::Lognormal => {
                if raw.base_ms.is_some() || raw.jitter_ms.is_some() {
                    return Err("base_ms and jitter_ms belong to dist = \"uniform\"; \
                                a lognormal latency takes median_ms, sigma and min_ms"
                        .into());
                }
                let median_ms = raw
                    .median_ms
                    .ok_or("a lognormal latency needs median_ms")?
                    .0;
                let sigma = raw.sigma.ok_or("a lognormal latency needs sigma")?.0;
                Ok(Latency::LogNormal {
                    median_ms,
                    sigma,
                    min_ms: raw.min_ms.unwrap_or_default().0,
                })
            }
        }
    }
}
