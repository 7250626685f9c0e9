//! Copying files into and out of running workloads ([`Runtime::put_files`],
//! [`Runtime::get_files`]) on the real runtimes: the sandbox and the Docker engine.
//!
//! The same scenarios run on both: a tar with files, a nested directory, a symlink and a
//! 4 MiB file goes into `/tmp/up` of a running busybox workload, is read back with `cat` and
//! `sha256sum` inside it, and comes out again with `get_files`, unpacked with the `tar`
//! crate. Errors: a missing path, bad paths, a read-only destination, a truncated upload, a
//! file tar cannot read (the stream must end in an error, not a clean end), a symlink the
//! workload planted towards a host directory, and an image without `tar`.
//!
//! Sandbox tests need what `runtime_sandbox` needs (`AGORA_SKIP_SANDBOX=1` skips them);
//! Docker tests need an engine (`AGORA_SKIP_DOCKER=1` skips them when none answers).

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agora_node::runtime::{
    ExecEvent, ExecRequest, OutputStream, Runtime, RuntimeError, WorkloadId,
};
use agora_protocol::Digest;
use agora_protocol::workload::{
    ImageSource, NetworkRequest, Resources, TerminationReason, WorkloadSpec,
};
use tokio::io::{AsyncRead, AsyncReadExt};

const WAIT: Duration = Duration::from_secs(60);

/// A 4 MiB file that is not all one byte.
fn big_file() -> Vec<u8> {
    (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `hello.txt`, `sub/deeper/data.txt`, `sub/link -> ../hello.txt` and `big.bin`.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        // An owner the workload does not have: put must not need to restore it.
        h.set_uid(4321);
        h.set_gid(4321);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    file(&mut b, "hello.txt", b"hello, workload\n", 0o644);
    for dir in ["sub/", "sub/deeper/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    file(&mut b, "sub/deeper/data.txt", b"nested\n", 0o600);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "sub/link", "../hello.txt").unwrap();
    file(&mut b, "big.bin", &big_file(), 0o644);
    b.into_inner().unwrap()
}

/// The entries of an archive: path → (kind, contents or link target).
fn entries_of(archive: &[u8]) -> BTreeMap<String, (char, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(archive);
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let path = path.trim_end_matches('/').to_owned();
        let kind = entry.header().entry_type();
        let value = if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            ('f', data)
        } else if kind.is_dir() {
            ('d', Vec::new())
        } else if kind.is_symlink() {
            let target = entry.link_name().unwrap().unwrap();
            ('l', target.display().to_string().into_bytes())
        } else {
            ('?', Vec::new())
        };
        out.insert(path, value);
    }
    out
}

async fn read_all(mut r: Box<dyn AsyncRead + Send + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut out))
        .await
        .expect("the archive ended in time")?;
    Ok(out)
}

/// Runs `command` in the workload: (stdout, stderr, exit code).
async fn exec(rt: &dyn Runtime, id: &WorkloadId, command: &[&str]) -> (Vec<u8>, String, i32) {
    let mut session = rt
        .exec(
            id,
            ExecRequest {
                command: command.iter().map(|s| (*s).to_owned()).collect(),
                ..ExecRequest::default()
            },
        )
        .await
        .unwrap();
    drop(session.stdin);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match session.events.recv().await {
                Some(ExecEvent::Output(c)) if c.stream == OutputStream::Stdout => {
                    out.extend(c.data)
                }
                Some(ExecEvent::Output(c)) => err.extend(c.data),
                Some(ExecEvent::Exit(code)) => return code,
                None => panic!("exec ended without an exit code"),
            }
        }
    })
    .await
    .expect("exec ended in time");
    (out, String::from_utf8_lossy(&err).into_owned(), code)
}

async fn sh(rt: &dyn Runtime, id: &WorkloadId, script: &str) -> String {
    let (out, err, code) = exec(rt, id, &["sh", "-c", script]).await;
    assert_eq!(code, 0, "{script}: {err}");
    String::from_utf8(out).unwrap()
}

