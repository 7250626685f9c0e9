//! Uploaded image tarballs: checking them against what the agent signed, telling a
//! `docker save` archive from a root filesystem, and making a `docker save` archive safe to
//! load.
//!
//! Everything here is blocking file I/O; callers run it on the blocking pool.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use agora_protocol::Digest;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::runtime::RuntimeError;

/// Most bytes of a `docker save` archive's `manifest.json`.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What an uploaded tarball holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TarballKind {
    /// A root filesystem (`docker export`, or `tar -C rootfs -cf - .`): imported like
    /// `docker import`.
    Rootfs,
    /// A `docker save` archive of exactly one image, whose id will be `image_id`
    /// (`sha256:<hex>`): loaded like `docker load`, without its tags.
    Saved {
        /// The image id its manifest names.
        image_id: String,
    },
}

fn bad(what: impl Into<String>) -> RuntimeError {
    RuntimeError::BadImage(what.into())
}

fn io_bad(what: &str, e: &io::Error) -> RuntimeError {
    bad(format!("{what}: {e}"))
}

/// Checks the tarball at `path` against the size and SHA-256 the agent signed and tells what
/// it holds. Reads the file twice (hash, then the tar headers) with bounded memory.
///
/// # Errors
/// [`RuntimeError::BadImage`] for a size or digest mismatch, a compressed or malformed
/// archive, or a `docker save` archive with other than one image;
/// [`RuntimeError::Host`] when the file cannot be read.
pub(super) fn check_tarball(
    path: &Path,
    digest: &Digest,
    size_bytes: u64,
) -> Result<TarballKind, RuntimeError> {
    let mut file = File::open(path)
        .map_err(|e| RuntimeError::host(format!("open image {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| RuntimeError::host(format!("stat image {}", path.display()), e))?
        .len();
    if len != size_bytes {
        return Err(bad(format!(
            "the tarball is {len} bytes, the agent signed {size_bytes}"
        )));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut magic = Vec::with_capacity(8);
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| RuntimeError::host(format!("read image {}", path.display()), e))?;
        let Some(chunk) = buf.get(..n) else { break };
        if n == 0 {
            break;
        }
        if magic.len() < 8 {
            let want = (8 - magic.len()).min(chunk.len());
            magic.extend_from_slice(chunk.get(..want).unwrap_or_default());
        }
        hasher.update(chunk);
    }
    let actual = Digest(hasher.finalize().into());
    if actual != *digest {
        return Err(bad(format!(
            "the tarball's sha256 is {actual}, the agent signed {digest}"
        )));
    }
    if is_compressed(&magic) {
        return Err(bad(
            "compressed tarballs are not accepted; upload a plain tar (docker save or a root filesystem)",
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| RuntimeError::host(format!("rewind image {}", path.display()), e))?;
    scan(file)
}

fn is_compressed(magic: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [
        &[0x1f, 0x8b],                         // gzip
        b"BZh",                                // bzip2
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
    ];
    MAGICS.iter().any(|m| magic.starts_with(m))
}

/// Walks the archive's headers: a top-level `manifest.json` holding a JSON list (as `docker
/// save` writes it) makes it a saved image; anything else that parses is a root filesystem.
fn scan(src: impl Read + Seek) -> Result<TarballKind, RuntimeError> {
    let mut archive = tar::Archive::new(src);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| io_bad("not a tar archive", &e))?;
    let mut count = 0u64;
    let mut manifest = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_bad("malformed tar archive", &e))?;
        count += 1;
        let path = entry
            .path()
            .map_err(|e| io_bad("malformed tar path", &e))?
            .into_owned();
        if path.as_os_str() == "manifest.json" {
            manifest = Some(read_manifest(&mut entry)?);
        }
    }
    if count == 0 {
        return Err(bad("the tar archive is empty"));
    }
    // A root filesystem may hold a /manifest.json of its own; a saved image's is a list.
    let saved = manifest.filter(|bytes| {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.is_array())
    });
    match saved {
        None => Ok(TarballKind::Rootfs),
        Some(bytes) => {
            let (_, image_id) = strip_tags(&bytes)?;
            Ok(TarballKind::Saved { image_id })
        }
    }
}

