//! Copying files into and out of a workload as tar streams.
//!
//! [`check_path`] bounds the path an agent names. [`put_via_exec`] and [`get_via_exec`] are
//! the generic implementation of [`Runtime::put_files`] and [`Runtime::get_files`]: they run
//! the image's own `tar` inside the workload through [`Runtime::exec`]:
//!
//! - put: `mkdir -p PATH`, then `tar -x -o -C PATH -f -` fed the caller's archive on stdin
//!   (chunk by chunk, so a slow workload slows the caller down: nothing is buffered whole);
//! - get: `tar -c -C DIR -f - -- NAME` (`-C / .` for `/`), its stdout read as the archive.
//!
//! Running tar inside is what keeps this safe: it resolves every path, and every symlink the
//! workload made, in the workload's own view of its filesystem and with the workload's own
//! (lack of) privileges, so an archive or a planted link can only ever touch what the
//! workload itself could. Unpacking on the host into the workload's directories instead
//! would race with links the workload swaps in meanwhile (`docker cp`'s CVE-2018-15664).
//!
//! A failure of tar is never silent. `put` returns it, with tar's own words (at most
//! [`MAX_REPORT_BYTES`]). `get` returns it when tar fails before the first entry (a missing
//! path is [`RuntimeError::NoSuchPath`]); once the archive flows, a failure shows as an
//! [`std::io::Error`] in place of the end of the stream, so a truncated archive is never
//! mistaken for a complete one. An image without `tar` (or `mkdir`) says so.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::{
    ByteSink, ExecEvent, ExecRequest, ExecSession, OutputStream, Runtime, RuntimeError, WorkloadId,
};

/// Longest path accepted (Linux's `PATH_MAX`), bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most of a failed command's output kept for its error, bytes.
pub const MAX_REPORT_BYTES: usize = 1024;
/// Chunk size when feeding an archive to tar.
const CHUNK: usize = 64 * 1024;
/// Longest wait for a command to exit once its input ended.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for `tar -c` to produce its first entry (or to fail).
const FIRST_ENTRY_TIMEOUT: Duration = Duration::from_secs(60);
/// A tar block: the first one of a non-empty archive is a header, never all zeros.
const BLOCK: usize = 512;
/// Most output buffered while waiting for the first entry (end-of-archive zeros included).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Checks a path inside a workload: absolute, at most [`MAX_PATH_BYTES`], no NUL, no `..`.
///
/// # Errors
/// [`RuntimeError::BadPath`] naming what is wrong.
pub fn check_path(path: &str) -> Result<(), RuntimeError> {
    let bad = |why: &str| Err(RuntimeError::BadPath(format!("{path:?}: {why}")));
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(RuntimeError::BadPath(format!(
            "of {} bytes (at most {MAX_PATH_BYTES})",
            path.len()
        )));
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    if !path.starts_with('/') {
        return bad("not absolute");
    }
    if path.split('/').any(|c| c == "..") {
        return bad("contains a `..` component");
    }
    Ok(())
}

/// A checked path without empty or `.` components nor a trailing slash (`/` stays `/`).
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A normalized path as (parent directory, base name); `/` is (`/`, `.`).
fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some((_, "")) | None => ("/".into(), ".".into()),
        Some(("", name)) => ("/".into(), name.into()),
        Some((dir, name)) => (dir.into(), name.into()),
    }
}

/// An exec of `command` with a predictable environment: C locale (tar's messages are matched
/// below) and no `TAR_OPTIONS` from the workload's spec changing what tar does.
fn request(command: &[&str]) -> ExecRequest {
    ExecRequest {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::from([
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("TAR_OPTIONS".to_owned(), String::new()),
        ]),
        workdir: Some("/".into()),
        tty: false,
    }
}

/// The start of a command's output, bounded by [`MAX_REPORT_BYTES`].
#[derive(Debug, Default)]
struct Report {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Report {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_REPORT_BYTES.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).trim().to_owned();
        if self.truncated {
            text.push_str(" …");
        }
        text
    }
}

/// Which operation failed, for [`failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

/// The error for `tool` ending with `code` and `report` (its output) while copying `path`.
fn failure(op: Op, tool: &str, path: &str, code: i32, report: &str) -> RuntimeError {
    // Exit 127 is a shell's "command not found"; Docker says "executable file not found"
    // (exit 126); bubblewrap says "execvp <tool>: No such file or directory" (exit 1).
    let missing = code == 127
        || report.contains("executable file not found")
        || report.contains(&format!("execvp {tool}:"));
    if missing {
        return RuntimeError::FileTransfer(format!(
            "the workload's image has no `{tool}`, which copying files in or out needs ({report})"
        ));
    }
    if code < 0 {
        return RuntimeError::host(
            format!("copy files at {path}"),
            io::Error::other(format!(
                "`{tool}` ended with an unknown exit status: {report}"
            )),
        );
    }
    if op == Op::Get && report.contains("No such file or directory") {
        return RuntimeError::NoSuchPath(path.to_owned());
    }
    RuntimeError::FileTransfer(format!(
        "`{tool}` failed for {path} (exit code {code}): {report}"
    ))
}

