//! Leases negotiated point to point and controlled through any peer, with real `agora`
//! processes on 127.0.0.1: an agent signs up at gateway A and gets a lease at provider C
//! (the embedded sandbox) through A; the workload's exit is visible through A; `agora agent
//! run|ps|extend|stop` work end to end with the provider's signatures checked; the final
//! receipt is signed and the quota charged. Forged, tampered, replayed, stale, over-tier,
//! over-quota and unknown-offer requests are refused with stable codes; a killed provider
//! is failed over;
//! a restarted provider keeps its lease. A provider killed mid-lease: a `logs` follow stream
//! through the gateway ends with `unreachable`, the gateway's view says the provider does
//! not answer, then (after `provider_lost_after`) that the lease ended with `provider_lost`
//! (source `gateway`) beside the provider's last signed receipt; the provider, restarted,
//! wins again with its own signed state.
//!
//! The agent's journey also runs with provider C on the Docker runtime: `agent run
//! --runtime docker` of an image C offers (busybox, built locally, no registry), `logs`
//! (and `logs --follow` until the stop), `exec` with output, exit code and standard input,
//! `files put/get` byte for byte, `extend`, periodic receipts metered from the engine's
//! statistics, and `stop` with C's final signed receipt.
//!
//! Under a quota committee of n = 4 (A and C validators, two validator-only nodes; agents
//! claim the free tier at signup, leases start against lock certificates, an extension is
//! paid by a top-up, the account is charged each lease's cost once): the main journey, the
//! streams through any node, the provider lost mid-lease, and the Docker journey. Failover
//! runs under a committee too (A a validator with three validator-only nodes, the providers
//! following its genesis): the agent signs one chained lock per candidate, the gateway
//! certifies each as it fails over, a refusing provider's lock is released at once with its
//! signed refusal, and the restarted provider settles the lease it kept. The owner's
//! approval above the spending limit runs under a committee too (its genesis lists the
//! issuer, so the attestation's limit is the agent's credit): validators refuse the lock
//! for the balance, the gateway parks the request with the agent's locks, the owner's
//! approval certifies the lock above the balance, and its settlement is charged to the
//! approval; an extension whose top-up goes over the balance waits for the owner's approval
//! of that top-up the same way.
//!
//! The sandbox needs root and bubblewrap; `AGORA_SKIP_SANDBOX=1` skips those tests. The
//! Docker journey needs an engine: without one it skips, unless `AGORA_REQUIRE_DOCKER` is
//! set (as `./scripts/test` does under CI); it removes the containers, networks, firewall
//! rules and image it made, also when it fails.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_attest::{Identity, keyfile};
use agora_node::agent::quota::{lock_fields, lock_op, lock_ops};
use agora_protocol::lease::{Candidate, LeaseGrant, LeaseRequest, NONCE_LEN, UsageReceipt};
use agora_protocol::offer::Isolation;
use agora_protocol::read_proof::ReadProof;
use agora_protocol::signup::SignupRecord;
use agora_protocol::workload::WorkloadSpec;
use agora_protocol::{AgoraId, Digest, Ed25519, Signed, SignedKind, Timestamp};
use agora_tests::committee::{Committee, quota_account};
use agora_tests::docker_engine::DockerLeftovers;
use agora_tests::leftovers::Leftovers;
use agora_tests::node::{NodeProc, http_json, wait_for};
use agora_tests::{agora, stderr, stdout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn skip() -> bool {
    if std::env::var_os("AGORA_SKIP_SANDBOX").is_some() {
        eprintln!("skipped: AGORA_SKIP_SANDBOX is set");
        return true;
    }
    false
}

/// A provider (and gateway) on `runtime` (`sandbox`, `docker`), receipts every 2 s, with
/// more configuration (whole sections) appended; a validator of `committee` if one is
/// given: it then admits leases only against the committee's lock certificates.
fn provider_in(
    dir: &Path,
    bootstrap: &str,
    runtime: &str,
    extra: &str,
    committee: Option<&Committee>,
) -> NodeProc {
    let (roles, genesis) = committee_lines(committee);
    provider_configured(dir, bootstrap, runtime, extra, roles, &genesis)
}

/// A provider on the sandbox that follows `committee`'s genesis without being one of its
/// validators: it admits leases only against the committee's lock certificates.
fn provider_following(dir: &Path, bootstrap: &str, committee: &Committee) -> NodeProc {
    provider_configured(dir, bootstrap, "sandbox", "", "", &committee.config_line())
}

fn provider_configured(
    dir: &Path,
    bootstrap: &str,
    runtime: &str,
    extra: &str,
    roles: &str,
    genesis: &str,
) -> NodeProc {
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"provider\", \"gateway\"{roles}]\nregion = \"eu\"\n{genesis}\n[provider]\nruntimes = [\"{runtime}\"]\nvcpu = 2\nmemory_mib = 2048\ndisk_mib = 2048\nprices = {{ vcpu = 100, memory_gib = 10 }}\n\n[leases]\nreceipt_interval = \"2s\"\n{extra}"
        ),
        Some(bootstrap),
    )
}

/// The extra role and the genesis line of a member of `committee`.
fn committee_lines(committee: Option<&Committee>) -> (&'static str, String) {
    committee.map_or(("", String::new()), |c| {
        (", \"validator\"", c.config_line())
    })
}

/// Gateway A in `root/a` and provider C in `root/c` on the sandbox, both validators of a
/// quota committee of n = 4 with two validator-only nodes, all connected; `a_extra` appended
/// to A's `[leases]` section.
fn committee_network(root: &Path, a_extra: &str) -> (NodeProc, NodeProc, Committee) {
    committee_network_on(root, a_extra, "sandbox", "")
}

/// [`committee_network`] with C on `runtime`, `c_extra` appended to its configuration.
fn committee_network_on(
    root: &Path,
    a_extra: &str,
    runtime: &str,
    c_extra: &str,
) -> (NodeProc, NodeProc, Committee) {
    let (a_dir, c_dir) = (root.join("a"), root.join("c"));
    let mut committee = Committee::new(root, &[a_dir.as_path(), c_dir.as_path()]);
    let a = gateway_in(&a_dir, a_extra, Some(&committee));
    let c = provider_in(&c_dir, &a.tcp_addr(), runtime, c_extra, Some(&committee));
    committee.start_extra(&a.tcp_addr());
    committee.wait_connected(&[&a, &c]);
    (a, c, committee)
}

/// A gateway (and bootstrap) that waits 3 s per provider before failing over (a provider
/// killed behind a QUIC connection gives no signal, so only the timeout tells), with more
/// configuration (whole sections) appended; a validator of `committee` if one is given.
fn gateway_in(dir: &Path, extra: &str, committee: Option<&Committee>) -> NodeProc {
    let (roles, genesis) = committee_lines(committee);
    NodeProc::start_configured(
        dir,
        &format!(
            "roles = [\"gateway\"{roles}]\nregion = \"eu\"\n{genesis}\n[network]\nkad_server = true\n\n[leases]\nprovider_timeout = \"3s\"\n{extra}"
        ),
        None,
    )
}

/// The cgroup parent of provider `node`'s sandboxes (for [`Leftovers::add`]).
fn cgroup_parent(node: &NodeProc) -> String {
    agora_node::daemon::workloads::default_cgroup_parent(&node.id.parse().unwrap())
}

/// One HTTP/1.1 request with a JSON body; the status and JSON answer.
fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    http_json(addr, method, path, &[], body)
}

fn b64<T>(m: &Signed<T>) -> String {
    URL_SAFE_NO_PAD.encode(m.as_bytes())
}

fn decode<T: SignedKind>(text: &str) -> Signed<T> {
    Signed::decode(&URL_SAFE_NO_PAD.decode(text).unwrap(), &Ed25519).unwrap()
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap())
}

/// An agent signed up at `node` with `agora agent signup`.
struct Agent {
    home: PathBuf,
    key: PathBuf,
    identity: Identity,
    signup: Signed<SignupRecord>,
}

impl Agent {
    fn sign_up(home: &Path, node: &NodeProc) -> Self {
        Self::sign_up_with(home, node, &[])
    }

