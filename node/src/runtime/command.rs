//! Host tools the runtimes drive with a script on stdin (`iptables-restore`, `ip -batch`):
//! one bounded way to run them, with the tool's own message on failure.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::RuntimeError;

/// `PATH` for host tools (the node's own may be anything).
pub const HOST_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `cmd` with `input` on its stdin and waits at most `timeout`; `what` names it in
/// errors. Stdout is discarded; a non-zero exit is an error carrying its stderr.
///
/// # Errors
/// [`RuntimeError::Host`]: the tool could not start, timed out or failed.
pub async fn run_with_input(
    mut cmd: Command,
    input: &str,
    what: &str,
    timeout: Duration,
) -> Result<(), RuntimeError> {
    let mut child = cmd
        .env("PATH", HOST_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RuntimeError::host(format!("run {what}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| RuntimeError::host(format!("write to {what}"), e))?;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            RuntimeError::host(
                what,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer in {} s", timeout.as_secs()),
                ),
            )
        })?
        .map_err(|e| RuntimeError::host(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::host(
            what,
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ))
    }
}
