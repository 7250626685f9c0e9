//! A gateway's UDP relay for tunnels: an agent that cannot route to a provider sends its QUIC
//! packets to a port the gateway opened for it, and the gateway forwards them, unread, to
//! the provider's tunnel endpoint (and the answers back).
//!
//! The relay sees only ciphertext: TLS runs end to end between the agent's key and the
//! provider's pinned key, so a relay (or anyone on the path) that alters a byte breaks the
//! packet's authentication and the connection; the provider still checks the capability on
//! every stream. What a relay must guard is itself: each session is opened for one signed
//! request, forwards to exactly one endpoint the provider signed into the grant, answers only
//! the first source address that speaks to it, and ends when idle, at the lease's expiry or
//! when the node stops. Sessions are bounded per node and per agent.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agora_protocol::lease::{LeaseId, NONCE_LEN};
use agora_protocol::{AgoraId, Timestamp};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{Instrument as _, debug, info_span};

/// The largest UDP payload (a datagram never exceeds it).
const MAX_DATAGRAM: usize = 65_535;

/// Relay limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions open at once on this node.
    pub sessions: usize,
    /// Sessions open at once for one agent.
    pub per_agent: usize,
    /// A session with no packet either way for this long ends.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions: 256,
            per_agent: 8,
            idle: Duration::from_secs(60),
        }
    }
}

/// A session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The node relays this many sessions already.
    #[error("this node relays {0} tunnel sessions already")]
    Full(usize),
    /// The agent has this many sessions already.
    #[error("this agent has {0} relay sessions open already")]
    AgentFull(usize),
    /// A socket could not be bound.
    #[error("cannot open a relay socket on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// [`Relay::admit`]'s verdict on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Fresh and unseen: go on.
    Fresh,
    /// Issued too long ago (or too far ahead).
    Stale,
    /// Seen before.
    Replay,
    /// Too many requests to remember now.
    Busy,
}

/// One open session, as [`Relay::open`] answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Where the agent sends its packets.
    pub relay: SocketAddr,
    /// The provider endpoint they go to.
    pub target: SocketAddr,
}

/// What a session counted, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams from the agent to the provider.
    pub up: u64,
    /// Datagrams from the provider to the agent.
    pub down: u64,
    /// Datagrams dropped: from a source other than the session's agent, or too large.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_agent: BTreeMap<AgoraId, usize>,
}

/// How long a signed relay request stays acceptable (as for operations at a provider).
pub const FRESHNESS: Duration = Duration::from_secs(300);
/// Most request nonces remembered (one per request within [`FRESHNESS`]).
const MAX_NONCES: usize = 65_536;

/// The node's relay: opens sessions and bounds them.
#[derive(Debug, Clone)]
pub struct Relay {
    limits: Limits,
    open: Arc<Mutex<Open>>,
    nonces: Arc<Mutex<BTreeMap<[u8; NONCE_LEN], Timestamp>>>,
    stop: watch::Receiver<bool>,
}

/// Releases a session's slot when its task ends, however it ends.
struct Slot {
    open: Arc<Mutex<Open>>,
    agent: AgoraId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_agent.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_agent.remove(&self.agent);
            }
        }
    }
}

impl Relay {
    /// A relay with `limits`; every session ends when `stop` turns true.
    pub fn new(limits: Limits, stop: watch::Receiver<bool>) -> Self {
        Self {
            limits,
            open: Arc::default(),
            nonces: Arc::default(),
            stop,
        }
    }

