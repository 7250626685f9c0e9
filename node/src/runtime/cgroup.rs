//! One workload's cgroup: limits, accounting and killing, on cgroup v1 or v2.
//!
//! A workload gets `<parent>/<id>` in every hierarchy it needs: one directory under the
//! unified mount on v2, one per controller (cpu, cpuacct, memory, pids) on v1. Limits are
//! written before any process joins, and the sandbox joins its first process before that
//! process can fork (see `sandbox`), so nothing the workload starts escapes accounting.
//!
//! | what          | v2                              | v1                                         |
//! |---------------|---------------------------------|--------------------------------------------|
//! | memory limit  | `memory.max`, `memory.swap.max=0` | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` |
//! | CPU quota     | `cpu.max`                       | `cpu.cfs_quota_us` / `cpu.cfs_period_us`   |
//! | pids          | `pids.max`                      | `pids.max`                                 |
//! | CPU used      | `cpu.stat` `usage_usec`         | `cpuacct.usage`                            |
//! | memory peak   | `memory.peak`                   | `memory.max_usage_in_bytes`                |
//! | OOM kills     | `memory.events` `oom_kill`      | `memory.oom_control` `oom_kill`            |
//! | kill all      | `cgroup.kill`                   | SIGKILL every pid until none is left       |

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::Cgroups;
use super::{RuntimeError, Stats};

/// CPU bandwidth period, microseconds (the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// Limits written into a workload's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory (and memory + swap: swap is off), bytes.
    pub memory_bytes: u64,
    /// CPU in thousandths of a core.
    pub vcpu_milli: u32,
    /// Most processes and threads.
    pub pids: u32,
}

/// A workload's cgroup directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadCgroup {
    v2: bool,
    /// Controller → directory (v1); the single key `""` on v2.
    dirs: Vec<(&'static str, PathBuf)>,
}

impl WorkloadCgroup {
    /// The cgroup of workload `name` under `parent` (e.g. `agora`), created or not.
    pub fn locate(cgroups: &Cgroups, parent: &str, name: &str) -> Self {
        match cgroups {
            Cgroups::V2 { mount, .. } => Self {
                v2: true,
                dirs: vec![("", mount.join(parent).join(name))],
            },
            Cgroups::V1 { mounts } => Self {
                v2: false,
                dirs: ["cpu", "cpuacct", "memory", "pids"]
                    .into_iter()
                    .filter_map(|c| mounts.get(c).map(|m| (c, m.join(parent).join(name))))
                    .collect(),
            },
        }
    }

