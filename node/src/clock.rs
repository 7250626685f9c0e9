//! The node's one clock read: the protocol never reads clocks itself, the node passes time in.

use std::time::{SystemTime, UNIX_EPOCH};

use agora_protocol::Timestamp;

/// The current wall-clock time. A clock before 1970 reads as the epoch (and every offer
/// then looks "from the future", which the offer book refuses: safe, and loud in logs).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}
