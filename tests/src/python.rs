//! Python tools for tests that check Agora against independent implementations: the
//! official MCP SDK, `openapi-spec-validator` and `schemathesis` (`tests/python/`).
//!
//! They live in a venv under the cargo target dir (`<target>/python-venv`), made by
//! `scripts/lib.sh` (`agora_ensure_python_deps`) or, when a test runs alone, by
//! [`python_venv`] itself. Without them a test may skip only outside CI: under CI (`CI` set)
//! a test that cannot get them fails, so CI never goes green with them skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory of the Python test scripts and their `requirements.txt`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Whether this is a CI run (`CI` set to anything but empty, `0` or `false`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The venv's directory: `$AGORA_PYTHON_VENV`, else `<cargo target dir>/python-venv`.
pub fn venv_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("AGORA_PYTHON_VENV") {
        return Some(PathBuf::from(dir));
    }
    // target/<profile>/deps/<test> -> target
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    Some(target.join("python-venv"))
}

/// The venv with the test requirements installed (its `bin/` holds `python` and
/// `schemathesis`), installing them on first use.
///
/// Returns `None`, with a note on stderr, when they cannot be had and this is not CI.
///
/// # Panics
/// Under CI, when they cannot be had.
#[allow(clippy::panic)]
pub fn python_venv(test: &str) -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(ensure_venv) {
        Ok(dir) => Some(dir.clone()),
        Err(why) if under_ci() => {
            panic!("{test}: CI is set but the Python test tools are missing: {why}")
        }
        Err(why) => {
            eprintln!(
                "{test}: skipped, the Python test tools are missing ({why}); run \
                 ./scripts/test, or set CI=1 to fail instead"
            );
            None
        }
    }
}

fn ensure_venv() -> Result<PathBuf, String> {
    let dir = venv_dir().ok_or("no place for the venv")?;
    let requirements = scripts_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("reading {}: {e}", requirements.display()))?;
    let stamp = dir.join(".agora-requirements");
    let python = dir.join("bin").join("python");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(dir);
    }
    eprintln!("installing the Python test tools into {}", dir.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&dir))
        .map_err(|e| format!("python3 -m venv (is python3-venv installed?): {e}"))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))
    .map_err(|e| format!("pip install -r {}: {e}", requirements.display()))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    Ok(dir)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: String = err
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!("{}: {tail}", out.status))
}
