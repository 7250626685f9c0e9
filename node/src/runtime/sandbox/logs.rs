//! A sandbox's output: the main process writes `stdout.log` and `stderr.log` in its state
//! directory (files, not pipes, so output survives a node restart and an adopted workload
//! keeps its logs). Reading follows both files until the workload has ended and both are
//! drained.

use std::path::PathBuf;
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use agora_protocol::workload::TerminationReason;

use crate::runtime::{OutputChunk, OutputStream, RuntimeError};

/// Largest chunk handed out.
const CHUNK: usize = 64 * 1024;
/// How often a follower looks for new output: quickly at first and after output (so the
/// first line of a fresh workload shows in milliseconds), backing off linearly to `POLL_MAX` while
/// it is quiet.
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// File names of the two streams.
pub const FILES: [(OutputStream, &str); 2] = [
    (OutputStream::Stdout, "stdout.log"),
    (OutputStream::Stderr, "stderr.log"),
];

/// Streams the output in `dir`; with `follow`, until `ended` says the workload ended.
pub fn stream(
    dir: PathBuf,
    follow: bool,
    mut ended: watch::Receiver<Option<TerminationReason>>,
) -> BoxStream<'static, Result<OutputChunk, RuntimeError>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut files = Vec::new();
        for (stream, name) in FILES {
            let path = dir.join(name);
            match tokio::fs::File::open(&path).await {
                Ok(f) => files.push((stream, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let _ = tx
                        .send(Err(RuntimeError::host(
                            format!("open {}", path.display()),
                            e,
                        )))
                        .await;
                    return;
                }
            }
        }
        let mut buf = vec![0u8; CHUNK];
        let mut runtime_gone = false;
        let mut poll = POLL_MIN;
        loop {
            // Read the end state before draining, so nothing written before the end is missed.
            let done = !follow || runtime_gone || ended.borrow_and_update().is_some();
            let mut progressed = false;
            for (stream, file) in &mut files {
                loop {
                    match file.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => {
                            progressed = true;
                            let chunk = OutputChunk {
                                stream: *stream,
                                data: buf.get(..n).unwrap_or_default().to_vec(),
                            };
                            if tx.send(Ok(chunk)).await.is_err() {
                                return; // The reader went away.
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(RuntimeError::host("read logs", e))).await;
                            return;
                        }
                    }
                }
            }
            if done && !progressed {
                return;
            }
            if progressed {
                poll = POLL_MIN;
            } else {
                poll = (poll + POLL_MIN).min(POLL_MAX);
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    changed = ended.changed() => runtime_gone = changed.is_err(),
                    () = tx.closed() => return,
                }
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
