//! What an agent asks a provider to run, and why a workload ended.
//!
//! [`WorkloadSpec`] travels inside lease requests (the agent signs it) and is what every
//! runtime (sandbox, Docker, later microVM) receives. [`TerminationReason`] is the
//! machine-readable end of a workload, shared by runtimes, leases and usage receipts.
//! Both are plain data with bounds checked by [`WorkloadSpec::validate`]: a provider
//! refuses an unbounded spec before it touches a runtime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::codec::DecodeError;
use crate::signed::Digest;

/// Most command-line arguments (program included).
pub const MAX_ARGS: usize = 256;
/// Most bytes in one argument, env value or path.
pub const MAX_ARG_BYTES: usize = 4096;
/// Most environment variables.
pub const MAX_ENV: usize = 128;
/// Most exposed ports.
pub const MAX_PORTS: usize = 16;

/// Where the workload's filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// An image or rootfs the provider already has (as advertised in its offer), pinned by
    /// digest so a provider cannot substitute another.
    Named {
        /// Name, e.g. `busybox`.
        name: String,
        /// SHA-256 of the image (Docker image id or rootfs tarball).
        digest: Digest,
    },
    /// An image tarball the agent uploads, identified by its SHA-256 and size.
    Tarball {
        /// SHA-256 of the tarball.
        digest: Digest,
        /// Its size in bytes (the provider refuses what exceeds its disk limit).
        size_bytes: u64,
    },
}

/// Resources requested (hard limits, enforced by the runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// vCPU in thousandths.
    pub vcpu_milli: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Writable disk, MiB.
    pub disk_mib: u64,
    /// Most processes (fork-bomb guard).
    pub pids: u32,
}

/// Transport of an exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A port inside the workload that the agent may reach through a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Port number inside the workload (1-65535).
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

/// What the workload may do on the network (the provider's policy still applies on top).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// Whether it needs a network at all (none: no interface but loopback).
    pub enabled: bool,
    /// Whether it asks for outbound connections.
    pub egress: bool,
}

/// A workload to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Filesystem source.
    pub image: ImageSource,
    /// Program and arguments (empty: the image's default).
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the workload (absolute), or the image's default.
    pub workdir: Option<String>,
    /// Limits.
    pub resources: Resources,
    /// Longest run, seconds; the runtime ends it with [`TerminationReason::LifetimeExpired`].
    pub lifetime_secs: u64,
    /// Ports the agent may reach.
    pub ports: Vec<PortSpec>,
    /// Network wishes.
    pub network: NetworkRequest,
}

fn invalid(field: &'static str, reason: String) -> DecodeError {
    DecodeError::InvalidField { field, reason }
}

impl WorkloadSpec {
    /// Checks every bound; the first violation names its field.
    ///
    /// # Errors
    /// [`DecodeError::InvalidField`].
    pub fn validate(&self) -> Result<(), DecodeError> {
        match &self.image {
            ImageSource::Named { name, .. } => bounds::max_len("image.name", name, 256)?,
            ImageSource::Tarball { size_bytes, .. } => {
                if *size_bytes == 0 {
                    return Err(invalid("image.size_bytes", "must be positive".into()));
                }
            }
        }
        if self.image_name().is_some_and(str::is_empty) {
            return Err(invalid("image.name", "must not be empty".into()));
        }
        if self.command.len() > MAX_ARGS {
            return Err(invalid(
                "command",
                format!("{} arguments, at most {MAX_ARGS}", self.command.len()),
            ));
        }
        for arg in &self.command {
            bounds::max_len("command", arg, MAX_ARG_BYTES)?;
            no_nul("command", arg)?;
        }
        if self.env.len() > MAX_ENV {
            return Err(invalid(
                "env",
                format!("{} variables, at most {MAX_ENV}", self.env.len()),
            ));
        }
        for (k, v) in &self.env {
            let ok = !k.is_empty()
                && k.len() <= 256
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(invalid("env", format!("{k:?} is not a variable name")));
            }
            bounds::max_len("env", v, MAX_ARG_BYTES)?;
            no_nul("env", v)?;
        }
        if let Some(dir) = &self.workdir {
            bounds::max_len("workdir", dir, MAX_ARG_BYTES)?;
            no_nul("workdir", dir)?;
            if !dir.starts_with('/') {
                return Err(invalid("workdir", format!("{dir:?} is not absolute")));
            }
        }
        let r = &self.resources;
        if r.vcpu_milli == 0 || r.memory_mib == 0 || r.pids == 0 {
            return Err(invalid(
                "resources",
                "vcpu_milli, memory_mib and pids must be positive".into(),
            ));
        }
        if self.lifetime_secs == 0 {
            return Err(invalid("lifetime_secs", "must be positive".into()));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(invalid(
                "ports",
                format!("{} ports, at most {MAX_PORTS}", self.ports.len()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.port == 0 || !seen.insert(*p) {
                return Err(invalid(
                    "ports",
                    format!("port {} is zero or listed twice", p.port),
                ));
            }
        }
        if self.network.egress && !self.network.enabled {
            return Err(invalid(
                "network.egress",
                "egress needs the network enabled".into(),
            ));
        }
        Ok(())
    }

    /// A small, valid spec for examples and tests: `busybox` (by the digest given) running
    /// `command` with 500 milli-vCPU, 256 MiB, 64 MiB disk, 64 pids, one hour, no network.
    ///
    /// ```
    /// use agora_protocol::{Digest, workload::WorkloadSpec};
    ///
    /// let spec = WorkloadSpec::example(Digest::of(b"busybox"), &["echo", "hi"]);
    /// spec.validate()?;
    /// # Ok::<(), agora_protocol::DecodeError>(())
    /// ```
    pub fn example(busybox: Digest, command: &[&str]) -> Self {
        Self {
            image: ImageSource::Named {
                name: "busybox".into(),
                digest: busybox,
            },
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
            workdir: None,
            resources: Resources {
                vcpu_milli: 500,
                memory_mib: 256,
                disk_mib: 64,
                pids: 64,
            },
            lifetime_secs: 3600,
            ports: Vec::new(),
            network: NetworkRequest {
                enabled: false,
                egress: false,
            },
        }
    }

    /// The image name, for a named image.
    pub fn image_name(&self) -> Option<&str> {
        match &self.image {
            ImageSource::Named { name, .. } => Some(name),
            ImageSource::Tarball { .. } => None,
        }
    }
}

fn no_nul(field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.contains('\0') {
        return Err(invalid(field, "contains a NUL byte".into()));
    }
    Ok(())
}

/// Why a workload ended: machine-readable, stable, shared by runtimes, leases and receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: postcard (the wire) cannot decode internally tagged enums.
#[serde(rename_all = "snake_case")]
pub enum TerminationReason {
    /// The main process exited by itself.
    Exited {
        /// Its exit code (128 + n for a signal n).
        code: i32,
    },
    /// The kernel killed it for exceeding its memory limit.
    OomKilled,
    /// It reached its lease or spec lifetime.
    LifetimeExpired,
    /// It was idle (no exec, no tunnel traffic) for too long.
    IdleTimeout,
    /// The agent stopped it.
    StoppedByAgent,
    /// The provider's node shut down.
    ProviderShutdown,
    /// It broke the provider's policy (e.g. a blocked port, a limit).
    PolicyViolation {
        /// What it did (bounded, for people).
        detail: String,
    },
    /// The runtime failed (image missing, start error, engine gone).
    RuntimeError {
        /// What failed (bounded, for people).
        detail: String,
    },
}

impl TerminationReason {
    /// The stable code (`exited`, `oom_killed`, …), as in JSON and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exited",
            Self::OomKilled => "oom_killed",
            Self::LifetimeExpired => "lifetime_expired",
            Self::IdleTimeout => "idle_timeout",
            Self::StoppedByAgent => "stopped_by_agent",
            Self::ProviderShutdown => "provider_shutdown",
            Self::PolicyViolation { .. } => "policy_violation",
            Self::RuntimeError { .. } => "runtime_error",
        }
    }

