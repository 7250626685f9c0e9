//! The embedded sandbox runtime: bubblewrap + cgroups + seccomp, no daemon.
//!
//! Why bubblewrap: it is Debian's well-kept, widely audited namespace tool (Flatpak's), it
//! starts in a few milliseconds, and it lets the node stay `#![forbid(unsafe_code)]`: the
//! fork/namespace/mount dance lives in a small C program built for exactly that.
//!
//! Each workload has a state directory `<state>/workloads/<id>/`:
//!
//! | file                    | what                                                        |
//! |-------------------------|-------------------------------------------------------------|
//! | `spec.json`             | the spec it was created from (for adoption after a restart) |
//! | `scratch/`              | a size-limited tmpfs (`disk_mib`), mounted at `/tmp` inside |
//! | `stdout.log`, `stderr.log` | the main process's output                                |
//! | `status.json`           | bubblewrap's status: the sandbox's init pid, its exit code  |
//! | `reason.json`           | the [`TerminationReason`], once it ended                    |
//!
//! and a cgroup `<parent>/<id>` holding every process it starts (see [`super::cgroup`]).
//! Workloads do not die with the node: a restarted node adopts running ones (they keep
//! their cgroup, logs and status file) and reports those that ended meanwhile.
//!
//! Warm sandboxes (`<state>/pool/`, see [`pool`]): with `warm` > 0, each image offered by
//! name keeps that many sandboxes started ahead, their mounts and namespaces built, each
//! running a stub shell that waits for its command. `create` takes one for the workload's
//! image when one is ready (its cgroup limits, scratch size and state directory become the
//! workload's), and `start` then only names the host, wires the network and hands the stub
//! the command; otherwise the workload is built at `start` as below (a cold launch).
//!
//! Network: every sandbox has its own network namespace. Without `network.egress` it holds
//! only loopback; ports in the spec are reached through [`Runtime::connect`], which enters
//! that namespace, so a workload can serve an agent's tunnel without any route to the host
//! or the Internet. With egress (and a provider that allows it) it also gets a veth on a
//! /30 of its own, under the provider's policy (see [`net`] and
//! [`super::netpolicy`]).

mod launch;
mod logs;
pub mod net;
mod pool;

pub use pool::QUIET as WARM_QUIET;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::workload::{ImageSource, TerminationReason, Transport, WorkloadSpec};
use futures::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::cgroup::{Limits, WorkloadCgroup, signal};
use super::command::HOST_PATH;
use super::host::{Cgroups, sandbox_support};
use super::images::ImageStore;
use super::{
    ByteStream, ExecEvent, ExecRequest, ExecSession, OutputChunk, OutputStream, Runtime,
    RuntimeError, Stats, WorkloadId, WorkloadInfo, WorkloadState,
};

/// Longest wait for bubblewrap to report the sandbox's init pid.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the processes of a killed workload to go away.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the sandbox keeps its state and how it names its cgroups.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// State directory: `images/` and `workloads/` live here.
    pub state_dir: PathBuf,
    /// Name of the cgroup that holds this node's workloads (one per node on a host).
    pub cgroup_parent: String,
    /// Address pool and policy for sandboxes with egress.
    pub network: net::SandboxNetwork,
    /// Warm sandboxes kept ready per image offered by name (0: every launch is cold);
    /// see [`pool`].
    pub warm: usize,
    /// Where to publish how many warm sandboxes are ready (the node's metrics).
    pub warm_gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

enum Phase {
    Created,
    Starting,
    Running { init: u32 },
    Ended(TerminationReason),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Running { .. } => "running",
            Self::Ended(_) => "ended",
        }
    }
}

struct Workload {
    id: WorkloadId,
    spec: WorkloadSpec,
    dir: PathBuf,
    rootfs: PathBuf,
    cgroup: WorkloadCgroup,
    /// Its veth and address, when it has egress.
    lease: Option<net::Lease>,
    phase: Mutex<Phase>,
    /// Why the node is ending it (stop), so the exit is not mistaken for its own.
    requested: Mutex<Option<TerminationReason>>,
    /// The warm sandbox it was given at create, until start hands it the command.
    warm: Mutex<Option<pool::Warm>>,
    ended: watch::Sender<Option<TerminationReason>>,
}

impl Workload {
    fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }

    fn phase<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        let mut guard = self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    fn init_pid(&self, op: &'static str) -> Result<u32, RuntimeError> {
        self.phase(|p| match p {
            Phase::Running { init } => Ok(*init),
            other => Err(RuntimeError::WrongState {
                id: self.id.clone(),
                state: other.name(),
                op,
            }),
        })
    }

    fn state(&self) -> WorkloadState {
        self.phase(|p| match p {
            Phase::Created | Phase::Starting => WorkloadState::Created,
            Phase::Running { .. } => WorkloadState::Running,
            Phase::Ended(r) => WorkloadState::Ended(r.clone()),
        })
    }

    /// Records the end (once) and wakes everyone waiting for it.
    fn finish(&self, reason: TerminationReason) -> TerminationReason {
        let reason = self.phase(|p| match p {
            Phase::Ended(r) => r.clone(),
            _ => {
                *p = Phase::Ended(reason.clone());
                reason
            }
        });
        if let Ok(json) = serde_json::to_vec(&reason)
            && let Err(e) = std::fs::write(self.dir.join("reason.json"), json)
        {
            tracing::warn!(workload = %self.id, error = %e, "cannot record termination reason");
        }
        self.ended.send_replace(Some(reason.clone()));
        // A warm sandbox never started: its stub reads end-of-file and exits.
        drop(self.take_warm());
        // Nothing can reach the scratch of an ended sandbox (files go through an exec, which
        // needs it running), so its memory is given back now rather than after the log
        // retention. It also keeps the host's mount table to the live sandboxes: every
        // bubblewrap start copies and reads that table, so each leftover mount slows every
        // later launch (measured: 800 leftovers, 100 launches at once 2.2 s).
        unmount_scratch(self);
        reason
    }

    fn take_warm(&self) -> Option<pool::Warm> {
        self.warm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Why it ended, given the main process's exit code.
    fn reason_for_exit(&self, code: i32) -> TerminationReason {
        let requested = self
            .requested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(r) = requested {
            r
        } else if code != 0 && self.cgroup.oom_kills() > 0 {
            TerminationReason::OomKilled
        } else {
            TerminationReason::Exited { code }
        }
    }
}

