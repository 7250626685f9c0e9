//! `agora agent signup`: fetch the node's challenge, solve the proof of work when
//! unattested, sign, post, print the account and keep the signup record.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agora_attest::{Identity, keyfile};
use agora_node::agent::{Account, IssuedChallenge};
use agora_protocol::Credential;
use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::json;

use crate::cli::http_client::{ApiFailure, DEFAULT_NODE, NodeClient};
use crate::cli::{EXIT_REJECTED, GlobalArgs, default_key_path, print_json};

/// Largest credential file read.
const MAX_CREDENTIAL_FILE: u64 = 256 * 1024;

#[derive(Debug, Args)]
pub(crate) struct SignupArgs {
    /// The node's HTTP API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// The agent's key file, created when missing (default: $AGORA_KEY, else
    /// ~/.agora/identity.key).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A credential about this key (one base64url line, as `agora attest issue` writes);
    /// without one you get the contained tier and solve a small proof of work.
    #[arg(long, value_name = "FILE")]
    credential: Option<PathBuf>,
    /// A display name for operators (at most 64 bytes).
    #[arg(long)]
    name: Option<String>,
}

pub(crate) use agora_node::agent::record_file::path_for as record_path;

pub(super) fn run(args: &SignupArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let key_path = match &args.key {
        Some(k) => k.clone(),
        None => default_key_path()?,
    };
    let identity = load_or_create_key(&key_path)?;
    let credential = args
        .credential
        .as_deref()
        .map(|p| read_credential(p, &identity))
        .transpose()?;
    let client = NodeClient::new(&args.node)?;
    let issued: IssuedChallenge =
        serde_json::from_value(client.get_json("/v1/signup/challenge", &[])?)
            .context("the node's challenge is not in the expected form")?;
    let record = with_spinner(credential.is_none().then_some(issued.pow_bits), || {
        agora_node::agent::request::signup_record(
            &identity,
            &issued,
            credential.clone(),
            args.name.clone(),
        )
    })
    .context("cannot build the signup record")?;
    let body = json!({ "record": URL_SAFE_NO_PAD.encode(record.as_bytes()) });
    let answer = match client.post_json("/v1/signup", &body) {
        Ok(a) => a,
        Err(e) => {
            if let Some(f) = e.downcast_ref::<ApiFailure>()
                && f.code == "untrusted"
            {
                eprintln!("error: signup refused: {f}");
                return Ok(ExitCode::from(EXIT_REJECTED));
            }
            return Err(e.context(format!("signup at {} refused", args.node)));
        }
    };
    let account: Account =
        serde_json::from_value(answer.get("account").cloned().unwrap_or_default())
            .context("the node's account answer is not in the expected form")?;
    let saved = record_path(&key_path);
    agora_node::agent::record_file::save(&saved, &account.signup_record)
        .with_context(|| format!("saving the signup record to {}", saved.display()))?;
    // Where the network has a quota committee: the attestation's spending limit becomes
    // a credit, or the free tier a grant, each signed here and certified by the node.
    let quota = super::quota::claim(&client, &identity, credential)
        .context("signed up, but the quota committee did not take the credit")?;
    if global.json {
        print_json(&json!({
            "account": account,
            "signup_record": account.signup_record,
            "record_file": saved,
            "ledger_entry": answer.get("ledger_entry").cloned().unwrap_or_default(),
            "quota": quota.as_ref().and_then(|q| q.get("account")).cloned(),
        }))?;
    } else {
        print_account(&account, &saved);
    }
    Ok(ExitCode::SUCCESS)
}

fn load_or_create_key(path: &Path) -> anyhow::Result<Identity> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let (identity, created) = keyfile::load_or_create(path, &mut rand::rng())
        .with_context(|| format!("agent key {}", path.display()))?;
    if created {
        eprintln!(
            "created a new agent key {} ({})",
            path.display(),
            identity.agora_id()
        );
    }
    Ok(identity)
}

fn read_credential(path: &Path, identity: &Identity) -> anyhow::Result<Credential> {
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening credential file {}", path.display()))?
        .take(MAX_CREDENTIAL_FILE)
        .read_to_string(&mut text)
        .with_context(|| format!("reading credential file {}", path.display()))?;
    let credential = Credential::from_base64(text.trim()).with_context(|| {
        format!(
            "credential file {} is not a valid credential",
            path.display()
        )
    })?;
    if credential.holder() != identity.agora_id() {
        bail!(
            "credential file {} is about {}, not about this key ({})",
            path.display(),
            credential.holder(),
            identity.agora_id()
        );
    }
    Ok(credential)
}

/// Solves the proof of work, with a spinner when stderr is a terminal.
/// Runs `f` (the proof of work, when `bits` says there is one) under a spinner on a terminal.
fn with_spinner<T>(bits: Option<u8>, f: impl FnOnce() -> T) -> T {
    let spinner = bits
        .filter(|b| *b > 0 && std::io::stderr().is_terminal())
        .map(|bits| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message(format!("solving the signup proof of work ({bits} bits)…"));
            s.enable_steady_tick(std::time::Duration::from_millis(100));
            s
        });
    let out = f();
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    out
}

fn print_account(a: &Account, saved: &Path) {
    let t = &a.tier;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let egress = match (t.egress, &t.egress_ports) {
        (false, _) => "none".to_owned(),
        (true, None) => "any port but SMTP".to_owned(),
        (true, Some(p)) => format!(
            "ports {}",
            p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    let tier = match &a.claimed_tier {
        Some(claimed) => format!("{} (attested tier {claimed:?} is unknown here)", t.name),
        None => t.name.clone(),
    };
    let rows = [
        ("agent", a.agent.to_string()),
        ("name", or_dash(a.name.clone())),
        ("tier", tier),
        (
            "attested",
            match &a.root_name {
                Some(root) => format!("yes, by {root}"),
                None => "no".into(),
            },
        ),
        ("owner", or_dash(a.owner.map(|o| o.to_string()))),
        (
            "per lease",
            format!(
                "{} vCPU, {} MiB memory, {} MiB disk, {} max",
                f64::from(t.max_vcpu_milli) / 1000.0,
                t.max_memory_mib,
                t.max_disk_mib,
                humantime::format_duration(std::time::Duration::from_secs(t.max_lifetime_secs))
            ),
        ),
        ("concurrent", t.max_concurrent.to_string()),
        ("egress", egress),
        (
            "file transfer",
            format!("{} MiB", t.max_file_bytes / (1024 * 1024)),
        ),
        (
            "spending",
            format!("{} credits without approval", t.spending_limit_credits),
        ),
        (
            "valid until",
            or_dash(a.credential_expires_at.map(|e| e.to_string())),
        ),
        (
            "signed up",
            format!("{} at {}", a.signed_up_at, a.signup_node),
        ),
        ("record", saved.display().to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<14} {v}");
    }
}
