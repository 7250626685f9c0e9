//! Rate limits by where a request comes from: its source address and its prefix (a /24 of
//! IPv4, a /56 of IPv6 by default), so one host and one network each get a bounded share.
//!
//! The address is the TCP peer's; `X-Forwarded-For` and the like are not trusted (a node
//! behind a proxy sees the proxy, and should rate-limit there).

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agora_protocol::Timestamp;
use agora_protocol::rate::{RateLimit, RateLimiter};

/// Most addresses (and prefixes) tracked per limiter; the idlest is forgotten beyond it.
const MAX_TRACKED: usize = 16_384;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The source address's own limit.
    Address,
    /// The limit shared by the source's prefix.
    Prefix,
}

impl Scope {
    /// `address` or `prefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Prefix => "prefix",
        }
    }
}

/// Token buckets per source address and per source prefix.
#[derive(Debug, Clone)]
pub struct SourceLimiter {
    per_address: RateLimiter<IpAddr>,
    per_prefix: RateLimiter<IpAddr>,
    address_limit: RateLimit,
    prefix_limit: RateLimit,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
}

/// A refusal by a [`SourceLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which limit.
    pub scope: Scope,
    /// The prefix or address that is over its limit.
    pub key: IpAddr,
    /// When one more request will pass (one refill interval, rounded up to a second).
    pub retry_after: Duration,
}

impl SourceLimiter {
    /// Limits `per_address` and `per_prefix`, grouping addresses by the given prefix lengths.
    pub fn new(
        per_address: RateLimit,
        per_prefix: RateLimit,
        ipv4_prefix: u8,
        ipv6_prefix: u8,
    ) -> Self {
        Self {
            per_address: RateLimiter::new(per_address, MAX_TRACKED),
            per_prefix: RateLimiter::new(per_prefix, MAX_TRACKED),
            address_limit: per_address,
            prefix_limit: per_prefix,
            ipv4_prefix,
            ipv6_prefix,
        }
    }

    /// Takes a token from the address's bucket and its prefix's.
    ///
    /// The address is checked first, so a host over its own limit does not also drain its
    /// neighbours' shared prefix budget.
    ///
    /// # Errors
    /// [`Limited`] naming the exhausted limit.
    pub fn check(&mut self, source: IpAddr, now: Timestamp) -> Result<(), Limited> {
        let address = canonical(source);
        if !self.per_address.check(&address, now) {
            return Err(Limited {
                scope: Scope::Address,
                key: address,
                retry_after: round_up(self.address_limit.interval),
            });
        }
        let prefix = self.prefix_of(address);
        if !self.per_prefix.check(&prefix, now) {
            return Err(Limited {
                scope: Scope::Prefix,
                key: prefix,
                retry_after: round_up(self.prefix_limit.interval),
            });
        }
        Ok(())
    }

    /// The network `address` belongs to (host bits zeroed).
    pub fn prefix_of(&self, address: IpAddr) -> IpAddr {
        match canonical(address) {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.ipv4_prefix.min(32)))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.ipv6_prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> SourceLimiter {
        SourceLimiter::new(
            RateLimit {
                burst: 2,
                interval: Duration::from_secs(10),
            },
            RateLimit {
                burst: 3,
                interval: Duration::from_millis(2_500),
            },
            24,
            56,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_then_prefix_limits() {
        let mut l = limiter();
        let t = Timestamp::from_unix_secs(100);
        assert!(l.check(ip("10.0.0.1"), t).is_ok());
        assert!(l.check(ip("10.0.0.1"), t).is_ok());
        let e = l.check(ip("10.0.0.1"), t).unwrap_err();
        assert_eq!(
            (e.scope, e.retry_after),
            (Scope::Address, Duration::from_secs(10))
        );
        // The same /24 shares three.
        assert!(l.check(ip("10.0.0.2"), t).is_ok());
        let e = l.check(ip("10.0.0.3"), t).unwrap_err();
        assert_eq!(e.scope, Scope::Prefix);
        assert_eq!(e.key, ip("10.0.0.0"));
        assert_eq!(e.retry_after, Duration::from_secs(3));
        // Another /24 is unaffected; a mapped address counts as its IPv4 self.
        assert!(l.check(ip("10.0.1.1"), t).is_ok());
        assert!(l.check(ip("::ffff:10.0.1.1"), t).is_ok());
        assert_eq!(
            l.check(ip("::ffff:10.0.1.1"), t).unwrap_err().scope,
            Scope::Address
        );
        // Refills.
        assert!(
            l.check(ip("10.0.0.4"), Timestamp::from_unix_secs(103))
                .is_ok()
        );
    }

    #[test]
    fn prefixes_mask_host_bits() {
        let l = limiter();
        assert_eq!(l.prefix_of(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(
            l.prefix_of(ip("2001:db8:1:2345:6:7:8:9")),
            ip("2001:db8:1:2300::")
        );
        let wide = SourceLimiter::new(limiter().address_limit, limiter().prefix_limit, 32, 128);
        assert_eq!(wide.prefix_of(ip("192.0.2.77")), ip("192.0.2.77"));
    }
}