/// Why feeding an archive to a command stopped early.
enum FeedError {
    /// Reading the caller's archive failed.
    Input(io::Error),
    /// The command stopped reading (it ended).
    Closed,
}

/// Copies `src` to `dst` chunk by chunk (each write waits for room: backpressure), then
/// closes `dst`, counting the bytes written in `written` as it goes (the command may exit
/// while a write waits, and this future is then dropped).
async fn feed(
    mut src: impl AsyncRead + Unpin,
    mut dst: ByteSink,
    written: &AtomicU64,
) -> Result<(), FeedError> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(FeedError::Input(e)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if dst.write_all(chunk).await.is_err() {
            return Err(FeedError::Closed);
        }
        written.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = dst.shutdown().await;
    Ok(())
}

/// How a command run by [`run`] ended.
struct Finished {
    code: i32,
    report: String,
    fed: u64,
}

/// Runs `command` in the workload with `input` on its stdin (none: closed at once), keeping
/// the start of its output, until it exits.
async fn run<R: Runtime + ?Sized>(
    rt: &R,
    id: &WorkloadId,
    command: &[&str],
    input: Option<Box<dyn AsyncRead + Send + Unpin>>,
) -> Result<Finished, RuntimeError> {
    let ExecSession { stdin, mut events } = rt.exec(id, request(command)).await?;
    let input = input.unwrap_or_else(|| Box::new(tokio::io::empty()));
    let written = AtomicU64::new(0);
    let feeding = feed(input, stdin, &written);
    tokio::pin!(feeding);
    let mut fed = false;
    let mut report = Report::default();
    let exit_by = tokio::time::sleep(Duration::MAX);
    tokio::pin!(exit_by);
    let code = loop {
        tokio::select! {
            result = &mut feeding, if !fed => {
                if let Err(FeedError::Input(e)) = result {
                    // Dropping the session ends the command (or closes its input).
                    return Err(RuntimeError::host("read the archive to upload", e));
                }
                fed = true;
                exit_by.as_mut().reset(tokio::time::Instant::now() + EXIT_TIMEOUT);
            }
            event = events.recv() => match event {
                Some(ExecEvent::Output(chunk)) => report.push(&chunk.data),
                Some(ExecEvent::Exit(code)) => break code,
                None => {
                    return Err(RuntimeError::host(
                        format!("run {} in {id}", command.join(" ")),
                        io::Error::other("the exec ended without an exit status"),
                    ));
                }
            },
            () = &mut exit_by => {
                return Err(RuntimeError::FileTransfer(format!(
                    "`{}` did not exit within {} s of its input's end",
                    command.first().copied().unwrap_or_default(),
                    EXIT_TIMEOUT.as_secs()
                )));
            }
        }
    };
    // A command may exit before reading all its input (tar stops at the end-of-archive
    // blocks); what it did not read was not consumed.
    Ok(Finished {
        code,
        report: report.text(),
        fed: written.load(Ordering::Relaxed),
    })
}

