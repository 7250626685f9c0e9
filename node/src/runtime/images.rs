//! The sandbox's root filesystems, one directory per image digest.
//!
//! Every sandbox image is a tarball of a root filesystem, named by the SHA-256 of the tarball:
//! the provider's own images (offered by name), uploads from agents (started by digest), and
//! a built-in `busybox` image made from Debian's busybox-static when the host has it. The
//! tarball is unpacked once into `<root>/<digest>/rootfs`, which sandboxes mount read-only.
//!
//! Unpacking trusts nothing: the digest and size are checked before a byte is unpacked, only
//! regular files, directories, symlinks and hard links are kept (no device nodes, no FIFOs,
//! no sparse files), paths cannot leave the root (the `tar` crate refuses `..` and writes
//! through symlinks), the total unpacked size is bounded, and an image appears only after it
//! unpacked completely (an atomic rename).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use agora_protocol::Digest;
use agora_protocol::offer::ImageRef;
use sha2::{Digest as _, Sha256};

use super::RuntimeError;

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Unpacked images may not exceed this many times their tarball's size (plus 1 MiB): tar
/// headers can claim more than they hold only with sparse entries, which are refused anyway.
const MAX_EXPANSION: u64 = 2;

/// Images on disk.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store under `root` (created if missing).
    ///
    /// # Errors
    /// [`RuntimeError::Host`] if `root` cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| RuntimeError::host(format!("create {}", root.display()), e))?;
        Ok(Self { root })
    }

    fn dir(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.to_string())
    }

    /// The unpacked root filesystem of `digest`, if present.
    pub fn rootfs(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.dir(digest).join("rootfs");
        path.is_dir().then_some(path)
    }

    /// Images offered by name (uploads have none), sorted by name.
    pub fn named(&self) -> Vec<ImageRef> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut images: Vec<ImageRef> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let digest: Digest = e.file_name().to_str()?.parse().ok()?;
                let name = std::fs::read_to_string(e.path().join("name")).ok()?;
                e.path().join("rootfs").is_dir().then(|| ImageRef {
                    name: name.trim().to_owned(),
                    digest,
                })
            })
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name).then(a.digest.cmp(&b.digest)));
        images
    }

    /// The digest of the image offered as `name`, if any.
    pub fn by_name(&self, name: &str) -> Option<Digest> {
        self.named()
            .into_iter()
            .find(|i| i.name == name)
            .map(|i| i.digest)
    }

    /// Checks `tarball` against `digest` and `size_bytes`, then unpacks it (once: an image
    /// already present is kept). `name` offers it by name.
    ///
    /// # Errors
    /// [`RuntimeError::BadImage`] for a mismatch or a refused entry, [`RuntimeError::Host`]
    /// when the disk fails.
    pub fn import(
        &self,
        tarball: &Path,
        digest: &Digest,
        size_bytes: u64,
        name: Option<&str>,
    ) -> Result<(), RuntimeError> {
        let host = |op: &str| {
            let op = format!("{op} {}", tarball.display());
            move |e| RuntimeError::host(op, e)
        };
        let actual_size = std::fs::metadata(tarball).map_err(host("stat"))?.len();
        if actual_size != size_bytes {
            return Err(RuntimeError::BadImage(format!(
                "tarball is {actual_size} bytes, the spec says {size_bytes}"
            )));
        }
        let actual = sha256_file(tarball).map_err(host("read"))?;
        if actual != *digest {
            return Err(RuntimeError::BadImage(format!(
                "tarball's SHA-256 is {actual}, the spec says {digest}"
            )));
        }
        let dir = self.dir(digest);
        if !dir.join("rootfs").is_dir() {
            let staging = self
                .root
                .join(format!(".staging-{digest}-{:08x}", rand::random::<u32>()));
            let unpacked = unpack(
                tarball,
                &staging.join("rootfs"),
                size_bytes * MAX_EXPANSION + (1 << 20),
            );
            if let Err(e) = unpacked.and_then(|()| {
                std::fs::rename(&staging, &dir)
                    .map_err(|e| RuntimeError::host(format!("rename to {}", dir.display()), e))
            }) {
                let _ = std::fs::remove_dir_all(&staging);
                // Another import of the same digest may have won the race: that is success.
                if !dir.join("rootfs").is_dir() {
                    return Err(e);
                }
            }
        }
        if let Some(name) = name {
            std::fs::write(dir.join("name"), name)
                .map_err(|e| RuntimeError::host(format!("name image {digest}"), e))?;
        }
        Ok(())
    }

    /// Builds the `busybox` image from the host's static busybox (Debian's busybox-static)
    /// and offers it by name. Returns its digest, or `None` when the host has no busybox.
    ///
    /// # Errors
    /// [`RuntimeError::Host`] when building or unpacking fails.
    pub fn ensure_busybox(&self) -> Result<Option<Digest>, RuntimeError> {
        if !Path::new(BUSYBOX).is_file() {
            return Ok(None);
        }
        let tarball = busybox_tarball(Path::new(BUSYBOX))?;
        let digest = Digest(Sha256::digest(&tarball).into());
        if self.rootfs(&digest).is_none() || self.by_name("busybox") != Some(digest) {
            let path = self
                .root
                .join(format!(".busybox-{:08x}.tar", rand::random::<u32>()));
            std::fs::write(&path, &tarball)
                .map_err(|e| RuntimeError::host(format!("write {}", path.display()), e))?;
            let imported = self.import(&path, &digest, tarball.len() as u64, Some("busybox"));
            let _ = std::fs::remove_file(&path);
            imported?;
        }
        Ok(Some(digest))
    }
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(Digest(hasher.finalize().into()))
}