    /// Signs up with more `agent signup` arguments (e.g. `--credential FILE`).
    fn sign_up_with(home: &Path, node: &NodeProc, extra: &[&str]) -> Self {
        std::fs::create_dir_all(home).unwrap();
        let key = home.join("agent.key");
        let out = agora(home)
            .args(["--json", "agent", "signup", "--node"])
            .arg(format!("http://{}", node.http))
            .arg("--key")
            .arg(&key)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "signup: {}", stderr(&out));
        let identity = keyfile::load(&key).unwrap();
        let record = std::fs::read_to_string(home.join("agent.key.signup")).unwrap();
        Self {
            home: home.to_owned(),
            key,
            identity,
            signup: decode(record.trim()),
        }
    }

    fn id(&self) -> AgoraId {
        self.identity.agora_id()
    }

    /// `agora --json agent ARGS… --node N --key K`.
    fn cli(&self, node: &NodeProc, args: &[&str]) -> (bool, Value, String) {
        cli_with_input(self, node, args, None)
    }

    fn request(
        &self,
        candidates: Vec<Candidate>,
        busybox: Digest,
        command: &[&str],
        edit: impl FnOnce(&mut LeaseRequest),
    ) -> Signed<LeaseRequest> {
        let mut spec = WorkloadSpec::example(busybox, command);
        spec.lifetime_secs = 300;
        let mut r = LeaseRequest {
            agent: self.id(),
            candidates,
            isolation: Isolation::Sandbox,
            spec,
            max_price_per_sec: 1000,
            nonce: rand::random::<[u8; NONCE_LEN]>(),
            issued_at: now(),
            signup: self.signup.clone(),
            delegation: None,
        };
        edit(&mut r);
        Signed::sign(r, &self.identity).unwrap()
    }
}

/// `GET /v1/leases?agent=…` at `node` with a read proof `signer` signed (for `agent`, with
/// no delegation) naming node `for_node`, issued at `at`; `None`: no proof.
fn list_leases(
    node: &NodeProc,
    agent: &AgoraId,
    proof: Option<(&Identity, &str, Timestamp)>,
) -> (u16, Value) {
    let mut path = format!("/v1/leases?agent={agent}");
    if let Some((signer, for_node, at)) = proof {
        let proof = Signed::sign(
            ReadProof::new(signer.agora_id(), for_node.parse().unwrap(), at, None),
            signer,
        )
        .unwrap();
        path.push_str(&format!("&proof={}", b64(&proof)));
    }
    send(node.http, "GET", &path, None)
}

/// The current offer of `provider` as `node` quotes it: (offer digest, busybox digest).
fn quoted(node: &NodeProc, provider: &str) -> (Digest, Digest) {
    quoted_on(node, provider, "sandbox")
}

/// [`quoted`] for `runtime` (`sandbox`, `docker`).
fn quoted_on(node: &NodeProc, provider: &str, runtime: &str) -> (Digest, Digest) {
    let quote = json!({ "runtime": runtime });
    let found = wait_for(WAIT, || {
        let (status, v) = send(node.http, "POST", "/v1/leases/quote", Some(&quote));
        assert_eq!(status, 200, "{v}");
        v["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["provider"] == provider)
            .map(|o| {
                (
                    o["offer"].as_str().unwrap().parse().unwrap(),
                    o["image"]["digest"].as_str().unwrap().parse().unwrap(),
                )
            })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no offer of {provider} quoted at {}; provider runtimes: {}",
            node.id,
            send(node.http, "GET", "/v1/node", None).1["runtimes"]
        )
    })
}

/// `POST /v1/leases` of `request` with `agent`'s lock for it, signed over its account at
/// `node`'s committee.
fn create_locked(node: &NodeProc, agent: &Agent, request: &Signed<LeaseRequest>) -> (u16, Value) {
    let view = quota_account(node, &agent.id().to_string());
    let lock = lock_op(&agent.identity, &view, request).unwrap();
    send(
        node.http,
        "POST",
        "/v1/leases",
        Some(&json!({ "request": b64(request), "lock": b64(&lock) })),
    )
}

/// `POST /v1/leases` of `request` with `agent`'s chained locks, one per candidate
/// (`lock` and `fallback_locks`), signed over its account at `node`'s committee.
fn create_with_locks(
    node: &NodeProc,
    agent: &Agent,
    request: &Signed<LeaseRequest>,
) -> (u16, Value) {
    let view = quota_account(node, &agent.id().to_string());
    let mut body = json!({ "request": b64(request) });
    body.as_object_mut().unwrap().extend(lock_fields(
        &lock_ops(&agent.identity, &view, request).unwrap(),
    ));
    send(node.http, "POST", "/v1/leases", Some(&body))
}

fn create(node: &NodeProc, request: &Signed<LeaseRequest>) -> (u16, Value) {
    send(
        node.http,
        "POST",
        "/v1/leases",
        Some(&json!({ "request": b64(request) })),
    )
}

