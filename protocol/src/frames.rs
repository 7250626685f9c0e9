//! Framing for streamed lease operations (exec, logs, files) and, later, direct sessions
//! over tunnels: a sans-IO encoder and an incremental, bounded decoder.
//!
//! A stream opens with the agent's signed [`crate::lease::LeaseOp`] (one frame of raw
//! bytes, [`OpenFrame`]), the provider answers [`StreamFrame::Accepted`] or
//! [`StreamFrame::Refused`], then frames flow both ways until [`StreamFrame::Exit`] or
//! [`StreamFrame::End`].
//!
//! ```text
//! frame := length u32 big-endian (≤ MAX_FRAME_BYTES) | postcard(StreamFrame)
//! ```
//!
//! The decoder never allocates more than one frame's bound ahead of the bytes it has seen,
//! and rejects oversized or malformed frames with an error instead of panicking.

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::lease::Refusal;

/// Most payload bytes in one data frame.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;

/// Most bytes of one encoded frame (payload plus framing overhead).
pub const MAX_FRAME_BYTES: usize = MAX_CHUNK_BYTES + 1024;

/// Most bytes of the opening frame (a signed lease operation).
pub const MAX_OPEN_BYTES: usize = 16 * 1024;

/// One frame of an operation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFrame {
    /// The provider accepted the operation; frames follow.
    Accepted,
    /// The provider refused the operation; the stream ends.
    Refused(Refusal),
    /// Bytes for the command's standard input (agent → provider).
    Stdin(Vec<u8>),
    /// The agent closed standard input.
    StdinClosed,
    /// Standard output (or the terminal) of the command or workload.
    Stdout(Vec<u8>),
    /// Standard error.
    Stderr(Vec<u8>),
    /// Bytes of a file transfer (a tar stream), either way.
    Data(Vec<u8>),
    /// The command ended with this code; the stream ends.
    Exit(i32),
    /// The operation finished (logs ended, a transfer completed); the stream ends.
    End,
    /// The operation failed midway; the stream ends.
    Failed(Refusal),
}

impl StreamFrame {
    /// Whether this frame ends the stream.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Refused(_) | Self::Exit(_) | Self::End | Self::Failed(_)
        )
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is above the bound.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The frame's contents did not decode.
    #[error("malformed frame: {0}")]
    Malformed(#[from] DecodeError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
}

/// Encodes `frame` with its length prefix, appending to `out`.
///
/// # Errors
/// [`EncodeError::TooLong`] for a data chunk above [`MAX_CHUNK_BYTES`] (the decoder would
/// refuse it).
pub fn encode(frame: &StreamFrame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if let StreamFrame::Stdin(d)
    | StreamFrame::Stdout(d)
    | StreamFrame::Stderr(d)
    | StreamFrame::Data(d) = frame
        && d.len() > MAX_CHUNK_BYTES
    {
        // The decoder refuses such a frame: never send one.
        return Err(EncodeError::TooLong {
            len: d.len(),
            max: MAX_CHUNK_BYTES,
        });
    }
    let body = codec::encode(frame, MAX_FRAME_BYTES)?;
    put(&body, out);
    Ok(())
}

/// Encodes raw bytes (the opening operation) with a length prefix.
///
/// # Errors
/// [`EncodeError::TooLong`] above [`MAX_OPEN_BYTES`].
pub fn encode_open(op_wire: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if op_wire.len() > MAX_OPEN_BYTES {
        return Err(EncodeError::TooLong {
            len: op_wire.len(),
            max: MAX_OPEN_BYTES,
        });
    }
    put(op_wire, out);
    Ok(())
}

fn put(body: &[u8], out: &mut Vec<u8>) {
    // Bodies are bounded by MAX_FRAME_BYTES or MAX_OPEN_BYTES, far below u32::MAX.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// Splits data into frames of at most [`MAX_CHUNK_BYTES`] using `make` (e.g.
/// `StreamFrame::Stdout`).
pub fn chunks(
    data: &[u8],
    make: fn(Vec<u8>) -> StreamFrame,
) -> impl Iterator<Item = StreamFrame> + '_ {
    data.chunks(MAX_CHUNK_BYTES).map(move |c| make(c.to_vec()))
}

/// An incremental decoder: feed bytes as they arrive, take whole frames out.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_BYTES)
    }
}

/// The opening frame of a stream: the signed operation's wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFrame(pub Vec<u8>);

impl Decoder {
    /// A decoder accepting frames up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame's raw body, if one has arrived.
    ///
    /// # Errors
    /// [`FrameError::TooLong`] when the announced length is above the bound (checked before
    /// the body arrives, so nothing large is ever buffered).
    pub fn next_raw(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.next_bounded(self.max)
    }

