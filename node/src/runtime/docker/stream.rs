//! Streams between the engine and the node: exec sessions, logs, and stats snapshots.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};

use crate::runtime::{ExecEvent, ExecSession, OutputChunk, OutputStream, RuntimeError, Stats};

/// Events an exec session buffers before it stops reading the engine.
const EXEC_EVENTS: usize = 64;
/// Bytes of stdin buffered between the caller and the engine.
const STDIN_BUFFER: usize = 64 * 1024;
/// How long an exec may still count as running after its output ended.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// One engine output frame as a chunk; stdin echoes are dropped. A terminal's output (TTY)
/// counts as stdout.
pub(super) fn chunk(frame: LogOutput) -> Option<OutputChunk> {
    let (stream, message) = match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (OutputStream::Stdout, message)
        }
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::StdIn { .. } => return None,
    };
    Some(OutputChunk {
        stream,
        data: message.to_vec(),
    })
}

/// A workload's logs: what it wrote so far and, with `follow`, what it writes until it ends.
///
/// A followed stream can end early when the workload exits while the engine sets up the
/// follow (engines up to at least 20.10 drop the last lines then). So when a followed stream
/// ends, this waits until the engine reports the workload stopped (its log is complete by
/// then), reads the log again and passes on what comes after the bytes already delivered
/// on each stream. A log that rotated meanwhile (over `log_max_bytes`) may lose lines.
pub(super) fn logs(
    docker: Docker,
    name: String,
    follow: bool,
    api_timeout: Duration,
) -> BoxStream<'static, Result<OutputChunk, RuntimeError>> {
    let (tx, mut rx) = mpsc::channel(EXEC_EVENTS);
    let span = tracing::debug_span!("logs", container = %name, follow);
    tokio::spawn(
        async move {
            let mut sent = [0usize; 2];
            if pump_logs(&docker, &name, follow, &tx, &mut sent)
                .await
                .is_err()
                || !follow
            {
                return;
            }
            if !wait_stopped(&docker, &name, api_timeout).await {
                return;
            }
            let _ = pump_logs(&docker, &name, false, &tx, &mut sent).await;
        }
        .instrument(span),
    );
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn stream_index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

/// Sends the log's chunks, skipping the first `sent[stream]` bytes of each stream and
/// counting what it sends. `Err` when the caller is gone or the engine failed (reported).
async fn pump_logs(
    docker: &Docker,
    name: &str,
    follow: bool,
    tx: &mpsc::Sender<Result<OutputChunk, RuntimeError>>,
    sent: &mut [usize; 2],
) -> Result<(), ()> {
    let options = LogsOptionsBuilder::new()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .build();
    let mut frames = docker.logs(name, Some(options));
    let mut seen = [0usize; 2];
    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            () = tx.closed() => return Err(()),
        };
        let frame = match next {
            None => return Ok(()),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let err = RuntimeError::Docker(format!("logs of {name}: {e}"));
                let _ = tx.send(Err(err)).await;
                return Err(());
            }
        };
        let Some(mut chunk) = chunk(frame) else {
            continue;
        };
        let i = stream_index(chunk.stream);
        let (Some(seen), Some(sent)) = (seen.get_mut(i), sent.get_mut(i)) else {
            continue;
        };
        let start = *seen;
        *seen += chunk.data.len();
        if *seen <= *sent {
            continue;
        }
        chunk.data.drain(..sent.saturating_sub(start));
        *sent = *seen;
        if tx.send(Ok(chunk)).await.is_err() {
            return Err(());
        }
    }
}

