//! One-stream throughput and added round trip of a QUIC tunnel (`agora tunnel -L` to a
//! sandbox workload), beside an `ssh -L` forward through OpenSSH and plain TCP, all on
//! loopback in the same run; a line echoed through an open direct exec session and a new
//! process exec'd over the same connection (`agora agent exec --direct`'s path); then the
//! time from a lease's stop to its live streams closing.
//!
//! ```sh
//! cargo build --release -p agora-node --bin agora
//! AGORA_BIN=$CARGO_TARGET_DIR/release/agora cargo test -p agora-tests --bench tunnel_throughput -- --bench
//! ```
//! Options via env: `AGORA_BENCH_MIB` (per transfer, default 1024), `AGORA_BENCH_REPEAT`
//! (transfers per path, default 3), `AGORA_BENCH_ROUNDS` (round trips per path, default
//! 1000), `AGORA_BENCH_LINES` (lines echoed through the direct exec session, default 1000),
//! `AGORA_BENCH_SPAWNS` (new processes exec'd, default 50), `AGORA_BENCH_CUTS` (stop-to-cut
//! samples, a lease each, default 10), `AGORA_BENCH_EXEC_ONLY=1` (only the direct exec
//! rows: no transfers, round trips or cuts). Needs root,
//! bubblewrap and busybox-static (the sandbox), and `openssh-server` + `openssh-client` for
//! the ssh rows (skipped with a note without them).
//!
//! Two `agora node` processes on 127.0.0.1: gateway A and sandbox provider C with its tunnel
//! endpoint. The agent's lease (1 vCPU) runs busybox `nc -ll -e` serving a discard sink (`dd
//! of=/dev/null bs=256k`, then `done`) and an echo (`cat`); `agora tunnel` forwards both.
//! The same busybox sink and echo also run on the host, reached directly (loopback TCP) and
//! through `ssh -L` to a private `sshd` (default cipher, then AES-128-GCM, the tunnel's).
//!
//! - Throughput: one connection writes N MiB and half-closes; the clock stops when the
//!   sink's `done` arrives, so everything was delivered, not just buffered. Paths take turns
//!   per repeat, so load from elsewhere hits them alike. The forwarders' CPU time per GiB
//!   (agent side: `agora tunnel` or `ssh`; far side: provider C or `sshd`) says where the
//!   cycles go.
//! - Round trip: one byte to the echo and back, on one connection with `TCP_NODELAY`.
//! - Direct exec: over one `agora-ops/1` connection to C's tunnel endpoint, an exec of `cat`
//!   stays open and each line sent as input is timed until it is back as output (target
//!   ≤ 5 ms p50); then `true` is exec'd again and again, timed from the signed operation
//!   to its exit (new-process exec latency, no target).
//! - Stop to cut: a fresh lease with an echo, one stream through `agora tunnel` and one
//!   straight from a `tunnel::Dialer`, each proven live; then `agora agent stop` at A, timed
//!   until each stream ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use agora_attest::{Identity, keyfile};
use agora_node::tunnel::Dialer;
use agora_protocol::AgoraId;
use agora_tests::cluster::{
    Cluster, TunnelProc, agent_cli, capability, cgroup_parent, gateway_and_provider, run_lease,
    signup, wait_for_offer,
};
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, wait_for};

#[path = "common/mod.rs"]
mod common;
use common::{env_usize, quantile};

#[path = "tunnel_throughput/host.rs"]
mod host;
use host::{SINK, Served};

#[path = "tunnel_throughput/ssh.rs"]
mod ssh;

#[path = "tunnel_throughput/exec.rs"]
mod exec;

/// The workload's ports: the sink and the echo.
const SINK_PORT: u16 = 7100;
const ECHO_PORT: u16 = 7000;

const WAIT: Duration = Duration::from_secs(60);

/// One forwarding path under test.
struct Path_ {
    name: String,
    sink: SocketAddr,
    echo: SocketAddr,
    /// (process, with its descendants) whose CPU time is the agent side's and the far side's.
    cpu: Option<[(u32, bool); 2]>,
    transfers: Vec<Duration>,
    cpu_s: [f64; 2],
}

impl Path_ {
    fn new(name: &str, locals: &[SocketAddr], cpu: Option<[(u32, bool); 2]>) -> Self {
        Self {
            name: name.to_owned(),
            sink: locals[0],
            echo: locals[1],
            cpu,
            transfers: Vec::new(),
            cpu_s: [0.0; 2],
        }
    }

