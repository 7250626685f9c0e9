//! The node's side of every workload's life: records, the reaper and reconciliation.
//!
//! - Every workload is recorded in the store's `workloads` column before its runtime
//!   creates it, and the record is updated when it ends, so a crash at any point leaves a
//!   record or nothing of the workload's at all.
//! - The reaper ([`Supervisor::tick`], every second from [`Supervisor::run`]) ends a workload
//!   at its lifetime (`lifetime_expired`) or after `idle_timeout` without activity
//!   (`idle_timeout`). Activity is CPU used inside the workload (any process, including
//!   exec'd ones) or traffic reported through [`Supervisor::touch`] (tunnels); API calls
//!   alone are not activity. Ended workloads keep their logs for `retention`, then go.
//!   It leaves alone a workload whose launch is under way: recorded, but not yet known to
//!   its runtime (a Docker create takes a while), it is not "lost".
//! - On node start, [`Supervisor::reconcile`] compares records with what each runtime
//!   really holds: wanted workloads still running are adopted, ones that ended meanwhile
//!   get their reason recorded, and anything without a record (an orphan) is removed, so
//!   no capacity leaks across restarts.
//!
//! Time is passed in (`now`), so the reaper is tested without sleeping.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_protocol::Timestamp;
use agora_protocol::offer::Isolation;
use agora_protocol::workload::{TerminationReason, WorkloadSpec};
use serde::{Deserialize, Serialize};

use super::{Runtime, RuntimeError, WorkloadId, WorkloadState};
use crate::store::{Column, Store};

/// CPU use between two reaper passes that counts as activity (a sleeping process's
/// housekeeping does not).
pub const ACTIVE_CPU_NANOS: u64 = 10_000_000;

/// Reaper settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// End a workload after this long without activity.
    pub idle_timeout: Duration,
    /// Keep an ended workload's logs and record this long.
    pub retention: Duration,
    /// Time between SIGTERM and SIGKILL when the node ends a workload.
    pub stop_grace: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            retention: Duration::from_secs(3600),
            stop_grace: Duration::from_secs(5),
        }
    }
}

/// What the node remembers of a workload (the `workloads` column, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    /// Its id.
    pub id: WorkloadId,
    /// The runtime that runs it.
    pub isolation: Isolation,
    /// What it runs.
    pub spec: WorkloadSpec,
    /// When it was created (Unix ms).
    pub created_at: Timestamp,
    /// When its lifetime ends.
    pub expires_at: Timestamp,
    /// Last activity seen.
    pub last_active: Timestamp,
    /// CPU time at the last look (activity is a change).
    pub cpu_nanos: u64,
    /// Why it ended, once it has, and when.
    pub ended: Option<(TerminationReason, Timestamp)>,
}

/// Why a supervisor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The runtime refused or failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// This node has no runtime of that class.
    #[error("this node does not run {0} workloads")]
    NoRuntime(&'static str),
    /// A stored record does not parse.
    #[error("workload record {0} is corrupt")]
    Corrupt(String),
}

/// Runs workloads on this node's runtimes and keeps their records.
pub struct Supervisor {
    store: Arc<dyn Store>,
    runtimes: BTreeMap<Isolation, Arc<dyn Runtime>>,
    config: SupervisorConfig,
    records: Mutex<BTreeMap<WorkloadId, WorkloadRecord>>,
    /// Workloads [`Supervisor::launch`] is creating and starting right now: recorded, but
    /// their runtime may not know them yet, so the reaper leaves them alone.
    launching: Mutex<BTreeSet<WorkloadId>>,
}

/// Marks a workload as launching until dropped (also when the launch is cancelled).
struct Launching<'a> {
    set: &'a Mutex<BTreeSet<WorkloadId>>,
    id: WorkloadId,
}

