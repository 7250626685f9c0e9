//! The agent's side of a tunnel: dial the provider's endpoint (its key pinned from the signed
//! grant), open one QUIC stream per forwarded connection with the token and port, and pipe.
//!
//! [`Dialer`] keeps one connection and dials again when it has dropped, so a forward
//! ([`forward`]) survives the provider's idle timeout or a transient loss: the next accepted
//! TCP connection gets a fresh QUIC connection. A connection can also be dead without
//! knowing it yet (the provider restarted: its stateless reset closes it when the next
//! stream's header reaches it); a stream that fails that way before the provider answered
//! is opened once more on a fresh connection, so the TCP connection that found out still
//! goes through. The `agora tunnel` command and, later, an HTTP operation or MCP tool use
//! the same pieces.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use agora_attest::Identity;
use agora_protocol::AgoraId;
use agora_protocol::lease::LeaseGrant;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::wire::{self, Answer, Code, Header};
use super::{TunnelError, tls};

/// How long a dial may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the provider may take to answer a stream's header.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// A stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No endpoint answered (or the provider's key was not the pinned one).
    #[error("cannot reach the provider's tunnel endpoint: {0}")]
    Dial(String),
    /// The connection failed while opening or answering.
    #[error("tunnel stream failed: {0}")]
    Stream(String),
    /// The provider refused the stream.
    #[error("refused ({code}): {detail}")]
    Refused {
        /// The stable code.
        code: Code,
        /// The provider's detail.
        detail: String,
    },
}

/// Dials one provider's tunnel endpoint for one lease.
pub struct Dialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    addrs: Vec<SocketAddr>,
    /// Replaced when the lease is extended (a new grant carries a new token).
    token: std::sync::Mutex<Vec<u8>>,
    /// For a grantee: the owner's signed service grant, sent beside the token.
    grant: Option<Vec<u8>>,
    connection: Mutex<Option<quinn::Connection>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// A client endpoint bound to `bind` that accepts datagrams up to
/// [`super::MAX_UDP_PAYLOAD`], so path MTU discovery can raise the packet size both ways.
fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, TunnelError> {
    let bind_err = |source| TunnelError::Bind { addr: bind, source };
    let socket = super::bind_udp(bind).map_err(bind_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| TunnelError::Config("the tunnel dialer needs a tokio runtime".into()))?;
    let mut config = quinn::EndpointConfig::default();
    super::accept_large_datagrams(&mut config);
    quinn::Endpoint::new(config, None, socket, runtime).map_err(bind_err)
}

/// The `host:port` endpoints of a grant that are socket addresses.
pub fn grant_endpoints(grant: &LeaseGrant) -> Vec<SocketAddr> {
    grant
        .tunnel_endpoints
        .iter()
        .filter_map(|e| e.parse().ok())
        .collect()
}

impl Dialer {
    /// A dialer presenting `identity`'s key, pinning `provider`'s, trying `addrs` in order,
    /// sending `token` (a provider-signed capability's wire bytes) on each stream. Call it
    /// within a tokio runtime (the UDP socket is registered with it).
    ///
    /// # Errors
    /// [`TunnelError`] if there is no address, TLS cannot be set up or no UDP socket bound.
    pub fn new(
        identity: &Identity,
        provider: AgoraId,
        addrs: Vec<SocketAddr>,
        token: Vec<u8>,
    ) -> Result<Self, TunnelError> {
        Self::with_alpn(identity, provider, addrs, token, super::ALPN)
    }

    /// A dialer whose connections carry lease operations ([`super::ops`], ALPN
    /// [`super::ops::OPS_ALPN`]) rather than workload ports; open them with
    /// [`super::ops::open`] on [`Dialer::connection`].
    ///
    /// # Errors
    /// As [`Dialer::new`].
    pub fn for_ops(
        identity: &Identity,
        provider: AgoraId,
        addrs: Vec<SocketAddr>,
    ) -> Result<Self, TunnelError> {
        Self::with_alpn(identity, provider, addrs, Vec::new(), super::ops::OPS_ALPN)
    }

