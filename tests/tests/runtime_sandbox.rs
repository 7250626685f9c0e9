//! The embedded sandbox runtime on this host, for real: bubblewrap, cgroups, seccomp.
//!
//! Needs root (cgroups, scratch mounts), bubblewrap and busybox-static, as `.ci/run`
//! installs. Set `AGORA_SKIP_SANDBOX=1` to skip on a host that cannot run sandboxes.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_node::runtime::netpolicy::Policy;
use agora_node::runtime::sandbox::net::SandboxNetwork;
use agora_node::runtime::sandbox::{SandboxConfig, SandboxRuntime};
use agora_node::runtime::supervisor::{Supervisor, SupervisorConfig};
use agora_node::runtime::{
    ExecEvent, ExecRequest, OutputStream, Runtime, RuntimeError, WorkloadId, WorkloadState,
};
use agora_node::store::{MemStore, RocksStore, Store};
use agora_protocol::Digest;
use agora_protocol::Timestamp;
use agora_protocol::offer::Isolation;
use agora_protocol::workload::{
    ImageSource, NetworkRequest, PortSpec, Resources, TerminationReason, Transport, WorkloadSpec,
};
use agora_tests::netns::{PolicyProbe, count_rules, probe_script};
use futures::StreamExt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Egress allowed, each fixture on its own /24 so parallel tests never share addresses.
fn test_network() -> SandboxNetwork {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let third = NEXT.fetch_add(1, Ordering::Relaxed);
    SandboxNetwork {
        pool: (Ipv4Addr::new(10, 214, third, 0), 24),
        policy: Policy {
            egress: true,
            blocked_ports: vec![2525],
            allow: vec![],
        },
    }
}

// Fields drop in order: the runtime (and its warm sandboxes) before the parent cgroup.
struct Fixture {
    runtime: Arc<SandboxRuntime>,
    busybox: Digest,
    dir: tempfile::TempDir,
    parent: String,
    _cleanup: ParentCgroup,
}

/// Warm sandboxes each fixture of the warm variants keeps.
const WARM: usize = 2;

impl Fixture {
    /// Every launch cold (no warm sandboxes).
    async fn new() -> Option<Self> {
        Self::with_warm(0).await
    }

    /// Launches take warm sandboxes: `WARM` of them ready before it returns.
    async fn warm() -> Option<Self> {
        let fx = Self::with_warm(WARM).await?;
        fx.wait_warm(WARM).await;
        Some(fx)
    }

    async fn with_warm(warm: usize) -> Option<Self> {
        if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let parent = format!("agora-test-{:08x}", rand::random::<u32>());
        let runtime = Self::open_warm(dir.path(), &parent, warm).await;
        let busybox = runtime.images_store().by_name("busybox").expect(
            "the busybox image (apt-get install busybox-static; AGORA_SKIP_SANDBOX=1 to skip)",
        );
        Some(Self {
            runtime: Arc::new(runtime),
            busybox,
            dir,
            _cleanup: ParentCgroup(parent.clone()),
            parent,
        })
    }

    async fn wait_warm(&self, n: usize) {
        for _ in 0..400 {
            if self.runtime.warm_ready(&self.busybox) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} warm sandboxes not ready within 20 s");
    }

    async fn open(dir: &Path, parent: &str) -> SandboxRuntime {
        Self::open_warm(dir, parent, 0).await
    }

    async fn open_warm(dir: &Path, parent: &str, warm: usize) -> SandboxRuntime {
        SandboxRuntime::open(SandboxConfig {
            state_dir: dir.join("sandbox"),
            cgroup_parent: parent.to_owned(),
            network: test_network(),
            warm,
            warm_gauge: None,
        })
        .await
        .unwrap_or_else(|e| {
            panic!("the sandbox runtime cannot run here: {e} (AGORA_SKIP_SANDBOX=1 to skip)")
        })
    }

