//! The Docker runtime against a real engine: lifecycle, exec, logs, uploads, limits,
//! networking and cleanup.
//!
//! Every test builds its own busybox root filesystem (Debian's busybox-static plus a unique
//! marker file), uploads it through [`Runtime::import_image`] and runs workloads under a
//! unique node name, so tests run in parallel and never see each other's containers. A
//! guard removes the containers, networks and images a test made, even when it fails.
//!
//! Without an engine these tests fail; `AGORA_SKIP_DOCKER=1` skips them instead. Tests talk
//! only to loopback and to containers on networks they created.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora_node::runtime::docker::{DockerConfig, DockerRuntime, UPLOAD_REPO};
use agora_node::runtime::netpolicy::{self, Policy};
use agora_node::runtime::{
    ExecEvent, ExecRequest, ExecSession, OutputStream, Runtime, RuntimeError, WorkloadId,
    WorkloadState,
};
use agora_protocol::Digest;
use agora_protocol::workload::{
    ImageSource, NetworkRequest, PortSpec, Resources, TerminationReason, Transport, WorkloadSpec,
};
use agora_tests::netns::{PolicyProbe, probe_script, rules_mentioning};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LABEL_NODE: &str = "agora.node";
const WAIT: Duration = Duration::from_secs(60);

fn docker_cli(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What one test made on the engine; dropping it removes everything.
struct Env {
    node: String,
    dir: tempfile::TempDir,
    /// Image references to remove (upload tags, offer tags).
    tags: Mutex<Vec<String>>,
}

impl Env {
    fn new() -> Self {
        Self {
            node: format!("t{:08x}", rand::random::<u32>()),
            dir: tempfile::tempdir().unwrap(),
            tags: Mutex::new(Vec::new()),
        }
    }

    fn config(&self) -> DockerConfig {
        DockerConfig {
            node: self.node.clone(),
            ..Default::default()
        }
    }

    fn forget_tag(&self, tag: String) {
        self.tags.lock().unwrap().push(tag);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let label = format!("label={LABEL_NODE}={}", self.node);
        let containers = lines(&docker_cli(&["ps", "-aq", "--filter", &label]));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker_cli(&args);
        }
        let networks = lines(&docker_cli(&["network", "ls", "-q", "--filter", &label]));
        if !networks.is_empty() {
            let mut args = vec!["network", "rm"];
            args.extend(networks.iter().map(String::as_str));
            docker_cli(&args);
        }
        // The policy's rules on this node's two workload bridges.
        for network in [
            format!("agora-{}-wl", self.node),
            format!("agora-{}-wl-int", self.node),
        ] {
            let mut restore = Command::new("iptables-restore")
                .arg("--noflush")
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            let _ = restore
                .stdin
                .take()
                .unwrap()
                .write_all(netpolicy::bridge_remove_script(&network).as_bytes());
            let _ = restore.wait();
        }
        let tags = std::mem::take(&mut *self.tags.lock().unwrap_or_else(|e| e.into_inner()));
        for tag in tags.iter().rev() {
            docker_cli(&["rmi", "-f", tag]);
        }
    }
}

/// Connects a runtime for this test, or `None` when `AGORA_SKIP_DOCKER=1` and no engine
/// answers.
async fn connect(test: &str, env: &Env) -> Option<DockerRuntime> {
    match DockerRuntime::connect(env.config()).await {
        Ok(rt) => Some(rt),
        Err(e) => {
            if std::env::var("AGORA_SKIP_DOCKER").is_ok_and(|v| v == "1") {
                eprintln!("{test}: skipped (AGORA_SKIP_DOCKER=1): {e}");
                return None;
            }
            panic!(
                "{test}: the Docker runtime cannot connect: {e}\n\
                 start a Docker engine (or set DOCKER_HOST), or set AGORA_SKIP_DOCKER=1 to skip"
            );
        }
    }
}

/// A busybox root filesystem tarball with a marker making its digest unique.
fn busybox_tarball(dir: &Path, marker: &str) -> (PathBuf, Digest, u64) {
    let t = agora_tests::busybox::tarball(dir, Some(marker), &[]);
    (t.path, t.digest, t.size)
}

