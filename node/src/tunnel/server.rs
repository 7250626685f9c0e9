//! The provider's tunnel endpoint: accepts QUIC connections, checks each stream's header
//! ([`access::check`]) and pipes it to the workload's port.
//!
//! ```text
//! UDP tunnel_port ─▶ quinn Endpoint (≤ max_connections) ─▶ TLS 1.3: client key proven
//!   └─ each bidi stream (≤ max_streams per connection): header ≤ 1 KiB within 10 s
//!        ─▶ check (token, agent, lease live, port) ─▶ runtime.connect(workload, port)
//!        ─▶ answer 0x00 ─▶ pipe both ways (bytes counted per lease, workload touched)
//!        └─ every second: the lease still live? else reset the stream (`lease_ended`);
//!           a grantee's stream also at once when its grant is revoked (`grant_revoked`)
//! ```
//!
//! A connection negotiated with ALPN [`super::ops::OPS_ALPN`] carries agent-signed lease
//! operations instead (exec, logs, files: `--direct`), served by [`super::ops::serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agora_attest::Identity;
use agora_protocol::AgoraId;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument as _, debug, info, info_span};

use super::access::{self, Denied, Target};
use super::meter::Meter;
use super::reset;
use super::wire::{self, Answer, Code};
use super::{TunnelError, tls};
use crate::clock;
use crate::lease::Provider;

/// QUIC application error code when a stream is cut because its lease ended.
pub const RESET_LEASE_ENDED: u32 = 1;
/// QUIC application error code when the endpoint closes (node stopping).
pub const CLOSE_STOPPING: u32 = 2;
/// QUIC application error code when a stream is cut because the owner revoked its grant.
pub const RESET_GRANT_REVOKED: u32 = 3;

/// Limits of the tunnel endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// Connections open at once (more are refused).
    pub max_connections: usize,
    /// Bidirectional streams open at once per connection.
    pub max_streams: u32,
    /// A connection without any packet for this long is closed.
    pub idle_timeout: Duration,
    /// How long a stream may take to send its header.
    pub header_timeout: Duration,
    /// How often a piped stream checks that its lease still runs.
    pub liveness_period: Duration,
}

impl Config {
    /// Defaults for an endpoint bound at `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            max_connections: 256,
            max_streams: 128,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            liveness_period: Duration::from_secs(1),
        }
    }
}

struct Context {
    id: AgoraId,
    provider: Arc<Provider>,
    meter: Meter,
    config: Config,
    /// Direct lease operations running at once ([`super::ops`]).
    ops: Arc<Semaphore>,
}

/// A bound tunnel endpoint, not yet serving.
pub struct Server {
    endpoint: quinn::Endpoint,
    context: Arc<Context>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the endpoint with `identity`'s certificate, serving `provider`'s leases.
    ///
    /// # Errors
    /// [`TunnelError`] if TLS cannot be set up or the UDP port cannot be bound.
    pub fn bind(
        identity: &Identity,
        provider: Arc<Provider>,
        meter: Meter,
        config: Config,
    ) -> Result<Self, TunnelError> {
        let endpoint = endpoint(identity, &config)?;
        Ok(Self {
            endpoint,
            context: Arc::new(Context {
                id: identity.agora_id(),
                provider,
                meter,
                config,
                ops: Arc::new(Semaphore::new(super::ops::MAX_OPS)),
            }),
        })
    }

    /// The bound UDP address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves until `stop` turns true, then closes every connection.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.context.config.max_connections));
        info!(addr = ?self.endpoint.local_addr().ok(), "tunnel endpoint listening");
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => i,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(incoming) = incoming else { break };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(remote = %incoming.remote_address(), "too many tunnel connections");
                incoming.refuse();
                continue;
            };
            let context = self.context.clone();
            let span = info_span!("tunnel", remote = %incoming.remote_address());
            tokio::spawn(
                async move {
                    let _slot = slot;
                    match incoming.await {
                        Ok(conn) => serve_connection(conn, context).await,
                        Err(e) => debug!(error = %e, "tunnel handshake failed"),
                    }
                }
                .instrument(span),
            );
        }
        self.endpoint
            .close(VarInt::from_u32(CLOSE_STOPPING), b"node stopping");
        // The close frames must leave before the process does, or agents keep a dead
        // connection until their idle timeout.
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// How long a stopping endpoint waits for its connections to take the close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A bound QUIC server endpoint with `identity`'s certificate and `config`'s limits, whose
/// stateless resets ([`reset::ResetKey`]) stay valid across restarts.
///
/// # Errors
/// [`TunnelError`] if TLS cannot be set up, a limit is invalid or the UDP port cannot be
/// bound.
pub fn endpoint(identity: &Identity, config: &Config) -> Result<quinn::Endpoint, TunnelError> {
    let crypto = tls::server_crypto(identity)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = super::transport_config();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(config.idle_timeout)
                .map_err(|e| TunnelError::Config(e.to_string()))?,
        ));
    server.transport_config(Arc::new(transport));
    let bind_err = |source| TunnelError::Bind {
        addr: config.bind,
        source,
    };
    let socket = super::bind_udp(config.bind).map_err(bind_err)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| TunnelError::Config("the tunnel endpoint needs a tokio runtime".into()))?;
    quinn::Endpoint::new(
        reset::endpoint_config(identity),
        Some(server),
        socket,
        runtime,
    )
    .map_err(bind_err)
}

