//! Metering: runtime statistics and tunnel traffic folded into a lease's [`Usage`], and the
//! usage receipts a provider signs from it.
//!
//! CPU time and bytes sent are cumulative counters the runtime keeps, so a sample simply
//! replaces them (never moving backwards); so are the tunnel endpoint's per-lease byte
//! counters ([`crate::tunnel::Meter`]). Memory is integrated: each sample adds the memory
//! in use × the time since the previous sample (MiB × ms), so the receipt's MiB × s is as
//! exact as the sampling period.

use agora_protocol::Timestamp;
use agora_protocol::lease::UsageReceipt;
use agora_protocol::workload::TerminationReason;

use super::record::{ProviderLease, Usage};
use crate::runtime::Stats;
use crate::tunnel::Traffic;

/// Folds one statistics sample taken at `now` into `usage`.
pub fn sample(usage: &mut Usage, stats: &Stats, now: Timestamp) {
    let elapsed_ms = now.saturating_duration_since(usage.sampled_at).as_millis();
    let elapsed_ms = u64::try_from(elapsed_ms).unwrap_or(u64::MAX);
    // bytes × ms / 2^20 = MiB × ms, exact for workloads using less than a MiB.
    let mib_ms = (u128::from(stats.memory_bytes) * u128::from(elapsed_ms)) >> 20;
    usage.memory_mib_millis = usage
        .memory_mib_millis
        .saturating_add(u64::try_from(mib_ms).unwrap_or(u64::MAX));
    usage.cpu_nanos = usage.cpu_nanos.max(stats.cpu_nanos);
    usage.egress_bytes = usage.egress_bytes.max(stats.net_tx_bytes);
    usage.sampled_at = usage.sampled_at.max(now);
}

/// Folds a lease's tunnel traffic so far into `usage`; `on_interfaces` says whether the
/// runtime's interface counters already see it (see [`Usage::egress_bytes_total`]). Returns
/// whether the counts moved.
pub fn fold_tunnels(usage: &mut Usage, traffic: &Traffic, on_interfaces: bool) -> bool {
    let before = (usage.tunnel_in_bytes, usage.tunnel_out_bytes);
    usage.tunnel_in_bytes = usage.tunnel_in_bytes.max(traffic.to_workload);
    usage.tunnel_out_bytes = usage.tunnel_out_bytes.max(traffic.from_workload);
    usage.tunnels_on_interfaces = on_interfaces;
    (usage.tunnel_in_bytes, usage.tunnel_out_bytes) != before
}

/// The next receipt of `lease` by `provider`, counting up to `to`; `ended` on the final one.
pub fn receipt(
    lease: &ProviderLease,
    provider: agora_protocol::AgoraId,
    to: Timestamp,
    ended: Option<TerminationReason>,
) -> UsageReceipt {
    let a = &lease.active;
    let seq = lease
        .receipt
        .as_ref()
        .map_or(0, |r| r.body().seq.saturating_add(1));
    let to = to.max(a.starts_at);
    UsageReceipt {
        lease: a.lease,
        agent: a.agent,
        provider,
        seq,
        from: a.starts_at,
        to,
        cpu_ms: lease.usage.cpu_nanos / 1_000_000,
        memory_mib_secs: lease.usage.memory_mib_millis / 1000,
        egress_bytes: lease.usage.egress_bytes_total(),
        tunnel_in_bytes: lease.usage.tunnel_in_bytes,
        tunnel_out_bytes: lease.usage.tunnel_out_bytes,
        price_per_sec: a.price_per_sec,
        total_micro: a.cost_until(to),
        ended: ended.map(|r| match r {
            TerminationReason::PolicyViolation { detail } => TerminationReason::PolicyViolation {
                detail: cut(detail),
            },
            TerminationReason::RuntimeError { detail } => TerminationReason::RuntimeError {
                detail: cut(detail),
            },
            other => other,
        }),
    }
}

/// Cuts a detail to the 512 bytes a receipt allows, at a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > 512 {
        let mut end = 512;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// When the next periodic receipt of `lease` is due.
pub fn next_receipt_at(lease: &ProviderLease, interval: core::time::Duration) -> Timestamp {
    lease
        .receipt
        .as_ref()
        .map_or(lease.active.starts_at, |r| r.body().to)
        .saturating_add(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn memory_is_integrated_and_counters_never_go_back() {
        let mut u = Usage {
            sampled_at: t(0),
            ..Usage::default()
        };
        let s = |cpu, mem_mib: u64, tx| Stats {
            cpu_nanos: cpu,
            memory_bytes: mem_mib << 20,
            net_tx_bytes: tx,
            ..Stats::default()
        };
        sample(&mut u, &s(5_000_000, 100, 10), t(2000));
        assert_eq!(u.memory_mib_millis, 200_000);
        assert_eq!(u.cpu_nanos, 5_000_000);
        sample(&mut u, &s(1, 50, 0), t(3000));
        assert_eq!(u.memory_mib_millis, 250_000);
        // Half a MiB for two seconds is one MiB-second, not nothing.
        let half = Stats {
            memory_bytes: 512 << 10,
            ..Stats::default()
        };
        let mut v = Usage {
            sampled_at: t(0),
            ..Usage::default()
        };
        sample(&mut v, &half, t(2000));
        assert_eq!(v.memory_mib_millis, 1000);
        assert_eq!(
            u.cpu_nanos, 5_000_000,
            "a counter reset does not undo usage"
        );
        assert_eq!(u.egress_bytes, 10);
        // A sample from the past adds nothing.
        sample(&mut u, &s(0, 1000, 0), t(1000));
        assert_eq!(u.memory_mib_millis, 250_000);
    }

    #[test]
    fn tunnel_bytes_count_as_egress_once() {
        let mut u = Usage {
            egress_bytes: 100,
            ..Usage::default()
        };
        let traffic = |to_workload, from_workload| Traffic {
            to_workload,
            from_workload,
            streams: 1,
        };
        assert!(fold_tunnels(&mut u, &traffic(7, 40), false));
        assert_eq!((u.tunnel_in_bytes, u.tunnel_out_bytes), (7, 40));
        // A sandbox's tunnels reach it over its loopback: not in the interface counters.
        assert_eq!(u.egress_bytes_total(), 140);
        // Docker's cross the container's interface: already counted there.
        assert!(!fold_tunnels(&mut u, &traffic(7, 40), true));
        assert_eq!(u.egress_bytes_total(), 100);
        // Counters never go back (a restarted meter starts from what was restored).
        assert!(!fold_tunnels(&mut u, &traffic(1, 2), false));
        assert_eq!((u.tunnel_in_bytes, u.tunnel_out_bytes), (7, 40));
    }

    #[test]
    fn long_details_are_cut_at_a_character_boundary() {
        let cut = cut("é".repeat(400));
        assert!(cut.len() <= 512 && cut.is_char_boundary(cut.len()));
    }
}