fn lease_view(node: &NodeProc, lease: &str) -> Value {
    let (status, v) = send(node.http, "GET", &format!("/v1/leases/{lease}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until the lease (seen through `node`) has ended; its view.
fn ended(node: &NodeProc, lease: &str) -> Value {
    wait_for(WAIT, || {
        let v = lease_view(node, lease);
        (v["state"] == "ended").then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "lease {lease} did not end; view: {}",
            lease_view(node, lease)
        )
    })
}

/// Files through gateway `a`: a directory (a small file and 300 KB of bytes) up into the
/// workload's `/tmp/in`, read inside with `cat`, and down again, byte for byte.
fn files_round_trip(agent: &Agent, a: &NodeProc, lease: &str, tmp: &Path) {
    let up = tmp.join("up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    std::fs::write(up.join("a.txt"), "hello files\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(up.join("sub/blob.bin"), &blob).unwrap();
    let (ok, put, err) = agent.cli(
        a,
        &[
            "files",
            "put",
            lease,
            up.to_str().unwrap(),
            "--to",
            "/tmp/in",
        ],
    );
    assert!(ok, "files put: {err} {put}");
    assert!(put["bytes"].as_u64().unwrap() > 300_000, "{put}");
    let (ok, out, err) = agent.cli(a, &["exec", lease, "--", "cat", "/tmp/in/up/a.txt"]);
    assert!(ok, "{err}");
    assert_eq!(out["stdout"], "hello files\n");
    let down = tmp.join("down");
    let (ok, got, err) = agent.cli(
        a,
        &[
            "files",
            "get",
            lease,
            "/tmp/in/up",
            "--to",
            down.to_str().unwrap(),
        ],
    );
    assert!(ok, "files get: {err} {got}");
    assert_eq!(std::fs::read(down.join("up/sub/blob.bin")).unwrap(), blob);
    assert_eq!(
        std::fs::read_to_string(down.join("up/a.txt")).unwrap(),
        "hello files\n"
    );
}

#[test]
fn an_agent_leases_through_a_gateway_and_controls_it_there() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let (a, c, _committee) = committee_network(tmp.path(), "");
    leftovers.add(cgroup_parent(&c));
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    let (offer, busybox) = quoted(&a, &c.id);
    let at_c = |offer| {
        vec![Candidate {
            provider: c.id.parse().unwrap(),
            offer,
        }]
    };

    // 1. A workload that exits by itself: its exit code is visible through A.
    let (ok, run, err) = agent.cli(&a, &["run", "--lifetime", "5m", "--", "sh", "-c", "exit 3"]);
    assert!(ok, "agent run: {err}");
    assert_eq!(run["verified"], true);
    assert_eq!(run["lease"]["provider"], c.id.as_str());
    let first = run["lease"]["lease"].as_str().unwrap().to_owned();
    let v = ended(&a, &first);
    assert_eq!(v["ended"]["reason"], "exited", "{v}");
    assert_eq!(v["ended"]["detail"]["exited"]["code"], 3, "{v}");
    assert_eq!(v["receipt"]["ended"], "exited", "a final receipt: {v}");

    // 2. A long one: receipts while it runs, extend and stop through A with the CLI.
    let (ok, run, err) = agent.cli(&a, &["run", "--lifetime", "2m", "--", "sleep", "100"]);
    assert!(ok, "agent run: {err}");
    let second = run["lease"]["lease"].as_str().unwrap().to_owned();
    let grant: Signed<LeaseGrant> = decode(run["lease"]["grant"].as_str().unwrap());
    assert_eq!(grant.signer().to_string(), c.id);
    let receipt = wait_for(WAIT, || {
        let v = lease_view(&a, &second);
        (v["receipt"]["seq"].as_u64() >= Some(1)).then_some(v)
    })
    .expect("periodic receipts every 2 s");
    assert_eq!(receipt["state"], "running");
    assert_eq!(receipt["fresh"], true, "A asked C");
    let (ok, ps, err) = agent.cli(&a, &["ps"]);
    assert!(ok, "agent ps: {err}");
    let listed: Vec<&str> = ps["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["lease"].as_str())
        .collect();
    assert!(
        listed.contains(&first.as_str()) && listed.contains(&second.as_str()),
        "{ps}"
    );

    let (ok, ext, err) = agent.cli(&a, &["extend", &second[..12], "600"]);
    assert!(ok, "agent extend: {err}");
    assert_eq!(ext["verified"], true);
    let extended: Signed<LeaseGrant> = decode(ext["lease"]["grant"].as_str().unwrap());
    assert_eq!(
        extended.body().expires_at,
        grant
            .body()
            .expires_at
            .saturating_add(Duration::from_secs(600))
    );

    // Only the agent may operate its lease: another agent's signed stop is refused.
    let other = Agent::sign_up(&tmp.path().join("other"), &a);
    let foreign = Signed::sign(
        agora_protocol::lease::LeaseOp {
            agent: other.id(),
            provider: c.id.parse().unwrap(),
            lease: second.parse().unwrap(),
            op: agora_protocol::lease::Op::Stop,
            nonce: [7; NONCE_LEN],
            issued_at: now(),
            delegation: None,
        },
        &other.identity,
    )
    .unwrap();
    let (status, v) = send(
        a.http,
        "DELETE",
        &format!("/v1/leases/{second}"),
        Some(&json!({ "op": b64(&foreign) })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("unauthorized")),
        "{v}"
    );

    let (ok, stop, err) = agent.cli(&a, &["stop", &second]);
    assert!(ok, "agent stop: {err}");
    assert_eq!(stop["verified"], true);
    assert_eq!(stop["lease"]["state"], "ended");
    assert_eq!(stop["lease"]["ended"]["reason"], "stopped_by_agent");
    let last: Signed<UsageReceipt> = decode(stop["lease"]["receipt"]["signed"].as_str().unwrap());
    assert_eq!(last.signer().to_string(), c.id, "the final receipt is C's");
    assert_eq!(
        last.body().ended,
        Some(agora_protocol::workload::TerminationReason::StoppedByAgent)
    );
    assert!(last.body().total_micro > 0);

    // The agent's account at the committee is charged what the two leases cost (the second
    // over its lock and its top-up, once), and nothing stays locked once C settled them.
    let first_total = lease_view(&a, &first)["receipt"]["total_micro"]
        .as_u64()
        .unwrap();
    let settled = wait_for(WAIT, || {
        let v = quota_account(&a, &agent.id().to_string());
        (v.locked_micro == 0 && v.next_seq >= 3).then_some(v)
    })
    .unwrap_or_else(|| panic!("C settles the locks:\n{}", c.log()));
    assert_eq!(
        settled.spent_micro,
        first_total + last.body().total_micro,
        "{settled:?}"
    );
    // Only the agent lists its leases: not without proof, not with another agent's proof,
    // not with its proof for another node (A), not with a stale one.
    let stale = now().saturating_sub(Duration::from_secs(6 * 60));
    for (proof, want) in [
        (None, (401, "proof_required")),
        (
            Some((&other.identity, c.id.as_str(), now())),
            (401, "bad_proof"),
        ),
        (
            Some((&agent.identity, a.id.as_str(), now())),
            (401, "proof_wrong_node"),
        ),
        (
            Some((&agent.identity, c.id.as_str(), stale)),
            (409, "stale"),
        ),
    ] {
        let (status, v) = list_leases(&c, &agent.id(), proof);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want.0, Some(want.1)),
            "{v}"
        );
        assert!(v.get("leases").is_none(), "{v}");
    }
    let (status, at_c_list) = list_leases(&c, &agent.id(), Some((&agent.identity, &c.id, now())));
    assert_eq!(status, 200, "{at_c_list}");
    assert!(
        at_c_list["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["lease"] == second.as_str()),
        "the agent's own proof lists its leases: {at_c_list}"
    );

    // 3. Bad input: a clear code, and nothing lost.
    // A request naming the agent but signed by the gateway's (here: another) key.
    let forged = forge(&agent, &other.identity, at_c(offer), busybox);
    let (status, v) = send(
        a.http,
        "POST",
        "/v1/leases",
        Some(&json!({ "request": forged })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_signature")),
        "{v}"
    );
    // A tampered request.
    let good = agent.request(at_c(offer), busybox, &["true"], |_| {});
    let mut bytes = good.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    let (status, v) = send(
        a.http,
        "POST",
        "/v1/leases",
        Some(&json!({ "request": URL_SAFE_NO_PAD.encode(&bytes) })),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        matches!(
            v["error"]["code"].as_str(),
            Some("bad_signature" | "malformed_request")
        ),
        "{v}"
    );
    // A replayed request: granted once (against its lock), refused as a replay after.
    let started = std::time::Instant::now();
    let (status, v) = create_locked(&a, &agent, &good);
    assert_eq!(status, 201, "{v}");
    eprintln!(
        "lease through A granted by C in {} ms (C's part: {} ms)",
        started.elapsed().as_millis(),
        v["attempts"][0]["elapsed_ms"]
    );
    let (status, again) = create(&a, &good);
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("replay")),
        "{again}"
    );
    // An unknown offer: nothing matches, and the answer says why, offer by offer.
    let (status, v) = create(
        &a,
        &agent.request(
            at_c(Digest::of(b"no such offer")),
            busybox,
            &["true"],
            |_| {},
        ),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("no_match")),
        "{v}"
    );
    assert_eq!(v["attempts"][0]["code"], "offer_mismatch", "{v}");
    assert!(v["attempts"][0]["signed_refusal"].is_string());
    // Over the contained tier: refused for the agent (no failover).
    let (status, v) = create(
        &a,
        &agent.request(at_c(offer), busybox, &["true"], |r| {
            r.spec.resources.memory_mib = 1536;
        }),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("tier_limit")),
        "{v}"
    );
    // Over the agent's quota: the free tier's 10 credits do not cover 72 h of 1 vCPU and
    // 1 GiB at C's prices (about 28.5 credits), so the committee does not certify the lock.
    let (status, v) = create_locked(
        &a,
        &agent,
        &agent.request(at_c(offer), busybox, &["true"], |r| {
            r.spec.resources.vcpu_milli = 1000;
            r.spec.resources.memory_mib = 1024;
            r.spec.lifetime_secs = 72 * 3600;
        }),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("quota")),
        "{v}"
    );
    // A stale request.
    let (status, v) = create(
        &a,
        &agent.request(at_c(offer), busybox, &["true"], |r| {
            r.issued_at = now().saturating_sub(Duration::from_secs(3600));
        }),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("stale")),
        "{v}"
    );
    // Malformed bodies.
    for body in [
        json!({}),
        json!({ "request": 5 }),
        json!({ "request": "x", "extra": 1 }),
    ] {
        let (status, v) = send(a.http, "POST", "/v1/leases", Some(&body));
        assert_eq!(status, 400, "{body}: {v}");
    }
    // Outcomes are counted on both sides.
    let (_, metrics) = agora_tests::node::http_get_text(a.http, "/metrics");
    for line in [
        r#"agora_leases_total{role="gateway",result="granted"}"#,
        r#"agora_leases_total{role="gateway",result="no_match"}"#,
        r#"agora_leases_total{role="gateway",result="stale"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing at A:\n{metrics}");
    }
    let (_, metrics) = agora_tests::node::http_get_text(c.http, "/metrics");
    assert!(
        metrics.contains(r#"agora_leases_total{role="provider",result="offer_mismatch"} 1"#),
        "{metrics}"
    );
    let (status, v) = send(a.http, "GET", "/v1/leases/nothex", None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_lease_id"))
    );
    let unknown = Digest::of(b"unknown lease");
    let (status, _) = send(a.http, "GET", &format!("/v1/leases/{unknown}"), None);
    assert_eq!(status, 404);
}

