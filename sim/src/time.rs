//! The virtual clock: simulated instants and spans, in whole microseconds.
//!
//! Integers rather than floats or `std::time` types keep arithmetic exact and the
//! ordering of events total, which the determinism of the whole simulator rests on.

use std::fmt;

/// An instant of simulated time: microseconds since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of every run.
    pub const ZERO: SimTime = SimTime(0);
    /// The last representable instant; later instants saturate to it.
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// The instant `micros` microseconds after the start.
    pub const fn from_micros(micros: u64) -> Self {
        SimTime(micros)
    }

    /// Microseconds since the start.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The instant `delay` after `self`, saturating at [`SimTime::MAX`].
    pub const fn saturating_add(self, delay: SimDuration) -> Self {
        SimTime(self.0.saturating_add(delay.0))
    }

    /// The span from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0)
    }
}

/// A span of simulated time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimDuration(u64);

impl SimDuration {
    /// No time at all.
    pub const ZERO: SimDuration = SimDuration(0);

    /// A span of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        SimDuration(micros)
    }

    /// A span of `millis` milliseconds, saturating on overflow.
    pub const fn from_millis(millis: u64) -> Self {
        SimDuration(millis.saturating_mul(1_000))
    }

    /// A span of `secs` seconds, saturating on overflow.
    pub const fn from_secs(secs: u64) -> Self {
        SimDuration(secs.saturating_mul(1_000_000))
    }

    /// The span in microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let late = SimTime::from_micros(u64::MAX - 1);
        assert_eq!(late.saturating_add(SimDuration::from_secs(5)), SimTime::MAX);
        assert_eq!(SimDuration::from_secs(u64::MAX).as_micros(), u64::MAX);
        assert_eq!(
            SimTime::ZERO.saturating_since(SimTime::from_micros(10)),
            SimDuration::ZERO
        );
    }

    #[test]
    fn unit_constructors_agree() {
        assert_eq!(SimDuration::from_secs(2), SimDuration::from_millis(2_000));
        assert_eq!(SimDuration::from_millis(3).as_micros(), 3_000);
    }
}