/// A connected runtime with the busybox image uploaded, as `ImageSource::Tarball`.
async fn setup(test: &str) -> Option<(Env, DockerRuntime, ImageSource)> {
    let env = Env::new();
    let rt = connect(test, &env).await?;
    let (path, digest, size) = busybox_tarball(env.dir.path(), &format!("{test} {}", env.node));
    env.forget_tag(format!("{UPLOAD_REPO}:{digest}"));
    rt.import_image(&path, &digest, size).await.unwrap();
    let image = ImageSource::Tarball {
        digest,
        size_bytes: size,
    };
    Some((env, rt, image))
}

fn spec(image: &ImageSource, command: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        image: image.clone(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        workdir: None,
        resources: Resources {
            vcpu_milli: 500,
            memory_mib: 64,
            disk_mib: 16,
            pids: 64,
        },
        lifetime_secs: 600,
        ports: vec![],
        network: NetworkRequest {
            enabled: false,
            egress: false,
        },
    }
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

async fn run(rt: &DockerRuntime, spec: &WorkloadSpec) -> WorkloadId {
    let id = WorkloadId::random();
    rt.create(&id, spec).await.unwrap();
    rt.start(&id).await.unwrap();
    id
}

/// Follows the logs to the end: (stdout, stderr).
async fn output(rt: &DockerRuntime, id: &WorkloadId) -> (String, String) {
    let mut logs = rt.logs(id, true).await.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.unwrap();
            match chunk.stream {
                OutputStream::Stdout => out.extend(chunk.data),
                OutputStream::Stderr => err.extend(chunk.data),
            }
        }
    })
    .await
    .expect("logs did not end");
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

