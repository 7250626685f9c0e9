//! `agora attest`: issue, verify and revoke attestations (credentials).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_attest::issue::{AttestationRequest, issue_credential, revoke};
use agora_attest::{TrustStore, keyfile, trust};
use agora_protocol::{AgoraId, Claims, Credential, Signed};
use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::json;

use super::{EXIT_REJECTED, GlobalArgs, now, print_json, read_text_arg};

#[derive(Debug, Subcommand)]
pub(super) enum AttestCommand {
    /// Sign an attestation about SUBJECT; prints the credential as one base64url line.
    Issue {
        /// The issuer's key file.
        #[arg(long, value_name = "FILE")]
        issuer_key: PathBuf,
        /// The subject's id (agora1…).
        #[arg(long, value_name = "ID")]
        subject: AgoraId,
        /// The tier granted (a-z, 0-9, `-_.`).
        #[arg(long)]
        tier: String,
        /// How long it is valid, e.g. `72h`, `30d`, `90m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
        /// Credits the subject may spend without the owner's approval.
        #[arg(long, default_value_t = 0)]
        spending_limit: u64,
        /// The owner's id, who approves spending above the limit.
        #[arg(long, value_name = "ID")]
        owner: Option<AgoraId>,
        /// Allow the subject to delegate (issue attestations to others under this one).
        #[arg(long)]
        may_delegate: bool,
        /// The operator or organisation.
        #[arg(long)]
        organisation: Option<String>,
        /// The subject's model or runtime name.
        #[arg(long)]
        model: Option<String>,
        /// A free-form label (repeatable).
        #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim)]
        claims: Vec<(String, String)>,
        /// Delegate: extend this credential (about the issuer) instead of issuing directly.
        /// Text, `@FILE` or `-` for stdin.
        #[arg(long, value_name = "CREDENTIAL")]
        parent: Option<String>,
        /// Write the credential to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check a credential against trust roots; exit 0 if valid, 3 with the reason if not.
    Verify {
        /// Trust configuration (TOML: roots, limits, revocation files).
        #[arg(long, value_name = "FILE")]
        trust: PathBuf,
        /// Extra revocation list files (one base64url revocation per line; repeatable).
        #[arg(long, value_name = "FILE")]
        revocations: Vec<PathBuf>,
        /// The credential: text, `@FILE` or `-` for stdin.
        credential: String,
    },
    /// Revoke a link of a credential that you issued; prints the revocation line.
    Revoke {
        /// The issuer's key file.
        #[arg(long, value_name = "FILE")]
        issuer_key: PathBuf,
        /// Why it is revoked.
        #[arg(long, default_value = "revoked by issuer")]
        reason: String,
        /// Append the revocation line to FILE (a revocation list) as well.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The credential: text, `@FILE` or `-` for stdin.
        credential: String,
    },
}

fn parse_claim(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_credential(text: &str) -> anyhow::Result<Credential> {
    Credential::from_base64(text).context("invalid credential")
}

pub(super) fn run(cmd: AttestCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Issue {
            issuer_key,
            subject,
            tier,
            expires,
            spending_limit,
            owner,
            may_delegate,
            organisation,
            model,
            claims,
            parent,
            out,
        } => {
            let issuer = keyfile::load(&issuer_key)?;
            let parent = parent
                .map(|p| parse_credential(&read_text_arg(&p, "parent credential")?))
                .transpose()?;
            let mut labels = BTreeMap::new();
            for (k, v) in claims {
                if labels.insert(k.clone(), v).is_some() {
                    bail!("--claim {k} given twice");
                }
            }
            let request = AttestationRequest {
                subject,
                claims: Claims {
                    organisation,
                    tier,
                    spending_limit_credits: spending_limit,
                    owner,
                    may_delegate,
                    model,
                    labels,
                },
                valid_for: expires,
            };
            let credential =
                issue_credential(&issuer, parent.as_ref(), request, now()?, &mut rand::rng())?;
            let text = credential.to_base64()?;
            let leaf = credential.leaf().body();
            tracing::info!(issuer = %leaf.issuer, subject = %leaf.subject, "issued attestation");
            if let Some(path) = &out {
                std::fs::write(path, format!("{text}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if global.json {
                print_json(&json!({
                    "credential": if out.is_none() { json!(text) } else { json!(null) },
                    "file": out.as_ref().map(|p| p.display().to_string()),
                    "issuer": leaf.issuer.to_string(),
                    "subject": leaf.subject.to_string(),
                    "tier": leaf.claims.tier,
                    "expires_at": leaf.expires_at.as_unix_millis(),
                    "chain_len": credential.len(),
                    "digest": credential.leaf().digest().to_string(),
                }))?;
            } else if out.is_none() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Verify {
            trust: trust_file,
            revocations,
            credential,
        } => {
            let mut store = TrustStore::load(&trust_file)?;
            for file in &revocations {
                for r in trust::load_revocations(file)? {
                    store.add_revocation(r);
                }
            }
            let text = read_text_arg(&credential, "credential")?;
            match store.verify_base64(&text, now()?) {
                Ok(claims) => {
                    if global.json {
                        print_json(&json!({ "valid": true, "claims": claims }))?;
                    } else {
                        println!(
                            "valid: {} holds tier {:?} from {} ({}), spending limit {}, expires {}",
                            claims.holder,
                            claims.tier,
                            claims.root_name,
                            claims.root,
                            claims.spending_limit_credits,
                            claims.expires_at
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(reason) => {
                    if global.json {
                        print_json(&json!({ "valid": false, "reason": reason.to_string() }))?;
                    }
                    eprintln!("error: credential rejected: {reason}");
                    Ok(ExitCode::from(EXIT_REJECTED))
                }
            }
        }
        AttestCommand::Revoke {
            issuer_key,
            reason,
            out,
            credential,
        } => {
            let issuer = keyfile::load(&issuer_key)?;
            let credential = parse_credential(&read_text_arg(&credential, "credential")?)?;
            let me = issuer.agora_id();
            let Some(link) = credential.chain().find(|l| l.body().issuer == me) else {
                bail!(
                    "{me} did not issue any link of this credential; only its issuer can revoke it"
                );
            };
            let revocation = revoke(&issuer, link, &reason, now()?)?;
            let line = revocation.to_base64();
            if let Some(path) = &out {
                append_line(path, &line)?;
            }
            print_revocation(&revocation, &line, global)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("appending to {}", path.display()))
}

fn print_revocation(
    r: &Signed<agora_protocol::Revocation>,
    line: &str,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if global.json {
        print_json(&json!({
            "revocation": line,
            "issuer": r.body().issuer.to_string(),
            "subject": r.body().subject.to_string(),
            "attestation": r.body().attestation.to_string(),
        }))
    } else {
        println!("{line}");
        Ok(())
    }
}
