//! Where an agent keeps its signup record: `KEYFILE.signup` beside its key, one base64url
//! line, written atomically (a temporary file, then a rename), so a crash never leaves half
//! a record. The CLI and `agora mcp --key` read and write it the same way.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The signup record file of the key at `key`: `<key>.signup`.
pub fn path_for(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".signup");
    PathBuf::from(p)
}

/// Writes `record` (base64url) to `path` atomically.
///
/// # Errors
/// The I/O error; the temporary file is removed.
pub fn save(path: &Path, record: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(record.trim().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The record at `path`, if there is one.
///
/// # Errors
/// An I/O error other than the file missing.
pub fn load(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_is_saved_beside_its_key_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("agent.key");
        let path = path_for(&key);
        assert_eq!(path, dir.path().join("agent.key.signup"));
        assert_eq!(load(&path).unwrap(), None);
        save(&path, " AQID \n").unwrap();
        assert_eq!(load(&path).unwrap().as_deref(), Some("AQID\n"));
        save(&path, "BAUG").unwrap();
        assert_eq!(load(&path).unwrap().as_deref(), Some("BAUG\n"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
