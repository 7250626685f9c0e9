//! What the bench runs on the host beside the tunnel: busybox servers on 127.0.0.1 (the same
//! sink and echo as the workload's), free ports, and CPU time of process trees from `/proc`.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The discard sink, as a busybox `nc -e` program: reads to the end, then answers `done`
/// (so the sender's clock stops only once the far end has every byte).
pub const SINK: &str = "dd of=/dev/null bs=256k 2>/dev/null; echo done";

/// A TCP port free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `busybox nc -ll` server on 127.0.0.1, killed on drop.
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Served {
    /// `busybox nc -ll -p PORT 127.0.0.1 -e PROG…` on a free port, once it accepts.
    pub fn start(prog: &[&str]) -> Self {
        let port = free_tcp_port();
        let child = Command::new("busybox")
            .args(["nc", "-ll", "-p", &port.to_string(), "127.0.0.1", "-e"])
            .args(prog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox (busybox-static) on the PATH");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "busybox nc never listened on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    /// The discard sink ([`SINK`]), with busybox's `sh` and `dd` as in the workload.
    pub fn sink() -> Self {
        Self::start(&["busybox", "sh", "-c", &format!("busybox {SINK}")])
    }

    /// An echo (`cat`).
    pub fn echo() -> Self {
        Self::start(&["busybox", "cat"])
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `mib` MiB to the sink at `addr`, half-closes and waits for its `done`: the time
/// from before the connect to the answer, or what went wrong.
pub fn transfer(addr: SocketAddr, mib: usize) -> Result<Duration, String> {
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    for _ in 0..mib {
        s.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
    }
    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read the answer: {e}"))?;
    let took = started.elapsed();
    if answer.trim() == "done" {
        Ok(took)
    } else {
        Err(format!("the sink answered {answer:?}"))
    }
}

/// `rounds` one-byte round trips through the echo at `addr` on one connection (after as
/// many warm-up rounds as a tenth of them), each timed; sorted.
pub fn ping_pong(addr: SocketAddr, rounds: usize) -> Result<Vec<Duration>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(rounds);
    let mut byte = [0u8; 1];
    for i in 0..rounds / 10 + rounds {
        let started = Instant::now();
        s.write_all(b"p").map_err(|e| format!("write: {e}"))?;
        s.read_exact(&mut byte)
            .map_err(|e| format!("round {i}: {e}"))?;
        if i >= rounds / 10 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    Ok(times)
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
fn ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (parent pid, user + system ticks) of every process.
fn processes() -> BTreeMap<u32, (u32, u64)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name (in parentheses, which may hold anything): state, ppid,
        // then utime and stime as the 12th and 13th fields.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(utime), Some(stime)) = (
            f.get(1).and_then(|v| v.parse().ok()),
            f.get(11).and_then(|v| v.parse::<u64>().ok()),
            f.get(12).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        all.insert(pid, (ppid, utime + stime));
    }
    all
}

/// CPU seconds used so far by `pid` alone (`tree` false) or with all its descendants.
pub fn cpu_s(pid: u32, tree: bool) -> f64 {
    let all = processes();
    let mut total = 0u64;
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        total += all.get(&p).map_or(0, |(_, t)| *t);
        if tree {
            frontier.extend(
                all.iter()
                    .filter(|(_, (ppid, _))| *ppid == p)
                    .map(|(child, _)| *child),
            );
        }
    }
    total as f64 / ticks_per_s()
}

/// The 1-minute load average.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// The CPU model and count, for the table's header.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} × {model}")
}
