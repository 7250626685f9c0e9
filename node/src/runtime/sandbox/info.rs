//! Learning a new sandbox's pid the moment bubblewrap knows it.
//!
//! Bubblewrap writes `{"child-pid": N, …}` on its `--info-fd` once the sandbox's namespaces
//! exist, then closes that descriptor. The launcher shell opens it on a FIFO in the
//! workload's state directory whose read end the node already holds, so the node wakes on
//! that write instead of polling `status.json` (a hundred launches at once polling every
//! millisecond cost more CPU than the launches themselves on a small host).
//!
//! The read end is opened read-write: a FIFO read end without any writer reads end-of-file
//! at once, before the launcher has even opened its end. So the end of the announcement is
//! the end of its JSON object, not end-of-file.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;

use crate::runtime::RuntimeError;

/// File name of the FIFO in the workload's state directory (removed once read).
pub const FIFO: &str = "info.fifo";

/// The most bubblewrap's announcement may take (it is well under 200 bytes).
const MAX_INFO_BYTES: usize = 4096;

/// The read end of a new sandbox's info FIFO.
#[derive(Debug)]
pub struct InfoFifo {
    path: PathBuf,
    receiver: pipe::Receiver,
}

impl InfoFifo {
    /// Creates the FIFO in `dir` (replacing a stale one) and opens its read end.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] when the FIFO cannot be made or opened.
    pub fn create(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(FIFO);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::host("remove stale info FIFO", e)),
        }
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .map_err(|e| RuntimeError::host("create info FIFO", e.into()))?;
        let receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&path)
            .map_err(|e| RuntimeError::host("open info FIFO", e))?;
        Ok(Self { path, receiver })
    }

    /// The FIFO's path (the launcher opens it for writing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for bubblewrap's announcement and returns the sandbox's pid. Never returns if
    /// bubblewrap fails before announcing: the caller races this with the launcher's exit
    /// and its own deadline.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] on a read error, an announcement over its size bound or one
    /// without a pid.
    pub async fn child_pid(&mut self) -> Result<u32, RuntimeError> {
        let mut text = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        loop {
            let n = self
                .receiver
                .read(&mut buf)
                .await
                .map_err(|e| RuntimeError::host("read info FIFO", e))?;
            text.extend_from_slice(buf.get(..n).unwrap_or_default());
            if text.len() > MAX_INFO_BYTES {
                return Err(bad_info("bubblewrap's announcement is too long"));
            }
            if let Some(pid) = parse(&text)? {
                return Ok(pid);
            }
        }
    }
}

impl Drop for InfoFifo {
    fn drop(&mut self) {
        // Best effort: a FIFO left behind is replaced by the next launch and removed with
        // the state directory.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid in a complete announcement; `None` while the JSON object is still incomplete.
fn parse(text: &[u8]) -> Result<Option<u32>, RuntimeError> {
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) if e.is_eof() => return Ok(None),
        Err(e) => return Err(bad_info(&format!("bubblewrap's announcement: {e}"))),
    };
    value
        .get("child-pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|pid| u32::try_from(pid).ok())
        .map(Some)
        .ok_or_else(|| bad_info("bubblewrap's announcement has no child-pid"))
}

fn bad_info(detail: &str) -> RuntimeError {
    RuntimeError::host(
        "start sandbox",
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail.to_owned()),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[test]
    fn an_announcement_is_complete_only_with_its_closing_brace() {
        let full = b"{\n    \"child-pid\": 20000,\n    \"mnt-namespace\": 4026532176\n}\n";
        assert_eq!(parse(full).unwrap(), Some(20000));
        assert_eq!(parse(&full[..20]).unwrap(), None);
        assert_eq!(parse(b"").unwrap(), None);
        assert!(parse(b"{\"mnt-namespace\": 1}").is_err());
        assert!(parse(b"not json").is_err());
    }

    #[tokio::test]
    async fn the_pid_arrives_in_pieces_through_the_fifo_and_the_fifo_goes_with_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut info = InfoFifo::create(dir.path()).unwrap();
        let path = info.path().to_owned();
        let writer = tokio::spawn(async move {
            let mut w = pipe::OpenOptions::new().open_sender(&path).unwrap();
            w.write_all(b"{\n    \"child-pid\"").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            w.write_all(b": 4242\n}\n").await.unwrap();
        });
        assert_eq!(info.child_pid().await.unwrap(), 4242);
        writer.await.unwrap();
        let path = info.path().to_owned();
        drop(info);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_endless_announcement_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut info = InfoFifo::create(dir.path()).unwrap();
        let mut w = pipe::OpenOptions::new().open_sender(info.path()).unwrap();
        w.write_all(b"{\"pad\": \"").await.unwrap();
        let filler = vec![b'x'; MAX_INFO_BYTES];
        let writer = tokio::spawn(async move {
            let _ = w.write_all(&filler).await;
        });
        assert!(info.child_pid().await.is_err());
        writer.abort();
    }
}