/// The host programs and files every launch uses.
#[derive(Debug)]
struct Tools {
    bwrap: PathBuf,
    /// The seccomp programs (deny list, clone3), given to bubblewrap as descriptors 3, 4.
    seccomp: (PathBuf, PathBuf),
}

/// The sandbox runtime.
pub struct SandboxRuntime {
    tools: Arc<Tools>,
    cgroups: Cgroups,
    parent: String,
    images: ImageStore,
    workloads_dir: PathBuf,
    network: net::SandboxNetwork,
    workloads: Mutex<BTreeMap<WorkloadId, Arc<Workload>>>,
    /// Warm sandboxes, when kept.
    pool: Option<pool::Pool>,
}

impl std::fmt::Debug for SandboxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRuntime")
            .field("bwrap", &self.tools.bwrap)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

impl SandboxRuntime {
    /// Opens the runtime: checks the host (bubblewrap, cgroup controllers), prepares the
    /// state directory and the seccomp programs, builds the busybox image when the host has
    /// busybox-static, and adopts the workloads a previous node process left.
    ///
    /// # Errors
    /// [`RuntimeError::Unsupported`] when the host cannot run sandboxes (the provider then
    /// must not advertise them), [`RuntimeError::Host`] for disk failures.
    pub async fn open(config: SandboxConfig) -> Result<Self, RuntimeError> {
        let (bwrap, cgroups) =
            sandbox_support().map_err(|e| RuntimeError::Unsupported(e.to_string()))?;
        let dir = |p: PathBuf| -> Result<PathBuf, RuntimeError> {
            std::fs::create_dir_all(&p)
                .map_err(|e| RuntimeError::host(format!("create {}", p.display()), e))?;
            Ok(p)
        };
        let workloads_dir = dir(config.state_dir.join("workloads"))?;
        let images = ImageStore::open(config.state_dir.join("images"))?;
        let filters = super::seccomp::filters()?;
        let deny = config.state_dir.join("seccomp-deny.bpf");
        let clone3 = config.state_dir.join("seccomp-clone3.bpf");
        for (path, bytes) in [(&deny, &filters.deny), (&clone3, &filters.clone3)] {
            std::fs::write(path, bytes)
                .map_err(|e| RuntimeError::host(format!("write {}", path.display()), e))?;
        }
        let images_for_busybox = images.clone();
        tokio::task::spawn_blocking(move || images_for_busybox.ensure_busybox())
            .await
            .map_err(|e| RuntimeError::Unsupported(format!("busybox image task: {e}")))??;
        let mut network = config.network;
        if network.policy.egress && !net::forwarding_enabled() {
            tracing::warn!("IPv4 forwarding is off on this host: sandboxes get no egress");
            network.policy.egress = false;
        }
        let tools = Arc::new(Tools {
            bwrap,
            seccomp: (deny, clone3),
        });
        let pool = pool::Pool::open(
            config.warm,
            config.state_dir.join("pool"),
            tools.clone(),
            cgroups.clone(),
            config.cgroup_parent.clone(),
            images.clone(),
            PathBuf::from(super::images::BUSYBOX),
            config.warm_gauge,
        )
        .await?;
        let runtime = Self {
            tools,
            cgroups,
            parent: config.cgroup_parent,
            images,
            workloads_dir,
            network,
            workloads: Mutex::new(BTreeMap::new()),
            pool,
        };
        runtime.adopt()?;
        Ok(runtime)
    }

