//! Workload runtimes: one [`Runtime`] trait, two implementations.
//!
//! - [`sandbox`]: the embedded default. bubblewrap namespaces (user, pid, mount, net, ipc,
//!   uts), a seccomp deny-list, a read-only root filesystem and cgroup (v1 or v2) limits.
//!   Needs no daemon and starts in milliseconds.
//! - [`docker`]: a hardened container through the Docker engine's API (bollard).
//!
//! Both take a [`WorkloadSpec`] (a protocol type, signed by the agent inside a lease) and end
//! every workload with a machine-readable [`TerminationReason`]. [`host`] probes what this
//! machine can give a sandbox, [`cgroup`] drives its limits and accounting, [`seccomp`]
//! builds its syscall filter and [`images`] keeps its root filesystems.
//!
//! The trait is shaped so a microVM runtime fits later: `create` may take seconds, exec and
//! logs are streams (a serial channel works), and [`Runtime::connect`] hands back any byte
//! stream, not necessarily TCP. Files go in and out as tar streams ([`Runtime::put_files`],
//! [`Runtime::get_files`]); [`files`] implements both over any runtime's `exec`.

pub mod cgroup;
pub mod command;
pub mod docker;
pub mod files;
pub mod host;
pub mod images;
pub mod netpolicy;
pub mod sandbox;
pub mod seccomp;
pub mod supervisor;

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::workload::{TerminationReason, WorkloadSpec};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Longest workload id.
pub const MAX_WORKLOAD_ID: usize = 63;

/// A workload's name on this node: 1-63 of `[a-z0-9-]`, starting with a letter or digit.
/// It names the cgroup, the state directory and the Docker container, so it is checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkloadId(String);

impl WorkloadId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh random id (`w-` and 16 hex digits).
    pub fn random() -> Self {
        Self(format!("w-{:016x}", rand::random::<u64>()))
    }
}

impl TryFrom<String> for WorkloadId {
    type Error = RuntimeError;
    fn try_from(s: String) -> Result<Self, RuntimeError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_WORKLOAD_ID
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(Self(s))
        } else {
            Err(RuntimeError::InvalidId(s))
        }
    }
}

impl std::str::FromStr for WorkloadId {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        Self::try_from(s.to_owned())
    }
}

impl From<WorkloadId> for String {
    fn from(id: WorkloadId) -> String {
        id.0
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of a workload's or an exec's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes (not necessarily whole lines).
    pub data: Vec<u8>,
}

/// A command to run inside a running workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment (on top of the workload's).
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute), or the workload's.
    pub workdir: Option<String>,
    /// Allocate a terminal (stdout and stderr merge).
    pub tty: bool,
}

/// What an exec session reports, in order; [`ExecEvent::Exit`] comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Output.
    Output(OutputChunk),
    /// The command ended with this code (128 + n when killed by signal n).
    Exit(i32),
}

/// A writable byte stream (an exec's stdin).
pub type ByteSink = Pin<Box<dyn AsyncWrite + Send>>;

/// A bidirectional byte stream to a workload's port.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// A running exec: write to `stdin` (drop it to close), read `events` until [`ExecEvent::Exit`].
/// Dropping the session closes stdin and detaches; runtimes that can kill the command do
/// (the sandbox does; Docker's API cannot, so there the command ends when it next reads
/// input or writes output). On a terminal, closing stdin is not end-of-input: send `^D`.
pub struct ExecSession {
    /// The command's standard input.
    pub stdin: ByteSink,
    /// Output chunks, then the exit code.
    pub events: mpsc::Receiver<ExecEvent>,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession").finish_non_exhaustive()
    }
}

/// Resource usage so far: the basis of metering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time used by every process of the workload, nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use now, bytes.
    pub memory_bytes: u64,
    /// Highest memory use seen, bytes.
    pub memory_peak_bytes: u64,
    /// Processes now.
    pub pids: u64,
    /// Bytes received on the workload's network interface.
    pub net_rx_bytes: u64,
    /// Bytes sent on the workload's network interface.
    pub net_tx_bytes: u64,
}

