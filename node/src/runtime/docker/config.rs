//! [`DockerConfig`]: which engine, which OCI runtime class, and how workloads are named.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the Docker runtime reaches its engine, names what it creates and hardens workloads.
///
/// Names: a workload `w-1` of node `n1` is the container `agora-n1-w-1`, labelled
/// `agora.workload=w-1` and `agora.node=n1` (with the default `label_prefix`); its networks
/// are `agora-n1-wl` (egress) and `agora-n1-wl-int` (internal, no egress). Several nodes can
/// share one engine as long as their `node` names differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Engine address (`unix:///var/run/docker.sock`, `tcp://host:2375`); `None`: the
    /// `DOCKER_HOST` environment variable, else the default local socket.
    pub host: Option<String>,
    /// OCI runtime class for workloads (`runsc` for gVisor, `kata`, …); `None`: the engine's
    /// default (runc). [`super::DockerRuntime::connect`] fails when the engine lacks it.
    pub runtime_class: Option<String>,
    /// This node's name on the engine: 1-32 of `a-z`, `0-9` and `-`, starting with a letter or
    /// digit. It names and labels containers and networks.
    pub node: String,
    /// Prefix of label keys and object names: 1-32 of `a-z`, `0-9`, `.` and `-`.
    pub label_prefix: String,
    /// Repository prefix of the images the provider offers: a local image tagged
    /// `agora/busybox:latest` is offered as `busybox` (`agora/python:3.12` as `python:3.12`).
    pub offer_prefix: String,
    /// Size of the workload's `/tmp` (its only writable place) when the spec asks for no
    /// disk, MiB; otherwise `/tmp` is `resources.disk_mib` large.
    pub tmp_default_mib: u64,
    /// User workloads run as (`uid`, `uid:gid` or a name the image knows); `None`: the
    /// image's user. Numeric ids work in any image; `65534:65534` is `nobody`.
    pub user: Option<String>,
    /// Run the engine's tiny init as PID 1: it reaps zombies and forwards SIGTERM, so a
    /// workload whose main process is a shell stops at once instead of after the grace.
    pub init: bool,
    /// Longest wait for one ordinary engine call, seconds.
    pub api_timeout_secs: u64,
    /// Longest wait for importing one uploaded image, seconds.
    pub import_timeout_secs: u64,
    /// Most bytes of a workload's output the engine keeps (older output is dropped).
    pub log_max_bytes: u64,
    /// Subnet of the egress workload network (`a.b.c.d/n`); `None`: the engine's pools.
    pub egress_subnet: Option<String>,
    /// Subnet of the internal (no egress) workload network; `None`: the engine's pools.
    pub internal_subnet: Option<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            runtime_class: None,
            node: "local".into(),
            label_prefix: "agora".into(),
            offer_prefix: "agora/".into(),
            tmp_default_mib: 64,
            user: None,
            init: true,
            api_timeout_secs: 30,
            import_timeout_secs: 600,
            log_max_bytes: 16 << 20,
            egress_subnet: None,
            internal_subnet: None,
        }
    }
}

/// A [`DockerConfig`] field that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("docker runtime config: {field} {value:?} {reason}")]
pub struct DockerConfigError {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DockerConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`DockerConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DockerConfigError> {
        let bad = |field, value: &str, reason| DockerConfigError {
            field,
            value: value.to_owned(),
            reason,
        };
        let name_ok = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || extra.contains(&b)
                })
                && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !name_ok(&self.node, b"") {
            return Err(bad(
                "node",
                &self.node,
                "must be 1-32 of a-z, 0-9 and '-', starting with a letter or digit",
            ));
        }
        if !name_ok(&self.label_prefix, b".") {
            return Err(bad(
                "label_prefix",
                &self.label_prefix,
                "must be 1-32 of a-z, 0-9, '.' and '-', starting with a letter or digit",
            ));
        }
        let offer_ok = !self.offer_prefix.is_empty()
            && self.offer_prefix.len() <= 64
            && self
                .offer_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._/".contains(&b));
        if !offer_ok {
            return Err(bad(
                "offer_prefix",
                &self.offer_prefix,
                "must be 1-64 of a-z, 0-9, '-', '.', '_' and '/'",
            ));
        }
        if let Some(class) = &self.runtime_class {
            let ok = !class.is_empty()
                && class.len() <= 64
                && class
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return Err(bad(
                    "runtime_class",
                    class,
                    "must be 1-64 of letters, digits, '-', '.' and '_'",
                ));
            }
        }
        if let Some(user) = &self.user {
            let ok = !user.is_empty()
                && user.len() <= 64
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
            if !ok {
                return Err(bad(
                    "user",
                    user,
                    "must be uid, uid:gid or a name (letters, digits, '-', '.', '_', ':')",
                ));
            }
        }
        if self.tmp_default_mib == 0 {
            return Err(bad("tmp_default_mib", "0", "must be positive"));
        }
        if self.api_timeout_secs == 0 || self.import_timeout_secs == 0 {
            return Err(bad(
                "api_timeout_secs/import_timeout_secs",
                "0",
                "must be positive",
            ));
        }
        if self.log_max_bytes < 1024 {
            return Err(bad(
                "log_max_bytes",
                &self.log_max_bytes.to_string(),
                "must be at least 1024",
            ));
        }
        for (field, subnet) in [
            ("egress_subnet", &self.egress_subnet),
            ("internal_subnet", &self.internal_subnet),
        ] {
            if let Some(subnet) = subnet
                && crate::runtime::netpolicy::parse_cidr(subnet).is_err()
            {
                return Err(bad(field, subnet, "must be an IPv4 subnet a.b.c.d/n"));
            }
        }
        Ok(())
    }

    /// The wait for one ordinary engine call.
    pub fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.api_timeout_secs)
    }

    /// The wait for importing one uploaded image.
    pub fn import_timeout(&self) -> Duration {
        Duration::from_secs(self.import_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_each_bad_field_is_named() {
        DockerConfig::default().validate().unwrap();
        type Breaker = Box<dyn Fn(&mut DockerConfig)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("node", Box::new(|c| c.node = String::new())),
            ("node", Box::new(|c| c.node = "Node".into())),
            ("node", Box::new(|c| c.node = "-n".into())),
            ("node", Box::new(|c| c.node = "n".repeat(33))),
            ("label_prefix", Box::new(|c| c.label_prefix = "a b".into())),
            ("offer_prefix", Box::new(|c| c.offer_prefix = String::new())),
            (
                "runtime_class",
                Box::new(|c| c.runtime_class = Some("run sc".into())),
            ),
            ("user", Box::new(|c| c.user = Some("0; rm".into()))),
            ("tmp_default_mib", Box::new(|c| c.tmp_default_mib = 0)),
            (
                "api_timeout_secs/import_timeout_secs",
                Box::new(|c| c.api_timeout_secs = 0),
            ),
            ("log_max_bytes", Box::new(|c| c.log_max_bytes = 10)),
        ];
        for (field, break_it) in cases {
            let mut c = DockerConfig::default();
            break_it(&mut c);
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn config_files_reject_unknown_fields() {
        let c: DockerConfig = toml::from_str("node = \"n1\"\nruntime_class = \"runsc\"").unwrap();
        assert_eq!(c.node, "n1");
        assert_eq!(c.runtime_class.as_deref(), Some("runsc"));
        assert!(c.init);
        assert!(toml::from_str::<DockerConfig>("nodes = \"n1\"").is_err());
    }
}
