//! [`agora_protocol::frames`] over async byte streams: the reading and writing half of a
//! streamed lease operation, on a libp2p stream or an in-process pipe alike.

use agora_protocol::frames::{self, Decoder, FrameError, StreamFrame};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why a framed stream failed.
#[derive(Debug, thiserror::Error)]
pub enum FramedError {
    /// The transport failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that breaks the bounds or does not decode.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A frame could not be encoded (a data chunk above the bound: a bug on our side).
    #[error("cannot encode a frame: {0}")]
    Encode(#[from] agora_protocol::codec::EncodeError),
}

/// Reads frames from one half of a stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: Decoder,
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: Decoder::default(),
            eof: false,
        }
    }

    /// The opening frame (raw bytes of a signed operation); `None` when the stream ended
    /// before one.
    ///
    /// # Errors
    /// [`FramedError`] on a transport failure, an oversized frame or a stream cut inside it.
    pub async fn open(&mut self) -> Result<Option<Vec<u8>>, FramedError> {
        loop {
            if let Some(open) = self.decoder.next_open()? {
                return Ok(Some(open.0));
            }
            if !self.fill().await? {
                self.decoder.finish()?;
                return Ok(None);
            }
        }
    }

    /// The next frame; `None` at a clean end of the stream.
    ///
    /// # Errors
    /// [`FramedError`] on a transport failure, a bad frame or a stream cut inside a frame.
    pub async fn next(&mut self) -> Result<Option<StreamFrame>, FramedError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                self.decoder.finish()?;
                return Ok(None);
            }
        }
    }

    /// Reads more bytes into the decoder; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, FramedError> {
        if self.eof {
            return Ok(false);
        }
        let mut buf = [0u8; READ_CHUNK];
        let n = self.inner.read(&mut buf).await?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.decoder.push(buf.get(..n).unwrap_or_default());
        Ok(true)
    }
}

/// Writes frames to one half of a stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer over `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// Sends the opening frame (a signed operation's wire bytes).
    ///
    /// # Errors
    /// [`FramedError`] when it is too long or the transport fails.
    pub async fn open(&mut self, op_wire: &[u8]) -> Result<(), FramedError> {
        self.buf.clear();
        frames::encode_open(op_wire, &mut self.buf)?;
        self.flush_buf().await
    }

    /// Sends one frame and flushes it.
    ///
    /// # Errors
    /// [`FramedError`] when the transport fails.
    pub async fn send(&mut self, frame: &StreamFrame) -> Result<(), FramedError> {
        self.buf.clear();
        frames::encode(frame, &mut self.buf)?;
        self.flush_buf().await
    }

    /// Sends `data` as data frames of `make`, split at the chunk bound.
    ///
    /// # Errors
    /// [`FramedError`] when the transport fails.
    pub async fn send_chunks(
        &mut self,
        data: &[u8],
        make: fn(Vec<u8>) -> StreamFrame,
    ) -> Result<(), FramedError> {
        for frame in frames::chunks(data, make) {
            self.send(&frame).await?;
        }
        Ok(())
    }

    /// Closes the writing side (the peer reads a clean end).
    ///
    /// # Errors
    /// [`FramedError`] when the transport fails.
    pub async fn close(&mut self) -> Result<(), FramedError> {
        self.inner.shutdown().await?;
        Ok(())
    }

    async fn flush_buf(&mut self) -> Result<(), FramedError> {
        self.inner.write_all(&self.buf).await?;
        self.inner.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_a_pipe_and_the_end_is_clean() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let sender = tokio::spawn(async move {
            w.open(b"op").await.unwrap();
            w.send_chunks(&vec![1u8; 70_000], StreamFrame::Stdout)
                .await
                .unwrap();
            w.send(&StreamFrame::Exit(3)).await.unwrap();
            w.close().await.unwrap();
        });
        assert_eq!(r.open().await.unwrap().unwrap(), b"op");
        let mut got = 0;
        loop {
            match r.next().await.unwrap() {
                Some(StreamFrame::Stdout(d)) => got += d.len(),
                Some(StreamFrame::Exit(3)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, 70_000);
        assert!(r.next().await.unwrap().is_none());
        sender.await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_frame_and_an_oversized_one_are_errors() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        assert!(matches!(
            r.next().await,
            Err(FramedError::Frame(FrameError::Truncated { .. }))
        ));
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut r = FrameReader::new(b);
        assert!(matches!(
            r.next().await,
            Err(FramedError::Frame(FrameError::TooLong { .. }))
        ));
    }
}
