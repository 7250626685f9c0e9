//! A length-prefixed byte-frame codec for request-response protocols.
//!
//! Each request and response is one frame: a 4-byte big-endian length, then that many bytes.
//! Lengths over the protocol's bound are refused before anything is allocated, so a peer
//! cannot make us buffer more than the bound. What the bytes mean is up to the protocol's
//! handler (e.g. [`agora_protocol::gossip::SyncRequest`]).

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;

/// Frames bounded per direction.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Largest request accepted or sent.
    pub max_request: usize,
    /// Largest response accepted or sent.
    pub max_response: usize,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte bound"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&l| l as usize <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the {max}-byte bound",
                    bytes.len()
                ),
            )
        })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    const P: StreamProtocol = StreamProtocol::new("/test/1");

    fn codec() -> FrameCodec {
        FrameCodec {
            max_request: 8,
            max_response: 16,
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let mut buf = Cursor::new(Vec::new());
        codec()
            .write_request(&P, &mut buf, b"hello".to_vec())
            .await
            .unwrap();
        let mut rd = Cursor::new(buf.into_inner());
        assert_eq!(
            codec().read_request(&P, &mut rd).await.unwrap(),
            b"hello".to_vec()
        );
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_both_ways() {
        let mut buf = Cursor::new(Vec::new());
        assert!(
            codec()
                .write_request(&P, &mut buf, vec![0; 9])
                .await
                .is_err()
        );
        // A length prefix claiming 4 GiB is refused without allocating.
        let mut rd = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let err = codec().read_response(&P, &mut rd).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn truncated_frames_fail() {
        let mut rd = Cursor::new(vec![0, 0, 0, 5, 1, 2]);
        assert!(codec().read_request(&P, &mut rd).await.is_err());
    }
}
