//! Workload runtime settings (`[runtime]`): where the sandbox keeps its state, which images
//! it offers, and how the reaper treats workloads.
//!
//! ```toml
//! [runtime]
//! sandbox_dir = "/var/lib/agora/sandbox"   # default: <data_dir>/sandbox
//! cgroup_parent = "agora"                   # default: agora-<first 12 chars of the node id>
//! idle_timeout = "30m"                      # no CPU use or tunnel traffic for this long
//! retention = "1h"                          # ended workloads keep their logs this long
//! stop_grace = "5s"                         # SIGTERM → SIGKILL
//! images = [{ name = "python", tarball = "/srv/rootfs/python.tar" }]   # besides busybox
//! ```

use core::time::Duration;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, duration};

/// A root filesystem tarball the sandbox offers by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// The name agents ask for (a token, e.g. `python`).
    pub name: String,
    /// The tarball (its SHA-256 becomes the advertised digest).
    pub tarball: PathBuf,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Sandbox state (images, workloads); default `<data_dir>/sandbox`.
    #[serde(default)]
    pub sandbox_dir: Option<PathBuf>,
    /// The cgroup holding this node's sandboxes; default `agora-<node id prefix>`.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
    /// Sandbox images offered besides the built-in `busybox`.
    #[serde(default)]
    pub images: Vec<ImageConfig>,
    /// End workloads without activity for this long.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Keep an ended workload's logs and record this long.
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Time between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_grace", with = "duration")]
    pub stop_grace: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_retention() -> Duration {
    Duration::from_secs(3600)
}
fn default_stop_grace() -> Duration {
    Duration::from_secs(5)
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            sandbox_dir: None,
            cgroup_parent: None,
            images: Vec::new(),
            idle_timeout: default_idle_timeout(),
            retention: default_retention(),
            stop_grace: default_stop_grace(),
        }
    }
}

impl RuntimeSection {
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(parent) = &self.cgroup_parent {
            agora_protocol::bounds::token("runtime.cgroup_parent", parent, 64)
                .map_err(|e| invalid("runtime.cgroup_parent", e.to_string()))?;
        }
        if self.images.len() > 15 {
            return Err(invalid(
                "runtime.images",
                "at most 15 (busybox is the 16th)".into(),
            ));
        }
        for image in &self.images {
            agora_protocol::bounds::token("runtime.images.name", &image.name, 64)
                .map_err(|e| invalid("runtime.images.name", e.to_string()))?;
            if !image.tarball.is_file() {
                return Err(invalid(
                    "runtime.images.tarball",
                    format!("{} is not a file", image.tarball.display()),
                ));
            }
        }
        for (field, value, min) in [
            (
                "runtime.idle_timeout",
                self.idle_timeout,
                Duration::from_secs(1),
            ),
            ("runtime.retention", self.retention, Duration::ZERO),
            ("runtime.stop_grace", self.stop_grace, Duration::ZERO),
        ] {
            if value < min || value > Duration::from_secs(30 * 24 * 3600) {
                return Err(invalid(field, "must be between 1s and 30 days".into()));
            }
        }
        Ok(())
    }
}