    /// The image store (the provider imports its own images here).
    pub fn images_store(&self) -> &ImageStore {
        &self.images
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadId, Arc<Workload>>> {
        self.workloads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: &WorkloadId) -> Result<Arc<Workload>, RuntimeError> {
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))
    }

    /// Warm sandboxes ready for image `digest` (0 when none are kept).
    pub fn warm_ready(&self, digest: &agora_protocol::Digest) -> usize {
        self.pool.as_ref().map_or(0, |p| p.ready(digest))
    }

    fn rootfs_for(&self, spec: &WorkloadSpec) -> Result<PathBuf, RuntimeError> {
        let (digest, label) = match &spec.image {
            ImageSource::Named { name, digest } => (digest, name.clone()),
            ImageSource::Tarball { digest, .. } => (digest, format!("upload {digest}")),
        };
        self.images
            .rootfs(digest)
            .ok_or_else(|| RuntimeError::ImageNotFound(format!("{label} ({digest})")))
    }

    fn workload(
        &self,
        id: WorkloadId,
        spec: WorkloadSpec,
        rootfs: PathBuf,
        lease: Option<net::Lease>,
        phase: Phase,
    ) -> Workload {
        let ended = match &phase {
            Phase::Ended(r) => Some(r.clone()),
            _ => None,
        };
        Workload {
            dir: self.workloads_dir.join(id.as_str()),
            cgroup: WorkloadCgroup::locate(&self.cgroups, &self.parent, id.as_str()),
            id,
            spec,
            rootfs,
            lease,
            phase: Mutex::new(phase),
            requested: Mutex::new(None),
            warm: Mutex::new(None),
            ended: watch::Sender::new(ended),
        }
    }

    /// Rebuilds the table from the state directory after a restart.
    fn adopt(&self) -> Result<(), RuntimeError> {
        let entries = std::fs::read_dir(&self.workloads_dir)
            .map_err(|e| RuntimeError::host("list workloads", e))?;
        for entry in entries.filter_map(Result::ok) {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<WorkloadId>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let spec: Option<WorkloadSpec> = std::fs::read(dir.join("spec.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(spec) = spec else {
                tracing::warn!(workload = %id, "no readable spec.json; leaving it for removal");
                continue;
            };
            let rootfs = self.rootfs_for(&spec).unwrap_or_default();
            let reason: Option<TerminationReason> = std::fs::read(dir.join("reason.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let mut status = read_status(&dir.join("status.json"));
            if dir.join(UNSTARTED).exists() {
                // A warm sandbox's pid, but the workload never got its command.
                status.init = None;
            }
            let lease: Option<net::Lease> = std::fs::read(dir.join("net.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let workload = Arc::new(self.workload(id.clone(), spec, rootfs, lease, Phase::Created));
            let alive = status
                .init
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
                && !workload.cgroup.pids().is_empty();
            match (reason, status.init) {
                (Some(r), _) => {
                    workload.finish(r);
                }
                (None, Some(init)) if alive => {
                    workload.phase(|p| *p = Phase::Running { init });
                    tracing::info!(workload = %id, init, "adopted a running sandbox");
                    tokio::spawn(watch_adopted(workload.clone()));
                }
                (None, Some(_)) => {
                    let code = status.exit_code.unwrap_or(137);
                    workload.finish(workload.reason_for_exit(code));
                }
                (None, None) => {
                    workload.finish(TerminationReason::RuntimeError {
                        detail: "the node restarted before the workload started".into(),
                    });
                }
            }
            self.table().insert(id, workload);
        }
        Ok(())
    }
}

/// Spawns `sh -c script` whose first act is to wait for the node to put it in `cgroup`;
/// returns the child with that done and its stdin still open.
async fn spawn_in_cgroup(
    tools: &Tools,
    cgroup: &WorkloadCgroup,
    launcher: Launcher<'_>,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Child, RuntimeError> {
    let Launcher {
        script,
        script_args,
        bwrap_args,
        kill_on_drop,
    } = launcher;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .arg("agora-sandbox")
        .args(script_args)
        .arg(&tools.bwrap)
        .args(bwrap_args)
        .env_clear()
        .env("PATH", HOST_PATH)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group: a Ctrl-C at the node's terminal must not reach it.
        .process_group(0)
        .kill_on_drop(kill_on_drop);
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::host("spawn sandbox launcher", e))?;
    let joined = match child.id() {
        Some(pid) => cgroup.join(pid),
        None => Err(RuntimeError::Unsupported("launcher exited at once".into())),
    };
    if let Err(e) = joined {
        let _ = child.kill().await;
        return Err(e);
    }
    if let Some(stdin) = child.stdin.as_mut() {
        stdin
            .write_all(b"\n")
            .await
            .map_err(|e| RuntimeError::host("release sandbox launcher", e))?;
    }
    Ok(child)
}

/// Starts a sandbox whose state directory is `dir`: opens its logs there, then spawns the
/// launcher `script` ([`launch::LAUNCH`] or [`launch::LAUNCH_WARM`]) in `cgroup` with the
/// seccomp programs, the status file and the stdout log. The child's stdout is the pipe
/// bubblewrap reports the sandbox's pid on.
async fn spawn_sandbox(
    tools: &Tools,
    cgroup: &WorkloadCgroup,
    dir: &Path,
    script: &'static str,
    bwrap_args: Vec<std::ffi::OsString>,
) -> Result<Child, RuntimeError> {
    let open_log = |name: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(name))
            .map_err(|e| RuntimeError::host(format!("open {name}"), e))
    };
    // The shell appends the workload's stdout to `stdout.log` itself (its own stdout is the
    // pipe bubblewrap reports the sandbox's pid on); both logs exist before start returns,
    // so a log reader never misses one.
    drop(open_log("stdout.log")?);
    let stderr = open_log("stderr.log")?;
    let (status, stdout) = (dir.join("status.json"), dir.join("stdout.log"));
    spawn_in_cgroup(
        tools,
        cgroup,
        Launcher {
            script,
            script_args: &[
                tools.seccomp.0.as_os_str(),
                tools.seccomp.1.as_os_str(),
                status.as_os_str(),
                stdout.as_os_str(),
            ],
            bwrap_args,
            kill_on_drop: false,
        },
        Stdio::piped(),
        Stdio::from(stderr),
    )
    .await
}

/// A launcher script, its arguments and bubblewrap's.
struct Launcher<'a> {
    script: &'a str,
    script_args: &'a [&'a std::ffi::OsStr],
    bwrap_args: Vec<std::ffi::OsString>,
    kill_on_drop: bool,
}

/// What bubblewrap's `--json-status-fd` reported.
#[derive(Debug, Default, Clone, Copy)]
struct Status {
    /// Host pid of the sandbox's init (pid 1 inside).
    init: Option<u32>,
    /// The main process's exit code, once it exited.
    exit_code: Option<i32>,
}

