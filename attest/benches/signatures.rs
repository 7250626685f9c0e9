//! Signature throughput: signing and verifying, single and batched.
//!
//! Run: `cargo bench -p agora-attest --bench signatures`. Criterion's "thrpt" column is
//! operations per second on one core; results go in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use agora_attest::Identity;
use agora_attest::issue::{AttestationRequest, issue};
use agora_protocol::{Attestation, Claims, Ed25519, Signed, Timestamp};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer as _, Verifier as _, VerifyingKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const BATCH: usize = 64;
const MESSAGE: &[u8] = b"agora benchmark message of a typical small size, 64 bytes long..";

fn attestation(rng: &mut ChaCha20Rng, issuer: &Identity) -> Signed<Attestation> {
    let subject = Identity::generate(rng).agora_id();
    let request = AttestationRequest {
        subject,
        claims: Claims {
            organisation: Some("Acme".into()),
            tier: "standard".into(),
            spending_limit_credits: 10_000,
            owner: None,
            may_delegate: false,
            model: Some("agent-model".into()),
            labels: BTreeMap::new(),
        },
        valid_for: Duration::from_secs(3600),
    };
    issue(
        issuer,
        request,
        Timestamp::from_unix_secs(1_700_000_000),
        rng,
    )
    .unwrap_or_else(|e| unreachable!("benchmark attestation is valid: {e}"))
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let keys: Vec<Identity> = (0..BATCH).map(|_| Identity::generate(&mut rng)).collect();
    let Some(key) = keys.first() else { return };

    let mut group = c.benchmark_group("ed25519");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| key.signing_key().sign(black_box(MESSAGE)))
    });
    let sig = key.signing_key().sign(MESSAGE);
    let vk = key.signing_key().verifying_key();
    group.bench_function("verify_strict", |b| {
        b.iter(|| vk.verify_strict(black_box(MESSAGE), black_box(&sig)))
    });
    group.bench_function("verify", |b| {
        b.iter(|| vk.verify(black_box(MESSAGE), black_box(&sig)))
    });
    group.finish();

    let sigs: Vec<Signature> = keys.iter().map(|k| k.signing_key().sign(MESSAGE)).collect();
    let vks: Vec<VerifyingKey> = keys
        .iter()
        .map(|k| k.signing_key().verifying_key())
        .collect();
    let msgs: Vec<&[u8]> = vec![MESSAGE; BATCH];
    let mut group = c.benchmark_group("ed25519_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&msgs), &sigs, &vks))
    });
    group.finish();

    let mut group = c.benchmark_group("signed_attestation");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issue", |b| {
        b.iter_batched(
            || ChaCha20Rng::seed_from_u64(7),
            |mut r| attestation(&mut r, key),
            BatchSize::SmallInput,
        )
    });
    let wire = attestation(&mut rng, key).into_bytes();
    group.bench_function("decode_and_verify", |b| {
        b.iter(|| Signed::<Attestation>::decode(black_box(&wire), &Ed25519))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