/// A request naming `agent` as its author but signed by `forger`: built by hand, since
/// `Signed::sign` refuses to sign for another author.
fn forge(agent: &Agent, forger: &Identity, candidates: Vec<Candidate>, busybox: Digest) -> String {
    let body = agent
        .request(candidates, busybox, &["true"], |_| {})
        .body()
        .clone();
    let payload = agora_protocol::codec::encode(&body, LeaseRequest::MAX_PAYLOAD_BYTES).unwrap();
    let signer = forger.agora_id();
    let input = agora_protocol::signed::signing_input::<LeaseRequest>(&signer, &payload);
    let sig = agora_protocol::Signer::sign(forger, &input);
    let mut wire = vec![agora_protocol::signed::FORMAT_VERSION];
    wire.extend_from_slice(signer.as_bytes());
    let mut len = u32::try_from(payload.len()).unwrap();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            wire.push(byte);
            break;
        }
        wire.push(byte | 0x80);
    }
    wire.extend_from_slice(&payload);
    wire.extend_from_slice(&sig.0);
    URL_SAFE_NO_PAD.encode(wire)
}

#[test]
fn a_killed_provider_is_failed_over_and_a_restarted_one_keeps_its_lease() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    // A gateway and validator of a committee of n = 4 (three validator-only nodes); the
    // providers C and D follow its genesis.
    let a_dir = tmp.path().join("a");
    let mut committee = Committee::new(tmp.path(), &[a_dir.as_path()]);
    let a = gateway_in(&a_dir, "", Some(&committee));
    committee.start_extra(&a.tcp_addr());
    let c = provider_following(&tmp.path().join("c"), &a.tcp_addr(), &committee);
    let d = provider_following(&tmp.path().join("d"), &a.tcp_addr(), &committee);
    committee.wait_connected(&[&a, &c, &d]);
    leftovers.add(cgroup_parent(&c));
    leftovers.add(cgroup_parent(&d));
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    let (c_offer, busybox) = quoted(&a, &c.id);
    let (d_offer, _) = quoted(&a, &d.id);
    let candidates = vec![
        Candidate {
            provider: c.id.parse().unwrap(),
            offer: c_offer,
        },
        Candidate {
            provider: d.id.parse().unwrap(),
            offer: d_offer,
        },
    ];

    // C vanishes (SIGKILL: no withdrawal), its offer still in A's book: the request naming
    // C first is granted by D, and the answer says what happened with C.
    let (c_dir, c_id) = (c.dir.clone(), c.id.clone());
    drop(c);
    let request = agent.request(candidates, busybox, &["sleep", "100"], |r| {
        r.spec.lifetime_secs = 120;
    });
    let (status, v) = create_with_locks(&a, &agent, &request);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["lease"]["provider"], d.id.as_str(), "{v}");
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{v}");
    assert!(
        matches!(
            attempts[0]["outcome"].as_str(),
            Some("unreachable" | "timeout")
        ),
        "{v}"
    );
    assert_eq!(attempts[1]["outcome"], "granted");
    eprintln!(
        "failover: {} after {} ms, granted by D in {} ms",
        attempts[0]["outcome"], attempts[0]["elapsed_ms"], attempts[1]["elapsed_ms"]
    );
    let lease = v["lease"]["lease"].as_str().unwrap().to_owned();
    assert_eq!(lease, request.digest().to_string());

    // D restarts: the lease is still there, still running, and can be stopped.
    let d_dir = d.dir.clone();
    assert!(d.stop(), "D exits cleanly");
    let d = provider_following(&d_dir, &a.tcp_addr(), &committee);
    let v = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["fresh"] == true).then_some(v)
    })
    .expect("A reaches the restarted D");
    assert_eq!(v["state"], "running", "{v}");
    let (ok, stop, err) = agent.cli(&a, &["stop", &lease]);
    assert!(ok, "agent stop after restart: {err}\nD's log:\n{}", d.log());
    assert_eq!(stop["lease"]["ended"]["reason"], "stopped_by_agent");
    assert_eq!(stop["verified"], true);
    // The restarted D settles the lock it kept: the agent is charged its receipt; C's
    // lock (certified, never answered) is still held until it lapses.
    let total = stop["lease"]["receipt"]["total_micro"].as_u64().unwrap();
    let account = wait_for(WAIT, || {
        let account = quota_account(&a, &agent.id().to_string());
        (account.locks.len() == 1).then_some(account)
    })
    .expect("D settles its lock");
    assert_eq!(account.locks[0].provider, c_id, "{account:?}");
    assert_eq!(account.spent_micro, total, "{account:?}");
    drop(c_dir);
}

/// Under the quota committee (n = 4) a gateway fails over along the agent's chained locks,
/// one per candidate: E vanished (its lock is certified, unanswered, and lapses later), C
/// refuses the request (named with another provider's offer: `offer_mismatch`), and A
/// releases C's lock at once with C's signed refusal; D grants. The account then holds
/// E's and D's locks only, and D's settlement charges the final receipt.
#[test]
fn under_the_committee_a_gateway_fails_over_and_releases_a_refusing_providers_lock() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let (a, c, committee) = committee_network(tmp.path(), "");
    let d = provider_following(&tmp.path().join("d"), &a.tcp_addr(), &committee);
    let e = provider_following(&tmp.path().join("e"), &a.tcp_addr(), &committee);
    for node in [&c, &d, &e] {
        leftovers.add(cgroup_parent(node));
    }
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    let (_, busybox) = quoted(&a, &c.id);
    let (d_offer, _) = quoted(&a, &d.id);
    let (e_offer, _) = quoted(&a, &e.id);
    let candidate = |node: &NodeProc, offer| Candidate {
        provider: node.id.parse().unwrap(),
        offer,
    };
    let candidates = vec![
        candidate(&e, e_offer),
        candidate(&c, d_offer),
        candidate(&d, d_offer),
    ];
    let (e_id, c_id, d_id) = (e.id.clone(), c.id.clone(), d.id.clone());
    drop(e);

    let request = agent.request(candidates, busybox, &["sleep", "100"], |r| {
        r.spec.lifetime_secs = 120;
    });
    let before = quota_account(&a, &agent.id().to_string());
    let (status, v) = create_with_locks(&a, &agent, &request);
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["lease"]["provider"], d_id.as_str(), "{v}");
    let attempts = v["attempts"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap(),
                a["code"].as_str().or(a["outcome"].as_str()).unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 3, "{v}");
    assert_eq!(outcomes[0].0, e_id);
    assert!(matches!(outcomes[0].1, "unreachable" | "timeout"), "{v}");
    assert_eq!(outcomes[1], (c_id.as_str(), "offer_mismatch"), "{v}");
    assert_eq!(outcomes[2], (d_id.as_str(), "granted"), "{v}");
    let lease = v["lease"]["lease"].as_str().unwrap().to_owned();

    // C's lock was released before D's was certified: E's and D's are held.
    let amount = 1000 * 120;
    let account = quota_account(&a, &agent.id().to_string());
    let mut held: Vec<&str> = account.locks.iter().map(|l| l.provider.as_str()).collect();
    held.sort_unstable();
    let mut expected = vec![e_id.as_str(), d_id.as_str()];
    expected.sort_unstable();
    assert_eq!(held, expected, "{account:?}");
    assert!(
        account
            .locks
            .iter()
            .all(|l| l.amount_micro == amount && l.lease == lease)
    );
    assert_eq!(account.next_seq, before.next_seq + 3, "{account:?}");
    assert_eq!(account.spent_micro, before.spent_micro);
    assert_eq!(account.available_micro, before.available_micro - 2 * amount);

    // The lease runs at D and ends with a receipt D settles: the agent pays D's receipt
    // once, and E's lock stays held until it lapses.
    let (ok, stop, err) = agent.cli(&a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}");
    let total = stop["lease"]["receipt"]["total_micro"]
        .as_u64()
        .expect("a final receipt");
    let settled = wait_for(WAIT, || {
        let account = quota_account(&a, &agent.id().to_string());
        (account.locks.len() == 1).then_some(account)
    })
    .expect("D settles its lock");
    assert_eq!(settled.locks[0].provider, e_id, "{settled:?}");
    assert_eq!(settled.spent_micro, before.spent_micro + total);
    assert_eq!(
        settled.available_micro,
        before.available_micro - total - amount
    );
    drop(committee);
}

