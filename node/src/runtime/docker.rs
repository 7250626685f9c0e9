//! The Docker runtime: a hardened container per workload, through the engine's API (bollard).
//!
//! [`DockerRuntime::connect`] takes a [`DockerConfig`], negotiates the API version (engines as
//! old as API 1.41 work), and checks that the configured runtime class (`runsc`, `kata`) is
//! installed. It never pulls from a registry: a workload starts from an image already on the
//! engine, pinned by its id, or from a tarball the agent uploaded.
//!
//! ```no_run
//! # async fn demo(spec: agora_protocol::workload::WorkloadSpec) -> Result<(), agora_node::runtime::RuntimeError> {
//! use agora_node::runtime::docker::{DockerConfig, DockerRuntime};
//! use agora_node::runtime::{Runtime, WorkloadId};
//! let rt = DockerRuntime::connect(DockerConfig { node: "n1".into(), ..Default::default() }).await?;
//! let id = WorkloadId::random();
//! rt.create(&id, &spec).await?;
//! rt.start(&id).await?;
//! # Ok(()) }
//! ```
//!
//! # Hardening
//! Every container is created unprivileged with all capabilities dropped,
//! `no-new-privileges`, the engine's default seccomp profile, a read-only root filesystem with
//! a size-limited tmpfs on `/tmp` (`resources.disk_mib`), a pids limit, a memory limit with
//! swap off (`memory_swap == memory`), a CPU quota (`nano_cpus`), a private IPC namespace, a
//! positive OOM score (the host's OOM killer takes workloads first), capped logs, no restart
//! policy, and optionally a non-root user and another OCI runtime class.
//!
//! # Images
//! - Offered images are local images tagged under [`DockerConfig::offer_prefix`]
//!   (`agora/busybox:latest` is offered as `busybox`), listed by [`Runtime::images`] with the
//!   image id as digest. `ImageSource::Named { name, digest }` starts only the image whose id
//!   is `sha256:<digest>` and which is offered under `name`, so a provider cannot substitute
//!   another image, nor an agent start an image the provider did not offer.
//! - [`Runtime::import_image`] checks an upload's size and SHA-256, then imports a root
//!   filesystem tarball (like `docker import`) or loads a `docker save` archive of one image
//!   (like `docker load`, with its tags removed so an upload cannot re-point an offered tag).
//!   The image is tagged `agora-upload:<full sha256 of the tarball>`, which is how
//!   `ImageSource::Tarball { digest, .. }` finds it, also after a node restart. Uploads are
//!   never listed as offered images.
//!
//! # Networks
//! A workload without network (`network.enabled == false`) gets network mode `none`: only
//! loopback. Otherwise it joins one of two bridge networks per node, created at connect and
//! kept warm so no workload pays for network creation: `<prefix>-<node>-wl` (egress) and
//! `<prefix>-<node>-wl-int` (Docker `internal`: no route out). Both disable inter-container
//! traffic (`enable_icc=false`), so workloads of one node cannot reach each other. The node
//! reaches a workload's exposed ports on its bridge address ([`Runtime::connect`]).
//!
//! Firewall policy is not this module's job: the network policy layer applies its rules
//! (SMTP, host, private and link-local ranges, metadata, allow-lists) to these bridges and to
//! each workload's address, which [`DockerRuntime::address`] reports.
//!
//! # Files
//! [`Runtime::put_files`] and [`Runtime::get_files`] run the image's `tar` in an exec
//! ([`super::files`]), like the sandbox, rather than the engine's archive API
//! (`PUT`/`GET /containers/{id}/archive`, i.e. `docker cp`). That API cannot serve these
//! containers: it refuses any upload into a container whose root filesystem is read-only
//! ("container rootfs is marked read-only", also for paths on a tmpfs), and it reads the
//! container's layers from the daemon's side, so it never sees the tmpfs on `/tmp`, the one
//! writable place (moby/moby#22020): a download there returns the empty image directory.
//! Inside the container tar sees exactly what the workload sees, runs as its user, and any
//! symlink it planted resolves inside the container.
//!
//! # Termination reasons
//! The engine cannot relabel a container after create, so reasons this node decided (stopped
//! by agent, lifetime expired, …) are kept in memory until the workload is removed. A
//! workload that ended by itself, or one a previous node process left, maps from the engine's
//! state: `OOMKilled` is [`TerminationReason::OomKilled`], a start error is
//! [`TerminationReason::RuntimeError`], otherwise [`TerminationReason::Exited`] with its code.

