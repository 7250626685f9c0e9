//! `agora agent exec`, `agora agent logs` and `agora agent files`: operations on a running
//! lease whose answers stream. Each is signed here with the agent's key, relayed by any
//! node to the provider and streamed back; with `--direct` (exec, logs) it goes over a QUIC
//! connection straight to the provider's tunnel endpoint instead.

// Indexing a serde_json::Value yields Null for a missing key; it never panics.
#![allow(clippy::indexing_slicing)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_protocol::AgoraId;
use agora_protocol::lease::{LeaseId, Op};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde_json::{Value, json};

use agora_node::http::streams::pump_events;
use agora_node::lease::OpStream;
use agora_node::tunnel::client::grant_endpoints;
use agora_node::tunnel::{Dialer, ops};
use agora_protocol::Signed;
use agora_protocol::frames::StreamFrame;
use agora_protocol::lease::LeaseOp;

use super::lease::{Agent, b64, find_lease, load_agent, report_failure, sign_op, verify_grant};
use crate::cli::http_client::{DEFAULT_NODE, NodeClient};
use crate::cli::{EXIT_ERROR, GlobalArgs, print_json};

/// Most standard input `exec --stdin` sends (the API's body bound); larger input belongs in
/// `files put`.
const MAX_STDIN_BYTES: usize = 1024 * 1024;

/// Where to send the operation and with which key.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The lease id (or a unique prefix of one of yours).
    lease: String,
    /// Any node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    target: Target,
    /// Send this process's standard input to the command (up to 1 MiB).
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Run the command on a terminal (its output and errors merge).
    #[arg(short = 't', long)]
    tty: bool,
    /// Skip the node: run it over a QUIC connection straight to the provider's tunnel
    /// endpoint (the node is only asked for the lease), for the lowest round trip.
    #[arg(long)]
    direct: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    target: Target,
    /// Keep printing new output until the workload ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Skip the node: read over a QUIC connection straight to the provider's tunnel
    /// endpoint.
    #[arg(long)]
    direct: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FilesArgs {
    #[command(subcommand)]
    command: FilesCommand,
}

#[derive(Debug, Subcommand)]
enum FilesCommand {
    /// Upload local files and directories into the workload, under `--to`.
    Put {
        #[command(flatten)]
        target: Target,
        /// Local files or directories.
        #[arg(required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Directory inside the workload (created if missing; `/tmp` is writable on the
        /// sandbox).
        #[arg(long, value_name = "DIR")]
        to: String,
    },
    /// Download a file or directory of the workload into a local directory.
    Get {
        #[command(flatten)]
        target: Target,
        /// Absolute path inside the workload.
        path: String,
        /// Local directory to unpack into (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        to: PathBuf,
    },
}

/// The agent, a client, and the lease resolved with its provider.
struct Session {
    agent: Agent,
    client: NodeClient,
    lease: LeaseId,
    provider: AgoraId,
    /// The lease as the node showed it (its signed grant names the tunnel endpoints).
    view: Value,
}

/// A streamed operation to run: what, how (`direct`), its input, and the node's path.
struct Streamed<'a> {
    op: Op,
    direct: bool,
    stdin: Option<Vec<u8>>,
    path: &'a str,
}

/// A streamed answer's NDJSON, in chunks as they come (from the node, or made here from
/// the provider's frames with `--direct`).
type Chunks = futures::stream::BoxStream<'static, Result<Vec<u8>, String>>;

