//! The trace hash: a running SHA-256 over every processed event.
//!
//! Each processed event becomes one compact binary record, and the running hash absorbs
//! exactly those bytes:
//!
//! ```text
//! time u64 LE | node u32 LE | kind length u8 | kind (ASCII) | payload fingerprint
//! ```
//!
//! The *payload fingerprint* names the event's canonical payload bytes
//! ([`Traced::write_payload`]): a payload of at most 31 bytes (nearly every event: a frame
//! delivery is 14) is its own fingerprint, `[length, payload..]`; a longer one is
//! `[0xff, first 31 bytes of SHA-256(payload)]`. Two payloads share a fingerprint only if
//! SHA-256 collides, and short payloads cost no extra hashing. The run's header record is
//! `"agora-trace v2\0"` followed by the seed (u64 LE).
//!
//! The optional trace file is the same records as text, one line per event
//! (`time node kind fingerprint_hex`) after the header line `agora-trace v2 seed <seed>`:
//! readable and diffable, and [`verify_trace`] re-encodes each line into its record, so it
//! recomputes the hash from the file alone and any edited line changes the result. Two runs
//! of one seed must agree on the hash; a differing hash is the cheapest possible witness of
//! nondeterminism.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::NodeId;
use crate::time::SimTime;

mod text;

use text::{parse_line, render_line};

/// An event the engine can fold into the trace hash.
pub trait Traced {
    /// A short label naming the kind of event, e.g. `"ping"`.
    ///
    /// It is one space-separated field of a trace line, so it must be non-empty printable
    /// ASCII without whitespace, at most [`MAX_KIND_BYTES`] long; the recorder rejects
    /// anything else.
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
    #[error(
        "event kind {kind:?} is not a non-empty run of at most 32 printable ASCII characters without whitespace"
    )]
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

/// The longest event kind label.
pub const MAX_KIND_BYTES: usize = 32;

/// The longest payload that is its own fingerprint.
const MAX_INLINE_PAYLOAD: usize = 31;
/// The first byte of the fingerprint of a longer payload (its digest follows).
const DIGEST_TAG: u8 = 0xff;
/// The length of a digest fingerprint: the tag and 31 bytes of SHA-256.
const DIGEST_FINGERPRINT_BYTES: usize = 32;

/// Records are hashed in batches of about this many bytes (one `update` call per batch
/// rather than per event; the hash is the same).
const BATCH_BYTES: usize = 8 * 1024;

/// Folds processed events into the running trace hash and, optionally, a trace file.
pub struct TraceRecorder {
    running: Sha256,
    /// Records not yet absorbed by `running`.
    pending: Vec<u8>,
    events_recorded: u64,
    // Reused for every line so that writing a trace allocates nothing in the steady state.
    line_scratch: String,
    sink: Option<Box<dyn Write>>,
}

