//! Service types: validation, domain separation, gossip framing, grants, the directory.

use super::*;
use crate::gossip::{GossipError, MAX_GOSSIP_BYTES};
use crate::market::Verdict;
use crate::offer::tests::key;
use crate::signed::{Digest, Ed25519, Signer as _};

/// The provider of every fixture lease.
pub(crate) const PROVIDER: u8 = 100;

pub(crate) fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(s)
}

/// Lease `n`'s id.
pub(crate) fn lease(n: u8) -> LeaseId {
    Digest([n; 32])
}

/// The provider-signed capability of lease `lease_n` held by `owner`, for `ports`, expiring
/// at `expires_s`.
pub(crate) fn capability(
    owner: u8,
    lease_n: u8,
    ports: &[u16],
    expires_s: u64,
) -> Signed<Capability> {
    Signed::sign(
        Capability {
            lease: lease(lease_n),
            agent: key(owner).id(),
            provider: key(PROVIDER).id(),
            ports: ports.to_vec(),
            expires_at: at(expires_s),
        },
        &key(PROVIDER),
    )
    .unwrap()
}

/// `owner`'s record for `port` of lease `lease_n`, issued at `issued_s`, living 600 s (the
/// lease lives an hour past it).
pub(crate) fn record(owner: u8, lease_n: u8, port: u16, seq: u64, issued_s: u64) -> ServiceRecord {
    ServiceRecord {
        owner: key(owner).id(),
        lease: lease(lease_n),
        provider: key(PROVIDER).id(),
        port,
        name: format!("svc-{owner}-{lease_n}-{port}"),
        kind: ServiceKind::Mcp,
        description: "answers questions".into(),
        tunnel_endpoints: vec!["127.0.0.1:7000".into()],
        capability: capability(owner, lease_n, &[port], issued_s + 3600),
        seq,
        issued_at: at(issued_s),
        expires_at: at(issued_s + 600),
    }
}

/// [`record`], signed by its owner.
pub(crate) fn signed_record(
    owner: u8,
    lease_n: u8,
    port: u16,
    seq: u64,
    issued_s: u64,
) -> Signed<ServiceRecord> {
    Signed::sign(record(owner, lease_n, port, seq, issued_s), &key(owner)).unwrap()
}

/// `owner`'s signed withdrawal of (lease `lease_n`, `port`) up to `seq`.
pub(crate) fn withdrawal(
    owner: u8,
    lease_n: u8,
    port: u16,
    seq: u64,
    issued_s: u64,
) -> Signed<ServiceWithdrawal> {
    Signed::sign(
        ServiceWithdrawal {
            owner: key(owner).id(),
            lease: lease(lease_n),
            port,
            seq,
            issued_at: at(issued_s),
        },
        &key(owner),
    )
    .unwrap()
}

fn grant(ports: &[u16]) -> ServiceGrant {
    ServiceGrant {
        owner: key(1).id(),
        lease: lease(1),
        provider: key(PROVIDER).id(),
        grantee: key(2).id(),
        ports: ports.to_vec(),
        id: GrantId([7; GRANT_ID_LEN]),
        issued_at: at(100),
        expires_at: at(200),
    }
}

#[test]
fn a_record_round_trips_within_the_gossip_budget() {
    let r = signed_record(1, 1, 8080, 1, 1000);
    let back = Signed::<ServiceRecord>::decode(r.as_bytes(), &Ed25519).unwrap();
    assert_eq!(back.body(), r.body());
    let mut big = record(1, 1, 8080, 1, 1000);
    big.name = "n".repeat(MAX_NAME_BYTES);
    big.description = "d".repeat(MAX_DESCRIPTION_BYTES);
    big.tunnel_endpoints = vec!["e".repeat(128); MAX_ENDPOINTS];
    let big = Signed::sign(big, &key(1)).unwrap();
    let msg = ServiceGossip::Record(big.clone()).encode();
    assert!(msg.len() <= MAX_GOSSIP_BYTES, "{} bytes", msg.len());
    assert_eq!(
        ServiceGossip::decode(&msg, &Ed25519).unwrap(),
        ServiceGossip::Record(big)
    );
}

