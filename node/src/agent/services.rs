//! Building what an owner signs for its published services, from its lease's
//! provider-signed grant: the [`ServiceRecord`] of a port (and its withdrawal), a
//! [`ServiceGrant`] for another agent's key, and the records an extension of the lease
//! republishes with the re-signed capability. Shared by the `agora agent` CLI and the MCP
//! tools of `agora mcp --key`, which sign with the agent's own key (a record or grant is the
//! owner's word: no delegate signs one).
//!
//! ```text
//! lease grant (provider-signed: capability, endpoints)
//!   ├─ record(port, name, kind, …)  ─▶ POST /v1/services ─▶ gossip + sync
//!   ├─ grant(grantee, ports, ttl)   ─▶ handed to the grantee
//!   └─ after an extension: refreshed(listed records) ─▶ POST /v1/services again
//! ```

use std::time::Duration;

use agora_attest::Identity;
use agora_protocol::lease::{LeaseGrant, LeaseId};
use agora_protocol::service::{
    GrantId, MAX_SERVICE_TTL, ServiceGrant, ServiceKind, ServiceRecord, ServiceWithdrawal,
};
use agora_protocol::{AgoraId, EncodeError, Signed, Timestamp};

/// How long a grant works when no TTL is given.
pub const DEFAULT_GRANT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a record, withdrawal or grant could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A port the lease's capability does not open.
    #[error("port {port} is not one of the lease's ports {ports:?}")]
    Port {
        /// The port asked for.
        port: u16,
        /// Those the capability opens.
        ports: Vec<u16>,
    },
    /// The lease's capability has expired.
    #[error("the lease's capability expired at {0}")]
    Expired(Timestamp),
    /// No port was named.
    #[error("name at least one port")]
    NoPort,
    /// The grant would name the owner itself.
    #[error("a grant is for another agent's key, not the owner's")]
    SelfGrant,
    /// A protocol bound was broken (a field is named).
    #[error("cannot sign: {0}")]
    Sign(#[from] EncodeError),
}

/// What the owner publishes about one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The workload port.
    pub port: u16,
    /// Its name.
    pub name: String,
    /// What it speaks.
    pub kind: ServiceKind,
    /// What it does.
    pub description: String,
    /// How long it stays listed (default and most [`MAX_SERVICE_TTL`]; never past the
    /// capability).
    pub ttl: Option<Duration>,
}

/// Checks that `grant`'s capability opens every one of `ports`.
///
/// # Errors
/// [`ServiceError::Port`] naming the first that it does not.
pub fn check_ports(grant: &LeaseGrant, ports: &[u16]) -> Result<(), ServiceError> {
    let open = &grant.token.body().ports;
    match ports.iter().find(|p| !open.contains(p)) {
        Some(&port) => Err(ServiceError::Port {
            port,
            ports: open.clone(),
        }),
        None => Ok(()),
    }
}

/// The record of `what` on the lease of `grant` (the owner's, provider-signed, verified by
/// the caller), signed by `owner` at `now`: listed until its TTL or the capability's
/// expiry, whichever is sooner.
///
/// # Errors
/// [`ServiceError`]: a port outside the lease, an expired capability, a bound broken.
pub fn record(
    owner: &Identity,
    grant: &LeaseGrant,
    what: &Publication,
    now: Timestamp,
) -> Result<Signed<ServiceRecord>, ServiceError> {
    check_ports(grant, &[what.port])?;
    let ttl = what.ttl.unwrap_or(MAX_SERVICE_TTL).min(MAX_SERVICE_TTL);
    let expires_at = now.saturating_add(ttl).min(grant.token.body().expires_at);
    if expires_at <= now {
        return Err(ServiceError::Expired(grant.token.body().expires_at));
    }
    Ok(Signed::sign(
        ServiceRecord {
            owner: owner.agora_id(),
            lease: grant.lease,
            provider: grant.provider,
            port: what.port,
            name: what.name.clone(),
            kind: what.kind,
            description: what.description.clone(),
            tunnel_endpoints: grant.tunnel_endpoints.clone(),
            capability: grant.token.clone(),
            seq: now.as_unix_millis(),
            issued_at: now,
            expires_at,
        },
        owner,
    )?)
}