/// How long the provider may take to accept a direct operation.
const DIRECT_OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Session {
    fn open(target: &Target) -> anyhow::Result<Self> {
        let agent = load_agent(target.key.as_deref())?;
        let client = NodeClient::new(&target.node)?;
        let (lease, view) = find_lease(&client, &agent.identity, &target.lease)?;
        let provider: AgoraId = view["provider"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .context("the node does not say which provider holds the lease")?;
        Ok(Self {
            agent,
            client,
            lease,
            provider,
            view,
        })
    }

    fn sign(&self, op: Op) -> anyhow::Result<String> {
        Ok(b64(&sign_op(&self.agent, self.provider, self.lease, op)?))
    }

    /// Runs the streamed operation `op`: through the node (`POST`/`GET path` built by
    /// `build`), or with `direct` at the provider's tunnel endpoint (sending `stdin`, if
    /// any, for an exec), handing the answer's chunks to `handle`. A refusal or error
    /// answer is reported here.
    fn streamed(
        &self,
        Streamed {
            op,
            direct,
            stdin,
            path,
        }: Streamed<'_>,
        build: impl FnOnce(&reqwest::Client, &str, &str, Option<Vec<u8>>) -> reqwest::RequestBuilder,
        json_out: bool,
        handle: impl AsyncFnOnce(Chunks) -> anyhow::Result<ExitCode>,
    ) -> anyhow::Result<ExitCode> {
        let signed = sign_op(&self.agent, self.provider, self.lease, op)?;
        if !direct {
            let op = b64(&signed);
            return self.client.stream(
                path,
                |http, url| build(http, url, &op, stdin),
                async move |resp| {
                    if !resp.status().is_success() {
                        return failure(resp, json_out).await;
                    }
                    let chunks = resp
                        .bytes_stream()
                        .map(|c| c.map(|b| b.to_vec()).map_err(|e| e.to_string()));
                    handle(chunks.boxed()).await
                },
            );
        }
        self.client.block_on(async {
            match self.open_direct(&signed, stdin).await? {
                Ok(chunks) => handle(chunks).await,
                Err(body) => report_failure(409, &body, json_out, "refused"),
            }
        })
    }

    /// Opens `op` over a direct connection to the provider's tunnel endpoint
    /// ([`agora_node::tunnel::ops`]): its events as NDJSON chunks, or the provider's
    /// refusal as an error body.
    async fn open_direct(
        &self,
        op: &Signed<LeaseOp>,
        stdin: Option<Vec<u8>>,
    ) -> anyhow::Result<Result<Chunks, Value>> {
        let grant = verify_grant(&self.view, &self.lease, &self.agent.identity.agora_id())?;
        let g = grant.body();
        let dialer = Dialer::for_ops(&self.agent.identity, g.provider, grant_endpoints(g))
            .context("cannot set up the direct connection")?;
        let conn = dialer
            .connection()
            .await
            .context("cannot reach the provider's tunnel endpoint (try without --direct)")?;
        let opened = ops::open(&conn, op, DIRECT_OPEN_TIMEOUT)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
        let OpStream { reader, mut writer } = match opened {
            Ok(s) => s,
            Err(r) => {
                return Ok(Err(
                    json!({ "error": { "code": r.code.as_str(), "message": r.detail } }),
                ));
            }
        };
        if matches!(op.body().op, Op::Exec { .. }) {
            // Input and output flow side by side, as through a node.
            tokio::spawn(async move {
                if let Some(data) = stdin {
                    writer.send_chunks(&data, StreamFrame::Stdin).await?;
                }
                writer.send(&StreamFrame::StdinClosed).await
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(pump_events(reader, tx));
        // The dialer (its endpoint) lives as long as the answer is read.
        let chunks = futures::stream::unfold((rx, dialer, conn), |(mut rx, d, c)| async move {
            let chunk = rx.recv().await?;
            Some((
                chunk.map(|b| b.to_vec()).map_err(|e| e.to_string()),
                (rx, d, c),
            ))
        });
        Ok(Ok(chunks.boxed()))
    }
}

/// An error answer (JSON) as the agent commands report it.
async fn failure(resp: reqwest::Response, json: bool) -> anyhow::Result<ExitCode> {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_else(
        |_| json!({ "error": { "code": "error", "message": format!("HTTP {status}") } }),
    );
    report_failure(status, &body, json, "refused")
}

/// What an NDJSON event stream ended with.
enum Ending {
    Exit(i32),
    End,
    Error { code: String, message: String },
    Cut,
}

/// Reads NDJSON events from `body`, handing each to `each`, until the last one.
async fn events(
    mut body: Chunks,
    mut each: impl FnMut(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<Ending> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => return Ok(Ending::Cut),
        };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let event: Value = serde_json::from_slice(&line)
                .with_context(|| "the node sent a line that is not JSON")?;
            each(&event)?;
            match event["type"].as_str() {
                Some("exit") => {
                    let code = event["code"].as_i64().unwrap_or(-1);
                    return Ok(Ending::Exit(i32::try_from(code).unwrap_or(-1)));
                }
                Some("end") => return Ok(Ending::End),
                Some("error") => {
                    return Ok(Ending::Error {
                        code: event["code"].as_str().unwrap_or("error").to_owned(),
                        message: event["message"].as_str().unwrap_or("").to_owned(),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(Ending::Cut)
}

/// An output event's bytes (`text`, or `base64` for bytes that are not UTF-8).
fn event_bytes(event: &Value) -> Vec<u8> {
    if let Some(t) = event["text"].as_str() {
        t.as_bytes().to_vec()
    } else {
        event["base64"]
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .unwrap_or_default()
    }
}

/// Writes an output event to this process's stdout or stderr.
fn print_event(event: &Value) -> anyhow::Result<()> {
    let data = event_bytes(event);
    match event["type"].as_str() {
        Some("stdout") => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data)?;
            out.flush()?;
        }
        Some("stderr") => {
            let mut err = std::io::stderr().lock();
            err.write_all(&data)?;
            err.flush()?;
        }
        _ => {}
    }
    Ok(())
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(u8::MAX))
}

fn broke_off(ending: &Ending) -> Option<(String, String)> {
    match ending {
        Ending::Error { code, message } => Some((code.clone(), message.clone())),
        Ending::Cut => Some((
            "unreachable".into(),
            "the stream ended before its last line".into(),
        )),
        Ending::Exit(_) | Ending::End => None,
    }
}

pub(crate) fn exec(args: &ExecArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.target)?;
    let input = if args.stdin {
        let mut data = Vec::new();
        std::io::stdin()
            .take(MAX_STDIN_BYTES as u64 + 1)
            .read_to_end(&mut data)
            .context("reading standard input")?;
        if data.len() > MAX_STDIN_BYTES {
            bail!("standard input is over 1 MiB: upload it with `agora agent files put` instead");
        }
        Some(data)
    } else {
        None
    };
    let op = Op::Exec {
        command: args.command.clone(),
        stdin: args.stdin,
        tty: args.tty,
    };
    let path = format!("/v1/leases/{}/exec", session.lease);
    let json_out = global.json;
    session.streamed(
        Streamed {
            op,
            direct: args.direct,
            stdin: input,
            path: &path,
        },
        |http, url, op, input| {
            let mut body = json!({ "op": op });
            if let Some(data) = input {
                body["stdin_base64"] = json!(STANDARD.encode(data));
            }
            http.post(url).json(&body)
        },
        json_out,
        async |chunks| {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let ending = events(chunks, |e| {
                if json_out {
                    match e["type"].as_str() {
                        Some("stdout") => stdout.extend(event_bytes(e)),
                        Some("stderr") => stderr.extend(event_bytes(e)),
                        _ => {}
                    }
                    Ok(())
                } else {
                    print_event(e)
                }
            })
            .await?;
            let failed = broke_off(&ending);
            if json_out {
                let mut out = json!({
                    "lease": session.lease,
                    "stdout": String::from_utf8_lossy(&stdout),
                    "stderr": String::from_utf8_lossy(&stderr),
                });
                match (&ending, &failed) {
                    (Ending::Exit(code), _) => out["exit_code"] = json!(code),
                    (_, Some((code, message))) => {
                        out["error"] = json!({ "code": code, "message": message });
                    }
                    _ => {}
                }
                print_json(&out)?;
            } else if let Some((code, message)) = &failed {
                eprintln!("error: {code}: {message}");
            }
            Ok(match ending {
                Ending::Exit(code) => exit_code(code),
                _ => ExitCode::from(EXIT_ERROR),
            })
        },
    )
}

pub(crate) fn logs(args: &LogsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.target)?;
    let op = Op::Logs {
        follow: args.follow,
    };
    let path = format!("/v1/leases/{}/logs", session.lease);
    let json_out = global.json;
    session.streamed(
        Streamed {
            op,
            direct: args.direct,
            stdin: None,
            path: &path,
        },
        |http, url, op, _| http.get(url).query(&[("op", op)]),
        json_out,
        async |chunks| {
            // With --json the events pass through as NDJSON, one per line, as they come.
            let ending = events(chunks, |e| {
                if json_out {
                    println!("{e}");
                    Ok(())
                } else {
                    print_event(e)
                }
            })
            .await?;
            match broke_off(&ending) {
                Some((code, message)) => {
                    if !json_out {
                        eprintln!("error: {code}: {message}");
                    }
                    Ok(ExitCode::from(EXIT_ERROR))
                }
                None => Ok(ExitCode::SUCCESS),
            }
        },
    )
}

pub(crate) fn files(args: &FilesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        FilesCommand::Put { target, paths, to } => put(target, paths, to, global),
        FilesCommand::Get { target, path, to } => get(target, path, to, global),
    }
}

/// An `std::io::Write` that hands 64 KiB chunks to an async body.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::other("the upload stopped"))?;
        }
        Ok(())
    }
}