/// Where a workload is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadState {
    /// Created, not started.
    Created,
    /// Its main process runs.
    Running,
    /// It ended, for this reason.
    Ended(TerminationReason),
}

/// One workload a runtime knows (for reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Its id.
    pub id: WorkloadId,
    /// Its state.
    pub state: WorkloadState,
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Not a valid workload id.
    #[error("{0:?} is not a workload id (1-63 of a-z, 0-9 and '-')")]
    InvalidId(String),
    /// No workload of that id.
    #[error("no workload {0}")]
    NotFound(WorkloadId),
    /// A workload of that id already exists.
    #[error("workload {0} already exists")]
    AlreadyExists(WorkloadId),
    /// The workload is not in a state that allows the operation.
    #[error("workload {id} is {state}, cannot {op}")]
    WrongState {
        /// The workload.
        id: WorkloadId,
        /// Its state's name.
        state: &'static str,
        /// What was asked.
        op: &'static str,
    },
    /// The spec breaks a bound, or lacks what this runtime needs.
    #[error("invalid workload spec: {0}")]
    InvalidSpec(String),
    /// The spec asks for something this runtime or host cannot give.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The image is not here (not imported, or another digest).
    #[error("image {0} is not available on this runtime")]
    ImageNotFound(String),
    /// An uploaded image is malformed or does not match its digest or size.
    #[error("bad image: {0}")]
    BadImage(String),
    /// The port is not one the spec exposes, or nothing listens there.
    #[error("cannot connect to port {port}: {reason}")]
    Connect {
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// The host refused or failed (cgroups, bubblewrap, files).
    #[error("{op}: {source}")]
    Host {
        /// What was being done.
        op: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Docker engine refused or failed.
    #[error("docker: {0}")]
    Docker(String),
    /// A path inside a workload that is not acceptable (see [`files::check_path`]).
    #[error("bad path {0}")]
    BadPath(String),
    /// Nothing exists at this path inside the workload.
    #[error("no such file or directory in the workload: {0}")]
    NoSuchPath(String),
    /// Copying files in or out failed inside the workload: a malformed archive, a
    /// destination that is not a writable directory, a full disk, an image without `tar`.
    #[error("file transfer: {0}")]
    FileTransfer(String),
}

impl RuntimeError {
    /// A host error while doing `op`.
    pub fn host(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Host {
            op: op.into(),
            source,
        }
    }

    /// Whether the caller asked for something wrong (as opposed to the host failing).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidId(_)
                | Self::InvalidSpec(_)
                | Self::NotFound(_)
                | Self::AlreadyExists(_)
                | Self::WrongState { .. }
                | Self::Unsupported(_)
                | Self::ImageNotFound(_)
                | Self::BadImage(_)
                | Self::Connect { .. }
                | Self::BadPath(_)
                | Self::NoSuchPath(_)
                | Self::FileTransfer(_)
        )
    }
}

impl WorkloadState {
    /// Short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Ended(_) => "ended",
        }
    }
}

