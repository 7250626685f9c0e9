//! Images: what the provider offers, resolving a spec's image, and importing uploads.

use agora_protocol::Digest;
use agora_protocol::offer::ImageRef;
use agora_protocol::workload::ImageSource;
use bollard::errors::Error as EngineError;
use bollard::models::ImageInspect;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, ImportImageOptionsBuilder, ListImagesOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use super::{DockerRuntime, UPLOAD_REPO, engine, lock, status_of, upload};
use crate::runtime::RuntimeError;

/// Most offered images listed.
const MAX_OFFERED_IMAGES: usize = 256;
/// Chunk size when streaming an upload to the engine.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// `sha256:<hex>` as a digest.
pub(super) fn image_digest(image_id: &str) -> Option<Digest> {
    image_id.strip_prefix("sha256:")?.parse().ok()
}

/// The offered name of a repo tag under `prefix` (`agora/busybox:latest` → `busybox`).
fn offered_name<'t>(prefix: &str, tag: &'t str) -> Option<&'t str> {
    let rest = tag.strip_prefix(prefix)?;
    let name = rest.strip_suffix(":latest").unwrap_or(rest);
    (!name.is_empty()).then_some(name)
}

impl DockerRuntime {
    /// Local images tagged under the offer prefix, with their ids as digests.
    pub(super) async fn offered_images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
        let options = ListImagesOptionsBuilder::new().all(false).build();
        let images = self
            .bounded(self.docker.list_images(Some(options)))
            .await
            .map_err(|e| engine("list images", &e))?;
        let mut offered: Vec<ImageRef> = images
            .iter()
            .filter_map(|image| Some((image, image_digest(&image.id)?)))
            .flat_map(|(image, digest)| {
                image.repo_tags.iter().filter_map(move |tag| {
                    Some(ImageRef {
                        name: self.offered_name(tag)?.to_owned(),
                        digest,
                    })
                })
            })
            .collect();
        offered.sort_by(|a, b| a.name.cmp(&b.name).then(a.digest.cmp(&b.digest)));
        offered.dedup();
        offered.truncate(MAX_OFFERED_IMAGES);
        Ok(offered)
    }

    /// Checks an upload against its signed digest and size, then imports or loads it once.
    pub(super) async fn import_upload(
        &self,
        path: &std::path::Path,
        digest: &Digest,
        size_bytes: u64,
    ) -> Result<(), RuntimeError> {
        let owned = (path.to_owned(), *digest);
        let kind = tokio::task::spawn_blocking(move || {
            upload::check_tarball(&owned.0, &owned.1, size_bytes)
        })
        .await
        .map_err(|e| RuntimeError::Docker(format!("image check task failed: {e}")))??;
        let _import = self.imports.lock().await;
        let tag = Self::upload_tag(digest);
        if let Some(image) = self.inspect_image(&tag).await? {
            // Already imported (the tag is only ever set after a checked import).
            if let Some(image_id) = image.id {
                lock(&self.uploads).insert(*digest, image_id);
            }
            debug!("image already imported");
            return Ok(());
        }
        let image_id = match kind {
            upload::TarballKind::Rootfs => {
                self.import_rootfs(path, digest).await?;
                self.inspect_image(&tag)
                    .await?
                    .and_then(|i| i.id)
                    .ok_or_else(|| RuntimeError::BadImage("the engine imported no image".into()))?
            }
            upload::TarballKind::Saved { image_id } => {
                self.load_saved(path).await?;
                if self.inspect_image(&image_id).await?.is_none() {
                    return Err(RuntimeError::BadImage(format!(
                        "loading the archive produced no image {image_id}"
                    )));
                }
                let options = TagImageOptionsBuilder::new()
                    .repo(UPLOAD_REPO)
                    .tag(&digest.to_string())
                    .build();
                self.bounded(self.docker.tag_image(&image_id, Some(options)))
                    .await
                    .map_err(|e| engine(&format!("tag image {image_id}"), &e))?;
                image_id
            }
        };
        info!(image = %image_id, "image imported");
        lock(&self.uploads).insert(*digest, image_id);
        Ok(())
    }

    /// The offered name of a repo tag (`agora/busybox:latest` → `busybox`).
    fn offered_name<'t>(&self, tag: &'t str) -> Option<&'t str> {
        offered_name(&self.config.offer_prefix, tag)
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInspect>, RuntimeError> {
        match self.bounded(self.docker.inspect_image(reference)).await {
            Ok(image) => Ok(Some(image)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine(&format!("inspect image {reference}"), &e)),
        }
    }

    fn upload_tag(digest: &Digest) -> String {
        format!("{UPLOAD_REPO}:{digest}")
    }

    /// The engine image for a spec's source, checked against what was offered or uploaded.
    pub(super) async fn resolve(&self, source: &ImageSource) -> Result<ImageInspect, RuntimeError> {
        match source {
            ImageSource::Named { name, digest } => {
                let shown = format!("{name}@sha256:{digest}");
                let image = self
                    .inspect_image(&format!("sha256:{digest}"))
                    .await?
                    .filter(|i| i.id.as_deref().and_then(image_digest) == Some(*digest))
                    .ok_or_else(|| RuntimeError::ImageNotFound(shown.clone()))?;
                let offered = image
                    .repo_tags
                    .iter()
                    .flatten()
                    .any(|t| self.offered_name(t) == Some(name.as_str()));
                if !offered {
                    return Err(RuntimeError::ImageNotFound(format!(
                        "{shown} (no image of that id is offered under that name)"
                    )));
                }
                Ok(image)
            }
            ImageSource::Tarball { digest, .. } => {
                let known = lock(&self.uploads).get(digest).cloned();
                let reference = known.unwrap_or_else(|| Self::upload_tag(digest));
                self.inspect_image(&reference).await?.ok_or_else(|| {
                    RuntimeError::ImageNotFound(format!("uploaded tarball sha256:{digest}"))
                })
            }
        }
    }

    /// Imports a checked root filesystem tarball as `tag` (like `docker import`).
    async fn import_rootfs(
        &self,
        path: &std::path::Path,
        digest: &Digest,
    ) -> Result<(), RuntimeError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RuntimeError::host(format!("open image {}", path.display()), e))?;
        let body = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf.into()), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        let hex = digest.to_string();
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(UPLOAD_REPO)
            .tag(&hex)
            .build();
        let client = self
            .docker
            .clone()
            .with_timeout(self.config.import_timeout());
        let progress =
            client.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        self.drain_import(progress).await
    }

    /// Loads a checked `docker save` archive without its tags (like `docker load`).
    async fn load_saved(&self, path: &std::path::Path) -> Result<(), RuntimeError> {
        let path = path.to_owned();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let copier = tokio::task::spawn_blocking(move || {
            let mut writer = upload::ChannelWriter::new(tx);
            let copied = std::fs::File::open(&path)
                .map_err(|e| RuntimeError::host(format!("open image {}", path.display()), e))
                .and_then(|file| {
                    upload::copy_without_tags(std::io::BufReader::new(file), &mut writer)
                });
            match copied {
                Ok(()) => Ok(()),
                Err(e) => {
                    writer.fail(std::io::Error::other(e.to_string()));
                    Err(e)
                }
            }
        });
        let body = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|item| item.map(|chunk: std::io::Result<Vec<u8>>| chunk.map(Into::into)))
        });
        let client = self
            .docker
            .clone()
            .with_timeout(self.config.import_timeout());
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let progress = client.import_image_stream(options, body, None);
        let loaded = self.drain_import(progress).await;
        match copier.await {
            Ok(Ok(())) => loaded,
            Ok(Err(e)) => Err(e),
            Err(e) => Err(RuntimeError::Docker(format!("image copy task failed: {e}"))),
        }
    }

    /// Reads an import's progress to the end, bounded by the import timeout.
    async fn drain_import<T>(
        &self,
        progress: impl futures::Stream<Item = Result<T, EngineError>>,
    ) -> Result<(), RuntimeError> {
        let drain = async {
            futures::pin_mut!(progress);
            while let Some(step) = progress.next().await {
                step.map_err(|e| match e {
                    EngineError::DockerStreamError { error } => RuntimeError::BadImage(error),
                    other => engine("import image", &other),
                })?;
            }
            Ok(())
        };
        tokio::time::timeout(self.config.import_timeout(), drain)
            .await
            .unwrap_or_else(|_| Err(engine("import image", &EngineError::RequestTimeoutError)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_come_from_tags_under_the_prefix() {
        assert_eq!(
            offered_name("agora/", "agora/busybox:latest"),
            Some("busybox")
        );
        assert_eq!(
            offered_name("agora/", "agora/python:3.12"),
            Some("python:3.12")
        );
        assert_eq!(offered_name("agora/", "busybox:latest"), None);
        assert_eq!(offered_name("agora/", "agora-upload:abc"), None);
        assert_eq!(offered_name("agora/", "agora/:latest"), None);
    }

    #[test]
    fn image_ids_parse_as_digests() {
        let hex = "94ba88066dfc69bad816e4482d2db31095147aca57dd6251f5c4e3d8472d6810";
        assert_eq!(
            image_digest(&format!("sha256:{hex}")).unwrap().to_string(),
            hex
        );
        assert!(image_digest(hex).is_none());
        assert!(image_digest("sha256:abc").is_none());
    }
}
