//! The command lines that start a sandbox and exec into one (pure: no processes here).
//!
//! A workload starts as `sh -c LAUNCH … bwrap ARGS -- COMMAND`. The shell waits for one line
//! on its stdin before it `exec`s bubblewrap: meanwhile the node moves the shell into the
//! workload's cgroup, so every process the workload ever starts is limited and counted (no
//! fork can happen before the join). The shell also opens the seccomp programs and the
//! status file on the descriptors bubblewrap reads (3, 4, 5), which needs no `unsafe`
//! descriptor juggling in the node, and swaps its stdout: the pipe the node gave it becomes
//! bubblewrap's `--info-fd 7` (the sandbox's pid, then end-of-file, so the node waits for it
//! instead of polling the status file) and `stdout.log` the workload's stdout. Bubblewrap
//! then blocks once more (`--block-fd 6`, a copy of stdin) after it has reported the
//! sandbox's pid and before it runs the command, so the node can wire the sandbox's network
//! first.
//!
//! An exec enters the running sandbox's network, IPC and UTS namespaces with `nsenter`, then
//! starts a second bubblewrap inside its user and PID namespaces (`--userns`, `--pidns`)
//! over the same read-only root and the same scratch directory, under the same seccomp
//! filter and with no capabilities. Its processes share the workload's view, but not its
//! mount table, which nobody in the sandbox can change anyway.

use std::ffi::OsString;
use std::path::Path;

use agora_protocol::workload::WorkloadSpec;

use crate::runtime::ExecRequest;

/// Shell script that starts the workload: `$1`, `$2` seccomp programs, `$3` status file,
/// `$4` the stdout log (appended to). Redirections apply left to right: descriptor 7 takes
/// the node's pipe before stdout moves to the log.
pub const LAUNCH: &str = r#"d=$1 c=$2 s=$3 o=$4; shift 4; read -r _ || exit 97; exec "$@" 3<"$d" 4<"$c" 5>"$s" 6<&0 7>&1 1>>"$o""#;

/// [`LAUNCH`] for a warm sandbox (see `pool`): no block descriptor, since its command is
/// the stub, which blocks on its stdin by itself until the node writes the start script.
pub const LAUNCH_WARM: &str = r#"d=$1 c=$2 s=$3 o=$4; shift 4; read -r _ || exit 97; exec "$@" 3<"$d" 4<"$c" 5>"$s" 7>&1 1>>"$o""#;

/// Where a warm sandbox sees the host's static busybox, its stub shell. Bubblewrap's own
/// `/dev` tmpfs is the one place of a read-only image where it can add a file.
pub const STUB: &str = "/dev/.agora/busybox";

/// What the stub shell runs: it reads the start script up to a NUL on its stdin and
/// evaluates it (end-of-file first: the node went away; exit 97, as the launchers do).
const STUB_SCRIPT: &str = r#"IFS= read -r -d "" s || exit 97; eval "$s""#;

/// Shell script that starts an exec: `$1`, `$2` seccomp programs, `$3` the sandbox's init pid.
pub const EXEC: &str = r#"d=$1 c=$2 p=$3; shift 3; read -r _ || exit 97; exec nsenter --net=/proc/$p/ns/net --ipc=/proc/$p/ns/ipc --uts=/proc/$p/ns/uts -- "$@" 3<"$d" 4<"$c" 6</proc/$p/ns/user 7</proc/$p/ns/pid"#;

/// [`EXEC`] on a terminal: `$4` is the whole chain as one shell command ([`tty_command`]),
/// run by util-linux `script` on a fresh pty it holds on the host.
pub const EXEC_TTY: &str = r#"d=$1 c=$2 p=$3 cmd=$4; shift 4; read -r _ || exit 97; exec script -qefc "$cmd" /dev/null 3<"$d" 4<"$c" 6</proc/$p/ns/user 7</proc/$p/ns/pid"#;

