//! Agora nodes as Docker containers on a private bridge network, for multi-host tests.
//!
//! No registry is reachable, so the image is built locally: a `FROM scratch` rootfs holding
//! the `agora` binary and every shared library `ldd` lists for it (the binary is dynamically
//! linked against glibc and libstdc++). It is tagged by a fingerprint of those files, so it
//! is built once per binary and reused by later runs.
//!
//! A [`DockerNet`] owns one `--internal` bridge network (containers cannot reach anything
//! outside it; the test host still reaches them through the bridge) and every container
//! started on it. Dropping it removes them all, and prints their logs first when the test is
//! panicking, so a failed run leaves diagnostics and no debris behind.
//!
//! Partitions: [`DockerNet::add_network`] creates further internal networks (removed on drop
//! too) and [`DockerNet::start_on`] attaches a node to some of them from its first moment, so
//! its peers learn those addresses too. Cutting a group off the main network with
//! [`DockerNet::disconnect`] while it shares a side network splits the nodes in two halves
//! that still reach each other within each half (and the test host reaches every node over
//! one network or the other, see [`DockerNet::address_on`]). A network made by
//! [`DockerNet::create_addressed`] has a subnet of its own, so [`DockerNet::connect_at`] can
//! bring a node back at a new address.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::agora_bin;
use crate::node::http_get;

/// Repository part of the node image's tag; the tag itself is a fingerprint of its files.
const IMAGE_REPO: &str = "agora-test/node";
/// The node's libp2p port (TCP and QUIC) inside every container.
pub const P2P_PORT: u16 = 7000;
/// The node's HTTP API port inside every container.
pub const HTTP_PORT: u16 = 8080;

/// The local node image (`agora-test/node:<fingerprint>`), built on first use.
///
/// # Panics
/// When `ldd` or `docker build` fails: no multi-host test can run without the image.
#[allow(clippy::panic, clippy::expect_used)]
pub fn node_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let bin = agora_bin();
        let libs = shared_libraries(bin);
        let tag = format!("{IMAGE_REPO}:{}", fingerprint(bin, &libs));
        if !docker_ok(&["image", "inspect", &tag]) {
            build_image(&tag, bin, &libs);
            remove_stale_images(&tag);
        }
        tag
    })
}

/// The absolute paths of the libraries `ldd` lists for `bin`, the dynamic loader included.
#[allow(clippy::panic, clippy::expect_used)]
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("running ldd on the agora binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd {}: {text}", bin.display());
    // Lines are `name => /path (0x…)`, `/lib64/ld-linux… (0x…)` or `linux-vdso.so.1 (0x…)`
    // (the vDSO lives in the kernel, not on disk).
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                assert!(
                    !target.starts_with("not found"),
                    "ldd: {} not found",
                    name.trim()
                );
                target.split_whitespace().next()
            }
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

/// A short hex digest of each file's path, size and modification time: a rebuilt binary or
/// an upgraded system library yields a new tag, an unchanged one reuses the image.
fn fingerprint(bin: &Path, libs: &[PathBuf]) -> String {
    let mut h = DefaultHasher::new();
    for file in std::iter::once(bin).chain(libs.iter().map(PathBuf::as_path)) {
        file.hash(&mut h);
        if let Ok(meta) = std::fs::metadata(file) {
            meta.len().hash(&mut h);
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .hash(&mut h);
        }
    }
    format!("{:016x}", h.finish())
}

