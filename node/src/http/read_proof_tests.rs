#![allow(clippy::unwrap_used)]

use core::time::Duration;

use agora_attest::Identity;
use agora_protocol::lease::Delegation;
use axum::http::HeaderValue;

use super::*;
use crate::agent::tokens::signup_record;

fn t(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + s)
}

struct Fixture {
    agent: Identity,
    node: Identity,
    stranger: Identity,
    tokens: Tokens,
}

fn fixture() -> Fixture {
    let node = Identity::generate(&mut rand::rng());
    Fixture {
        agent: Identity::generate(&mut rand::rng()),
        tokens: Tokens::new(node.agora_id()),
        node,
        stranger: Identity::generate(&mut rand::rng()),
    }
}

fn b64(p: &Signed<ReadProof>) -> String {
    URL_SAFE_NO_PAD.encode(p.as_bytes())
}

/// A read proof by `signer` (for `agent`, with `delegation`) for `node`, issued at `at`.
fn proof(
    signer: &Identity,
    agent: &Identity,
    node: AgoraId,
    at: Timestamp,
    delegation: Option<Signed<Delegation>>,
) -> String {
    b64(&Signed::sign(
        ReadProof::new(agent.agora_id(), node, at, delegation),
        signer,
    )
    .unwrap())
}

fn delegation(f: &Fixture, to: AgoraId, ops: Vec<OpKind>) -> Signed<Delegation> {
    Signed::sign(
        Delegation {
            agent: f.agent.agora_id(),
            delegate: to,
            ops,
            spend_cap_credits: 0,
            issued_at: t(0),
            expires_at: t(3600),
        },
        &f.agent,
    )
    .unwrap()
}

/// What the node answers for `proof` (and `headers`) at t(100), asked about the agent.
fn ask(f: &Fixture, proof: Option<&str>, headers: &HeaderMap) -> Result<Reader, (u16, String)> {
    authorize(
        &f.tokens,
        &f.node.agora_id(),
        &f.agent.agora_id(),
        proof,
        headers,
        t(100),
    )
    .map_err(|e| {
        let code = e.code().to_owned();
        let status = axum::response::IntoResponse::into_response(e)
            .status()
            .as_u16();
        (status, code)
    })
}

fn refused(status: u16, code: &str) -> Result<Reader, (u16, String)> {
    Err((status, code.to_owned()))
}

#[test]
fn the_agents_own_fresh_proof_for_this_node_lists() {
    let f = fixture();
    let own = proof(&f.agent, &f.agent, f.node.agora_id(), t(100), None);
    assert_eq!(ask(&f, Some(&own), &HeaderMap::new()), Ok(Reader::Agent));
    // Fresh for five minutes either way of the node's clock.
    for at in [t(100).saturating_sub(Duration::from_secs(300)), t(400)] {
        let p = proof(&f.agent, &f.agent, f.node.agora_id(), at, None);
        assert_eq!(ask(&f, Some(&p), &HeaderMap::new()), Ok(Reader::Agent));
    }
}

#[test]
fn without_proof_strangers_other_nodes_and_stale_proofs_are_refused() {
    let f = fixture();
    let none = HeaderMap::new();
    assert_eq!(ask(&f, None, &none), refused(401, "proof_required"));
    // The stranger's proof of itself proves nothing about the agent.
    let strangers = proof(&f.stranger, &f.stranger, f.node.agora_id(), t(100), None);
    assert_eq!(ask(&f, Some(&strangers), &none), refused(401, "bad_proof"));
    // Nor can it pass the agent's proof off as signed by itself: the signature breaks.
    let own = Signed::sign(
        ReadProof::new(f.agent.agora_id(), f.node.agora_id(), t(100), None),
        &f.agent,
    )
    .unwrap();
    let mut forged = own.as_bytes().to_vec();
    forged[1..33].copy_from_slice(f.stranger.agora_id().as_bytes());
    let forged = URL_SAFE_NO_PAD.encode(&forged);
    assert_eq!(ask(&f, Some(&forged), &none), refused(401, "bad_proof"));
    // The agent's proof for another node.
    let elsewhere = proof(&f.agent, &f.agent, f.stranger.agora_id(), t(100), None);
    assert_eq!(
        ask(&f, Some(&elsewhere), &none),
        refused(401, "proof_wrong_node")
    );
    // Stale, and from too far in the future.
    for at in [t(100).saturating_sub(Duration::from_secs(301)), t(401)] {
        let p = proof(&f.agent, &f.agent, f.node.agora_id(), at, None);
        assert_eq!(ask(&f, Some(&p), &none), refused(409, "stale"), "{at}");
    }
    // Not a proof at all; a signed message of another kind does not verify as one.
    for garbage in ["not base64!", "AAAA"] {
        assert_eq!(
            ask(&f, Some(garbage), &none),
            refused(400, "malformed_proof"),
            "{garbage}"
        );
    }
    let other_kind = b64_of_delegation(&f);
    assert_eq!(ask(&f, Some(&other_kind), &none), refused(401, "bad_proof"));
}

fn b64_of_delegation(f: &Fixture) -> String {
    URL_SAFE_NO_PAD.encode(delegation(f, f.node.agora_id(), vec![OpKind::Status]).as_bytes())
}

#[test]
fn a_delegate_lists_under_a_status_delegation_only() {
    let f = fixture();
    let none = HeaderMap::new();
    let helper = Identity::generate(&mut rand::rng());
    let status = delegation(&f, helper.agora_id(), vec![OpKind::Status]);
    let p = proof(&helper, &f.agent, f.node.agora_id(), t(100), Some(status));
    assert_eq!(
        ask(&f, Some(&p), &none),
        Ok(Reader::Delegate(helper.agora_id()))
    );
    let exec = delegation(&f, helper.agora_id(), vec![OpKind::Exec]);
    let p = proof(&helper, &f.agent, f.node.agora_id(), t(100), Some(exec));
    assert_eq!(ask(&f, Some(&p), &none), refused(403, "unauthorized"));
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[test]
fn the_agents_token_with_status_lists_instead_of_a_proof() {
    let f = fixture();
    let issue = |agent: &Identity, ops: Vec<OpKind>| {
        let d = Signed::sign(
            Delegation {
                agent: agent.agora_id(),
                delegate: f.node.agora_id(),
                ops,
                spend_cap_credits: 0,
                issued_at: t(0),
                expires_at: t(3600),
            },
            agent,
        )
        .unwrap();
        let signup = signup_record(agent, f.node.agora_id());
        f.tokens
            .issue(d, signup, t(1), &mut rand::rng())
            .unwrap()
            .token
    };
    let ok = issue(&f.agent, vec![OpKind::Exec, OpKind::Status]);
    assert_eq!(ask(&f, None, &bearer_headers(&ok)), Ok(Reader::Token));
    let narrow = issue(&f.agent, vec![OpKind::Exec]);
    assert_eq!(
        ask(&f, None, &bearer_headers(&narrow)),
        refused(403, "unauthorized")
    );
    let strangers = issue(&f.stranger, vec![OpKind::Status]);
    assert_eq!(
        ask(&f, None, &bearer_headers(&strangers)),
        refused(403, "unauthorized")
    );
    assert_eq!(
        ask(&f, None, &bearer_headers("agt_unknown")),
        refused(401, "bad_token")
    );
    // A proof, when given, is what counts.
    let elsewhere = proof(&f.agent, &f.agent, f.stranger.agora_id(), t(100), None);
    assert_eq!(
        ask(&f, Some(&elsewhere), &bearer_headers(&ok)),
        refused(401, "proof_wrong_node")
    );
}