/// Packs `paths` into a tar stream on a thread of its own: each file or directory under its
/// own name, so `put a.txt dir --to /tmp/x` makes `/tmp/x/a.txt` and `/tmp/x/dir/…`.
fn pack(paths: Vec<PathBuf>) -> reqwest::Body {
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    std::thread::spawn(move || {
        let writer = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        let result = (|| -> std::io::Result<()> {
            for p in &paths {
                let name = p.file_name().map(PathBuf::from).ok_or_else(|| {
                    std::io::Error::other(format!("{} has no file name", p.display()))
                })?;
                if p.is_dir() {
                    builder.append_dir_all(&name, p)?;
                } else {
                    builder.append_path_with_name(p, &name)?;
                }
            }
            builder.into_inner()?.flush()
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    reqwest::Body::wrap_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

fn put(
    target: &Target,
    paths: &[PathBuf],
    to: &str,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    for p in paths {
        std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    }
    let session = Session::open(target)?;
    let op = session.sign(Op::PutFiles {
        path: to.to_owned(),
    })?;
    let path = format!("/v1/leases/{}/files", session.lease);
    let json_out = global.json;
    let body = pack(paths.to_vec());
    session.client.stream(
        &path,
        |http, url| {
            http.put(url)
                .query(&[("op", op.as_str())])
                .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                .body(body)
        },
        async move |resp| {
            if !resp.status().is_success() {
                return failure(resp, json_out).await;
            }
            let answer: Value = resp.json().await.context("the answer is not JSON")?;
            if json_out {
                print_json(&answer)?;
            } else {
                println!(
                    "uploaded  {} bytes (tar) into {}",
                    answer["bytes"].as_u64().unwrap_or(0),
                    answer["path"].as_str().unwrap_or(to)
                );
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}

fn get(target: &Target, path: &str, to: &Path, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(target)?;
    let op = session.sign(Op::GetFiles {
        path: path.to_owned(),
    })?;
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let url_path = format!("/v1/leases/{}/files", session.lease);
    let json_out = global.json;
    let dir = to.to_path_buf();
    session.client.stream(
        &url_path,
        |http, url| http.get(url).query(&[("op", op.as_str())]),
        async move |resp| {
            if !resp.status().is_success() {
                return failure(resp, json_out).await;
            }
            let stream = resp
                .bytes_stream()
                .map(|r| r.map_err(std::io::Error::other));
            let reader = tokio_util::io::StreamReader::new(stream);
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let bridge = tokio_util::io::SyncIoBridge::new(reader);
            let (dir2, counted2) = (dir.clone(), counted.clone());
            // The tar crate refuses entries that would land outside `dir` (absolute paths,
            // `..`, links pointing out): the archive comes from a stranger's machine.
            let unpacked = tokio::task::spawn_blocking(move || {
                let counting = CountingReader {
                    inner: bridge,
                    count: counted2,
                };
                tar::Archive::new(counting).unpack(&dir2)
            })
            .await
            .context("the unpacking thread failed")?;
            let bytes = counted.load(std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = unpacked {
                bail!("the download broke off or is not a tar archive after {bytes} bytes: {e}");
            }
            if json_out {
                print_json(
                    &json!({ "lease": session.lease, "path": path, "to": dir, "bytes": bytes }),
                )?;
            } else {
                println!(
                    "downloaded  {path} ({bytes} bytes of tar) into {}",
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}