mod config;
mod container;
mod images;
mod network;
mod stream;
mod upload;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agora_protocol::Digest;
use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::workload::{TerminationReason, WorkloadSpec};
use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::{debug, info, warn};

pub use config::{DockerConfig, DockerConfigError};
use container::state_of;

use super::{
    ByteStream, ExecRequest, ExecSession, OutputChunk, Runtime, RuntimeError, Stats, WorkloadId,
    WorkloadInfo, WorkloadState,
};

/// Repository of uploaded images (`agora-upload:<sha256 of the tarball>`).
pub const UPLOAD_REPO: &str = "agora-upload";

/// Smallest memory limit the engine accepts, MiB.
const MIN_MEMORY_MIB: u64 = 6;
/// Smallest CPU quota the engine accepts, thousandths of a vCPU.
const MIN_VCPU_MILLI: u32 = 10;

/// A hardened Docker container per workload. See the [module docs](self).
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    host: String,
    host_cpus_milli: u64,
    /// Reasons this process decided, until the workload is removed.
    reasons: Mutex<HashMap<WorkloadId, TerminationReason>>,
    /// The largest counters seen per workload: the engine reports zeros once it ended.
    last_stats: Mutex<HashMap<WorkloadId, Stats>>,
    /// Uploaded tarball digest → engine image id.
    uploads: Mutex<HashMap<Digest, String>>,
    /// Networks known to exist.
    networks: Mutex<HashSet<String>>,
    /// Serialises network creation (each network must be made once).
    network_setup: tokio::sync::Mutex<()>,
    /// Serialises image imports (each upload is imported once).
    imports: tokio::sync::Mutex<()>,
    /// What workloads may reach (installed on both workload networks' bridges).
    policy: crate::runtime::netpolicy::Policy,
    /// Why workloads cannot have a network here (the policy could not be installed).
    no_network: Option<String>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("host", &self.host)
            .field("node", &self.config.node)
            .field("runtime_class", &self.config.runtime_class)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn status_of(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn describe(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        EngineError::RequestTimeoutError => "the engine did not answer in time".into(),
        other => other.to_string(),
    }
}

fn engine(op: &str, e: &EngineError) -> RuntimeError {
    RuntimeError::Docker(format!("{op}: {}", describe(e)))
}

/// "No such container" is the workload missing; anything else (including a 404 for a
/// missing network or image) is the engine failing.
fn for_workload(op: &str, id: &WorkloadId, e: &EngineError) -> RuntimeError {
    let missing = match e {
        EngineError::DockerResponseServerError {
            status_code: 404,
            message,
        } => message.to_ascii_lowercase().contains("no such container"),
        _ => false,
    };
    if missing {
        RuntimeError::NotFound(id.clone())
    } else {
        engine(&format!("{op} {id}"), e)
    }
}

