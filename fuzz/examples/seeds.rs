//! Seed generator: writes validly signed messages (fixed keys `[n; 32]`) into each target's
//! corpus directory, so the fuzzer starts past the signature check it could never forge.
//!
//! `cargo run --example seeds [CORPUS_DIR]` (default: this crate's `corpus/`). Every seed
//! is checked with the target's own check first and must be accepted. Files are named
//! `seed-<what>`; re-running overwrites them, and `cargo fuzz cmin` later renames the
//! survivors to their SHA-1.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use agora_fuzz::{TARGETS, Verdict};
use agora_protocol::gossip::{GossipMessage, SyncRequest, SyncResponse};
use agora_protocol::offer::{
    Capacity, Gpu, ImageRef, Isolation, NetworkPolicy, Prices, RuntimeOffer,
};
use agora_protocol::{
    AgoraId, Attestation, Challenge, ChallengeResponse, Claims, Credential, Digest, Offer,
    OfferWithdrawal, Revocation, Signed, Signer, Timestamp,
};
use ed25519_dalek::SigningKey;

type Res<T> = Result<T, Box<dyn Error>>;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn id(n: u8) -> AgoraId {
    key(n).id()
}

fn claims(variant: u8) -> Claims {
    match variant {
        // Minimal: every optional field empty.
        0 => Claims {
            organisation: None,
            tier: "a".into(),
            spending_limit_credits: 0,
            owner: None,
            may_delegate: false,
            model: None,
            labels: BTreeMap::new(),
        },
        // Typical.
        1 => Claims {
            organisation: Some("Acme".into()),
            tier: "standard".into(),
            spending_limit_credits: 1000,
            owner: Some(id(9)),
            may_delegate: true,
            model: Some("gpt-x".into()),
            labels: BTreeMap::from([("team".into(), "infra".into())]),
        },
        // Every bound at its limit.
        _ => Claims {
            organisation: Some("O".repeat(128)),
            tier: "t".repeat(32),
            spending_limit_credits: u64::MAX,
            owner: Some(id(10)),
            may_delegate: true,
            model: Some("é".repeat(64)),
            labels: (0..32)
                .map(|i| (format!("k{i:02}-{}", "x".repeat(20)), "v".repeat(40)))
                .collect(),
        },
    }
}

fn attestation(issuer: u8, subject: u8, variant: u8) -> Attestation {
    let (issued, nb, exp) = match variant {
        0 => (0, 0, 1),
        1 => (1_700_000_000_000, 1_700_000_000_000, 1_800_000_000_000),
        _ => (u64::MAX - 1, 5, u64::MAX),
    };
    Attestation {
        issuer: id(issuer),
        subject: id(subject),
        claims: claims(variant),
        issued_at: Timestamp::from_unix_millis(issued),
        not_before: Timestamp::from_unix_millis(nb),
        expires_at: Timestamp::from_unix_millis(exp),
        nonce: [issuer ^ subject ^ variant; 16],
    }
}

fn signed_att(issuer: u8, subject: u8, variant: u8) -> Res<Signed<Attestation>> {
    Ok(Signed::sign(
        attestation(issuer, subject, variant),
        &key(issuer),
    )?)
}

fn revocation(issuer: u8, subject: u8, reason: &str, at: u64) -> Res<Signed<Revocation>> {
    let att = signed_att(issuer, subject, 1)?;
    Ok(Signed::sign(
        Revocation {
            issuer: id(issuer),
            subject: id(subject),
            attestation: att.digest(),
            revoked_at: Timestamp::from_unix_millis(at),
            reason: reason.into(),
        },
        &key(issuer),
    )?)
}

fn response(verifier: u8, subject: u8, at: u64) -> Res<Signed<ChallengeResponse>> {
    Ok(Signed::sign(
        ChallengeResponse {
            challenge: Challenge {
                verifier: id(verifier),
                nonce: [verifier.wrapping_mul(31) ^ subject; 32],
                issued_at: Timestamp::from_unix_millis(at),
            },
            subject: id(subject),
        },
        &key(subject),
    )?)
}

/// A typical offer by key `n`: the protocol's shared sample, [`Offer::example`].
fn offer(n: u8, seq: u64, issued_s: u64) -> Offer {
    Offer::example(id(n), seq, Timestamp::from_unix_secs(issued_s))
}

