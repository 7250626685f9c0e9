//! Quota committee (issue 7): certificate verification and an in-process lock round.
//!
//! Run: `cargo bench -p agora-protocol --bench committee`
//! (options: `AGORA_BENCH_LOCKS=2000`, the locks certified in the round benchmark).
//!
//! - `verify f=…`: `Certificate::decode` of a lock certificate (the op's signature and
//!   `2f + 1` votes), µs each.
//! - `validator vote`: one validator's `handle_request` for a lock carrying its previous
//!   certificate (applying it: `2f + 1` checks; the rules; signing the vote), µs each.
//! - `lock round n=4`: an agent certifies consecutive locks with 4 in-process validators,
//!   everything through wire bytes (request encode and decode with its proof, vote, answer
//!   encode and decode, aggregation): the protocol's share of lock-certificate latency, with
//!   no network. p50 and p99 per certified lock.

use std::time::{Duration, Instant};

use agora_protocol::attestation::{Attestation, Claims, Credential};
use agora_protocol::committee::{
    Action, Aggregator, AggregatorConfig, Answer, Certificate, ChainOp, Committee, Event, FreeTier,
    Genesis, LockRules, LockTerms, Op, Outcome, Request, Validator,
};
use agora_protocol::{Digest, Ed25519, Signed, Signer, Timestamp};
use ed25519_dalek::SigningKey;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const START: u64 = 1_800_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn committee(f: u32, issuer: &SigningKey) -> Res<(Committee, Vec<SigningKey>)> {
    let n = u8::try_from(3 * f + 1)?;
    let keys: Vec<SigningKey> = (1..=n).map(key).collect();
    let committee = Committee::new(Genesis {
        f,
        validators: keys.iter().map(Signer::id).collect(),
        issuers: vec![issuer.id()],
        start_unix_secs: START,
        epoch_secs: 86_400,
        free_tier: FreeTier {
            allowance_micro: 10_000_000,
            cap_per_epoch: 1000,
        },
        // Locks are never closed here: allow as many as the round benchmark makes.
        locks: LockRules {
            max_open: u32::MAX,
            ..LockRules::default()
        },
    })?;
    Ok((committee, keys))
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(START + secs)
}

fn credit(agent: &SigningKey, issuer: &SigningKey, credits: u64) -> Res<Op> {
    let attestation = Attestation {
        issuer: issuer.id(),
        subject: agent.id(),
        claims: Claims {
            organisation: None,
            tier: "standard".into(),
            spending_limit_credits: credits,
            owner: None,
            may_delegate: false,
            model: None,
            labels: Default::default(),
        },
        issued_at: at(0),
        not_before: at(0),
        expires_at: at(86_400),
        nonce: [7; 16],
    };
    let op = ChainOp {
        account: agent.id(),
        seq: 0,
        prev: None,
        action: Action::Credit(Credential::single(Signed::sign(attestation, issuer)?)),
        delegation: None,
    };
    Ok(Op::Chain(Signed::sign(op, agent)?))
}

fn lock(agent: &SigningKey, seq: u64, prev: Digest, provider: &SigningKey) -> Res<Op> {
    let op = ChainOp {
        account: agent.id(),
        seq,
        prev: Some(prev),
        action: Action::Lock(LockTerms {
            lease: Digest::of(&seq.to_be_bytes()),
            provider: provider.id(),
            amount_micro: 1,
            expires_at: at(3600),
        }),
        delegation: None,
    };
    Ok(Op::Chain(Signed::sign(op, agent)?))
}

