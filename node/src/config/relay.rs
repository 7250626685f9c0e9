//! Tunnel relay settings (`[relay]`): whether and how a gateway relays the QUIC tunnel
//! packets of agents that cannot reach a provider themselves.
//!
//! ```toml
//! [relay]
//! enabled = true        # answer POST /v1/leases/{id}/relay
//! host = "203.0.113.7"  # the address relay sockets bind and agents send to (default: the
//!                       # HTTP listen address, else the address the agent reached us at)
//! sessions = 256        # sessions at once on this node
//! per_agent = 8         # sessions at once per agent
//! idle = "60s"          # a session with no packet either way for this long ends
//! ```

use core::time::Duration;
use std::net::IpAddr;

use serde::Deserialize;

use super::{ConfigError, duration};

/// `[relay]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// Whether this node relays tunnels for agents.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The address relay sockets bind (and agents send to).
    #[serde(default)]
    pub host: Option<IpAddr>,
    /// Sessions at once on this node.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Sessions at once per agent.
    #[serde(default = "default_per_agent")]
    pub per_agent: usize,
    /// A session idle this long ends.
    #[serde(default = "default_idle", with = "duration")]
    pub idle: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_sessions() -> usize {
    256
}
fn default_per_agent() -> usize {
    8
}
fn default_idle() -> Duration {
    Duration::from_secs(60)
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            host: None,
            sessions: default_sessions(),
            per_agent: default_per_agent(),
            idle: default_idle(),
        }
    }
}

impl RelaySection {
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if !(1..=65_536).contains(&self.sessions) {
            return Err(invalid(
                "relay.sessions",
                format!("{} is not between 1 and 65536", self.sessions),
            ));
        }
        if !(1..=self.sessions).contains(&self.per_agent) {
            return Err(invalid(
                "relay.per_agent",
                format!("{} is not between 1 and relay.sessions", self.per_agent),
            ));
        }
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        if self.idle < min || self.idle > max {
            return Err(invalid(
                "relay.idle",
                format!(
                    "{} is not between 1s and 1h",
                    humantime::format_duration(self.idle)
                ),
            ));
        }
        if self
            .host
            .is_some_and(|h| h.is_unspecified() || h.is_multicast())
        {
            return Err(invalid(
                "relay.host",
                "must be an address agents can send to (not unspecified or multicast)".into(),
            ));
        }
        Ok(())
    }
}
