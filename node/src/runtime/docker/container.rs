//! What a workload's container looks like (hardening, limits, labels) and how its engine
//! state maps to a [`WorkloadState`].

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_protocol::workload::{TerminationReason, Transport, WorkloadSpec};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};

use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;
use tracing::debug;

use super::DockerRuntime;
use crate::runtime::{RuntimeError, WorkloadId, WorkloadState};

/// OOM score adjustment of workloads: under host memory pressure they go first.
const OOM_SCORE_ADJ: i64 = 500;

/// Why an ended container ended, from the engine's view alone.
fn ended_reason(state: &ContainerState) -> TerminationReason {
    if state.oom_killed == Some(true) {
        return TerminationReason::OomKilled;
    }
    match state.error.as_deref() {
        Some(error) if !error.is_empty() => TerminationReason::RuntimeError {
            detail: error.chars().take(512).collect(),
        },
        _ => TerminationReason::Exited {
            code: state
                .exit_code
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(-1),
        },
    }
}

/// Where a container is, given the reason this process recorded (if any).
pub(super) fn state_of(
    recorded: Option<&TerminationReason>,
    state: &ContainerState,
) -> WorkloadState {
    use ContainerStateStatusEnum as S;
    let ended = || WorkloadState::Ended(recorded.cloned().unwrap_or_else(|| ended_reason(state)));
    match state.status {
        Some(S::RUNNING | S::PAUSED | S::RESTARTING) => WorkloadState::Running,
        Some(S::EXITED | S::DEAD | S::REMOVING | S::STOPPING) => ended(),
        // Created: ended if this node stopped it before it started.
        _ => match recorded {
            Some(r) => WorkloadState::Ended(r.clone()),
            None => WorkloadState::Created,
        },
    }
}

/// How many times the engine's event log is read for the `oom` event of a workload killed
/// by SIGKILL that this node did not kill (an engine busy with many containers logs it late:
/// CI saw it missing after 0.8 s, a full local test run after 3 s).
pub(super) const OOM_EVENT_TRIES: u32 = 20;

/// How long between those reads.
pub(super) const OOM_EVENT_WAIT: core::time::Duration = core::time::Duration::from_millis(300);

impl DockerRuntime {
    /// Where a workload is. An exit by SIGKILL (137) that this node did not cause, with the
    /// engine's `OOMKilled` flag unset, is checked against the engine's event log: the flag
    /// misses an OOM whose notice arrives after the exit (seen under load on cgroup v1), the
    /// `oom` event does not, though under load it too may trail the exit by a moment, so
    /// the log is read up to [`OOM_EVENT_TRIES`] times [`OOM_EVENT_WAIT`] apart. The
    /// verdict (an OOM, or a kill by something else) is recorded, so it is reached once.
    pub(super) async fn workload_state(
        &self,
        id: &WorkloadId,
        info: &ContainerInspectResponse,
    ) -> WorkloadState {
        let recorded = self.recorded(id);
        let state = info.state.clone().unwrap_or_default();
        let current = state_of(recorded.as_ref(), &state);
        let killed = TerminationReason::Exited { code: 137 };
        if recorded.is_none()
            && current == WorkloadState::Ended(killed.clone())
            && let Some(container) = info.id.as_deref()
        {
            for attempt in 1..=OOM_EVENT_TRIES {
                if self.oom_logged(container).await {
                    return WorkloadState::Ended(self.record(id, TerminationReason::OomKilled));
                }
                if attempt < OOM_EVENT_TRIES {
                    tokio::time::sleep(OOM_EVENT_WAIT).await;
                }
            }
            return WorkloadState::Ended(self.record(id, killed));
        }
        current
    }

