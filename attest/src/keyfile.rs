//! Key files: an identity's secret key on disk, readable by its owner only.
//!
//! Format (TOML, so a human can see whose key it is without loading it):
//!
//! ```toml
//! # Agora identity key. Keep this file secret.
//! format = "agora-key-v1"
//! id = "agora1…"
//! secret_key = "<base64url of the 32-byte ed25519 seed>"
//! ```
//!
//! Files are created with mode 0600 (never replacing an existing file unless asked) and are
//! refused on load when group or others may read or write them, like OpenSSH does.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use agora_protocol::AgoraId;
use agora_protocol::attestation::decode_base64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::{Identity, SECRET_KEY_LEN};

const FORMAT: &str = "agora-key-v1";
/// Larger files are not key files; refuse before reading them into memory.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("key file {path} does not exist (create one with `agora id new --out {path}`)")]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// Group or others may access the file.
    #[error("key file {path} is accessible by others (mode {mode:04o}); run `chmod 600 {path}`")]
    Insecure {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Creating the file would replace an existing one.
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// The file is not a valid key file.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error.
    #[error("key file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileToml {
    format: String,
    id: AgoraId,
    secret_key: String,
}

/// Loads an identity from a key file, refusing files that others can access.
///
/// # Errors
/// [`KeyFileError`] naming the path and what is wrong.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
    let io_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            KeyFileError::NotFound {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source,
            }
        }
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Insecure {
            path: path.to_owned(),
            mode,
        });
    }
    let malformed = |reason: String| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(malformed("not a regular file".into()));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(malformed(format!(
            "{} bytes, a key file is at most {MAX_KEY_FILE_BYTES}",
            meta.len()
        )));
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    parse(&text).map_err(malformed)
}

fn parse(text: &str) -> Result<Identity, String> {
    // Error messages from toml quote the offending line; keep the secret out of them.
    let parsed: KeyFileToml =
        toml::from_str(text).map_err(|e| format!("not a key file: {}", e.message()))?;
    if parsed.format != FORMAT {
        return Err(format!(
            "format {:?} is not supported (expected {FORMAT:?})",
            parsed.format
        ));
    }
    let secret = Zeroizing::new(
        decode_base64(&parsed.secret_key, SECRET_KEY_LEN)
            .map_err(|_| "secret_key is not base64url".to_string())?,
    );
    let seed: Zeroizing<[u8; SECRET_KEY_LEN]> = Zeroizing::new(
        secret
            .as_slice()
            .try_into()
            .map_err(|_| format!("secret_key is not {SECRET_KEY_LEN} bytes"))?,
    );
    let identity = Identity::from_secret_bytes(&seed);
    if identity.agora_id() != parsed.id {
        return Err(format!(
            "id {} does not match the secret key (which is {})",
            parsed.id,
            identity.agora_id()
        ));
    }
    Ok(identity)
}

/// The key file's text for `identity`.
fn render(identity: &Identity) -> Zeroizing<String> {
    use base64::Engine as _;
    let secret = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(identity.secret_bytes().as_ref()),
    );
    Zeroizing::new(format!(
        "# Agora identity key. Keep this file secret.\nformat = \"{FORMAT}\"\nid = \"{}\"\nsecret_key = \"{}\"\n",
        identity.agora_id(),
        secret.as_str()
    ))
}

/// Writes `identity` to a new file with mode 0600.
///
/// The key is written to a temporary file in the same directory and linked into place, so
/// a crash never leaves a half-written key and an existing file is never replaced.
///
/// # Errors
/// [`KeyFileError::Exists`] when `path` exists, or an I/O error.
pub fn save(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    let io_err = |source: io::Error| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| KeyFileError::Malformed {
        path: path.to_owned(),
        reason: "not a file name".into(),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(render(identity).as_bytes())?;
        file.sync_all()?;
        // hard_link fails if the target exists: no race can make us clobber a key.
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            io_err(e)
        }
    })
}

/// Loads the identity at `path`, creating a fresh one there first if the file is missing.
///
/// # Errors
/// As [`load`] and [`save`].
pub fn load_or_create<R: rand_core::CryptoRng + ?Sized>(
    path: &Path,
    rng: &mut R,
) -> Result<(Identity, bool), KeyFileError> {
    match load(path) {
        Ok(id) => Ok((id, false)),
        Err(KeyFileError::NotFound { .. }) => {
            let id = Identity::generate(rng);
            save(path, &id)?;
            Ok((id, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn identity() -> Identity {
        Identity::generate(&mut ChaCha20Rng::seed_from_u64(1))
    }

    #[test]
    fn save_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = identity();
        save(&path, &id).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().agora_id(), id.agora_id());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save(&path, &identity()).unwrap();
        assert!(matches!(
            save(&path, &identity()),
            Err(KeyFileError::Exists { .. })
        ));
    }

    #[test]
    fn refuses_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        save(&path, &identity()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Insecure { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn missing_and_malformed_files_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.key");
        assert!(matches!(load(&path), Err(KeyFileError::NotFound { .. })));
        for text in [
            "garbage",
            "format = \"other\"\nid = \"agora1x\"\nsecret_key = \"\"\n",
            "format = \"agora-key-v1\"\nid = \"agora1qqqq\"\nsecret_key = \"AAAA\"\n",
        ] {
            let p = dir.path().join("bad.key");
            let _ = fs::remove_file(&p);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(
                matches!(load(&p), Err(KeyFileError::Malformed { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn mismatched_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let a = identity();
        let b = Identity::from_secret_bytes(&[9; 32]);
        let text = render(&a).replace(&a.agora_id().to_string(), &b.agora_id().to_string());
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn load_or_create_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (a, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(!created);
        assert_eq!(a.agora_id(), b.agora_id());
    }
}