async fn serve_connection(conn: quinn::Connection, context: Arc<Context>) {
    let Some(client) = tls::peer_key(&conn) else {
        conn.close(VarInt::from_u32(0), b"no client key");
        return;
    };
    debug!(agent = %client, "tunnel connection");
    if tls::alpn(&conn).as_deref() == Some(super::ops::OPS_ALPN) {
        // Lease operations (exec, logs, files): the agent's signature on each is the
        // authority, checked by the same handler as operations through a gateway.
        super::ops::serve(conn, context.provider.clone(), context.ops.clone()).await;
        return;
    }
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let context = context.clone();
                tokio::spawn(serve_stream(send, recv, client, context).in_current_span());
            }
            Err(e) => {
                super::log_closed(&conn, Some(&e));
                return;
            }
        }
    }
}

async fn refuse(mut send: SendStream, mut recv: RecvStream, denied: Denied) {
    debug!(code = %denied.code, detail = %denied.detail, "tunnel stream refused");
    let answer = Answer::Refused {
        code: denied.code,
        detail: denied.detail,
    };
    let _ = wire::write_answer(&mut send, &answer).await;
    let _ = send.finish();
    let _ = recv.stop(VarInt::from_u32(0));
}

fn deny(code: Code, detail: impl Into<String>) -> Denied {
    Denied {
        code,
        detail: detail.into(),
    }
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    client: AgoraId,
    context: Arc<Context>,
) {
    let header =
        match tokio::time::timeout(context.config.header_timeout, wire::read_header(&mut recv))
            .await
        {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return refuse(send, recv, deny(Code::BadHeader, e.to_string())).await,
            Err(_) => {
                return refuse(send, recv, deny(Code::BadHeader, "no header in time")).await;
            }
        };
    let now = clock::now();
    let provider = &context.provider;
    let target = match access::check(
        &header,
        client,
        context.id,
        now,
        |l| provider.live_workload(l, now),
        |l, g| provider.grant_revoked(l, g),
    ) {
        Ok(t) => t,
        Err(d) => return refuse(send, recv, d).await,
    };
    let runtime = match provider.runtime_of(&target.workload) {
        Ok(r) => r,
        Err(r) => return refuse(send, recv, deny(Code::Unreachable, r.detail)).await,
    };
    let upstream = match runtime.connect(&target.workload, target.port).await {
        Ok(s) => s,
        Err(e) => return refuse(send, recv, deny(Code::Unreachable, e.to_string())).await,
    };
    if wire::write_answer(&mut send, &Answer::Accepted)
        .await
        .is_err()
    {
        return;
    }
    debug!(lease = %target.lease, port = target.port, "tunnel stream open");
    context.meter.stream(&target.lease);
    // An opened stream is a sign of life even before its first byte.
    provider.touch(&target.workload, clock::now());
    pipe(send, recv, upstream, &target, &context).await;
}

async fn pipe(
    mut send: SendStream,
    mut recv: RecvStream,
    upstream: Box<dyn crate::runtime::ByteStream>,
    target: &Target,
    context: &Context,
) {
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    let (meter, provider) = (&context.meter, &context.provider);
    let counted = |to_workload: bool| {
        move |n: u64| {
            meter.add(&target.lease, to_workload, n);
            provider.touch(&target.workload, clock::now());
        }
    };
    let piping = super::pipe::quic_both_ways(
        &mut recv,
        &mut send,
        &mut up_read,
        &mut up_write,
        counted(true),
        counted(false),
    );
    // A revocation wakes the streams at once; the lease's end is polled.
    let mut revocations = provider.revocations();
    let lease_ends = async {
        loop {
            tokio::select! {
                () = tokio::time::sleep(context.config.liveness_period) => {}
                r = revocations.changed(), if target.grant.is_some() => {
                    if r.is_err() {
                        // The provider is gone: only the poll is left.
                        tokio::time::sleep(context.config.liveness_period).await;
                    }
                }
            }
            if provider
                .live_workload(&target.lease, clock::now())
                .is_none()
            {
                return RESET_LEASE_ENDED;
            }
            if let Some(g) = &target.grant
                && provider.grant_revoked(&target.lease, g)
            {
                return RESET_GRANT_REVOKED;
            }
        }
    };
    tokio::select! {
        r = piping => match r {
            Ok((up, down)) => debug!(lease = %target.lease, up, down, "tunnel stream done"),
            Err(e) => {
                debug!(lease = %target.lease, error = %e, "tunnel stream failed");
                let _ = send.reset(VarInt::from_u32(0));
                let _ = recv.stop(VarInt::from_u32(0));
            }
        },
        why = lease_ends => {
            if why == RESET_GRANT_REVOKED {
                info!(lease = %target.lease, grant = ?target.grant.map(|g| g.to_string()), "grant revoked: tunnel stream cut");
            } else {
                info!(lease = %target.lease, "lease ended: tunnel stream cut");
            }
            let _ = send.reset(VarInt::from_u32(why));
            let _ = recv.stop(VarInt::from_u32(why));
        }
    }
    // Already finished by the pipe's half-close, or reset: either way nothing more is sent.
    let _ = send.finish();
}