    fn spec(&self, script: &str) -> WorkloadSpec {
        WorkloadSpec {
            image: ImageSource::Named {
                name: "busybox".into(),
                digest: self.busybox,
            },
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("GREETING".into(), "hello".into())]),
            workdir: None,
            resources: Resources {
                vcpu_milli: 1000,
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

    async fn run(&self, spec: &WorkloadSpec) -> WorkloadId {
        let id = WorkloadId::random();
        self.runtime.create(&id, spec).await.unwrap();
        self.runtime.start(&id).await.unwrap();
        id
    }

    async fn wait_end(&self, id: &WorkloadId) -> TerminationReason {
        for _ in 0..600 {
            if let WorkloadState::Ended(r) = self.runtime.state(id).await.unwrap() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} did not end in 30 s");
    }

    async fn logs(&self, id: &WorkloadId) -> (String, String) {
        let mut stream = self.runtime.logs(id, true).await.unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            match chunk.stream {
                OutputStream::Stdout => out.extend(chunk.data),
                OutputStream::Stderr => err.extend(chunk.data),
            }
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// Stops a running workload as its agent would, then frees it.
    async fn stop_and_remove(&self, id: &WorkloadId) {
        self.runtime
            .stop(
                id,
                TerminationReason::StoppedByAgent,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        self.runtime.remove(id).await.unwrap();
    }

    fn cgroup_pids(&self, id: &WorkloadId) -> Vec<u32> {
        ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .filter_map(|base| {
                std::fs::read_to_string(
                    Path::new(base)
                        .join(&self.parent)
                        .join(id.as_str())
                        .join("cgroup.procs"),
                )
                .ok()
            })
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    fn cgroup_exists(&self, id: &WorkloadId) -> bool {
        Path::new("/sys/fs/cgroup/pids")
            .join(&self.parent)
            .join(id.as_str())
            .exists()
            || Path::new("/sys/fs/cgroup")
                .join(&self.parent)
                .join(id.as_str())
                .exists()
    }
}

struct ParentCgroup(String);

impl Drop for ParentCgroup {
    fn drop(&mut self) {
        // Best effort: the parent cgroup of this test (its workloads were removed).
        for base in [
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup/cpuacct",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup",
        ] {
            let _ = std::fs::remove_dir(Path::new(base).join(&self.0));
        }
    }
}

async fn exec_collect(
    runtime: &SandboxRuntime,
    id: &WorkloadId,
    command: &[&str],
    stdin: &[u8],
) -> (String, String, i32) {
    let mut session = runtime
        .exec(
            id,
            ExecRequest {
                command: command.iter().map(|s| (*s).to_owned()).collect(),
                ..ExecRequest::default()
            },
        )
        .await
        .unwrap();
    session.stdin.write_all(stdin).await.unwrap();
    session.stdin.shutdown().await.unwrap();
    drop(session.stdin);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), session.events.recv())
            .await
            .expect("exec output in time")
        {
            Some(ExecEvent::Output(c)) if c.stream == OutputStream::Stdout => out.extend(c.data),
            Some(ExecEvent::Output(c)) => err.extend(c.data),
            Some(ExecEvent::Exit(code)) => break code,
            None => panic!("exec ended without an exit code"),
        }
    };
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_a_command_with_output_exit_code_env_and_isolation() {
    if let Some(fx) = Fixture::new().await {
        runs_a_command_with_output_exit_code_env_and_isolation_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_a_command_with_output_exit_code_env_and_isolation_on_a_warm_sandbox() {
    if let Some(fx) = Fixture::warm().await {
        runs_a_command_with_output_exit_code_env_and_isolation_on(fx).await;
    }
}

async fn runs_a_command_with_output_exit_code_env_and_isolation_on(fx: Fixture) {
    let id = fx
        .run(&fx.spec(
            "echo $GREETING; echo oops >&2; hostname; id -u; cat /proc/net/dev | tail -n +3 | cut -d: -f1; ls /proc | grep -c '^[0-9]'; echo $(ls /proc/self/fd); exit 3",
        ))
        .await;
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 3 }
    );
    let (out, err) = fx.logs(&id).await;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1], id.as_str(), "own UTS namespace");
    assert_eq!(lines[2], "0", "root inside its own user namespace");
    assert_eq!(lines[3], "lo", "own network namespace with loopback only");
    let procs: u32 = lines[4].parse().unwrap();
    assert!(procs <= 4, "own PID namespace sees only itself: {procs}");
    // Nothing the launcher used (seccomp programs 3 and 4, status file 5, the block
    // descriptor 6, the node's info pipe 7) leaks in; 3 is `ls`'s own directory here.
    let fds: Vec<u32> = lines[5].split(' ').map(|f| f.parse().unwrap()).collect();
    assert!(fds.iter().all(|f| !(4..=9).contains(f)), "{fds:?}");
    assert_eq!(err.trim(), "oops");
    fx.runtime.remove(&id).await.unwrap();
    assert!(!fx.cgroup_exists(&id));
    assert!(matches!(
        fx.runtime.state(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn root_is_read_only_and_tmp_is_writable_and_bounded() {
    if let Some(fx) = Fixture::new().await {
        root_is_read_only_and_tmp_is_writable_and_bounded_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn root_is_read_only_and_tmp_is_writable_and_bounded_on_a_warm_sandbox() {
    if let Some(fx) = Fixture::warm().await {
        root_is_read_only_and_tmp_is_writable_and_bounded_on(fx).await;
    }
}

async fn root_is_read_only_and_tmp_is_writable_and_bounded_on(fx: Fixture) {
    let id = fx
        .run(&fx.spec(
            "echo x > /x && echo wrote-root; echo y > /tmp/y && cat /tmp/y; \
             dd if=/dev/zero of=/tmp/big bs=1M count=64 2>/dev/null || echo disk-full; \
             cat /etc/shadow 2>/dev/null || echo no-shadow; ls /home",
        ))
        .await;
    fx.wait_end(&id).await;
    let (out, err) = fx.logs(&id).await;
    assert!(!out.contains("wrote-root"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(out.contains('y'), "{out}");
    assert!(
        out.contains("disk-full"),
        "a 16 MiB scratch refuses 64 MiB: {out}"
    );
    assert!(
        out.contains("no-shadow"),
        "nothing of the host is visible: {out}"
    );
    // Ended: the scratch tmpfs is off the host's mount table at once (its memory back, and
    // no leftover mount for every later launch to copy), while the logs stay readable.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let workload_dir = fx
        .dir
        .path()
        .join("sandbox")
        .join("workloads")
        .join(id.as_str());
    assert!(
        !mounts.contains(&*workload_dir.to_string_lossy()),
        "the ended sandbox's scratch is still mounted"
    );
    assert!(fx.logs(&id).await.0.contains("no-shadow"));
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_stdin_and_output_and_shares_the_workloads_view() {
    if let Some(fx) = Fixture::new().await {
        exec_streams_stdin_and_output_and_shares_the_workloads_view_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_stdin_and_output_and_shares_the_workloads_view_on_a_warm_sandbox() {
    if let Some(fx) = Fixture::warm().await {
        exec_streams_stdin_and_output_and_shares_the_workloads_view_on(fx).await;
    }
}

async fn exec_streams_stdin_and_output_and_shares_the_workloads_view_on(fx: Fixture) {
    let id = fx
        .run(&fx.spec("echo marker > /tmp/marker; exec sleep 60"))
        .await;
    // Let the main process write its marker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (out, _, code) = exec_collect(
        &fx.runtime,
        &id,
        &[
            "sh",
            "-c",
            "read line; echo got $line; cat /tmp/marker; ps | grep -c 'sleep 60'; exit 5",
        ],
        b"hello\n",
    )
    .await;
    assert_eq!(code, 5);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "got hello");
    assert_eq!(lines[1], "marker", "exec sees the workload's /tmp");
    assert_ne!(lines[2], "0", "exec sees the workload's processes");
    // Exec is confined as much as the workload: no capabilities, read-only root.
    let (out, _, code) = exec_collect(
        &fx.runtime,
        &id,
        &["sh", "-c", "grep CapEff /proc/self/status; touch /nope"],
        b"",
    )
    .await;
    assert!(out.contains("0000000000000000"), "{out}");
    assert_ne!(code, 0);
    let reason = fx
        .runtime
        .stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(reason, TerminationReason::StoppedByAgent);
    assert!(matches!(
        fx.runtime
            .exec(
                &id,
                ExecRequest {
                    command: vec!["true".into()],
                    ..ExecRequest::default()
                }
            )
            .await,
        Err(RuntimeError::WrongState { .. })
    ));
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interactive_exec_on_a_terminal_stays_open_until_it_exits() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let id = fx.run(&fx.spec("exec sleep 60")).await;
    let mut session = fx
        .runtime
        .exec(
            &id,
            ExecRequest {
                command: vec!["sh".into()],
                tty: true,
                ..ExecRequest::default()
            },
        )
        .await
        .unwrap();
    // Two commands, one at a time: the shell stays open between them.
    let mut seen = String::new();
    for (line, expect) in [
        (
            "[ -t 0 ] && [ -t 1 ] && echo on-a-terminal; echo one-$((1+1))\n",
            "one-2",
        ),
        ("echo $TERM\n", "xterm"),
    ] {
        session.stdin.write_all(line.as_bytes()).await.unwrap();
        session.stdin.flush().await.unwrap();
        while !seen.contains(expect) {
            match tokio::time::timeout(Duration::from_secs(10), session.events.recv()).await {
                Ok(Some(ExecEvent::Output(c))) => seen.push_str(&String::from_utf8_lossy(&c.data)),
                other => panic!("waiting for {expect:?} in {seen:?}: {other:?}"),
            }
        }
    }
    // The terminal echoes input; the shell's own output is there too.
    assert!(
        seen.matches("on-a-terminal").count() >= 2,
        "a terminal: {seen}"
    );
    session.stdin.write_all(b"exit 4\n").await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), session.events.recv()).await {
            Ok(Some(ExecEvent::Exit(code))) => break code,
            Ok(Some(ExecEvent::Output(_))) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 4);
    fx.stop_and_remove(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_until_the_end() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let id = fx
        .run(&fx.spec("for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"))
        .await;
    let (out, _) = fx.logs(&id).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 0 }
    );
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uploaded_image_tarball_runs_and_a_wrong_digest_is_refused() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    // A rootfs of our own: busybox as /bin/sh and a file to prove it is this image.
    let root = fx.dir.path().join("upload-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    // No /proc, /dev or /tmp: the image store adds the mount points.
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/cat")).unwrap();
    std::fs::write(root.join("hello.txt"), "from the upload\n").unwrap();
    let tarball = fx.dir.path().join("upload.tar");
    let status = std::process::Command::new("tar")
        .args(["-C"])
        .arg(&root)
        .args(["-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let digest = agora_node::runtime::images::sha256_file(&tarball).unwrap();
    let size = std::fs::metadata(&tarball).unwrap().len();
    assert!(matches!(
        fx.runtime
            .import_image(&tarball, &Digest::of(b"x"), size)
            .await,
        Err(RuntimeError::BadImage(_))
    ));
    fx.runtime
        .import_image(&tarball, &digest, size)
        .await
        .unwrap();
    let mut spec = fx.spec("cat /hello.txt");
    spec.image = ImageSource::Tarball {
        digest,
        size_bytes: size,
    };
    let id = fx.run(&spec).await;
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 0 }
    );
    assert_eq!(fx.logs(&id).await.0, "from the upload\n");
    fx.runtime.remove(&id).await.unwrap();
    // Uploads are not offered by name.
    assert!(
        fx.runtime
            .images()
            .await
            .unwrap()
            .iter()
            .all(|i| i.digest != digest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_reported_so() {
    if let Some(fx) = Fixture::new().await {
        a_memory_hog_is_oom_killed_and_reported_so_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_reported_so_on_a_warm_sandbox() {
    if let Some(fx) = Fixture::warm().await {
        a_memory_hog_is_oom_killed_and_reported_so_on(fx).await;
    }
}

async fn a_memory_hog_is_oom_killed_and_reported_so_on(fx: Fixture) {
    let mut spec = fx.spec("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    spec.resources.memory_mib = 32;
    let id = fx.run(&spec).await;
    assert_eq!(fx.wait_end(&id).await, TerminationReason::OomKilled);
    assert!(!fx.logs(&id).await.0.contains("survived"));
    let stats = fx.runtime.stats(&id).await.unwrap();
    assert!(stats.memory_peak_bytes <= 33 << 20, "{stats:?}");
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained_and_the_host_stays_responsive() {
    if let Some(fx) = Fixture::new().await {
        a_fork_bomb_is_contained_and_the_host_stays_responsive_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained_and_the_host_stays_responsive_on_a_warm_sandbox() {
    if let Some(fx) = Fixture::warm().await {
        a_fork_bomb_is_contained_and_the_host_stays_responsive_on(fx).await;
    }
}

async fn a_fork_bomb_is_contained_and_the_host_stays_responsive_on(fx: Fixture) {
    // The main shell forks once, before any bomb exists, then `exec`s: it needs no fork of
    // its own once the bomb has used the pids up, so it still runs when the agent stops it.
    let mut spec = fx.spec("bomb() { bomb | bomb & }; (bomb) & exec sleep 60");
    spec.resources.pids = 32;
    let id = fx.run(&spec).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = fx.runtime.stats(&id).await.unwrap();
    assert!(stats.pids <= 32, "pids limit holds: {stats:?}");
    // The host still starts processes promptly.
    let started = std::time::Instant::now();
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let reason = fx
        .runtime
        .stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert_eq!(reason, TerminationReason::StoppedByAgent);
    fx.runtime.remove(&id).await.unwrap();
    assert!(!fx.cgroup_exists(&id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_ended_as_a_policy_violation() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    // 64 MiB is the floor of the log cap; write far more, as fast as possible.
    let id = fx
        .run(&fx.spec("yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
        .await;
    let reason = fx.wait_end(&id).await;
    assert!(
        matches!(&reason, TerminationReason::PolicyViolation { detail } if detail.contains("output")),
        "{reason:?}"
    );
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_seconds_are_metered() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let id = fx
        .run(&fx.spec("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"))
        .await;
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 0 }
    );
    let stats = fx.runtime.stats(&id).await.unwrap();
    assert!(
        stats.cpu_nanos > 50_000_000,
        "busy loop used CPU: {stats:?}"
    );
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_reaches_a_spec_port_and_nothing_else() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let mut spec =
        fx.spec("echo hello-from-sandbox > /tmp/index.html; exec httpd -f -p 8080 -h /tmp");
    spec.ports = vec![PortSpec {
        port: 8080,
        transport: Transport::Tcp,
    }];
    spec.network.enabled = true;
    let id = fx.run(&spec).await;
    let mut stream = None;
    for _ in 0..100 {
        match fx.runtime.connect(&id, 8080).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(RuntimeError::Connect { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut stream = stream.expect("httpd listens");
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    // Half-close: the request is complete, the response still flows back.
    stream.shutdown().await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(response.contains("200 OK"), "{response}");
    assert!(response.contains("hello-from-sandbox"), "{response}");
    assert!(matches!(
        fx.runtime.connect(&id, 22).await,
        Err(RuntimeError::Connect { .. })
    ));
    fx.stop_and_remove(&id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_cannot_reach_a_host_listener_that_the_host_can() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    // A listener the test owns on the host's loopback, with a positive control from the host.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let id = fx
        .run(&fx.spec(&format!(
            "if echo probe | nc -w 2 127.0.0.1 {port}; then echo reached; else echo refused; fi"
        )))
        .await;
    fx.wait_end(&id).await;
    assert_eq!(fx.logs(&id).await.0.trim(), "refused");
    listener.set_nonblocking(true).unwrap();
    // Only the positive control's connection ever arrived.
    let mut arrivals = 0;
    while listener.accept().is_ok() {
        arrivals += 1;
    }
    assert_eq!(arrivals, 1);
    fx.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_ends_workloads_at_their_lifetime_and_when_idle() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let config = SupervisorConfig {
        idle_timeout: Duration::from_secs(60),
        ..SupervisorConfig::default()
    };
    let runtime: Arc<dyn Runtime> = fx.runtime.clone();
    let supervisor = Supervisor::new(store, vec![runtime], config).unwrap();
    let t0 = Timestamp::from_unix_secs(1_000_000);
    let mut short = fx.spec("exec sleep 600");
    short.lifetime_secs = 5;
    let a = WorkloadId::random();
    supervisor
        .launch(a.clone(), Isolation::Sandbox, short, t0)
        .await
        .unwrap();
    let b = WorkloadId::random();
    supervisor
        .launch(b.clone(), Isolation::Sandbox, fx.spec("exec sleep 600"), t0)
        .await
        .unwrap();
    // Let both finish starting (start-up CPU counts as activity).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        supervisor
            .tick(t0.saturating_add(Duration::from_secs(1)))
            .await
            .is_empty()
    );
    let ended = supervisor
        .tick(t0.saturating_add(Duration::from_secs(6)))
        .await;
    assert_eq!(ended, vec![(a.clone(), TerminationReason::LifetimeExpired)]);
    // `sleep` uses no CPU: idle once the timeout passes.
    let ended = supervisor
        .tick(t0.saturating_add(Duration::from_secs(120)))
        .await;
    assert_eq!(ended, vec![(b.clone(), TerminationReason::IdleTimeout)]);
    assert_eq!(
        supervisor.record(&a).unwrap().ended.unwrap().0,
        TerminationReason::LifetimeExpired
    );
    // After retention, both are removed from the runtime and forgotten.
    supervisor
        .tick(t0.saturating_add(Duration::from_secs(120 + 3601)))
        .await;
    assert!(supervisor.records().is_empty());
    assert!(!fx.cgroup_exists(&a) && !fx.cgroup_exists(&b));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restart_adopts_wanted_workloads_and_removes_orphans() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let data = fx.dir.path().join("store");
    let t0 = agora_node::clock::now();
    let (wanted, orphan) = (WorkloadId::random(), WorkloadId::random());
    {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(&data).unwrap());
        let runtime: Arc<dyn Runtime> = fx.runtime.clone();
        let supervisor =
            Supervisor::new(store, vec![runtime], SupervisorConfig::default()).unwrap();
        supervisor
            .launch(
                wanted.clone(),
                Isolation::Sandbox,
                fx.spec("exec sleep 600"),
                t0,
            )
            .await
            .unwrap();
        // Started behind the supervisor's back: no record, as after a crash mid-launch.
        fx.runtime
            .create(&orphan, &fx.spec("exec sleep 600"))
            .await
            .unwrap();
        fx.runtime.start(&orphan).await.unwrap();
    }
    // "Restart": a new runtime over the same state dir, a new supervisor over the same store.
    let sandbox = Arc::new(Fixture::open(fx.dir.path(), &fx.parent).await);
    let runtime: Arc<dyn Runtime> = sandbox.clone();
    assert_eq!(
        runtime.state(&wanted).await.unwrap(),
        WorkloadState::Running
    );
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(&data).unwrap());
    let supervisor =
        Supervisor::new(store, vec![runtime.clone()], SupervisorConfig::default()).unwrap();
    let removed = supervisor.reconcile(t0).await.unwrap();
    assert_eq!(removed, vec![orphan.clone()]);
    assert!(
        !fx.cgroup_exists(&orphan),
        "the orphan's processes and cgroup are gone"
    );
    assert_eq!(
        runtime.state(&wanted).await.unwrap(),
        WorkloadState::Running
    );
    // The adopted workload is still fully manageable.
    let (out, _, code) = exec_collect(&sandbox, &wanted, &["echo", "still here"], b"").await;
    assert_eq!((out.trim(), code), ("still here", 0));
    let reason = supervisor
        .stop(&wanted, TerminationReason::StoppedByAgent, t0)
        .await
        .unwrap();
    assert_eq!(reason, TerminationReason::StoppedByAgent);
    runtime.remove(&wanted).await.unwrap();
    assert!(!fx.cgroup_exists(&wanted));
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls() {
    if let Some(fx) = Fixture::new().await {
        network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls_on(fx).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls_on_a_warm_sandbox()
 {
    if let Some(fx) = Fixture::warm().await {
        network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls_on(fx).await;
    }
}

async fn network_policy_denies_private_ranges_smtp_and_the_host_with_positive_controls_on(
    fx: Fixture,
) {
    // The outside host has fixed addresses: one probe at a time (cold and warm variants).
    static ONE_PROBE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _probe = ONE_PROBE.lock().await;
    let before = count_rules();
    let probe = PolicyProbe::new();
    let mut spec = fx.spec(&probe.script());
    spec.network.enabled = true;
    spec.network.egress = true;
    let id = fx.run(&spec).await;
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 0 }
    );
    let (out, err) = fx.logs(&id).await;
    probe.check_denials(&out, &err);
    probe.check_positive_controls();

    // A workload without egress has loopback only: even the allowed destination is closed.
    let mut closed = fx.spec(&format!(
        "{}; tail -n +3 /proc/net/dev | cut -d: -f1",
        probe_script(&[("198.51.100.2", 8080)])
    ));
    closed.network.enabled = true;
    let closed_id = fx.run(&closed).await;
    fx.wait_end(&closed_id).await;
    let (out, _) = fx.logs(&closed_id).await;
    assert!(out.contains("198.51.100.2:8080=closed"), "{out}");
    assert_eq!(out.lines().last().map(str::trim), Some("lo"));
    assert_eq!(probe.outside.arrived(8080), 2);

    fx.runtime.remove(&id).await.unwrap();
    fx.runtime.remove(&closed_id).await.unwrap();
    drop(probe);
    assert_eq!(
        count_rules(),
        before,
        "firewall rules and interfaces are gone"
    );
}

/// Warm sandboxes under `parent` on the host: their cgroups and scratch mounts.
fn warm_leftovers(state: &Path, parent: &str) -> (Vec<String>, usize) {
    let cgroups = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .filter_map(|base| std::fs::read_dir(Path::new(base).join(parent)).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("pool."))
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*state.join("pool").to_string_lossy()))
        .count();
    (cgroups, mounts)
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_sandboxes_are_taken_at_create_and_refilled() {
    let Some(fx) = Fixture::warm().await else {
        return;
    };
    // Created and never started: it holds a warm sandbox, whose processes go with it.
    let idle = WorkloadId::random();
    fx.runtime
        .create(&idle, &fx.spec("echo never"))
        .await
        .unwrap();
    assert_eq!(fx.runtime.warm_ready(&fx.busybox), WARM - 1);
    assert!(fx.cgroup_exists(&idle));
    fx.stop_and_remove(&idle).await;
    assert!(!fx.cgroup_exists(&idle));
    // The next one runs on the other, and the pool is topped up once launches pause.
    let id = fx.run(&fx.spec("echo $GREETING from $(hostname)")).await;
    assert_eq!(
        fx.wait_end(&id).await,
        TerminationReason::Exited { code: 0 }
    );
    assert_eq!(fx.logs(&id).await.0.trim(), format!("hello from {id}"));
    fx.runtime.remove(&id).await.unwrap();
    fx.wait_warm(WARM).await;
    // A warm sandbox that died after it was given out: the workload is built cold instead,
    // with nothing of the dead one in its logs.
    let orphaned = WorkloadId::random();
    fx.runtime
        .create(&orphaned, &fx.spec("echo cold $(hostname)"))
        .await
        .unwrap();
    for pid in fx.cgroup_pids(&orphaned) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    fx.runtime.start(&orphaned).await.unwrap();
    assert_eq!(
        fx.wait_end(&orphaned).await,
        TerminationReason::Exited { code: 0 }
    );
    assert_eq!(
        fx.logs(&orphaned).await,
        (format!("cold {orphaned}\n"), String::new())
    );
    fx.runtime.remove(&orphaned).await.unwrap();
    fx.wait_warm(WARM).await;
    // A workload dir that already exists is refused before a warm sandbox is spent.
    let taken = WorkloadId::random();
    std::fs::create_dir_all(
        fx.dir
            .path()
            .join("sandbox")
            .join("workloads")
            .join(taken.as_str()),
    )
    .unwrap();
    assert!(matches!(
        fx.runtime.create(&taken, &fx.spec("true")).await,
        Err(RuntimeError::AlreadyExists(_))
    ));
    assert_eq!(fx.runtime.warm_ready(&fx.busybox), WARM);
    // The node stops: the warm sandboxes go with everything they hold on the host, and
    // none is made again.
    fx.runtime.close().await;
    assert_eq!(fx.runtime.warm_ready(&fx.busybox), 0);
    let (cgroups, mounts) = warm_leftovers(&fx.dir.path().join("sandbox"), &fx.parent);
    assert!(cgroups.is_empty(), "warm cgroups left: {cgroups:?}");
    assert_eq!(mounts, 0, "warm scratch mounts left");
    tokio::time::sleep(agora_node::runtime::sandbox::WARM_QUIET * 3).await;
    assert_eq!(fx.runtime.warm_ready(&fx.busybox), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_adopts_a_workload_born_warm_and_clears_the_warm_sandboxes_left() {
    let Some(fx) = Fixture::new().await else {
        return;
    };
    let state = fx.dir.path().join("b");
    let first = Fixture::open_warm(&state, &fx.parent, WARM).await;
    for _ in 0..400 {
        if first.warm_ready(&fx.busybox) == WARM {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.warm_ready(&fx.busybox), WARM);
    let id = WorkloadId::random();
    first
        .create(&id, &fx.spec("echo up; exec sleep 600"))
        .await
        .unwrap();
    first.start(&id).await.unwrap();
    // Another is created on a warm sandbox, and the node goes before it starts.
    let unstarted = WorkloadId::random();
    first
        .create(&unstarted, &fx.spec("echo never"))
        .await
        .unwrap();
    drop(first);
    // The node process is gone; a new one opens the same state without warm sandboxes.
    let second = Arc::new(Fixture::open(&state, &fx.parent).await);
    assert_eq!(
        second.state(&id).await.unwrap(),
        WorkloadState::Running,
        "the workload outlives the node"
    );
    assert!(
        matches!(
            second.state(&unstarted).await.unwrap(),
            WorkloadState::Ended(TerminationReason::RuntimeError { ref detail })
                if detail.contains("before the workload started")
        ),
        "{:?}",
        second.state(&unstarted).await
    );
    second.remove(&unstarted).await.unwrap();
    let (out, _, code) = exec_collect(&second, &id, &["hostname"], b"").await;
    assert_eq!((out.trim(), code), (id.as_str(), 0));
    let (cgroups, mounts) = warm_leftovers(&state.join("sandbox"), &fx.parent);
    assert!(cgroups.is_empty(), "warm cgroups left: {cgroups:?}");
    assert_eq!(mounts, 0, "warm scratch mounts left");
    let pool_dir = state.join("sandbox").join("pool");
    assert!(
        std::fs::read_dir(&pool_dir).map_or(true, |mut d| d.next().is_none()),
        "warm directories left"
    );
    second
        .stop(
            &id,
            TerminationReason::StoppedByAgent,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    second.remove(&id).await.unwrap();
}