/// A GET whose NDJSON answer is read as it comes: the status (`{"http_status": N}`), then
/// each JSON line, on the channel until the body ends.
fn ndjson_lines(addr: SocketAddr, path: &str) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        for line in std::io::BufRead::lines(std::io::BufReader::new(s)) {
            let Ok(line) = line else { return };
            let value = if let Some(status) = line.strip_prefix("HTTP/1.1 ") {
                json!({ "http_status": status.get(..3).and_then(|c| c.parse::<u16>().ok()) })
            } else if line.trim().starts_with('{') {
                serde_json::from_str(line.trim()).unwrap()
            } else {
                continue;
            };
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_provider_that_vanishes_mid_lease_is_reported_lost_by_the_gateway() {
    use agora_protocol::lease::Op;
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let (a, c, committee) = committee_network(tmp.path(), "provider_lost_after = \"3s\"\n");
    leftovers.add(cgroup_parent(&c));
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    let (offer, busybox) = quoted(&a, &c.id);
    let request = agent.request(
        vec![Candidate {
            provider: c.id.parse().unwrap(),
            offer,
        }],
        busybox,
        &["sh", "-c", "echo started; sleep 600"],
        |_| {},
    );
    let (status, v) = create_locked(&a, &agent, &request);
    assert_eq!(status, 201, "{v}");
    let lease = v["lease"]["lease"].as_str().unwrap().to_owned();

    // C signs a receipt every 2 s; A shows the latest, with C answering.
    let running = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["fresh"] == true && v["receipt"]["seq"].as_u64() >= Some(1)).then_some(v)
    })
    .expect("a periodic receipt through A");
    assert_eq!(running["state"], "running");
    assert_eq!(running["provider_contact"]["reachable"], true, "{running}");

    // The agent follows the workload's logs through A (a libp2p stream to C).
    let follow = signed_op(&agent, &c.id, &lease, Op::Logs { follow: true });
    let logs = ndjson_lines(a.http, &format!("/v1/leases/{lease}/logs?op={follow}"));
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &Value| l["text"].as_str().is_some_and(|t| t.contains("started")))
    {
        let line = logs
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no `started` line ({e}): {seen:?}"));
        seen.push(line);
    }
    assert_eq!(seen[0]["http_status"], 200, "{seen:?}");

    // C vanishes mid-lease: SIGKILL, nothing signed, no withdrawal.
    c.signal("KILL");

    // The follow stream ends with a stable code, never a clean end.
    let last = loop {
        let line = logs
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("the logs stream did not end with an error ({e})"));
        if matches!(line["type"].as_str(), Some("error" | "end" | "exit")) {
            break line;
        }
    };
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["code"], "unreachable", "{last}");

    // A first says C does not answer, the lease still as C last signed it…
    let silent = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["provider_contact"]["reachable"] == false).then_some(v)
    })
    .expect("A notices that C does not answer");
    assert_eq!(
        silent["state"], "running",
        "within provider_lost_after: {silent}"
    );
    assert_eq!(silent["fresh"], false);
    assert!(
        silent["provider_contact"]["unreachable_since"].is_string(),
        "{silent}"
    );
    assert!(
        matches!(
            silent["provider_contact"]["error"].as_str(),
            Some("unreachable" | "timeout")
        ),
        "{silent}"
    );

    // …then, after provider_lost_after (3 s), the lease ended by A's own verdict, with C's
    // last signed receipt still there.
    let lost = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["state"] == "ended").then_some(v)
    })
    .expect("A gives the lease up");
    assert_eq!(lost["ended"]["reason"], "provider_lost", "{lost}");
    assert_eq!(lost["ended"]["source"], "gateway", "{lost}");
    assert_eq!(lost["ended"]["detail"], Value::Null, "{lost}");
    assert_eq!(lost["remaining_secs"], 0);
    assert_eq!(lost["provider_contact"]["reachable"], false);
    assert_eq!(
        lost["provider_contact"]["unreachable_since"],
        silent["provider_contact"]["unreachable_since"],
        "counted from the first silence"
    );
    let receipt: Signed<UsageReceipt> = decode(lost["receipt"]["signed"].as_str().unwrap());
    assert_eq!(receipt.signer().to_string(), c.id, "C's own receipt");
    assert_eq!(receipt.body().lease.to_string(), lease);
    assert!(receipt.body().seq >= 1, "{lost}");
    assert_eq!(receipt.body().ended, None, "C never signed an end");
    let (status, list) = list_leases(&a, &agent.id(), Some((&agent.identity, &a.id, now())));
    assert_eq!(status, 200, "{list}");
    let listed = list["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lease"] == lease.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(listed["ended"]["reason"], "provider_lost", "{listed}");

    // C comes back (its workload outlived it): its signed word wins over A's verdict.
    let c_dir = c.dir.clone();
    drop(c);
    let c = provider_in(&c_dir, &a.tcp_addr(), "sandbox", "", Some(&committee));
    let back = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["fresh"] == true).then_some(v)
    })
    .unwrap_or_else(|| panic!("A reaches the restarted C; C's log:\n{}", c.log()));
    assert_eq!(back["state"], "running", "{back}");
    assert_eq!(back["ended"], Value::Null, "{back}");
    assert_eq!(back["provider_contact"]["reachable"], true, "{back}");
    let (ok, stop, err) = agent.cli(&a, &["stop", &lease]);
    assert!(
        ok,
        "agent stop after C's return: {err}\nC's log:\n{}",
        c.log()
    );
    assert_eq!(stop["lease"]["ended"]["reason"], "stopped_by_agent");
    assert_eq!(stop["lease"]["ended"]["source"], "provider");
    assert_eq!(stop["verified"], true);
}

/// `agora --json agent ARGS… --node N --key K` with `input` (if any) on its standard input;
/// (success, the JSON it printed, stderr).
fn cli_with_input(
    agent: &Agent,
    node: &NodeProc,
    args: &[&str],
    input: Option<&[u8]>,
) -> (bool, Value, String) {
    use std::process::Stdio;
    let (sub, rest) = args.split_first().unwrap();
    let (before, after) = match rest.iter().position(|a| *a == "--") {
        Some(i) => rest.split_at(i),
        None => (rest, &[][..]),
    };
    let mut child = agora(&agent.home)
        .args(["--json", "agent", sub])
        .args(before)
        .arg("--node")
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(&agent.key)
        .args(after)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let v = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out.status.success(), v, stderr(&out))
}

/// The agent's signed operation on `lease` at `provider`, base64url.
fn signed_op(agent: &Agent, provider: &str, lease: &str, op: agora_protocol::lease::Op) -> String {
    b64(&Signed::sign(
        agora_protocol::lease::LeaseOp {
            agent: agent.id(),
            provider: provider.parse().unwrap(),
            lease: lease.parse().unwrap(),
            op,
            nonce: rand::random::<[u8; NONCE_LEN]>(),
            issued_at: now(),
            delegation: None,
        },
        &agent.identity,
    )
    .unwrap())
}