    fn cpu_now(&self) -> [f64; 2] {
        self.cpu
            .map_or([0.0; 2], |c| c.map(|(pid, tree)| host::cpu_s(pid, tree)))
    }

    fn transfer(&mut self, mib: usize) {
        let before = self.cpu_now();
        let took = host::transfer(self.sink, mib)
            .unwrap_or_else(|e| panic!("{}: transfer of {mib} MiB: {e}", self.name));
        let after = self.cpu_now();
        for (i, t) in self.cpu_s.iter_mut().enumerate() {
            *t += after[i] - before[i];
        }
        self.transfers.push(took);
    }
}

fn mib_per_s(mib: usize, d: Duration) -> f64 {
    mib as f64 / d.as_secs_f64()
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

/// How the `agora` binary in use was built, from its directory.
fn build_label() -> String {
    let bin = agora_tests::agora_bin();
    let profile = bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("?");
    match profile {
        "release" => "release build".to_owned(),
        "debug" => "**debug build**".to_owned(),
        other => format!("profile {other} ({})", bin.display()),
    }
}

/// The provider, its gateway and the agent, for the stop-to-cut samples.
struct Net<'a> {
    a: &'a NodeProc,
    c: &'a NodeProc,
    home: &'a Path,
    agent: &'a Identity,
    provider: AgoraId,
    endpoint: SocketAddr,
}

/// The times from sending the stop to: its answer, the end of the TCP connection through
/// `agora tunnel`, the end of the direct QUIC stream.
struct Cut {
    answered: Duration,
    through: Duration,
    direct: Duration,
}