impl TraceRecorder {
    /// A recorder that keeps the hash only.
    pub fn new() -> Self {
        TraceRecorder {
            running: Sha256::new(),
            pending: Vec::with_capacity(BATCH_BYTES + 128),
            events_recorded: 0,
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

    /// Folds the run's header (the format version and `seed`) into the trace, so two
    /// seeds never share a trace hash even if their events happen to coincide. Call first.
    pub fn header(&mut self, seed: u64) -> Result<(), TraceError> {
        self.pending.extend_from_slice(HEADER_RECORD);
        self.pending.extend_from_slice(&seed.to_le_bytes());
        if let Some(sink) = &mut self.sink {
            writeln!(sink, "{HEADER_PREFIX}{seed}").map_err(TraceError::Write)?;
        }
        Ok(())
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
        push_head(&mut self.pending, time, node, kind);
        // The payload goes straight into the record after a length byte; a long one is
        // then replaced by its digest.
        let tag_at = self.pending.len();
        self.pending.push(0);
        event.write_payload(&mut self.pending);
        let payload_len = self.pending.len() - tag_at - 1;
        if payload_len <= MAX_INLINE_PAYLOAD {
            if let Some(tag) = self.pending.get_mut(tag_at) {
                *tag = payload_len as u8;
            }
        } else {
            let digest = Sha256::digest(self.pending.get(tag_at + 1..).unwrap_or_default());
            self.pending.truncate(tag_at);
            self.pending.push(DIGEST_TAG);
            self.pending.extend_from_slice(
                digest
                    .get(..DIGEST_FINGERPRINT_BYTES - 1)
                    .unwrap_or_default(),
            );
        }
        self.finish_record(time, node, kind, tag_at)
    }

    /// The number of events folded in so far.
    pub fn events_recorded(&self) -> u64 {
        self.events_recorded
    }

    /// The trace hash so far, as 64 lowercase hex digits.
    pub fn trace_hash(&self) -> String {
        let mut running = self.running.clone();
        running.update(&self.pending);
        to_hex(&running.finalize())
    }

    /// Flushes the trace sink, if any, so that the file is complete.
    pub fn flush(&mut self) -> Result<(), TraceError> {
        match &mut self.sink {
            Some(sink) => sink.flush().map_err(TraceError::Write),
            None => Ok(()),
        }
    }

    // Verification's way in: the record of a line whose fingerprint is already known.
    fn absorb(
        &mut self,
        time: SimTime,
        node: NodeId,
        kind: &str,
        fingerprint: &[u8],
    ) -> Result<(), TraceError> {
        push_head(&mut self.pending, time, node, kind);
        let tag_at = self.pending.len();
        self.pending.extend_from_slice(fingerprint);
        self.finish_record(time, node, kind, tag_at)
    }

    // Completes the record whose fingerprint starts at `pending[tag_at]`: the trace line
    // (rendered from those very bytes) and the batch.
    fn finish_record(
        &mut self,
        time: SimTime,
        node: NodeId,
        kind: &str,
        tag_at: usize,
    ) -> Result<(), TraceError> {
        self.events_recorded = self.events_recorded.saturating_add(1);
        if let Some(sink) = &mut self.sink {
            let fingerprint = self.pending.get(tag_at..).unwrap_or_default();
            self.line_scratch.clear();
            render_line(&mut self.line_scratch, time, node, kind, fingerprint)
                .map_err(|fmt::Error| TraceError::Write(io::Error::other("formatting failed")))?;
            sink.write_all(self.line_scratch.as_bytes())
                .map_err(TraceError::Write)?;
        }
        if self.pending.len() >= BATCH_BYTES {
            self.running.update(&self.pending);
            self.pending.clear();
        }
        Ok(())
    }
}

/// Appends a record's fields before the fingerprint (the single place they are encoded:
/// recording and verification both come here, so the file and the hash cannot drift).
fn push_head(out: &mut Vec<u8>, time: SimTime, node: NodeId, kind: &str) {
    out.extend_from_slice(&time.as_micros().to_le_bytes());
    out.extend_from_slice(&node.as_u32().to_le_bytes());
    // `is_valid_kind` bounds the length to 32.
    out.push(kind.len() as u8);
    out.extend_from_slice(kind.as_bytes());
}

/// The fingerprint of `payload` (see the module documentation).
pub fn fingerprint(payload: &[u8]) -> Vec<u8> {
    if payload.len() <= MAX_INLINE_PAYLOAD {
        let mut out = Vec::with_capacity(payload.len() + 1);
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
        out
    } else {
        let mut out = Vec::with_capacity(DIGEST_FINGERPRINT_BYTES);
        out.push(DIGEST_TAG);
        out.extend_from_slice(
            Sha256::digest(payload)
                .get(..DIGEST_FINGERPRINT_BYTES - 1)
                .unwrap_or_default(),
        );
        out
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
        if line_number == 1 {
            if let Some(seed) = line.strip_prefix(HEADER_PREFIX) {
                let seed = seed.parse::<u64>().map_err(|_| TraceError::Malformed {
                    line: 1,
                    reason: "header seed is not a u64",
                })?;
                recorder.header(seed)?;
                continue;
            }
            if line.starts_with("agora-trace ") {
                return Err(TraceError::Malformed {
                    line: 1,
                    reason: "unsupported trace format version (this build reads v2)",
                });
            }
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
        recorder.absorb(parsed.time, parsed.node, parsed.kind, &parsed.fingerprint)?;
    }
    Ok(recorder.trace_hash())
}

/// The header line's text before the seed.
const HEADER_PREFIX: &str = "agora-trace v2 seed ";

/// The header record's bytes before the seed.
const HEADER_RECORD: &[u8] = b"agora-trace v2\0";

fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_BYTES
        && kind.bytes().all(|byte| byte.is_ascii_graphic())
}

fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests;