    fn with_alpn(
        identity: &Identity,
        provider: AgoraId,
        addrs: Vec<SocketAddr>,
        token: Vec<u8>,
        alpn: &[u8],
    ) -> Result<Self, TunnelError> {
        let first = addrs
            .first()
            .ok_or_else(|| TunnelError::Config("the lease lists no tunnel endpoint".into()))?;
        let crypto = tls::client_crypto_for(identity, provider, alpn)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = super::transport_config();
        transport
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if first.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let endpoint = client_endpoint(bind)?;
        Ok(Self {
            endpoint,
            config,
            addrs,
            token: std::sync::Mutex::new(token),
            grant: None,
            connection: Mutex::new(None),
        })
    }

    /// The same dialer for a grantee: every stream also carries `grant`, the wire bytes of
    /// the owner's `Signed<ServiceGrant>` for this dialer's key (the token is then the
    /// owner's lease capability, from the published service record).
    #[must_use]
    pub fn with_grant(mut self, grant: Vec<u8>) -> Self {
        self.grant = Some(grant);
        self
    }

    /// Sends `token` on the streams opened from now on (a re-signed grant's, after an
    /// extension: the provider refuses a token past its own expiry).
    pub fn set_token(&self, token: Vec<u8>) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// A dialer for a verified grant: its provider, endpoints (unless `addrs` overrides
    /// them) and token.
    ///
    /// # Errors
    /// As [`Dialer::new`].
    pub fn for_grant(
        identity: &Identity,
        grant: &LeaseGrant,
        addrs: Option<Vec<SocketAddr>>,
    ) -> Result<Self, TunnelError> {
        Self::new(
            identity,
            grant.provider,
            addrs.unwrap_or_else(|| grant_endpoints(grant)),
            grant.token.as_bytes().to_vec(),
        )
    }

    /// The live connection, dialing a new one if there is none or it has closed.
    ///
    /// # Errors
    /// [`OpenError::Dial`] naming the last endpoint's failure.
    pub async fn connection(&self) -> Result<quinn::Connection, OpenError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let mut last = String::from("no endpoint");
        for addr in &self.addrs {
            let connecting = match self
                .endpoint
                .connect_with(self.config.clone(), *addr, "agora")
            {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
            };
            match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
                Ok(Ok(c)) => {
                    debug!(%addr, "tunnel connected");
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: no answer in {DIAL_TIMEOUT:?}"),
            }
        }
        *slot = None;
        Err(OpenError::Dial(last))
    }

    /// Opens a stream to `port` with this dialer's token.
    ///
    /// # Errors
    /// [`OpenError`]: unreachable, failed or refused (with the provider's code).
    pub async fn open(&self, port: u16) -> Result<(SendStream, RecvStream), OpenError> {
        let token = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.open_with(&Header {
            grant: self.grant.clone(),
            ..Header::new(port, token)
        })
        .await
    }

    /// Opens a stream with any header (tests send forged and foreign tokens this way).
    ///
    /// # Errors
    /// As [`Dialer::open`].
    pub async fn open_with(&self, header: &Header) -> Result<(SendStream, RecvStream), OpenError> {
        let bytes = header
            .encode()
            .map_err(|e| OpenError::Stream(e.to_string()))?;
        let conn = self.connection().await?;
        match open_on(&conn, &bytes).await {
            // The connection died before the provider answered (nothing reached the
            // workload): once more on a fresh one.
            Err(OpenError::Stream(e)) if conn.close_reason().is_some() => {
                debug!(error = %e, "tunnel connection gone; dialing again");
                open_on(&self.connection().await?, &bytes).await
            }
            r => r,
        }
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some(c) = self.connection.lock().await.take() {
            super::log_closed(&c, None);
            c.close(VarInt::from_u32(0), b"done");
        }
    }
}

