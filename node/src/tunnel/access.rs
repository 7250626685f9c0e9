//! The provider's checks on a tunnel stream's header, pure (the lease lookup is passed in).
//!
//! In order: the token decodes and verifies and this provider signed it (`bad_token`); its
//! agent is the connection's client key (`not_your_lease`); the token is not past its own
//! expiry and the lease runs here, unexpired (`lease_ended`); the port is among the token's
//! (`port_not_allowed`).
//!
//! The token's expiry counts even while the lease runs on: an extension re-signs the grant
//! with a new token, and a token that leaked stops working at the time it says.
//!
//! A header carrying the owner's [`ServiceGrant`] is another agent's: then the grant must
//! verify and be for the token's lease, provider and owner (`bad_grant`), name the client's
//! key (`not_your_lease`), be valid now (`grant_expired`), not be revoked (`grant_revoked`)
//! and list the port, which the token must list too (`port_not_allowed`).

use agora_protocol::lease::{Capability, LeaseId};
use agora_protocol::service::{GrantId, GrantProblem, ServiceGrant};
use agora_protocol::{AgoraId, Ed25519, Signed, Timestamp};

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
    /// The owner's grant the stream came in under (another agent's stream), if any: the
    /// stream is cut when it is revoked.
    pub grant: Option<GrantId>,
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