/// Most bytes read from bubblewrap's `--info-fd` (one small JSON object).
const INFO_MAX: u64 = 4096;

/// The sandbox's init pid from bubblewrap's `--info-fd`, read to its end-of-file (bubblewrap
/// and its child both close it once the pid is written); `None` when it ended first.
async fn read_info(info: impl tokio::io::AsyncRead + Unpin) -> Option<u32> {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    info.take(INFO_MAX).read_to_end(&mut text).await.ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    value
        .get("child-pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|pid| u32::try_from(pid).ok())
}

fn read_status(path: &Path) -> Status {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut status = Status::default();
    // One JSON document per line-ish; parse each top-level object.
    for value in serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
    {
        if let Some(pid) = value.get("child-pid").and_then(serde_json::Value::as_u64) {
            status.init = u32::try_from(pid).ok();
        }
        if let Some(code) = value.get("exit-code").and_then(serde_json::Value::as_i64) {
            status.exit_code = i32::try_from(code).ok();
        }
    }
    status
}

/// Follows an adopted workload (not our child, so no `wait`) until its cgroup empties.
async fn watch_adopted(workload: Arc<Workload>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if matches!(workload.state(), WorkloadState::Ended(_)) {
            return;
        }
        if workload.cgroup.pids().is_empty() {
            let code = read_status(&workload.dir.join("status.json"))
                .exit_code
                .unwrap_or(137);
            let reason = workload.reason_for_exit(code);
            workload.finish(reason);
            return;
        }
    }
}

/// Most output a workload may write to its log files: its disk allowance, at least 64 MiB.
fn log_cap(spec: &WorkloadSpec) -> u64 {
    spec.resources
        .disk_mib
        .saturating_mul(1 << 20)
        .max(64 << 20)
}

/// Ends a workload whose logs outgrow [`log_cap`] (logs live on the provider's disk, outside
/// the workload's scratch limit), with reason `policy_violation`.
async fn guard_logs(workload: Arc<Workload>) {
    let cap = log_cap(&workload.spec);
    let mut ended = workload.ended.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = ended.wait_for(Option::is_some) => return,
        }
        let size: u64 = logs::FILES
            .iter()
            .filter_map(|(_, name)| std::fs::metadata(workload.dir.join(name)).ok())
            .map(|m| m.len())
            .sum();
        if size > cap {
            tracing::warn!(workload = %workload.id, size, cap, "log output over its cap; ending it");
            workload
                .requested
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert(TerminationReason::PolicyViolation {
                    detail: format!("wrote more than {} MiB of output", cap >> 20),
                });
            if let Err(e) = workload.cgroup.kill_all(KILL_TIMEOUT).await {
                tracing::warn!(workload = %workload.id, error = %e, "cannot end it");
            }
            return;
        }
    }
}

/// Waits for the launcher (which became bubblewrap) and records how the workload ended.
async fn watch_child(workload: Arc<Workload>, mut child: Child) {
    let status = child.wait().await;
    let code = read_status(&workload.dir.join("status.json"))
        .exit_code
        .or_else(|| status.as_ref().ok().and_then(exit_code))
        .unwrap_or(137);
    // Whatever outlived the main process (daemons it left) goes with it.
    if let Err(e) = workload.cgroup.kill_all(KILL_TIMEOUT).await {
        tracing::warn!(workload = %workload.id, error = %e, "leftover processes");
    }
    let reason = workload.reason_for_exit(code);
    tracing::info!(workload = %workload.id, reason = reason.code(), code, "sandbox ended");
    workload.finish(reason);
}

