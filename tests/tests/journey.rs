//! The agent's journey, part one: signup over HTTP at real `agora node` processes.
//!
//! - an unattested agent signs up with the CLI (proof of work solved, record saved) and
//!   its account is served; signing up again replaces it;
//! - an attested agent (issuer key made here, written into the node's `[trust]`) gets its
//!   tier; expired, revoked (revocation list reloaded on SIGHUP) and unknown-issuer
//!   attestations are refused with `untrusted` (CLI exit code 3);
//! - replayed, foreign, made-up challenges, forged signatures and missing proof of work are
//!   refused with their codes;
//! - malformed bodies on every new endpoint get JSON errors;
//! - a signup flood from several 127.0.0.x addresses hits the per-address and per-prefix
//!   limits (429 with `Retry-After`), while another /24 still signs up.

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agora_attest::issue::{AttestationRequest, issue_credential, revoke};
use agora_attest::{Identity, keyfile};
use agora_node::agent::IssuedChallenge;
use agora_protocol::signup::{ProofOfWork, SignupRecord};
use agora_protocol::{Challenge, Claims, Credential, Signed, Timestamp};
use agora_tests::node::{NodeProc, wait_for};
use agora_tests::{agora, stderr, stdout};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Proof-of-work bits the test nodes ask for: real work, but quick.
const POW_BITS: u8 = 8;

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap())
}

/// Starts a node in `dir` with `extra` appended to a config that turns signup's proof of
/// work down and its rate limits up.
fn start(dir: &Path, extra: &str) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    let text = format!(
        "[signup]\npow_bits = {POW_BITS}\nper_address = \"1000/min\"\nper_prefix = \"1000/min\"\n{extra}"
    );
    // A [signup] table in `extra` replaces the default one.
    let text = if extra.contains("[signup]") {
        extra.to_owned()
    } else {
        text
    };
    std::fs::write(&config, text).unwrap();
    NodeProc::start(dir, &["--config".to_owned(), config.display().to_string()])
}

/// One answer from the API.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

/// A small async client driven synchronously, optionally bound to a local address.
struct Api {
    rt: tokio::runtime::Runtime,
    base: String,
}

impl Api {
    fn new(node: &NodeProc) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self {
            rt,
            base: format!("http://{}", node.http),
        }
    }

    fn client(from: Option<IpAddr>) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(from)
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        self.rt.block_on(async {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header("content-type").unwrap_or_default();
            let retry_after = header("retry-after").and_then(|v| v.parse().ok());
            let text = resp.text().await.unwrap();
            let body = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("HTTP {status}: body is not JSON: {text:?}"));
            Answer {
                status,
                content_type,
                retry_after,
                body,
            }
        })
    }

    fn get_from(&self, path: &str, from: Option<IpAddr>) -> Answer {
        self.send(Self::client(from).get(format!("{}{path}", self.base)))
    }

    fn get(&self, path: &str) -> Answer {
        self.get_from(path, None)
    }

    fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut req = Self::client(None)
            .post(format!("{}{path}", self.base))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req)
    }

    fn signup_from(&self, record: &str, from: Option<IpAddr>) -> Answer {
        self.send(
            Self::client(from)
                .post(format!("{}/v1/signup", self.base))
                .json(&json!({ "record": record })),
        )
    }

    fn signup(&self, record: &str) -> Answer {
        self.signup_from(record, None)
    }

    /// A fresh challenge (from `from`), or the refusal.
    fn challenge_from(&self, from: Option<IpAddr>) -> Result<(Challenge, u8), Answer> {
        let a = self.get_from("/v1/signup/challenge", from);
        if a.status != 200 {
            return Err(a);
        }
        let issued: IssuedChallenge = serde_json::from_value(a.body).unwrap();
        Ok((issued.challenge().unwrap(), issued.pow_bits))
    }

    fn challenge(&self) -> (Challenge, u8) {
        self.challenge_from(None).unwrap()
    }
}