fn unpack(tarball: &Path, dest: &Path, max_bytes: u64) -> Result<(), RuntimeError> {
    let bad = |what: String| RuntimeError::BadImage(what);
    std::fs::create_dir_all(dest)
        .map_err(|e| RuntimeError::host(format!("create {}", dest.display()), e))?;
    let file = std::fs::File::open(tarball)
        .map_err(|e| RuntimeError::host(format!("open {}", tarball.display()), e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut total = 0u64;
    for entry in archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("corrupt tar entry: {e}")))?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            return Err(bad(format!("{path}: {kind:?} entries are not allowed")));
        }
        total = total.saturating_add(entry.header().size().unwrap_or(0));
        if total > max_bytes {
            return Err(bad(format!("unpacks to more than {max_bytes} bytes")));
        }
        let inside = entry
            .unpack_in(dest)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        if !inside {
            return Err(bad(format!("{path} points outside the image")));
        }
    }
    // The sandbox mounts these over a read-only root, so they must exist beforehand.
    for mount_point in ["proc", "dev", "tmp"] {
        let dir = dest.join(mount_point);
        if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::create_dir(&dir)
                .map_err(|e| bad(format!("/{mount_point} cannot be a directory: {e}")))?;
        }
    }
    Ok(())
}

/// A deterministic tarball of a busybox root filesystem: the binary, one symlink per applet
/// in `/bin`, an `/etc/passwd`, and the empty directories mounts need.
fn busybox_tarball(busybox: &Path) -> Result<Vec<u8>, RuntimeError> {
    let host = |op: &str| {
        let op = op.to_owned();
        move |e| RuntimeError::host(op, e)
    };
    let binary = std::fs::read(busybox).map_err(host("read busybox"))?;
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(host("busybox --list"))?;
    let mut applets: Vec<&str> = std::str::from_utf8(&list.stdout)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .collect();
    applets.sort_unstable();
    applets.dedup();

    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let append = |tar: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, path: &str, data: &[u8]| {
        tar.append_data(&mut h, path, data)
            .map_err(host("build busybox image"))
    };
    for dir in [
        "bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "usr/bin", "var", "work",
    ] {
        append(
            &mut tar,
            header(tar::EntryType::Directory, 0o755, 0),
            dir,
            &[],
        )?;
    }
    append(
        &mut tar,
        header(tar::EntryType::Regular, 0o755, binary.len() as u64),
        "bin/busybox",
        &binary,
    )?;
    for applet in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .map_err(host("build busybox image"))?;
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n";
    append(
        &mut tar,
        header(tar::EntryType::Regular, 0o644, passwd.len() as u64),
        "etc/passwd",
        passwd,
    )?;
    let group = b"root:x:0:\nnogroup:x:65534:\n";
    append(
        &mut tar,
        header(tar::EntryType::Regular, 0o644, group.len() as u64),
        "etc/group",
        group,
    )?;
    let mut out = tar.into_inner().map_err(host("build busybox image"))?;
    out.flush().map_err(host("build busybox image"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, entries: &[(&str, &[u8])]) -> (PathBuf, Digest, u64) {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, *data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let path = dir.join("image.tar");
        std::fs::write(&path, &bytes).unwrap();
        (path, Digest::of(&bytes), bytes.len() as u64)
    }

    #[test]
    fn import_checks_digest_and_size_then_unpacks_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path().join("images")).unwrap();
        let (path, digest, size) = tarball(tmp.path(), &[("hello.txt", b"hi")]);
        let wrong = Digest::of(b"other");
        assert!(matches!(
            store.import(&path, &wrong, size, None),
            Err(RuntimeError::BadImage(m)) if m.contains("SHA-256")
        ));
        assert!(matches!(
            store.import(&path, &digest, size + 1, None),
            Err(RuntimeError::BadImage(m)) if m.contains("bytes")
        ));
        assert!(store.rootfs(&wrong).is_none());
        store.import(&path, &digest, size, Some("hello")).unwrap();
        store.import(&path, &digest, size, Some("hello")).unwrap();
        let rootfs = store.rootfs(&digest).unwrap();
        assert_eq!(std::fs::read(rootfs.join("hello.txt")).unwrap(), b"hi");
        assert_eq!(store.by_name("hello"), Some(digest));
        assert_eq!(store.named().len(), 1);
    }

    #[test]
    fn device_nodes_and_escapes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path().join("images")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_size(0);
        h.set_mode(0o666);
        tar.append_data(&mut h, "dev/mem", &[][..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let path = tmp.path().join("dev.tar");
        std::fs::write(&path, &bytes).unwrap();
        let err = store
            .import(&path, &Digest::of(&bytes), bytes.len() as u64, None)
            .unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
        // Nothing half-unpacked is left behind.
        assert_eq!(
            std::fs::read_dir(tmp.path().join("images"))
                .unwrap()
                .count(),
            0
        );

        // A raw header naming ../escape (the builder itself refuses such paths).
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(&[b'x'; 512]);
        bytes.extend_from_slice(&[0; 1024]);
        let path = tmp.path().join("escape.tar");
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            store
                .import(&path, &Digest::of(&bytes), bytes.len() as u64, None)
                .is_err()
        );
        assert!(!tmp.path().join("images/escape").exists());
        assert!(!tmp.path().join("escape").exists());
    }

    #[test]
    fn busybox_image_is_deterministic() {
        if !Path::new(BUSYBOX).is_file() {
            return; // The runtime tests (agora-tests) require it; here it is optional.
        }
        let a = busybox_tarball(Path::new(BUSYBOX)).unwrap();
        let b = busybox_tarball(Path::new(BUSYBOX)).unwrap();
        assert_eq!(Digest::of(&a), Digest::of(&b));
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let digest = store.ensure_busybox().unwrap().unwrap();
        let rootfs = store.rootfs(&digest).unwrap();
        assert!(
            rootfs
                .join("bin/sh")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(store.by_name("busybox"), Some(digest));
    }
}
