//! Create-to-first-output latency of the workload runtimes, on this host.
//!
//! ```sh
//! cargo test -p agora-tests --bench runtime_start -- --bench
//! ```
//! Options via env: `AGORA_BENCH_RUNS` (default 100), `AGORA_BENCH_CONCURRENT` (default 20).
//!
//! One sample = `create` + `start` of `echo ready` on the busybox image, until the first
//! byte of its output arrives through the runtime's own log stream (what an agent sees).
//! Reported per runtime: p50, p95 and max over sequential runs, then the p95 of N
//! workloads created at once. Each workload is removed (cgroup, scratch, state) between
//! samples; removal is not timed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_node::runtime::sandbox::net::SandboxNetwork;
use agora_node::runtime::sandbox::{SandboxConfig, SandboxRuntime};
use agora_node::runtime::{Runtime, WorkloadId};
use agora_protocol::workload::{ImageSource, NetworkRequest, Resources, WorkloadSpec};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec(image: ImageSource) -> WorkloadSpec {
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
async fn sample(runtime: &Arc<dyn Runtime>, spec: &WorkloadSpec) -> Duration {
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

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn measure(
    name: &str,
    runtime: Arc<dyn Runtime>,
    spec: WorkloadSpec,
    runs: usize,
    concurrent: usize,
) -> [String; 5] {
    let bar = ProgressBar::new(runs as u64).with_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(name.to_owned());
    // One warm-up (page cache, first cgroup).
    sample(&runtime, &spec).await;
    let mut seq = Vec::with_capacity(runs);
    for _ in 0..runs {
        seq.push(sample(&runtime, &spec).await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    seq.sort();
    let mut tasks = Vec::new();
    for _ in 0..concurrent {
        let (runtime, spec) = (runtime.clone(), spec.clone());
        tasks.push(tokio::spawn(async move { sample(&runtime, &spec).await }));
    }
    let mut conc = Vec::new();
    for t in tasks {
        conc.push(t.await.unwrap());
    }
    conc.sort();
    [
        name.to_owned(),
        ms(quantile(&seq, 0.5)),
        ms(quantile(&seq, 0.95)),
        ms(*seq.last().unwrap()),
        ms(quantile(&conc, 0.95)),
    ]
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("runtime_start: benchmark skipped (run it with cargo bench)");
        return;
    }
    let runs = env_usize("AGORA_BENCH_RUNS", 100).max(1);
    let concurrent = env_usize("AGORA_BENCH_CONCURRENT", 20).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = SandboxRuntime::open(SandboxConfig {
        state_dir: tmp.path().join("sandbox"),
        cgroup_parent: format!("agora-bench-{:06x}", rand::random::<u32>() & 0xff_ffff),
        network: SandboxNetwork::default(),
    })
    .await
    .expect("the sandbox runtime (root, bubblewrap, busybox-static)");
    let busybox = sandbox
        .images_store()
        .by_name("busybox")
        .expect("busybox image");
    let image = ImageSource::Named {
        name: "busybox".into(),
        digest: busybox,
    };
    let mut rows = vec![measure("sandbox", Arc::new(sandbox), spec(image), runs, concurrent).await];
    rows.insert(
        0,
        [
            "runtime".into(),
            "p50 ms".into(),
            "p95 ms".into(),
            "max ms".into(),
            format!("p95 ×{concurrent} ms"),
        ],
    );
    println!("\ncreate → first output, {runs} sequential runs, then {concurrent} at once:");
    for row in rows {
        println!(
            "{:<12} {:>8} {:>8} {:>8} {:>14}",
            row[0], row[1], row[2], row[3], row[4]
        );
    }
}
