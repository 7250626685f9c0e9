//! Warm sandboxes: bubblewraps started ahead of any lease, each waiting for a workload.
//!
//! Building a sandbox's mount namespace is most of a cold launch, and it serialises: every
//! `mount` takes the kernel's one namespace lock, so 100 launches at once queue about 3,000
//! exclusive sections whatever the number of cores (BENCHMARKS.md, issue 5). A warm
//! sandbox has done all of that before a lease asks: read-only root, `/proc`, `/dev`, its
//! scratch `/tmp`, its namespaces, seccomp filters, no capabilities, a new session. Its
//! command is the host's static busybox `sh` (bound at [`launch::STUB`]), blocked reading
//! its stdin.
//!
//! At create the runtime takes one made from the workload's image ([`Pool::take`]) and
//! [`Warm::assign`]s it: the workload's cgroup is made with its limits and the warm
//! sandbox's processes move into it, its scratch is resized to the workload's disk, and its
//! state directory becomes the workload's (one rename, after the spec is written into it).
//! At start the runtime names its host (UTS) after the workload, wires its network, and
//! writes the start script ([`launch::start_script`]) to the stub, which `exec`s the
//! command in place: the workload is pid 2 of its namespace, under the same filters, as a
//! cold launch makes it. No `mount` is left for the launch.
//!
//! Each image offered by name keeps `warm` sandboxes. Refilling makes one at a time and
//! waits for a quiet moment (no take for [`QUIET`]), so a burst of leases does not compete
//! with it for the namespace lock. A warm sandbox whose node went away reads end-of-file
//! and exits (97); what it left on the host (directory, scratch mount, cgroup) is cleared
//! when the runtime opens again ([`clear_stale`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agora_protocol::Digest;
use prometheus_client::metrics::gauge::Gauge;
use tokio::process::Child;
use tokio::sync::Notify;

use super::launch;
use super::{START_TIMEOUT, Tools, read_info, spawn_sandbox};
use crate::runtime::RuntimeError;
use crate::runtime::cgroup::{Limits, WorkloadCgroup, signal};
use crate::runtime::host::Cgroups;
use crate::runtime::images::ImageStore;

/// How long refilling waits after the last take, so a burst of launches runs first.
pub const QUIET: Duration = Duration::from_millis(250);
/// How often refilling looks, besides being woken by a take.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Longest pause after failures to make a warm sandbox (doubling from 1 s).
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A warm sandbox's scratch before it is resized to a workload's disk.
const WARM_SCRATCH_BYTES: u64 = 1 << 20;
/// A warm sandbox's cgroup: enough for bubblewrap, its init and the stub shell.
const WARM_LIMITS: Limits = Limits {
    memory_bytes: 64 << 20,
    vcpu_milli: 1000,
    pids: 16,
};
/// Prefix of warm sandboxes' names (directory, cgroup, first hostname). The dot keeps them
/// from ever parsing as a workload id, so the reconciler never lists them as orphans.
const PREFIX: &str = "pool.";

/// One warm sandbox, parked.
pub struct Warm {
    /// Its name (`pool.<hex>`): directory, cgroup and hostname until assigned.
    name: String,
    /// Its state directory under the pool's (status, logs, scratch).
    dir: PathBuf,
    cgroup: WorkloadCgroup,
    /// The launcher, now bubblewrap; its stdin is the stub's.
    child: Child,
    /// Host pid of the sandbox's init.
    init: u32,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("name", &self.name)
            .field("init", &self.init)
            .finish_non_exhaustive()
    }
}