/// Checks `header` from the client whose TLS key is `client` at provider `provider` at time
/// `now`; `live` names the workload of a lease that is running and unexpired (`None`
/// otherwise), `revoked` says whether the owner revoked a grant of a lease.
///
/// # Errors
/// [`Denied`] with the first failed check's code.
pub fn check(
    header: &Header,
    client: AgoraId,
    provider: AgoraId,
    now: Timestamp,
    live: impl FnOnce(&LeaseId) -> Option<WorkloadId>,
    revoked: impl FnOnce(&LeaseId, &GrantId) -> bool,
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
    let grant = match &header.grant {
        None if body.agent != client => {
            return Err(denied(
                Code::NotYourLease,
                format!("the token is {}'s, not {client}'s", body.agent),
            ));
        }
        None => None,
        Some(bytes) => Some(check_grant(bytes, body, client, header.port, now, revoked)?),
    };
    if body.expires_at <= now {
        return Err(denied(
            Code::LeaseEnded,
            format!("the token expired at {}", body.expires_at),
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
        grant,
    })
}

/// The grant checks of [`check`]: the grant's id when it lets `client` reach `port`.
fn check_grant(
    bytes: &[u8],
    token: &Capability,
    client: AgoraId,
    port: u16,
    now: Timestamp,
    revoked: impl FnOnce(&LeaseId, &GrantId) -> bool,
) -> Result<GrantId, Denied> {
    let grant = Signed::<ServiceGrant>::decode(bytes, &Ed25519)
        .map_err(|e| denied(Code::BadGrant, format!("the grant does not verify: {e}")))?;
    let g = grant.body();
    g.permits(token, client, port, now).map_err(|p| {
        let code = match p {
            GrantProblem::OtherLease => Code::BadGrant,
            GrantProblem::NotGrantee { .. } => Code::NotYourLease,
            GrantProblem::Expired { .. } => Code::GrantExpired,
            GrantProblem::Port(_) => Code::PortNotAllowed,
        };
        denied(code, p.to_string())
    })?;
    if revoked(&g.lease, &g.id) {
        return Err(denied(
            Code::GrantRevoked,
            format!("the owner revoked grant {}", g.id),
        ));
    }
    Ok(g.id)
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
            Header::new(
                port,
                self.token_by(&self.provider, self.provider.agora_id()),
            )
        }

        fn check(&self, header: &Header, client: AgoraId, live: bool) -> Result<Target, Denied> {
            self.check_at(header, client, live, Timestamp::from_unix_millis(5_000))
        }

        fn check_at(
            &self,
            header: &Header,
            client: AgoraId,
            live: bool,
            now: Timestamp,
        ) -> Result<Target, Denied> {
            let lease = self.lease;
            check(
                header,
                client,
                self.provider.agora_id(),
                now,
                move |l| {
                    (live && *l == lease)
                        .then(|| WorkloadId::try_from("l-0123".to_owned()).unwrap())
                },
                |_, _| false,
            )
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
        let garbage = Header::new(8080, vec![1, 2, 3]);
        assert_eq!(code(f.check(&garbage, agent, true)), Code::BadToken);
        let forger = Identity::generate(&mut rand::rng());
        let forged = Header::new(8080, f.token_by(&forger, forger.agora_id()));
        assert_eq!(code(f.check(&forged, agent, true)), Code::BadToken);
        // Signed by the forger but naming the provider: the signature is not the author's.
        let claimed = Header::new(8080, f.token_by(&forger, f.provider.agora_id()));
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

    #[test]
    fn an_expired_token_is_refused_even_while_its_lease_runs() {
        let f = Fixture::new();
        let agent = f.agent.agora_id();
        // The fixture's token expires at 10 s; the lease itself is still live.
        let at = |ms| Timestamp::from_unix_millis(ms);
        assert!(f.check_at(&f.header(8080), agent, true, at(9_999)).is_ok());
        for ms in [10_000, 60_000] {
            let d = f
                .check_at(&f.header(8080), agent, true, at(ms))
                .unwrap_err();
            assert_eq!(d.code, Code::LeaseEnded, "{}", d.detail);
            assert!(d.detail.contains("expired"), "{}", d.detail);
        }
        // A forged token is still `bad_token` first, whatever its expiry.
        let forger = Identity::generate(&mut rand::rng());
        let forged = Header::new(8080, f.token_by(&forger, forger.agora_id()));
        assert_eq!(
            code(f.check_at(&forged, agent, true, at(60_000))),
            Code::BadToken
        );
    }

    #[test]
    fn a_grantee_gets_in_with_the_owners_grant_and_only_so() {
        let f = Fixture::new();
        let grantee = Identity::generate(&mut rand::rng());
        let id = GrantId([1; 16]);
        let grant = |signer: &Identity, lease: LeaseId, ports: Vec<u16>, expires_ms: u64| {
            Signed::sign(
                ServiceGrant {
                    owner: signer.agora_id(),
                    lease,
                    provider: f.provider.agora_id(),
                    grantee: grantee.agora_id(),
                    ports,
                    id,
                    issued_at: Timestamp::from_unix_millis(1_000),
                    expires_at: Timestamp::from_unix_millis(expires_ms),
                },
                signer,
            )
            .unwrap()
            .as_bytes()
            .to_vec()
        };
        let with = |grant: Vec<u8>, port: u16| Header {
            grant: Some(grant),
            ..f.header(port)
        };
        let good = grant(&f.agent, f.lease, vec![8080, 22], 9_000);
        let t = f
            .check(&with(good.clone(), 8080), grantee.agora_id(), true)
            .unwrap();
        assert_eq!((t.port, t.grant), (8080, Some(id)));
        // The lease's own agent needs no grant, and its streams carry none.
        assert_eq!(
            f.check(&f.header(8080), f.agent.agora_id(), true)
                .unwrap()
                .grant,
            None
        );
        // Without the grant, or presented by another key.
        assert_eq!(
            code(f.check(&f.header(8080), grantee.agora_id(), true)),
            Code::NotYourLease
        );
        let stranger = Identity::generate(&mut rand::rng()).agora_id();
        assert_eq!(
            code(f.check(&with(good.clone(), 8080), stranger, true)),
            Code::NotYourLease
        );
        // Garbage, another signer than the lease's agent, another lease.
        let g = grantee.agora_id();
        assert_eq!(
            code(f.check(&with(vec![1, 2], 8080), g, true)),
            Code::BadGrant
        );
        let not_owner = grant(
            &Identity::generate(&mut rand::rng()),
            f.lease,
            vec![8080],
            9_000,
        );
        assert_eq!(
            code(f.check(&with(not_owner, 8080), g, true)),
            Code::BadGrant
        );
        let other = grant(&f.agent, Digest::of(b"other"), vec![8080], 9_000);
        assert_eq!(code(f.check(&with(other, 8080), g, true)), Code::BadGrant);
        // Expired (the fixture checks at 5 s), a port outside the token though granted.
        let old = grant(&f.agent, f.lease, vec![8080], 4_000);
        assert_eq!(code(f.check(&with(old, 8080), g, true)), Code::GrantExpired);
        assert_eq!(
            code(f.check(&with(good.clone(), 22), g, true)),
            Code::PortNotAllowed
        );
        // Revoked, and an ended lease.
        let revoked = check(
            &with(good.clone(), 8080),
            g,
            f.provider.agora_id(),
            Timestamp::from_unix_millis(5_000),
            |_| WorkloadId::try_from("l-0123".to_owned()).ok(),
            |l, r| *l == f.lease && *r == id,
        );
        assert_eq!(code(revoked), Code::GrantRevoked);
        assert_eq!(code(f.check(&with(good, 8080), g, false)), Code::LeaseEnded);
    }
}