/// Opens a stream on `conn`, sends the encoded header `bytes` and reads the answer.
async fn open_on(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Result<(SendStream, RecvStream), OpenError> {
    let stream = |e: &dyn std::fmt::Display| OpenError::Stream(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| stream(&e))?;
    send.write_all(bytes).await.map_err(|e| stream(&e))?;
    match tokio::time::timeout(ANSWER_TIMEOUT, wire::read_answer(&mut recv)).await {
        Ok(Ok(Answer::Accepted)) => Ok((send, recv)),
        Ok(Ok(Answer::Refused { code, detail })) => Err(OpenError::Refused { code, detail }),
        Ok(Err(e)) => Err(stream(&e)),
        Err(_) => Err(OpenError::Stream("no answer in time".into())),
    }
}

/// Forwards every TCP connection `listener` accepts to workload port `remote` over its own
/// stream, until the listener fails. A refused or failed stream closes that TCP connection
/// (and is logged); the forward goes on.
pub async fn forward(dialer: Arc<Dialer>, listener: TcpListener, remote: u16) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "tunnel listener failed");
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let dialer = dialer.clone();
        tokio::spawn(async move {
            let (mut send, mut recv) = match dialer.open(remote).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, port = remote, error = %e, "tunnel stream not opened");
                    return;
                }
            };
            let (mut tcp_read, mut tcp_write) = tcp.into_split();
            let piped = super::pipe::quic_both_ways(
                &mut recv,
                &mut send,
                &mut tcp_read,
                &mut tcp_write,
                |_| {},
                |_| {},
            )
            .await;
            if let Err(e) = piped {
                debug!(%peer, error = %e, "tunnel stream ended");
                let _ = send.reset(VarInt::from_u32(0));
                let _ = tcp_write.shutdown().await;
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::AsyncReadExt;
    use tokio::net::UdpSocket;

    use super::*;
    use crate::tunnel::server;

    /// A provider stand-in: a real tunnel endpoint of `identity` that accepts every header
    /// and echoes the stream.
    fn echo_server(identity: &Identity) -> SocketAddr {
        let config = server::Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let endpoint = server::endpoint(identity, &config).unwrap();
        let addr = endpoint.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    let conn = incoming.await.unwrap();
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            wire::read_header(&mut recv).await.unwrap();
                            wire::write_answer(&mut send, &Answer::Accepted)
                                .await
                                .unwrap();
                            tokio::io::copy(&mut recv, &mut send).await.unwrap();
                            send.finish().unwrap();
                        });
                    }
                });
            }
        });
        addr
    }

    /// A UDP hop from the dialer to `*target`, which the test switches: packets of the
    /// old target are dropped from then on, as if its host had vanished.
    async fn switchable_hop(target: Arc<std::sync::Mutex<SocketAddr>>) -> SocketAddr {
        let front = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
        let back = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
        let addr = front.local_addr().unwrap();
        let client = Arc::new(std::sync::Mutex::new(None));
        let (f, b, c, t) = (front.clone(), back.clone(), client.clone(), target.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, from)) = f.recv_from(&mut buf).await {
                *c.lock().unwrap() = Some(from);
                let to = *t.lock().unwrap();
                let _ = b.send_to(&buf[..n], to).await;
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, from)) = back.recv_from(&mut buf).await {
                let to = *client.lock().unwrap();
                if let Some(to) = to.filter(|_| from == *target.lock().unwrap()) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        addr
    }

    async fn echo(dialer: &Dialer, text: &[u8]) -> Vec<u8> {
        let (mut send, mut recv) = dialer.open(80).await.unwrap();
        send.write_all(text).await.unwrap();
        send.finish().unwrap();
        let mut back = Vec::new();
        AsyncReadExt::read_to_end(&mut recv, &mut back)
            .await
            .unwrap();
        back
    }

    #[tokio::test]
    async fn a_restarted_provider_resets_the_old_connection_and_the_next_stream_redials() {
        let provider = Identity::generate(&mut rand::rng());
        let agent = Identity::generate(&mut rand::rng());
        let before = echo_server(&provider);
        // The same node after a restart: same key, new process, no connection state.
        let after = echo_server(&Identity::from_secret_bytes(&provider.secret_bytes()));
        let target = Arc::new(std::sync::Mutex::new(before));
        let hop = switchable_hop(target.clone()).await;
        let dialer = Dialer::new(&agent, provider.agora_id(), vec![hop], vec![1, 2, 3]).unwrap();
        assert_eq!(echo(&dialer, b"one").await, b"one");
        let first = dialer.connection().await.unwrap();

        *target.lock().unwrap() = after;
        // The header reaches a server that never saw this connection: its stateless reset
        // (under the same key) closes it, and the stream is opened again on a new one. With
        // a per-process key the reset would be ignored and this would fail after
        // ANSWER_TIMEOUT.
        let opened = tokio::time::timeout(ANSWER_TIMEOUT, echo(&dialer, b"two")).await;
        assert_eq!(opened.expect("the stream redialed"), b"two");
        assert!(
            first.close_reason().is_some(),
            "the old connection was reset"
        );
        assert_ne!(
            dialer.connection().await.unwrap().stable_id(),
            first.stable_id()
        );
    }
}