impl Warm {
    /// Makes this warm sandbox the workload whose state directory is `to` and cgroup
    /// `cgroup`: writes `limits` and moves the processes there, resizes the scratch to
    /// `disk_bytes`, writes `records` (name, bytes) into the directory, and renames it to
    /// `to` last, so the workload's directory appears complete or not at all.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] for the step that failed. The caller then [`Warm::discard`]s it.
    pub fn assign(
        &self,
        to: &Path,
        cgroup: &WorkloadCgroup,
        limits: Limits,
        disk_bytes: u64,
        records: &[(&str, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        cgroup.create(limits)?;
        // Parked processes do not fork, so one pass moves them all.
        for pid in self.cgroup.pids() {
            cgroup.join(pid)?;
        }
        let scratch = self.dir.join("scratch");
        mount_scratch(&scratch, disk_bytes.max(1), true)?;
        for (name, bytes) in records {
            std::fs::write(self.dir.join(name), bytes)
                .map_err(|e| RuntimeError::host(format!("write {name}"), e))?;
        }
        std::fs::rename(&self.dir, to)
            .map_err(|e| RuntimeError::host("rename warm sandbox directory", e))?;
        // Empty now: removed in the background (the kernel frees it shortly after).
        let old = self.cgroup.clone();
        tokio::spawn(async move {
            if let Err(e) = old.remove().await {
                tracing::debug!(error = %e, "warm cgroup left for the next start");
            }
        });
        Ok(())
    }

    /// Its launcher process (now bubblewrap, the stub's stdin open) and the sandbox's init.
    pub fn into_process(self) -> (Child, u32) {
        (self.child, self.init)
    }

    /// Ends this warm sandbox and clears its host state (after a failed assignment, or
    /// found ended while parked).
    pub async fn discard(self) {
        let Self {
            name,
            dir,
            cgroup,
            child,
            ..
        } = self;
        drop(child);
        clear(&name, &dir, &cgroup).await;
    }
}

/// Mounts (or, with `remount`, resizes) a scratch tmpfs of `bytes` at `path`.
pub fn mount_scratch(path: &Path, bytes: u64, remount: bool) -> Result<(), RuntimeError> {
    use rustix::mount::MountFlags;
    let data = std::ffi::CString::new(format!("size={bytes},mode=1777"))
        .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV;
    if remount {
        // Only the size changes; the mount flags are given again (a remount sets them).
        rustix::mount::mount_remount(path, flags, data.as_c_str())
            .map_err(|e| RuntimeError::host("resize scratch tmpfs", e.into()))
    } else {
        rustix::mount::mount("agora-scratch", path, "tmpfs", flags, data.as_c_str())
            .map_err(|e| RuntimeError::host("mount scratch tmpfs", e.into()))
    }
}

/// Undoes a warm sandbox's host state: processes, cgroup, scratch mount, directory.
/// Best effort; each step logged.
pub async fn clear(name: &str, dir: &Path, cgroup: &WorkloadCgroup) {
    if let Err(e) = cgroup.kill_all(super::KILL_TIMEOUT).await {
        tracing::warn!(warm = name, error = %e, "warm sandbox processes");
    }
    if let Err(e) = cgroup.remove().await {
        tracing::warn!(warm = name, error = %e, "remove warm cgroup");
    }
    unmount_detached(&dir.join("scratch"));
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(warm = name, error = %e, "remove warm directory");
    }
}

fn unmount_detached(path: &Path) {
    if let Err(e) = super::unmount_scratch_at(path) {
        tracing::warn!(path = %path.display(), error = %e, "unmount warm scratch");
    }
}

/// Clears what warm sandboxes of a previous node process left: every directory under
/// `dir` and every `pool.*` cgroup under `parent`.
pub async fn clear_stale(dir: &Path, cgroups: &Cgroups, parent: &str) {
    let mut names: Vec<String> = WorkloadCgroup::list(cgroups, parent)
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        names.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    names.sort();
    names.dedup();
    for name in names {
        let cgroup = WorkloadCgroup::locate(cgroups, parent, &name);
        clear(&name, &dir.join(&name), &cgroup).await;
    }
}

/// Warm sandboxes per image, and the task that keeps them topped up.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    /// Wakes the refilling task after a take.
    wake: Arc<Notify>,
}

