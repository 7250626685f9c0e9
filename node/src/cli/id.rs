//! `agora id`: create and show identities.

use std::path::PathBuf;
use std::process::ExitCode;

use agora_attest::{Identity, keyfile};
use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use super::{GlobalArgs, default_key_path, print_json};

#[derive(Debug, Subcommand)]
pub(super) enum IdCommand {
    /// Create a new identity key file (mode 0600; never overwrites).
    New {
        /// Where to write the key (default: $AGORA_KEY or ~/.agora/identity.key).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the public id and libp2p peer id of a key file.
    Show {
        /// The key file (default: $AGORA_KEY or ~/.agora/identity.key).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

pub(super) fn run(cmd: IdCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        IdCommand::New { out } => {
            let path = match out {
                Some(p) => p,
                None => default_key_path()?,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating directory {}", dir.display()))?;
            }
            let identity = Identity::generate(&mut rand::rng());
            keyfile::save(&path, &identity)?;
            tracing::info!(id = %identity.agora_id(), path = %path.display(), "created identity");
            show(&identity, Some(&path), global)
        }
        IdCommand::Show { key } => {
            let path = match key {
                Some(p) => p,
                None => default_key_path()?,
            };
            let identity = keyfile::load(&path)?;
            show(&identity, None, global)
        }
    }
}

fn show(
    identity: &Identity,
    written: Option<&std::path::Path>,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    if global.json {
        let mut value = json!({
            "id": identity.agora_id().to_string(),
            "peer_id": identity.peer_id().to_string(),
        });
        if let (Some(path), Some(obj)) = (written, value.as_object_mut()) {
            obj.insert("key_file".into(), json!(path.display().to_string()));
        }
        print_json(&value)?;
    } else {
        println!("id:      {}", identity.agora_id());
        println!("peer_id: {}", identity.peer_id());
        if let Some(path) = written {
            println!("key:     {} (mode 0600; keep it secret)", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