/// A signed signup record (base64url), with a proof of work of `bits`.
fn record(
    agent: &Identity,
    challenge: Challenge,
    credential: Option<Credential>,
    bits: u8,
) -> String {
    let pow = ProofOfWork::solve(&agent.agora_id(), &challenge, bits);
    let body = SignupRecord {
        agent: agent.agora_id(),
        challenge,
        credential,
        pow,
        name: Some("journey".into()),
    };
    URL_SAFE_NO_PAD.encode(Signed::sign(body, agent).unwrap().as_bytes())
}

fn credential(
    issuer: &Identity,
    agent: &Identity,
    tier: &str,
    issued_at: Timestamp,
    valid: Duration,
) -> Credential {
    let claims = Claims {
        organisation: Some("journey tests".into()),
        tier: tier.into(),
        spending_limit_credits: 250,
        owner: Some(Identity::generate(&mut rand::rng()).agora_id()),
        may_delegate: false,
        model: Some("test-model".into()),
        labels: Default::default(),
    };
    let request = AttestationRequest {
        subject: agent.agora_id(),
        claims,
        valid_for: valid,
    };
    issue_credential(issuer, None, request, issued_at, &mut rand::rng()).unwrap()
}

/// Runs `agora [--json] agent signup` for the key at `key`.
fn cli_signup(
    home: &Path,
    node: &NodeProc,
    key: &Path,
    extra: &[&str],
    json: bool,
) -> std::process::Output {
    let mut cmd = agora(home);
    if json {
        cmd.arg("--json");
    }
    cmd.args(["agent", "signup", "--node"])
        .arg(format!("http://{}", node.http))
        .arg("--key")
        .arg(key)
        .args(extra)
        .output()
        .unwrap()
}

fn signup_record_file(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.signup", key.display()))
}

#[test]
fn unattested_agent_signs_up_with_the_cli_and_its_account_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"), "");
    let api = Api::new(&node);
    let home = tmp.path().join("agent");
    std::fs::create_dir_all(&home).unwrap();
    let key = home.join("keys").join("agent.key");

    // The challenge says what an unattested signup needs.
    let c = api.get("/v1/signup/challenge");
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert_eq!(c.body["pow_bits"], POW_BITS);
    assert_eq!(c.body["verifier"], node.id.as_str());
    assert!(c.body["pow_algorithm"].as_str().unwrap().contains("sha256"));

    // The key file is created, the proof of work solved, the record saved beside the key.
    let out = cli_signup(&home, &node, &key, &["--name", "cli-agent"], true);
    assert!(out.status.success(), "{}\n{}", stderr(&out), node.log());
    assert!(
        stderr(&out).contains("created a new agent key"),
        "{}",
        stderr(&out)
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let agent = keyfile::load(&key).unwrap().agora_id().to_string();
    assert_eq!(v["account"]["agent"], agent.as_str());
    assert_eq!(v["account"]["tier"]["name"], "contained");
    assert_eq!(v["account"]["attested"], false);
    assert_eq!(v["account"]["name"], "cli-agent");
    assert_eq!(v["account"]["signup_node"], node.id.as_str());
    let saved = std::fs::read_to_string(signup_record_file(&key)).unwrap();
    assert_eq!(saved.trim(), v["signup_record"].as_str().unwrap());
    // The saved record is the agent's own signed statement, naming this node's challenge.
    let bytes = URL_SAFE_NO_PAD.decode(saved.trim()).unwrap();
    let rec = Signed::<SignupRecord>::decode(&bytes, &agora_protocol::Ed25519).unwrap();
    assert_eq!(rec.body().agent.to_string(), agent);
    assert!(
        rec.body()
            .pow
            .meets(&rec.body().agent, &rec.body().challenge, POW_BITS)
    );

    // The account is served.
    let a = api.get(&format!("/v1/accounts/{agent}"));
    assert_eq!(a.status, 200);
    assert_eq!(a.body, v["account"]);

    // Signing up again (human output) replaces it: a new record, same agent.
    let out = cli_signup(&home, &node, &key, &[], false);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("contained") && text.contains(&agent),
        "{text}"
    );
    assert!(text.contains("credits without approval"), "{text}");
    let again = api.get(&format!("/v1/accounts/{agent}"));
    assert_eq!(again.body["name"], Value::Null);
    assert_ne!(again.body["signup_record"], a.body["signup_record"]);
    let saved2 = std::fs::read_to_string(signup_record_file(&key)).unwrap();
    assert_eq!(saved2.trim(), again.body["signup_record"].as_str().unwrap());

    // Unknown and malformed agents.
    let stranger = Identity::generate(&mut rand::rng()).agora_id();
    let a = api.get(&format!("/v1/accounts/{stranger}"));
    assert_eq!((a.status, a.code()), (404, "unknown_account"));
    let a = api.get("/v1/accounts/agora1nothing");
    assert_eq!((a.status, a.code()), (400, "bad_agent"));
}