/// Builds `tag` from a scratch rootfs: `/agora`, the libraries at their own paths, and the
/// empty `/data` and `/tmp` the node writes to.
#[allow(clippy::panic, clippy::expect_used)]
fn build_image(tag: &str, bin: &Path, libs: &[PathBuf]) {
    let ctx = std::env::temp_dir().join(format!("agora-image-{}", unique_suffix()));
    let rootfs = ctx.join("rootfs");
    std::fs::create_dir_all(rootfs.join("data")).expect("image rootfs");
    std::fs::create_dir_all(rootfs.join("tmp")).expect("image rootfs");
    // A hard link spares copying ~100 MB of debug binary; copy across filesystems.
    if std::fs::hard_link(bin, rootfs.join("agora")).is_err() {
        std::fs::copy(bin, rootfs.join("agora")).expect("copying the agora binary");
    }
    for lib in libs {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).expect("library dir in the rootfs");
        }
        // `copy` follows symlinks (libc.so.6 -> libc-2.x.so), which is what the image needs.
        std::fs::copy(lib, &dest)
            .unwrap_or_else(|e| panic!("copying {} into the image: {e}", lib.display()));
    }
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV HOME=/data\nENTRYPOINT [\"/agora\"]\n",
    )
    .expect("Dockerfile");
    let out = docker(&["build", "-q", "-t", tag, &ctx.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes node images of earlier binaries, so rebuilding the binary does not pile up
/// 100 MB images. Best effort: an image still in use by a container is kept.
fn remove_stale_images(current: &str) {
    let out = docker(&["images", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in String::from_utf8_lossy(&out.stdout).lines() {
        if image != current {
            let _ = docker(&["rmi", image]);
        }
    }
}

/// A private bridge network and the node containers on it; all removed on drop.
#[derive(Debug)]
pub struct DockerNet {
    /// The network's name (unique per test run).
    pub name: String,
    image: String,
    containers: Mutex<Vec<String>>,
    /// Side networks made by [`Self::add_network`], removed after the containers.
    networks: Mutex<Vec<String>>,
    /// Node tags (last 12 characters of the id) of providers using the Docker runtime,
    /// whose workload networks are removed on drop.
    docker_nodes: Mutex<Vec<String>>,
    /// The committee [`Self::with_committee`] made: the host directory every node container
    /// sees read-only at [`CONFIG_DIR`], and the members' short names.
    committee: Option<(std::path::PathBuf, Vec<String>)>,
}

/// Where a node container sees the directory given to [`DockerNet::with_committee`] (the
/// genesis, the members' keys, and whatever else the test writes there).
pub const CONFIG_DIR: &str = "/etc/agora";

/// One node container: what the test needs to address it.
#[derive(Debug, Clone)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Agora id (`agora1…`), as offers name their provider.
    pub id: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// Address on the test network; `None` while disconnected from it.
    pub ip: Option<IpAddr>,
}

/// Writes into `dir` a key for each node in `members` (`<short>.key`) and `genesis.toml`
/// naming them as the quota committee (n = 4, f = 1; see
/// [`crate::committee::write_genesis`]).
#[allow(clippy::unwrap_used)]
fn write_committee(dir: &std::path::Path, members: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let keys: Vec<_> = members
        .iter()
        .map(|m| {
            agora_attest::keyfile::load_or_create(&dir.join(format!("{m}.key")), &mut rand::rng())
                .unwrap()
                .0
        })
        .collect();
    crate::committee::write_genesis(&dir.join("genesis.toml"), &keys);
}

/// `node start` arguments joining node `short` to the committee [`write_committee`] wrote:
/// the genesis for every node, and for a member the validator role and its key.
fn committee_args(short: &str, members: &[String]) -> Vec<String> {
    let mut args = vec!["--genesis".to_owned(), format!("{CONFIG_DIR}/genesis.toml")];
    if members.iter().any(|m| m == short) {
        args.extend(["--role".to_owned(), "validator".to_owned()]);
        args.extend(["--key".to_owned(), format!("{CONFIG_DIR}/{short}.key")]);
    }
    args
}

impl DockerNet {
    /// Creates an internal bridge network named `agora-test-<pid>-<random>` (building the
    /// node image first if needed).
    ///
    /// # Panics
    /// When the image cannot be built or the network cannot be created.
    pub fn create() -> Self {
        // The image first: a failed build must not leave a network behind.
        let image = node_image().to_owned();
        let name = format!("agora-test-{}", unique_suffix());
        let out = docker(&["network", "create", "--internal", &name]);
        assert!(
            out.status.success(),
            "docker network create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::with(name, image)
    }

    /// As [`Self::create`], with a subnet of its own (a free `10.213.x.0/24`), so that
    /// [`Self::connect_at`] can re-attach a node at an address of the test's choosing.
    ///
    /// # Panics
    /// When the image cannot be built or no such subnet is free.
    #[allow(clippy::panic)]
    pub fn create_addressed() -> Self {
        let image = node_image().to_owned();
        let name = format!("agora-test-{}", unique_suffix());
        let first = u8::try_from(std::process::id() % 200).unwrap_or(0);
        let mut errors = String::new();
        // Docker refuses a subnet overlapping another network's; try a few.
        for x in (0..16u8).map(|i| first.wrapping_add(i.wrapping_mul(13))) {
            let subnet = format!("10.213.{x}.0/24");
            let out = docker(&[
                "network",
                "create",
                "--internal",
                "--subnet",
                &subnet,
                &name,
            ]);
            if out.status.success() {
                return Self::with(name, image);
            }
            errors.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        panic!("docker network create with a subnet: {errors}");
    }

    fn with(name: String, image: String) -> Self {
        Self {
            name,
            image,
            containers: Mutex::new(Vec::new()),
            networks: Mutex::new(Vec::new()),
            docker_nodes: Mutex::new(Vec::new()),
            committee: None,
        }
    }

    /// Gives the network a quota committee (n = 4, f = 1) of the nodes named `members`
    /// (short names, as given to [`Self::start`]): their keys and a genesis naming them are
    /// written into `dir` now, before any of them starts. Every node started from now on
    /// sees `dir` read-only at [`CONFIG_DIR`] and runs with the genesis; a member also with
    /// the validator role and its key from there.
    ///
    /// # Panics
    /// When a file cannot be written.
    #[must_use]
    pub fn with_committee(mut self, dir: &std::path::Path, members: &[&str]) -> Self {
        let members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
        write_committee(dir, &members);
        self.committee = Some((dir.to_owned(), members));
        self
    }

    /// Creates another internal bridge network, `<network>-<suffix>`, removed with this one;
    /// returns its name. Attach nodes to it with [`Self::start_on`].
    ///
    /// # Panics
    /// When Docker refuses.
    pub fn add_network(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.name);
        let out = docker(&["network", "create", "--internal", &name]);
        assert!(
            out.status.success(),
            "docker network create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.networks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
        name
    }

    /// Starts node `short` (container `<network>-<short>`) with `args` after `node start`,
    /// and waits up to 60 s for its `started` line.
    ///
    /// The node listens on [`P2P_PORT`] (TCP and QUIC) and serves HTTP on [`HTTP_PORT`], with
    /// its store in a tmpfs at `/data`.
    ///
    /// # Panics
    /// When the container cannot start or the node does not report in time.
    pub fn start(&self, short: &str, args: &[&str]) -> Container {
        self.start_on(short, &[], args)
    }

    /// As [`Self::start`], with the container also attached to each of `networks` (made by
    /// [`Self::add_network`]) before the node starts: it listens on every one of them from
    /// the first moment and tells its peers all those addresses.
    ///
    /// # Panics
    /// When the container cannot start or the node does not report in time.
    pub fn start_on(&self, short: &str, networks: &[&str], args: &[&str]) -> Container {
        self.start_with(short, networks, None, args)
    }

    /// As [`Self::start_on`], with the node's data dir (store and key) in the host directory
    /// `data` instead of a tmpfs, so that it survives [`Self::kill`] and [`Self::restart`].
    ///
    /// # Panics
    /// When the container cannot start or the node does not report in time.
    pub fn start_persistent(
        &self,
        short: &str,
        networks: &[&str],
        data: &std::path::Path,
        args: &[&str],
    ) -> Container {
        self.start_with(short, networks, Some(data), args)
    }

    #[allow(clippy::panic)]
    fn start_with(
        &self,
        short: &str,
        networks: &[&str],
        data: Option<&std::path::Path>,
        args: &[&str],
    ) -> Container {
        let name = format!("{}-{short}", self.name);
        let tcp = format!("/ip4/0.0.0.0/tcp/{P2P_PORT}");
        let quic = format!("/ip4/0.0.0.0/udp/{P2P_PORT}/quic-v1");
        let http = format!("0.0.0.0:{HTTP_PORT}");
        // `create`, `network connect`, `start`: `docker run` attaches a single network on
        // engines before 25.
        let mut run = vec![
            "create",
            "--name",
            &name,
            "--network",
            &self.name,
            "--tmpfs",
            "/tmp",
        ];
        let data_mount = data.map(|d| format!("{}:/data", d.display()));
        match &data_mount {
            Some(m) => run.extend(["-v", m]),
            None => run.extend(["--tmpfs", "/data"]),
        }
        // A containerised provider sells the Docker runtime of the host's engine (the
        // sandbox cannot nest in an unprivileged container), as a real deployment would.
        let docker_runtime = args.windows(2).any(|w| w == ["--runtime", "docker"]);
        if docker_runtime {
            run.extend(["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
        }
        let config_mount = self
            .committee
            .as_ref()
            .map(|(dir, _)| format!("{}:{CONFIG_DIR}:ro", dir.display()));
        if let Some(m) = &config_mount {
            run.extend(["-v", m]);
        }
        let committee = self
            .committee
            .as_ref()
            .map(|(_, members)| committee_args(short, members));
        run.push(&self.image);
        run.extend([
            "--json",
            "--log",
            "info,agora_node=debug",
            "node",
            "start",
            "--data-dir",
            "/data",
            "--listen",
            &tcp,
            "--listen",
            &quic,
            "--http",
            &http,
        ]);
        run.extend_from_slice(args);
        run.extend(committee.iter().flatten().map(String::as_str));
        // Registered before running: even a half-started container is removed on drop.
        self.lock_containers().push(name.clone());
        let out = docker(&run);
        assert!(
            out.status.success(),
            "docker create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for network in networks {
            let out = docker(&["network", "connect", network, &name]);
            assert!(
                out.status.success(),
                "docker network connect {network} {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = docker(&["start", &name]);
        assert!(
            out.status.success(),
            "docker start {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let started = wait_started(&name, 0)
            .unwrap_or_else(|| panic!("{name} did not start within 60 s:\n{}", logs(&name)));
        let field = |k: &str| str_field(&started, k).unwrap_or_default().to_owned();
        if docker_runtime {
            let id = field("id");
            let chars: Vec<char> = id.chars().collect();
            let tag: String = chars.iter().skip(chars.len().saturating_sub(12)).collect();
            self.docker_nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(tag);
        }
        Container {
            id: field("id"),
            peer_id: field("peer_id"),
            ip: ip_on(&self.name, &name),
            name,
        }
    }

    /// `docker kill -s KILL`: the node dies at once, mid-write or not.
    ///
    /// # Panics
    /// When Docker refuses.
    pub fn kill(&self, c: &Container) {
        let out = docker(&["kill", "-s", "KILL", &c.name]);
        assert!(
            out.status.success(),
            "docker kill {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a stopped or killed node's container again (its networks as they were) and
    /// waits up to 60 s for the node's next `started` line; `c`'s address is refreshed.
    ///
    /// # Panics
    /// When the container cannot start or the node does not report in time.
    #[allow(clippy::panic)]
    pub fn restart(&self, c: &mut Container) {
        let before = started_lines(&c.name).len();
        let out = docker(&["start", &c.name]);
        assert!(
            out.status.success(),
            "docker start {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let started = wait_started(&c.name, before).unwrap_or_else(|| {
            panic!(
                "{} did not start again within 60 s:\n{}",
                c.name,
                logs(&c.name)
            )
        });
        assert_eq!(
            str_field(&started, "peer_id"),
            Some(c.peer_id.as_str()),
            "{} came back with another key",
            c.name
        );
        c.ip = ip_on(&self.name, &c.name);
    }

    /// Cuts `c` off the network (`docker network disconnect`).
    ///
    /// # Panics
    /// When Docker refuses.
    pub fn disconnect(&self, c: &mut Container) {
        let out = docker(&["network", "disconnect", &self.name, &c.name]);
        assert!(
            out.status.success(),
            "docker network disconnect {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        c.ip = None;
    }

    /// Re-attaches `c` to the network; it may come back with a different address.
    ///
    /// # Panics
    /// When Docker refuses.
    pub fn connect(&self, c: &mut Container) {
        let out = docker(&["network", "connect", &self.name, &c.name]);
        assert!(
            out.status.success(),
            "docker network connect {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        c.ip = ip_on(&self.name, &c.name);
    }

    /// `docker stop -t <grace>`: SIGTERM (the node withdraws its offer and leaves), SIGKILL
    /// after `grace`. Returns the node's exit code.
    ///
    /// # Panics
    /// When Docker refuses.
    pub fn stop(&self, c: &Container, grace: Duration) -> Option<i32> {
        let out = docker(&["stop", "-t", &grace.as_secs().to_string(), &c.name]);
        assert!(
            out.status.success(),
            "docker stop {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let out = docker(&["inspect", "-f", "{{.State.ExitCode}}", &c.name]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Re-attaches `c` to the network (made by [`Self::create_addressed`]) at `last`, its
    /// address before it was cut off, with the host part replaced by `host`.
    ///
    /// # Panics
    /// When Docker refuses (e.g. the address is taken), or `last` is not IPv4.
    #[allow(clippy::panic)]
    pub fn connect_at(&self, c: &mut Container, last: IpAddr, host: u8) {
        let IpAddr::V4(v4) = last else {
            panic!("{}: not an IPv4 address: {last}", c.name);
        };
        let [a, b, x, _] = v4.octets();
        let ip = std::net::Ipv4Addr::new(a, b, x, host).to_string();
        let out = docker(&["network", "connect", "--ip", &ip, &self.name, &c.name]);
        assert!(
            out.status.success(),
            "docker network connect --ip {ip} {}: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        c.ip = ip_on(&self.name, &c.name);
    }

    /// `c`'s address on `network` (this one or a side network), if attached.
    pub fn address_on(&self, network: &str, c: &Container) -> Option<IpAddr> {
        ip_on(network, &c.name)
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for DockerNet {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.lock_containers());
        if std::thread::panicking() {
            for name in &containers {
                eprintln!("===== docker logs {name} =====\n{}", logs(name));
            }
        }
        if !containers.is_empty() {
            let mut rm = vec!["rm", "-f"];
            rm.extend(containers.iter().map(String::as_str));
            let _ = docker(&rm);
        }
        let _ = docker(&["network", "rm", &self.name]);
        let networks = std::mem::take(
            &mut *self
                .networks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for network in networks {
            let _ = docker(&["network", "rm", &network]);
        }
        let nodes = std::mem::take(
            &mut *self
                .docker_nodes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for node in nodes {
            let label = format!("label=agora.node={node}");
            let out = docker(&["network", "ls", "-q", "--filter", &label]);
            for net in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker(&["network", "rm", net]);
            }
        }
    }
}

impl Container {
    /// The multiaddr other nodes bootstrap to: `/ip4/<ip>/tcp/7000/p2p/<peer id>`.
    ///
    /// # Panics
    /// When the container is not attached to the network.
    #[allow(clippy::expect_used)]
    pub fn bootstrap_addr(&self) -> String {
        let ip = self.ip.expect("bootstrap node attached to the network");
        format!("/ip4/{ip}/tcp/{P2P_PORT}/p2p/{}", self.peer_id)
    }

    /// The providers in this node's offer book, sorted; `None` when its API is unreachable.
    pub fn offer_providers(&self) -> Option<Vec<String>> {
        let addr = SocketAddr::new(self.ip?, HTTP_PORT);
        // Probe first: `http_get` panics on a refused connection, and a node that was just
        // re-attached may take a moment to answer.
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let (status, body) = http_get(addr, "/v1/offers?limit=1000");
        if status != 200 {
            return None;
        }
        let mut providers: Vec<String> = body
            .get("offers")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|o| str_field(o, "provider").map(str::to_owned))
            .collect();
        providers.sort();
        Some(providers)
    }

    /// The node's log so far (stdout and stderr, colour codes stripped).
    pub fn logs(&self) -> String {
        logs(&self.name)
    }
}

/// Container `name`'s address on `network`, if attached.
fn ip_on(network: &str, name: &str) -> Option<IpAddr> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
    );
    let out = docker(&["inspect", "-f", &format, name]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Polls `docker logs` until the node has printed more than `earlier` `started` JSON
/// lines (a restarted container keeps its earlier runs' logs), or 60 s pass; the newest.
fn wait_started(name: &str, earlier: usize) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut started = started_lines(name);
        if started.len() > earlier {
            return started.pop();
        }
        let running = docker(&["inspect", "-f", "{{.State.Running}}", name]);
        if String::from_utf8_lossy(&running.stdout).trim() != "true" {
            return None; // exited: no point waiting
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The `started` lines the container's node printed so far, oldest first.
fn started_lines(name: &str) -> Vec<Value> {
    // Only stdout: the started line is the node's one stdout line; logs go to stderr.
    let out = docker(&["logs", name]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| str_field(v, "event") == Some("started"))
        .collect()
}

/// The string field `key` of a JSON object.
fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// A container's stdout and stderr, with ANSI colour codes removed (the node colours its
/// log lines even when stderr is not a terminal).
fn logs(name: &str) -> String {
    let out = docker(&["logs", name]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    strip_ansi(&text)
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ params letter`.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `<pid>-<nanoseconds>` in hex: unique across concurrent test processes and reruns.
fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:08x}", std::process::id())
}

/// Runs `docker <args>` to completion with stdin closed.
#[allow(clippy::expect_used)]
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running docker")
}

fn docker_ok(args: &[&str]) -> bool {
    docker(args).status.success()
}