fn spec(image: ImageSource) -> WorkloadSpec {
    WorkloadSpec {
        image,
        command: vec!["sleep".into(), "600".into()],
        env: BTreeMap::new(),
        workdir: None,
        resources: Resources {
            vcpu_milli: 500,
            memory_mib: 64,
            disk_mib: 32,
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

/// Put, read back inside, get out again, and every refusal, on a running busybox workload.
/// `host_dir` is a directory on the host the workload must never reach.
async fn files_scenario(rt: &dyn Runtime, id: &WorkloadId, host_dir: &Path) {
    let archive = sample_tar();
    let big = big_file();
    let fed = rt
        .put_files(id, "/tmp/up", Box::new(Cursor::new(archive.clone())))
        .await
        .unwrap();
    assert!(
        fed > big.len() as u64 && fed <= archive.len() as u64,
        "{fed} of {}",
        archive.len()
    );

    // Inside, as the workload sees it.
    assert_eq!(
        sh(
            rt,
            id,
            "cat /tmp/up/hello.txt /tmp/up/sub/deeper/data.txt /tmp/up/sub/link"
        )
        .await,
        "hello, workload\nnested\nhello, workload\n"
    );
    let sum = sh(rt, id, "sha256sum /tmp/up/big.bin").await;
    assert!(
        sum.starts_with(&Digest::of(&big).to_string()),
        "{sum} vs {}",
        Digest::of(&big)
    );
    assert_eq!(
        sh(rt, id, "stat -c %a /tmp/up/sub/deeper/data.txt").await,
        "600\n"
    );

    // Out again: a directory, recursively.
    let got = read_all(rt.get_files(id, "/tmp/up").await.unwrap())
        .await
        .unwrap();
    let entries = entries_of(&got);
    assert_eq!(entries["up"].0, 'd');
    assert_eq!(entries["up/sub/deeper"].0, 'd');
    assert_eq!(
        entries["up/hello.txt"],
        ('f', b"hello, workload\n".to_vec())
    );
    assert_eq!(
        entries["up/sub/deeper/data.txt"],
        ('f', b"nested\n".to_vec())
    );
    assert_eq!(entries["up/sub/link"], ('l', b"../hello.txt".to_vec()));
    assert!(entries["up/big.bin"].1 == big, "big.bin differs");
    // A single file, with a trailing slash and a `.` on the way.
    let got = read_all(rt.get_files(id, "/tmp/./up/hello.txt").await.unwrap())
        .await
        .unwrap();
    let entries = entries_of(&got);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["hello.txt"]);
    // Into an existing directory: merged, files replaced.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &b"new\n"[..]).unwrap();
    rt.put_files(
        id,
        "/tmp/up/",
        Box::new(Cursor::new(b.into_inner().unwrap())),
    )
    .await
    .unwrap();
    assert_eq!(
        sh(rt, id, "cat /tmp/up/hello.txt /tmp/up/sub/deeper/data.txt").await,
        "new\nnested\n"
    );

    // A missing path is an error before any byte.
    for missing in ["/tmp/nope", "/tmp/no/such/dir", "/nope"] {
        let err = rt.get_files(id, missing).await.err().unwrap();
        assert!(
            matches!(&err, RuntimeError::NoSuchPath(p) if p == missing),
            "{missing}: {err}"
        );
        assert!(err.is_client_error());
    }
    // Bad paths are refused.
    for bad in ["tmp/x", "/tmp/../etc", "", "/a\0b"] {
        let err = rt
            .put_files(id, bad, Box::new(Cursor::new(archive.clone())))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::BadPath(_)), "{bad:?}: {err}");
        let err = rt.get_files(id, bad).await.err().unwrap();
        assert!(matches!(err, RuntimeError::BadPath(_)), "{bad:?}: {err}");
    }
    // The root filesystem is read-only.
    let err = rt
        .put_files(id, "/etc/agora", Box::new(Cursor::new(archive.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("Read-only")),
        "{err}"
    );
    // A truncated upload fails and says why.
    let cut = archive[..archive.len() / 2].to_vec();
    let err = rt
        .put_files(id, "/tmp/cut", Box::new(Cursor::new(cut)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("tar")),
        "{err}"
    );

    // A file tar cannot read: the archive starts, then the stream fails instead of ending.
    sh(
        rt,
        id,
        "mkdir -p /tmp/locked && echo a > /tmp/locked/a && echo z > /tmp/locked/z && chmod 000 /tmp/locked/z",
    )
    .await;
    let readable = sh(rt, id, "cat /tmp/locked/z 2>/dev/null || echo denied").await;
    if readable == "denied\n" {
        let err = read_all(rt.get_files(id, "/tmp/locked").await.unwrap())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("incomplete") && text.contains("Permission denied"),
            "{text}"
        );
    } else {
        eprintln!("the workload can read a mode-000 file (it has CAP_DAC_OVERRIDE): skipped");
    }

    // A symlink the workload planted towards a host directory resolves inside the workload.
    let target = host_dir.join("escape-target");
    std::fs::create_dir_all(&target).unwrap();
    let link = format!("ln -s {} /tmp/escape", target.display());
    sh(rt, id, &link).await;
    let _ = rt
        .put_files(id, "/tmp/escape", Box::new(Cursor::new(archive.clone())))
        .await;
    let _ = rt
        .put_files(id, "/tmp", Box::new(Cursor::new(escape_tar(&target))))
        .await;
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "the host directory stayed untouched"
    );
}

