//! Piping a tunnel stream to a workload's port: both directions at once, each a bounded
//! buffer (a slow reader on one side slows the writer on the other: backpressure), and the
//! end of one direction is passed on as a half-close (`shutdown`) while the other goes on.

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Bytes buffered per direction.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Copies `from` into `to` until `from` ends, then shuts `to` down (half-close); calls
/// `counted` with each chunk's size. Returns the bytes copied.
///
/// # Errors
/// The first read or write error; `to` is then left as is (the caller resets or drops it).
pub async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    mut counted: impl FnMut(u64),
) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            to.shutdown().await?;
            return Ok(total);
        };
        to.write_all(chunk).await?;
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        total = total.saturating_add(n);
        counted(n);
    }
}

/// Pipes `a` and `b` both ways until both directions have ended (or one fails); returns the
/// bytes copied (a to b, b to a).
///
/// # Errors
/// The first I/O error of either direction.
pub async fn both_ways<AR, AW, BR, BW>(
    a_read: &mut AR,
    a_write: &mut AW,
    b_read: &mut BR,
    b_write: &mut BW,
    a_to_b: impl FnMut(u64),
    b_to_a: impl FnMut(u64),
) -> std::io::Result<(u64, u64)>
where
    AR: AsyncRead + Unpin + ?Sized,
    AW: AsyncWrite + Unpin + ?Sized,
    BR: AsyncRead + Unpin + ?Sized,
    BW: AsyncWrite + Unpin + ?Sized,
{
    tokio::try_join!(copy(a_read, b_write, a_to_b), copy(b_read, a_write, b_to_a))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_half_close_passes_through_and_the_answer_still_comes_back() {
        // client <-> (a) pipe (b) <-> server
        let (mut client, a) = tokio::io::duplex(16);
        let (b, mut server) = tokio::io::duplex(16);
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let pipe = tokio::spawn(async move {
            both_ways(&mut ar, &mut aw, &mut br, &mut bw, |_| {}, |_| {}).await
        });
        let request = vec![7u8; 100_000];
        let writer = {
            let request = request.clone();
            tokio::spawn(async move {
                client.write_all(&request).await.unwrap();
                client.shutdown().await.unwrap();
                let mut answer = String::new();
                client.read_to_string(&mut answer).await.unwrap();
                answer
            })
        };
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, request);
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        assert_eq!(writer.await.unwrap(), "done");
        assert_eq!(pipe.await.unwrap().unwrap(), (100_000, 4));
    }
}