/// The smallest valid offer: one runtime, nothing else, a 1 ms lifetime.
fn offer_min(n: u8) -> Offer {
    Offer {
        provider: id(n),
        seq: 0,
        issued_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(1),
        runtimes: vec![RuntimeOffer {
            isolation: Isolation::Microvm,
            images: vec![],
        }],
        capacity: Capacity::default(),
        prices: Prices::default(),
        max_lease_secs: 0,
        network: NetworkPolicy::default(),
        tiers: vec![],
        region: "r".into(),
        labels: BTreeMap::new(),
        tunnel_endpoints: vec![],
    }
}

/// Every count at its bound (3 runtimes × 16 images, 4 GPUs, 64 blocked ports, 8 tiers,
/// 16 labels, 4 endpoints), integers at their maxima and a 15-minute lifetime; strings are
/// kept short enough for the payload to fit its limit.
fn offer_max(n: u8) -> Offer {
    let images = |tag: &str| -> Vec<ImageRef> {
        (0..16)
            .map(|i| {
                let name = format!("{tag}{i:02}");
                ImageRef {
                    digest: Digest::of(name.as_bytes()),
                    name,
                }
            })
            .collect()
    };
    Offer {
        provider: id(n),
        seq: u64::MAX,
        issued_at: Timestamp::from_unix_secs(1_700_000_000),
        expires_at: Timestamp::from_unix_secs(1_700_000_000 + 15 * 60),
        runtimes: vec![
            RuntimeOffer {
                isolation: Isolation::Sandbox,
                images: images("s"),
            },
            RuntimeOffer {
                isolation: Isolation::Docker,
                images: images("d"),
            },
            RuntimeOffer {
                isolation: Isolation::Microvm,
                images: images("m"),
            },
        ],
        capacity: Capacity {
            vcpu_milli: u32::MAX,
            memory_mib: u64::MAX,
            disk_mib: u64::MAX,
            gpus: (0..4)
                .map(|i| Gpu {
                    model: format!("gpu-{i}"),
                    count: u32::MAX,
                })
                .collect(),
        },
        prices: Prices {
            vcpu: u64::MAX,
            memory_gib: u64::MAX,
            disk_gib: u64::MAX,
            gpu: u64::MAX,
        },
        max_lease_secs: u64::MAX,
        network: NetworkPolicy {
            egress: false,
            blocked_ports: (0..64).map(|i| u16::MAX - i).collect(),
        },
        tiers: (0..8).map(|i| format!("t{i}")).collect(),
        region: "r".repeat(32),
        labels: (0..16)
            .map(|i| (format!("k{i:02}"), "v".repeat(72)))
            .collect(),
        tunnel_endpoints: vec![
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".into(),
            "255.255.255.255:65535".into(),
            "[::1]:1".into(),
            "10.0.0.1:7001".into(),
        ],
    }
}

fn withdrawal(n: u8, seq: u64, at: u64) -> Res<Signed<OfferWithdrawal>> {
    Ok(Signed::sign(
        OfferWithdrawal {
            provider: id(n),
            seq,
            issued_at: Timestamp::from_unix_millis(at),
        },
        &key(n),
    )?)
}

/// A chain root=1 → 2 → 3 → … of `links` links (key n issues to key n+1).
fn chain(links: u8, variant: u8) -> Res<Credential> {
    let mut cred = Credential::single(signed_att(1, 2, variant)?);
    for n in 2..=links {
        cred = cred.delegate(signed_att(n, n + 1, variant)?)?;
    }
    Ok(cred)
}

struct Writer {
    root: PathBuf,
    count: usize,
}

impl Writer {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> Res<()> {
        let check = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, c)| *c)
            .ok_or_else(|| format!("unknown target {target}"))?;
        match check(bytes) {
            Ok(Verdict::Accepted) => {}
            other => return Err(format!("seed {target}/{name} not accepted: {other:?}").into()),
        }
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        self.count += 1;
        Ok(())
    }
}

