//! What the demo's sandbox providers leave on the host once their nodes have stopped.
//!
//! Workloads outlive their node by design (a restarted node adopts them), and an ended
//! workload keeps its scratch tmpfs and cgroup for the log retention. A demo in a
//! temporary directory is gone for good when it ends, so it releases what its own
//! providers left: every mount under its directory and the cgroups named after its
//! provider nodes (unique per node id, so nothing else on the host is touched).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a cgroup may take to empty after its processes were killed.
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(2);

/// Unmounts every mount under `work` (deepest first), then ends whatever still runs in
/// the cgroups `parents` (the demo providers' cgroup parents) and removes them.
pub(super) fn release(work: &Path, parents: &[String]) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for point in mounts_under(&mounts, work) {
        if let Err(e) = rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH) {
            tracing::warn!(mount = %point.display(), error = %e, "cannot unmount a demo mount");
        }
    }
    // cgroup v2 has one hierarchy at the root; v1 has one per controller beneath it.
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_owned()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    for parent in parents {
        for hierarchy in &hierarchies {
            remove_cgroup(&hierarchy.join(parent));
        }
    }
}

/// The mount points in `mounts` (the format of `/proc/self/mounts`) at or under `dir`,
/// deepest first.
fn mounts_under(mounts: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Undoes `/proc/self/mounts`' octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(decoded) => {
                out.push(decoded);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Kills what runs in cgroup `dir` and its children, then removes them (best effort).
fn remove_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&child.path());
            }
        }
    }
    let procs = || std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs().split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status();
    }
    let deadline = std::time::Instant::now() + CGROUP_EMPTY_WAIT;
    while !procs().trim().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a demo cgroup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_the_demo_dir_come_deepest_first_and_unescaped() {
        let mounts = "\
tmpfs /tmp tmpfs rw 0 0
tmpfs /tmp/agora-demo-1/p/data/w1/scratch tmpfs rw 0 0
proc /tmp/agora-demo-1/p/data/w1/scratch/deeper proc rw 0 0
tmpfs /tmp/agora-demo-1\\040x/scratch tmpfs rw 0 0
tmpfs /tmp/agora-demo-10/scratch tmpfs rw 0 0
";
        assert_eq!(
            mounts_under(mounts, Path::new("/tmp/agora-demo-1")),
            [
                PathBuf::from("/tmp/agora-demo-1/p/data/w1/scratch/deeper"),
                PathBuf::from("/tmp/agora-demo-1/p/data/w1/scratch"),
            ]
        );
        assert_eq!(
            mounts_under(mounts, Path::new("/tmp/agora-demo-1 x")),
            [PathBuf::from("/tmp/agora-demo-1 x/scratch")]
        );
    }

    #[test]
    fn unescape_leaves_plain_text_and_bad_escapes_alone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\09"), "/a\\09");
        assert_eq!(unescape("/a\\"), "/a\\");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
