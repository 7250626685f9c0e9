//! Piping a tunnel stream to a workload's port: both directions at once, each a bounded
//! buffer (a slow reader on one side slows the writer on the other: backpressure), and the
//! end of one direction is passed on as a half-close (`shutdown`) while the other goes on.
//!
//! Between a QUIC stream and a socket ([`quic_both_ways`]) the bytes are not copied
//! through a bounce buffer: quinn's receive buffers (one per STREAM frame) go to the
//! socket as they are, many per vectored write, and what the socket gives is handed to
//! quinn as owned chunks, which it queues without copying. Every byte of a tunnel crosses
//! both ends, so each copy saved is paid back twice.

use std::io::IoSlice;

use bytes::{Buf as _, Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The most one read from the socket side takes (the QUIC side is bounded by the
/// stream's flow-control window).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks taken from a QUIC stream at once (each at most one packet's payload), and so the
/// most buffers one vectored write passes on.
const CHUNKS_PER_READ: usize = 32;

/// The least room a read from the socket into QUIC gets before a fresh buffer is taken. A
/// chunk handed to quinn keeps its whole allocation alive until the peer acknowledges it,
/// so small reads share one allocation (filled up to this) rather than each pinning
/// [`CHUNK_BYTES`].
const MIN_READ_ROOM: usize = 8 * 1024;

/// Copies QUIC stream `from` into `to` until `from` finishes, then shuts `to` down
/// (half-close); calls `counted` with the bytes of each batch. quinn's own buffers are
/// written, many per vectored write, instead of being copied into one of ours.
///
/// # Errors
/// The first read or write error; `to` is then left as is.
async fn from_quic<W>(
    from: &mut RecvStream,
    to: &mut W,
    mut counted: impl FnMut(u64),
) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut chunks: [Bytes; CHUNKS_PER_READ] = std::array::from_fn(|_| Bytes::new());
    let mut total = 0u64;
    loop {
        let Some(got) = from.read_chunks(&mut chunks).await? else {
            to.shutdown().await?;
            return Ok(total);
        };
        let n = write_all_chunks(to, chunks.get_mut(..got).unwrap_or_default()).await?;
        total = total.saturating_add(n);
        counted(n);
    }
}

/// Writes every byte of `chunks` to `to` with vectored writes (a writer without them
/// takes one chunk per write); returns the bytes written. The chunks are consumed.
async fn write_all_chunks<W>(to: &mut W, chunks: &mut [Bytes]) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut first = 0;
    loop {
        // Skip what is written (or was empty).
        while chunks.get(first).is_some_and(Bytes::is_empty) {
            first += 1;
        }
        let Some(rest) = chunks.get_mut(first..).filter(|r| !r.is_empty()) else {
            return Ok(u64::try_from(total).unwrap_or(u64::MAX));
        };
        let written = {
            let slices: [IoSlice<'_>; CHUNKS_PER_READ] =
                std::array::from_fn(|i| IoSlice::new(rest.get(i).map_or(&[][..], |c| &c[..])));
            let count = rest.len().min(CHUNKS_PER_READ);
            to.write_vectored(slices.get(..count).unwrap_or_default())
                .await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        for chunk in rest.iter_mut() {
            let step = left.min(chunk.len());
            chunk.advance(step);
            left -= step;
            if left == 0 {
                break;
            }
        }
    }
}

/// Copies `from` into QUIC stream `to` until `from` ends, then finishes `to` (half-close);
/// calls `counted` with each read's size. What a read returns is handed to quinn as an
/// owned chunk (no copy into quinn's send buffer).
///
/// # Errors
/// The first read or write error; `to` is then left as is (the caller resets it).
async fn to_quic<R>(
    from: &mut R,
    to: &mut SendStream,
    mut counted: impl FnMut(u64),
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    loop {
        if buf.capacity() < MIN_READ_ROOM {
            buf.reserve(CHUNK_BYTES);
        }
        let n = from.read_buf(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        to.write_chunk(buf.split().freeze()).await?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        total = total.saturating_add(n);
        counted(n);
    }
}

/// Pipes a QUIC stream (`recv`, `send`) and a socket-like `other` both ways until both
/// directions have ended (or one fails), without bounce-buffer copies (see the module
/// documentation); returns the bytes copied (QUIC to `other`, `other` to QUIC).
///
/// # Errors
/// The first I/O error of either direction.
pub async fn quic_both_ways<R, W>(
    recv: &mut RecvStream,
    send: &mut SendStream,
    other_read: &mut R,
    other_write: &mut W,
    to_other: impl FnMut(u64),
    to_quic_counted: impl FnMut(u64),
) -> std::io::Result<(u64, u64)>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    tokio::try_join!(
        from_quic(recv, other_write, to_other),
        to_quic(other_read, send, to_quic_counted)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `len` bytes of a pattern that shifts every chunk, so a reordered or repeated chunk
    /// would not compare equal.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(31)
                    .wrapping_add((i / 4093) as u8 ^ seed)
            })
            .collect()
    }

    /// agent socket <-> quic_both_ways <-> QUIC <-> quic_both_ways <-> workload socket,
    /// over a real tunnel connection on loopback: megabytes each way in many QUIC chunks and
    /// partial vectored writes, a half-close in the middle, the answer after it.
    #[tokio::test]
    async fn quic_pipes_carry_both_directions_and_the_half_close_without_copies() {
        use std::net::{Ipv4Addr, SocketAddr};

        use agora_attest::Identity;

        let provider = Identity::generate(&mut rand::rng());
        let agent = Identity::generate(&mut rand::rng());
        let config = crate::tunnel::server::Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let endpoint = crate::tunnel::server::endpoint(&provider, &config).unwrap();
        let addr = endpoint.local_addr().unwrap();
        // Small duplex buffers: writes are cut short, so partial vectored writes happen.
        let (workload, b) = tokio::io::duplex(3_000);
        let server = tokio::spawn(async move {
            let conn = endpoint.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let (mut br, mut bw) = tokio::io::split(b);
            let copied =
                quic_both_ways(&mut recv, &mut send, &mut br, &mut bw, |_| {}, |_| {}).await;
            // Wait for the peer to take everything before the connection goes.
            let _ = send.stopped().await;
            copied
        });
        let dialer =
            crate::tunnel::Dialer::new(&agent, provider.agora_id(), vec![addr], Vec::new())
                .unwrap();
        let conn = dialer.connection().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let (mut agent_side, a) = tokio::io::duplex(5_000);
        let client = tokio::spawn(async move {
            let (mut ar, mut aw) = tokio::io::split(a);
            quic_both_ways(&mut recv, &mut send, &mut ar, &mut aw, |_| {}, |_| {}).await
        });

        let request = pattern(3 * 1024 * 1024 + 17, 1);
        let answer = pattern(2 * 1024 * 1024 + 5, 2);
        let workload_task = {
            let (request, answer) = (request.clone(), answer.clone());
            tokio::spawn(async move {
                let mut workload = workload;
                let mut got = Vec::new();
                workload.read_to_end(&mut got).await.unwrap();
                assert!(got == request, "the request arrived intact");
                workload.write_all(&answer).await.unwrap();
                workload.shutdown().await.unwrap();
            })
        };
        let writer = {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut read, mut write) = tokio::io::split(&mut agent_side);
                let send = async {
                    write.write_all(&request).await.unwrap();
                    write.shutdown().await.unwrap();
                };
                let mut back = Vec::new();
                let receive = read.read_to_end(&mut back);
                let ((), got) = tokio::join!(send, receive);
                got.unwrap();
                back
            })
        };
        let back = tokio::time::timeout(std::time::Duration::from_secs(60), writer)
            .await
            .unwrap()
            .unwrap();
        assert!(
            back == answer,
            "the answer came back intact after the half-close"
        );
        workload_task.await.unwrap();
        let (to_agent, to_provider) = client.await.unwrap().unwrap();
        assert_eq!(
            (to_agent, to_provider),
            (answer.len() as u64, request.len() as u64)
        );
        let (to_workload, from_workload) = server.await.unwrap().unwrap();
        assert_eq!(
            (to_workload, from_workload),
            (request.len() as u64, answer.len() as u64)
        );
    }
}
