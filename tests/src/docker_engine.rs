//! A Docker-runtime provider's objects on the engine, made and removed by tests: the busybox
//! image it offers (built locally, no registry) and, on drop, its containers, networks and
//! firewall rules.

// Test support: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::path::Path;

use agora_protocol::Digest;

use crate::{stderr, stdout};

/// `docker ARGS…`, which must succeed; its trimmed stdout.
///
/// # Panics
/// When the command fails.
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// What a Docker provider leaves on the engine: its workloads' containers (workloads outlive
/// a killed node by design), its two workload networks with their firewall rules, and the
/// image the test built for it. Everything is named after one random engine name
/// (`[runtime.docker] node`, and the offer prefix), so tests never see each other's objects.
/// Removed on drop, also when the test fails; declare it before the nodes, so it drops after
/// them.
pub struct DockerLeftovers {
    node: String,
    tags: Vec<String>,
}

impl Default for DockerLeftovers {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerLeftovers {
    /// Nothing made yet, under a fresh random engine name.
    pub fn new() -> Self {
        Self {
            node: format!("j{:08x}", rand::random::<u32>()),
            tags: Vec::new(),
        }
    }

    /// Images tagged under this prefix are the ones the provider offers.
    pub fn offer_prefix(&self) -> String {
        format!("agora-{}/", self.node)
    }

    /// The provider's `[runtime.docker]` section.
    pub fn config(&self) -> String {
        format!(
            "\n[runtime.docker]\nnode = \"{}\"\noffer_prefix = \"{}\"\n",
            self.node,
            self.offer_prefix()
        )
    }

    /// The label filter matching the provider's containers and networks.
    pub fn label(&self) -> String {
        format!("label=agora.node={}", self.node)
    }

    /// Builds a busybox image (Debian's busybox-static with every applet linked: `sh`, `cat`,
    /// `tar`, … as the agent's commands and `files` need) without a registry, tagged so the
    /// provider offers it as `busybox`; its image id, which the provider advertises.
    pub fn busybox(&mut self, dir: &Path) -> Digest {
        let tar = crate::busybox::tarball(dir, None, &[]).path;
        let tag = format!("{}busybox:latest", self.offer_prefix());
        self.tags.push(tag.clone());
        docker(&["import", tar.to_str().unwrap(), &tag]);
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
        id.strip_prefix("sha256:").unwrap().parse().unwrap()
    }

    /// The provider's containers (`running` only, or all).
    pub fn containers(&self, running: bool) -> Vec<String> {
        let label = self.label();
        let mut args = vec!["ps", "-q", "--no-trunc", "--filter", label.as_str()];
        if !running {
            args.push("-a");
        }
        docker(&args)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        let run = |args: &[&str]| {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|o| stdout(&o))
                .unwrap_or_default()
        };
        let label = self.label();
        for (list, remove) in [
            (&["ps", "-aq", "--filter"][..], &["rm", "-f", "-v"][..]),
            (
                &["network", "ls", "-q", "--filter"][..],
                &["network", "rm"][..],
            ),
        ] {
            let mut args = list.to_vec();
            args.push(label.as_str());
            let found = run(&args);
            let ids: Vec<&str> = found.split_whitespace().collect();
            if !ids.is_empty() {
                run(&[remove, &ids[..]].concat());
            }
        }
        // The network policy's rules on the provider's two workload bridges.
        for network in [
            format!("agora-{}-wl", self.node),
            format!("agora-{}-wl-int", self.node),
        ] {
            let script = agora_node::runtime::netpolicy::bridge_remove_script(&network);
            if let Ok(mut restore) = std::process::Command::new("iptables-restore")
                .arg("--noflush")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = restore.stdin.take() {
                    let _ = stdin.write_all(script.as_bytes());
                }
                let _ = restore.wait();
            }
        }
        for tag in &self.tags {
            run(&["rmi", "-f", tag]);
        }
    }
}
