//! The agent's side of a tunnel: dial the provider's endpoint (its key pinned from the signed
//! grant), open one QUIC stream per forwarded connection with the token and port, and pipe.
//!
//! [`Dialer`] keeps one connection and dials again when it has dropped, so a forward
//! ([`forward`]) survives the provider's idle timeout or a transient loss: the next accepted
//! TCP connection gets a fresh QUIC connection. The `agora tunnel` command and, later, an
//! HTTP operation or MCP tool use the same pieces.

use std::net::SocketAddr;
use std::sync::Arc;
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
    token: Vec<u8>,
    connection: Mutex<Option<quinn::Connection>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
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
        let first = addrs
            .first()
            .ok_or_else(|| TunnelError::Config("the lease lists no tunnel endpoint".into()))?;
        let crypto = tls::client_crypto(identity, provider)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(Duration::from_secs(10)))
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if first.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let endpoint = quinn::Endpoint::client(bind)
            .map_err(|source| TunnelError::Bind { addr: bind, source })?;
        Ok(Self {
            endpoint,
            config,
            addrs,
            token,
            connection: Mutex::new(None),
        })
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
        self.open_with(&Header {
            port,
            token: self.token.clone(),
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
        // A connection that died since its last use fails here once: dial again then.
        let mut retried = false;
        let (mut send, mut recv) = loop {
            let conn = self.connection().await?;
            match conn.open_bi().await {
                Ok(s) => break s,
                Err(e) if !retried => {
                    debug!(error = %e, "tunnel connection gone; dialing again");
                    retried = true;
                }
                Err(e) => return Err(OpenError::Stream(e.to_string())),
            }
        };
        send.write_all(&bytes)
            .await
            .map_err(|e| OpenError::Stream(e.to_string()))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, wire::read_answer(&mut recv)).await {
            Ok(Ok(Answer::Accepted)) => Ok((send, recv)),
            Ok(Ok(Answer::Refused { code, detail })) => Err(OpenError::Refused { code, detail }),
            Ok(Err(e)) => Err(OpenError::Stream(e.to_string())),
            Err(_) => Err(OpenError::Stream("no answer in time".into())),
        }
    }

    /// Closes the connection, if any.
    pub async fn close(&self) {
        if let Some(c) = self.connection.lock().await.take() {
            c.close(VarInt::from_u32(0), b"done");
        }
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
            let piped = super::pipe::both_ways(
                &mut tcp_read,
                &mut tcp_write,
                &mut recv,
                &mut send,
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