/// Quotes `arg` for a POSIX shell (single quotes; a quote inside becomes `'\''`).
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// The chain [`EXEC`] runs (`nsenter … -- bwrap ARGS`), as one quoted shell command for
/// [`EXEC_TTY`].
pub fn tty_command(init: &str, bwrap: &Path, args: &[OsString]) -> String {
    let mut words = vec![
        "nsenter".to_owned(),
        format!("--net=/proc/{init}/ns/net"),
        format!("--ipc=/proc/{init}/ns/ipc"),
        format!("--uts=/proc/{init}/ns/uts"),
        "--".to_owned(),
        bwrap.to_string_lossy().into_owned(),
    ];
    words.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `PATH` inside every sandbox.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host paths a sandbox is built from.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The image's unpacked root filesystem (mounted read-only at `/`).
    pub rootfs: &'a Path,
    /// The workload's size-limited scratch tmpfs (mounted read-write at `/tmp`).
    pub scratch: &'a Path,
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// Filesystem, environment and hardening shared by the workload and its execs.
fn common(args: &mut Vec<OsString>, layout: &Layout<'_>, env: &[(&str, &str)], workdir: &str) {
    push(args, &["--cap-drop", "ALL", "--new-session", "--ro-bind"]);
    args.push(layout.rootfs.into());
    push(args, &["/", "--proc", "/proc", "--dev", "/dev", "--bind"]);
    args.push(layout.scratch.into());
    push(
        args,
        &[
            "/tmp",
            "--clearenv",
            "--setenv",
            "PATH",
            PATH,
            "--setenv",
            "HOME",
            "/tmp",
        ],
    );
    for (k, v) in env {
        push(args, &["--setenv", k, v]);
    }
    push(
        args,
        &[
            "--chdir",
            workdir,
            "--add-seccomp-fd",
            "3",
            "--add-seccomp-fd",
            "4",
        ],
    );
}

/// Namespaces and the status and pid reports of a new sandbox.
fn new_sandbox(args: &mut Vec<OsString>, hostname: &str) {
    push(
        args,
        &[
            "--unshare-user",
            "--uid",
            "0",
            "--gid",
            "0",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--unshare-cgroup-try",
            "--hostname",
            hostname,
            "--json-status-fd",
            "5",
            // The sandbox's pid for the node, then closed (by bubblewrap and its child).
            "--info-fd",
            "7",
        ],
    );
}

/// bubblewrap's arguments for the workload's main process.
pub fn main_args(hostname: &str, spec: &WorkloadSpec, layout: &Layout<'_>) -> Vec<OsString> {
    let mut args = Vec::new();
    new_sandbox(&mut args, hostname);
    // Waits for the node's second line on stdin: the network is ready.
    push(&mut args, &["--block-fd", "6"]);
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    common(
        &mut args,
        layout,
        &env,
        spec.workdir.as_deref().unwrap_or("/tmp"),
    );
    args.push("--".into());
    args.extend(spec.command.iter().map(OsString::from));
    args
}

/// bubblewrap's arguments for a warm sandbox: the same namespaces, filesystem and hardening
/// as [`main_args`] with no workload yet (default environment, `/tmp`), running the stub
/// shell `busybox` bound at [`STUB`] (`--ro-bind` after `--dev`, so the file lands on
/// bubblewrap's `/dev` tmpfs). [`start_script`] later gives it the workload.
pub fn warm_args(hostname: &str, layout: &Layout<'_>, busybox: &Path) -> Vec<OsString> {
    let mut args = Vec::new();
    new_sandbox(&mut args, hostname);
    common(&mut args, layout, &[], "/tmp");
    args.push("--ro-bind".into());
    args.push(busybox.into());
    push(&mut args, &[STUB, "--", STUB, "sh", "-c", STUB_SCRIPT]);
    args
}

/// The script a warm sandbox's stub evaluates to become `spec`'s workload: the working
/// directory, the environment `main_args` would set (the shell's own `PWD`, `OLDPWD` and
/// `SHLVL` removed), then `exec` of the command, which so becomes the sandbox's pid 2 as in
/// a cold start. Every word is shell-quoted, so nothing in the spec is shell text; the
/// spec's checks exclude NUL, which ends the script.
pub fn start_script(spec: &WorkloadSpec) -> String {
    let workdir = spec.workdir.as_deref().unwrap_or("/tmp");
    let mut script = format!(
        "cd -- {} || exit 1\nunset OLDPWD PWD SHLVL\n",
        shell_quote(workdir)
    );
    for (k, v) in &spec.env {
        script.push_str(&format!("export {}\n", shell_quote(&format!("{k}={v}"))));
    }
    script.push_str("exec --");
    for word in &spec.command {
        script.push(' ');
        script.push_str(&shell_quote(word));
    }
    script.push('\n');
    script
}

/// bubblewrap's arguments for an exec into the running workload (see [`EXEC`]).
pub fn exec_args(spec: &WorkloadSpec, req: &ExecRequest, layout: &Layout<'_>) -> Vec<OsString> {
    let mut args = Vec::new();
    push(
        &mut args,
        &[
            "--userns",
            "6",
            "--pidns",
            "7",
            "--uid",
            "0",
            "--gid",
            "0",
            "--die-with-parent",
        ],
    );
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .chain(&req.env)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let workdir = req
        .workdir
        .as_deref()
        .or(spec.workdir.as_deref())
        .unwrap_or("/tmp");
    let mut env = env;
    if req.tty && !req.env.contains_key("TERM") {
        env.push(("TERM", "xterm"));
    }
    common(&mut args, layout, &env, workdir);
    args.push("--".into());
    args.extend(req.command.iter().map(OsString::from));
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_protocol::Digest;
    use std::collections::BTreeMap;

    fn spec() -> WorkloadSpec {
        let mut s = WorkloadSpec::example(Digest::of(b"x"), &["sh", "-c", "echo $X"]);
        s.env = BTreeMap::from([("X".into(), "1; rm -rf /".into())]);
        s
    }

    #[test]
    fn the_command_and_env_are_separate_arguments_never_shell_text() {
        let layout = Layout {
            rootfs: Path::new("/images/x/rootfs"),
            scratch: Path::new("/state/w/scratch"),
        };
        let args = main_args("w-1", &spec(), &layout);
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dashdash = text.iter().position(|a| a == "--").unwrap();
        assert_eq!(text[dashdash + 1..], ["sh", "-c", "echo $X"]);
        let env_at = text.iter().position(|a| a == "X").unwrap();
        assert_eq!(text[env_at + 1], "1; rm -rf /");
        for needed in [
            "--unshare-user",
            "--unshare-net",
            "--unshare-pid",
            "--cap-drop",
            "--new-session",
        ] {
            assert!(text[..dashdash].contains(&needed.to_owned()), "{needed}");
        }
        assert!(
            text.windows(2)
                .any(|w| w[0] == "--ro-bind" && w[1] == "/images/x/rootfs")
        );
    }

    #[test]
    fn shell_quoting_survives_any_argument() {
        for arg in ["plain", "it's", "a b", "$(rm -rf /)", "'", "\"\\"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(arg)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
        }
    }

    #[test]
    fn exec_joins_namespaces_and_keeps_the_filter() {
        let layout = Layout {
            rootfs: Path::new("/r"),
            scratch: Path::new("/s"),
        };
        let req = ExecRequest {
            command: vec!["id".into()],
            env: BTreeMap::from([("Y".into(), "2".into())]),
            workdir: Some("/".into()),
            tty: false,
        };
        let text: Vec<String> = exec_args(&spec(), &req, &layout)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(text.windows(2).any(|w| w[0] == "--userns" && w[1] == "6"));
        assert!(text.windows(2).any(|w| w[0] == "--pidns" && w[1] == "7"));
        assert!(text.windows(2).any(|w| w[0] == "--chdir" && w[1] == "/"));
        assert!(!text.contains(&"--unshare-user".to_owned()));
        assert_eq!(text.last().unwrap(), "id");
        assert!(text.contains(&"Y".to_owned()) && text.contains(&"X".to_owned()));
    }

    /// The stub as a warm sandbox runs it, on the host's busybox: what it `exec`s is the
    /// spec's argv and environment, word for word, in its working directory.
    #[test]
    fn the_stub_runs_the_spec_word_for_word() {
        let busybox = Path::new(crate::runtime::images::BUSYBOX);
        if !busybox.exists() {
            eprintln!("skipped: no {}", busybox.display());
            return;
        }
        let weird = [
            "a b",
            "it's",
            "$(touch /x)",
            "line\nbreak",
            "'",
            "\\",
            "*",
            "",
        ];
        let mut command = vec![busybox.to_string_lossy().into_owned(), "printf".into()];
        command.push("[%s]".into());
        command.extend(weird.iter().map(|w| (*w).to_owned()));
        let mut s = spec();
        s.command = command;
        s.env = BTreeMap::from([("Y".into(), "x; $(id) 'q'\nz".into())]);
        s.workdir = Some("/".into());
        let run = |s: &WorkloadSpec| {
            let mut child = std::process::Command::new(busybox)
                .args(["sh", "-c", STUB_SCRIPT])
                .env_clear()
                .env("PATH", PATH)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut script = start_script(s).into_bytes();
            script.push(0);
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &script).unwrap();
            let out = child.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8(out.stdout).unwrap())
        };
        let expected: String = weird.iter().map(|w| format!("[{w}]")).collect();
        assert_eq!(run(&s), (Some(0), expected));
        // The environment is exactly PATH and the spec's; the shell adds nothing.
        s.command = vec![busybox.to_string_lossy().into_owned(), "env".into()];
        let (code, env) = run(&s);
        assert_eq!(code, Some(0));
        let mut lines: Vec<&str> = env.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [&format!("PATH={PATH}") as &str, "Y=x; $(id) 'q'", "z"]
        );
        s.command = vec![busybox.to_string_lossy().into_owned(), "pwd".into()];
        assert_eq!(run(&s), (Some(0), "/\n".into()));
        s.workdir = Some("/no/such/dir".into());
        assert_eq!(run(&s).0, Some(1), "a missing workdir fails the start");
    }

    #[test]
    fn a_warm_sandbox_runs_the_stub_with_the_same_hardening() {
        let layout = Layout {
            rootfs: Path::new("/r"),
            scratch: Path::new("/s"),
        };
        let text: Vec<String> = warm_args("pool.1", &layout, Path::new("/bin/busybox"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let cold: Vec<String> = main_args("pool.1", &spec(), &layout)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dashdash = text.iter().position(|a| a == "--").unwrap();
        assert_eq!(text[dashdash + 1..dashdash + 4], [STUB, "sh", "-c"]);
        for flag in cold
            .iter()
            .filter(|a| a.starts_with("--") && *a != "--block-fd")
        {
            assert!(text.contains(flag), "{flag}");
        }
        assert!(!text.contains(&"--block-fd".to_owned()));
        let dev = text.iter().position(|a| a == "/dev").unwrap();
        let stub = text.iter().position(|a| a == STUB).unwrap();
        assert!(dev < stub, "the stub is bound after /dev is made");
    }
}