async fn wait_ended(rt: &DockerRuntime, id: &WorkloadId) -> TerminationReason {
    let deadline = Instant::now() + WAIT;
    loop {
        if let WorkloadState::Ended(reason) = rt.state(id).await.unwrap() {
            return reason;
        }
        assert!(Instant::now() < deadline, "{id} did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `stdin`, closes it, and collects (stdout, stderr, exit code).
async fn finish(mut session: ExecSession, stdin: &[u8]) -> (String, String, i32) {
    session.stdin.write_all(stdin).await.unwrap();
    drop(session.stdin);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = tokio::time::timeout(WAIT, async {
        while let Some(event) = session.events.recv().await {
            match event {
                ExecEvent::Output(chunk) => match chunk.stream {
                    OutputStream::Stdout => out.extend(chunk.data),
                    OutputStream::Stderr => err.extend(chunk.data),
                },
                ExecEvent::Exit(code) => return code,
            }
        }
        panic!("exec events ended without an exit code")
    })
    .await
    .expect("exec did not end");
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
    )
}

fn exec_req(command: &[&str]) -> ExecRequest {
    ExecRequest {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_command_and_reports_output_and_exit_code() {
    let Some((_env, rt, image)) = setup("runs_a_command").await else {
        return;
    };
    let mut s = spec(
        &image,
        &sh("echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3"),
    );
    s.workdir = Some("/tmp".into());
    let id = WorkloadId::random();
    rt.create(&id, &s).await.unwrap();
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Created);
    assert!(matches!(
        rt.create(&id, &s).await,
        Err(RuntimeError::AlreadyExists(_))
    ));
    rt.start(&id).await.unwrap();
    let (out, err) = output(&rt, &id).await;
    assert_eq!(out, "hello from /tmp\n");
    assert_eq!(err, "oops\n");
    assert_eq!(
        wait_ended(&rt, &id).await,
        TerminationReason::Exited { code: 3 }
    );
    // An ended workload is not restarted.
    assert!(matches!(
        rt.start(&id).await,
        Err(RuntimeError::WrongState { op: "start", .. })
    ));
    // Logs without follow replay what it wrote.
    let (out, _) = output(&rt, &id).await;
    assert_eq!(out, "hello from /tmp\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_stdin_and_output_with_exit_codes() {
    let Some((_env, rt, image)) = setup("exec").await else {
        return;
    };
    let id = run(&rt, &spec(&image, &["sleep", "300"])).await;

    let session = rt.exec(&id, exec_req(&["cat"])).await.unwrap();
    let (out, err, code) = finish(session, b"hello through stdin\n").await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("hello through stdin\n", "", 0)
    );

    let mut req = exec_req(&sh("echo \"$EXTRA in $(pwd)\"; echo bad >&2; exit 7"));
    req.env.insert("EXTRA".into(), "extra".into());
    req.workdir = Some("/tmp".into());
    let (out, err, code) = finish(rt.exec(&id, req).await.unwrap(), b"").await;
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("extra in /tmp\n", "bad\n", 7)
    );

    let mut req = exec_req(&sh("test -t 1 && echo on a tty"));
    req.tty = true;
    let (out, _, code) = finish(rt.exec(&id, req).await.unwrap(), b"").await;
    assert_eq!((out.trim(), code), ("on a tty", 0));

    // An interactive session stays open across several inputs.
    let mut session = rt.exec(&id, exec_req(&["sh"])).await.unwrap();
    session.stdin.write_all(b"echo one\n").await.unwrap();
    let first = tokio::time::timeout(WAIT, session.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, ExecEvent::Output(c) if c.data == b"one\n"),
        "{first:?}"
    );
    let (out, _, code) = finish(session, b"echo two; exit 4\n").await;
    assert_eq!((out.as_str(), code), ("two\n", 4));

    rt.stop(
        &id,
        TerminationReason::StoppedByAgent,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(matches!(
        rt.exec(&id, exec_req(&["true"])).await,
        Err(RuntimeError::WrongState { op: "exec", .. })
    ));
    let missing = WorkloadId::random();
    assert!(matches!(
        rt.exec(&missing, exec_req(&["true"])).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_logs_as_they_come() {
    let Some((_env, rt, image)) = setup("follow_logs").await else {
        return;
    };
    let id = run(
        &rt,
        &spec(
            &image,
            &sh("for i in 1 2 3; do echo line$i; usleep 300000; done; echo done >&2"),
        ),
    )
    .await;
    let mut logs = rt.logs(&id, true).await.unwrap();
    let first = tokio::time::timeout(WAIT, logs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.data, b"line1\n");
    // The first line came while the workload was still running.
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Running);
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = logs.next().await {
            rest.push(chunk.unwrap());
        }
    })
    .await
    .unwrap();
    let out: Vec<u8> = rest
        .iter()
        .filter(|c| c.stream == OutputStream::Stdout)
        .flat_map(|c| c.data.clone())
        .collect();
    let err: Vec<u8> = rest
        .iter()
        .filter(|c| c.stream == OutputStream::Stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    assert_eq!(out, b"line2\nline3\n");
    assert_eq!(err, b"done\n");
    assert!(matches!(
        rt.logs(&WorkloadId::random(), false).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_tarballs_are_checked_and_run() {
    let env = Env::new();
    let Some(rt) = connect("uploads", &env).await else {
        return;
    };
    let (path, digest, size) = busybox_tarball(env.dir.path(), &env.node);
    env.forget_tag(format!("{UPLOAD_REPO}:{digest}"));
    // Not imported yet: not startable.
    let image = ImageSource::Tarball {
        digest,
        size_bytes: size,
    };
    assert!(matches!(
        rt.create(&WorkloadId::random(), &spec(&image, &["true"]))
            .await,
        Err(RuntimeError::ImageNotFound(_))
    ));
    // Size and digest must match what the agent signed.
    assert!(matches!(
        rt.import_image(&path, &digest, size + 1).await,
        Err(RuntimeError::BadImage(m)) if m.contains("bytes")
    ));
    assert!(matches!(
        rt.import_image(&path, &Digest::of(b"another"), size).await,
        Err(RuntimeError::BadImage(m)) if m.contains("sha256")
    ));
    rt.import_image(&path, &digest, size).await.unwrap();
    // Idempotent.
    rt.import_image(&path, &digest, size).await.unwrap();
    let id = run(&rt, &spec(&image, &["cat", "/etc/agora-test"])).await;
    assert_eq!(output(&rt, &id).await.0, env.node);
    // Uploads are not offered images.
    assert!(rt.images().await.unwrap().is_empty());

    // A fresh runtime (a node restart) still finds the upload by its digest.
    let again = DockerRuntime::connect(env.config()).await.unwrap();
    let id = run(&again, &spec(&image, &["cat", "/etc/agora-test"])).await;
    assert_eq!(output(&again, &id).await.0, env.node);

    // A `docker save` archive loads too, and its tags are not applied.
    let evil_tag = format!("agora-test-{}:evil", env.node);
    env.forget_tag(evil_tag.clone());
    let tag = format!("{UPLOAD_REPO}:{digest}");
    assert!(docker_cli(&["tag", &tag, &evil_tag]).status.success());
    let saved = env.dir.path().join("saved.tar");
    let out = docker_cli(&["save", "-o", saved.to_str().unwrap(), &evil_tag]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(docker_cli(&["rmi", &evil_tag]).status.success());
    let bytes = std::fs::read(&saved).unwrap();
    let saved_digest = Digest::of(&bytes);
    env.forget_tag(format!("{UPLOAD_REPO}:{saved_digest}"));
    rt.import_image(&saved, &saved_digest, bytes.len() as u64)
        .await
        .unwrap();
    assert!(
        !docker_cli(&["image", "inspect", &evil_tag])
            .status
            .success(),
        "loading an upload applied its tag {evil_tag}"
    );
    let saved_image = ImageSource::Tarball {
        digest: saved_digest,
        size_bytes: bytes.len() as u64,
    };
    let id = run(&rt, &spec(&saved_image, &["cat", "/etc/agora-test"])).await;
    assert_eq!(output(&rt, &id).await.0, env.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_images_are_listed_and_start_by_digest_only() {
    let Some((env, rt, upload)) = setup("offered").await else {
        return;
    };
    let ImageSource::Tarball {
        digest: upload_digest,
        ..
    } = upload
    else {
        unreachable!()
    };
    let name = format!("busybox-{}", env.node);
    let offer_tag = format!("agora/{name}:latest");
    env.forget_tag(offer_tag.clone());
    let tag = format!("{UPLOAD_REPO}:{upload_digest}");
    assert!(docker_cli(&["tag", &tag, &offer_tag]).status.success());
    let id_out = docker_cli(&["image", "inspect", "--format", "{{.Id}}", &offer_tag]);
    let image_id = lines(&id_out).join("");
    let image_digest: Digest = image_id.strip_prefix("sha256:").unwrap().parse().unwrap();

    let offered = rt.images().await.unwrap();
    let mine: Vec<_> = offered.iter().filter(|i| i.name == name).collect();
    assert_eq!(mine.len(), 1, "{offered:?}");
    assert_eq!(mine[0].digest, image_digest);

    let named = ImageSource::Named {
        name: name.clone(),
        digest: image_digest,
    };
    let id = run(&rt, &spec(&named, &["echo", "named"])).await;
    assert_eq!(output(&rt, &id).await.0, "named\n");
    // Another digest, or a name the image is not offered under, is refused.
    for wrong in [
        ImageSource::Named {
            name: name.clone(),
            digest: Digest::of(b"not this one"),
        },
        ImageSource::Named {
            name: "something-else".into(),
            digest: image_digest,
        },
    ] {
        assert!(matches!(
            rt.create(&WorkloadId::random(), &spec(&wrong, &["true"]))
                .await,
            Err(RuntimeError::ImageNotFound(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_and_reported_so() {
    let Some((_env, rt, image)) = setup("oom").await else {
        return;
    };
    let mut s = spec(
        &image,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    s.resources.memory_mib = 32;
    let id = run(&rt, &s).await;
    assert_eq!(wait_ended(&rt, &id).await, TerminationReason::OomKilled);
    // Stopping an ended workload returns its own reason.
    assert_eq!(
        rt.stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(1)
        )
        .await
        .unwrap(),
        TerminationReason::OomKilled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_contained_and_the_workload_still_stops() {
    let Some((_env, rt, image)) = setup("fork_bomb").await else {
        return;
    };
    // The main process does not fork (a shell that cannot fork gives up and exits); the
    // bomb runs beside it, from an exec, forking sleepers that hold their pids.
    let mut s = spec(&image, &["sleep", "300"]);
    s.resources.pids = 32;
    let id = run(&rt, &s).await;
    let bomb = rt
        .exec(&id, exec_req(&sh("while :; do sleep 1000 & done")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = tokio::time::timeout(Duration::from_secs(20), rt.stats(&id))
        .await
        .expect("stats answer while the bomb runs")
        .unwrap();
    assert!(stats.pids <= 32, "{stats:?}");
    assert!(
        stats.pids >= 24,
        "the bomb did not reach the limit: {stats:?}"
    );
    // The host stays responsive: the engine and this process answer promptly.
    let started = Instant::now();
    let out = docker_cli(&["version", "--format", "{{.Server.Version}}"]);
    assert!(out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the engine took {:?}",
        started.elapsed()
    );
    let reason = tokio::time::timeout(
        Duration::from_secs(60),
        rt.stop(
            &id,
            TerminationReason::PolicyViolation {
                detail: "fork bomb".into(),
            },
            Duration::from_secs(1),
        ),
    )
    .await
    .expect("stop returns")
    .unwrap();
    // It was still running (the limit held, the main process lived) until stopped.
    assert_eq!(reason.code(), "policy_violation");
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Ended(reason));
    drop(bomb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_filesystem_is_read_only_and_tmp_is_writable() {
    let Some((_env, rt, image)) = setup("read_only").await else {
        return;
    };
    let id = run(
        &rt,
        &spec(
            &image,
            &sh(
                "if echo x > /x; then echo ROOT-WRITABLE; else echo root-read-only; fi; \
                 if echo x > /bin/x; then echo BIN-WRITABLE; fi; \
                 echo ok > /tmp/t && cat /tmp/t; \
                 dd if=/dev/zero of=/tmp/big bs=1M count=64 2>/dev/null || echo tmp-full",
            ),
        ),
    )
    .await;
    let (out, _) = output(&rt, &id).await;
    assert_eq!(out, "root-read-only\nok\ntmp-full\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_seconds_are_metered() {
    let Some((_env, rt, image)) = setup("cpu").await else {
        return;
    };
    let mut s = spec(&image, &sh("while :; do :; done"));
    s.resources.vcpu_milli = 1000;
    let id = run(&rt, &s).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rt.stats(&id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rt.stats(&id).await.unwrap();
    assert!(
        after.cpu_nanos >= before.cpu_nanos + 200_000_000,
        "{before:?} → {after:?}"
    );
    assert!(after.memory_peak_bytes > 0 && after.pids >= 1, "{after:?}");
    rt.stop(
        &id,
        TerminationReason::LifetimeExpired,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    // Metering survives the end.
    let last = rt.stats(&id).await.unwrap();
    assert!(last.cpu_nanos >= after.cpu_nanos, "{after:?} → {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_records_the_reason_and_remove_leaves_nothing() {
    let Some((_env, rt, image)) = setup("stop_remove").await else {
        return;
    };
    let id = run(&rt, &spec(&image, &["sleep", "300"])).await;
    assert_eq!(rt.state(&id).await.unwrap(), WorkloadState::Running);
    let started = Instant::now();
    assert_eq!(
        rt.stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(10)
        )
        .await
        .unwrap(),
        TerminationReason::StoppedByAgent
    );
    // With an init as PID 1, SIGTERM ends it at once rather than after the grace.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        rt.state(&id).await.unwrap(),
        WorkloadState::Ended(TerminationReason::StoppedByAgent)
    );
    // The first reason stands.
    assert_eq!(
        rt.stop(&id, TerminationReason::IdleTimeout, Duration::from_secs(1))
            .await
            .unwrap(),
        TerminationReason::StoppedByAgent
    );

    // One that ended by itself keeps its own reason.
    let done = run(&rt, &spec(&image, &sh("exit 5"))).await;
    wait_ended(&rt, &done).await;
    assert_eq!(
        rt.stop(
            &done,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(1)
        )
        .await
        .unwrap(),
        TerminationReason::Exited { code: 5 }
    );

    // Killed by a signal, not for memory: not mistaken for an OOM kill.
    let killed = run(&rt, &spec(&image, &sh("kill -9 $$"))).await;
    assert_eq!(
        wait_ended(&rt, &killed).await,
        TerminationReason::Exited { code: 137 }
    );

    // Stopped before it started: ended, and it cannot start.
    let never = WorkloadId::random();
    rt.create(&never, &spec(&image, &["true"])).await.unwrap();
    assert_eq!(
        rt.stop(
            &never,
            TerminationReason::ProviderShutdown,
            Duration::from_secs(1)
        )
        .await
        .unwrap(),
        TerminationReason::ProviderShutdown
    );
    assert!(rt.start(&never).await.is_err());

    for id in [&id, &done, &killed, &never] {
        rt.remove(id).await.unwrap();
        rt.remove(id).await.unwrap();
        let name = rt.container_name(id);
        let left = docker_cli(&["ps", "-aq", "--filter", &format!("name=^/{name}$")]);
        assert!(lines(&left).is_empty(), "{name} is still there");
        assert!(matches!(rt.state(id).await, Err(RuntimeError::NotFound(_))));
    }
    assert!(matches!(
        rt.stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(1)
        )
        .await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_finds_workloads_and_what_a_previous_process_left() {
    let Some((env, rt, image)) = setup("list").await else {
        return;
    };
    let running = run(&rt, &spec(&image, &["sleep", "300"])).await;
    let exited = run(&rt, &spec(&image, &sh("exit 2"))).await;
    let created = WorkloadId::random();
    rt.create(&created, &spec(&image, &["true"])).await.unwrap();
    wait_ended(&rt, &exited).await;

    let mut expected = vec![
        (running.clone(), WorkloadState::Running),
        (
            exited.clone(),
            WorkloadState::Ended(TerminationReason::Exited { code: 2 }),
        ),
        (created.clone(), WorkloadState::Created),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let listed = |infos: Vec<agora_node::runtime::WorkloadInfo>| {
        let mut v: Vec<_> = infos.into_iter().map(|i| (i.id, i.state)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(listed(rt.list().await.unwrap()), expected);

    // A new process (node restart) sees the same workloads, and can stop the leftovers.
    drop(rt);
    let rt = DockerRuntime::connect(env.config()).await.unwrap();
    assert_eq!(listed(rt.list().await.unwrap()), expected);
    assert_eq!(
        rt.stop(
            &running,
            TerminationReason::ProviderShutdown,
            Duration::from_secs(1)
        )
        .await
        .unwrap(),
        TerminationReason::ProviderShutdown
    );

    // Another node on the same engine sees none of them.
    let other = Env::new();
    let other_rt = DockerRuntime::connect(other.config()).await.unwrap();
    assert!(other_rt.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reaches_exposed_ports_only() {
    let Some((_env, rt, image)) = setup("connect").await else {
        return;
    };
    // A network removed behind the runtime's back is made again.
    let internal = rt.network_name(false);
    assert!(docker_cli(&["network", "rm", &internal]).status.success());
    let server = "mkdir -p /tmp/www && echo \"hello from $HOSTNAME\" > /tmp/www/index.html \
                  && exec httpd -f -p 8080 -h /tmp/www";
    for egress in [false, true] {
        let mut s = spec(&image, &sh(server));
        s.network = NetworkRequest {
            enabled: true,
            egress,
        };
        s.ports = vec![PortSpec {
            port: 8080,
            transport: Transport::Tcp,
        }];
        let id = run(&rt, &s).await;
        let deadline = Instant::now() + WAIT;
        let body = loop {
            match rt.connect(&id, 8080).await {
                Ok(mut stream) => {
                    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
                    let mut response = Vec::new();
                    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
                        .await
                        .unwrap()
                        .unwrap();
                    break String::from_utf8_lossy(&response).into_owned();
                }
                Err(RuntimeError::Connect { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        assert!(body.contains(&format!("hello from {id}")), "{body}");
        assert!(rt.address(&id).await.unwrap().is_some());
        assert!(matches!(
            rt.connect(&id, 9999).await,
            Err(RuntimeError::Connect { port: 9999, reason }) if reason.contains("not exposed")
        ));
    }
    // Without network there is nothing to connect to.
    let mut s = spec(&image, &["sleep", "300"]);
    s.ports = vec![PortSpec {
        port: 8080,
        transport: Transport::Tcp,
    }];
    let id = run(&rt, &s).await;
    assert!(rt.address(&id).await.unwrap().is_none());
    assert!(matches!(
        rt.connect(&id, 8080).await,
        Err(RuntimeError::Connect { reason, .. }) if reason.contains("no network")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_hardened() {
    let Some((_env, rt, image)) = setup("hardened").await else {
        return;
    };
    let mut s = spec(&image, &["sleep", "300"]);
    s.resources = Resources {
        vcpu_milli: 250,
        memory_mib: 48,
        disk_mib: 8,
        pids: 40,
    };
    let id = run(&rt, &s).await;
    let out = docker_cli(&["inspect", &rt.container_name(&id)]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hc = &v[0]["HostConfig"];
    assert_eq!(hc["Privileged"], false);
    assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
    assert!(hc["CapAdd"].is_null(), "{}", hc["CapAdd"]);
    assert!(
        hc["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().starts_with("no-new-privileges")),
        "{}",
        hc["SecurityOpt"]
    );
    assert!(
        !hc["SecurityOpt"].to_string().contains("seccomp=unconfined"),
        "{}",
        hc["SecurityOpt"]
    );
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert!(hc["Tmpfs"]["/tmp"].as_str().unwrap().contains("size=8m"));
    assert_eq!(hc["PidsLimit"], 40);
    assert_eq!(hc["Memory"], 48 << 20);
    assert_eq!(hc["MemorySwap"], 48 << 20);
    assert_eq!(hc["NanoCpus"], 250_000_000);
    assert_eq!(hc["NetworkMode"], "none");
    assert_eq!(hc["RestartPolicy"]["Name"], "no");
    assert_eq!(hc["IpcMode"], "private");
    let labels = &v[0]["Config"]["Labels"];
    assert_eq!(labels["agora.workload"], id.to_string());
    assert_eq!(labels[LABEL_NODE], rt.config().node);
    // Inside: no capabilities at all.
    let (out, _, code) = finish(
        rt.exec(&id, exec_req(&sh("grep CapEff /proc/self/status")))
            .await
            .unwrap(),
        b"",
    )
    .await;
    assert_eq!((out.trim(), code), ("CapEff:\t0000000000000000", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_the_configured_user() {
    let env = Env::new();
    let config = DockerConfig {
        user: Some("65534:65534".into()),
        ..env.config()
    };
    let rt = match DockerRuntime::connect(config).await {
        Ok(rt) => rt,
        Err(_) => {
            // Engine absence is reported by the other tests.
            let Some(_) = connect("user", &env).await else {
                return;
            };
            unreachable!()
        }
    };
    let (path, digest, size) = busybox_tarball(env.dir.path(), &env.node);
    env.forget_tag(format!("{UPLOAD_REPO}:{digest}"));
    rt.import_image(&path, &digest, size).await.unwrap();
    let image = ImageSource::Tarball {
        digest,
        size_bytes: size,
    };
    let id = run(&rt, &spec(&image, &["sleep", "300"])).await;
    let (out, _, _) = finish(rt.exec(&id, exec_req(&["id", "-u"])).await.unwrap(), b"").await;
    assert_eq!(out.trim(), "65534");
    let id = run(
        &rt,
        &spec(&image, &sh("id -u; echo x > /tmp/x && echo tmp-ok")),
    )
    .await;
    assert_eq!(output(&rt, &id).await.0, "65534\ntmp-ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_and_an_absent_engine_are_clear_errors() {
    let env = Env::new();
    if connect("bad_configs", &env).await.is_none() {
        return;
    }
    let err = DockerRuntime::connect(DockerConfig {
        runtime_class: Some("no-such-runtime".into()),
        ..env.config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Unsupported(m) if m.contains("\"no-such-runtime\"") && m.contains("runc")),
        "{err}"
    );
    let err = DockerRuntime::connect(DockerConfig {
        host: Some("unix:///nonexistent/agora-docker.sock".into()),
        ..env.config()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Docker(m) if m.contains("no engine answers at unix:///nonexistent")),
        "{err}"
    );
    let err = DockerRuntime::connect(DockerConfig {
        node: "Bad Node".into(),
        ..env.config()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("node"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls() {
    let env = Env::new();
    let ours: Vec<String> = [
        format!("agora-{}-wl", env.node),
        format!("agora-{}-wl-int", env.node),
    ]
    .iter()
    .flat_map(|n| [netpolicy::bridge_name(n), netpolicy::bridge_chain(n)])
    .collect();
    assert_eq!(rules_mentioning(&ours), 0);
    let policy = Policy {
        egress: true,
        blocked_ports: vec![2525],
        allow: vec![],
    };
    // Workload networks from a configured pool.
    let third = rand::random::<u8>();
    let config = DockerConfig {
        egress_subnet: Some(format!("10.231.{third}.0/24")),
        internal_subnet: Some(format!("10.232.{third}.0/24")),
        ..env.config()
    };
    let rt = match DockerRuntime::connect_with_policy(config, policy).await {
        Ok(rt) => rt,
        Err(e) if std::env::var("AGORA_SKIP_DOCKER").is_ok_and(|v| v == "1") => {
            eprintln!("skipped (AGORA_SKIP_DOCKER=1): {e}");
            return;
        }
        Err(e) => panic!("the Docker runtime cannot connect: {e}"),
    };
    let (path, digest, size) = busybox_tarball(env.dir.path(), &format!("policy {}", env.node));
    env.forget_tag(format!("{UPLOAD_REPO}:{digest}"));
    rt.import_image(&path, &digest, size).await.unwrap();
    let image = ImageSource::Tarball {
        digest,
        size_bytes: size,
    };
    let probe = PolicyProbe::new();
    let script = probe.script();
    let mut s = spec(&image, &sh(&script));
    s.network = NetworkRequest {
        enabled: true,
        egress: true,
    };
    let id = run(&rt, &s).await;
    assert_eq!(
        wait_ended(&rt, &id).await,
        TerminationReason::Exited { code: 0 }
    );
    let (out, err) = output(&rt, &id).await;
    let v = probe.check_denials(&out, &err);
    let address = v.get("addr").cloned().unwrap_or_default();
    assert!(
        address.starts_with(&format!("10.231.{third}.")),
        "{address}"
    );
    probe.check_positive_controls();

    // Without egress (the internal network) even the allowed destination is closed.
    let mut closed = spec(&image, &sh(&probe_script(&[("198.51.100.2", 8080)])));
    closed.network = NetworkRequest {
        enabled: true,
        egress: false,
    };
    let closed_id = run(&rt, &closed).await;
    wait_ended(&rt, &closed_id).await;
    assert!(
        output(&rt, &closed_id)
            .await
            .0
            .contains("198.51.100.2:8080=closed")
    );
    assert_eq!(probe.outside.arrived(8080), 2);

    rt.remove(&id).await.unwrap();
    rt.remove(&closed_id).await.unwrap();
    rt.remove_networks().await.unwrap();
    drop(probe);
    assert_eq!(rules_mentioning(&ours), 0, "no firewall rule left behind");
}
