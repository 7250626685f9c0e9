//! The `agora` CLI round trip: identities, issue → verify → revoke → verify fails, and the
//! error surface (one clear line, right exit code, never a panic).

// Test code: failing loudly is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use agora_tests::{agora, stderr, stdout};
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn id_new_and_show() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("keys/node.key");
    let out = agora(home.path())
        .args(["id", "new", "--json", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let created = json(&out);
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("agora1"));
    assert!(created["peer_id"].as_str().unwrap().starts_with("12D3"));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = agora(home.path())
        .args(["id", "show", "--json", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = json(&out);
    assert_eq!(shown["id"], created["id"]);
    assert_eq!(shown["peer_id"], created["peer_id"]);
    // The secret never appears in the output.
    let secret_line = fs::read_to_string(&key).unwrap();
    let secret = secret_line
        .lines()
        .find_map(|l| l.strip_prefix("secret_key = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert!(!stdout(&out).contains(&secret) && !stderr(&out).contains(&secret));

    // Never overwrites.
    let out = agora(home.path())
        .args(["id", "new", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // The default key path comes from AGORA_KEY.
    let out = agora(home.path()).args(["id", "new"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(home.path().join("identity.key").exists());
}

#[test]
fn insecure_key_file_is_refused_with_one_line() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k.key");
    assert!(
        agora(home.path())
            .args(["id", "new", "--out"])
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let out = agora(home.path())
        .args(["id", "show", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn issue_verify_revoke_verify_fails() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let new_id = |name: &str| {
        let out = agora(dir)
            .args(["id", "new", "--json", "--out"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out)["id"].as_str().unwrap().to_owned()
    };
    let issuer = new_id("issuer.key");
    let agent = new_id("agent.key");
    let owner = new_id("owner.key");

    fs::write(
        dir.join("trust.toml"),
        format!(
            "revocation_files = [\"revoked.txt\"]\n\n[[root]]\nid = \"{issuer}\"\nname = \"Acme\"\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("revoked.txt"), "# revocations\n").unwrap();

    let out = agora(dir)
        .args(["attest", "issue", "--issuer-key"])
        .arg(dir.join("issuer.key"))
        .args([
            "--subject",
            &agent,
            "--tier",
            "standard",
            "--expires",
            "72h",
        ])
        .args([
            "--spending-limit",
            "5000",
            "--owner",
            &owner,
            "--may-delegate",
        ])
        .args(["--claim", "team=infra", "--model", "test-model"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let credential = stdout(&out);
    assert_eq!(credential.lines().count(), 1);
    fs::write(dir.join("agent.cred"), &credential).unwrap();

    // Valid, via text argument, @file and stdin.
    let out = agora(dir)
        .args(["attest", "verify", "--json", "--trust"])
        .arg(dir.join("trust.toml"))
        .arg(&credential)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["valid"], true);
    assert_eq!(v["claims"]["holder"], agent.as_str());
    assert_eq!(v["claims"]["tier"], "standard");
    assert_eq!(v["claims"]["spending_limit_credits"], 5000);
    assert_eq!(v["claims"]["owner"], owner.as_str());
    assert_eq!(v["claims"]["labels"]["team"], "infra");

    let out = agora(dir)
        .args(["attest", "verify", "--trust"])
        .arg(dir.join("trust.toml"))
        .arg(format!("@{}", dir.join("agent.cred").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("valid: "), "{}", stdout(&out));

    // The agent delegates to a sub-agent with a lower limit; the chain verifies.
    let sub = new_id("sub.key");
    let out = agora(dir)
        .args(["attest", "issue", "--issuer-key"])
        .arg(dir.join("agent.key"))
        .args(["--subject", &sub, "--tier", "standard", "--expires", "1h"])
        .args(["--spending-limit", "100", "--parent"])
        .arg(format!("@{}", dir.join("agent.cred").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sub_credential = stdout(&out);
    let mut child = agora(dir)
        .args(["attest", "verify", "--json", "--trust"])
        .arg(dir.join("trust.toml"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{sub_credential}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["claims"]["chain_len"], 2);
    assert_eq!(v["claims"]["spending_limit_credits"], 100);

    // Revoke the root link; both credentials now fail with the reason.
    let out = agora(dir)
        .args(["attest", "revoke", "--issuer-key"])
        .arg(dir.join("issuer.key"))
        .args(["--reason", "agent retired", "--out"])
        .arg(dir.join("revoked.txt"))
        .arg(&credential)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for cred in [&credential, &sub_credential] {
        let out = agora(dir)
            .args(["attest", "verify", "--trust"])
            .arg(dir.join("trust.toml"))
            .arg(cred)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("revoked") && err.contains("agent retired"),
            "{err}"
        );
    }

    // Someone who issued no link cannot revoke.
    let out = agora(dir)
        .args(["attest", "revoke", "--issuer-key"])
        .arg(dir.join("owner.key"))
        .arg(&credential)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("did not issue"), "{}", stderr(&out));
}

#[test]
fn rejections_have_specific_reasons() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    for name in ["issuer.key", "stranger.key", "agent.key"] {
        let out = agora(dir)
            .args(["id", "new", "--out"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let id_of = |name: &str| {
        let out = agora(dir)
            .args(["id", "show", "--json", "--key"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        json(&out)["id"].as_str().unwrap().to_owned()
    };
    let (issuer, agent) = (id_of("issuer.key"), id_of("agent.key"));
    fs::write(
        dir.join("trust.toml"),
        format!("[[root]]\nid = \"{issuer}\"\nname = \"Acme\"\n"),
    )
    .unwrap();
    let issue = |key: &str| {
        let out = agora(dir)
            .args(["attest", "issue", "--issuer-key"])
            .arg(dir.join(key))
            .args(["--subject", &agent, "--tier", "standard", "--expires", "1h"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let verify = |cred: &str| {
        agora(dir)
            .args(["attest", "verify", "--trust"])
            .arg(dir.join("trust.toml"))
            .arg(cred)
            .output()
            .unwrap()
    };

    let out = verify(&issue("stranger.key"));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("unknown issuer"), "{}", stderr(&out));

    // Tamper with one character in the middle: bad signature or malformed, never valid.
    let good = issue("issuer.key");
    let mut bytes = good.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let out = verify(&String::from_utf8(bytes).unwrap());
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("bad signature") || err.contains("malformed"),
        "{err}"
    );

    let out = verify("garbage!");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));

    // Bad CLI input: clear one-line errors.
    let out = agora(dir)
        .args(["attest", "issue", "--issuer-key"])
        .arg(dir.join("issuer.key"))
        .args([
            "--subject",
            "agora1nope",
            "--tier",
            "standard",
            "--expires",
            "1h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid agora id"),
        "{}",
        stderr(&out)
    );
    let out = agora(dir)
        .args(["attest", "issue", "--issuer-key"])
        .arg(dir.join("issuer.key"))
        .args([
            "--subject",
            &agent,
            "--tier",
            "Not A Token",
            "--expires",
            "1h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tier"), "{}", stderr(&out));
    let out = agora(dir)
        .args(["attest", "verify", "--trust"])
        .arg(dir.join("missing.toml"))
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}