struct Shared {
    /// Warm sandboxes kept per image.
    warm: usize,
    dir: PathBuf,
    tools: Arc<Tools>,
    cgroups: Cgroups,
    parent: String,
    images: ImageStore,
    /// The host's static busybox, bound into each as the stub.
    busybox: PathBuf,
    /// Published count of ready sandboxes, all images.
    gauge: Gauge,
    ready: Mutex<BTreeMap<Digest, Vec<Warm>>>,
    /// Set by [`Pool::close`]: no more refilling.
    closed: std::sync::atomic::AtomicBool,
    last_take: Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("warm", &self.warm)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts keeping `warm` sandboxes of each named image in `dir` (cleared first of what
    /// a previous process left). `None` when `warm` is 0 or the host has no static
    /// busybox for the stub: every launch is then cold.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        warm: usize,
        dir: PathBuf,
        tools: Arc<Tools>,
        cgroups: Cgroups,
        parent: String,
        images: ImageStore,
        busybox: PathBuf,
        gauge: Option<Gauge>,
    ) -> Result<Option<Self>, RuntimeError> {
        clear_stale(&dir, &cgroups, &parent).await;
        if warm == 0 {
            return Ok(None);
        }
        if !busybox.is_file() {
            tracing::warn!(busybox = %busybox.display(), "no static busybox for warm sandboxes; every launch is cold");
            return Ok(None);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::host(format!("create {}", dir.display()), e))?;
        let shared = Arc::new(Shared {
            warm,
            dir,
            tools,
            cgroups,
            parent,
            images,
            busybox,
            gauge: gauge.unwrap_or_default(),
            ready: Mutex::new(BTreeMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            last_take: Mutex::new(None),
        });
        let wake = Arc::new(Notify::new());
        tokio::spawn(refill(Arc::downgrade(&shared), wake.clone()));
        Ok(Some(Self { shared, wake }))
    }

    /// A live warm sandbox of image `digest`, if one is ready.
    pub fn take(&self, digest: &Digest) -> Option<Warm> {
        *lock(&self.shared.last_take) = Some(tokio::time::Instant::now());
        self.wake.notify_one();
        let mut ready = lock(&self.shared.ready);
        let list = ready.get_mut(digest)?;
        while let Some(mut warm) = list.pop() {
            self.shared.gauge.dec();
            let alive = std::fs::File::open(format!("/proc/{}/ns/uts", warm.init)).is_ok();
            let waited = warm.child.try_wait();
            if matches!(waited, Ok(None)) && alive {
                return Some(warm);
            }
            tracing::warn!(warm = %warm.name, "a warm sandbox ended while parked");
            tokio::spawn(async move {
                warm.discard().await;
            });
        }
        None
    }

    /// Stops refilling and ends every ready warm sandbox, clearing its host state (the
    /// node is stopping).
    pub async fn close(&self) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
        let ready: Vec<Warm> = std::mem::take(&mut *lock(&self.shared.ready))
            .into_values()
            .flatten()
            .collect();
        self.shared.gauge.set(0);
        futures::future::join_all(ready.into_iter().map(Warm::discard)).await;
    }