fn main() -> Res<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut w = Writer { root, count: 0 };

    for v in 0..3 {
        let a = signed_att(1, 2, v)?;
        w.put("signed_attestation", &format!("v{v}"), a.as_bytes())?;
    }
    w.put(
        "signed_attestation",
        "issuer7",
        signed_att(7, 3, 1)?.as_bytes(),
    )?;

    for (i, (reason, at)) in [("", 0), ("key compromised", 1_750_000_000_000)]
        .into_iter()
        .enumerate()
    {
        let r = revocation(1, 2, reason, at)?;
        w.put("signed_revocation", &format!("r{i}"), r.as_bytes())?;
    }
    let long = revocation(4, 5, &"ü".repeat(128), u64::MAX)?;
    w.put("signed_revocation", "max", long.as_bytes())?;

    for (i, (verifier, subject, at)) in [(1, 2, 0), (3, 4, 1_700_000_000_123), (5, 6, u64::MAX)]
        .into_iter()
        .enumerate()
    {
        let r = response(verifier, subject, at)?;
        w.put("signed_challenge_response", &format!("c{i}"), r.as_bytes())?;
    }

    for (name, o, n) in [
        ("typical", offer(1, 1, 1000), 1),
        ("typical-k7", offer(7, 42, 1_700_000_000), 7),
        ("min", offer_min(2), 2),
        ("max", offer_max(3), 3),
    ] {
        let signed = Signed::sign(o, &key(n))?;
        eprintln!("signed_offer/{name}: {} bytes", signed.as_bytes().len());
        w.put("signed_offer", name, signed.as_bytes())?;
        let gossip = GossipMessage::Offer(signed.clone()).encode();
        w.put("gossip_message", &format!("offer-{name}"), &gossip)?;
        let page = SyncResponse {
            offers: vec![signed.as_bytes().to_vec(); 2],
            withdrawals: vec![withdrawal(n, 1, 1000)?.as_bytes().to_vec()],
            next: Some(key(n).id()),
        };
        w.put("sync_response", name, &page.encode()?)?;
    }
    let empty = SyncResponse {
        offers: Vec::new(),
        withdrawals: Vec::new(),
        next: None,
    };
    w.put("sync_response", "empty", &empty.encode()?)?;
    for (name, req) in [
        (
            "first",
            SyncRequest {
                after: None,
                limit: 64,
                digest: None,
            },
        ),
        (
            "next",
            SyncRequest {
                after: Some(key(3).id()),
                limit: 64,
                digest: Some(Digest::of(b"book")),
            },
        ),
    ] {
        w.put("sync_request", name, &req.encode()?)?;
    }

    for (i, (n, seq, at)) in [
        (1, 0, 0),
        (4, 17, 1_700_000_000_000),
        (5, u64::MAX, u64::MAX),
    ]
    .into_iter()
    .enumerate()
    {
        let wd = withdrawal(n, seq, at)?;
        w.put("signed_offer_withdrawal", &format!("w{i}"), wd.as_bytes())?;
        let gossip = GossipMessage::Withdrawal(wd).encode();
        w.put("gossip_message", &format!("withdrawal-{i}"), &gossip)?;
    }

    for (links, v) in [(1, 0), (1, 1), (2, 1), (3, 0), (8, 1)] {
        let c = chain(links, v)?;
        w.put("credential", &format!("len{links}-v{v}"), &c.to_bytes()?)?;
    }
    w.put("credential", "len2-max", &chain(2, 2)?.to_bytes()?)?;

    for n in [1, 2, 200] {
        let s = id(n).to_string();
        w.put("agora_id", &format!("id{n}"), s.as_bytes())?;
        w.put(
            "agora_id",
            &format!("id{n}-upper"),
            s.to_uppercase().as_bytes(),
        )?;
    }
    w.put("agora_id", "spaced", format!(" \t{}\n", id(3)).as_bytes())?;

    let cred = chain(2, 1)?.to_base64()?;
    w.put("base64_text", "credential", cred.as_bytes())?;
    w.put(
        "base64_text",
        "credential-short",
        chain(1, 0)?.to_base64()?.as_bytes(),
    )?;
    let rev = revocation(1, 2, "superseded", 42)?.to_base64();
    w.put("base64_text", "revocation", rev.as_bytes())?;
    w.put(
        "base64_text",
        "revocation-padded",
        format!("  {rev}==\n").as_bytes(),
    )?;

    println!("wrote {} seeds under {}", w.count, w.root.display());
    Ok(())
}
