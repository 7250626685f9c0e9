//! The trace hash: a running SHA-256 over every processed event.
//!
//! Each event is rendered as one canonical text line, `time node kind payload_digest_hex`,
//! and the running hash absorbs exactly those bytes (newline included). The optional trace
//! file holds the very same lines, so [`verify_trace`] can recompute the hash from the file
//! alone, and any edited line changes the result. Two runs of one seed must agree on the
//! hash; a differing hash is the cheapest possible witness of nondeterminism.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::NodeId;
use crate::time::SimTime;

/// An event the engine can fold into the trace hash.
pub trait Traced {
    /// A short label naming the kind of event, e.g. `"ping"`.
    ///
    /// It is one space-separated field of a trace line, so it must be non-empty printable
    /// ASCII without whitespace; the recorder rejects anything else.
    fn kind(&self) -> &'static str;

    /// Appends a canonical byte encoding of the payload to `out`.
    ///
    /// The encoding must depend on the event's value only (no pointers, no hash-map
    /// iteration order): it is digested into the trace, so anything else breaks determinism.
    fn write_payload(&self, out: &mut Vec<u8>);
}

/// Why recording, writing or verifying a trace failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// An event kind that cannot be a field of a trace line.
    #[error("event kind {kind:?} is not a non-empty run of printable ASCII without whitespace")]
    InvalidKind {
        /// The offending label.
        kind: String,
    },
    /// Writing a line to the trace sink failed.
    #[error("cannot write the trace")]
    Write(#[source] io::Error),
    /// Reading the trace file failed.
    #[error("cannot read trace file {}", path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A line of the trace file is not a well-formed trace line.
    #[error("trace line {line}: {reason}")]
    Malformed {
        /// One-based line number.
        line: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A line of the trace file is earlier than the line before it.
    #[error("trace line {line}: time {time} is earlier than the previous line's {previous}")]
    TimeWentBackwards {
        /// One-based line number.
        line: u64,
        /// The time on this line.
        time: SimTime,
        /// The time on the previous line.
        previous: SimTime,
    },
}

/// Folds processed events into the running trace hash and, optionally, a trace file.
pub struct TraceRecorder {
    running: Sha256,
    events_recorded: u64,
    // Reused for every event so that recording allocates nothing in the steady state.
    payload_scratch: Vec<u8>,
    line_scratch: String,
    sink: Option<Box<dyn Write>>,
}

impl TraceRecorder {
    /// A recorder that keeps the hash only.
    pub fn new() -> Self {
        TraceRecorder {
            running: Sha256::new(),
            events_recorded: 0,
            payload_scratch: Vec::new(),
            line_scratch: String::new(),
            sink: None,
        }
    }

    /// A recorder that also writes every trace line to `sink` (wrap files in a `BufWriter`).
    pub fn with_sink(sink: Box<dyn Write>) -> Self {
        TraceRecorder {
            sink: Some(sink),
            ..TraceRecorder::new()
        }
    }

    /// Folds the run's header line (`agora-trace v1 seed <seed>`) into the trace, so two
    /// seeds never share a trace hash even if their events happen to coincide. Call first.
    pub fn header(&mut self, seed: u64) -> Result<(), TraceError> {
        self.line_scratch.clear();
        render_header(&mut self.line_scratch, seed)
            .map_err(|fmt::Error| TraceError::Write(io::Error::other("formatting failed")))?;
        self.absorb_rendered()
    }

    /// Folds one processed event into the trace.
    pub fn record<E: Traced>(
        &mut self,
        time: SimTime,
        node: NodeId,
        event: &E,
    ) -> Result<(), TraceError> {
        let kind = event.kind();
        if !is_valid_kind(kind) {
            return Err(TraceError::InvalidKind {
                kind: kind.to_owned(),
            });
        }
        self.payload_scratch.clear();
        event.write_payload(&mut self.payload_scratch);
        let payload_digest: [u8; 32] = Sha256::digest(&self.payload_scratch).into();
        self.absorb_line(time, node, kind, &payload_digest)
    }

    /// The number of events folded in so far.
    pub fn events_recorded(&self) -> u64 {
        self.events_recorded
    }

    /// The trace hash so far, as 64 lowercase hex digits.
    pub fn trace_hash(&self) -> String {
        to_hex(&self.running.clone().finalize())
    }

    /// Flushes the trace sink, if any, so that the file is complete.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        match &mut self.sink {
            Some(sink) => sink.flush().map_err(TraceError::Write),
            None => Ok(()),
        }
    }

    // The single place a trace line is rendered: recording and verification both go
    // through here, so the file and the hash cannot drift apart.
    fn absorb_line(
        &mut self,
        time: SimTime,
        node: NodeId,
        kind: &str,
        payload_digest: &[u8; 32],
    ) -> Result<(), TraceError> {
        self.line_scratch.clear();
        render_line(&mut self.line_scratch, time, node, kind, payload_digest)
            .map_err(|fmt::Error| TraceError::Write(io::Error::other("formatting failed")))?;
        self.events_recorded = self.events_recorded.saturating_add(1);
        self.absorb_rendered()
    }

    fn absorb_rendered(&mut self) -> Result<(), TraceError> {
        self.running.update(self.line_scratch.as_bytes());
        if let Some(sink) = &mut self.sink {
            sink.write_all(self.line_scratch.as_bytes())
                .map_err(TraceError::Write)?;
        }
        Ok(())
    }
}