fn read_manifest(entry: &mut impl Read) -> Result<Vec<u8>, RuntimeError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_bad("reading manifest.json", &e))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad("manifest.json is larger than 1 MiB"));
    }
    Ok(bytes)
}

/// Parses a `docker save` manifest, requires exactly one image, and returns the manifest
/// with its `RepoTags` removed plus the image id (`sha256:<hex>`, from its `Config` path).
///
/// Loading an archive with tags would move those tags on the provider's engine: an agent
/// could re-point `agora/busybox:latest`, an image the provider offers, at its own image.
fn strip_tags(manifest: &[u8]) -> Result<(Vec<u8>, String), RuntimeError> {
    let mut value: serde_json::Value = serde_json::from_slice(manifest)
        .map_err(|e| bad(format!("manifest.json is not JSON: {e}")))?;
    let images = value
        .as_array_mut()
        .ok_or_else(|| bad("manifest.json is not a list of images"))?;
    let [image] = images.as_mut_slice() else {
        return Err(bad(format!(
            "the archive holds {} images, one is accepted",
            images.len()
        )));
    };
    let image = image
        .as_object_mut()
        .ok_or_else(|| bad("manifest.json entry is not an object"))?;
    let config = image
        .get("Config")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("manifest.json entry has no Config"))?;
    // `<hex>.json` (docker save up to v24) or `blobs/sha256/<hex>` (OCI layout, v25+).
    let file = config.rsplit('/').next().unwrap_or(config);
    let hex = file.strip_suffix(".json").unwrap_or(file);
    let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !ok {
        return Err(bad(format!(
            "manifest.json Config {config:?} does not name an image id"
        )));
    }
    let image_id = format!("sha256:{hex}");
    image.insert("RepoTags".into(), serde_json::Value::Null);
    let bytes = serde_json::to_vec(&value).map_err(|e| bad(format!("manifest.json: {e}")))?;
    Ok((bytes, image_id))
}

/// Copies a `docker save` archive from `src` to `dst` with its manifest's tags removed (see
/// [`strip_tags`]); every other entry is copied as it is. The engine reads only
/// `manifest.json` when it is present, so the legacy `repositories` file cannot tag either.
///
/// # Errors
/// [`RuntimeError::BadImage`] for a malformed archive or an entry kind a saved image never
/// holds (devices, fifos); [`RuntimeError::Host`] when writing fails.
pub(super) fn copy_without_tags(src: impl Read, dst: impl Write) -> Result<(), RuntimeError> {
    let mut archive = tar::Archive::new(src);
    let mut out = tar::Builder::new(dst);
    out.mode(tar::HeaderMode::Complete);
    let entries = archive
        .entries()
        .map_err(|e| io_bad("not a tar archive", &e))?;
    let write_err = |e: io::Error| RuntimeError::host("stream image to the engine", e);
    for entry in entries {
        let mut entry = entry.map_err(|e| io_bad("malformed tar archive", &e))?;
        let path = entry
            .path()
            .map_err(|e| io_bad("malformed tar path", &e))?
            .into_owned();
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if path.as_os_str() == "manifest.json" {
            let (manifest, _) = strip_tags(&read_manifest(&mut entry)?)?;
            header.set_size(manifest.len() as u64);
            out.append_data(&mut header, &path, manifest.as_slice())
                .map_err(write_err)?;
        } else if kind.is_file() || kind.is_dir() {
            out.append_data(&mut header, &path, &mut entry)
                .map_err(write_err)?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| io_bad("malformed tar link", &e))?
                .ok_or_else(|| bad(format!("link {} has no target", path.display())))?
                .into_owned();
            out.append_link(&mut header, &path, &target)
                .map_err(write_err)?;
        } else {
            return Err(bad(format!(
                "{} is a {kind:?} entry, which a saved image never holds",
                path.display()
            )));
        }
    }
    out.into_inner()
        .map_err(write_err)?
        .flush()
        .map_err(write_err)
}

