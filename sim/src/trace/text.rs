//! The trace file's text form: one line per record, `time node kind fingerprint_hex`,
//! rendered when recording and parsed back when verifying.

use std::fmt;

use super::{DIGEST_FINGERPRINT_BYTES, DIGEST_TAG, MAX_INLINE_PAYLOAD, is_valid_kind};
use crate::engine::NodeId;
use crate::time::SimTime;

pub(super) fn render_line(
    out: &mut String,
    time: SimTime,
    node: NodeId,
    kind: &str,
    fingerprint: &[u8],
) -> fmt::Result {
    // Hand-rolled rather than `write!`: this runs once per event when a trace file is
    // written. The bytes are the same as `"{time} {node} {kind} {fingerprint:02x…}\n"`.
    push_decimal(out, time.as_micros());
    out.push(' ');
    push_decimal(out, u64::from(node.as_u32()));
    out.push(' ');
    out.push_str(kind);
    out.push(' ');
    for byte in fingerprint {
        out.push(hex_char(byte >> 4));
        out.push(hex_char(byte & 0x0f));
    }
    out.push('\n');
    Ok(())
}

/// The lowercase hex digit of a nibble (`nibble < 16`).
fn hex_char(nibble: u8) -> char {
    char::from(if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + (nibble - 10)
    })
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `start` counts down from 20 and a u64 has at most 20 digits.
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    for &d in digits.get(start..).unwrap_or(&[]) {
        out.push(char::from(d));
    }
}

pub(super) struct ParsedLine<'a> {
    pub(super) time: SimTime,
    pub(super) node: NodeId,
    pub(super) kind: &'a str,
    pub(super) fingerprint: Vec<u8>,
}

pub(super) fn parse_line(line: &str) -> Result<ParsedLine<'_>, &'static str> {
    let mut fields = line.split(' ');
    let (Some(time), Some(node), Some(kind), Some(digest), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("expected exactly four space-separated fields: time node kind fingerprint");
    };
    let time = time
        .parse::<u64>()
        .map_err(|_| "time is not a whole number of microseconds")?;
    let node = node.parse::<u32>().map_err(|_| "node is not a u32")?;
    if !is_valid_kind(kind) {
        return Err("kind is empty, longer than 32 bytes or not printable ASCII");
    }
    let fingerprint = parse_fingerprint(digest).ok_or(
        "fingerprint is not a length byte and that many bytes, or 0xff and 31, in lowercase hex",
    )?;
    Ok(ParsedLine {
        time: SimTime::from_micros(time),
        node: NodeId::new(node),
        kind,
        fingerprint,
    })
}

/// A well-formed fingerprint from its hex (see the module documentation).
pub(super) fn parse_fingerprint(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.len() > 2 * DIGEST_FINGERPRINT_BYTES {
        return None;
    }
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some((hex_digit(*high)? << 4) | hex_digit(*low)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()?;
    let expected = match *bytes.first()? {
        DIGEST_TAG => DIGEST_FINGERPRINT_BYTES,
        len if usize::from(len) <= MAX_INLINE_PAYLOAD => usize::from(len) + 1,
        _ => return None,
    };
    (bytes.len() == expected).then_some(bytes)
}

// Lowercase only: one canonical spelling per digest keeps the file byte-for-byte equal
// to what the hash absorbed.
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}