#[test]
fn exec_logs_and_files_stream_through_any_node() {
    use agora_protocol::lease::Op;
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let (a, c, _committee) = committee_network(tmp.path(), "");
    leftovers.add(cgroup_parent(&c));
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    quoted(&a, &c.id);
    let (ok, run, err) = agent.cli(
        &a,
        &[
            "run",
            "--lifetime",
            "5m",
            "--",
            "sh",
            "-c",
            "echo started; sleep 200",
        ],
    );
    assert!(ok, "agent run: {err}");
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();

    // Exec through A (over a libp2p stream to C): output on both streams and the exit code.
    let (ok, out, err) = agent.cli(
        &a,
        &[
            "exec",
            &lease,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert!(!ok, "exit code 7 is a failure: {err}");
    assert_eq!(out["exit_code"], 7, "{out} {err}");
    assert_eq!(out["stdout"], "out\n");
    assert_eq!(out["stderr"], "err\n");
    // Standard input, larger than any buffer on the way, comes back whole.
    let input: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (ok, out, err) = cli_with_input(
        &agent,
        &a,
        &["exec", &lease, "-i", "--", "cat"],
        Some(&input[..]),
    );
    assert!(ok, "exec -i cat: {err}");
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["stdout"].as_str().unwrap().as_bytes(), &input[..]);
    // Through the provider's own API (no network between gateway and provider).
    let (ok, out, err) = agent.cli(&c, &["exec", &lease, "--", "echo", "local"]);
    assert!(ok, "exec at C: {err}");
    assert_eq!(out["stdout"], "local\n");

    // Logs: the workload's own output so far.
    let logs = agora(&agent.home)
        .args(["--json", "agent", "logs", &lease, "--node"])
        .arg(format!("http://{}", a.http))
        .arg("--key")
        .arg(&agent.key)
        .output()
        .unwrap();
    assert!(logs.status.success(), "agent logs: {}", stderr(&logs));
    let lines: Vec<Value> = stdout(&logs)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "stdout" && l["text"] == "started\n"),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap()["type"], "end");

    // Files: a directory up, read inside, and down again, byte for byte.
    files_round_trip(&agent, &a, &lease, tmp.path());

    // Refusals: clear codes, before anything runs.
    let other = Agent::sign_up(&tmp.path().join("other"), &a);
    let exec_op = |who: &Agent| {
        signed_op(
            who,
            &c.id,
            &lease,
            Op::Exec {
                command: vec!["true".into()],
                stdin: false,
                tty: false,
            },
        )
    };
    let path = format!("/v1/leases/{lease}/exec");
    let (status, v) = send(
        a.http,
        "POST",
        &path,
        Some(&json!({ "op": exec_op(&other) })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("unauthorized")),
        "another agent's exec: {v}"
    );
    let mut tampered = URL_SAFE_NO_PAD.decode(exec_op(&agent)).unwrap();
    let i = tampered.len() - 70;
    tampered[i] ^= 1;
    let (status, v) = send(
        a.http,
        "POST",
        &path,
        Some(&json!({ "op": URL_SAFE_NO_PAD.encode(&tampered) })),
    );
    assert_eq!(status, 400, "a tampered exec: {v}");
    let once = exec_op(&agent);
    let (status, _) = send(a.http, "POST", &path, Some(&json!({ "op": once })));
    assert_eq!(status, 200);
    let (status, v) = send(a.http, "POST", &path, Some(&json!({ "op": once })));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("replay")),
        "a replayed exec: {v}"
    );
    let (status, v) = send(
        a.http,
        "POST",
        &path,
        Some(&json!({ "op": exec_op(&agent), "stdin": "x" })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("wrong_op")),
        "input for an exec signed without stdin: {v}"
    );
    let missing = signed_op(
        &agent,
        &c.id,
        &lease,
        Op::GetFiles {
            path: "/tmp/nothing-here".into(),
        },
    );
    let (status, v) = send(
        a.http,
        "GET",
        &format!("/v1/leases/{lease}/files?op={missing}"),
        None,
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{v}"
    );
    // A relative path cannot even be signed: the agent's CLI says so.
    let (ok, _, err) = agent.cli(&a, &["files", "get", &lease, "tmp/in"]);
    assert!(!ok && err.contains("absolute"), "{err}");

    // After the lease ends, its workload takes no more commands.
    let (ok, _, err) = agent.cli(&a, &["stop", &lease]);
    assert!(ok, "{err}");
    let (status, v) = send(
        a.http,
        "POST",
        &path,
        Some(&json!({ "op": exec_op(&agent) })),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("ended")),
        "exec on an ended lease: {v}"
    );
}

#[test]
fn the_journey_runs_on_docker_too() {
    if !agora_tests::require_docker("the_journey_runs_on_docker_too") {
        return;
    }
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut engine = DockerLeftovers::new();
    let image = engine.busybox(tmp.path());
    let (a, c, _committee) = committee_network_on(tmp.path(), "", "docker", &engine.config());
    let agent = Agent::sign_up(&tmp.path().join("agent"), &a);
    let (_, offered) = quoted_on(&a, &c.id, "docker");
    assert_eq!(offered, image, "C offers the image built here");
    let ready = started.elapsed();

    // A long-lived workload on C's Docker runtime, chosen through A.
    let (ok, run, err) = agent.cli(
        &a,
        &[
            "run",
            "--runtime",
            "docker",
            "--lifetime",
            "5m",
            "--",
            "sh",
            "-c",
            "echo started; echo warming >&2; sleep 200",
        ],
    );
    assert!(ok, "agent run: {err}\nC's log:\n{}", c.log());
    assert_eq!(run["verified"], true);
    assert_eq!(run["lease"]["provider"], c.id.as_str());
    let lease = run["lease"]["lease"].as_str().unwrap().to_owned();
    let grant: Signed<LeaseGrant> = decode(run["lease"]["grant"].as_str().unwrap());
    assert_eq!(grant.signer().to_string(), c.id);
    assert_eq!(
        engine.containers(true).len(),
        1,
        "the workload is a running container of C's"
    );

    // Logs followed from now on, until the workload ends (read after the stop below).
    let follower = agora(&agent.home)
        .args(["--json", "agent", "logs", &lease, "--follow", "--node"])
        .arg(format!("http://{}", a.http))
        .arg("--key")
        .arg(&agent.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Logs: the workload's own output so far, both streams.
    let lines = wait_for(WAIT, || {
        let logs = agora(&agent.home)
            .args(["--json", "agent", "logs", &lease, "--node"])
            .arg(format!("http://{}", a.http))
            .arg("--key")
            .arg(&agent.key)
            .output()
            .unwrap();
        assert!(
            logs.status.success(),
            "agent logs: {} {}\nC's log:\n{}\nA's log:\n{}",
            stderr(&logs),
            stdout(&logs),
            c.log(),
            a.log()
        );
        let lines: Vec<Value> = stdout(&logs)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let has =
            |kind: &str, text: &str| lines.iter().any(|l| l["type"] == kind && l["text"] == text);
        (has("stdout", "started\n") && has("stderr", "warming\n")).then_some(lines)
    })
    .expect("the workload's output in its logs");
    assert_eq!(lines.last().unwrap()["type"], "end");

    // Exec: output on both streams and the exit code; standard input comes back whole.
    let (ok, out, err) = agent.cli(
        &a,
        &[
            "exec",
            &lease,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert!(!ok, "exit code 7 is a failure: {err}");
    assert_eq!(out["exit_code"], 7, "{out} {err}");
    assert_eq!(out["stdout"], "out\n");
    assert_eq!(out["stderr"], "err\n");
    let input: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (ok, out, err) = cli_with_input(
        &agent,
        &a,
        &["exec", &lease, "-i", "--", "cat"],
        Some(&input[..]),
    );
    assert!(ok, "exec -i cat: {err}");
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["stdout"].as_str().unwrap().as_bytes(), &input[..]);

    // Files: a directory up into the workload's /tmp, read inside, and down again.
    files_round_trip(&agent, &a, &lease, tmp.path());

    // Extend: a grant re-signed by C, later by exactly the extension.
    let (ok, ext, err) = agent.cli(&a, &["extend", &lease[..12], "600"]);
    assert!(ok, "agent extend: {err}");
    assert_eq!(ext["verified"], true);
    let extended: Signed<LeaseGrant> = decode(ext["lease"]["grant"].as_str().unwrap());
    assert_eq!(extended.signer().to_string(), c.id);
    assert_eq!(
        extended.body().expires_at,
        grant
            .body()
            .expires_at
            .saturating_add(Duration::from_secs(600))
    );

    // Receipts while it runs, metered from the engine's statistics.
    let running = wait_for(WAIT, || {
        let v = lease_view(&a, &lease);
        (v["receipt"]["seq"].as_u64() >= Some(1)).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "no periodic receipt (every 2 s); the lease at A: {}\nC's log:\n{}",
            lease_view(&a, &lease),
            c.log()
        )
    });
    assert_eq!(running["state"], "running", "{running}");

    // Stop: C's final signed receipt, and the container no longer runs.
    let (ok, stop, err) = agent.cli(&a, &["stop", &lease]);
    assert!(ok, "agent stop: {err}\nC's log:\n{}", c.log());
    assert_eq!(stop["verified"], true);
    assert_eq!(stop["lease"]["state"], "ended");
    assert_eq!(stop["lease"]["ended"]["reason"], "stopped_by_agent");
    let last: Signed<UsageReceipt> = decode(stop["lease"]["receipt"]["signed"].as_str().unwrap());
    assert_eq!(last.signer().to_string(), c.id, "the final receipt is C's");
    assert_eq!(last.body().lease.to_string(), lease);
    assert_eq!(
        last.body().ended,
        Some(agora_protocol::workload::TerminationReason::StoppedByAgent)
    );
    let body = last.body();
    let secs = body.to.saturating_duration_since(body.from).as_secs();
    assert!(secs >= 2 && body.seq >= 2, "{body:?}");
    assert_eq!(body.total_micro, body.price_per_sec * secs, "{body:?}");
    assert!(
        body.cpu_ms > 0,
        "the container's CPU time is metered: {body:?}"
    );
    assert!(engine.containers(true).is_empty(), "the container stopped");

    // The followed logs ended with the workload, after its output.
    let mut follower = follower;
    let done = wait_for(WAIT, || follower.try_wait().unwrap());
    if done.is_none() {
        let _ = follower.kill();
    }
    let out = follower.wait_with_output().unwrap();
    assert!(
        done.is_some_and(|s| s.success()),
        "agent logs --follow: {} {}\nC's log:\n{}",
        stderr(&out),
        stdout(&out),
        c.log()
    );
    let followed: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        followed
            .iter()
            .any(|l| l["type"] == "stdout" && l["text"] == "started\n"),
        "{followed:?}"
    );
    assert_eq!(followed.last().unwrap()["type"], "end", "{followed:?}");
    eprintln!(
        "docker journey: {} ms in all ({} ms to C's first offer at A)",
        started.elapsed().as_millis(),
        ready.as_millis()
    );
}

