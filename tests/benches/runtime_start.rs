//! Create-to-first-output latency of the workload runtimes, on this host.
//!
//! ```sh
//! cargo test -p agora-tests --bench runtime_start -- --bench
//! ```
//! Options via env: `AGORA_BENCH_RUNS` (default 100), `AGORA_BENCH_CONCURRENT` (default 20),
//! `AGORA_BENCH_WARM` (warm sandboxes of the `sandbox warm` row, default the concurrency).
//!
//! One sample = `create` + `start` of `echo ready` on the busybox image, until the first
//! byte of its output arrives through the runtime's own log stream (what an agent sees).
//! Reported per runtime: p50, p95 and max over sequential runs, then the p95 of N
//! workloads created at once. Each workload is removed (cgroup, scratch, state) between
//! samples; removal is not timed. The `sandbox warm` row keeps warm sandboxes (started
//! ahead, see `runtime::sandbox::pool`) and waits, untimed, before each sequential sample and
//! before the batch until its pool is full again. Beside the Docker runtime, in the same run: a bare
//! `docker run --rm` of the same image with the same hardening flags (its first stdout
//! byte through the CLI), and the ratio of the two p50s. Set `AGORA_BENCH_DOCKER=0` to
//! measure the sandbox alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_node::runtime::Runtime;
use agora_node::runtime::docker::{DockerConfig, DockerRuntime, UPLOAD_REPO};
use agora_node::runtime::sandbox::net::SandboxNetwork;
use agora_node::runtime::sandbox::{SandboxConfig, SandboxRuntime};
use agora_protocol::workload::{ImageSource, WorkloadSpec};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt;

#[path = "common/mod.rs"]
mod common;
use common::{env_usize, ms, quantile, sample, settle, spec};

/// What runs, untimed, before each sequential sample and before the batch.
type Settle<'a> = &'a (dyn Fn() -> futures::future::BoxFuture<'a, ()> + Sync);

async fn measure(
    name: &str,
    runtime: Arc<dyn Runtime>,
    spec: WorkloadSpec,
    runs: usize,
    concurrent: usize,
    settle: Settle<'_>,
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
        settle().await;
        seq.push(sample(&runtime, &spec).await);
        bar.inc(1);
    }
    bar.finish_and_clear();
    seq.sort();
    settle().await;
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

/// `docker run --rm` with the Docker runtime's hardening flags; time to the first byte.
async fn bare_docker_run(image: &str) -> Duration {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--init",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,exec,mode=1777,size=16m",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--pids-limit",
            "64",
            "--memory",
            "128m",
            "--memory-swap",
            "128m",
            "--cpus",
            "1",
            "--ipc",
            "private",
            "--oom-score-adj",
            "500",
            image,
            "echo",
            "ready",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).await.unwrap();
    let first = started.elapsed();
    child.wait().await.unwrap();
    first
}

/// The busybox rootfs the sandbox unpacked, as a tarball Docker imports.
fn busybox_tar(
    rootfs: &std::path::Path,
    dir: &std::path::Path,
) -> (std::path::PathBuf, agora_protocol::Digest, u64) {
    let tar = dir.join("busybox.tar");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    let digest = agora_node::runtime::images::sha256_file(&tar).unwrap();
    let size = std::fs::metadata(&tar).unwrap().len();
    (tar, digest, size)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("runtime_start: benchmark skipped (run it with cargo bench)");
        return;
    }
    let runs = env_usize("AGORA_BENCH_RUNS", 100).max(1);
    let concurrent = env_usize("AGORA_BENCH_CONCURRENT", 20).max(1);
    let warm = env_usize("AGORA_BENCH_WARM", concurrent);
    let tmp = tempfile::tempdir().unwrap();
    let open = |name: &str, warm: usize| {
        SandboxRuntime::open(SandboxConfig {
            state_dir: tmp.path().join(name),
            cgroup_parent: format!("agora-bench-{:06x}", rand::random::<u32>() & 0xff_ffff),
            network: SandboxNetwork::default(),
            warm,
            warm_gauge: None,
        })
    };
    let sandbox = open("sandbox", 0)
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
    let rootfs = sandbox.images_store().rootfs(&busybox).unwrap();
    let none: Settle<'_> = &|| Box::pin(async {});
    let mut rows = vec![
        measure(
            "sandbox",
            Arc::new(sandbox),
            spec(image.clone()),
            runs,
            concurrent,
            none,
        )
        .await,
    ];
    if warm > 0 {
        let sandbox = Arc::new(open("sandbox-warm", warm).await.unwrap());
        let full: Settle<'_> = &|| Box::pin(settle(&sandbox, &busybox, warm));
        let row = measure(
            "sandbox warm",
            sandbox.clone(),
            spec(image),
            runs,
            concurrent,
            full,
        )
        .await;
        rows.push(row);
    }
    if std::env::var("AGORA_BENCH_DOCKER").map_or(true, |v| v != "0") {
        let docker = DockerRuntime::connect(DockerConfig {
            node: format!("bench{:06x}", rand::random::<u32>() & 0xff_ffff),
            ..DockerConfig::default()
        })
        .await
        .expect("a Docker engine (AGORA_BENCH_DOCKER=0 to skip)");
        let (tar, digest, size) = busybox_tar(&rootfs, tmp.path());
        docker.import_image(&tar, &digest, size).await.unwrap();
        let tag = format!("{UPLOAD_REPO}:{digest}");
        let docker = Arc::new(docker);
        let image = ImageSource::Tarball {
            digest,
            size_bytes: size,
        };
        let row = measure(
            "docker",
            docker.clone(),
            spec(image),
            runs,
            concurrent,
            none,
        )
        .await;
        let mut bare = Vec::with_capacity(runs);
        bare_docker_run(&tag).await;
        for _ in 0..runs {
            bare.push(bare_docker_run(&tag).await);
        }
        bare.sort();
        let ratio = row[1].parse::<f64>().unwrap() / (quantile(&bare, 0.5).as_secs_f64() * 1000.0);
        rows.push(row);
        rows.push([
            "docker run".into(),
            ms(quantile(&bare, 0.5)),
            ms(quantile(&bare, 0.95)),
            ms(*bare.last().unwrap()),
            "-".into(),
        ]);
        println!("docker runtime p50 / bare docker run p50 = {ratio:.2}");
        docker.remove_networks().await.unwrap();
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &tag])
            .status();
    }
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