#[test]
fn attested_agents_get_their_tier_and_bad_attestations_are_untrusted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = Identity::generate(&mut rand::rng());
    let revoked_file = dir.join("revoked.txt");
    std::fs::write(&revoked_file, "# revocations\n").unwrap();
    let trust = format!(
        "[trust]\nrevocation_files = [\"revoked.txt\"]\n\n[[trust.root]]\nid = \"{}\"\nname = \"journey issuer\"\n\n[tiers.standard]\nmax_vcpu = 2.0\nmax_memory_mib = 4096\n",
        issuer.agora_id()
    );
    let node = start(&dir, &trust);
    let api = Api::new(&node);
    let home = tmp.path().join("agent");
    std::fs::create_dir_all(&home).unwrap();

    // A valid attestation: its tier and spending limit, no proof of work.
    let agent = Identity::generate(&mut rand::rng());
    let key = home.join("attested.key");
    keyfile::save(&key, &agent).unwrap();
    let good = credential(
        &issuer,
        &agent,
        "standard",
        now(),
        Duration::from_secs(3600),
    );
    let cred_file = home.join("attested.cred");
    std::fs::write(&cred_file, good.to_base64().unwrap()).unwrap();
    let out = cli_signup(
        &home,
        &node,
        &key,
        &["--credential", cred_file.to_str().unwrap()],
        true,
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), node.log());
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let acct = &v["account"];
    assert_eq!(acct["attested"], true);
    assert_eq!(acct["tier"]["name"], "standard");
    assert_eq!(acct["tier"]["max_vcpu_milli"], 2000);
    assert_eq!(acct["tier"]["max_memory_mib"], 4096);
    assert_eq!(acct["tier"]["spending_limit_credits"], 250);
    assert_eq!(acct["root"], issuer.agora_id().to_string().as_str());
    assert_eq!(acct["root_name"], "journey issuer");
    assert!(acct["owner"].is_string());
    let rec = std::fs::read_to_string(signup_record_file(&key)).unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(rec.trim()).unwrap();
    let rec = Signed::<SignupRecord>::decode(&bytes, &agora_protocol::Ed25519).unwrap();
    assert_eq!(rec.body().pow, ProofOfWork::NONE);
    assert!(rec.body().credential.is_some());

    // A tier this node does not define: contained limits, the claim kept.
    let gold_agent = Identity::generate(&mut rand::rng());
    let gold = credential(
        &issuer,
        &gold_agent,
        "gold",
        now(),
        Duration::from_secs(3600),
    );
    let a = api.signup(&record(&gold_agent, api.challenge().0, Some(gold), 0));
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["account"]["tier"]["name"], "contained");
    assert_eq!(a.body["account"]["claimed_tier"], "gold");
    assert_eq!(a.body["account"]["tier"]["spending_limit_credits"], 10);

    // Expired: through the CLI, refused with exit code 3.
    let late_agent = Identity::generate(&mut rand::rng());
    let late_key = home.join("late.key");
    keyfile::save(&late_key, &late_agent).unwrap();
    let two_hours_ago = Timestamp::from_unix_millis(now().as_unix_millis() - 2 * 3600 * 1000);
    let expired = credential(
        &issuer,
        &late_agent,
        "standard",
        two_hours_ago,
        Duration::from_secs(3600),
    );
    let late_file = home.join("late.cred");
    std::fs::write(&late_file, expired.to_base64().unwrap()).unwrap();
    let out = cli_signup(
        &home,
        &node,
        &late_key,
        &["--credential", late_file.to_str().unwrap()],
        false,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("untrusted") && stderr(&out).contains("expired"),
        "{}",
        stderr(&out)
    );
    assert!(!signup_record_file(&late_key).exists());
    // Over HTTP: 403 untrusted.
    let a = api.signup(&record(&late_agent, api.challenge().0, Some(expired), 0));
    assert_eq!((a.status, a.code()), (403, "untrusted"));
    assert!(a.message().contains("expired"), "{}", a.message());

    // Unknown issuer.
    let stranger = Identity::generate(&mut rand::rng());
    let foreign = credential(
        &stranger,
        &agent,
        "standard",
        now(),
        Duration::from_secs(3600),
    );
    let a = api.signup(&record(&agent, api.challenge().0, Some(foreign), 0));
    assert_eq!((a.status, a.code()), (403, "untrusted"));
    assert!(a.message().contains("unknown issuer"), "{}", a.message());

    // Revoked: the issuer revokes, the list is appended, SIGHUP reloads it.
    let revocation = revoke(&issuer, good.root(), "agent decommissioned", now()).unwrap();
    std::fs::write(
        &revoked_file,
        format!("# revocations\n{}\n", revocation.to_base64()),
    )
    .unwrap();
    node.signal("HUP");
    let refused = wait_for(Duration::from_secs(30), || {
        let a = api.signup(&record(&agent, api.challenge().0, Some(good.clone()), 0));
        (a.status == 403).then_some(a)
    })
    .unwrap_or_else(|| panic!("revocation not applied; log:\n{}", node.log()));
    assert_eq!(refused.code(), "untrusted");
    assert!(
        refused.message().contains("revoked") && refused.message().contains("agent decommissioned"),
        "{}",
        refused.message()
    );
    // The CLI says the same, exit code 3.
    let out = cli_signup(
        &home,
        &node,
        &key,
        &["--credential", cred_file.to_str().unwrap()],
        false,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
}

