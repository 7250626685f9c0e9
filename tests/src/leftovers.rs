//! Clean-up of what sandbox providers leave on the host when a test ends or fails.

use std::path::{Path, PathBuf};

/// What the providers' sandboxes leave once their nodes are killed (workloads outlive a
/// node by design, and ended ones keep their scratch mount and cgroup for the retention):
/// unmounted and removed on drop. Declare it before the nodes, so it drops after them.
pub struct Leftovers {
    root: PathBuf,
    cgroup_parents: Vec<String>,
}

impl Leftovers {
    /// Nothing to clean yet under `root` (the test's temporary directory).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            cgroup_parents: Vec::new(),
        }
    }

    /// Also removes the cgroups under `parent` (a provider's cgroup parent) on drop.
    pub fn add(&mut self, parent: String) {
        self.cgroup_parents.push(parent);
    }
}

fn remove_cgroup(dir: &Path) {
    // A workload a failed test left running.
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
    {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&c.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let root = self.root.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = std::process::Command::new("umount")
                .args(["-l", p])
                .status();
        }
        let controllers: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for parent in &self.cgroup_parents {
            remove_cgroup(&Path::new("/sys/fs/cgroup").join(parent));
            for c in &controllers {
                remove_cgroup(&c.join(parent));
            }
        }
    }
}