#[test]
fn records_are_validated() {
    type Mutation = Box<dyn Fn(&mut ServiceRecord)>;
    let cases: Vec<(&str, Mutation)> = vec![
        // Another agent's capability, another lease's, another provider's.
        (
            "capability",
            Box::new(|r| r.capability = capability(3, 1, &[8080], 5000)),
        ),
        (
            "capability",
            Box::new(|r| r.capability = capability(1, 2, &[8080], 5000)),
        ),
        ("capability", Box::new(|r| r.provider = key(5).id())),
        ("port", Box::new(|r| r.port = 22)),
        ("name", Box::new(|r| r.name = "Has Spaces".into())),
        ("name", Box::new(|r| r.name = String::new())),
        (
            "description",
            Box::new(|r| r.description = "x".repeat(MAX_DESCRIPTION_BYTES + 1)),
        ),
        (
            "description",
            Box::new(|r| r.description = "bell\u{7}".into()),
        ),
        (
            "tunnel_endpoints",
            Box::new(|r| r.tunnel_endpoints = vec!["x".into(); MAX_ENDPOINTS + 1]),
        ),
        ("expires_at", Box::new(|r| r.expires_at = r.issued_at)),
        (
            "expires_at",
            Box::new(|r| r.expires_at = r.issued_at.saturating_add(MAX_SERVICE_TTL * 2)),
        ),
        // Outliving the capability (which expires 3600 s after issue).
        ("expires_at", Box::new(|r| r.expires_at = at(1000 + 4000))),
    ];
    for (field, mutate) in cases {
        let mut r = record(1, 1, 8080, 1, 1000);
        mutate(&mut r);
        match r.validate() {
            Err(DecodeError::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // Only the owner signs its record.
    assert!(Signed::sign(record(1, 1, 8080, 1, 1000), &key(3)).is_err());
}

#[test]
fn signatures_are_domain_separated() {
    // The same payload bytes signed as a withdrawal never verify as another kind, and a
    // record's signer must be its owner: a forged signer byte breaks verification.
    let w = withdrawal(1, 1, 8080, 5, 1000);
    assert!(Signed::<ServiceGrant>::decode(w.as_bytes(), &Ed25519).is_err());
    assert!(Signed::<ServiceRecord>::decode(w.as_bytes(), &Ed25519).is_err());
    let g = Signed::sign(grant(&[8080]), &key(1)).unwrap();
    assert!(Signed::<ServiceWithdrawal>::decode(g.as_bytes(), &Ed25519).is_err());
    let mut tampered = signed_record(1, 1, 8080, 1, 1000).as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(Signed::<ServiceRecord>::decode(&tampered, &Ed25519).is_err());
    let domains = [
        ServiceRecord::DOMAIN,
        ServiceWithdrawal::DOMAIN,
        ServiceGrant::DOMAIN,
        Capability::DOMAIN,
    ];
    for (i, d) in domains.iter().enumerate() {
        assert!(!domains[..i].contains(d));
    }
}

#[test]
fn grants_are_validated_and_checked() {
    let mut own = grant(&[8080]);
    own.grantee = own.owner;
    assert!(own.validate().is_err());
    assert!(grant(&[]).validate().is_err());
    assert!(grant(&[0]).validate().is_err());
    assert!(grant(&[80, 80]).validate().is_err());
    let mut backwards = grant(&[80]);
    backwards.expires_at = backwards.issued_at;
    assert!(backwards.validate().is_err());
    assert!(
        Signed::sign(grant(&[8080]), &key(2)).is_err(),
        "only the owner signs"
    );

    let cap = capability(1, 1, &[8080, 9000], 5000);
    let cap = cap.body();
    let g = grant(&[8080, 22]);
    let grantee = key(2).id();
    assert_eq!(g.permits(cap, grantee, 8080, at(150)), Ok(()));
    assert!(matches!(
        g.permits(cap, key(3).id(), 8080, at(150)),
        Err(GrantProblem::NotGrantee { .. })
    ));
    assert!(matches!(
        g.permits(cap, grantee, 8080, at(200)),
        Err(GrantProblem::Expired { .. })
    ));
    assert!(matches!(
        g.permits(cap, grantee, 8080, at(99)),
        Err(GrantProblem::Expired { .. })
    ));
    // In the grant but not the capability, in the capability but not the grant.
    assert_eq!(
        g.permits(cap, grantee, 22, at(150)),
        Err(GrantProblem::Port(22))
    );
    assert_eq!(
        g.permits(cap, grantee, 9000, at(150)),
        Err(GrantProblem::Port(9000))
    );
    let other = capability(1, 2, &[8080], 5000);
    assert_eq!(
        g.permits(other.body(), grantee, 8080, at(150)),
        Err(GrantProblem::OtherLease)
    );
    let not_owner = capability(4, 1, &[8080], 5000);
    assert_eq!(
        g.permits(not_owner.body(), grantee, 8080, at(150)),
        Err(GrantProblem::OtherLease)
    );
}

#[test]
fn grant_ids_print_and_parse() {
    let id = GrantId([0xab; GRANT_ID_LEN]);
    let text = id.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(text.parse::<GrantId>(), Ok(id));
    assert_eq!(text.to_uppercase().parse::<GrantId>(), Ok(id));
    for bad in ["", "ab", &"g".repeat(32), &"+a".repeat(16), &"a".repeat(34)] {
        assert_eq!(bad.parse::<GrantId>(), Err(GrantIdParseError), "{bad}");
    }
}

#[test]
fn kinds_print_and_parse() {
    for k in ServiceKind::ALL {
        assert_eq!(k.as_str().parse::<ServiceKind>(), Ok(k));
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    assert!("ftp".parse::<ServiceKind>().is_err());
}

#[test]
fn services_gossip_is_framed_and_topic_checked() {
    let r = ServiceGossip::Record(signed_record(1, 1, 8080, 1, 1000));
    let w = ServiceGossip::Withdrawal(withdrawal(1, 1, 8080, 1, 1000));
    for msg in [&r, &w] {
        let bytes = msg.encode();
        assert_eq!(
            ServiceGossip::decode_on_topic(&bytes, SERVICES_TOPIC, &Ed25519).as_ref(),
            Ok(msg)
        );
        assert_eq!(msg.owner(), key(1).id());
        assert_eq!(msg.key().port, 8080);
        let wrong = ServiceGossip::decode_on_topic(&bytes, "agora/v1/offers/eu", &Ed25519);
        assert_eq!(wrong.unwrap_err().reason(), "wrong_topic");
        // Offers' decoder does not take services' kinds, nor the reverse.
        assert_eq!(
            crate::GossipMessage::decode(&bytes, &Ed25519).unwrap_err(),
            GossipError::UnknownKind(Some(bytes[0]))
        );
    }
    assert_eq!(r.kind(), "service");
    assert_eq!(w.kind(), "service_withdrawal");
    let offer = crate::offer::tests::signed(3, 1, 1000);
    let offer_bytes = crate::GossipMessage::Offer(offer).encode();
    assert_eq!(
        ServiceGossip::decode(&offer_bytes, &Ed25519)
            .unwrap_err()
            .reason(),
        "unknown_kind"
    );
    assert_eq!(
        ServiceGossip::decode(&[], &Ed25519).unwrap_err().reason(),
        "unknown_kind"
    );
    assert_eq!(
        ServiceGossip::decode(&vec![3; MAX_GOSSIP_BYTES + 1], &Ed25519)
            .unwrap_err()
            .reason(),
        "too_large"
    );
}

#[test]
fn the_directory_gives_verdicts_and_limits_owners() {
    let mut dir = Directory::default();
    let now = at(1000);
    let bytes = |m: ServiceGossip| m.encode();
    let first = bytes(ServiceGossip::Record(signed_record(1, 1, 8080, 1, 1000)));
    let out = dir.on_gossip(SERVICES_TOPIC, &first, now, &Ed25519);
    assert_eq!(out.verdict, Verdict::Accept);
    assert_eq!(out.kind, Some("service"));
    assert!(out.stored.is_some());
    assert_eq!(
        dir.on_gossip(SERVICES_TOPIC, &first, now, &Ed25519).verdict,
        Verdict::Known
    );
    let withdrawn = bytes(ServiceGossip::Withdrawal(withdrawal(1, 1, 8080, 1, 1000)));
    let out = dir.on_gossip(SERVICES_TOPIC, &withdrawn, now, &Ed25519);
    assert_eq!(out.verdict, Verdict::Accept);
    assert_eq!(out.removed.map(|k| k.port), Some(8080));
    assert!(dir.book().is_empty());
    // The old record, replayed, is stale now.
    assert!(matches!(
        dir.on_gossip(SERVICES_TOPIC, &first, now, &Ed25519).verdict,
        Verdict::Ignore("stale", Some(_))
    ));
    assert!(matches!(
        dir.on_gossip(SERVICES_TOPIC, &[3, 0], now, &Ed25519)
            .verdict,
        Verdict::Reject("malformed")
    ));
    // One owner floods: after the burst it is rate-limited, another owner is not.
    let mut limited = 0;
    for seq in 10..30 {
        let m = bytes(ServiceGossip::Record(signed_record(2, 1, 8080, seq, 1000)));
        if matches!(
            dir.on_gossip(SERVICES_TOPIC, &m, now, &Ed25519).verdict,
            Verdict::Ignore("rate_limited", _)
        ) {
            limited += 1;
        }
    }
    assert!(limited >= 10, "{limited}");
    let other = bytes(ServiceGossip::Record(signed_record(3, 1, 8080, 1, 1000)));
    assert_eq!(
        dir.on_gossip(SERVICES_TOPIC, &other, now, &Ed25519).verdict,
        Verdict::Accept
    );
    assert_eq!(dir.expire(at(1000 + 601)).len(), 2);
}
