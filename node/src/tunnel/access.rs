//! The provider's checks on a tunnel stream's header, pure (the lease lookup is passed in).
//!
//! In order: the token decodes and verifies and this provider signed it (`bad_token`); its
//! agent is the connection's client key (`not_your_lease`); the lease runs here and is not
//! past its expiry (`lease_ended`); the port is among the token's (`port_not_allowed`).

use agora_protocol::lease::{Capability, LeaseId};
use agora_protocol::{AgoraId, Ed25519, Signed};

use super::wire::{Code, Header};
use crate::runtime::WorkloadId;

/// What a checked stream may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The lease (for byte counters and logs).
    pub lease: LeaseId,
    /// Its workload.
    pub workload: WorkloadId,
    /// The port inside it.
    pub port: u16,
}

/// A refused stream: the code and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The stable code.
    pub code: Code,
    /// What was wrong.
    pub detail: String,
}

fn denied(code: Code, detail: impl Into<String>) -> Denied {
    Denied {
        code,
        detail: detail.into(),
    }
}

/// Checks `header` from the client whose TLS key is `client` at provider `provider`;
/// `live` names the workload of a lease that is running and unexpired (`None` otherwise).
///
/// # Errors
/// [`Denied`] with the first failed check's code.
pub fn check(
    header: &Header,
    client: AgoraId,
    provider: AgoraId,
    live: impl FnOnce(&LeaseId) -> Option<WorkloadId>,
) -> Result<Target, Denied> {
    let token = Signed::<Capability>::decode(&header.token, &Ed25519)
        .map_err(|e| denied(Code::BadToken, format!("the token does not verify: {e}")))?;
    let body = token.body();
    if token.signer() != provider || body.provider != provider {
        return Err(denied(
            Code::BadToken,
            format!("the token is {}'s, not this provider's", token.signer()),
        ));
    }
    if body.agent != client {
        return Err(denied(
            Code::NotYourLease,
            format!("the token is {}'s, not {client}'s", body.agent),
        ));
    }
    let workload = live(&body.lease).ok_or_else(|| {
        denied(
            Code::LeaseEnded,
            format!("lease {} is not running here", body.lease),
        )
    })?;
    if !body.ports.contains(&header.port) {
        return Err(denied(
            Code::PortNotAllowed,
            format!(
                "port {} is not among the token's {:?}",
                header.port, body.ports
            ),
        ));
    }
    Ok(Target {
        lease: body.lease,
        workload,
        port: header.port,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use agora_attest::Identity;
    use agora_protocol::{Digest, Timestamp};

    use super::*;

    struct Fixture {
        provider: Identity,
        agent: Identity,
        lease: LeaseId,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                provider: Identity::generate(&mut rand::rng()),
                agent: Identity::generate(&mut rand::rng()),
                lease: Digest::of(b"lease"),
            }
        }

        fn token_by(&self, signer: &Identity, provider: AgoraId) -> Vec<u8> {
            Signed::sign(
                Capability {
                    lease: self.lease,
                    agent: self.agent.agora_id(),
                    provider,
                    ports: vec![8080],
                    expires_at: Timestamp::from_unix_millis(10_000),
                },
                signer,
            )
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_default()
        }

        fn header(&self, port: u16) -> Header {
            Header {
                port,
                token: self.token_by(&self.provider, self.provider.agora_id()),
            }
        }

        fn check(&self, header: &Header, client: AgoraId, live: bool) -> Result<Target, Denied> {
            let lease = self.lease;
            check(header, client, self.provider.agora_id(), move |l| {
                (live && *l == lease).then(|| WorkloadId::try_from("l-0123".to_owned()).unwrap())
            })
        }
    }

    fn code(r: Result<Target, Denied>) -> Code {
        r.err().map_or(Code::BadHeader, |d| d.code)
    }

    #[test]
    fn a_good_header_reaches_its_port() {
        let f = Fixture::new();
        let t = f.check(&f.header(8080), f.agent.agora_id(), true).unwrap();
        assert_eq!((t.lease, t.port), (f.lease, 8080));
    }

    #[test]
    fn each_check_has_its_code() {
        let f = Fixture::new();
        let agent = f.agent.agora_id();
        // Tampered bytes, garbage, another signer.
        let mut tampered = f.header(8080);
        if let Some(b) = tampered.token.get_mut(40) {
            *b ^= 1;
        }
        assert_eq!(code(f.check(&tampered, agent, true)), Code::BadToken);
        let garbage = Header {
            port: 8080,
            token: vec![1, 2, 3],
        };
        assert_eq!(code(f.check(&garbage, agent, true)), Code::BadToken);
        let forger = Identity::generate(&mut rand::rng());
        let forged = Header {
            port: 8080,
            token: f.token_by(&forger, forger.agora_id()),
        };
        assert_eq!(code(f.check(&forged, agent, true)), Code::BadToken);
        // Signed by the forger but naming the provider: the signature is not the author's.
        let claimed = Header {
            port: 8080,
            token: f.token_by(&forger, f.provider.agora_id()),
        };
        assert_eq!(code(f.check(&claimed, agent, true)), Code::BadToken);
        // Someone else's token.
        let other = Identity::generate(&mut rand::rng()).agora_id();
        assert_eq!(
            code(f.check(&f.header(8080), other, true)),
            Code::NotYourLease
        );
        // An ended lease, then a port outside the token.
        assert_eq!(
            code(f.check(&f.header(8080), agent, false)),
            Code::LeaseEnded
        );
        assert_eq!(
            code(f.check(&f.header(22), agent, true)),
            Code::PortNotAllowed
        );
    }
}
