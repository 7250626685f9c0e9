//! Opens the provider's lease service: admission sized by `[provider]`, signup records
//! judged with this node's own trust store and tiers (the signup service's, reloaded with
//! it), metering from `[leases]`, and the state a previous run left in the store.

use std::sync::Arc;

use agora_attest::Identity;
use agora_protocol::admission::{AdmissionConfig, Standing};
use agora_protocol::lease::{Refusal, RefusalCode};
use agora_protocol::workload::Resources;

use super::{DaemonError, Shared};
use crate::config::{NodeConfig, ProviderConfig};
use crate::lease::provider::{Judge, Provider, Settings};
use crate::runtime::supervisor::Supervisor;
use crate::store::Store;

/// The provider's lease service, restored from `store`.
///
/// # Errors
/// [`DaemonError::Leases`] when the stored lease state cannot be read.
pub fn open(
    identity: &Arc<Identity>,
    shared: &Arc<Shared>,
    config: &NodeConfig,
    provider: &ProviderConfig,
    store: Arc<dyn Store>,
    supervisor: Arc<Supervisor>,
) -> Result<Arc<Provider>, DaemonError> {
    let signup = shared.signup().cloned();
    let judge: Judge = Arc::new(move |record, now| {
        let s = signup.as_ref().ok_or_else(|| {
            Refusal::new(RefusalCode::Unavailable, "this node cannot judge signups")
        })?;
        let standing = crate::agent::judge(record, &s.trust(), &s.policy(), now)?;
        Ok(Standing {
            agent: standing.agent,
            tier: standing.tier,
            owner: standing.owner,
        })
    });
    let admission = AdmissionConfig {
        capacity: Resources {
            vcpu_milli: provider.vcpu_milli(),
            memory_mib: provider.memory_mib,
            disk_mib: provider.disk_mib,
            pids: u32::MAX,
        },
        ..AdmissionConfig::default()
    };
    let settings = Settings {
        receipt_interval: config.leases.receipt_interval,
        retention: config.leases.retention,
    };
    let leases = Provider::open(
        identity.clone(),
        store,
        supervisor,
        admission,
        judge,
        settings,
        crate::clock::now(),
    )
    .map_err(|e| DaemonError::Leases(e.to_string()))?
    .with_metrics(shared.metrics.clone())
    .with_ledger(shared.ledger().cloned())
    .with_quota(shared.quota().cloned());
    // Requests may name the offer a previous run signed (still in peers' books).
    if let Some(offer) = shared
        .market()
        .get(&identity.agora_id(), crate::clock::now())
    {
        leases.offer_published(&offer);
    }
    Ok(Arc::new(leases))
}
