//! Opens the provider's workload runtimes and starts its supervisor.
//!
//! Each runtime in `[provider] runtimes` is probed: the sandbox needs bubblewrap and cgroup
//! controllers, Docker needs an engine that answers. A runtime this host cannot run is not
//! advertised (and the reason is logged and shown by `GET /v1/node`); a provider left with
//! none advertises nothing. Then the supervisor reconciles what a previous run left and
//! its reaper starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agora_protocol::AgoraId;
use agora_protocol::offer::{ImageRef, Isolation};
use tracing::{info, warn};

use super::DaemonError;
use crate::config::{NodeConfig, ProviderConfig};
use crate::runtime::docker::{DockerConfig, DockerRuntime};
use crate::runtime::netpolicy::{Policy, parse_cidr};
use crate::runtime::sandbox::net::SandboxNetwork;
use crate::runtime::sandbox::{SandboxConfig, SandboxRuntime};
use crate::runtime::supervisor::{Supervisor, SupervisorConfig};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::Store;

/// The provider's runtimes, as opened.
pub struct Runtimes {
    /// Runs and reaps workloads on the available runtimes.
    pub supervisor: Arc<Supervisor>,
    /// Available runtimes and the images each offers.
    pub available: BTreeMap<Isolation, Vec<ImageRef>>,
    /// Configured runtimes this host cannot run, with the reason.
    pub unavailable: BTreeMap<Isolation, String>,
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtimes")
            .field("available", &self.available.keys().collect::<Vec<_>>())
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

/// The last 12 characters of the node id: names this node's cgroups and Docker objects,
/// so several nodes can share a host or an engine.
fn node_tag(id: &AgoraId) -> String {
    let chars: Vec<char> = id.to_string().chars().collect();
    chars.iter().skip(chars.len().saturating_sub(12)).collect()
}

/// The default cgroup for this node's sandboxes: unique per node on a shared host.
pub fn default_cgroup_parent(id: &AgoraId) -> String {
    format!("agora-{}", node_tag(id))
}

/// Opens every configured runtime that this host can run, then the supervisor.
///
/// # Errors
/// [`DaemonError::Runtime`] for a configured image that cannot be imported, or when the
/// supervisor's records cannot be read.
pub async fn open(
    config: &NodeConfig,
    provider: &ProviderConfig,
    id: &AgoraId,
    store: Arc<dyn Store>,
    warm_sandboxes: prometheus_client::metrics::gauge::Gauge,
) -> Result<Runtimes, DaemonError> {
    let mut opened: Vec<Arc<dyn Runtime>> = Vec::new();
    let mut unavailable = BTreeMap::new();
    for &isolation in &provider.runtimes {
        match open_one(config, provider, id, isolation, &warm_sandboxes).await {
            Ok(runtime) => opened.push(runtime),
            Err(e) if e.is_client_error() || matches!(e, RuntimeError::Docker(_)) => {
                warn!(runtime = isolation.as_str(), reason = %e, "runtime unavailable; not advertised");
                unavailable.insert(isolation, e.to_string());
            }
            Err(e) => return Err(DaemonError::Runtime(e.to_string())),
        }
    }
    let mut available = BTreeMap::new();
    for runtime in &opened {
        let images = runtime
            .images()
            .await
            .map_err(|e| DaemonError::Runtime(e.to_string()))?;
        info!(
            runtime = runtime.isolation().as_str(),
            images = images.len(),
            "runtime available"
        );
        available.insert(runtime.isolation(), images);
    }
    let supervisor = Supervisor::new(
        store,
        opened,
        SupervisorConfig {
            idle_timeout: config.runtime.idle_timeout,
            retention: config.runtime.retention,
            stop_grace: config.runtime.stop_grace,
        },
    )
    .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    let supervisor = Arc::new(supervisor);
    let removed = supervisor
        .reconcile(crate::clock::now())
        .await
        .map_err(|e| DaemonError::Runtime(e.to_string()))?;
    if !removed.is_empty() {
        info!(orphans = removed.len(), "removed orphaned workloads");
    }
    Ok(Runtimes {
        supervisor,
        available,
        unavailable,
    })
}

/// The sandbox's pool and the network policy (both runtimes) from `[provider]` (egress,
/// blocked ports) and `[runtime]` (pool, allow-list).
fn sandbox_network(
    config: &NodeConfig,
    provider: &ProviderConfig,
) -> Result<SandboxNetwork, String> {
    let mut network = SandboxNetwork::default();
    if let Some(pool) = &config.runtime.sandbox_pool {
        network.pool = parse_cidr(pool)?;
    }
    network.policy = Policy {
        egress: provider.egress,
        blocked_ports: provider.blocked_ports.clone(),
        allow: config
            .runtime
            .egress_allow
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<_, _>>()?,
    };
    Ok(network)
}

async fn open_one(
    config: &NodeConfig,
    provider: &ProviderConfig,
    id: &AgoraId,
    isolation: Isolation,
    warm_sandboxes: &prometheus_client::metrics::gauge::Gauge,
) -> Result<Arc<dyn Runtime>, RuntimeError> {
    match isolation {
        Isolation::Sandbox => {
            let sandbox = SandboxRuntime::open(SandboxConfig {
                state_dir: config
                    .runtime
                    .sandbox_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("sandbox")),
                cgroup_parent: config
                    .runtime
                    .cgroup_parent
                    .clone()
                    .unwrap_or_else(|| default_cgroup_parent(id)),
                network: sandbox_network(config, provider).map_err(RuntimeError::InvalidSpec)?,
                warm: config.runtime.warm_sandboxes,
                warm_gauge: Some(warm_sandboxes.clone()),
            })
            .await?;
            for image in &config.runtime.images {
                let (store, image) = (sandbox.images_store().clone(), image.clone());
                tokio::task::spawn_blocking(move || {
                    let digest =
                        crate::runtime::images::sha256_file(&image.tarball).map_err(|e| {
                            RuntimeError::host(format!("read {}", image.tarball.display()), e)
                        })?;
                    let size = std::fs::metadata(&image.tarball)
                        .map_err(|e| {
                            RuntimeError::host(format!("stat {}", image.tarball.display()), e)
                        })?
                        .len();
                    store.import(&image.tarball, &digest, size, Some(&image.name))
                })
                .await
                .map_err(|e| RuntimeError::Unsupported(format!("image import task: {e}")))?
                .map_err(|e| {
                    RuntimeError::host(
                        "import [runtime] image",
                        std::io::Error::other(e.to_string()),
                    )
                })?;
            }
            Ok(Arc::new(sandbox))
        }
        Isolation::Docker => {
            let mut docker = config.runtime.docker.clone();
            if docker.node == DockerConfig::default().node {
                docker.node = node_tag(id);
            }
            let policy = sandbox_network(config, provider)
                .map_err(RuntimeError::InvalidSpec)?
                .policy;
            Ok(Arc::new(
                DockerRuntime::connect_with_policy(docker, policy).await?,
            ))
        }
        Isolation::Microvm => Err(RuntimeError::Unsupported(
            "the microVM runtime is not part of this version".into(),
        )),
    }
}

/// How often the reaper runs.
pub const REAPER_PERIOD: Duration = Duration::from_secs(1);