#[test]
fn replayed_foreign_made_up_and_forged_signups_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a_node = start(&tmp.path().join("a"), "");
    let b_node = start(&tmp.path().join("b"), "");
    let a = Api::new(&a_node);
    let b = Api::new(&b_node);
    let agent = Identity::generate(&mut rand::rng());

    // A signup, then the same record again.
    let (c, bits) = a.challenge();
    assert_eq!(bits, POW_BITS);
    let rec = record(&agent, c, None, bits);
    let ok = a.signup(&rec);
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["signup_record"], rec.as_str());
    let replay = a.signup(&rec);
    assert_eq!((replay.status, replay.code()), (409, "challenge_replayed"));

    // A challenge from node B is no good at node A.
    let (foreign, _) = b.challenge();
    let r = a.signup(&record(&agent, foreign, None, POW_BITS));
    assert_eq!((r.status, r.code()), (400, "challenge_wrong_node"));
    assert!(r.message().contains(&b_node.id), "{}", r.message());
    // ... but still good at B.
    let r = b.signup(&record(&agent, foreign, None, POW_BITS));
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A challenge node A never issued.
    let made_up = Challenge {
        verifier: a_node.id.parse().unwrap(),
        nonce: [7; 32],
        issued_at: now(),
    };
    let r = a.signup(&record(&agent, made_up, None, POW_BITS));
    assert_eq!((r.status, r.code()), (400, "challenge_unknown"));

    // A forged signature: one bit of the signature flipped.
    let (c, _) = a.challenge();
    let good = record(&agent, c, None, POW_BITS);
    let mut bytes = URL_SAFE_NO_PAD.decode(&good).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    let r = a.signup(&URL_SAFE_NO_PAD.encode(&bytes));
    assert_eq!((r.status, r.code()), (400, "invalid_record"));
    assert!(r.message().contains("signature"), "{}", r.message());
    // An impostor's record naming the agent cannot even be made: it must sign as itself.
    let impostor = Identity::generate(&mut rand::rng());
    let body = SignupRecord {
        agent: agent.agora_id(),
        challenge: c,
        credential: None,
        pow: ProofOfWork::NONE,
        name: None,
    };
    assert!(Signed::sign(body, &impostor).is_err());
    // The forgery did not burn the challenge: the genuine record still signs up.
    assert_eq!(a.signup(&good).status, 200);

    // No proof of work, then too little: the challenge is spent on the first attempt.
    let (c, _) = a.challenge();
    let r = a.signup(&record(&agent, c, None, 0));
    assert_eq!((r.status, r.code()), (403, "pow_required"));
    let r = a.signup(&record(&agent, c, None, POW_BITS));
    assert_eq!((r.status, r.code()), (409, "challenge_replayed"));
    let (c, _) = a.challenge();
    let r = a.signup(&record(&agent, c, None, POW_BITS - 4));
    assert_eq!((r.status, r.code()), (403, "pow_required"));
    assert!(
        r.message().contains(&format!("{POW_BITS} bits")),
        "{}",
        r.message()
    );
}