/// `owner`'s withdrawal of its record of `port` of `lease`, signed at `now`.
///
/// # Errors
/// [`ServiceError::Sign`] (not for valid input).
pub fn withdrawal(
    owner: &Identity,
    lease: LeaseId,
    port: u16,
    now: Timestamp,
) -> Result<Signed<ServiceWithdrawal>, ServiceError> {
    Ok(Signed::sign(
        ServiceWithdrawal {
            owner: owner.agora_id(),
            lease,
            port,
            seq: now.as_unix_millis(),
            issued_at: now,
        },
        owner,
    )?)
}

/// `owner`'s grant letting `grantee`'s key reach `ports` of the lease of `grant` from `now`
/// for `ttl` (default [`DEFAULT_GRANT_TTL`]; the lease's end ends it anyway), with a random
/// id (what a revocation names).
///
/// # Errors
/// [`ServiceError`]: no port, a port outside the lease, the owner itself as grantee.
pub fn grant(
    owner: &Identity,
    grant: &LeaseGrant,
    grantee: AgoraId,
    ports: &[u16],
    ttl: Option<Duration>,
    now: Timestamp,
) -> Result<Signed<ServiceGrant>, ServiceError> {
    if ports.is_empty() {
        return Err(ServiceError::NoPort);
    }
    if grantee == owner.agora_id() {
        return Err(ServiceError::SelfGrant);
    }
    check_ports(grant, ports)?;
    Ok(Signed::sign(
        ServiceGrant {
            owner: owner.agora_id(),
            lease: grant.lease,
            provider: grant.provider,
            grantee,
            ports: ports.to_vec(),
            id: GrantId(rand::random()),
            issued_at: now,
            expires_at: now.saturating_add(ttl.unwrap_or(DEFAULT_GRANT_TTL)),
        },
        owner,
    )?)
}