impl DockerRuntime {
    /// Connects to the engine (`config.host`, else `DOCKER_HOST`, else the local socket),
    /// negotiates the API version, checks the runtime class and creates this node's two
    /// workload networks if they are missing.
    ///
    /// # Errors
    /// [`RuntimeError::Unsupported`] for an invalid config or a runtime class the engine does
    /// not have; [`RuntimeError::Docker`] when no engine answers in time.
    pub async fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let policy = crate::runtime::netpolicy::Policy {
            egress: true,
            blocked_ports: Vec::new(),
            allow: Vec::new(),
        };
        Self::connect_with_policy(config, policy).await
    }

    /// [`DockerRuntime::connect`] with the provider's network policy. When the policy cannot
    /// be installed (no iptables, no privileges: e.g. a node inside a container), workloads
    /// run without any network, and asking for one is a clear error.
    ///
    /// # Errors
    /// As [`DockerRuntime::connect`].
    pub async fn connect_with_policy(
        config: DockerConfig,
        policy: crate::runtime::netpolicy::Policy,
    ) -> Result<Self, RuntimeError> {
        config
            .validate()
            .map_err(|e| RuntimeError::Unsupported(e.to_string()))?;
        let host = config
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |e: &EngineError| {
            RuntimeError::Docker(format!("no engine answers at {host}: {}", describe(e)))
        };
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| unreachable(&e))?
            .with_timeout(config.api_timeout());
        let docker =
            match tokio::time::timeout(config.api_timeout(), docker.negotiate_version()).await {
                Ok(Ok(docker)) => docker,
                Ok(Err(e)) => return Err(unreachable(&e)),
                Err(_) => return Err(unreachable(&EngineError::RequestTimeoutError)),
            };
        let info = match tokio::time::timeout(config.api_timeout(), docker.info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => return Err(unreachable(&EngineError::RequestTimeoutError)),
        };
        if let Some(class) = &config.runtime_class {
            let mut known: Vec<String> = info
                .runtimes
                .as_ref()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            if !known.contains(class) {
                known.sort();
                return Err(RuntimeError::Unsupported(format!(
                    "runtime class {class:?} is not installed on the Docker engine at {host} (it has: {})",
                    known.join(", ")
                )));
            }
        }
        let cpus = info.ncpu.and_then(|n| u64::try_from(n).ok()).unwrap_or(1);
        let mut rt = Self {
            docker,
            config,
            host,
            host_cpus_milli: cpus.saturating_mul(1000),
            reasons: Mutex::default(),
            last_stats: Mutex::default(),
            uploads: Mutex::default(),
            networks: Mutex::default(),
            network_setup: tokio::sync::Mutex::new(()),
            imports: tokio::sync::Mutex::new(()),
            policy,
            no_network: None,
        };
        rt.ensure_network(true).await?;
        rt.ensure_network(false).await?;
        if let Err(e) = rt.install_policy().await {
            tracing::warn!(error = %e, "cannot install the network policy: docker workloads get no network");
            rt.no_network = Some(e.to_string());
        }
        info!(
            host = %rt.host,
            node = %rt.config.node,
            api = %rt.docker.client_version(),
            runtime_class = rt.config.runtime_class.as_deref().unwrap_or("default"),
            "docker runtime ready"
        );
        Ok(rt)
    }

    /// The configuration in use.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The container name of workload `id` on this node.
    pub fn container_name(&self, id: &WorkloadId) -> String {
        format!("{}-{}-{id}", self.config.label_prefix, self.config.node)
    }

    /// The label naming the workload of a container.
    fn workload_label(&self) -> String {
        format!("{}.workload", self.config.label_prefix)
    }

    /// The label naming the node that owns a container or network.
    fn node_label(&self) -> String {
        format!("{}.node", self.config.label_prefix)
    }

    /// The label listing a workload's exposed ports (`8080/tcp,53/udp`).
    fn ports_label(&self) -> String {
        format!("{}.ports", self.config.label_prefix)
    }

    /// Runs one engine call under the API timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        tokio::time::timeout(self.config.api_timeout(), call)
            .await
            .unwrap_or(Err(EngineError::RequestTimeoutError))
    }

    async fn inspect(&self, id: &WorkloadId) -> Result<ContainerInspectResponse, RuntimeError> {
        let name = self.container_name(id);
        self.bounded(self.docker.inspect_container(&name, None))
            .await
            .map_err(|e| for_workload("inspect", id, &e))
    }

    fn recorded(&self, id: &WorkloadId) -> Option<TerminationReason> {
        lock(&self.reasons).get(id).cloned()
    }

    /// Records `reason` unless one is recorded; returns the one that stands.
    fn record(&self, id: &WorkloadId, reason: TerminationReason) -> TerminationReason {
        lock(&self.reasons)
            .entry(id.clone())
            .or_insert(reason)
            .clone()
    }

    /// One stats sample, merged with the largest counters seen before.
    async fn sample(&self, id: &WorkloadId) -> Result<Stats, RuntimeError> {
        let name = self.container_name(id);
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut samples = self.docker.stats(&name, Some(options));
        let now = match tokio::time::timeout(self.config.api_timeout(), samples.next()).await {
            Ok(Some(Ok(sample))) => stream::stats_of(&sample),
            Ok(Some(Err(e))) => return Err(for_workload("stats", id, &e)),
            Ok(None) => Stats::default(),
            Err(_) => return Err(for_workload("stats", id, &EngineError::RequestTimeoutError)),
        };
        let mut last = lock(&self.last_stats);
        let merged = stream::merge(last.get(id).copied().unwrap_or_default(), now);
        last.insert(id.clone(), merged);
        Ok(merged)
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn isolation(&self) -> Isolation {
        Isolation::Docker
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
        self.offered_images().await
    }

    #[tracing::instrument(level = "info", skip_all, fields(digest = %digest, size_bytes = size_bytes))]
    async fn import_image(
        &self,
        path: &std::path::Path,
        digest: &Digest,
        size_bytes: u64,
    ) -> Result<(), RuntimeError> {
        self.import_upload(path, digest, size_bytes).await
    }

    #[tracing::instrument(level = "info", skip_all, fields(workload = %id))]
    async fn create(&self, id: &WorkloadId, spec: &WorkloadSpec) -> Result<(), RuntimeError> {
        spec.validate()
            .map_err(|e| RuntimeError::Unsupported(format!("invalid workload spec: {e}")))?;
        let r = spec.resources;
        if r.vcpu_milli < MIN_VCPU_MILLI || u64::from(r.vcpu_milli) > self.host_cpus_milli {
            return Err(RuntimeError::Unsupported(format!(
                "vcpu_milli {} is outside {MIN_VCPU_MILLI}..={} on this host",
                r.vcpu_milli, self.host_cpus_milli
            )));
        }
        if r.memory_mib < MIN_MEMORY_MIB {
            return Err(RuntimeError::Unsupported(format!(
                "memory_mib {} is below the engine's minimum of {MIN_MEMORY_MIB}",
                r.memory_mib
            )));
        }
        let image = self.resolve(&spec.image).await?;
        let image_id = image.id.clone().ok_or_else(|| {
            RuntimeError::Docker("the engine reported an image without id".into())
        })?;
        let has_default = image.config.as_ref().is_some_and(|c| {
            c.cmd.as_ref().is_some_and(|v| !v.is_empty())
                || c.entrypoint.as_ref().is_some_and(|v| !v.is_empty())
        });
        if spec.command.is_empty() && !has_default {
            return Err(RuntimeError::Unsupported(
                "the image has no default command; the spec must give one".into(),
            ));
        }
        let name = self.container_name(id);
        let mut network_checked = false;
        loop {
            if spec.network.enabled
                && let Some(why) = &self.no_network
            {
                return Err(RuntimeError::Unsupported(format!(
                    "workload networking on this host: {why}"
                )));
            }
            if spec.network.egress && !self.policy.egress {
                return Err(RuntimeError::Unsupported(
                    "outbound connections (egress): this provider does not allow them".into(),
                ));
            }
            let network_mode = if spec.network.enabled {
                self.ensure_network(spec.network.egress).await?
            } else {
                "none".into()
            };
            let body = self.container_body(id, spec, &image_id, network_mode.clone())?;
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            let Err(e) = self
                .bounded(self.docker.create_container(Some(options), body))
                .await
            else {
                break;
            };
            match status_of(&e) {
                Some(409) => return Err(RuntimeError::AlreadyExists(id.clone())),
                // Someone removed the node's network behind its back: make it again, once.
                Some(404)
                    if spec.network.enabled
                        && !network_checked
                        && describe(&e).contains("network") =>
                {
                    warn!(network = %network_mode, "workload network vanished, recreating");
                    lock(&self.networks).remove(&network_mode);
                    network_checked = true;
                }
                Some(404) => {
                    return Err(RuntimeError::ImageNotFound(format!(
                        "{image_id}: {}",
                        describe(&e)
                    )));
                }
                _ => return Err(engine(&format!("create {id}"), &e)),
            }
        }
        lock(&self.reasons).remove(id);
        lock(&self.last_stats).remove(id);
        info!(container = %name, image = %image_id, "workload created");
        Ok(())
    }

    #[tracing::instrument(level = "info", skip_all, fields(workload = %id))]
    async fn start(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let info = self.inspect(id).await?;
        let state = info.state.unwrap_or_default();
        match state_of(self.recorded(id).as_ref(), &state) {
            WorkloadState::Created => {}
            WorkloadState::Running => return Ok(()),
            ended @ WorkloadState::Ended(_) => {
                return Err(RuntimeError::WrongState {
                    id: id.clone(),
                    state: ended.name(),
                    op: "start",
                });
            }
        }
        let name = self.container_name(id);
        let Err(e) = self.bounded(self.docker.start_container(&name, None)).await else {
            debug!("workload started");
            return Ok(());
        };
        // The engine resolves the network at start: one removed behind the runtime's back
        // (404 naming it) is made again, once.
        let network = info
            .host_config
            .and_then(|h| h.network_mode)
            .filter(|n| *n == self.network_name(true) || *n == self.network_name(false));
        let Some(network) =
            network.filter(|_| status_of(&e) == Some(404) && describe(&e).contains("network"))
        else {
            return Err(for_workload("start", id, &e));
        };
        warn!(network = %network, "workload network vanished, recreating");
        lock(&self.networks).remove(&network);
        self.ensure_network(network == self.network_name(true))
            .await?;
        self.bounded(self.docker.start_container(&name, None))
            .await
            .map_err(|e| for_workload("start", id, &e))?;
        debug!("workload started");
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id))]
    async fn exec(&self, id: &WorkloadId, req: ExecRequest) -> Result<ExecSession, RuntimeError> {
        if req.command.is_empty() {
            return Err(RuntimeError::Unsupported("exec needs a command".into()));
        }
        let name = self.container_name(id);
        let options = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(req.tty),
            env: Some(req.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(req.command),
            working_dir: req.workdir,
            user: self.config.user.clone(),
            privileged: Some(false),
            ..Default::default()
        };
        let created = self
            .bounded(self.docker.create_exec(&name, options))
            .await
            .map_err(|e| match status_of(&e) {
                Some(409) => RuntimeError::WrongState {
                    id: id.clone(),
                    state: "not running",
                    op: "exec",
                },
                _ => for_workload("exec", id, &e),
            })?;
        let start = StartExecOptions {
            detach: false,
            tty: req.tty,
            output_capacity: Some(64 * 1024),
        };
        let started = self
            .bounded(self.docker.start_exec(&created.id, Some(start)))
            .await
            .map_err(|e| for_workload("start exec", id, &e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Docker(format!(
                "exec {} in {id} started detached",
                created.id
            )));
        };
        Ok(stream::session(
            self.docker.clone(),
            created.id,
            output,
            input,
            req.tty,
            self.config.api_timeout(),
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id, follow = follow))]
    async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        // Ask first, so a missing workload is an error here rather than in the stream.
        self.inspect(id).await?;
        Ok(stream::logs(
            self.docker.clone(),
            self.container_name(id),
            follow,
            self.config.api_timeout(),
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id))]
    async fn stats(&self, id: &WorkloadId) -> Result<Stats, RuntimeError> {
        self.sample(id).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id))]
    async fn state(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
        let info = self.inspect(id).await?;
        Ok(self.workload_state(id, &info).await)
    }

    #[tracing::instrument(level = "info", skip_all, fields(workload = %id, reason = reason.code()))]
    async fn stop(
        &self,
        id: &WorkloadId,
        reason: TerminationReason,
        grace: Duration,
    ) -> Result<TerminationReason, RuntimeError> {
        let info = self.inspect(id).await?;
        match self.workload_state(id, &info).await {
            WorkloadState::Ended(own) => return Ok(own),
            WorkloadState::Created => return Ok(self.record(id, reason)),
            WorkloadState::Running => {}
        }
        // The last sample before the end: the engine reports zeros afterwards.
        if let Err(e) = self.sample(id).await {
            debug!(error = %e, "no stats before stop");
        }
        let mut recorded = self.record(id, reason);
        let name = self.container_name(id);
        let grace_secs = i32::try_from(
            grace
                .as_secs()
                .saturating_add(u64::from(grace.subsec_nanos() > 0)),
        )
        .unwrap_or(i32::MAX);
        let wait = grace.saturating_add(self.config.api_timeout());
        let client = self.docker.clone().with_timeout(wait);
        let options = StopContainerOptionsBuilder::new().t(grace_secs).build();
        let stopped = tokio::time::timeout(wait, client.stop_container(&name, Some(options)))
            .await
            .unwrap_or(Err(EngineError::RequestTimeoutError));
        if let Err(e) = stopped {
            if status_of(&e) == Some(404) {
                return Err(for_workload("stop", id, &e));
            }
            warn!(error = %describe(&e), "stop failed, killing");
            let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
            match self
                .bounded(self.docker.kill_container(&name, Some(kill)))
                .await
            {
                // 409: it is not running (any more).
                Ok(()) => {}
                Err(e) if status_of(&e) == Some(409) => {}
                Err(e) => return Err(for_workload("kill", id, &e)),
            }
        }
        let after = self.inspect(id).await?.state.unwrap_or_default();
        if after.oom_killed == Some(true) {
            // The kernel ended it for memory before (or while) it was stopped.
            recorded = TerminationReason::OomKilled;
            lock(&self.reasons).insert(id.clone(), recorded.clone());
        }
        info!(code = recorded.code(), "workload stopped");
        Ok(recorded)
    }

    #[tracing::instrument(level = "info", skip_all, fields(workload = %id))]
    async fn remove(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let name = self.container_name(id);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .bounded(self.docker.remove_container(&name, Some(options)))
            .await
        {
            Ok(()) => info!("workload removed"),
            Err(e) if status_of(&e) == Some(404) => {}
            // 409: removal already in progress; the engine finishes it.
            Err(e) if status_of(&e) == Some(409) => {
                debug!(error = %describe(&e), "removal in progress")
            }
            Err(e) => return Err(for_workload("remove", id, &e)),
        }
        lock(&self.reasons).remove(id);
        lock(&self.last_stats).remove(id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={}", self.node_label(), self.config.node)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .bounded(self.docker.list_containers(Some(options)))
            .await
            .map_err(|e| engine("list containers", &e))?;
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let Some(label) = c
                .labels
                .as_ref()
                .and_then(|l| l.get(&self.workload_label()))
            else {
                continue;
            };
            let Ok(id) = label.parse::<WorkloadId>() else {
                warn!(label = %label, "container with an invalid workload label");
                continue;
            };
            use ContainerSummaryStateEnum as S;
            let state = match c.state {
                Some(S::RUNNING | S::PAUSED | S::RESTARTING) => WorkloadState::Running,
                Some(S::CREATED) => match self.recorded(&id) {
                    Some(r) => WorkloadState::Ended(r),
                    None => WorkloadState::Created,
                },
                // Ended: the reason needs the full state (exit code, OOM).
                _ => match self.state(&id).await {
                    Ok(state) => state,
                    Err(RuntimeError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                },
            };
            out.push(WorkloadInfo { id, state });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    // The stream goes to the container's address over its bridge interface, whose counters
    // `stats` reads: tunnel bytes are in `net_tx_bytes` already.
    fn connect_counted_in_stats(&self) -> bool {
        true
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id, port = port))]
    async fn connect(
        &self,
        id: &WorkloadId,
        port: u16,
    ) -> Result<Box<dyn ByteStream>, RuntimeError> {
        let refuse = |reason: String| RuntimeError::Connect { port, reason };
        let info = self.inspect(id).await?;
        let exposed = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(&self.ports_label()))
            .is_some_and(|ports| ports.split(',').any(|p| p == format!("{port}/tcp")));
        if !exposed {
            return Err(refuse(format!(
                "TCP port {port} is not exposed by the workload's spec"
            )));
        }
        if info.state.as_ref().and_then(|s| s.running) != Some(true) {
            return Err(refuse("the workload is not running".into()));
        }
        let ip = self
            .address_of(&info)
            .ok_or_else(|| refuse("the workload has no network".into()))?;
        let stream = tokio::time::timeout(
            self.config.api_timeout(),
            tokio::net::TcpStream::connect((ip, port)),
        )
        .await
        .map_err(|_| refuse(format!("{ip}:{port} did not answer in time")))?
        .map_err(|e| refuse(format!("{ip}:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }

    // Through the image's `tar` in an exec, not the engine's archive API (see "Files" in the
    // module docs): that API refuses every upload to a read-only root filesystem, and reads
    // the image layer under `/tmp` instead of the workload's tmpfs.
    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id))]
    async fn put_files(
        &self,
        id: &WorkloadId,
        path: &str,
        tar: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<u64, RuntimeError> {
        super::files::put_via_exec(self, id, path, tar).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(workload = %id))]
    async fn get_files(
        &self,
        id: &WorkloadId,
        path: &str,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, RuntimeError> {
        super::files::get_via_exec(self, id, path).await
    }
}