#[test]
fn malformed_bodies_on_every_new_endpoint_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"), "");
    let api = Api::new(&node);
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "not JSON",
            api.post_raw("/v1/signup", json_ct, b"{record:".to_vec()),
            400,
            "malformed_body",
        ),
        (
            "missing field",
            api.post_raw("/v1/signup", json_ct, b"{}".to_vec()),
            400,
            "malformed_body",
        ),
        (
            "unknown field",
            api.post_raw(
                "/v1/signup",
                json_ct,
                br#"{"record":"AQ","extra":1}"#.to_vec(),
            ),
            400,
            "malformed_body",
        ),
        (
            "wrong type",
            api.post_raw("/v1/signup", json_ct, br#"{"record":7}"#.to_vec()),
            400,
            "malformed_body",
        ),
        (
            "no content type",
            api.post_raw("/v1/signup", None, br#"{"record":"AQ"}"#.to_vec()),
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            api.post_raw(
                "/v1/signup",
                json_ct,
                format!("{{\"record\":\"{}\"}}", "A".repeat(256 * 1024)).into_bytes(),
            ),
            413,
            "body_too_large",
        ),
        (
            "not base64",
            api.post_raw("/v1/signup", json_ct, br#"{"record":"!!!"}"#.to_vec()),
            400,
            "invalid_record",
        ),
        (
            "not a record",
            api.post_raw("/v1/signup", json_ct, br#"{"record":"AQIDBA"}"#.to_vec()),
            400,
            "invalid_record",
        ),
        (
            "GET /v1/signup",
            api.get("/v1/signup"),
            405,
            "method_not_allowed",
        ),
        (
            "POST challenge",
            api.post_raw("/v1/signup/challenge", json_ct, b"{}".to_vec()),
            405,
            "method_not_allowed",
        ),
        (
            "POST account",
            api.post_raw("/v1/accounts/x", json_ct, b"{}".to_vec()),
            405,
            "method_not_allowed",
        ),
        (
            "bad agent id",
            api.get("/v1/accounts/not-an-id"),
            400,
            "bad_agent",
        ),
        (
            "bad percent-encoding",
            api.get("/v1/accounts/%FF%FE"),
            400,
            "bad_request",
        ),
        ("no such route", api.get("/v1/signups"), 404, "no_route"),
    ];
    for (what, a, status, code) in cases {
        assert_eq!((a.status, a.code()), (status, code), "{what}: {:?}", a.body);
        assert!(
            a.content_type.starts_with("application/json"),
            "{what}: {}",
            a.content_type
        );
        assert!(!a.message().is_empty(), "{what}: {:?}", a.body);
    }
    // The node is unharmed.
    let agent = Identity::generate(&mut rand::rng());
    let (c, bits) = api.challenge();
    assert_eq!(api.signup(&record(&agent, c, None, bits)).status, 200);
}

#[test]
fn a_signup_flood_from_many_addresses_hits_the_address_and_prefix_limits() {
    let tmp = tempfile::tempdir().unwrap();
    // Three per address and seven per /24, per hour: nothing refills during the test.
    let node = start(
        &tmp.path().join("node"),
        &format!("[signup]\npow_bits = {POW_BITS}\nper_address = \"3/h\"\nper_prefix = \"7/h\"\n"),
    );
    let api = Api::new(&node);
    let ip = |s: &str| -> Option<IpAddr> { Some(s.parse().unwrap()) };
    // A full signup (challenge, proof of work, post) from `from`.
    let sign_up = |from: Option<IpAddr>| -> Result<Answer, Answer> {
        let (c, bits) = api.challenge_from(from)?;
        assert_eq!(bits, POW_BITS);
        let agent = Identity::generate(&mut rand::rng());
        let a = api.signup_from(&record(&agent, c, None, bits), from);
        if a.status == 200 { Ok(a) } else { Err(a) }
    };
    let limited = |a: &Answer, scope: &str, what: &str| {
        assert_eq!(
            (a.status, a.code()),
            (429, "rate_limited"),
            "{what}: {:?}",
            a.body
        );
        assert!(a.message().contains(scope), "{what}: {}", a.message());
        assert!(
            a.retry_after.is_some_and(|s| s >= 1),
            "{what}: no Retry-After"
        );
    };

    // One address: three signups, then both endpoints refuse it.
    for i in 0..3 {
        sign_up(ip("127.0.0.2")).unwrap_or_else(|a| panic!("signup {i}: {:?}", a.body));
    }
    let a = api.challenge_from(ip("127.0.0.2")).unwrap_err();
    limited(&a, "address", "4th challenge from 127.0.0.2");
    assert_eq!(a.retry_after, Some(1200));
    // The signup endpoint is limited before it even reads the record.
    let a = api.signup_from("garbage", ip("127.0.0.2"));
    limited(&a, "address", "4th signup from 127.0.0.2");

    // Neighbours in the same /24 share seven.
    for i in 0..3 {
        sign_up(ip("127.0.0.3")).unwrap_or_else(|a| panic!("127.0.0.3 signup {i}: {:?}", a.body));
    }
    sign_up(ip("127.0.0.4")).unwrap();
    let a = sign_up(ip("127.0.0.4")).unwrap_err();
    limited(&a, "prefix", "8th signup from 127.0.0.0/24");
    assert!(a.message().contains("127.0.0.0"), "{}", a.message());
    let a = sign_up(ip("127.0.0.5")).unwrap_err();
    limited(&a, "prefix", "first signup from 127.0.0.5");

    // Another /24 is not affected, and its account is kept.
    let ok = sign_up(ip("127.0.1.9")).unwrap_or_else(|a| panic!("127.0.1.9: {:?}", a.body));
    let agent = ok.body["account"]["agent"].as_str().unwrap();
    assert_eq!(api.get(&format!("/v1/accounts/{agent}")).status, 200);
}
