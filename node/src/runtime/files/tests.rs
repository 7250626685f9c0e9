//! Tests of the exec-based file transfer against a fake runtime whose "workload" is the host:
//! its exec runs the command as a host process (real GNU tar), in a temporary directory.

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use agora_protocol::offer::{ImageRef, Isolation};
use agora_protocol::workload::{TerminationReason, WorkloadSpec};
use futures::stream::BoxStream;

use super::*;
use crate::runtime::{ByteStream, OutputChunk, Stats, WorkloadInfo, WorkloadState};

/// How [`HostExec`] runs `tar`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tar {
    /// The host's tar.
    Real,
    /// As if the image had none.
    Missing,
    /// The host's tar, then a failure (exit 2, "boom" on stderr).
    FailsAfter,
}

struct HostExec {
    tar: Tar,
    execs: AtomicUsize,
    commands: Mutex<Vec<Vec<String>>>,
}

impl HostExec {
    fn new(tar: Tar) -> Self {
        Self {
            tar,
            execs: AtomicUsize::new(0),
            commands: Mutex::new(Vec::new()),
        }
    }
}

fn unsupported<T>() -> Result<T, RuntimeError> {
    Err(RuntimeError::Unsupported("host exec fake".into()))
}

/// Forwards a host process's output, then its exit code, like the sandbox's exec.
async fn pump(mut child: tokio::process::Child, tx: mpsc::Sender<ExecEvent>) {
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return;
    };
    let (mut out_open, mut err_open) = (true, true);
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    while out_open || err_open {
        let (stream, read) = tokio::select! {
            r = out.read(&mut a), if out_open => (OutputStream::Stdout, r),
            r = err.read(&mut b), if err_open => (OutputStream::Stderr, r),
        };
        let n = read.unwrap_or(0);
        let data = match stream {
            OutputStream::Stdout => &a,
            OutputStream::Stderr => &b,
        };
        if n == 0 {
            match stream {
                OutputStream::Stdout => out_open = false,
                OutputStream::Stderr => err_open = false,
            }
            continue;
        }
        let chunk = OutputChunk {
            stream,
            data: data[..n].to_vec(),
        };
        if tx.send(ExecEvent::Output(chunk)).await.is_err() {
            return;
        }
    }
    let code = child
        .wait()
        .await
        .ok()
        .and_then(|s| s.code())
        .unwrap_or(137);
    let _ = tx.send(ExecEvent::Exit(code)).await;
}

#[async_trait::async_trait]
impl Runtime for HostExec {
    fn isolation(&self) -> Isolation {
        Isolation::Sandbox
    }
    async fn images(&self) -> Result<Vec<ImageRef>, RuntimeError> {
        unsupported()
    }
    async fn import_image(
        &self,
        _: &Path,
        _: &agora_protocol::Digest,
        _: u64,
    ) -> Result<(), RuntimeError> {
        unsupported()
    }
    async fn create(&self, _: &WorkloadId, _: &WorkloadSpec) -> Result<(), RuntimeError> {
        unsupported()
    }
    async fn start(&self, _: &WorkloadId) -> Result<(), RuntimeError> {
        unsupported()
    }
    async fn exec(&self, _: &WorkloadId, req: ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        self.commands.lock().unwrap().push(req.command.clone());
        let (tx, rx) = mpsc::channel(16);
        let mut argv = req.command.clone();
        if argv[0] == "tar" {
            match self.tar {
                Tar::Real => {}
                Tar::Missing => argv[0] = "agora-test-no-such-tar".into(),
                Tar::FailsAfter => {
                    let script = "\"$@\"; echo boom >&2; exit 2";
                    argv.splice(0..0, ["sh", "-c", script, "sh"].map(String::from));
                }
            }
        }
        let spawned = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .envs(&req.env)
            .current_dir(req.workdir.as_deref().unwrap_or("/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let stdin: ByteSink = match spawned {
            Ok(mut child) => {
                let stdin = child.stdin.take().unwrap();
                tokio::spawn(pump(child, tx));
                Box::pin(stdin)
            }
            Err(e) => {
                // What a shell would say.
                let data = format!("sh: {}: {e}\n", argv[0]).into_bytes();
                let chunk = OutputChunk {
                    stream: OutputStream::Stderr,
                    data,
                };
                tx.send(ExecEvent::Output(chunk)).await.unwrap();
                tx.send(ExecEvent::Exit(127)).await.unwrap();
                Box::pin(tokio::io::sink())
            }
        };
        Ok(ExecSession { stdin, events: rx })
    }
    async fn logs(
        &self,
        _: &WorkloadId,
        _: bool,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        unsupported()
    }
    async fn stats(&self, _: &WorkloadId) -> Result<Stats, RuntimeError> {
        unsupported()
    }
    async fn state(&self, _: &WorkloadId) -> Result<WorkloadState, RuntimeError> {
        unsupported()
    }
    async fn stop(
        &self,
        _: &WorkloadId,
        _: TerminationReason,
        _: Duration,
    ) -> Result<TerminationReason, RuntimeError> {
        unsupported()
    }
    async fn remove(&self, _: &WorkloadId) -> Result<(), RuntimeError> {
        unsupported()
    }
    async fn list(&self) -> Result<Vec<WorkloadInfo>, RuntimeError> {
        unsupported()
    }
    async fn connect(&self, _: &WorkloadId, _: u16) -> Result<Box<dyn ByteStream>, RuntimeError> {
        unsupported()
    }
}

fn id() -> WorkloadId {
    "w-files".parse().unwrap()
}

/// An archive with `hello.txt` and `sub/deeper/data.bin` (and their directories).
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("hello.txt", b"hello, workload\n", 0o644);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    for d in ["sub/", "sub/deeper/"] {
        dir.set_cksum();
        add_dir(&mut b, &mut dir, d);
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(big.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    b.append_data(&mut h, "sub/deeper/data.bin", big.as_slice())
        .unwrap();
    b.into_inner().unwrap()
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, h: &mut tar::Header, path: &str) {
    b.append_data(h, path, std::io::empty()).unwrap();
}

/// Every regular file of an archive: (path, contents).
fn files_of(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(archive);
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(path, data);
        }
    }
    out
}