/// The owner's records among `listed` (records a node lists for the lease, any order)
/// that an extension leaves behind, re-signed at `now` with `grant`'s newer capability: a
/// grantee's tunnel presents the capability of the record it found, and the provider
/// refuses one past its own expiry, so an extension must reach the records too.
///
/// Each keeps its port, name, kind and description; one that was listed until the old
/// capability's expiry is listed until the new one's (at most [`MAX_SERVICE_TTL`] from
/// now), one the owner gave a shorter TTL keeps its expiry. Records of other owners, leases
/// or providers, records already carrying a capability as new, and expired ones are left
/// out.
///
/// # Errors
/// [`ServiceError::Sign`] (not for valid input).
pub fn refreshed(
    owner: &Identity,
    grant: &LeaseGrant,
    listed: &[Signed<ServiceRecord>],
    now: Timestamp,
) -> Result<Vec<Signed<ServiceRecord>>, ServiceError> {
    let new_expiry = grant.token.body().expires_at;
    let mut out = Vec::new();
    for r in listed {
        let old = r.body();
        let old_cap = old.capability.body().expires_at;
        if r.signer() != owner.agora_id()
            || old.lease != grant.lease
            || old.provider != grant.provider
            || old_cap >= new_expiry
            || old.expires_at <= now
            || !grant.token.body().ports.contains(&old.port)
        {
            continue;
        }
        // Keep one record per port (a node lists one per key anyway).
        if out
            .iter()
            .any(|n: &Signed<ServiceRecord>| n.body().port == old.port)
        {
            continue;
        }
        let expires_at = if old.expires_at >= old_cap {
            now.saturating_add(MAX_SERVICE_TTL).min(new_expiry)
        } else {
            old.expires_at
        };
        out.push(Signed::sign(
            ServiceRecord {
                tunnel_endpoints: grant.tunnel_endpoints.clone(),
                capability: grant.token.clone(),
                seq: now.as_unix_millis().max(old.seq.saturating_add(1)),
                issued_at: now,
                expires_at,
                ..old.clone()
            },
            owner,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use agora_protocol::Ed25519;

    use super::*;
    use crate::lease::gateway::contact::fixtures::{at, signed_grant};

    fn publication(port: u16, ttl: Option<u64>) -> Publication {
        Publication {
            port,
            name: "greeter".into(),
            kind: ServiceKind::Mcp,
            description: "greets".into(),
            ttl: ttl.map(Duration::from_secs),
        }
    }

    #[test]
    fn records_withdrawals_and_grants_are_the_owners_and_bounded_by_the_lease() {
        let provider = Identity::generate(&mut rand::rng());
        let owner = Identity::generate(&mut rand::rng());
        let lease = signed_grant(
            &provider,
            owner.agora_id(),
            vec![8080, 9000],
            (at(0), at(600)),
            vec!["127.0.0.1:7001".into()],
        );
        let g = lease.body();
        let r = record(&owner, g, &publication(8080, None), at(100)).unwrap();
        assert_eq!(r.signer(), owner.agora_id());
        assert_eq!(r.body().expires_at, at(600), "bounded by the capability");
        assert_eq!(r.body().tunnel_endpoints, g.tunnel_endpoints);
        // What a node checks: it decodes and verifies.
        Signed::<ServiceRecord>::decode(r.as_bytes(), &Ed25519).unwrap();
        let short = record(&owner, g, &publication(8080, Some(60)), at(100)).unwrap();
        assert_eq!(short.body().expires_at, at(160));
        assert!(matches!(
            record(&owner, g, &publication(22, None), at(100)),
            Err(ServiceError::Port { port: 22, .. })
        ));
        assert!(matches!(
            record(&owner, g, &publication(8080, None), at(600)),
            Err(ServiceError::Expired(_))
        ));
        let w = withdrawal(&owner, g.lease, 8080, at(100)).unwrap();
        assert_eq!(w.body().key(), r.body().key());

        let grantee = Identity::generate(&mut rand::rng()).agora_id();
        let gr = grant(&owner, g, grantee, &[8080], None, at(100)).unwrap();
        assert_eq!(gr.body().grantee, grantee);
        assert_eq!(
            gr.body().expires_at,
            at(100).saturating_add(DEFAULT_GRANT_TTL)
        );
        assert!(
            gr.body()
                .permits(g.token.body(), grantee, 8080, at(200))
                .is_ok()
        );
        assert!(matches!(
            grant(&owner, g, grantee, &[22], None, at(100)),
            Err(ServiceError::Port { .. })
        ));
        assert!(matches!(
            grant(&owner, g, owner.agora_id(), &[8080], None, at(100)),
            Err(ServiceError::SelfGrant)
        ));
        assert!(matches!(
            grant(&owner, g, grantee, &[], None, at(100)),
            Err(ServiceError::NoPort)
        ));
    }

    #[test]
    fn an_extension_re_signs_the_records_it_leaves_behind() {
        let provider = Identity::generate(&mut rand::rng());
        let owner = Identity::generate(&mut rand::rng());
        let ports = vec![8080, 9000];
        let endpoints = vec!["127.0.0.1:7001".to_owned()];
        let old = signed_grant(
            &provider,
            owner.agora_id(),
            ports.clone(),
            (at(0), at(600)),
            endpoints.clone(),
        );
        let until_lease = record(&owner, old.body(), &publication(8080, None), at(100)).unwrap();
        let short = record(&owner, old.body(), &publication(9000, Some(60)), at(100)).unwrap();
        let stranger = Identity::generate(&mut rand::rng());
        let their_lease = signed_grant(
            &provider,
            stranger.agora_id(),
            vec![8080],
            (at(0), at(600)),
            endpoints.clone(),
        );
        let theirs = record(
            &stranger,
            their_lease.body(),
            &publication(8080, None),
            at(100),
        )
        .unwrap();
        let new = signed_grant(
            &provider,
            owner.agora_id(),
            ports,
            (at(0), at(4200)),
            endpoints,
        );
        let listed = [until_lease.clone(), short.clone(), theirs];
        let fresh = refreshed(&owner, new.body(), &listed, at(150)).unwrap();
        assert_eq!(fresh.len(), 2);
        let (a, b) = (fresh[0].body(), fresh[1].body());
        assert_eq!(a.port, 8080);
        assert_eq!(a.capability, new.body().token);
        assert_eq!(a.expires_at, at(4200), "listed until the new expiry");
        assert!(a.seq > until_lease.body().seq);
        assert_eq!((a.name.as_str(), a.kind), ("greeter", ServiceKind::Mcp));
        assert_eq!(b.port, 9000);
        assert_eq!(b.expires_at, at(160), "the owner's shorter TTL stands");
        // Already fresh: nothing to do.
        assert!(
            refreshed(&owner, new.body(), &fresh, at(151))
                .unwrap()
                .is_empty()
        );
        // Expired ones are not brought back.
        assert!(
            refreshed(&owner, new.body(), &[short], at(200))
                .unwrap()
                .is_empty()
        );
    }
}