    /// Creates the directories and writes `limits`. Fails if any limit cannot be set:
    /// a workload never runs without its limits.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] naming the file that failed.
    pub fn create(&self, limits: Limits) -> Result<(), RuntimeError> {
        if self.v2 {
            self.enable_v2_controllers()?;
        }
        for (_, dir) in &self.dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::host(format!("create cgroup {}", dir.display()), e))?;
        }
        let quota = u64::from(limits.vcpu_milli) * CPU_PERIOD_US / 1000;
        let mem = limits.memory_bytes.to_string();
        if self.v2 {
            self.write("", "memory.max", &mem)?;
            // Swap off, so the memory limit is the memory limit. Absent without swap support.
            self.write_if_present("", "memory.swap.max", "0")?;
            self.write("", "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
            self.write("", "pids.max", &limits.pids.to_string())?;
        } else {
            self.write("memory", "memory.limit_in_bytes", &mem)?;
            // memsw exists only with swap accounting; set after the plain limit (must be ≥ it).
            self.write_if_present("memory", "memory.memsw.limit_in_bytes", &mem)?;
            self.write_if_present("memory", "memory.swappiness", "0")?;
            self.write("cpu", "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            self.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
            self.write("pids", "pids.max", &limits.pids.to_string())?;
        }
        Ok(())
    }

    /// On v2, controllers must be enabled in every ancestor's `cgroup.subtree_control`.
    fn enable_v2_controllers(&self) -> Result<(), RuntimeError> {
        let Some((_, dir)) = self.dirs.first() else {
            return Ok(());
        };
        let Some(parent) = dir.parent() else {
            return Ok(());
        };
        std::fs::create_dir_all(parent)
            .map_err(|e| RuntimeError::host(format!("create cgroup {}", parent.display()), e))?;
        // The mount root and our parent both need the controllers for the child's files.
        for ancestor in [parent.parent(), Some(parent)].into_iter().flatten() {
            let control = ancestor.join("cgroup.subtree_control");
            if control.exists() {
                write_file(&control, "+cpu +memory +pids")?;
            }
        }
        Ok(())
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| self.v2 || *c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), RuntimeError> {
        let dir = self
            .dir(controller)
            .ok_or_else(|| RuntimeError::Unsupported(format!("no {controller} cgroup")))?;
        write_file(&dir.join(file), value)
    }

    fn write_if_present(
        &self,
        controller: &str,
        file: &str,
        value: &str,
    ) -> Result<(), RuntimeError> {
        match self.dir(controller).map(|d| d.join(file)) {
            Some(path) if path.exists() => write_file(&path, value),
            _ => Ok(()),
        }
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller)?.join(file)).ok()
    }

    /// Moves process `pid` (and its future children) into this cgroup.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] when the kernel refuses.
    pub fn join(&self, pid: u32) -> Result<(), RuntimeError> {
        let pid = pid.to_string();
        for (_, dir) in &self.dirs {
            write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Whether the cgroup exists (a workload a previous node process created).
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|(_, d)| d.is_dir())
    }

    /// Processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        let controller = if self.v2 { "" } else { "pids" };
        self.read(controller, "cgroup.procs")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Usage so far (network counters are the caller's: they live in the netns).
    pub fn stats(&self) -> Stats {
        let num = |c: &str, f: &str| {
            self.read(c, f)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if self.v2 {
            let usage_usec = keyed(&self.read("", "cpu.stat").unwrap_or_default(), "usage_usec");
            let current = num("", "memory.current");
            Stats {
                cpu_nanos: usage_usec.saturating_mul(1000),
                memory_bytes: current,
                memory_peak_bytes: self
                    .read("", "memory.peak")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(current),
                pids: num("", "pids.current"),
                ..Stats::default()
            }
        } else {
            Stats {
                cpu_nanos: num("cpuacct", "cpuacct.usage"),
                memory_bytes: num("memory", "memory.usage_in_bytes"),
                memory_peak_bytes: num("memory", "memory.max_usage_in_bytes"),
                pids: num("pids", "pids.current"),
                ..Stats::default()
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process here.
    pub fn oom_kills(&self) -> u64 {
        if self.v2 {
            keyed(
                &self.read("", "memory.events").unwrap_or_default(),
                "oom_kill",
            )
        } else {
            keyed(
                &self
                    .read("memory", "memory.oom_control")
                    .unwrap_or_default(),
                "oom_kill",
            )
        }
    }

    /// Kills every process in the cgroup and waits (bounded) until none is left.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] if processes survive `timeout`.
    pub async fn kill_all(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.v2 && self.dir("").is_some_and(|d| d.join("cgroup.kill").exists()) {
            self.write("", "cgroup.kill", "1")?;
        }
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            // The pids limit bounds how many can appear; killed processes cannot fork, so
            // repeating converges even against a fork bomb.
            for pid in pids {
                signal(pid, rustix::process::Signal::KILL);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::host(
                    "kill workload processes",
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "processes survive SIGKILL"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes the directories (the cgroup must be empty). Idempotent.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] when a directory stays busy.
    pub async fn remove(&self) -> Result<(), RuntimeError> {
        for (_, dir) in &self.dirs {
            // The kernel frees a cgroup shortly after its last process is reaped.
            let mut attempts = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if attempts < 100 => {
                        attempts += 1;
                        tracing::trace!(dir = %dir.display(), error = %e, "cgroup busy, retrying");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        return Err(RuntimeError::host(
                            format!("remove cgroup {}", dir.display()),
                            e,
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the directories once, without waiting (the cgroup must be empty).
    ///
    /// # Errors
    /// The first directory that is still busy.
    pub fn remove_now(&self) -> std::io::Result<()> {
        for (_, dir) in &self.dirs {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Names of workload cgroups under `parent` (for reconciliation after a restart).
    pub fn list(cgroups: &Cgroups, parent: &str) -> Vec<String> {
        let root = match cgroups {
            Cgroups::V2 { mount, .. } => Some(mount.join(parent)),
            Cgroups::V1 { mounts } => mounts.get("pids").map(|m| m.join(parent)),
        };
        let Some(Ok(entries)) = root.map(std::fs::read_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value)
        .map_err(|e| RuntimeError::host(format!("write {value:?} to {}", path.display()), e))
}

/// The value of `key` in a `key value` per line file (`cpu.stat`, `memory.events`).
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(keyed(stat, "usage_usec"), 1234);
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            3
        );
        assert_eq!(keyed("", "oom_kill"), 0);
    }

    #[test]
    fn v1_limits_and_stats_use_each_controller() {
        let root = tempfile::tempdir().unwrap();
        let mounts: BTreeMap<String, PathBuf> = ["cpu", "cpuacct", "memory", "pids"]
            .iter()
            .map(|c| ((*c).to_owned(), root.path().join(c)))
            .collect();
        let cg = WorkloadCgroup::locate(&Cgroups::V1 { mounts }, "agora", "w-1");
        cg.create(Limits {
            memory_bytes: 64 << 20,
            vcpu_milli: 500,
            pids: 32,
        })
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("memory/agora/w-1/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu/agora/w-1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids/agora/w-1/pids.max"), "32");
        std::fs::write(root.path().join("cpuacct/agora/w-1/cpuacct.usage"), "42\n").unwrap();
        std::fs::write(
            root.path().join("memory/agora/w-1/memory.oom_control"),
            "oom_kill_disable 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.stats().cpu_nanos, 42);
        assert_eq!(cg.oom_kills(), 1);
        assert_eq!(
            WorkloadCgroup::list(
                &Cgroups::V1 {
                    mounts: [("pids".to_owned(), root.path().join("pids"))].into()
                },
                "agora"
            ),
            vec!["w-1"]
        );
    }

    #[test]
    fn v2_limits_go_in_one_directory() {
        let root = tempfile::tempdir().unwrap();
        let cg = WorkloadCgroup::locate(
            &Cgroups::V2 {
                mount: root.path().to_owned(),
                controllers: ["cpu", "memory", "pids"].map(str::to_owned).into(),
            },
            "agora",
            "w-2",
        );
        cg.create(Limits {
            memory_bytes: 1 << 20,
            vcpu_milli: 1500,
            pids: 8,
        })
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("agora/w-2/memory.max"), "1048576");
        assert_eq!(read("agora/w-2/cpu.max"), "150000 100000");
        assert_eq!(read("agora/w-2/pids.max"), "8");
        std::fs::write(root.path().join("agora/w-2/cpu.stat"), "usage_usec 7\n").unwrap();
        assert_eq!(cg.stats().cpu_nanos, 7000);
    }
}