    /// Whether the workload ended on its own terms (exit code 0).
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Exited { code: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> WorkloadSpec {
        let mut s = WorkloadSpec::example(Digest::of(b"busybox"), &["sh", "-c", "echo hi"]);
        s.env = BTreeMap::from([("GREETING".into(), "hello".into())]);
        s.workdir = Some("/tmp".into());
        s.ports = vec![PortSpec {
            port: 8080,
            transport: Transport::Tcp,
        }];
        s.network.enabled = true;
        s
    }

    #[test]
    fn a_typical_spec_is_valid_and_round_trips() {
        let s = spec();
        s.validate().unwrap();
        let bytes = crate::codec::encode(&s, 64 * 1024).unwrap();
        let back: WorkloadSpec = crate::codec::decode(&bytes, 64 * 1024).unwrap();
        assert_eq!(back, s);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""image":{"named":"#), "{json}");
    }

    #[test]
    fn each_bound_names_its_field() {
        type Breaker = Box<dyn Fn(&mut WorkloadSpec)>;
        let cases: Vec<(&str, Breaker)> = vec![
            (
                "command",
                Box::new(|s| s.command = vec!["x".into(); MAX_ARGS + 1]),
            ),
            ("command", Box::new(|s| s.command = vec!["a\0b".into()])),
            (
                "env",
                Box::new(|s| {
                    s.env.insert("1BAD".into(), "v".into());
                }),
            ),
            ("workdir", Box::new(|s| s.workdir = Some("relative".into()))),
            ("resources", Box::new(|s| s.resources.pids = 0)),
            ("lifetime_secs", Box::new(|s| s.lifetime_secs = 0)),
            ("ports", Box::new(|s| s.ports.push(s.ports[0]))),
            ("ports", Box::new(|s| s.ports[0].port = 0)),
            (
                "network.egress",
                Box::new(|s| {
                    s.network = NetworkRequest {
                        enabled: false,
                        egress: true,
                    }
                }),
            ),
            (
                "image.name",
                Box::new(|s| {
                    s.image = ImageSource::Named {
                        name: String::new(),
                        digest: Digest::of(b""),
                    }
                }),
            ),
            (
                "image.size_bytes",
                Box::new(|s| {
                    s.image = ImageSource::Tarball {
                        digest: Digest::of(b""),
                        size_bytes: 0,
                    }
                }),
            ),
        ];
        for (field, break_it) in cases {
            let mut s = spec();
            break_it(&mut s);
            match s.validate() {
                Err(DecodeError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn termination_reasons_have_stable_codes() {
        let r = TerminationReason::PolicyViolation {
            detail: "smtp".into(),
        };
        assert_eq!(r.code(), "policy_violation");
        assert_eq!(
            serde_json::to_string(&TerminationReason::Exited { code: 3 }).unwrap(),
            r#"{"exited":{"code":3}}"#
        );
        assert_eq!(
            serde_json::to_string(&TerminationReason::OomKilled).unwrap(),
            r#""oom_killed""#
        );
        let bytes = crate::codec::encode(&r, 1024).unwrap();
        assert_eq!(
            crate::codec::decode::<TerminationReason>(&bytes, 1024).unwrap(),
            r
        );
        assert!(TerminationReason::Exited { code: 0 }.is_success());
        assert!(!TerminationReason::OomKilled.is_success());
    }
}
