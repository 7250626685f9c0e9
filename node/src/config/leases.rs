//! Lease settings (`[leases]`): how a provider meters leases and how a gateway relays them.
//!
//! ```toml
//! [leases]
//! receipt_interval = "60s"    # a provider signs a usage receipt per lease this often
//! provider_timeout = "10s"    # a gateway waits this long for one provider, then fails over
//! retention = "1h"            # ended leases stay queryable this long (providers), and
//!                             # gateways forget relayed leases over for this long
//! provider_lost_after = "2m"  # a gateway records a lease `provider_lost` after its provider
//!                             # has not answered this long (or past the lease's expiry)
//! ```

use core::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration};

/// `[leases]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSection {
    /// A running lease gets a signed usage receipt this often (and a final one at its end).
    #[serde(default = "default_receipt_interval", with = "duration")]
    pub receipt_interval: Duration,
    /// How long a gateway waits for one provider's answer before trying the next candidate.
    #[serde(default = "default_provider_timeout", with = "duration")]
    pub provider_timeout: Duration,
    /// How long an ended lease (its final receipt) stays queryable.
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// How long the provider of a relayed running lease may leave refreshes unanswered
    /// before the gateway records the lease as ended with reason `provider_lost`.
    #[serde(default = "default_provider_lost_after", with = "duration")]
    pub provider_lost_after: Duration,
}

fn default_receipt_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_provider_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retention() -> Duration {
    Duration::from_secs(3600)
}
fn default_provider_lost_after() -> Duration {
    Duration::from_secs(120)
}

impl Default for LeaseSection {
    fn default() -> Self {
        Self {
            receipt_interval: default_receipt_interval(),
            provider_timeout: default_provider_timeout(),
            retention: default_retention(),
            provider_lost_after: default_provider_lost_after(),
        }
    }
}

impl LeaseSection {
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let bounds = [
            (
                "leases.receipt_interval",
                self.receipt_interval,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            ),
            (
                "leases.provider_timeout",
                self.provider_timeout,
                Duration::from_millis(100),
                Duration::from_secs(120),
            ),
            (
                "leases.retention",
                self.retention,
                Duration::from_secs(1),
                Duration::from_secs(30 * 24 * 3600),
            ),
            (
                "leases.provider_lost_after",
                self.provider_lost_after,
                Duration::from_secs(1),
                Duration::from_secs(7 * 24 * 3600),
            ),
        ];
        for (field, value, min, max) in bounds {
            if value < min || value > max {
                return Err(invalid(
                    field,
                    format!(
                        "{} is not between {} and {}",
                        humantime::format_duration(value),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `[approvals]`: lease requests that wait at a gateway for their owner's approval.
///
/// ```toml
/// [approvals]
/// timeout = "10m"                              # unanswered requests expire (approval_timeout)
/// webhook = "http://127.0.0.1:9000/approvals"  # POSTed each new waiting request (optional)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSection {
    /// How long a request waits for its owner before it expires.
    #[serde(default = "default_approval_timeout", with = "duration")]
    pub timeout: Duration,
    /// An http(s) URL the gateway POSTs each new waiting request to, as JSON.
    #[serde(default)]
    pub webhook: Option<String>,
}

fn default_approval_timeout() -> Duration {
    Duration::from_secs(600)
}

impl Default for ApprovalSection {
    fn default() -> Self {
        Self {
            timeout: default_approval_timeout(),
            webhook: None,
        }
    }
}

impl ApprovalSection {
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.timeout < Duration::from_secs(1)
            || self.timeout > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(invalid(
                "approvals.timeout",
                format!(
                    "{} is not between 1s and 7days",
                    humantime::format_duration(self.timeout)
                ),
            ));
        }
        if let Some(url) = &self.webhook {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() <= 2048
                && reqwest::Url::parse(url).is_ok();
            if !ok {
                return Err(invalid(
                    "approvals.webhook",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        Ok(())
    }
}