    /// The opening frame (a signed operation, at most [`MAX_OPEN_BYTES`]), if it has arrived.
    ///
    /// # Errors
    /// [`FrameError::TooLong`] above the bound.
    pub fn next_open(&mut self) -> Result<Option<OpenFrame>, FrameError> {
        Ok(self
            .next_bounded(MAX_OPEN_BYTES.min(self.max))?
            .map(OpenFrame))
    }

    fn next_bounded(&mut self, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
        if len > max {
            return Err(FrameError::TooLong { len, max });
        }
        let Some(body) = self.buf.get(4..4 + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }

    /// The next whole [`StreamFrame`], if one has arrived.
    ///
    /// # Errors
    /// [`FrameError`] for an oversized or malformed frame.
    pub fn next_frame(&mut self) -> Result<Option<StreamFrame>, FrameError> {
        match self.next_raw()? {
            None => Ok(None),
            Some(body) => {
                let frame: StreamFrame = codec::decode(&body, self.max)?;
                if let StreamFrame::Stdin(d)
                | StreamFrame::Stdout(d)
                | StreamFrame::Stderr(d)
                | StreamFrame::Data(d) = &frame
                    && d.len() > MAX_CHUNK_BYTES
                {
                    return Err(FrameError::TooLong {
                        len: d.len(),
                        max: MAX_CHUNK_BYTES,
                    });
                }
                Ok(Some(frame))
            }
        }
    }

    /// Checks that the stream ended on a frame boundary.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] if bytes of an incomplete frame remain.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::RefusalCode;
    use proptest::prelude::*;

    fn all_frames() -> Vec<StreamFrame> {
        vec![
            StreamFrame::Accepted,
            StreamFrame::Refused(Refusal::new(RefusalCode::Replay, "seen")),
            StreamFrame::Stdin(b"in".to_vec()),
            StreamFrame::StdinClosed,
            StreamFrame::Stdout(vec![7; MAX_CHUNK_BYTES]),
            StreamFrame::Stderr(vec![]),
            StreamFrame::Data(b"tar".to_vec()),
            StreamFrame::Exit(-1),
            StreamFrame::End,
            StreamFrame::Failed(Refusal::new(RefusalCode::Ended, "gone")),
        ]
    }

    #[test]
    fn frames_round_trip_in_any_split() {
        let frames = all_frames();
        let mut wire = Vec::new();
        encode_open(b"signed op", &mut wire).unwrap();
        for f in &frames {
            encode(f, &mut wire).unwrap();
        }
        for split in [1, 3, 4, 5, 1000, wire.len()] {
            let mut dec = Decoder::default();
            let mut got = Vec::new();
            let mut opened = None;
            for piece in wire.chunks(split) {
                dec.push(piece);
                if opened.is_none() {
                    opened = dec.next_open().unwrap();
                }
                if opened.is_some() {
                    while let Some(f) = dec.next_frame().unwrap() {
                        got.push(f);
                    }
                }
            }
            assert_eq!(opened, Some(OpenFrame(b"signed op".to_vec())));
            assert_eq!(got, frames);
            dec.finish().unwrap();
        }
        assert!(StreamFrame::Exit(0).is_final() && !StreamFrame::Accepted.is_final());
    }

    #[test]
    fn oversized_frames_are_refused_before_they_arrive() {
        let mut dec = Decoder::default();
        dec.push(&(u32::MAX).to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(FrameError::TooLong { .. })));
        let mut out = Vec::new();
        assert!(encode(&StreamFrame::Stdout(vec![0; MAX_FRAME_BYTES]), &mut out).is_err());
        assert!(encode(&StreamFrame::Data(vec![0; MAX_CHUNK_BYTES + 1]), &mut out).is_err());
        assert!(encode_open(&vec![0; MAX_OPEN_BYTES + 1], &mut out).is_err());
        let chunked: Vec<_> =
            chunks(&vec![1; MAX_CHUNK_BYTES * 2 + 1], StreamFrame::Data).collect();
        assert_eq!(chunked.len(), 3);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_reported() {
        let mut wire = Vec::new();
        encode(&StreamFrame::Stdout(b"hello".to_vec()), &mut wire).unwrap();
        let mut dec = Decoder::default();
        dec.push(&wire[..wire.len() - 1]);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert!(matches!(dec.finish(), Err(FrameError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut dec = Decoder::default();
            dec.push(&bytes);
            for _ in 0..8 {
                if !matches!(dec.next_frame(), Ok(Some(_))) {
                    break;
                }
            }
        }
    }
}
