//! What the benchmarks share: a workload spec that prints at once, one runtime sample
//! (create → start → first output byte), quantiles and formatting.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_node::runtime::{Runtime, WorkloadId};
use agora_protocol::workload::{ImageSource, NetworkRequest, Resources, WorkloadSpec};
use futures::StreamExt;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn spec(image: ImageSource) -> WorkloadSpec {
    WorkloadSpec {
        image,
        command: vec!["echo".into(), "ready".into()],
        env: BTreeMap::new(),
        workdir: None,
        resources: Resources {
            vcpu_milli: 1000,
            memory_mib: 128,
            disk_mib: 16,
            pids: 64,
        },
        lifetime_secs: 60,
        ports: vec![],
        network: NetworkRequest {
            enabled: false,
            egress: false,
        },
    }
}

/// Create → start → first output byte, then remove.
pub async fn sample(runtime: &Arc<dyn Runtime>, spec: &WorkloadSpec) -> Duration {
    let id = WorkloadId::random();
    let started = Instant::now();
    runtime.create(&id, spec).await.unwrap();
    runtime.start(&id).await.unwrap();
    let mut logs = runtime.logs(&id, true).await.unwrap();
    let first = loop {
        match logs.next().await {
            Some(Ok(chunk)) if !chunk.data.is_empty() => break started.elapsed(),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!("ended without output"),
        }
    };
    drop(logs);
    runtime
        .stop(
            &id,
            agora_protocol::workload::TerminationReason::StoppedByAgent,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    runtime.remove(&id).await.unwrap();
    first
}

/// Waits (at most 60 s) until `sandbox` has `want` warm sandboxes of `image` ready; how
/// a warm row starts each sample with a full pool, as after a pause between leases.
pub async fn settle(
    sandbox: &agora_node::runtime::sandbox::SandboxRuntime,
    image: &agora_protocol::Digest,
    want: usize,
) {
    for _ in 0..6000 {
        if sandbox.warm_ready(image) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("warning: {want} warm sandboxes not ready after 60 s");
}

pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
