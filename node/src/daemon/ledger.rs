//! Starts the node's ledger and feeds it what the node learns outside the lease and signup
//! paths: attestation revocations from the `[trust]` revocation lists, and the provider's
//! grants and final receipts that an append missed (a crash between the lease record and
//! the ledger, a refused append).

use core::time::Duration;
use std::sync::Arc;

use agora_attest::Identity;
use agora_protocol::ledger::{Config, Fact};
use tokio::sync::watch;
use tracing::{Instrument as _, debug, info, info_span, warn};

use super::DaemonError;
use crate::config::NodeConfig;
use crate::lease::Provider;
use crate::ledger::{Appended, Ledger};
use crate::metrics::NodeMetrics;
use crate::store::Store;

/// How often the provider's leases are checked against the ledger.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(30);

/// Opens the ledger from `store` (every entry re-verified).
///
/// # Errors
/// [`DaemonError::Ledger`] when the store cannot be read.
pub fn open(
    identity: &Arc<Identity>,
    store: Arc<dyn Store>,
    metrics: NodeMetrics,
) -> Result<Arc<Ledger>, DaemonError> {
    Ledger::open(
        identity.clone(),
        store,
        Config::default(),
        metrics,
        crate::clock::now(),
    )
    .map(Arc::new)
    .map_err(|e| DaemonError::Ledger(e.to_string()))
}

/// Appends `facts` the ledger does not record yet, on a blocking thread; returns how many
/// were new.
async fn append_missing(ledger: &Arc<Ledger>, facts: Vec<Fact>) -> Result<usize, String> {
    let facts: Vec<Fact> = facts.into_iter().filter(|f| !ledger.records(f)).collect();
    if facts.is_empty() {
        return Ok(0);
    }
    let this = Arc::clone(ledger);
    let appended = tokio::task::spawn_blocking(move || this.append(crate::clock::now(), facts))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(appended
        .iter()
        .filter(|a| matches!(a, Appended::New(_)))
        .count())
}

/// Appends the revocations of `config`'s `[trust]` revocation lists that the ledger lacks
/// (those another node logged first arrive by sync and are skipped).
pub async fn record_revocations(ledger: Arc<Ledger>, config: NodeConfig) {
    let span = info_span!("ledger_revocations");
    async move {
        let mut facts = Vec::new();
        for file in &config.trust.revocation_files {
            match agora_attest::trust::load_revocations(file) {
                Ok(list) => facts.extend(list.into_iter().map(Fact::Revocation)),
                Err(e) => warn!(file = %file.display(), error = %e, "cannot read revocations for the ledger"),
            }
        }
        match append_missing(&ledger, facts).await {
            Ok(0) => {}
            Ok(n) => info!(appended = n, "attestation revocations recorded in the ledger"),
            Err(e) => warn!(error = %e, "cannot record revocations in the ledger"),
        }
    }
    .instrument(span)
    .await;
}

/// Every [`RECONCILE_PERIOD`] (first at once) until `stop`: appends the grants and final
/// receipts of `leases` that the ledger lacks.
pub async fn reconcile(
    leases: Arc<Provider>,
    ledger: Arc<Ledger>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(RECONCILE_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let facts = leases.ledger_facts();
        let span = info_span!("ledger_reconcile", leases = facts.len());
        match append_missing(&ledger, facts).instrument(span).await {
            Ok(0) => {}
            Ok(n) => info!(appended = n, "lease evidence the ledger lacked recorded"),
            Err(e) => debug!(error = %e, "cannot record lease evidence yet"),
        }
    }
}