/// A blocking [`Write`] that hands chunks to an async receiver (the body of an engine
/// request). Bounded: it blocks while the channel is full.
pub(super) struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

/// Chunk size of [`ChannelWriter`].
const CHUNK: usize = 256 * 1024;

impl ChannelWriter {
    /// A writer feeding `tx`.
    pub(super) fn new(tx: mpsc::Sender<io::Result<Vec<u8>>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine request ended"))
    }

    /// Passes `err` on to the receiver, so the request fails instead of sending a short body.
    pub(super) fn fail(self, err: io::Error) {
        let _ = self.tx.blocking_send(Err(err));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    const HEX: &str = "94ba88066dfc69bad816e4482d2db31095147aca57dd6251f5c4e3d8472d6810";

    fn saved_manifest(tags: &str) -> Vec<u8> {
        format!(r#"[{{"Config":"{HEX}.json","RepoTags":{tags},"Layers":["x/layer.tar"]}}]"#)
            .into_bytes()
    }

    #[test]
    fn size_digest_and_kind_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        // A root filesystem with a manifest.json of its own is still a root filesystem.
        let rootfs = tar_of(&[("bin/busybox", b"elf"), ("manifest.json", b"{}")]);
        let path = dir.path().join("rootfs.tar");
        std::fs::write(&path, &rootfs).unwrap();
        let digest = Digest::of(&rootfs);
        let len = rootfs.len() as u64;
        assert_eq!(
            check_tarball(&path, &digest, len).unwrap(),
            TarballKind::Rootfs
        );
        let err = check_tarball(&path, &digest, len + 1).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
        let err = check_tarball(&path, &Digest::of(b"other"), len).unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");

        let saved = tar_of(&[
            (
                "manifest.json",
                &saved_manifest(r#"["agora/busybox:latest"]"#),
            ),
            ("repositories", b"{}"),
        ]);
        std::fs::write(&path, &saved).unwrap();
        assert_eq!(
            check_tarball(&path, &Digest::of(&saved), saved.len() as u64).unwrap(),
            TarballKind::Saved {
                image_id: format!("sha256:{HEX}")
            }
        );

        let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0];
        std::fs::write(&path, gz).unwrap();
        let err = check_tarball(&path, &Digest::of(&gz), gz.len() as u64).unwrap_err();
        assert!(err.to_string().contains("compressed"), "{err}");

        let junk = b"not a tar at all".repeat(64);
        std::fs::write(&path, &junk).unwrap();
        assert!(check_tarball(&path, &Digest::of(&junk), junk.len() as u64).is_err());
    }

    #[test]
    fn saved_archives_lose_their_tags_and_keep_everything_else() {
        let saved = tar_of(&[
            (
                "manifest.json",
                &saved_manifest(r#"["agora/busybox:latest"]"#),
            ),
            ("x/layer.tar", b"layer bytes"),
        ]);
        let mut out = Vec::new();
        copy_without_tags(saved.as_slice(), &mut out).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((path, data));
        }
        let [(m, manifest), (l, layer)] = seen.as_slice() else {
            panic!("{seen:?}")
        };
        assert_eq!((m.as_str(), l.as_str()), ("manifest.json", "x/layer.tar"));
        assert_eq!(layer, b"layer bytes");
        let v: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        assert!(v[0]["RepoTags"].is_null(), "{v}");
        assert_eq!(v[0]["Config"], format!("{HEX}.json"));
    }

    #[test]
    fn manifests_must_name_exactly_one_image() {
        assert!(strip_tags(b"[]").is_err());
        assert!(strip_tags(&saved_manifest("null")).is_ok());
        let two = format!(r#"[{{"Config":"{HEX}.json"}},{{"Config":"{HEX}.json"}}]"#);
        assert!(strip_tags(two.as_bytes()).is_err());
        assert!(strip_tags(br#"[{"Config":"../etc/passwd"}]"#).is_err());
        let oci = format!(r#"[{{"Config":"blobs/sha256/{HEX}"}}]"#);
        assert_eq!(
            strip_tags(oci.as_bytes()).unwrap().1,
            format!("sha256:{HEX}")
        );
    }
}