/// Runs one op through an aggregator and `validators`, all through wire bytes.
fn round(
    committee: &Committee,
    validators: &mut [Validator<SigningKey>],
    now: Timestamp,
    op: Op,
    history: Vec<Certificate>,
) -> Res<Certificate> {
    let mut client = Aggregator::new(
        committee.clone(),
        op,
        history,
        now,
        AggregatorConfig::default(),
    );
    while let Some(tx) = client.poll_transmit() {
        let bytes = tx.request.encode()?;
        let Some(v) = validators.iter_mut().find(|v| v.id() == tx.to) else {
            continue;
        };
        let request = Request::decode(&bytes, committee, &Ed25519)?;
        let answer = match v.handle_request(now, &request) {
            Outcome::Persist(p) => Answer::Vote(v.release(p)),
            Outcome::Vote(vote) => Answer::Vote(vote),
            Outcome::Pending => continue,
            Outcome::Refused(r) => Answer::Refused(r),
        };
        let answer = answer.encode()?;
        let _ = client.handle_bytes(now, tx.to, &answer, &Ed25519);
    }
    match client.poll_event() {
        Some(Event::Certified(c)) => Ok(c),
        other => Err(format!("not certified: {other:?}").into()),
    }
}

fn validators(committee: &Committee, keys: &[SigningKey]) -> Res<Vec<Validator<SigningKey>>> {
    Ok(keys
        .iter()
        .map(|k| Validator::new(committee.clone(), k.clone()))
        .collect::<Result<_, _>>()?)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() -> Res<()> {
    let locks: u64 = std::env::var("AGORA_BENCH_LOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (agent, issuer, provider) = (key(200), key(201), key(202));
    println!("| measurement | result |");
    println!("|---|---:|");

    for f in [1u32, 7, 21] {
        let (committee, keys) = committee(f, &issuer)?;
        let mut vs = validators(&committee, &keys)?;
        let c0 = round(
            &committee,
            &mut vs,
            at(1),
            credit(&agent, &issuer, 100)?,
            vec![],
        )?;
        let c1 = round(
            &committee,
            &mut vs,
            at(2),
            lock(&agent, 1, c0.digest(), &provider)?,
            vec![c0.clone()],
        )?;
        let bytes = c1.encode()?;
        let iterations = 3000 / (2 * f + 1);
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(Certificate::decode(&bytes, &committee, &Ed25519)?);
        }
        let each = start.elapsed() / iterations;
        println!(
            "| verify f={f} ({} votes, {} bytes) | {:.1} µs |",
            2 * f + 1,
            bytes.len(),
            each.as_secs_f64() * 1e6
        );
        if f == 1 {
            // One validator voting on the next lock, carrying c1 (applied anew each time).
            let next = lock(&agent, 2, c1.digest(), &provider)?;
            let request = Request {
                op: next,
                proofs: vec![c1.clone()],
            };
            let first = keys.first().ok_or("no validator")?;
            let n = 1000u32;
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let mut v = Validator::new(committee.clone(), first.clone())?;
                v.handle_certificate(&c0)?;
                let start = Instant::now();
                let outcome = v.handle_request(at(3), &request);
                total += start.elapsed();
                let _ = std::hint::black_box(outcome);
            }
            println!(
                "| validator vote (apply proof, check, sign), f=1 | {:.1} µs |",
                (total / n).as_secs_f64() * 1e6
            );
        }
    }

    let (committee, keys) = committee(1, &issuer)?;
    let mut vs = validators(&committee, &keys)?;
    let mut head = round(
        &committee,
        &mut vs,
        at(1),
        credit(&agent, &issuer, 1_000_000)?,
        vec![],
    )?;
    let mut times = Vec::new();
    for seq in 1..=locks {
        let op = lock(&agent, seq, head.digest(), &provider)?;
        let start = Instant::now();
        let cert = round(&committee, &mut vs, at(2), op, vec![head.clone()])?;
        times.push(start.elapsed());
        head = cert;
    }
    times.sort();
    println!(
        "| lock round n=4 in process, {locks} locks | p50 {:.0} µs, p99 {:.0} µs |",
        percentile(&times, 50).as_secs_f64() * 1e6,
        percentile(&times, 99).as_secs_f64() * 1e6
    );
    Ok(())
}
