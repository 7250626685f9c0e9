//! Per-lease tunnel byte counters, shared by the tunnel endpoint's streams (which add) and
//! the provider's metering (which folds them into usage receipts, restores them after a
//! restart and forgets a lease once its final receipt is signed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use agora_protocol::lease::LeaseId;

/// Bytes through a lease's tunnels so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// From the agent into the workload.
    pub to_workload: u64,
    /// From the workload to the agent.
    pub from_workload: u64,
    /// Streams accepted.
    pub streams: u64,
}

/// The counters of every lease with tunnel traffic, shared by the endpoint's streams.
#[derive(Debug, Clone, Default)]
pub struct Meter(Arc<Mutex<BTreeMap<LeaseId, Traffic>>>);

impl Meter {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<LeaseId, Traffic>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts an accepted stream.
    pub fn stream(&self, lease: &LeaseId) {
        self.with(|m| {
            let t = m.entry(*lease).or_default();
            t.streams = t.streams.saturating_add(1);
        });
    }

    /// Adds `bytes` in one direction.
    pub fn add(&self, lease: &LeaseId, to_workload: bool, bytes: u64) {
        self.with(|m| {
            let t = m.entry(*lease).or_default();
            let n = if to_workload {
                &mut t.to_workload
            } else {
                &mut t.from_workload
            };
            *n = n.saturating_add(bytes);
        });
    }

    /// Starts a lease's counters at `traffic` (what its record kept across a restart), unless
    /// they are already higher.
    pub fn restore(&self, lease: &LeaseId, traffic: Traffic) {
        self.with(|m| {
            let t = m.entry(*lease).or_default();
            t.to_workload = t.to_workload.max(traffic.to_workload);
            t.from_workload = t.from_workload.max(traffic.from_workload);
            t.streams = t.streams.max(traffic.streams);
        });
    }

    /// A lease's traffic so far (zero if none).
    pub fn traffic(&self, lease: &LeaseId) -> Traffic {
        self.with(|m| m.get(lease).copied().unwrap_or_default())
    }

    /// Forgets a lease (once its final receipt is signed); returns what it counted.
    pub fn forget(&self, lease: &LeaseId) -> Traffic {
        self.with(|m| m.remove(lease).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use agora_protocol::Digest;

    use super::*;

    #[test]
    fn counts_add_up_per_lease_and_direction() {
        let meter = Meter::default();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        meter.stream(&a);
        meter.add(&a, true, 10);
        meter.add(&a, false, 5);
        meter.add(&a, true, 1);
        meter.add(&b, false, 7);
        assert_eq!(
            meter.traffic(&a),
            Traffic {
                to_workload: 11,
                from_workload: 5,
                streams: 1
            }
        );
        assert_eq!(meter.forget(&b).from_workload, 7);
        assert_eq!(meter.traffic(&b), Traffic::default());
        meter.restore(
            &b,
            Traffic {
                to_workload: 3,
                from_workload: 4,
                streams: 0,
            },
        );
        meter.add(&b, true, 1);
        assert_eq!(meter.traffic(&b).to_workload, 4);
    }
}
