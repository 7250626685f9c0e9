//! Busybox root filesystems for workload images, built without a registry: Debian's
//! busybox-static with its applets linked in `/bin`, as a tarball (for the sandbox's
//! `ImageSource::Tarball` or `docker import`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use agora_protocol::Digest;

/// A built rootfs tarball.
#[derive(Debug, Clone)]
pub struct Tarball {
    /// Where it is.
    pub path: PathBuf,
    /// Its SHA-256.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Builds a busybox rootfs under `dir` with every applet but `without` linked, `/tmp`
/// (mode 1777) and `/etc`, and (when given) `marker` in `/etc/agora-test` so that the digest is unique.
///
/// # Panics
/// When busybox-static is missing or `tar` fails.
pub fn tarball(dir: &Path, marker: Option<&str>, without: &[&str]) -> Tarball {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is missing (apt-get install busybox-static)"
    );
    let tag = rand::random::<u32>();
    let root = dir.join(format!("rootfs-{tag}"));
    for sub in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    // World-writable and sticky, as in any distribution (a runtime that mounts a tmpfs there
    // may take the directory's mode).
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty()
            || applet == "busybox"
            || applet.contains('/')
            || without.contains(&applet)
        {
            continue;
        }
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    if let Some(marker) = marker {
        std::fs::write(root.join("etc/agora-test"), marker).unwrap();
    }
    let path = dir.join(format!("busybox-{tag}.tar"));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&path)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar of the busybox rootfs failed");
    let bytes = std::fs::read(&path).unwrap();
    Tarball {
        digest: Digest::of(&bytes),
        size: bytes.len() as u64,
        path,
    }
}
