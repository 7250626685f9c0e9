//! Cross-crate integration tests for Agora: real processes, real stores, real networks.
//!
//! The test targets live in `tests/tests/`. This library holds what they share: finding
//! (and if needed building) the `agora` binary, and running it with a private home.

pub mod busybox;
pub mod cluster;
pub mod committee;
pub mod docker_engine;
pub mod docker_net;
pub mod leftovers;
pub mod netns;
pub mod node;
pub mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path to the `agora` binary, built on first use (or `$AGORA_BIN` when set).
///
/// The binary is looked up beside the test executable (`target/<profile>/agora`); when it is
/// missing (e.g. `cargo test -p agora-tests` alone), `cargo build -p agora-node --bin agora`
/// is run once with the same cargo, profile and target dir.
///
/// # Panics
/// When the binary cannot be found or built: a test cannot proceed without it.
#[allow(clippy::panic, clippy::expect_used)]
pub fn agora_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // An explicit binary (e.g. a release build for benchmarks) wins.
        if let Some(bin) = std::env::var_os("AGORA_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        let bin = profile_dir.join("agora");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "agora-node", "--bin", "agora"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target_dir);
        }
        // Always ask cargo: it is a no-op when the binary is fresh, and a stale binary
        // would test old code.
        let status = cmd
            .status()
            .expect("running cargo build for the agora binary");
        assert!(status.success(), "cargo build of the agora binary failed");
        assert!(bin.exists(), "agora binary missing at {}", bin.display());
        bin
    })
}

/// An `agora` command with `HOME` and `AGORA_KEY` pointed into `home`, so tests never touch
/// the user's real identity.
pub fn agora(home: &Path) -> Command {
    let mut cmd = Command::new(agora_bin());
    cmd.env("HOME", home)
        .env("AGORA_KEY", home.join("identity.key"))
        .env_remove("RUST_LOG");
    cmd
}

/// Stdout of a finished command as a trimmed string.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stderr of a finished command as a trimmed string.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Whether a Docker engine answers (`docker info` succeeds within 20 seconds).
pub fn docker_available() -> bool {
    let Ok(mut child) = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Decides whether a Docker-dependent test runs.
///
/// Returns `true` when an engine answers. Without one, the test may skip (returns `false`,
/// with a note on stderr) only when `AGORA_REQUIRE_DOCKER` is unset; `./scripts/test` sets it
/// under CI, so CI can never go green with Docker tests skipped.
///
/// # Panics
/// When `AGORA_REQUIRE_DOCKER` is set and no engine answers.
#[allow(clippy::panic)]
pub fn require_docker(test: &str) -> bool {
    if docker_available() {
        return true;
    }
    if std::env::var_os("AGORA_REQUIRE_DOCKER").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{test}: AGORA_REQUIRE_DOCKER is set but no Docker engine answers `docker info`");
    }
    eprintln!("{test}: skipped, no Docker engine (set AGORA_REQUIRE_DOCKER=1 to fail instead)");
    false
}