fn exit_code(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

fn check_command(what: &str, command: &[String]) -> Result<(), RuntimeError> {
    use agora_protocol::workload::{MAX_ARG_BYTES, MAX_ARGS};
    if command.is_empty() {
        return Err(RuntimeError::InvalidSpec(format!(
            "{what}: sandbox images have no default command; give one"
        )));
    }
    if command.len() > MAX_ARGS
        || command
            .iter()
            .any(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "{what}: at most {MAX_ARGS} arguments of {MAX_ARG_BYTES} bytes, without NUL"
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Runtime for SandboxRuntime {
    fn isolation(&self) -> Isolation {
        Isolation::Sandbox
    }

    async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
        Ok(self.images.named())
    }

    async fn import_image(
        &self,
        path: &Path,
        digest: &agora_protocol::Digest,
        size_bytes: u64,
    ) -> Result<(), RuntimeError> {
        let (images, path, digest) = (self.images.clone(), path.to_owned(), *digest);
        tokio::task::spawn_blocking(move || images.import(&path, &digest, size_bytes, None))
            .await
            .map_err(|e| RuntimeError::Unsupported(format!("import task: {e}")))?
    }

    async fn create(&self, id: &WorkloadId, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        spec.validate()
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        check_command("command", &spec.command)?;
        if spec.network.egress && !self.network.policy.egress {
            return Err(RuntimeError::Unsupported(
                "outbound connections (egress): this provider does not allow them".into(),
            ));
        }
        let rootfs = self.rootfs_for(spec)?;
        let workload = {
            let mut table = self.table();
            if table.contains_key(id) {
                return Err(RuntimeError::AlreadyExists(id.clone()));
            }
            let lease = if spec.network.egress {
                let used = table
                    .values()
                    .filter_map(|w| w.lease.as_ref().map(|l| l.slot))
                    .collect();
                Some(self.network.allocate(id, &used)?)
            } else {
                None
            };
            let w =
                Arc::new(self.workload(id.clone(), spec.clone(), rootfs, lease, Phase::Starting));
            table.insert(id.clone(), w.clone());
            w
        };
        let warm = if workload.dir.exists() {
            None
        } else {
            let digest = image_digest(spec);
            self.pool.as_ref().and_then(|p| p.take(digest))
        };
        let warmed = warm.is_some();
        let prepared = match warm {
            Some(warm) => match assign_warm(&workload, &warm) {
                Ok(()) => {
                    *workload
                        .warm
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(warm);
                    Ok(())
                }
                Err(e) => {
                    warm.discard().await;
                    Err(e)
                }
            },
            None => prepare(&workload),
        };
        match prepared {
            Ok(()) => {
                workload.phase(|p| *p = Phase::Created);
                tracing::debug!(workload = %id, warm = warmed, "sandbox created");
                Ok(())
            }
            Err(e) => {
                self.table().remove(id);
                if let Err(e) = workload.cgroup.kill_all(KILL_TIMEOUT).await {
                    tracing::warn!(workload = %id, error = %e, "leftover processes");
                }
                cleanup(&workload).await;
                Err(e)
            }
        }
    }

    async fn start(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let workload = self.get(id)?;
        workload.phase(|p| match p {
            Phase::Created => {
                *p = Phase::Starting;
                Ok(())
            }
            other => Err(RuntimeError::WrongState {
                id: id.clone(),
                state: other.name(),
                op: "start",
            }),
        })?;
        let span = tracing::info_span!("sandbox_start", workload = %id);
        let started = self.launch(&workload).instrument(span).await;
        if let Err(e) = &started {
            workload.finish(TerminationReason::RuntimeError {
                detail: e.to_string(),
            });
        }
        started
    }

    async fn exec(&self, id: &WorkloadId, req: ExecRequest) -> Result<ExecSession, RuntimeError> {
        let workload = self.get(id)?;
        let init = workload.init_pid("exec")?;
        check_command("exec", &req.command)?;
        let scratch = workload.scratch();
        let layout = launch::Layout {
            rootfs: &workload.rootfs,
            scratch: &scratch,
        };
        let args = launch::exec_args(&workload.spec, &req, &layout);
        let init = init.to_string();
        // With a terminal, util-linux `script` holds the pty on the host and runs the whole
        // chain (nsenter, bubblewrap, command) on it: the command's output merges on it.
        let tty_command = req
            .tty
            .then(|| launch::tty_command(&init, &self.tools.bwrap, &args));
        let (script, bwrap_args) = match &tty_command {
            Some(_) => (launch::EXEC_TTY, Vec::new()),
            None => (launch::EXEC, args),
        };
        let mut script_args = vec![
            self.tools.seccomp.0.as_os_str(),
            self.tools.seccomp.1.as_os_str(),
            std::ffi::OsStr::new(&init),
        ];
        if let Some(cmd) = &tty_command {
            script_args.push(std::ffi::OsStr::new(cmd));
        }
        let mut child = spawn_in_cgroup(
            &self.tools,
            &workload.cgroup,
            Launcher {
                script,
                script_args: &script_args,
                bwrap_args,
                kill_on_drop: true,
            },
            Stdio::piped(),
            Stdio::piped(),
        )
        .await?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RuntimeError::Unsupported("exec pipes missing".into()));
        };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(pump_exec(child, stdout, stderr, tx));
        Ok(ExecSession {
            stdin: Box::pin(stdin),
            events: rx,
        })
    }

    async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        let workload = self.get(id)?;
        Ok(logs::stream(
            workload.dir.clone(),
            follow,
            workload.ended.subscribe(),
        ))
    }

    async fn stats(&self, id: &WorkloadId) -> Result<Stats, RuntimeError> {
        let workload = self.get(id)?;
        let mut stats = workload.cgroup.stats();
        if let Ok(init) = workload.init_pid("stats") {
            let (rx, tx) = net_bytes(init);
            stats.net_rx_bytes = rx;
            stats.net_tx_bytes = tx;
        }
        Ok(stats)
    }

    async fn state(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
        Ok(self.get(id)?.state())
    }

    async fn stop(
        &self,
        id: &WorkloadId,
        reason: TerminationReason,
        grace: Duration,
    ) -> Result<TerminationReason, RuntimeError> {
        let workload = self.get(id)?;
        let running = workload.phase(|p| match p {
            Phase::Ended(r) => Err(r.clone()),
            Phase::Created => {
                *p = Phase::Ended(reason.clone());
                Err(reason.clone())
            }
            Phase::Starting | Phase::Running { .. } => Ok(()),
        });
        if let Err(r) = running {
            return Ok(workload.finish(r));
        }
        workload
            .requested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(reason);
        let mut ended = workload.ended.subscribe();
        for pid in workload.cgroup.pids() {
            signal(pid, rustix::process::Signal::TERM);
        }
        let wait_end = |mut ended: watch::Receiver<Option<TerminationReason>>, limit| async move {
            tokio::time::timeout(limit, ended.wait_for(Option::is_some))
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|r| r.clone())
        };
        if let Some(r) = wait_end(ended.clone(), grace).await {
            return Ok(r);
        }
        workload.cgroup.kill_all(KILL_TIMEOUT).await?;
        ended.mark_changed();
        wait_end(ended, KILL_TIMEOUT).await.ok_or_else(|| {
            RuntimeError::host(
                format!("stop {id}"),
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the sandbox did not end"),
            )
        })
    }

    async fn remove(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let Ok(workload) = self.get(id) else {
            return Ok(());
        };
        if !matches!(workload.state(), WorkloadState::Ended(_)) {
            self.stop(id, TerminationReason::ProviderShutdown, Duration::ZERO)
                .await?;
        }
        workload.cgroup.kill_all(KILL_TIMEOUT).await?;
        cleanup(&workload).await;
        self.table().remove(id);
        tracing::debug!(workload = %id, "sandbox removed");
        Ok(())
    }

    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let mut known: Vec<WorkloadInfo> = self
            .table()
            .values()
            .map(|w| WorkloadInfo {
                id: w.id.clone(),
                state: w.state(),
            })
            .collect();
        // Cgroups without a state directory (a crash mid-create) are orphans: list them too,
        // so reconciliation removes them.
        for name in WorkloadCgroup::list(&self.cgroups, &self.parent) {
            if let Ok(id) = name.parse::<WorkloadId>()
                && !known.iter().any(|w| w.id == id)
            {
                known.push(WorkloadInfo {
                    id,
                    state: WorkloadState::Ended(TerminationReason::RuntimeError {
                        detail: "orphaned cgroup".into(),
                    }),
                });
            }
        }
        Ok(known)
    }

    async fn connect(
        &self,
        id: &WorkloadId,
        port: u16,
    ) -> Result<Box<dyn ByteStream>, RuntimeError> {
        let workload = self.get(id)?;
        if !workload
            .spec
            .ports
            .iter()
            .any(|p| p.port == port && p.transport == Transport::Tcp)
        {
            return Err(RuntimeError::Connect {
                port,
                reason: "not a TCP port of this workload's spec".into(),
            });
        }
        let init = workload.init_pid("connect")?;
        let stream = connect_in_netns(init, port).await?;
        Ok(Box::new(stream))
    }

    // Files go through the workload's own `tar`, run by `exec`: it then works in the
    // sandbox's namespaces (its user namespace, its mount view of a read-only root and its
    // scratch `/tmp`), under its seccomp filter and cgroup, with no capabilities on the host.
    // Every path, and every symlink the workload planted in its scratch, resolves inside that
    // view, so nothing a workload does can make the node write or read outside it. Unpacking
    // on the host into `scratch/` instead would follow such links with the node's privileges
    // (the `docker cp` symlink race, CVE-2018-15664), and the extraction would not count
    // against the workload's CPU and memory.
    async fn close(&self) {
        if let Some(pool) = &self.pool {
            pool.close().await;
        }
    }

    async fn put_files(
        &self,
        id: &WorkloadId,
        path: &str,
        tar: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<u64, RuntimeError> {
        super::files::put_via_exec(self, id, path, tar).await
    }

    async fn get_files(
        &self,
        id: &WorkloadId,
        path: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, RuntimeError> {
        super::files::get_via_exec(self, id, path).await
    }
}

/// Connects to `127.0.0.1:port` inside the network namespace of process `init`.
///
/// A fresh OS thread moves itself into that namespace (setns), connects and ends; the
/// socket stays in the sandbox's namespace, so the node talks to the workload's loopback
/// without any route between the two, and without a relay process per connection.
async fn connect_in_netns(init: u32, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
    let stream = in_namespace(init, Namespace::Net, move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    })
    .await?
    .map_err(|e| RuntimeError::Connect {
        port,
        reason: if e.kind() == std::io::ErrorKind::ConnectionRefused {
            "nothing listens there".into()
        } else {
            e.to_string()
        },
    })?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| RuntimeError::host("adopt socket", e))
}

