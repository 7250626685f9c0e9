//! Direct exec sessions (`agora agent exec --direct`'s path): a QUIC connection with ALPN
//! `agora-ops/1` straight to the provider's tunnel endpoint, one stream per operation
//! carrying the agent's signed `LeaseOp` and then frames (`tunnel::ops`, the code the CLI
//! runs).
//!
//! - Echo: one exec of `cat` stays open; a line goes in as a `Stdin` frame and the clock
//!   stops when the same line is back in `Stdout` frames: what an interactive session feels.
//! - New process: `true` exec'd again and again on the same connection, from the signed
//!   operation to its `Exit` frame (a new process in the sandbox each time).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agora_attest::Identity;
use agora_node::agent::request::sign_op;
use agora_node::lease::OpStream;
use agora_node::tunnel::{Dialer, ops};
use agora_protocol::AgoraId;
use agora_protocol::frames::StreamFrame;
use agora_protocol::lease::{LeaseId, Op};

/// How long the provider may take to accept an operation.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the direct exec samples measured.
pub struct ExecTimes {
    /// Each line's echo through the open `cat` session.
    pub echo: Vec<Duration>,
    /// Each `true`, from signing to its exit.
    pub spawn: Vec<Duration>,
}

/// Opens `command` on `lease` over `dialer`'s connection (the same one each time), signed
/// by `agent`.
async fn exec(
    dialer: &Dialer,
    agent: &Identity,
    provider: AgoraId,
    lease: LeaseId,
    command: &[&str],
    stdin: bool,
) -> OpStream {
    let op = Op::Exec {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        stdin,
        tty: false,
    };
    let signed = sign_op(agent, provider, lease, op, agora_node::clock::now()).unwrap();
    let conn = dialer.connection().await.unwrap();
    match ops::open(&conn, &signed, OPEN_TIMEOUT).await {
        Ok(Ok(s)) => s,
        Ok(Err(refusal)) => panic!("exec refused: {refusal:?}"),
        Err(e) => panic!("exec not opened: {e}"),
    }
}

/// Reads frames until `want` has come back on stdout (or panics on an end).
async fn until_echoed(s: &mut OpStream, want: &[u8], seen: &mut Vec<u8>) {
    while !seen.windows(want.len()).any(|w| w == want) {
        match s.reader.next().await.unwrap() {
            Some(StreamFrame::Stdout(b)) => seen.extend_from_slice(&b),
            Some(StreamFrame::Stderr(_)) => {}
            other => panic!("the echo ended: {other:?}"),
        }
    }
    seen.clear();
}

/// `lines` echoes through one open `cat` session and `spawns` runs of `true`, all over one
/// direct connection to `endpoint`.
pub fn direct_exec(
    rt: &tokio::runtime::Runtime,
    agent: &Identity,
    provider: AgoraId,
    endpoint: SocketAddr,
    lease: LeaseId,
    lines: usize,
    spawns: usize,
) -> ExecTimes {
    let dialer = {
        let _in_rt = rt.enter(); // the dialer's UDP socket registers with the runtime
        Dialer::for_ops(agent, provider, vec![endpoint]).unwrap()
    };
    let times = rt.block_on(async {
        let mut session = exec(&dialer, agent, provider, lease, &["cat"], true).await;
        let mut seen = Vec::new();
        // Warm up: the first line also waits for `cat` to start.
        session
            .writer
            .send(&StreamFrame::Stdin(b"warm-up\n".to_vec()))
            .await
            .unwrap();
        until_echoed(&mut session, b"warm-up\n", &mut seen).await;
        let mut echo = Vec::with_capacity(lines);
        for i in 0..lines {
            let line = format!("line {i} through the direct session\n").into_bytes();
            let t = Instant::now();
            session
                .writer
                .send(&StreamFrame::Stdin(line.clone()))
                .await
                .unwrap();
            until_echoed(&mut session, &line, &mut seen).await;
            echo.push(t.elapsed());
        }
        session
            .writer
            .send(&StreamFrame::StdinClosed)
            .await
            .unwrap();
        loop {
            match session.reader.next().await.unwrap() {
                Some(StreamFrame::Exit(0)) => break,
                Some(StreamFrame::Stdout(_) | StreamFrame::Stderr(_)) => {}
                other => panic!("cat did not exit cleanly: {other:?}"),
            }
        }
        let mut spawn = Vec::with_capacity(spawns);
        for _ in 0..spawns {
            let t = Instant::now();
            let mut s = exec(&dialer, agent, provider, lease, &["true"], false).await;
            // As the CLI does for every exec: no input follows.
            s.writer.send(&StreamFrame::StdinClosed).await.unwrap();
            loop {
                match s.reader.next().await.unwrap() {
                    Some(StreamFrame::Exit(0)) => break,
                    Some(StreamFrame::Stdout(_) | StreamFrame::Stderr(_)) => {}
                    other => panic!("true did not exit cleanly: {other:?}"),
                }
            }
            spawn.push(t.elapsed());
        }
        ExecTimes { echo, spawn }
    });
    rt.block_on(dialer.close());
    times
}