/// One stop-to-cut sample on a fresh lease.
fn cut_sample(net: &Net<'_>, rt: &tokio::runtime::Runtime) -> Cut {
    let view = run_lease(
        net.home,
        net.a,
        net.c,
        &format!("--lifetime 5m --cpu 100m --memory 32Mi --port {ECHO_PORT}"),
        &format!("exec nc -ll -p {ECHO_PORT} -e cat"),
    );
    let lease = view["lease"].as_str().unwrap().to_owned();
    let (tunnel, locals) = TunnelProc::start(net.home, net.a, &lease, &[ECHO_PORT]);
    // Live through `agora tunnel`: a byte echoed (retried until the workload listens).
    let mut tcp = wait_for(WAIT, || {
        let mut s = TcpStream::connect(locals[0]).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"x").ok()?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        Some(s)
    })
    .expect("the echo answers through agora tunnel");
    let dialer = {
        let _in_rt = rt.enter(); // the dialer's UDP socket registers with the runtime
        Dialer::new(
            net.agent,
            net.provider,
            vec![net.endpoint],
            capability(&view),
        )
        .unwrap()
    };
    let (mut send, mut recv) = rt.block_on(dialer.open(ECHO_PORT)).unwrap();
    rt.block_on(async {
        send.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        recv.read_exact(&mut b).await.unwrap();
    });
    let direct = rt.spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(Some(_)) = recv.read(&mut buf).await {}
        Instant::now()
    });
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let through = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match tcp.read(&mut buf) {
                Ok(0) => return Instant::now(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the TCP connection through agora tunnel outlived the lease by 30 s")
                }
                Err(_) => return Instant::now(),
            }
        }
    });
    let sent = Instant::now();
    let (ok, _, err) = agent_cli(net.home, net.a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    let answered = sent.elapsed();
    let direct = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), direct).await })
        .expect("the direct stream outlived the lease by 30 s")
        .unwrap();
    let through = through.join().unwrap();
    drop((send, tunnel));
    rt.block_on(dialer.close());
    Cut {
        answered,
        through: through - sent,
        direct: direct - sent,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tunnel_throughput: benchmark skipped (run it with -- --bench)");
        return;
    }
    let mib = env_usize("AGORA_BENCH_MIB", 1024);
    let repeat = env_usize("AGORA_BENCH_REPEAT", 3).max(1);
    let rounds = env_usize("AGORA_BENCH_ROUNDS", 1000).max(10);
    let lines = env_usize("AGORA_BENCH_LINES", 1000).max(10);
    let spawns = env_usize("AGORA_BENCH_SPAWNS", 50).max(1);
    let cuts = env_usize("AGORA_BENCH_CUTS", 10);
    let exec_only = std::env::var_os("AGORA_BENCH_EXEC_ONLY").is_some();
    let build = build_label();
    let load_before = host::load();

    // The network: gateway A, provider C, the agent's lease with the sink and the echo.
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let Cluster {
        a,
        c,
        tunnel_port,
        committee: _committee,
    } = gateway_and_provider(
        tmp.path(),
        "sandbox",
        "\n[tiers.contained]\nmax_concurrent = 16\nspending_limit_credits = 1000000\n",
    );
    leftovers.add(cgroup_parent(&c));
    let home = tmp.path().join("agent");
    signup(&home, &a);
    let agent = keyfile::load(&home.join("agent.key")).unwrap();
    wait_for_offer(&a, &c);
    let view = run_lease(
        &home,
        &a,
        &c,
        &format!("--lifetime 1h --cpu 1 --memory 256Mi --port {SINK_PORT} --port {ECHO_PORT}"),
        &format!("nc -ll -p {ECHO_PORT} -e cat & exec nc -ll -p {SINK_PORT} -e sh -c '{SINK}'"),
    );
    let lease = view["lease"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = SocketAddr::from(([127, 0, 0, 1], tunnel_port));
    let provider: AgoraId = c.id.parse().unwrap();
    let direct_exec = |what: &str| {
        eprintln!("direct exec ({what}): {lines} lines echoed, {spawns} new processes");
        exec::direct_exec(
            &rt,
            &agent,
            provider,
            endpoint,
            lease.parse().unwrap(),
            lines,
            spawns,
        )
    };
    if exec_only {
        let times = direct_exec("only");
        println!(
            "\ntunnel_throughput (direct exec only): agora {build}; {}; load {load_before} before, {} after",
            host::machine(),
            host::load()
        );
        report_exec(&times);
        let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
        assert!(ok, "agent stop: {err}");
        return;
    }
    // Its debug lines name the connection's path figures when it closes (read below).
    let (tunnel, tunnel_locals) = TunnelProc::start_with(
        &home,
        &a,
        &[&lease, "--log", "warn,agora_node::tunnel=debug"],
        &[SINK_PORT, ECHO_PORT],
    );
    wait_for(WAIT, || host::transfer(tunnel_locals[0], 1).ok())
        .expect("the workload's sink answers through the tunnel");

    // The baselines on the host: the same busybox sink and echo, directly and through ssh.
    let (sink, echo) = (Served::sink(), Served::echo());
    let remotes = [sink.addr, echo.addr];
    let mut paths = vec![Path_::new("loopback TCP", &remotes, None)];
    let sshd = match ssh::missing() {
        Some(why) => {
            eprintln!("ssh rows skipped: {why}");
            None
        }
        None => Some(ssh::Sshd::start(&tmp.path().join("ssh"))),
    };
    let mut clients = Vec::new();
    if let Some(sshd) = &sshd {
        for (name, cipher) in [
            ("ssh -L (default: chacha20-poly1305)", None),
            ("ssh -L (aes128-gcm)", Some("aes128-gcm@openssh.com")),
        ] {
            let (client, locals) = sshd.forward(cipher, &remotes);
            paths.push(Path_::new(
                name,
                &locals,
                Some([(client.pid(), false), (sshd.pid(), true)]),
            ));
            clients.push(client);
        }
    }
    let c_pid = c.pid().unwrap();
    paths.push(Path_::new(
        &format!("agora tunnel ({build})"),
        &tunnel_locals,
        Some([(tunnel.pid(), false), (c_pid, false)]),
    ));

    // 1. Throughput, paths taking turns.
    for r in 0..repeat {
        for p in &mut paths {
            eprintln!("transfer {}/{repeat}: {} MiB via {}", r + 1, mib, p.name);
            p.transfer(mib);
        }
    }
    // 2. Round trips.
    let rtts: Vec<Vec<Duration>> = paths
        .iter()
        .map(|p| {
            eprintln!("{rounds} round trips via {}", p.name);
            host::ping_pong(p.echo, rounds).unwrap_or_else(|e| panic!("{}: {e}", p.name))
        })
        .collect();
    drop(clients);
    drop(sshd);
    // Ctrl-C: `agora tunnel` closes its connection, so C logs the path's figures now.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &tunnel.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_secs(1));
    drop(tunnel);
    // The bulk sender's own figures, read before the cut samples reuse its log file.
    let agent_closed: Vec<String> = std::fs::read_to_string(home.join("tunnel.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("tunnel connection closed"))
        .map(str::to_owned)
        .collect();

    // 3. Direct exec on the same lease.
    let exec_times = direct_exec("after the transfers");

    // 4. Stop to cut, a fresh lease each.
    let net = Net {
        a: &a,
        c: &c,
        home: &home,
        agent: &agent,
        provider,
        endpoint,
    };
    let mut samples = Vec::new();
    for i in 0..cuts {
        eprintln!("stop-to-cut sample {}/{cuts}", i + 1);
        samples.push(cut_sample(&net, &rt));
    }
    let (ok, _, err) = agent_cli(&home, &a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");

    report(&paths, &rtts, mib, &samples, &build, &load_before);
    report_exec(&exec_times);
    // The tunnel connections' path figures as C logged them at their end: the MTU they
    // settled on, losses, black holes detected.
    let log = c.full_log();
    let closed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tunnel connection closed") && l.contains("mtu"))
        .collect();
    println!("\nC's tunnel connections at their end ({}):", closed.len());
    for line in closed {
        println!("    {line}");
    }
    for line in agent_closed {
        println!("    agent: {line}");
    }
}

/// The direct exec rows.
fn report_exec(times: &exec::ExecTimes) {
    let row = |name: &str, v: &[Duration], target: &str| {
        let mut v = v.to_vec();
        v.sort();
        println!(
            "| {name} | {} | {} | {} | {} | {target} |",
            v.len(),
            us(quantile(&v, 0.5)),
            us(quantile(&v, 0.99)),
            us(*v.last().unwrap()),
        );
    };
    println!("\ndirect exec (`agora agent exec --direct`'s path, one QUIC connection to C):\n");
    println!("| measure | samples | p50 µs | p99 µs | max µs | target |");
    println!("|---|---:|---:|---:|---:|---|");
    row(
        "a line echoed through an open `cat` session",
        &times.echo,
        "≤ 5 ms p50",
    );
    row(
        "a new process (`true`), signed operation to exit",
        &times.spawn,
        "none (reported)",
    );
}

fn report(
    paths: &[Path_],
    rtts: &[Vec<Duration>],
    mib: usize,
    cuts: &[Cut],
    build: &str,
    load_before: &str,
) {
    println!(
        "\ntunnel_throughput: {mib} MiB per transfer, {} per path; {} round trips; agora {build}; {}; load {load_before} before, {} after\n",
        paths[0].transfers.len(),
        rtts[0].len(),
        host::machine(),
        host::load()
    );
    println!(
        "| path | MiB/s (median) | best MiB/s | {mib} MiB in s (median) | CPU s/GiB agent side | CPU s/GiB far side | RTT p50 µs | RTT p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (p, rtt) in paths.iter().zip(rtts) {
        let mut t = p.transfers.clone();
        t.sort();
        let median = quantile(&t, 0.5);
        medians.push(mib_per_s(mib, median));
        let gib = (mib * t.len()) as f64 / 1024.0;
        let cpu = |i: usize| {
            p.cpu
                .map_or("–".to_owned(), |_| format!("{:.2}", p.cpu_s[i] / gib))
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} |",
            p.name,
            mib_per_s(mib, median),
            mib_per_s(mib, t[0]),
            median.as_secs_f64(),
            cpu(0),
            cpu(1),
            us(quantile(rtt, 0.5)),
            us(quantile(rtt, 0.99)),
        );
    }
    let tunnel = medians.len() - 1;
    let rtt50 = |i: usize| quantile(&rtts[i], 0.5).as_secs_f64() * 1e6;
    println!(
        "\ntunnel / loopback TCP throughput: {:.2}; added round trip p50 over loopback TCP: {:.0} µs (target ≤ 300)",
        medians[tunnel] / medians[0],
        rtt50(tunnel) - rtt50(0)
    );
    if tunnel > 1 {
        println!(
            "tunnel / ssh -L (default) throughput: {:.2} (target ≥ 1.5); tunnel / ssh -L (aes128-gcm): {:.2}; added round trip p50 of ssh -L: {:.0} µs",
            medians[tunnel] / medians[1],
            medians[tunnel] / medians[2],
            rtt50(1) - rtt50(0)
        );
    }
    if cuts.is_empty() {
        return;
    }
    let stat = |f: fn(&Cut) -> Duration| {
        let mut v: Vec<Duration> = cuts.iter().map(f).collect();
        v.sort();
        format!("{} | {}", ms(quantile(&v, 0.5)), ms(*v.last().unwrap()))
    };
    println!(
        "\nstop to cut, {} leases (ms from sending `agora agent stop`):\n",
        cuts.len()
    );
    println!("| until | p50 ms | max ms |\n|---|---:|---:|");
    println!("| the stop is answered | {} |", stat(|c| c.answered));
    println!(
        "| the TCP connection through `agora tunnel` ends | {} |",
        stat(|c| c.through)
    );
    println!("| the direct QUIC stream ends | {} |", stat(|c| c.direct));
}