/// Names the host of the sandbox whose init is `init` (in its UTS namespace, where the
/// node's root is privileged): a warm sandbox was made under a placeholder name.
async fn set_hostname(init: u32, name: &str) -> Result<(), RuntimeError> {
    let name = name.to_owned();
    in_namespace(init, Namespace::Uts, move || {
        rustix::system::sethostname(name.as_bytes()).map_err(std::io::Error::from)
    })
    .await?
    .map_err(|e| RuntimeError::host("set the sandbox's hostname", e))
}

/// A namespace [`in_namespace`] enters.
#[derive(Debug, Clone, Copy)]
enum Namespace {
    Net,
    Uts,
}

/// Runs `f` on a fresh OS thread moved into namespace `ns` of process `init`. The thread
/// ends with `f`, so no other work ever runs in the sandbox's namespace (a pooled
/// blocking thread would carry it on to unrelated tasks). The outer error is the thread's
/// (spawn, vanished); the inner one is entering the namespace or `f`'s.
async fn in_namespace<T: Send + 'static>(
    init: u32,
    ns: Namespace,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>, RuntimeError> {
    use rustix::thread::LinkNameSpaceType;
    let (file, kind) = match ns {
        Namespace::Net => ("net", LinkNameSpaceType::Network),
        Namespace::Uts => ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("agora-{file}ns"))
        .spawn(move || {
            let result = std::fs::File::open(format!("/proc/{init}/ns/{file}"))
                .and_then(|ns| {
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&ns),
                        Some(kind),
                    )
                    .map_err(std::io::Error::from)
                })
                .and_then(|()| f());
            let _ = tx.send(result);
        })
        .map_err(|e| RuntimeError::host(format!("spawn {file} namespace thread"), e))?;
    rx.await
        .map_err(|_| RuntimeError::Unsupported(format!("{file} namespace thread vanished")))
}