    /// How many are ready for image `digest`.
    pub fn ready(&self, digest: &Digest) -> usize {
        lock(&self.shared.ready).get(digest).map_or(0, Vec::len)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The next image short of warm sandboxes, with its root filesystem.
    fn wanting(&self) -> Option<(Digest, PathBuf)> {
        let ready = lock(&self.ready);
        self.images.named().into_iter().find_map(|image| {
            let have = ready.get(&image.digest).map_or(0, Vec::len);
            (have < self.warm)
                .then(|| self.images.rootfs(&image.digest).map(|r| (image.digest, r)))
                .flatten()
        })
    }

    /// Time left before the pool is quiet enough to refill.
    fn quiet_in(&self) -> Duration {
        lock(&self.last_take)
            .map(|t| QUIET.saturating_sub(t.elapsed()))
            .unwrap_or_default()
    }

    /// Starts one warm sandbox of `rootfs` and waits until it is parked.
    async fn park(&self, rootfs: &Path) -> Result<Warm, RuntimeError> {
        let name = format!("{PREFIX}{:016x}", rand::random::<u64>());
        let dir = self.dir.join(&name);
        let cgroup = WorkloadCgroup::locate(&self.cgroups, &self.parent, &name);
        match self.start(&name, &dir, &cgroup, rootfs).await {
            Ok((child, init)) => Ok(Warm {
                name,
                dir,
                cgroup,
                child,
                init,
            }),
            Err(e) => {
                clear(&name, &dir, &cgroup).await;
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        name: &str,
        dir: &Path,
        cgroup: &WorkloadCgroup,
        rootfs: &Path,
    ) -> Result<(Child, u32), RuntimeError> {
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch)
            .map_err(|e| RuntimeError::host("create warm directory", e))?;
        mount_scratch(&scratch, WARM_SCRATCH_BYTES, false)?;
        cgroup.create(WARM_LIMITS)?;
        let layout = launch::Layout {
            rootfs,
            scratch: &scratch,
        };
        let args = launch::warm_args(name, &layout, &self.busybox);
        let mut child = spawn_sandbox(&self.tools, cgroup, dir, launch::LAUNCH_WARM, args).await?;
        let info = child.stdout.take();
        let init = match info {
            Some(info) => tokio::time::timeout(START_TIMEOUT, read_info(info))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let ready = match init {
            Some(init) => tokio::time::timeout(START_TIMEOUT, stub_running(init))
                .await
                .unwrap_or(false),
            None => false,
        };
        match init {
            Some(init) if ready => Ok((child, init)),
            _ => {
                let _ = child.kill().await;
                Err(RuntimeError::host(
                    "start warm sandbox",
                    std::io::Error::other(format!(
                        "bubblewrap did not build it: {}",
                        std::fs::read_to_string(dir.join("stderr.log"))
                            .unwrap_or_default()
                            .trim()
                    )),
                ))
            }
        }
    }
}

/// Waits until the sandbox of init `init` runs the stub: bubblewrap reports the pid right
/// after it clones, before it builds the sandbox, and a warm sandbox is ready only once
/// everything is built and the stub `exec`ed (its pid 2, the init's child, shows the stub's
/// command line). `false` when the init went away first.
async fn stub_running(init: u32) -> bool {
    let stub = launch::STUB.as_bytes();
    loop {
        let Ok(children) = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        else {
            return false;
        };
        let running = children.split_whitespace().any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).next() == Some(stub))
        });
        if running {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Drop for Shared {
    // The runtime is going away (the node stops): each warm sandbox is killed and its host
    // state cleared now, synchronously and bounded; whatever stays busy is cleared at the
    // next open ([`clear_stale`]).
    fn drop(&mut self) {
        let ready: Vec<Warm> = std::mem::take(&mut *lock(&self.ready))
            .into_values()
            .flatten()
            .collect();
        self.gauge.set(0);
        for warm in &ready {
            for pid in warm.cgroup.pids() {
                signal(pid, rustix::process::Signal::KILL);
            }
            unmount_detached(&warm.dir.join("scratch"));
            if let Err(e) = std::fs::remove_dir_all(&warm.dir) {
                tracing::debug!(warm = warm.name, error = %e, "warm directory left for the next start");
            }
        }
        // Killed processes leave their cgroups within milliseconds.
        for _ in 0..50 {
            if ready.iter().all(|w| w.cgroup.remove_now().is_ok()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Keeps every named image at `warm` ready sandboxes, one start at a time, until the
/// runtime goes away.
async fn refill(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(pool) = shared.upgrade() else {
            return;
        };
        if pool.is_closed() {
            return;
        }
        let quiet_in = pool.quiet_in();
        let wanting = if quiet_in.is_zero() {
            pool.wanting()
        } else {
            None
        };
        let Some((digest, rootfs)) = wanting else {
            drop(pool);
            let pause = if quiet_in.is_zero() {
                LOOK_EVERY
            } else {
                quiet_in
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
            continue;
        };
        match pool.park(&rootfs).await {
            Ok(warm) if pool.is_closed() => warm.discard().await,
            Ok(warm) => {
                tracing::debug!(warm = %warm.name, %digest, "warm sandbox parked");
                lock(&pool.ready).entry(digest).or_default().push(warm);
                pool.gauge.inc();
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, retry_in = ?backoff, "cannot make a warm sandbox");
                drop(pool);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
