//! Traffic through `agora tunnel` forwards to busybox servers in the workload: `nc -ll -e cat`
//! (an echo: every connection gets its own `cat`) and `nc -ll -e yes` (a flood).
//!
//! Each connection writes from one thread and reads from another, so backpressure works
//! both ways, and ends its sending with a half-close (`shutdown(Write)`) before reading the
//! echo to its end. Failures show as a panic; times are printed, never asserted.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How long one read may wait before the stream counts as stalled.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per block of [`blocks`].
const BLOCK: usize = 1 << 20;

/// `count` blocks of seeded pseudo-random bytes, each stamped with its index (so a lost,
/// repeated or reordered block changes the hash).
fn blocks(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut state = seed | 1;
    let base: Vec<u8> = (0..BLOCK / 8)
        .flat_map(|_| {
            // xorshift64: deterministic and cheap.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    (0..count).map(move |i| {
        let mut b = base.clone();
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b
    })
}

/// What one echoed connection sent and got back.
struct Echoed {
    sent: (u64, [u8; 32]),
    received: (u64, [u8; 32]),
}

/// Sends `data` through `addr` (one writer thread, half-close at the end) while reading the
/// answer to its end; the count and SHA-256 of both directions.
fn echo(addr: SocketAddr, data: impl Iterator<Item = Vec<u8>> + Send) -> Echoed {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    std::thread::scope(|s| {
        let sending = s.spawn(move || {
            let (mut n, mut hash) = (0u64, Sha256::new());
            for block in data {
                writer.write_all(&block).unwrap();
                hash.update(&block);
                n += block.len() as u64;
            }
            writer.shutdown(Shutdown::Write).unwrap();
            (n, hash.finalize().into())
        });
        let (mut n, mut hash) = (0u64, Sha256::new());
        let mut buf = vec![0u8; 256 * 1024];
        let mut reader = &stream;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    hash.update(&buf[..k]);
                    n += k as u64;
                }
                Err(e) => panic!("reading the echo after {n} bytes: {e}"),
            }
        }
        Echoed {
            sent: sending.join().unwrap(),
            received: (n, hash.finalize().into()),
        }
    })
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// `mib` MiB through the echo at `addr`: what came back is what went out (count and
/// SHA-256).
pub fn integrity(addr: SocketAddr, mib: usize) {
    let started = Instant::now();
    let e = echo(addr, blocks(0x5eed, mib));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(e.sent.0, (mib * BLOCK) as u64, "bytes sent");
    assert_eq!(
        e.received.0, e.sent.0,
        "the echo returned another number of bytes"
    );
    assert_eq!(
        hex(&e.received.1),
        hex(&e.sent.1),
        "the echo's SHA-256 differs from what was sent"
    );
    eprintln!(
        "integrity: {mib} MiB out and back through the tunnel in {secs:.1} s ({:.1} MiB/s each way), sha256 {}",
        mib as f64 / secs,
        hex(&e.sent.1)
    );
}

/// How long [`concurrent`] connections took, from the moment all were open.
#[derive(Debug)]
pub struct Took {
    /// Until the last was done.
    pub all: Duration,
    /// The median connection.
    pub median: Duration,
}

/// Opens a connection through the echo at `addr` and waits for its echo of an 8-byte
/// hello: the stream and the workload's end of it are then up.
fn opened(addr: SocketAddr, i: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let hello = (i as u64).to_le_bytes();
    stream.write_all(&hello).unwrap();
    let mut back = [0u8; 8];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("connection {i} opening: {e}"));
    assert_eq!(back, hello, "connection {i} opening");
    stream
}

/// `n` connections at once through the echo at `addr`, each with its own data (`kib` KiB
/// seeded by its index): each gets exactly its own bytes back.
///
/// They are opened one after the other, each until it answers, then all send at once:
/// busybox `nc` listens with a backlog of 2, and a burst of connects overflows it (the
/// workload's kernel resets some), tunnel or not.
pub fn concurrent(addr: SocketAddr, n: usize, kib: usize) -> Took {
    let streams: Vec<TcpStream> = (0..n).map(|i| opened(addr, i)).collect();
    let barrier = std::sync::Barrier::new(n);
    let mut each: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let data: Vec<u8> =
                        blocks(i as u64 + 1, 1).next().unwrap()[..kib * 1024].to_vec();
                    barrier.wait();
                    let started = Instant::now();
                    let mut writer = stream.try_clone().unwrap();
                    let sent = data.clone();
                    let sending = std::thread::spawn(move || {
                        writer.write_all(&sent).unwrap();
                        writer.shutdown(Shutdown::Write).unwrap();
                    });
                    let mut back = Vec::new();
                    (&stream)
                        .read_to_end(&mut back)
                        .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                    sending.join().unwrap();
                    assert!(
                        back == data,
                        "connection {i} got {} bytes back, not its own {}",
                        back.len(),
                        data.len()
                    );
                    started.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    each.sort();
    Took {
        all: each[n - 1],
        median: each[n / 2],
    }
}

/// A connection to the flood at `flood` that is never read stays open and backed up while
/// other connections through the echo at `echo` complete.
pub fn slow_reader(flood: SocketAddr, echo_addr: SocketAddr) {
    let mut stalled = TcpStream::connect(flood).unwrap();
    // `yes` writes far faster than the tunnel carries: in 2 s every buffer on the way
    // (workload socket, provider pipe, QUIC stream window, agent socket) is full.
    std::thread::sleep(Duration::from_secs(2));
    let took = concurrent(echo_addr, 10, 1024);
    let started = Instant::now();
    let e = echo(echo_addr, blocks(7, 16));
    assert_eq!(e.received, e.sent, "16 MiB beside the stalled stream");
    eprintln!(
        "slow reader: beside a stalled stream, 10 x 1 MiB echoes in {} ms, 16 MiB in {} ms",
        took.all.as_millis(),
        started.elapsed().as_millis()
    );
    // The stalled stream was only waiting: it still delivers `yes` output.
    stalled.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    stalled.read_exact(&mut buf).unwrap();
    assert!(
        buf.chunks(2).all(|c| c == b"y\n"),
        "the stalled stream carried something else"
    );
}