/// Unpacks the tar stream `tar` into directory `path` inside the workload (created if
/// missing) by running the image's `mkdir` and `tar` there (see the [module docs](self)).
/// Entries keep their modes but not their owners (they belong to whoever the exec runs as).
/// Returns the number of archive bytes tar consumed.
///
/// # Errors
/// [`RuntimeError::BadPath`] for a path [`check_path`] refuses; [`RuntimeError::FileTransfer`]
/// when `mkdir` or `tar` fails (a malformed archive, a destination that is not a writable
/// directory, a full disk, an image without them), with their output; [`RuntimeError::Host`]
/// when reading `tar` fails (its source error is the reader's); as [`Runtime::exec`].
pub async fn put_via_exec<R: Runtime + ?Sized>(
    rt: &R,
    id: &WorkloadId,
    path: &str,
    tar: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<u64, RuntimeError> {
    check_path(path)?;
    let path = normalize(path);
    let mkdir = run(rt, id, &["mkdir", "-p", &path], None).await?;
    if mkdir.code != 0 {
        return Err(failure(Op::Put, "mkdir", &path, mkdir.code, &mkdir.report));
    }
    let done = run(
        rt,
        id,
        &["tar", "-x", "-o", "-C", &path, "-f", "-"],
        Some(tar),
    )
    .await?;
    if done.code != 0 {
        return Err(failure(Op::Put, "tar", &path, done.code, &done.report));
    }
    tracing::debug!(workload = %id, path = %path, bytes = done.fed, "files put");
    Ok(done.fed)
}

/// A tar stream of `path` (a file or a directory, recursively; a symlink as itself) inside
/// the workload, written by the image's `tar` there (see the [module docs](self)).
///
/// # Errors
/// [`RuntimeError::BadPath`] for a path [`check_path`] refuses; [`RuntimeError::NoSuchPath`]
/// when it does not exist; [`RuntimeError::FileTransfer`] when tar fails before its first
/// entry (or the image has none); as [`Runtime::exec`]. Later failures end the stream with
/// an [`io::Error`] carrying tar's output.
pub async fn get_via_exec<R: Runtime + ?Sized>(
    rt: &R,
    id: &WorkloadId,
    path: &str,
) -> Result<Box<dyn AsyncRead + Send + Unpin>, RuntimeError> {
    check_path(path)?;
    let path = normalize(path);
    let (dir, name) = split(&path);
    let command = ["tar", "-c", "-C", &dir, "-f", "-", "--", &name];
    let ExecSession { stdin, events } = rt.exec(id, request(&command)).await?;
    drop(stdin);
    let mut archive = ExecArchive {
        events,
        path,
        chunk: Vec::new(),
        at: 0,
        report: Report::default(),
        state: State::Streaming,
    };
    let head = tokio::time::timeout(FIRST_ENTRY_TIMEOUT, archive.head())
        .await
        .map_err(|_| {
            RuntimeError::FileTransfer(format!(
                "`tar` wrote nothing for {} within {} s",
                archive.path,
                FIRST_ENTRY_TIMEOUT.as_secs()
            ))
        })?;
    match head {
        Head::Flowing => {}
        Head::Exited(0) => archive.state = State::Done,
        Head::Exited(code) => {
            // Not an archive: what the runtime or tar wrote there belongs in the error.
            if archive.chunk.iter().any(|b| *b != 0) {
                archive.report.push(&archive.chunk);
            }
            return Err(failure(
                Op::Get,
                "tar",
                &archive.path,
                code,
                &archive.report.text(),
            ));
        }
        Head::Lost => return Err(lost(&archive.path)),
    }
    Ok(Box::new(archive))
}

fn lost(path: &str) -> RuntimeError {
    RuntimeError::host(
        format!("copy files at {path}"),
        io::Error::other("the exec ended without an exit status"),
    )
}

/// What `tar -c` did before its first entry.
enum Head {
    /// The first header arrived: the archive flows.
    Flowing,
    /// It exited with this code first.
    Exited(i32),
    /// The exec vanished without an exit status.
    Lost,
}

/// Where an [`ExecArchive`] is.
enum State {
    /// Output may still come.
    Streaming,
    /// tar exited 0: the end of the output is the end of the archive.
    Done,
    /// tar failed: reading ends with this error.
    Failed(String),
}

/// The archive `tar -c` writes on an exec's stdout: its stderr is kept for the error, and
/// its exit code decides whether the stream ends cleanly.
struct ExecArchive {
    events: mpsc::Receiver<ExecEvent>,
    path: String,
    /// Output not yet read, from `at`.
    chunk: Vec<u8>,
    at: usize,
    report: Report,
    state: State,
}

impl ExecArchive {
    /// Buffers output until its first block is a header (not the all-zero end of an empty
    /// archive, which is all tar writes for a missing path), or tar exits.
    async fn head(&mut self) -> Head {
        loop {
            let first = self.chunk.get(..BLOCK);
            if first.is_some_and(|b| b.iter().any(|x| *x != 0)) || self.chunk.len() > MAX_HEAD_BYTES
            {
                return Head::Flowing;
            }
            match self.events.recv().await {
                Some(ExecEvent::Output(c)) if c.stream == OutputStream::Stdout => {
                    self.chunk.extend_from_slice(&c.data);
                }
                Some(ExecEvent::Output(c)) => self.report.push(&c.data),
                Some(ExecEvent::Exit(code)) => return Head::Exited(code),
                None => return Head::Lost,
            }
        }
    }
}

impl AsyncRead for ExecArchive {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(rest) = this.chunk.get(this.at..).filter(|r| !r.is_empty()) {
                let n = rest.len().min(buf.remaining());
                buf.put_slice(rest.get(..n).unwrap_or_default());
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            match &this.state {
                State::Streaming => {}
                State::Done => return Poll::Ready(Ok(())),
                State::Failed(message) => {
                    return Poll::Ready(Err(io::Error::other(message.clone())));
                }
            }
            match ready!(this.events.poll_recv(cx)) {
                Some(ExecEvent::Output(c)) if c.stream == OutputStream::Stdout => {
                    this.chunk = c.data;
                    this.at = 0;
                }
                Some(ExecEvent::Output(c)) => this.report.push(&c.data),
                Some(ExecEvent::Exit(0)) => this.state = State::Done,
                Some(ExecEvent::Exit(code)) => {
                    let e = failure(Op::Get, "tar", &this.path, code, &this.report.text());
                    this.state = State::Failed(format!("the archive is incomplete: {e}"));
                }
                None => {
                    let e = lost(&this.path);
                    this.state = State::Failed(format!("the archive is incomplete: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
