//! Checked scalar values of scenario files: durations with units, probabilities, rates.
//!
//! Each rejects a bad value while deserializing, so the TOML parser's error carries the
//! value's position and the scenario error can name its line.

use core::fmt;

use serde::{Deserialize, Deserializer, de};

use crate::time::SimDuration;

/// A span of simulated time written with a unit: `"250ms"`, `"30s"`, `"5m"`, `"2h"`,
/// `"1.5s"` or `"800us"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub SimDuration);

impl Span {
    /// A span of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Span(SimDuration::from_secs(secs))
    }

    /// A span of `millis` milliseconds.
    pub const fn millis(millis: u64) -> Self {
        Span(SimDuration::from_millis(millis))
    }

    /// The span in microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0.as_micros()
    }

    /// The span in (fractional) seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_micros() as f64 / 1e6
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us.is_multiple_of(1_000_000) {
            write!(f, "{}s", us / 1_000_000)
        } else if us.is_multiple_of(1_000) {
            write!(f, "{}ms", us / 1_000)
        } else {
            write!(f, "{us}us")
        }
    }
}

/// Parses `"<number><unit>"` with unit `us`, `ms`, `s`, `m` or `h`.
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse_span(text: &str) -> Result<Span, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let micros_per_unit: f64 = match unit.trim() {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3_600e6,
        "" => {
            return Err(format!(
                "duration {text:?} needs a unit (us, ms, s, m or h)"
            ));
        }
        other => {
            return Err(format!(
                "duration {text:?} has unknown unit {other:?} (expected us, ms, s, m or h)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let micros = (value * micros_per_unit).round();
    if !(0.0..=1e15).contains(&micros) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Span(SimDuration::from_micros(micros as u64)))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_span(&text).map_err(de::Error::custom)
    }
}

/// A probability in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&value) {
            Ok(Probability(value))
        } else {
            Err(de::Error::custom(format!(
                "{value} is not a probability (expected a number from 0 to 1)"
            )))
        }
    }
}

/// A finite, strictly positive number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Positive(pub f64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if value.is_finite() && value > 0.0 {
            Ok(Positive(value))
        } else {
            Err(de::Error::custom(format!(
                "{value} must be a number greater than 0"
            )))
        }
    }
}

/// A finite number that is zero or more.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct NonNegative(pub f64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if value.is_finite() && value >= 0.0 {
            Ok(NonNegative(value))
        } else {
            Err(de::Error::custom(format!(
                "{value} must be a number of 0 or more"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_with_units() {
        assert_eq!(parse_span("250ms"), Ok(Span::millis(250)));
        assert_eq!(parse_span("30s"), Ok(Span::secs(30)));
        assert_eq!(parse_span("5m"), Ok(Span::secs(300)));
        assert_eq!(parse_span("1h"), Ok(Span::secs(3600)));
        assert_eq!(parse_span("1.5s"), Ok(Span::millis(1500)));
        assert_eq!(parse_span("800us").map(Span::as_micros), Ok(800));
        assert!(parse_span("30").unwrap_err().contains("needs a unit"));
        assert!(parse_span("3 days").unwrap_err().contains("unknown unit"));
        assert!(parse_span("s").is_err());
        assert_eq!(Span::millis(700).to_string(), "700ms");
        assert_eq!(Span::secs(30).to_string(), "30s");
    }
}