/// Waits (bounded) until the container is no longer running; false if it still runs or
/// cannot be inspected.
async fn wait_stopped(docker: &Docker, name: &str, api_timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match tokio::time::timeout(api_timeout, docker.inspect_container(name, None)).await {
            Ok(Ok(info)) => {
                if info.state.and_then(|s| s.running) != Some(true) {
                    return true;
                }
            }
            Ok(Err(e)) => {
                debug!(error = %e, "cannot inspect after logs ended");
                return false;
            }
            Err(_) => return false,
        }
        if tokio::time::Instant::now() >= deadline {
            warn!("logs ended but the workload still runs");
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Turns an attached exec into an [`ExecSession`]: a task copies the caller's stdin to the
/// engine, forwards output, and ends with the exit code from `inspect_exec`.
///
/// Without a TTY, dropping (or shutting down) the caller's stdin half-closes the engine's,
/// so the command reads end of input. With a TTY the engine would answer a half-close by
/// closing the command's output, so end of input is the terminal's: write `^D` (0x04).
///
/// The engine cannot kill an exec: when the caller drops the session the task stops reading
/// and closes stdin and the attach connection, which ends commands that read stdin or write
/// output; one that does neither runs until it ends or its workload stops.
pub(super) fn session(
    docker: Docker,
    exec_id: String,
    output: BoxStream<'static, Result<LogOutput, EngineError>>,
    mut input: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    tty: bool,
    api_timeout: Duration,
) -> ExecSession {
    let (caller_stdin, mut engine_stdin) = tokio::io::duplex(STDIN_BUFFER);
    let (tx, rx) = mpsc::channel(EXEC_EVENTS);
    let span = tracing::debug_span!("exec", exec = %exec_id);
    tokio::spawn(
        async move {
            let stdin = async {
                if let Err(e) = tokio::io::copy(&mut engine_stdin, &mut input).await {
                    debug!(error = %e, "exec stdin ended");
                }
                if !tty {
                    // Half-close: the command sees end of input.
                    let _ = input.shutdown().await;
                }
                // Keep the connection open until the output side is done.
                std::future::pending::<()>().await;
            };
            let forward = forward_output(output, &tx);
            tokio::pin!(stdin);
            let caller_gone = tokio::select! {
                gone = forward => gone,
                () = &mut stdin => true,
            };
            if caller_gone {
                debug!("exec session dropped");
                return;
            }
            let code = exit_code(&docker, &exec_id, api_timeout).await;
            let _ = tx.send(ExecEvent::Exit(code)).await;
        }
        .instrument(span),
    );
    ExecSession {
        stdin: Box::pin(caller_stdin),
        events: rx,
    }
}

/// Forwards output until it ends (false) or the caller drops the session (true).
async fn forward_output(
    mut output: BoxStream<'static, Result<LogOutput, EngineError>>,
    tx: &mpsc::Sender<ExecEvent>,
) -> bool {
    loop {
        let next = tokio::select! {
            next = output.next() => next,
            () = tx.closed() => return true,
        };
        match next {
            None => return false,
            Some(Err(e)) => {
                warn!(error = %e, "exec output failed");
                return false;
            }
            Some(Ok(frame)) => {
                if let Some(chunk) = chunk(frame)
                    && tx.send(ExecEvent::Output(chunk)).await.is_err()
                {
                    return true;
                }
            }
        }
    }
}

/// The exec's exit code once the engine reports it ended; -1 when it cannot tell in time.
async fn exit_code(docker: &Docker, exec_id: &str, api_timeout: Duration) -> i32 {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match tokio::time::timeout(api_timeout, docker.inspect_exec(exec_id)).await {
            Ok(Ok(info)) if info.running != Some(true) => {
                if let Some(code) = info.exit_code.and_then(|c| i32::try_from(c).ok()) {
                    return code;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "inspect exec failed");
                return -1;
            }
            Err(_) => {
                warn!("inspect exec timed out");
                return -1;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            warn!("exec output ended but the engine still reports it running");
            return -1;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The metering view of one engine stats sample. `memory_peak_bytes` is the cgroup's
/// high-water mark where the host has one (cgroup v1), else the current use.
pub(super) fn stats_of(sample: &ContainerStatsResponse) -> Stats {
    let cpu_nanos = sample
        .cpu_stats
        .as_ref()
        .and_then(|c| c.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let memory = sample.memory_stats.as_ref();
    let memory_bytes = memory.and_then(|m| m.usage).unwrap_or(0);
    let memory_peak_bytes = memory
        .and_then(|m| m.max_usage)
        .unwrap_or(0)
        .max(memory_bytes);
    let pids = sample
        .pids_stats
        .as_ref()
        .and_then(|p| p.current)
        .unwrap_or(0);
    let (net_rx_bytes, net_tx_bytes) =
        sample
            .networks
            .iter()
            .flat_map(|nets| nets.values())
            .fold((0u64, 0u64), |(rx, tx), n| {
                (
                    rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                    tx.saturating_add(n.tx_bytes.unwrap_or(0)),
                )
            });
    Stats {
        cpu_nanos,
        memory_bytes,
        memory_peak_bytes,
        pids,
        net_rx_bytes,
        net_tx_bytes,
    }
}

/// Counters never go backwards: a sample taken after the end (all zeros) or a host without
/// a high-water mark keeps the largest values seen.
pub(super) fn merge(prev: Stats, now: Stats) -> Stats {
    Stats {
        cpu_nanos: prev.cpu_nanos.max(now.cpu_nanos),
        memory_bytes: now.memory_bytes,
        memory_peak_bytes: prev.memory_peak_bytes.max(now.memory_peak_bytes),
        pids: now.pids,
        net_rx_bytes: prev.net_rx_bytes.max(now.net_rx_bytes),
        net_tx_bytes: prev.net_tx_bytes.max(now.net_tx_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerNetworkStats,
        ContainerPidsStats,
    };

    #[test]
    fn stats_sum_networks_and_keep_the_high_water_mark() {
        let sample = ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(2_500_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(10 << 20),
                max_usage: Some(30 << 20),
                ..Default::default()
            }),
            pids_stats: Some(ContainerPidsStats {
                current: Some(3),
                limit: Some(64),
            }),
            networks: Some(
                [("eth0", 100u64, 10u64), ("eth1", 5, 1)]
                    .into_iter()
                    .map(|(name, rx, tx)| {
                        let stats = ContainerNetworkStats {
                            rx_bytes: Some(rx),
                            tx_bytes: Some(tx),
                            ..Default::default()
                        };
                        (name.to_owned(), stats)
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let s = stats_of(&sample);
        assert_eq!(
            s,
            Stats {
                cpu_nanos: 2_500_000_000,
                memory_bytes: 10 << 20,
                memory_peak_bytes: 30 << 20,
                pids: 3,
                net_rx_bytes: 105,
                net_tx_bytes: 11,
            }
        );
        let after_end = merge(s, stats_of(&ContainerStatsResponse::default()));
        assert_eq!(after_end.cpu_nanos, s.cpu_nanos);
        assert_eq!(after_end.memory_peak_bytes, s.memory_peak_bytes);
        assert_eq!((after_end.memory_bytes, after_end.pids), (0, 0));
    }

    #[test]
    fn frames_map_to_streams() {
        let out = chunk(LogOutput::StdOut {
            message: b"a".to_vec().into(),
        })
        .unwrap();
        assert_eq!(out.stream, OutputStream::Stdout);
        let err = chunk(LogOutput::StdErr {
            message: b"b".to_vec().into(),
        })
        .unwrap();
        assert_eq!(
            (err.stream, err.data.as_slice()),
            (OutputStream::Stderr, &b"b"[..])
        );
        assert!(
            chunk(LogOutput::StdIn {
                message: b"c".to_vec().into()
            })
            .is_none()
        );
    }
}