impl Default for TraceRecorder {
    fn default() -> Self {
        TraceRecorder::new()
    }
}

impl fmt::Debug for TraceRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceRecorder")
            .field("events_recorded", &self.events_recorded)
            .field("trace_hash", &self.trace_hash())
            .field("has_sink", &self.sink.is_some())
            .finish()
    }
}

/// Recomputes the trace hash from a trace file written by a [`TraceRecorder`].
///
/// Returns the hash as 64 lowercase hex digits; it equals the recorder's
/// [`TraceRecorder::trace_hash`] exactly when the file is unmodified.
pub fn verify_trace(path: &Path) -> Result<String, TraceError> {
    let read_error = |source| TraceError::Read {
        path: path.to_owned(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut recorder = TraceRecorder::new();
    let mut previous = SimTime::ZERO;
    for (index, line) in reader.lines().enumerate() {
        let line_number = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        let line = line.map_err(read_error)?;
        if line_number == 1
            && let Some(seed) = line.strip_prefix(HEADER_PREFIX)
        {
            let seed = seed.parse::<u64>().map_err(|_| TraceError::Malformed {
                line: 1,
                reason: "header seed is not a u64",
            })?;
            recorder.header(seed)?;
            continue;
        }
        let parsed = parse_line(&line).map_err(|reason| TraceError::Malformed {
            line: line_number,
            reason,
        })?;
        if parsed.time < previous {
            return Err(TraceError::TimeWentBackwards {
                line: line_number,
                time: parsed.time,
                previous,
            });
        }
        previous = parsed.time;
        recorder.absorb_line(
            parsed.time,
            parsed.node,
            parsed.kind,
            &parsed.payload_digest,
        )?;
    }
    Ok(recorder.trace_hash())
}

/// The header line's text before the seed.
const HEADER_PREFIX: &str = "agora-trace v1 seed ";

fn render_header(out: &mut String, seed: u64) -> fmt::Result {
    writeln!(out, "{HEADER_PREFIX}{seed}")
}

fn render_line(
    out: &mut String,
    time: SimTime,
    node: NodeId,
    kind: &str,
    payload_digest: &[u8; 32],
) -> fmt::Result {
    // Hand-rolled rather than `write!`: this runs once per event and formatting
    // machinery dominated the engine's profile. The bytes are the same as
    // `"{time} {node} {kind} {digest:02x…}\n"`.
    push_decimal(out, time.as_micros());
    out.push(' ');
    push_decimal(out, u64::from(node.as_u32()));
    out.push(' ');
    out.push_str(kind);
    out.push(' ');
    for byte in payload_digest {
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

struct ParsedLine<'a> {
    time: SimTime,
    node: NodeId,
    kind: &'a str,
    payload_digest: [u8; 32],
}

fn parse_line(line: &str) -> Result<ParsedLine<'_>, &'static str> {
    let mut fields = line.split(' ');
    let (Some(time), Some(node), Some(kind), Some(digest), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("expected exactly four space-separated fields: time node kind digest");
    };
    let time = time
        .parse::<u64>()
        .map_err(|_| "time is not a whole number of microseconds")?;
    let node = node.parse::<u32>().map_err(|_| "node is not a u32")?;
    if !is_valid_kind(kind) {
        return Err("kind is empty or not printable ASCII");
    }
    let payload_digest = parse_hex32(digest).ok_or("digest is not 64 lowercase hex digits")?;
    Ok(ParsedLine {
        time: SimTime::from_micros(time),
        node: NodeId::new(node),
        kind,
        payload_digest,
    })
}

fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty() && kind.bytes().all(|byte| byte.is_ascii_graphic())
}

fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *slot = (hex_digit(*high)? << 4) | hex_digit(*low)?;
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    struct Labeled(&'static str, u8);

    impl Traced for Labeled {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn write_payload(&self, out: &mut Vec<u8>) {
            out.push(self.1);
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let hex = to_hex(&bytes);
        assert_eq!(parse_hex32(&hex), Some(bytes));
        assert_eq!(parse_hex32(&hex.to_uppercase()), None);
        assert_eq!(parse_hex32("ab"), None);
    }

    #[test]
    fn fast_rendering_matches_the_format_macro() {
        for (time, node) in [
            (0, 0),
            (9, 10),
            (1_234_567_890_123, u32::MAX),
            (u64::MAX, 7),
        ] {
            let digest: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(73));
            let mut fast = String::new();
            render_line(
                &mut fast,
                SimTime::from_micros(time),
                NodeId::new(node),
                "k",
                &digest,
            )
            .unwrap();
            let slow = format!("{time} {node} k {}\n", to_hex(&digest));
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn empty_trace_hashes_to_sha256_of_nothing() {
        assert_eq!(
            TraceRecorder::new().trace_hash(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn kinds_with_whitespace_are_rejected() {
        let mut recorder = TraceRecorder::new();
        let bad = Labeled("two words", 0);
        assert!(matches!(
            recorder.record(SimTime::ZERO, NodeId::new(0), &bad),
            Err(TraceError::InvalidKind { .. })
        ));
        assert!(
            recorder
                .record(SimTime::ZERO, NodeId::new(0), &Labeled("", 0))
                .is_err()
        );
        assert_eq!(recorder.events_recorded(), 0);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let hash_of = |time: u64, node: u32, kind: &'static str, payload: u8| {
            let mut recorder = TraceRecorder::new();
            recorder
                .record(
                    SimTime::from_micros(time),
                    NodeId::new(node),
                    &Labeled(kind, payload),
                )
                .unwrap();
            recorder.trace_hash()
        };
        let base = hash_of(1, 2, "a", 3);
        assert_ne!(base, hash_of(9, 2, "a", 3));
        assert_ne!(base, hash_of(1, 9, "a", 3));
        assert_ne!(base, hash_of(1, 2, "b", 3));
        assert_ne!(base, hash_of(1, 2, "a", 9));
        assert_eq!(base, hash_of(1, 2, "a", 3));
    }

    #[test]
    fn malformed_and_backwards_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let digest = "00".repeat(32);

        let path = dir.path().join("short.trace");
        std::fs::write(&path, "1 2 ping\n").unwrap();
        assert!(matches!(
            verify_trace(&path),
            Err(TraceError::Malformed { line: 1, .. })
        ));

        let path = dir.path().join("backwards.trace");
        std::fs::write(&path, format!("5 0 ping {digest}\n4 0 ping {digest}\n")).unwrap();
        assert!(matches!(
            verify_trace(&path),
            Err(TraceError::TimeWentBackwards { line: 2, .. })
        ));

        let missing = dir.path().join("missing.trace");
        assert!(matches!(
            verify_trace(&missing),
            Err(TraceError::Read { .. })
        ));
    }
}
