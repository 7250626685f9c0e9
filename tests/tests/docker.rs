//! The Docker engine that the runtime and multi-node tests rely on: present, and able to run
//! an image built locally (no registry) from Debian's busybox-static.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use agora_tests::require_docker;

#[test]
fn engine_runs_a_locally_built_busybox_image() {
    if !require_docker("engine_runs_a_locally_built_busybox_image") {
        return;
    }
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is missing (./scripts/test installs it)"
    );
    // A one-file rootfs: FROM scratch with the static busybox, built from a local context.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .unwrap();
    let tag = "agora-test/busybox:latest";
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", tag, "echo", "agora"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "agora");
}