/// An archive whose entries write through a symlink to `target` (absolute, on the host).
fn escape_tar(target: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "evil", target).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    // The tar crate refuses to build a path through a link only when unpacking; raw is fine.
    b.append_data(&mut h, "evil/owned", &b"owned"[..]).unwrap();
    b.into_inner().unwrap()
}

/// On an image without `tar`, both directions say so.
async fn no_tar_scenario(rt: &dyn Runtime, id: &WorkloadId) {
    let err = rt
        .put_files(id, "/tmp/up", Box::new(Cursor::new(sample_tar())))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("has no `tar`")),
        "{err}"
    );
    let err = rt.get_files(id, "/etc/agora-test").await.err().unwrap();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("has no `tar`")),
        "{err}"
    );
}

mod sandbox {
    use std::sync::atomic::{AtomicU8, Ordering};

    use agora_node::runtime::netpolicy::Policy;
    use agora_node::runtime::sandbox::net::SandboxNetwork;
    use agora_node::runtime::sandbox::{SandboxConfig, SandboxRuntime};

    use super::*;

    struct Fixture {
        runtime: SandboxRuntime,
        dir: tempfile::TempDir,
        parent: String,
    }

    impl Fixture {
        async fn new() -> Option<Self> {
            if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
                return None;
            }
            static NEXT: AtomicU8 = AtomicU8::new(100);
            let dir = tempfile::tempdir().unwrap();
            let parent = format!("agora-test-{:08x}", rand::random::<u32>());
            let runtime = SandboxRuntime::open(SandboxConfig {
                state_dir: dir.path().join("sandbox"),
                cgroup_parent: parent.clone(),
                network: SandboxNetwork {
                    pool: (
                        std::net::Ipv4Addr::new(10, 215, NEXT.fetch_add(1, Ordering::Relaxed), 0),
                        24,
                    ),
                    policy: Policy {
                        egress: false,
                        blocked_ports: vec![],
                        allow: vec![],
                    },
                },
                warm: 0,
                warm_gauge: None,
            })
            .await
            .unwrap_or_else(|e| {
                panic!("the sandbox runtime cannot run here: {e} (AGORA_SKIP_SANDBOX=1 to skip)")
            });
            Some(Self {
                runtime,
                dir,
                parent,
            })
        }

        async fn run(&self, image: ImageSource) -> WorkloadId {
            let id = WorkloadId::random();
            self.runtime.create(&id, &spec(image)).await.unwrap();
            self.runtime.start(&id).await.unwrap();
            id
        }