    /// Whether the engine's event log holds an `oom` event for `container`.
    async fn oom_logged(&self, container: &str) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let until = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
        let filters = HashMap::from([
            ("type", vec!["container".to_owned()]),
            ("event", vec!["oom".to_owned()]),
            ("container", vec![container.to_owned()]),
        ]);
        let options = EventsOptionsBuilder::new()
            .since("0")
            .until(&until)
            .filters(&filters)
            .build();
        let events = self.docker.events(Some(options));
        futures::pin_mut!(events);
        match tokio::time::timeout(self.config.api_timeout(), events.next()).await {
            Ok(Some(Ok(_))) => true,
            Ok(Some(Err(e))) => {
                debug!(error = %e, "cannot read engine events");
                false
            }
            Ok(None) | Err(_) => false,
        }
    }

    /// The container to create for `spec` from `image` (an engine image id).
    pub(super) fn container_body(
        &self,
        id: &WorkloadId,
        spec: &WorkloadSpec,
        image: &str,
        network_mode: String,
    ) -> Result<ContainerCreateBody, RuntimeError> {
        let r = spec.resources;
        let memory = r
            .memory_mib
            .checked_mul(1 << 20)
            .and_then(|b| i64::try_from(b).ok())
            .ok_or_else(|| RuntimeError::Unsupported(format!("memory_mib {}", r.memory_mib)))?;
        let tmp_mib = if r.disk_mib == 0 {
            self.config.tmp_default_mib
        } else {
            r.disk_mib
        };
        let ports = spec
            .ports
            .iter()
            .map(|p| {
                let transport = match p.transport {
                    Transport::Tcp => "tcp",
                    Transport::Udp => "udp",
                };
                format!("{}/{transport}", p.port)
            })
            .collect::<Vec<_>>()
            .join(",");
        let (entrypoint, cmd) = match spec.command.split_first() {
            Some((program, args)) => (Some(vec![program.clone()]), Some(args.to_vec())),
            None => (None, None),
        };
        let host_config = HostConfig {
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".into(),
                format!("rw,nosuid,nodev,exec,mode=1777,size={tmp_mib}m"),
            )])),
            pids_limit: Some(i64::from(r.pids)),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(i64::from(r.vcpu_milli) * 1_000_000),
            oom_score_adj: Some(OOM_SCORE_ADJ),
            ipc_mode: Some("private".into()),
            init: Some(self.config.init),
            network_mode: Some(network_mode),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    (
                        "max-size".into(),
                        format!("{}k", (self.config.log_max_bytes / 1024).max(1)),
                    ),
                    ("max-file".into(), "1".into()),
                ])),
            }),
            runtime: self.config.runtime_class.clone(),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(image.to_owned()),
            hostname: Some(id.to_string()),
            user: self.config.user.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: spec.workdir.clone(),
            entrypoint,
            cmd,
            labels: Some(HashMap::from([
                (self.workload_label(), id.to_string()),
                (self.node_label(), self.config.node.clone()),
                (self.ports_label(), ports),
            ])),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum, code: i64, oom: bool) -> ContainerState {
        ContainerState {
            status: Some(status),
            exit_code: Some(code),
            oom_killed: Some(oom),
            ..Default::default()
        }
    }

    #[test]
    fn ended_containers_map_to_reasons() {
        use ContainerStateStatusEnum as S;
        assert_eq!(
            state_of(None, &state(S::EXITED, 3, false)),
            WorkloadState::Ended(TerminationReason::Exited { code: 3 })
        );
        assert_eq!(
            state_of(None, &state(S::EXITED, 137, true)),
            WorkloadState::Ended(TerminationReason::OomKilled)
        );
        let stopped = TerminationReason::StoppedByAgent;
        assert_eq!(
            state_of(Some(&stopped), &state(S::EXITED, 143, false)),
            WorkloadState::Ended(stopped.clone())
        );
        assert_eq!(
            state_of(Some(&stopped), &state(S::CREATED, 0, false)),
            WorkloadState::Ended(stopped.clone())
        );
        assert_eq!(
            state_of(None, &state(S::CREATED, 0, false)),
            WorkloadState::Created
        );
        assert_eq!(
            state_of(Some(&stopped), &state(S::RUNNING, 0, false)),
            WorkloadState::Running
        );
        let failed = ContainerState {
            error: Some("exec: \"nope\": not found".into()),
            ..state(S::EXITED, 127, false)
        };
        assert!(matches!(
            state_of(None, &failed),
            WorkloadState::Ended(TerminationReason::RuntimeError { .. })
        ));
    }
}
