//! Field bounds shared by the message kinds' `validate` methods.

use std::collections::BTreeMap;

use crate::codec::DecodeError;

/// Checks that `value` is at most `max` bytes.
///
/// # Errors
/// [`DecodeError::InvalidField`] naming `field`.
pub fn max_len(field: &'static str, value: &str, max: usize) -> Result<(), DecodeError> {
    if value.len() > max {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!("{} bytes, at most {max} allowed", value.len()),
        });
    }
    Ok(())
}

/// Checks that `value` is a non-empty token of at most `max` bytes made of ASCII
/// lowercase letters, digits, `-`, `_` and `.` (tiers, label keys, names).
///
/// # Errors
/// [`DecodeError::InvalidField`] naming `field` and the offending value.
pub fn token(field: &'static str, value: &str, max: usize) -> Result<(), DecodeError> {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    if value.is_empty() || value.len() > max || !value.chars().all(ok_char) {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!("{value:?} must be 1-{max} characters of a-z, 0-9, '-', '_' or '.'"),
        });
    }
    Ok(())
}

/// Checks a label map: at most `max_entries`, keys are tokens of ≤ 64 bytes, values ≤ 256.
///
/// # Errors
/// [`DecodeError::InvalidField`] naming `field`.
pub fn labels(
    field: &'static str,
    labels: &BTreeMap<String, String>,
    max_entries: usize,
) -> Result<(), DecodeError> {
    if labels.len() > max_entries {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!("{} entries, at most {max_entries} allowed", labels.len()),
        });
    }
    for (k, v) in labels {
        token(field, k, 64)?;
        max_len(field, v, 256)?;
    }
    Ok(())
}
