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
use agora_protocol::{
    AgoraId, Attestation, Challenge, ChallengeResponse, Claims, Credential, Revocation, Signed,
    Signer, Timestamp,
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