        async fn end(&self, id: &WorkloadId) {
            self.runtime
                .stop(id, TerminationReason::StoppedByAgent, Duration::ZERO)
                .await
                .unwrap();
            self.runtime.remove(id).await.unwrap();
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            for base in [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup",
            ] {
                let _ = std::fs::remove_dir(Path::new(base).join(&self.parent));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sandbox_files_go_in_and_out_and_errors_are_clear() {
        let Some(fx) = Fixture::new().await else {
            return;
        };
        let digest = fx.runtime.images_store().by_name("busybox").expect(
            "the busybox image (apt-get install busybox-static; AGORA_SKIP_SANDBOX=1 to skip)",
        );
        let id = fx
            .run(ImageSource::Named {
                name: "busybox".into(),
                digest,
            })
            .await;
        files_scenario(&fx.runtime, &id, fx.dir.path()).await;
        fx.end(&id).await;
        // Not running: refused, not hung.
        let err = fx.runtime.get_files(&id, "/tmp").await.err().unwrap();
        assert!(matches!(err, RuntimeError::NotFound(_)), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sandbox_image_without_tar_is_a_clear_error() {
        let Some(fx) = Fixture::new().await else {
            return;
        };
        let agora_tests::busybox::Tarball {
            path: tarball,
            digest,
            size,
        } = agora_tests::busybox::tarball(fx.dir.path(), Some("no tar"), &["tar"]);
        fx.runtime
            .import_image(&tarball, &digest, size)
            .await
            .unwrap();
        let id = fx
            .run(ImageSource::Tarball {
                digest,
                size_bytes: size,
            })
            .await;
        no_tar_scenario(&fx.runtime, &id).await;
        fx.end(&id).await;
    }
}

mod docker {
    use std::sync::Mutex;

    use agora_node::runtime::docker::{DockerConfig, DockerRuntime, UPLOAD_REPO};
    use agora_node::runtime::netpolicy;

    use super::*;

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
        tags: Mutex<Vec<String>>,
    }

    impl Env {
        fn new() -> Self {
            Self {
                node: format!("f{:08x}", rand::random::<u32>()),
                dir: tempfile::tempdir().unwrap(),
                tags: Mutex::new(Vec::new()),
            }
        }
    }

    impl Drop for Env {
        fn drop(&mut self) {
            let label = format!("label=agora.node={}", self.node);
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
            for network in [
                format!("agora-{}-wl", self.node),
                format!("agora-{}-wl-int", self.node),
            ] {
                let Ok(mut restore) = Command::new("iptables-restore")
                    .arg("--noflush")
                    .stdin(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                else {
                    continue;
                };
                use std::io::Write as _;
                if let Some(mut stdin) = restore.stdin.take() {
                    let _ = stdin.write_all(netpolicy::bridge_remove_script(&network).as_bytes());
                }
                let _ = restore.wait();
            }
            let tags = std::mem::take(&mut *self.tags.lock().unwrap_or_else(|e| e.into_inner()));
            for tag in tags.iter().rev() {
                docker_cli(&["rmi", "-f", tag]);
            }
        }
    }

    /// A connected runtime and a running busybox workload (without the `without` applets),
    /// or `None` when `AGORA_SKIP_DOCKER=1` and no engine answers.
    async fn setup(test: &str, without: &[&str]) -> Option<(Env, DockerRuntime, WorkloadId)> {
        let env = Env::new();
        let config = DockerConfig {
            node: env.node.clone(),
            ..Default::default()
        };
        let rt = match DockerRuntime::connect(config).await {
            Ok(rt) => rt,
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
        };
        let marker = format!("{test} {}", env.node);
        let agora_tests::busybox::Tarball { path, digest, size } =
            agora_tests::busybox::tarball(env.dir.path(), Some(&marker), without);
        env.tags
            .lock()
            .unwrap()
            .push(format!("{UPLOAD_REPO}:{digest}"));
        rt.import_image(&path, &digest, size).await.unwrap();
        let id = WorkloadId::random();
        let image = ImageSource::Tarball {
            digest,
            size_bytes: size,
        };
        rt.create(&id, &spec(image)).await.unwrap();
        rt.start(&id).await.unwrap();
        Some((env, rt, id))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_files_go_in_and_out_and_errors_are_clear() {
        let Some((env, rt, id)) = setup("docker_files", &[]).await else {
            return;
        };
        files_scenario(&rt, &id, env.dir.path()).await;
        rt.stop(&id, TerminationReason::StoppedByAgent, Duration::ZERO)
            .await
            .unwrap();
        let err = rt.get_files(&id, "/tmp").await.err().unwrap();
        assert!(matches!(err, RuntimeError::WrongState { .. }), "{err}");
        rt.remove(&id).await.unwrap();
        let err = rt.get_files(&id, "/tmp").await.err().unwrap();
        assert!(matches!(err, RuntimeError::NotFound(_)), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_image_without_tar_is_a_clear_error() {
        let Some((_env, rt, id)) = setup("docker_no_tar", &["tar"]).await else {
            return;
        };
        no_tar_scenario(&rt, &id).await;
        rt.remove(&id).await.unwrap();
    }
}