/// Accepts one HTTP request on `listener` (the owner's webhook) and returns its JSON body.
fn webhook_once(listener: std::net::TcpListener) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).unwrap();
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    return serde_json::from_str(&body[..len]).unwrap();
                }
            }
            assert!(n > 0, "the webhook request was cut short");
        }
    })
}

/// An agent key under `home` whose attestation, by an issuer generated for the test, gives
/// the standard tier with a spending limit of one credit and names an owner.
struct OwnedAgent {
    home: PathBuf,
    issuer: Identity,
    owner: Identity,
    owner_key: PathBuf,
    /// The attestation, for `agent signup --credential`.
    cred: PathBuf,
    /// A `[trust]` section trusting the issuer.
    trust: String,
}

impl OwnedAgent {
    fn new(home: &Path) -> Self {
        std::fs::create_dir_all(home).unwrap();
        let issuer = Identity::generate(&mut rand::rng());
        let owner = Identity::generate(&mut rand::rng());
        let agent_id = Identity::generate(&mut rand::rng());
        let (issuer_key, owner_key) = (home.join("issuer.key"), home.join("owner.key"));
        keyfile::save(&issuer_key, &issuer).unwrap();
        keyfile::save(&owner_key, &owner).unwrap();
        keyfile::save(&home.join("agent.key"), &agent_id).unwrap();
        let out = agora(home)
            .args(["attest", "issue", "--issuer-key"])
            .arg(&issuer_key)
            .args(["--subject", &agent_id.agora_id().to_string()])
            .args(["--tier", "standard", "--expires", "1h"])
            .args(["--spending-limit", "1"])
            .args(["--owner", &owner.agora_id().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "attest issue: {}", stderr(&out));
        let cred = home.join("agent.cred");
        std::fs::write(&cred, stdout(&out)).unwrap();
        let trust = format!(
            "\n[trust]\n\n[[trust.root]]\nid = \"{}\"\nname = \"test issuer\"\n",
            issuer.agora_id()
        );
        Self {
            home: home.to_owned(),
            issuer,
            owner,
            owner_key,
            cred,
            trust,
        }
    }

    /// `agora approve ID` with `key` at `node`.
    fn approve(&self, node: &NodeProc, key: &Path, id: &str) -> std::process::Output {
        agora(&self.home)
            .args(["--json", "approve", id, "--owner-key"])
            .arg(key)
            .arg("--node")
            .arg(format!("http://{}", node.http))
            .output()
            .unwrap()
    }

    /// The owner's `agora approve ID` at `node`, which must succeed.
    fn owner_approves(&self, node: &NodeProc, id: &str) {
        let out = self.approve(node, &self.owner_key, id);
        assert!(
            out.status.success(),
            "approve {id}: {} {}",
            stderr(&out),
            stdout(&out)
        );
    }

    /// The first request waiting for the owner at `node`, once one does.
    fn first_waiting(&self, node: &NodeProc) -> Option<Value> {
        wait_for(WAIT, || {
            let out = agora(&self.home)
                .args(["--json", "approvals", "list", "--owner-key"])
                .arg(&self.owner_key)
                .arg("--node")
                .arg(format!("http://{}", node.http))
                .output()
                .unwrap();
            let v: Value = serde_json::from_str(&stdout(&out)).ok()?;
            v["approvals"].as_array()?.first().cloned()
        })
    }

    /// `agent extend LEASE SECS` through `node` while the owner approves the extension it
    /// waits for (`check` sees the waiting request first): the re-signed grant, once the
    /// approval shows `approved`.
    fn extend_approved(
        &self,
        node: &NodeProc,
        agent: &Agent,
        lease: &str,
        secs: u64,
        check: impl FnOnce(&Value),
    ) -> Signed<LeaseGrant> {
        let extender = agora(&self.home)
            .args(["--json", "agent", "extend", "--node"])
            .arg(format!("http://{}", node.http))
            .arg("--key")
            .arg(&agent.key)
            .args([lease, &secs.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let Some(waiting) = wait_for(WAIT, || {
            let (_, v) = send(node.http, "GET", "/v1/approvals?state=pending", None);
            v["approvals"]
                .as_array()?
                .iter()
                .find(|p| p["kind"] == "extension")
                .cloned()
        }) else {
            let out = extender.wait_with_output().unwrap();
            panic!(
                "the extension does not wait for the owner: {} {}",
                stdout(&out),
                stderr(&out)
            );
        };
        assert_eq!(waiting["lease"], lease, "{waiting}");
        assert_eq!(waiting["extend_secs"], secs, "{waiting}");
        assert_eq!(waiting["owner"], self.owner.agora_id().to_string().as_str());
        check(&waiting);
        let id = waiting["id"].as_str().unwrap().to_owned();
        self.owner_approves(node, &id);
        let done = extender.wait_with_output().unwrap();
        assert!(done.status.success(), "agent extend: {}", stderr(&done));
        let extended: Value = serde_json::from_str(&stdout(&done)).unwrap();
        assert_eq!(extended["verified"], true, "{extended}");
        let (status, v) = send(node.http, "GET", &format!("/v1/approvals/{id}"), None);
        assert_eq!(
            (status, v["state"].as_str()),
            (200, Some("approved")),
            "{v}"
        );
        decode(extended["lease"]["grant"].as_str().unwrap())
    }
}

#[test]
fn a_lease_over_the_spending_limit_waits_for_its_owner() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let owned = OwnedAgent::new(&tmp.path().join("agent"));
    let (home, owner, owner_key, trust) =
        (&owned.home, &owned.owner, &owned.owner_key, &owned.trust);
    let stranger_key = home.join("stranger.key");
    keyfile::save(&stranger_key, &Identity::generate(&mut rand::rng())).unwrap();
    let (issuer, cred) = (&owned.issuer, &owned.cred);
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/approvals", hook.local_addr().unwrap());
    let hooked = webhook_once(hook);
    // A committee of n = 4 whose genesis lists the issuer: the agent's credit is its one
    // credit, and the credited attestation names the owner validators accept approvals of.
    let a_dir = tmp.path().join("a");
    let mut committee =
        Committee::new_with(tmp.path(), &[a_dir.as_path()], 64, &[issuer.agora_id()]);
    let a = gateway_in(
        &a_dir,
        &format!("{trust}\n[approvals]\ntimeout = \"6s\"\nwebhook = \"{hook_url}\"\n"),
        Some(&committee),
    );
    committee.start_extra(&a.tcp_addr());
    let c = provider_configured(
        &tmp.path().join("c"),
        &a.tcp_addr(),
        "sandbox",
        trust,
        "",
        &committee.config_line(),
    );
    leftovers.add(cgroup_parent(&c));
    committee.wait_connected(&[&a, &c]);
    let agent = Agent::sign_up_with(home, &a, &["--credential", cred.to_str().unwrap()]);
    let credited = quota_account(&a, &agent.id().to_string());
    assert_eq!(credited.credited_micro, 1_000_000, "{credited:?}");
    quoted(&a, &c.id);
    // 10,000 micro-credits a second for 2 minutes: 1.2 credits, above the one credited.
    let over = ["--max-price", "10000", "--lifetime", "2m"];

    // 1. `agent run` waits while the owner approves; then it has its lease.
    let runner = agora(home)
        .args(["--json", "agent", "run", "--node"])
        .arg(format!("http://{}", a.http))
        .arg("--key")
        .arg(&agent.key)
        .args(over)
        .args(["--", "sleep", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = owned
        .first_waiting(&a)
        .expect("the request waits for the owner");
    let id = waiting["id"].as_str().unwrap().to_owned();
    assert_eq!(waiting["owner"], owner.agora_id().to_string().as_str());
    assert_eq!(waiting["agent"], agent.id().to_string().as_str());
    assert_eq!(waiting["state"], "pending");
    // The committee, not a provider, asked: the agent's lock waits beside the request.
    assert!(waiting.get("refusal").is_none(), "{waiting}");
    assert!(
        waiting["why"].as_str().unwrap().contains("available"),
        "{waiting}"
    );
    assert_eq!(waiting["max_cost_micro"], 1_200_000);
    // The owner's webhook heard of it.
    let event = hooked.join().unwrap();
    assert_eq!(event["event"], "approval_requested");
    assert_eq!(event["approval"]["id"], id.as_str());

    // Another key's approval is refused, and the request still waits.
    let approve = |key: &Path, id: &str| owned.approve(&a, key, id);
    let out = approve(&stranger_key, &id);
    assert!(!out.status.success());
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["code"], "approval_invalid", "{v}");
    owned.owner_approves(&a, &id[..10]);
    let done = runner.wait_with_output().unwrap();
    assert!(done.status.success(), "agent run: {}", stderr(&done));
    let run: Value = serde_json::from_str(&stdout(&done)).unwrap();
    assert_eq!(run["verified"], true, "{run}");
    assert_eq!(run["lease"]["lease"], id.as_str());
    assert_eq!(run["lease"]["provider"], c.id.as_str());
    let (status, v) = send(a.http, "GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    // The lock was certified under the owner's approval: it holds outside the balance.
    let account = quota_account(&a, &agent.id().to_string());
    let lock = account.locks.iter().find(|l| l.lease == id).unwrap();
    assert!(lock.approved, "{account:?}");
    assert_eq!(lock.amount_micro, 1_200_000);
    assert_eq!(account.available_micro, 1_000_000, "{account:?}");
    // An extension whose top-up goes over the balance (enough seconds at the lease's
    // price) waits for the owner as well: the owner approves that top-up (not the lease
    // again), and the lease runs on.
    let before: Signed<LeaseGrant> = decode(run["lease"]["grant"].as_str().unwrap());
    let secs = 1_000_000 / before.body().price_per_sec + 60;
    let after = owned.extend_approved(&a, &agent, &id, secs, |waiting| {
        assert_ne!(waiting["id"], id.as_str());
        assert!(waiting["top_up"].is_string(), "{waiting}");
        // Nobody else's approval is one.
        let out = approve(&stranger_key, waiting["id"].as_str().unwrap());
        assert!(!out.status.success());
    });
    assert_eq!(
        after.body().expires_at,
        before
            .body()
            .expires_at
            .saturating_add(Duration::from_secs(secs))
    );
    assert_eq!(after.body().owner, Some(owner.agora_id()));
    // Both the lock and the top-up are the owner's: the agent's credit is untouched.
    let account = quota_account(&a, &agent.id().to_string());
    let held: Vec<_> = account.locks.iter().filter(|l| l.lease == id).collect();
    assert_eq!(held.len(), 2, "{account:?}");
    assert!(held.iter().all(|l| l.approved), "{account:?}");
    assert_eq!(account.available_micro, 1_000_000, "{account:?}");

    // Stopped, it is settled against the approval: the owner pays, the credit stays.
    std::thread::sleep(Duration::from_secs(2));
    let (ok, stop, err) = agent.cli(&a, &["stop", &id]);
    assert!(ok, "stop: {err}");
    let cost = stop["lease"]["receipt"]["total_micro"].as_u64().unwrap();
    assert!(cost > 0, "{stop}");
    let settled = wait_for(WAIT, || {
        let account = quota_account(&a, &agent.id().to_string());
        account.locks.is_empty().then_some(account)
    })
    .expect("the approved lock is settled");
    assert_eq!(settled.approved_spent_micro, cost, "{settled:?}");
    assert_eq!(settled.spent_micro, 0, "{settled:?}");
    assert_eq!(settled.available_micro, 1_000_000, "{settled:?}");

    // 2. Unanswered, a request expires with reason approval_timeout.
    let mut late_run = vec!["run", "--no-wait"];
    late_run.extend(over);
    late_run.extend(["--", "true"]);
    let (ok, pending, err) = agent.cli(&a, &late_run);
    assert!(!ok, "--no-wait exits 4 while the request waits: {err}");
    let late = pending["approval"]["id"].as_str().unwrap().to_owned();
    let expired = wait_for(Duration::from_secs(20), || {
        let (_, v) = send(a.http, "GET", &format!("/v1/approvals/{late}"), None);
        (v["state"] == "expired").then_some(v)
    })
    .expect("the request expires after 6 s");
    assert_eq!(expired["reason"], "approval_timeout");
    let out = approve(owner_key, &late);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["code"], "approval_timeout", "{v}");
}

#[test]
fn an_extension_over_the_spending_limit_waits_for_its_owner() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut leftovers = Leftovers::new(tmp.path());
    let owned = OwnedAgent::new(&tmp.path().join("agent"));
    let (home, trust, cred) = (&owned.home, &owned.trust, &owned.cred);
    // No quota committee: the provider's own quota book holds the limit.
    let a = gateway_in(
        &tmp.path().join("a"),
        &format!("{trust}\n[approvals]\ntimeout = \"30s\"\n"),
        None,
    );
    let c = provider_configured(
        &tmp.path().join("c"),
        &a.tcp_addr(),
        "sandbox",
        trust,
        "",
        "",
    );
    leftovers.add(cgroup_parent(&c));
    let agent = Agent::sign_up_with(home, &a, &["--credential", cred.to_str().unwrap()]);
    quoted(&a, &c.id);
    let (ok, run, err) = agent.cli(&a, &["run", "--lifetime", "1m", "--", "sleep", "120"]);
    assert!(ok, "agent run: {err}");
    let id = run["lease"]["lease"].as_str().unwrap().to_owned();
    let grant: Signed<LeaseGrant> = decode(run["lease"]["grant"].as_str().unwrap());
    assert_eq!(grant.body().owner, Some(owned.owner.agora_id()));
    // Enough seconds at the lease's price to go over the one credit.
    let g = grant.body();
    let secs = (1_000_000 - g.reserved_micro) / g.price_per_sec + 1;

    // Without the owner the extension waits (202); `--no-wait` says so and exits 4.
    let (ok, pending, err) = agent.cli(&a, &["extend", "--no-wait", &id, &secs.to_string()]);
    assert!(!ok, "--no-wait exits 4 while the extension waits: {err}");
    let waiting = &pending["approval"];
    assert_eq!(waiting["kind"], "extension", "{pending}");
    assert_eq!(waiting["lease"], id.as_str());
    assert_eq!(waiting["extend_secs"], secs);
    assert_eq!(
        waiting["owner"],
        owned.owner.agora_id().to_string().as_str()
    );
    assert_eq!(waiting["max_cost_micro"], g.price_per_sec * secs);
    assert!(waiting.get("top_up").is_none(), "{waiting}");
    let ext_id = waiting["id"].as_str().unwrap();
    // The owner's listing says what is asked.
    let out = agora(home)
        .args(["approvals", "list", "--owner-key"])
        .arg(&owned.owner_key)
        .arg("--node")
        .arg(format!("http://{}", a.http))
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains(&format!("extend {id} by {secs} s")),
        "{}",
        stdout(&out)
    );
    owned.owner_approves(&a, ext_id);
    let (status, v) = send(a.http, "GET", &format!("/v1/approvals/{ext_id}"), None);
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("approved")),
        "{v}"
    );
    // The lease runs on, extended: the provider's re-signed grant says so.
    let (status, view) = send(a.http, "GET", &format!("/v1/leases/{id}"), None);
    assert_eq!(status, 200, "{view}");
    let after: Signed<LeaseGrant> = decode(view["grant"].as_str().unwrap());
    assert_eq!(
        after.body().expires_at,
        g.expires_at.saturating_add(Duration::from_secs(secs))
    );
    // Approved once: the owner's approval cannot be used again.
    let out = owned.approve(&a, &owned.owner_key, ext_id);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["code"], "not_pending", "{v}");
    let (ok, _, err) = agent.cli(&a, &["stop", &id]);
    assert!(ok, "stop: {err}");
}
