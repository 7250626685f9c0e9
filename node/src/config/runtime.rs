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
//! sandbox_pool = "10.213.0.0/16"            # /30 per sandbox with egress
//! egress_allow = []                         # e.g. ["198.51.100.0/24"]: egress only there
//! images = [{ name = "python", tarball = "/srv/rootfs/python.tar" }]   # besides busybox
//! warm_sandboxes = 2                        # per image: started ahead, taken at launch
//!
//! [runtime.docker]                          # see runtime::docker::DockerConfig
//! runtime_class = "runsc"                   # gVisor, when installed; default: runc
//! user = "65534:65534"
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
    /// Address pool for sandboxes with egress (`a.b.c.d/n`); default `10.213.0.0/16`.
    #[serde(default)]
    pub sandbox_pool: Option<String>,
    /// When not empty, workloads' egress is limited to these networks (`a.b.c.d/n`).
    #[serde(default)]
    pub egress_allow: Vec<String>,
    /// Sandbox images offered besides the built-in `busybox`.
    #[serde(default)]
    pub images: Vec<ImageConfig>,
    /// Sandboxes kept started ahead per image offered by name, so a launch skips building
    /// the sandbox (0: every launch builds its own). Each costs three idle processes and
    /// a 1 MiB scratch until taken.
    #[serde(default = "default_warm_sandboxes")]
    pub warm_sandboxes: usize,
    /// End workloads without activity for this long.
    #[serde(default = "default_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Keep an ended workload's logs and record this long.
    #[serde(default = "default_retention", with = "duration")]
    pub retention: Duration,
    /// Time between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_grace", with = "duration")]
    pub stop_grace: Duration,
    /// The Docker runtime (`[runtime.docker]`); its `node` name defaults to one derived
    /// from the node id, so several nodes can share an engine.
    #[serde(default)]
    pub docker: crate::runtime::docker::DockerConfig,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_warm_sandboxes() -> usize {
    2
}
/// Most warm sandboxes per image.
pub const MAX_WARM_SANDBOXES: usize = 1024;
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
            sandbox_pool: None,
            egress_allow: Vec::new(),
            images: Vec::new(),
            warm_sandboxes: default_warm_sandboxes(),
            idle_timeout: default_idle_timeout(),
            retention: default_retention(),
            stop_grace: default_stop_grace(),
            docker: crate::runtime::docker::DockerConfig::default(),
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
        if let Some(pool) = &self.sandbox_pool {
            let (_, len) = crate::runtime::netpolicy::parse_cidr(pool)
                .map_err(|e| invalid("runtime.sandbox_pool", e))?;
            if !(8..=28).contains(&len) {
                return Err(invalid(
                    "runtime.sandbox_pool",
                    "prefix must be /8 to /28".into(),
                ));
            }
        }
        if self.warm_sandboxes > MAX_WARM_SANDBOXES {
            return Err(invalid(
                "runtime.warm_sandboxes",
                format!("at most {MAX_WARM_SANDBOXES}"),
            ));
        }
        if self.egress_allow.len() > 64 {
            return Err(invalid(
                "runtime.egress_allow",
                "at most 64 networks".into(),
            ));
        }
        for net in &self.egress_allow {
            crate::runtime::netpolicy::parse_cidr(net)
                .map_err(|e| invalid("runtime.egress_allow", e))?;
        }
        self.docker
            .validate()
            .map_err(|e| invalid(&format!("runtime.docker.{}", e.field), e.to_string()))?;
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