async fn read_all(mut r: Box<dyn AsyncRead + Send + Unpin>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

#[test]
fn paths_are_checked() {
    for ok in [
        "/",
        "/tmp",
        "/tmp/up/",
        "/a/./b",
        "/a b/ü",
        &format!("/{}", "a".repeat(4095)),
    ] {
        check_path(ok).unwrap();
    }
    for bad in [
        "",
        "tmp/x",
        "./x",
        "/tmp/../etc",
        "/..",
        "/a/..",
        "/a\0b",
        &format!("/{}", "a".repeat(4096)),
    ] {
        let err = check_path(bad).unwrap_err();
        assert!(matches!(err, RuntimeError::BadPath(_)), "{bad:?}: {err}");
        assert!(err.is_client_error());
    }
    // `..` inside a name is just a name.
    check_path("/tmp/a..b").unwrap();
}

#[test]
fn paths_split_into_directory_and_name() {
    assert_eq!(normalize("/tmp//up/./x/"), "/tmp/up/x");
    assert_eq!(normalize("/"), "/");
    assert_eq!(normalize("//./"), "/");
    let s = |p: &str| split(&normalize(p));
    assert_eq!(s("/tmp/up/x"), ("/tmp/up".into(), "x".into()));
    assert_eq!(s("/tmp/"), ("/".into(), "tmp".into()));
    assert_eq!(s("/"), ("/".into(), ".".into()));
}

#[test]
fn failures_name_a_missing_tool_or_path() {
    let no_tar = [
        (127, "sh: tar: not found"),
        (
            126,
            "OCI runtime exec failed: exec: \"tar\": executable file not found in $PATH",
        ),
        (1, "bwrap: execvp tar: No such file or directory"),
    ];
    for (code, text) in no_tar {
        let e = failure(Op::Get, "tar", "/x", code, text).to_string();
        assert!(e.contains("has no `tar`"), "{e}");
    }
    let e = failure(
        Op::Get,
        "tar",
        "/x",
        1,
        "tar: x: Cannot stat: No such file or directory",
    );
    assert!(
        matches!(&e, RuntimeError::NoSuchPath(p) if p == "/x"),
        "{e}"
    );
    assert!(e.is_client_error());
    let e = failure(Op::Put, "tar", "/x", 2, "tar: y: No such file or directory");
    assert!(
        matches!(&e, RuntimeError::FileTransfer(m) if m.contains("tar: y")),
        "{e}"
    );
    assert!(!failure(Op::Get, "tar", "/x", -1, "").is_client_error());
}

#[test]
fn reports_are_bounded() {
    let mut r = Report::default();
    r.push(b"tar: ");
    r.push(&[b'x'; 4000]);
    let text = r.text();
    assert!(
        text.starts_with("tar: xxx") && text.ends_with(" …"),
        "{text}"
    );
    assert!(text.len() <= MAX_REPORT_BYTES + 4);
}

#[tokio::test]
async fn put_then_get_round_trips_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let rt = HostExec::new(Tar::Real);
    let up = format!("{}/up/nested", dir.path().display());
    let archive = sample_tar();
    let fed = put_via_exec(
        &rt,
        &id(),
        &up,
        Box::new(std::io::Cursor::new(archive.clone())),
    )
    .await
    .unwrap();
    assert!(fed > 300_000 && fed <= archive.len() as u64, "{fed}");
    let on_disk = std::fs::read(Path::new(&up).join("sub/deeper/data.bin")).unwrap();
    assert_eq!(on_disk, files_of(&archive)["sub/deeper/data.bin"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(&up).join("hello.txt")).unwrap(),
        "hello, workload\n"
    );

    let got = read_all(get_via_exec(&rt, &id(), &up).await.unwrap())
        .await
        .unwrap();
    let files = files_of(&got);
    assert_eq!(files["nested/hello.txt"], b"hello, workload\n");
    assert_eq!(
        files["nested/sub/deeper/data.bin"],
        files_of(&archive)["sub/deeper/data.bin"]
    );
    let one = format!("{up}/hello.txt");
    let got = read_all(get_via_exec(&rt, &id(), &one).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        files_of(&got).into_keys().collect::<Vec<_>>(),
        ["hello.txt"]
    );
    // A name like an option is a name.
    std::fs::write(dir.path().join("--help"), b"x").unwrap();
    let odd = format!("{}/--help", dir.path().display());
    let got = read_all(get_via_exec(&rt, &id(), &odd).await.unwrap())
        .await
        .unwrap();
    assert_eq!(files_of(&got)["--help"], b"x");
}