impl SandboxRuntime {
    /// Starts a workload created on a warm sandbox: names its host after it, wires its
    /// network, and hands the stub the start script, which `exec`s the command.
    /// Clears what a warm sandbox that failed to start a workload left in the workload's
    /// cgroup, network and logs, so a cold launch starts from a clean slate.
    async fn forget_warm(&self, workload: &Workload) -> Result<(), RuntimeError> {
        mark_started(workload)?;
        workload.cgroup.kill_all(KILL_TIMEOUT).await?;
        if let Some(lease) = &workload.lease {
            net::detach(&workload.id, lease).await;
        }
        for (_, name) in logs::FILES {
            std::fs::File::create(workload.dir.join(name))
                .map_err(|e| RuntimeError::host(format!("truncate {name}"), e))?;
        }
        Ok(())
    }

    async fn launch_warm(
        &self,
        workload: &Arc<Workload>,
        warm: pool::Warm,
    ) -> Result<(), RuntimeError> {
        let (mut child, init) = warm.into_process();
        let handed = async {
            set_hostname(init, workload.id.as_str()).await?;
            if let Some(lease) = &workload.lease {
                net::attach(&workload.id, init, lease, &self.network.policy).await?;
            }
            let mut script = launch::start_script(&workload.spec).into_bytes();
            script.push(0);
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| RuntimeError::Unsupported("stub pipe missing".into()))?;
            stdin
                .write_all(&script)
                .await
                .map_err(|e| RuntimeError::host("hand the stub its command", e))
        }
        .await;
        if let Err(e) = handed {
            let _ = child.kill().await;
            return Err(e);
        }
        workload.phase(|p| {
            if matches!(p, Phase::Starting) {
                *p = Phase::Running { init };
            }
        });
        tracing::debug!(init, "warm sandbox running");
        tokio::spawn(watch_child(workload.clone(), child));
        tokio::spawn(guard_logs(workload.clone()));
        Ok(())
    }

    async fn launch(&self, workload: &Arc<Workload>) -> Result<(), RuntimeError> {
        if let Some(warm) = workload.take_warm() {
            let started = match mark_started(workload) {
                Ok(()) => self.launch_warm(workload, warm).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => return Ok(()),
                // The stub never ran the command (it only runs a whole script), so the
                // workload is built cold in the same directory and cgroup instead.
                Err(e) => {
                    tracing::warn!(error = %e, "the warm sandbox failed; building one for the workload");
                    self.forget_warm(workload).await?;
                }
            }
        }
        let scratch = workload.scratch();
        let layout = launch::Layout {
            rootfs: &workload.rootfs,
            scratch: &scratch,
        };
        let args = launch::main_args(workload.id.as_str(), &workload.spec, &layout);
        let mut child = spawn_sandbox(
            &self.tools,
            &workload.cgroup,
            &workload.dir,
            launch::LAUNCH,
            args,
        )
        .await?;
        let Some(info) = child.stdout.take() else {
            let _ = child.kill().await;
            return Err(RuntimeError::Unsupported("launcher pipe missing".into()));
        };
        // `None`: bubblewrap ended before reporting; the waiter records why.
        let Ok(init) = tokio::time::timeout(START_TIMEOUT, read_info(info)).await else {
            let _ = child.kill().await;
            return Err(RuntimeError::host(
                "start sandbox",
                std::io::Error::new(std::io::ErrorKind::TimedOut, "bubblewrap did not report"),
            ));
        };
        if let (Some(init), Some(lease)) = (init, &workload.lease)
            && let Err(e) = net::attach(&workload.id, init, lease, &self.network.policy).await
        {
            let _ = child.kill().await;
            return Err(e);
        }
        // Release bubblewrap's --block-fd, then the main process reads end-of-file on stdin.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"\n").await;
        }
        if let Some(init) = init {
            workload.phase(|p| {
                if matches!(p, Phase::Starting) {
                    *p = Phase::Running { init };
                }
            });
        }
        tracing::debug!(init, "sandbox running");
        tokio::spawn(watch_child(workload.clone(), child));
        tokio::spawn(guard_logs(workload.clone()));
        Ok(())
    }
}

fn image_digest(spec: &WorkloadSpec) -> &agora_protocol::Digest {
    match &spec.image {
        ImageSource::Named { digest, .. } | ImageSource::Tarball { digest, .. } => digest,
    }
}

/// The files a workload's state directory starts with: its spec and network lease (read
/// back to adopt it after a restart).
fn records(workload: &Workload) -> Result<Vec<(&'static str, Vec<u8>)>, RuntimeError> {
    let mut records = vec![("spec.json", to_json(&workload.spec)?)];
    if let Some(lease) = &workload.lease {
        records.push(("net.json", to_json(lease)?));
    }
    Ok(records)
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec(value).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))
}

fn limits(spec: &WorkloadSpec) -> Limits {
    let r = &spec.resources;
    Limits {
        memory_bytes: r.memory_mib.saturating_mul(1 << 20),
        vcpu_milli: r.vcpu_milli,
        pids: r.pids,
    }
}

fn disk_bytes(spec: &WorkloadSpec) -> u64 {
    spec.resources.disk_mib.max(1).saturating_mul(1 << 20)
}

/// Creates the state directory, scratch tmpfs and cgroup of a new workload.
fn prepare(workload: &Workload) -> Result<(), RuntimeError> {
    let host = |op: &str| {
        let op = op.to_owned();
        move |e| RuntimeError::host(op, e)
    };
    if workload.dir.exists() {
        return Err(RuntimeError::AlreadyExists(workload.id.clone()));
    }
    std::fs::create_dir_all(workload.scratch()).map_err(host("create workload dir"))?;
    for (name, bytes) in records(workload)? {
        std::fs::write(workload.dir.join(name), bytes).map_err(host(&format!("write {name}")))?;
    }
    pool::mount_scratch(&workload.scratch(), disk_bytes(&workload.spec), false)?;
    workload.cgroup.create(limits(&workload.spec))
}