impl<'a> Launching<'a> {
    fn new(set: &'a Mutex<BTreeSet<WorkloadId>>, id: WorkloadId) -> Self {
        set.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        Self { set, id }
    }
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("runtimes", &self.runtimes.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor over `runtimes`, loading the records in `store`.
    ///
    /// # Errors
    /// [`SupervisorError::Store`] or [`SupervisorError::Corrupt`].
    pub fn new(
        store: Arc<dyn Store>,
        runtimes: Vec<Arc<dyn Runtime>>,
        config: SupervisorConfig,
    ) -> Result<Self, SupervisorError> {
        let mut records = BTreeMap::new();
        for (key, value) in store.scan_prefix(Column::Workloads, b"", usize::MAX)? {
            let record: WorkloadRecord = serde_json::from_slice(&value).map_err(|_| {
                SupervisorError::Corrupt(String::from_utf8_lossy(&key).into_owned())
            })?;
            records.insert(record.id.clone(), record);
        }
        Ok(Self {
            store,
            runtimes: runtimes.into_iter().map(|r| (r.isolation(), r)).collect(),
            config,
            records: Mutex::new(records),
            launching: Mutex::default(),
        })
    }

    /// The runtimes this node runs.
    pub fn isolations(&self) -> Vec<Isolation> {
        self.runtimes.keys().copied().collect()
    }

    /// The runtime of class `isolation`.
    ///
    /// # Errors
    /// [`SupervisorError::NoRuntime`].
    pub fn runtime(&self, isolation: Isolation) -> Result<&Arc<dyn Runtime>, SupervisorError> {
        self.runtimes
            .get(&isolation)
            .ok_or(SupervisorError::NoRuntime(isolation.as_str()))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkloadId, WorkloadRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, record: &WorkloadRecord) -> Result<(), SupervisorError> {
        let json = serde_json::to_vec(record)
            .map_err(|_| SupervisorError::Corrupt(record.id.to_string()))?;
        self.store
            .put(Column::Workloads, record.id.as_str().as_bytes(), &json)?;
        self.table().insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// A record by id.
    pub fn record(&self, id: &WorkloadId) -> Option<WorkloadRecord> {
        self.table().get(id).cloned()
    }

    /// Whether [`Supervisor::launch`] is creating or starting `id` right now.
    fn is_launching(&self, id: &WorkloadId) -> bool {
        self.launching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// Every record, by id.
    pub fn records(&self) -> Vec<WorkloadRecord> {
        self.table().values().cloned().collect()
    }

    /// Records, creates and starts a workload.
    ///
    /// # Errors
    /// What the runtime or store says; a workload that failed to start is recorded as ended
    /// with [`TerminationReason::RuntimeError`] and its resources are freed.
    pub async fn launch(
        &self,
        id: WorkloadId,
        isolation: Isolation,
        spec: WorkloadSpec,
        now: Timestamp,
    ) -> Result<WorkloadRecord, SupervisorError> {
        let runtime = self.runtime(isolation)?.clone();
        if self.table().contains_key(&id) {
            return Err(RuntimeError::AlreadyExists(id).into());
        }
        let _launching = Launching::new(&self.launching, id.clone());
        let mut record = WorkloadRecord {
            id: id.clone(),
            isolation,
            expires_at: now.saturating_add(Duration::from_secs(spec.lifetime_secs)),
            spec,
            created_at: now,
            last_active: now,
            cpu_nanos: 0,
            ended: None,
        };
        self.save(&record)?;
        let started = async {
            runtime.create(&id, &record.spec).await?;
            runtime.start(&id).await
        }
        .await;
        if let Err(e) = started {
            let _ = runtime.remove(&id).await;
            if e.is_client_error() {
                // Nothing ran: no record worth keeping.
                self.store
                    .delete(Column::Workloads, id.as_str().as_bytes())?;
                self.table().remove(&id);
            } else {
                record.ended = Some((
                    TerminationReason::RuntimeError {
                        detail: e.to_string(),
                    },
                    now,
                ));
                self.save(&record)?;
            }
            return Err(e.into());
        }
        tracing::info!(workload = %id, runtime = isolation.as_str(), "workload started");
        Ok(record)
    }

    /// Ends a workload for `reason` and records it.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`] for an unknown id; runtime or store failures.
    pub async fn stop(
        &self,
        id: &WorkloadId,
        reason: TerminationReason,
        now: Timestamp,
    ) -> Result<TerminationReason, SupervisorError> {
        let mut record = self
            .record(id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        if let Some((r, _)) = &record.ended {
            return Ok(r.clone());
        }
        let runtime = self.runtime(record.isolation)?;
        let reason = runtime.stop(id, reason, self.config.stop_grace).await?;
        tracing::info!(workload = %id, reason = reason.code(), "workload stopped");
        record.ended = Some((reason.clone(), now));
        self.save(&record)?;
        Ok(reason)
    }

    /// Moves a running workload's end of life to `expires_at` (a lease extension); never
    /// earlier than it was.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`] for an unknown id; a store failure.
    pub fn extend(&self, id: &WorkloadId, expires_at: Timestamp) -> Result<(), SupervisorError> {
        let mut record = self
            .record(id)
            .ok_or_else(|| RuntimeError::NotFound(id.clone()))?;
        record.expires_at = record.expires_at.max(expires_at);
        self.save(&record)
    }

    /// Counts traffic or another sign of life (tunnels call this).
    pub fn touch(&self, id: &WorkloadId, now: Timestamp) {
        if let Some(r) = self.table().get_mut(id) {
            r.last_active = r.last_active.max(now);
        }
    }

    /// [`Runtime::close`]s every runtime (the node is stopping; workloads keep running).
    pub async fn close(&self) {
        for runtime in self.runtimes.values() {
            runtime.close().await;
        }
    }

    /// One reaper pass: records workloads that ended by themselves, ends expired and idle
    /// ones, and removes ended ones past retention. Returns what it ended.
    pub async fn tick(&self, now: Timestamp) -> Vec<(WorkloadId, TerminationReason)> {
        let mut ended = Vec::new();
        for mut record in self.records() {
            let Ok(runtime) = self.runtime(record.isolation).cloned() else {
                continue;
            };
            let id = record.id.clone();
            if let Some((_, at)) = &record.ended {
                if now.saturating_duration_since(*at) >= self.config.retention
                    && let Err(e) = self.forget(&runtime, &id).await
                {
                    tracing::warn!(workload = %id, error = %e, "cannot remove ended workload");
                }
                continue;
            }
            if self.is_launching(&id) {
                // Its runtime may not know it yet: "not found" would be no news.
                continue;
            }
            match runtime.state(&id).await {
                Ok(WorkloadState::Ended(reason)) => {
                    record.ended = Some((reason.clone(), now));
                    if let Err(e) = self.save(&record) {
                        tracing::warn!(workload = %id, error = %e, "cannot record end");
                    }
                    ended.push((id, reason));
                    continue;
                }
                Err(RuntimeError::NotFound(_)) => {
                    let reason = TerminationReason::RuntimeError {
                        detail: "the runtime lost the workload".into(),
                    };
                    record.ended = Some((reason.clone(), now));
                    let _ = self.save(&record);
                    ended.push((id, reason));
                    continue;
                }
                _ => {}
            }
            if let Ok(stats) = runtime.stats(&id).await
                && stats.cpu_nanos.saturating_sub(record.cpu_nanos) >= ACTIVE_CPU_NANOS
            {
                record.cpu_nanos = stats.cpu_nanos;
                record.last_active = record.last_active.max(now);
                // Update only what this pass measured: an extension may have moved the
                // expiry since the snapshot was taken.
                if let Some(r) = self.table().get_mut(&id) {
                    r.cpu_nanos = stats.cpu_nanos;
                    r.last_active = r.last_active.max(now);
                }
            }
            if let Some(current) = self.record(&id) {
                record.expires_at = current.expires_at;
            }
            let reason = if now >= record.expires_at {
                Some(TerminationReason::LifetimeExpired)
            } else if now.saturating_duration_since(record.last_active) >= self.config.idle_timeout
            {
                Some(TerminationReason::IdleTimeout)
            } else {
                None
            };
            if let Some(reason) = reason {
                match self.stop(&id, reason, now).await {
                    Ok(r) => ended.push((id, r)),
                    Err(e) => tracing::warn!(workload = %id, error = %e, "reaper cannot stop"),
                }
            }
        }
        ended
    }

    async fn forget(
        &self,
        runtime: &Arc<dyn Runtime>,
        id: &WorkloadId,
    ) -> Result<(), SupervisorError> {
        runtime.remove(id).await?;
        self.store
            .delete(Column::Workloads, id.as_str().as_bytes())?;
        self.table().remove(id);
        Ok(())
    }

    /// Brings records and runtimes into agreement after a (re)start; see the module docs.
    /// Returns the ids of orphans it removed.
    ///
    /// # Errors
    /// A runtime's `list` failing.
    pub async fn reconcile(&self, now: Timestamp) -> Result<Vec<WorkloadId>, SupervisorError> {
        let mut removed = Vec::new();
        for runtime in self.runtimes.values() {
            let present = runtime.list().await?;
            for info in &present {
                match self.record(&info.id) {
                    Some(record) if record.isolation == runtime.isolation() => {
                        if record.ended.is_some() && info.state != WorkloadState::Created {
                            // Recorded as ended but still holding resources: make it so.
                            let _ = runtime
                                .stop(
                                    &info.id,
                                    TerminationReason::ProviderShutdown,
                                    Duration::ZERO,
                                )
                                .await;
                        } else {
                            tracing::info!(workload = %info.id, state = info.state.name(), "adopted");
                        }
                    }
                    _ => {
                        tracing::warn!(workload = %info.id, "orphan workload; removing");
                        if let Err(e) = runtime.remove(&info.id).await {
                            tracing::warn!(workload = %info.id, error = %e, "cannot remove orphan");
                        }
                        removed.push(info.id.clone());
                    }
                }
            }
            for mut record in self.records() {
                if record.isolation == runtime.isolation()
                    && record.ended.is_none()
                    && !present.iter().any(|p| p.id == record.id)
                {
                    record.ended = Some((
                        TerminationReason::RuntimeError {
                            detail: "gone after a node restart".into(),
                        },
                        now,
                    ));
                    self.save(&record)?;
                }
            }
        }
        // Pick up whatever ended while the node was down.
        self.tick(now).await;
        Ok(removed)
    }

    /// Ends every running workload with [`TerminationReason::ProviderShutdown`] (the node is
    /// going away for good, not restarting).
    pub async fn shutdown_all(&self, now: Timestamp) {
        for record in self.records() {
            if record.ended.is_none()
                && let Err(e) = self
                    .stop(&record.id, TerminationReason::ProviderShutdown, now)
                    .await
            {
                tracing::warn!(workload = %record.id, error = %e, "cannot stop at shutdown");
            }
        }
    }

    /// Runs the reaper every `period` until `shutdown` fires.
    pub async fn run(
        self: Arc<Self>,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    for (id, reason) in self.tick(crate::clock::now()).await {
                        tracing::info!(workload = %id, reason = reason.code(), "workload ended");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use agora_protocol::Digest;
    use agora_protocol::offer::ImageRef;
    use futures::stream::BoxStream;
    use tokio::sync::Notify;

    use super::*;
    use crate::runtime::{ByteStream, ExecRequest, ExecSession, OutputChunk, Stats, WorkloadInfo};
    use crate::store::MemStore;

    /// A runtime whose `create` takes as long as the test wants: the workload exists (for
    /// `state`) only once `create` returns.
    #[derive(Default)]
    struct Slow {
        entered: Notify,
        release: Notify,
        created: AtomicBool,
        started: AtomicBool,
    }

    fn unsupported<T>() -> Result<T, RuntimeError> {
        Err(RuntimeError::Unsupported("slow".into()))
    }

    #[async_trait::async_trait]
    impl Runtime for Slow {
        fn isolation(&self) -> Isolation {
            Isolation::Docker
        }
        async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
            Ok(Vec::new())
        }
        async fn import_image(
            &self,
            _: &std::path::Path,
            _: &Digest,
            _: u64,
        ) -> Result<(), RuntimeError> {
            unsupported()
        }
        async fn create(&self, _: &WorkloadId, _: &WorkloadSpec) -> Result<(), RuntimeError> {
            self.entered.notify_one();
            self.release.notified().await;
            self.created.store(true, Ordering::SeqCst);
            Ok(())
        }
        async fn start(&self, _: &WorkloadId) -> Result<(), RuntimeError> {
            self.started.store(true, Ordering::SeqCst);
            Ok(())
        }
        async fn exec(&self, _: &WorkloadId, _: ExecRequest) -> Result<ExecSession, RuntimeError> {
            unsupported()
        }
        async fn logs(
            &self,
            _: &WorkloadId,
            _: bool,
        ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
            unsupported()
        }
        async fn stats(&self, _: &WorkloadId) -> Result<Stats, RuntimeError> {
            Ok(Stats::default())
        }
        async fn state(&self, id: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
            if !self.created.load(Ordering::SeqCst) {
                return Err(RuntimeError::NotFound(id.clone()));
            }
            Ok(if self.started.load(Ordering::SeqCst) {
                WorkloadState::Running
            } else {
                WorkloadState::Created
            })
        }
        async fn stop(
            &self,
            _: &WorkloadId,
            reason: TerminationReason,
            _: Duration,
        ) -> Result<TerminationReason, RuntimeError> {
            Ok(reason)
        }
        async fn remove(&self, _: &WorkloadId) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
            Ok(Vec::new())
        }
        async fn connect(
            &self,
            _: &WorkloadId,
            _: u16,
        ) -> Result<Box<dyn ByteStream>, RuntimeError> {
            unsupported()
        }
    }

    #[tokio::test]
    async fn the_reaper_leaves_a_workload_being_launched_alone() {
        let slow = Arc::new(Slow::default());
        let runtime: Arc<dyn Runtime> = slow.clone();
        let sup = Arc::new(
            Supervisor::new(
                Arc::new(MemStore::new()),
                vec![runtime],
                SupervisorConfig::default(),
            )
            .unwrap(),
        );
        let id = WorkloadId::random();
        let now = Timestamp::from_unix_millis(1_000_000);
        let spec = WorkloadSpec::example(Digest::of(b"busybox"), &["sleep", "60"]);
        let launch = tokio::spawn({
            let (sup, id) = (sup.clone(), id.clone());
            async move { sup.launch(id, Isolation::Docker, spec, now).await }
        });
        // Recorded, its create under way and the runtime not knowing it yet: a reaper pass
        // now must not take it for lost.
        slow.entered.notified().await;
        assert!(sup.record(&id).is_some());
        assert!(sup.tick(now).await.is_empty());
        assert_eq!(sup.record(&id).unwrap().ended, None);
        slow.release.notify_one();
        launch.await.unwrap().unwrap();
        assert!(sup.tick(now).await.is_empty());
        assert_eq!(sup.record(&id).unwrap().ended, None);
        assert!(!sup.is_launching(&id));
    }
}
