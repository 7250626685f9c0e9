//! Durations in config files as human-readable strings (`"72h"`, `"5m"`, `"90s"`).

use core::time::Duration;

use serde::{Deserialize, Deserializer};

/// Deserialises a humantime string.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); use e.g. \"72h\" or \"5m\""
        ))
    })
}