    /// Whether a request issued at `issued_at` is fresh at `now` and its nonce unseen (then
    /// remembered), so a captured request cannot open sessions again.
    pub fn admit(&self, nonce: [u8; NONCE_LEN], issued_at: Timestamp, now: Timestamp) -> Admit {
        let skew = if issued_at > now {
            issued_at.saturating_duration_since(now)
        } else {
            now.saturating_duration_since(issued_at)
        };
        if skew > FRESHNESS {
            return Admit::Stale;
        }
        let mut seen = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, t| now.saturating_duration_since(*t) <= FRESHNESS);
        if seen.contains_key(&nonce) {
            return Admit::Replay;
        }
        if seen.len() >= MAX_NONCES {
            return Admit::Busy;
        }
        seen.insert(nonce, issued_at);
        Admit::Fresh
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    fn reserve(&self, agent: AgoraId) -> Result<Slot, RelayError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.limits.sessions {
            return Err(RelayError::Full(open.total));
        }
        let n = open.per_agent.entry(agent).or_default();
        if *n >= self.limits.per_agent {
            return Err(RelayError::AgentFull(*n));
        }
        *n += 1;
        open.total += 1;
        Ok(Slot {
            open: self.open.clone(),
            agent,
        })
    }

    /// Opens a session for `agent`'s `lease`: a UDP socket on `bind` (port chosen by the
    /// system) whose first sender is relayed to and from `target` until the session idles,
    /// `lifetime` passes or the node stops. Call within a tokio runtime.
    ///
    /// # Errors
    /// [`RelayError`]: a limit is reached or a socket cannot be bound.
    pub async fn open(
        &self,
        agent: AgoraId,
        lease: LeaseId,
        bind: IpAddr,
        target: SocketAddr,
        lifetime: Duration,
    ) -> Result<Session, RelayError> {
        let slot = self.reserve(agent)?;
        let down_addr = SocketAddr::new(bind, 0);
        let down = UdpSocket::bind(down_addr)
            .await
            .map_err(|source| RelayError::Bind {
                addr: down_addr,
                source,
            })?;
        let up_addr = SocketAddr::new(unspecified_like(target.ip()), 0);
        let up = UdpSocket::bind(up_addr)
            .await
            .map_err(|source| RelayError::Bind {
                addr: up_addr,
                source,
            })?;
        up.connect(target)
            .await
            .map_err(|source| RelayError::Bind {
                addr: target,
                source,
            })?;
        let relay = down.local_addr().map_err(|source| RelayError::Bind {
            addr: down_addr,
            source,
        })?;
        let (idle, stop) = (self.limits.idle, self.stop.clone());
        tokio::spawn(
            async move {
                let _slot = slot;
                let counts = run(down, up, idle, lifetime, stop).await;
                debug!(
                    up = counts.up,
                    down = counts.down,
                    dropped = counts.dropped,
                    "relay session ended"
                );
            }
            .instrument(info_span!("relay", %lease, %agent, %relay, %target)),
        );
        Ok(Session { relay, target })
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Resolves once `stop` turns true (or its sender is gone), holding no borrow of the value.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Moves datagrams between the agent (on `down`, locked to its first sender) and the
/// provider (`up`, connected) until idle for `idle`, after `lifetime`, or on `stop`.
async fn run(
    down: UdpSocket,
    up: UdpSocket,
    idle: Duration,
    lifetime: Duration,
    mut stop: watch::Receiver<bool>,
) -> Counts {
    let mut counts = Counts::default();
    let mut agent: Option<SocketAddr> = None;
    let (mut from_agent, mut from_provider) = (vec![0u8; MAX_DATAGRAM], vec![0u8; MAX_DATAGRAM]);
    let end = tokio::time::sleep(lifetime);
    tokio::pin!(end);
    // Only forwarded packets keep a session alive (a stranger's packets do not).
    let mut active = tokio::time::Instant::now();
    loop {
        let quiet = tokio::time::sleep_until(active + idle);
        tokio::select! {
            () = &mut end => break,
            () = quiet => break,
            () = stopped(&mut stop) => break,
            got = down.recv_from(&mut from_agent) => {
                let Ok((n, src)) = got else { break };
                if *agent.get_or_insert(src) != src {
                    // Only the session's agent may use it (no reflection for others).
                    counts.dropped += 1;
                    continue;
                }
                let Some(datagram) = from_agent.get(..n) else { continue };
                if up.send(datagram).await.is_ok() {
                    counts.up += 1;
                    active = tokio::time::Instant::now();
                }
            }
            got = up.recv(&mut from_provider) => {
                // An ICMP error on the connected socket surfaces here: the provider went
                // away; keep waiting (QUIC retries), the idle timer ends it.
                let Ok(n) = got else { continue };
                let (Some(to), Some(datagram)) = (agent, from_provider.get(..n)) else {
                    counts.dropped += 1;
                    continue;
                };
                if down.send_to(datagram, to).await.is_ok() {
                    counts.down += 1;
                    active = tokio::time::Instant::now();
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::net::Ipv4Addr;

    use agora_protocol::Digest;

    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn agent(n: u8) -> AgoraId {
        use rand::SeedableRng as _;
        let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(n));
        agora_attest::Identity::generate(&mut rng).agora_id()
    }

    async fn echo_server() -> SocketAddr {
        let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((n, src)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], src).await;
            }
        });
        addr
    }

    async fn roundtrip(client: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
        client.send_to(msg, to).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let got = tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf));
        match got.await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn relays_both_ways_for_the_first_sender_only() {
        let (_stop_tx, stop) = watch::channel(false);
        let relay = Relay::new(Limits::default(), stop);
        let target = echo_server().await;
        let s = relay
            .open(
                agent(1),
                Digest::of(b"l"),
                LOCAL,
                target,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(s.target, target);
        let me = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        assert_eq!(
            roundtrip(&me, s.relay, b"hello").await.as_deref(),
            Some(&b"hello"[..])
        );
        // Another source cannot use (or reflect through) the session.
        let other = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        assert_eq!(roundtrip(&other, s.relay, b"spoof").await, None);
        assert_eq!(
            roundtrip(&me, s.relay, b"again").await.as_deref(),
            Some(&b"again"[..])
        );
    }

    #[test]
    fn requests_are_admitted_once_and_only_fresh() {
        let (_stop_tx, stop) = watch::channel(false);
        let relay = Relay::new(Limits::default(), stop);
        let now = Timestamp::from_unix_secs(10_000);
        assert_eq!(relay.admit([1; NONCE_LEN], now, now), Admit::Fresh);
        assert_eq!(relay.admit([1; NONCE_LEN], now, now), Admit::Replay);
        let old = now.saturating_sub(FRESHNESS + Duration::from_secs(1));
        assert_eq!(relay.admit([2; NONCE_LEN], old, now), Admit::Stale);
        let ahead = now.saturating_add(FRESHNESS + Duration::from_secs(1));
        assert_eq!(relay.admit([3; NONCE_LEN], ahead, now), Admit::Stale);
        // Remembered nonces are forgotten once their requests could no longer be fresh.
        let later = now.saturating_add(FRESHNESS + Duration::from_secs(1));
        assert_eq!(relay.admit([1; NONCE_LEN], later, later), Admit::Fresh);
    }

    #[tokio::test]
    async fn sessions_are_bounded_and_end_when_idle_or_stopped() {
        let (stop_tx, stop) = watch::channel(false);
        let limits = Limits {
            sessions: 3,
            per_agent: 2,
            idle: Duration::from_millis(200),
        };
        let relay = Relay::new(limits, stop);
        let target = echo_server().await;
        let open = |a: u8| {
            let relay = relay.clone();
            async move {
                relay
                    .open(
                        agent(a),
                        Digest::of(b"l"),
                        LOCAL,
                        target,
                        Duration::from_secs(60),
                    )
                    .await
            }
        };
        open(1).await.unwrap();
        open(1).await.unwrap();
        assert!(matches!(open(1).await, Err(RelayError::AgentFull(2))));
        open(2).await.unwrap();
        assert!(matches!(open(3).await, Err(RelayError::Full(3))));
        // Idle sessions end and free their slots.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(relay.sessions(), 0);
        let s = open(3).await.unwrap();
        stop_tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(relay.sessions(), 0);
        let me = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        assert_eq!(roundtrip(&me, s.relay, b"late").await, None);
    }
}