#[tokio::test]
async fn a_missing_path_is_an_error_before_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    let rt = HostExec::new(Tar::Real);
    for missing in ["nope", "no/such/dir"] {
        let path = format!("{}/{missing}", dir.path().display());
        let err = get_via_exec(&rt, &id(), &path).await.err().unwrap();
        assert!(
            matches!(&err, RuntimeError::NoSuchPath(p) if *p == path),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_tar_failing_midway_ends_the_stream_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![7u8; 100_000]).unwrap();
    let rt = HostExec::new(Tar::FailsAfter);
    let path = format!("{}/f", dir.path().display());
    let mut reader = get_via_exec(&rt, &id(), &path).await.unwrap();
    let mut got = Vec::new();
    let err = reader.read_to_end(&mut got).await.unwrap_err();
    assert!(got.len() >= 100_000, "the archive came first");
    let text = err.to_string();
    assert!(
        text.contains("incomplete") && text.contains("boom"),
        "{text}"
    );
    // It stays failed.
    let mut more = [0u8; 16];
    assert!(reader.read(&mut more).await.is_err());
}

#[tokio::test]
async fn bad_paths_broken_archives_and_a_missing_tar_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = HostExec::new(Tar::Real);
    for bad in ["relative", "/tmp/../etc", ""] {
        let err = put_via_exec(&rt, &id(), bad, Box::new(tokio::io::empty()))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::BadPath(_)), "{err}");
        let err = get_via_exec(&rt, &id(), bad).await.err().unwrap();
        assert!(matches!(err, RuntimeError::BadPath(_)), "{err}");
    }
    assert_eq!(
        rt.execs.load(Ordering::SeqCst),
        0,
        "refused before any exec"
    );

    let path = format!("{}/x", dir.path().display());
    let junk = Box::new(std::io::Cursor::new(b"not a tar archive".repeat(100)));
    let err = put_via_exec(&rt, &id(), &path, junk).await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("tar:")),
        "{err}"
    );

    // The destination exists as a file: mkdir says so.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let path = format!("{}/file", dir.path().display());
    let err = put_via_exec(&rt, &id(), &path, Box::new(tokio::io::empty()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::FileTransfer(m) if m.contains("mkdir")),
        "{err}"
    );

    let rt = HostExec::new(Tar::Missing);
    let path = format!("{}/y", dir.path().display());
    let err = put_via_exec(
        &rt,
        &id(),
        &path,
        Box::new(std::io::Cursor::new(sample_tar())),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("has no `tar`"), "{err}");
    let err = get_via_exec(&rt, &id(), "/").await.err().unwrap();
    assert!(err.to_string().contains("has no `tar`"), "{err}");
}

/// A reader that yields some bytes, then fails (a client that went away).
struct Broken(usize);

impl AsyncRead for Broken {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.0 == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")));
        }
        let n = self.0.min(buf.remaining()).min(1024);
        buf.put_slice(&vec![0u8; n]);
        self.0 -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_upload_is_the_readers_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = HostExec::new(Tar::Real);
    let path = format!("{}/z", dir.path().display());
    let err = put_via_exec(&rt, &id(), &path, Box::new(Broken(10)))
        .await
        .unwrap_err();
    let RuntimeError::Host { source, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(source.kind(), io::ErrorKind::ConnectionReset);
    assert!(!err.is_client_error());
}

#[tokio::test]
async fn commands_are_argument_vectors_with_a_fixed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let rt = HostExec::new(Tar::Real);
    let path = format!("{}/a b/'c'", dir.path().display());
    put_via_exec(
        &rt,
        &id(),
        &path,
        Box::new(std::io::Cursor::new(sample_tar())),
    )
    .await
    .unwrap();
    assert!(Path::new(&path).join("hello.txt").exists());
    let commands = rt.commands.lock().unwrap().clone();
    assert_eq!(commands[0], ["mkdir", "-p", &path]);
    assert_eq!(commands[1], ["tar", "-x", "-o", "-C", &path, "-f", "-"]);
    let req = request(&["tar"]);
    assert_eq!(req.env["TAR_OPTIONS"], "");
    assert_eq!(req.env["LC_ALL"], "C");
    assert!(!req.tty);
}
