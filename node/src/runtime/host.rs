//! What this host can give a sandbox: cgroup controllers (v1 or v2) and bubblewrap.
//!
//! A sandbox's limits and accounting (CPU, memory, pids) need cgroup controllers. Hosts
//! differ: pure v2 (`cgroup2` with controllers in `cgroup.controllers`), v1 (one `cgroup`
//! mount per controller), or hybrid (v1 controllers plus an empty v2 mount, as on the
//! machines this project runs on). [`Cgroups::detect`] reads `/proc/self/mountinfo` and
//! prefers v2 when it really has the controllers. A host with neither cannot enforce
//! limits, so it must not advertise the `sandbox` runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Controllers a sandbox needs for limits and metering.
pub const REQUIRED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The cgroup hierarchy the sandbox will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// The unified hierarchy, mounted at `mount`, with these controllers available.
    V2 {
        /// Mount point, e.g. `/sys/fs/cgroup`.
        mount: PathBuf,
        /// Controllers listed in `cgroup.controllers`.
        controllers: BTreeSet<String>,
    },
    /// Legacy per-controller hierarchies: controller name → mount point.
    V1 {
        /// Each controller's mount point (e.g. `memory` → `/sys/fs/cgroup/memory`).
        mounts: std::collections::BTreeMap<String, PathBuf>,
    },
}

/// Why the sandbox runtime is unavailable here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxUnavailable {
    /// No usable cgroup hierarchy has the controllers needed.
    #[error("no cgroup hierarchy offers the {missing:?} controller(s) (needed: cpu, memory, pids)")]
    Cgroups {
        /// Controllers that are missing.
        missing: Vec<String>,
    },
    /// bubblewrap is not installed.
    #[error("bubblewrap (bwrap) is not installed; apt-get install bubblewrap")]
    NoBubblewrap,
}

impl Cgroups {
    /// Detects the hierarchy from this process's mount table.
    pub fn detect() -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_mountinfo(&mountinfo, |mount| {
            std::fs::read_to_string(mount.join("cgroup.controllers")).ok()
        })
    }

    /// Parses a mountinfo text; `read_controllers` reads a v2 mount's `cgroup.controllers`.
    /// v2 wins when it has every required controller; otherwise v1 if it has them; else the
    /// richer of the two (so the caller can say what is missing).
    pub fn from_mountinfo(
        mountinfo: &str,
        read_controllers: impl Fn(&Path) -> Option<String>,
    ) -> Option<Self> {
        let mut v1 = std::collections::BTreeMap::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            // Fields: id parent major:minor root mount-point options [optional…] - fstype source super-options
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = pre.split_whitespace().nth(4);
            let mut post = post.split_whitespace();
            let (fstype, super_opts) = (post.next(), post.nth(1));
            let Some(mount_point) = mount_point.map(PathBuf::from) else {
                continue;
            };
            match fstype {
                Some("cgroup2") if v2.is_none() => {
                    let controllers: BTreeSet<String> = read_controllers(&mount_point)
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    v2 = Some(Self::V2 {
                        mount: mount_point,
                        controllers,
                    });
                }
                Some("cgroup") => {
                    for opt in super_opts.unwrap_or_default().split(',') {
                        if !matches!(opt, "rw" | "ro") && !opt.contains('=') {
                            v1.entry(opt.to_owned())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        let v1 = (!v1.is_empty()).then_some(Self::V1 { mounts: v1 });
        match (v2, v1) {
            (Some(v2), _) if v2.missing().is_empty() => Some(v2),
            (_, Some(v1)) if v1.missing().is_empty() => Some(v1),
            (Some(v2), Some(v1)) => Some(if v2.missing().len() <= v1.missing().len() {
                v2
            } else {
                v1
            }),
            (v2, v1) => v2.or(v1),
        }
    }

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self, Self::V2 { .. })
    }

    /// Required controllers this hierarchy lacks.
    pub fn missing(&self) -> Vec<String> {
        REQUIRED_CONTROLLERS
            .iter()
            .filter(|c| match self {
                Self::V2 { controllers, .. } => !controllers.contains(**c),
                Self::V1 { mounts } => !mounts.contains_key(**c),
            })
            .map(|c| (*c).to_owned())
            .collect()
    }
}

/// Finds `bwrap` on `PATH`.
pub fn find_bubblewrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// Checks that the sandbox runtime can run here: bubblewrap and cgroup controllers.
///
/// # Errors
/// [`SandboxUnavailable`] saying what is missing.
pub fn sandbox_support() -> Result<(PathBuf, Cgroups), SandboxUnavailable> {
    let bwrap = find_bubblewrap().ok_or(SandboxUnavailable::NoBubblewrap)?;
    let cgroups = Cgroups::detect().ok_or_else(|| SandboxUnavailable::Cgroups {
        missing: REQUIRED_CONTROLLERS
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
    })?;
    let missing = cgroups.missing();
    if !missing.is_empty() {
        return Err(SandboxUnavailable::Cgroups { missing });
    }
    Ok((bwrap, cgroups))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_hosts_use_v1_when_v2_is_empty() {
        let c = Cgroups::from_mountinfo(HYBRID, |_| Some(String::new())).unwrap();
        assert!(!c.is_v2());
        assert!(c.missing().is_empty());
        let Cgroups::V1 { mounts } = c else {
            unreachable!()
        };
        assert_eq!(mounts["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!mounts.contains_key("name=systemd"));
    }

    #[test]
    fn pure_v2_hosts_use_v2_and_say_what_is_missing() {
        let full = Cgroups::from_mountinfo(PURE_V2, |_| Some("cpuset cpu io memory pids\n".into()))
            .unwrap();
        assert!(full.is_v2());
        assert!(full.missing().is_empty());
        let partial = Cgroups::from_mountinfo(PURE_V2, |_| Some("cpu io\n".into())).unwrap();
        assert_eq!(partial.missing(), vec!["memory", "pids"]);
    }

    #[test]
    fn no_cgroups_at_all() {
        assert_eq!(
            Cgroups::from_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n", |_| None),
            None
        );
    }

    #[test]
    fn this_host_is_probed_without_error() {
        // Whatever the host has, probing must answer (and name what is missing).
        match sandbox_support() {
            Ok((bwrap, cgroups)) => {
                assert!(bwrap.ends_with("bwrap"));
                assert!(cgroups.missing().is_empty());
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