/// A way to run workloads. Every method is safe to call concurrently for different ids.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// The isolation class this runtime provides (and advertises).
    fn isolation(&self) -> Isolation;

    /// Images this runtime can start now, pinned by digest (what offers list).
    async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError>;

    /// Imports an uploaded image tarball from `path`, checking its SHA-256 and size against
    /// what the agent signed; afterwards it starts as `ImageSource::Tarball { digest, .. }`.
    async fn import_image(
        &self,
        path: &std::path::Path,
        digest: &agora_protocol::Digest,
        size_bytes: u64,
    ) -> Result<(), RuntimeError>;

    /// Prepares a workload (filesystem, limits, network) without starting it.
    async fn create(&self, id: &WorkloadId, spec: &WorkloadSpec) -> Result<(), RuntimeError>;

    /// Starts a created workload's main process.
    async fn start(&self, id: &WorkloadId) -> Result<(), RuntimeError>;

    /// Runs a command inside a running workload, streaming its input and output.
    async fn exec(&self, id: &WorkloadId, req: ExecRequest) -> Result<ExecSession, RuntimeError>;

    /// The main process's output so far and, with `follow`, as it comes until the end.
    async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError>;

    /// Resource usage so far.
    async fn stats(&self, id: &WorkloadId) -> Result<Stats, RuntimeError>;

    /// Where the workload is; an ended workload keeps its reason until removed.
    async fn state(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError>;

    /// Ends a workload: SIGTERM, then SIGKILL after `grace`. Returns the recorded reason,
    /// which is `reason` unless the workload had already ended by itself.
    async fn stop(
        &self,
        id: &WorkloadId,
        reason: TerminationReason,
        grace: Duration,
    ) -> Result<TerminationReason, RuntimeError>;

    /// Frees everything the workload held (processes, cgroup, files, network). Idempotent.
    async fn remove(&self, id: &WorkloadId) -> Result<(), RuntimeError>;

    /// Every workload this runtime holds, including ones a previous node process left.
    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError>;

    /// A byte stream to `port` inside the workload (the port must be in its spec).
    async fn connect(
        &self,
        id: &WorkloadId,
        port: u16,
    ) -> Result<Box<dyn ByteStream>, RuntimeError>;

    /// Whether [`Runtime::connect`]'s streams cross the interfaces [`Stats::net_tx_bytes`]
    /// counts, so tunnel bytes are already in it (metering then does not add them again).
    /// The default: no (they reach the workload over its own loopback).
    fn connect_counted_in_stats(&self) -> bool {
        false
    }

    /// Releases what the runtime holds for launches to come (the sandbox's warm
    /// sandboxes) when the node stops. Workloads keep running. The default: nothing.
    async fn close(&self) {}

    /// Unpacks the tar stream `tar` into directory `path` inside the workload (created if
    /// missing). Returns the number of tar bytes consumed.
    ///
    /// The archive is streamed, never held whole in memory; the caller bounds its size (it
    /// counts what it hands over). The default runs the image's `tar` inside the running
    /// workload through [`Runtime::exec`] ([`files::put_via_exec`]).
    ///
    /// # Errors
    /// [`RuntimeError::BadPath`] for a path [`files::check_path`] refuses;
    /// [`RuntimeError::FileTransfer`] when unpacking fails inside the workload (with tar's
    /// words); [`RuntimeError::Host`] when reading `tar` fails; as [`Runtime::exec`].
    async fn put_files(
        &self,
        id: &WorkloadId,
        path: &str,
        tar: Box<dyn AsyncRead + Send + Unpin>,
    ) -> Result<u64, RuntimeError> {
        files::put_via_exec(self, id, path, tar).await
    }

    /// A tar stream of `path` (a file or a directory, recursively) inside the workload.
    ///
    /// A failure after the first bytes ends the stream with an [`std::io::Error`] instead of
    /// a clean end, so a truncated archive is never taken for a complete one. The default
    /// runs the image's `tar` inside the running workload ([`files::get_via_exec`]).
    ///
    /// # Errors
    /// [`RuntimeError::BadPath`] for a path [`files::check_path`] refuses;
    /// [`RuntimeError::NoSuchPath`] when nothing is there; [`RuntimeError::FileTransfer`]
    /// when tar fails before its first entry; as [`Runtime::exec`].
    async fn get_files(
        &self,
        id: &WorkloadId,
        path: &str,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, RuntimeError> {
        files::get_via_exec(self, id, path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_ids_are_checked() {
        for ok in ["a", "w-0123456789abcdef", "9lives"] {
            ok.parse::<WorkloadId>().unwrap();
        }
        for bad in ["", "-a", "A", "a/b", "a b", "..", &"a".repeat(64)] {
            assert!(bad.parse::<WorkloadId>().is_err(), "{bad:?}");
        }
        let id = WorkloadId::random();
        assert_eq!(id.as_str().parse::<WorkloadId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<WorkloadId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<WorkloadId>("\"../x\"").is_err());
    }
}