/// Gives a new workload the warm sandbox `warm` instead of [`prepare`]: the same cgroup
/// limits, scratch size and records, with no mount of its own.
fn assign_warm(workload: &Workload, warm: &pool::Warm) -> Result<(), RuntimeError> {
    let mut records = records(workload)?;
    records.push((UNSTARTED, Vec::new()));
    warm.assign(
        &workload.dir,
        &workload.cgroup,
        limits(&workload.spec),
        disk_bytes(&workload.spec),
        &records,
    )
}

/// Present in the directory of a workload created on a warm sandbox until `start` hands
/// the stub its command: the warm sandbox's pid in `status.json` is not the workload's
/// start, so a node restarted in between reports it never started.
const UNSTARTED: &str = "unstarted";

fn mark_started(workload: &Workload) -> Result<(), RuntimeError> {
    match std::fs::remove_file(workload.dir.join(UNSTARTED)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RuntimeError::host("mark the workload started", e))
        }
        _ => Ok(()),
    }
}

/// Unmounts the workload's scratch tmpfs from the host (lazily: a process still inside
/// keeps its own view until it goes); not mounted (any more) is fine.
fn unmount_scratch(workload: &Workload) {
    if let Err(e) = unmount_scratch_at(&workload.scratch()) {
        tracing::warn!(workload = %workload.id, error = %e, "unmount scratch");
    }
}

/// [`unmount_scratch`] of the tmpfs at `path` (a workload's or a warm sandbox's).
fn unmount_scratch_at(path: &Path) -> Result<(), rustix::io::Errno> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Err(e) if e != rustix::io::Errno::INVAL && e != rustix::io::Errno::NOENT => Err(e),
        _ => Ok(()),
    }
}

/// Undoes [`prepare`]; best effort, each step logged.
async fn cleanup(workload: &Workload) {
    if let Some(lease) = &workload.lease {
        net::detach(&workload.id, lease).await;
    }
    unmount_scratch(workload);
    if let Err(e) = workload.cgroup.remove().await {
        tracing::warn!(workload = %workload.id, error = %e, "remove cgroup");
    }
    if let Err(e) = std::fs::remove_dir_all(&workload.dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(workload = %workload.id, error = %e, "remove state dir");
    }
}

/// Forwards an exec's output, then its exit code; kills it when the session is dropped.
async fn pump_exec(
    mut child: Child,
    mut stdout: tokio::process::ChildStdout,
    mut stderr: tokio::process::ChildStderr,
    tx: mpsc::Sender<ExecEvent>,
) {
    let (mut out_open, mut err_open) = (true, true);
    let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    while out_open || err_open {
        let (stream, read) = tokio::select! {
            r = stdout.read(&mut out_buf), if out_open => (OutputStream::Stdout, r),
            r = stderr.read(&mut err_buf), if err_open => (OutputStream::Stderr, r),
            () = tx.closed() => {
                let _ = child.kill().await;
                return;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                match stream {
                    OutputStream::Stdout => out_open = false,
                    OutputStream::Stderr => err_open = false,
                }
                continue;
            }
            Ok(n) => n,
        };
        let buf = match stream {
            OutputStream::Stdout => &out_buf,
            OutputStream::Stderr => &err_buf,
        };
        let chunk = OutputChunk {
            stream,
            data: buf.get(..n).unwrap_or_default().to_vec(),
        };
        if tx.send(ExecEvent::Output(chunk)).await.is_err() {
            let _ = child.kill().await;
            return;
        }
    }
    let code = child
        .wait()
        .await
        .ok()
        .and_then(|s| exit_code(&s))
        .unwrap_or(137);
    let _ = tx.send(ExecEvent::Exit(code)).await;
}

/// Bytes received and sent on the sandbox's interfaces other than loopback.
fn net_bytes(init: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{init}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .map(|(_, fields)| {
            let f: Vec<u64> = fields
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (
                f.first().copied().unwrap_or(0),
                f.get(8).copied().unwrap_or(0),
            )
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, "{ \"child-pid\": 42, \"pid-namespace\": 1 }\n").unwrap();
        let s = read_status(&path);
        assert_eq!((s.init, s.exit_code), (Some(42), None));
        std::fs::write(&path, "{ \"child-pid\": 42 }\n{ \"exit-code\": 3 }\n").unwrap();
        assert_eq!(read_status(&path).exit_code, Some(3));
        assert_eq!(read_status(&dir.path().join("missing")).init, None);
    }

    #[tokio::test]
    async fn the_info_pipe_gives_the_pid_or_nothing() {
        let info = b"{\n    \"child-pid\": 42,\n    \"pid-namespace\": 1\n}\n";
        assert_eq!(read_info(&info[..]).await, Some(42));
        assert_eq!(read_info(&b""[..]).await, None); // ended before reporting
        assert_eq!(read_info(&b"{ \"child-pid\": -1 }"[..]).await, None);
        let huge = [b' '; 10_000];
        assert_eq!(read_info(&huge[..]).await, None); // bounded, not parsed as a pid
    }

    #[test]
    fn commands_are_bounded() {
        assert!(check_command("command", &[]).is_err());
        assert!(check_command("command", &["a\0".into()]).is_err());
        check_command("command", &["sh".into()]).unwrap();
    }
}
