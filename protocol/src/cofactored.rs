//! [`Cofactored`]: ed25519 verification whose batched and one-by-one verdicts always agree,
//! for data every replica must judge alike (the evidence log).
//!
//! # Why not strict verification in batches
//!
//! [`Ed25519`](crate::signed::Ed25519) is `verify_strict`: the cofactorless equation
//! `[s]B = R + [k]A`. Batch verification checks a random linear combination of many such
//! equations; torsion components (points of order 2, 4, 8) survive that combination only
//! when the random coefficient is not a multiple of their order, so a *signer* who puts a
//! torsion component into its own `R` (or key) gets a signature that strict verification
//! always rejects but a cofactorless batch accepts one time in two to eight, depending on
//! what else is in the batch. For the evidence log that is a split: replicas that verified
//! in different batches (or one by one) would accept different entries. No cheap check
//! closes the gap (testing `R` for torsion costs a scalar multiplication, as much as the
//! verification saved).
//!
//! The cofactored equation `[8][s]B = [8]R + [8][k]A` ignores torsion. Its batch form
//! (`[8]` times the random combination) agrees with it on every signature, except with
//! probability about 2^-125 per batch, whatever the batch holds. So this verifier uses it in
//! both forms, and the log's verdict on an entry no longer depends on how it was batched.
//!
//! # The rule, and how it differs from strict
//!
//! A signature `(R, s)` by key `A` on message `M` is good when `s < ℓ` (canonical), `R` is
//! the canonical encoding of a curve point, neither `R` nor `A` has small order, and
//! `[8]([s]B - R - [k]A)` is the identity, with `k = SHA-512(R ‖ A ‖ M) mod ℓ`. These are
//! `verify_strict`'s checks with the cofactored equation in place of the cofactorless one.
//! Every signature strict verification accepts is accepted here. The only signatures
//! accepted here and not there are ones whose signer added a torsion point on purpose:
//! nobody else can make them (changing `R` changes `k`), so they cannot forge or malleate
//! anyone's message; they only let a signer sign in a way other strict verifiers refuse.
//!
//! # Batches
//!
//! [`Verifier::verify_batch`] prepares each signature (decodes the points, the checks above,
//! hashes `k`), draws a 128-bit coefficient `z_i` per signature from SHA-512 over every
//! signature's hash and `s` (as ed25519-dalek's batch does: deterministic, so no randomness
//! is needed, yet unpredictable to whoever composed the batch), merges the terms of repeated
//! keys, and checks `[8](-(Σ z_i s_i)B + Σ z_i R_i + Σ_A (Σ z_i k_i) A) = 0` with one
//! variable-time multiscalar multiplication. When the batch fails, every signature is checked
//! alone, so the results name exactly the bad ones.

use std::collections::BTreeMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use sha2::{Digest as _, Sha512};

use crate::id::AgoraId;
use crate::signed::{Signature, SignatureCheck, Verifier, VerifyError};

/// What seeds a batch's coefficients, first.
const BATCH_DOMAIN: &[u8] = b"agora/cofactored-batch/v1\0";

/// The field prime's low byte; with every middle byte 0xff and the top byte 0x7f, low bytes
/// from it on encode a `y` at or above the prime: a non-canonical encoding.
const PRIME_LOW_BYTE: u8 = 0xed;

/// Cofactored ed25519 verification with the strict encoding checks, alone or in batches
/// that give the same verdicts (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cofactored;

/// One signature with its points decoded and its challenge hashed.
struct Prepared {
    /// The signer's key, and its bytes (the signer's id).
    a: EdwardsPoint,
    a_bytes: [u8; 32],
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    /// SHA-512(R ‖ A ‖ M), for the batch coefficients.
    hram: [u8; 64],
}

impl Verifier for Cofactored {
    fn verify(
        &self,
        signer: &AgoraId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let a = key(signer)?;
        let p = prepare(signer, a, message, signature)?;
        if alone(&p) { Ok(()) } else { Err(bad(signer)) }
    }

    fn verify_batch(&self, checks: &[SignatureCheck]) -> Vec<Result<(), VerifyError>> {
        let mut keys: BTreeMap<AgoraId, Result<EdwardsPoint, VerifyError>> = BTreeMap::new();
        let prepared: Vec<Result<Prepared, VerifyError>> = checks
            .iter()
            .map(|c| {
                let a = *keys
                    .entry(c.signer)
                    .or_insert_with(|| key(&c.signer))
                    .as_ref()
                    .map_err(Clone::clone)?;
                prepare(&c.signer, a, &c.message, &c.signature)
            })
            .collect();
        let good: Vec<(usize, &Prepared)> = prepared
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().ok().map(|p| (i, p)))
            .collect();
        let mut results: Vec<Result<(), VerifyError>> = prepared
            .iter()
            .map(|p| p.as_ref().map(|_| ()).map_err(Clone::clone))
            .collect();
        let together = if good.len() < MIN_BATCH {
            good.iter().all(|(_, p)| alone(p))
        } else {
            batch(good.iter().map(|(_, p)| *p))
        };
        if !together {
            for (i, p) in good {
                if !alone(p)
                    && let (Some(slot), Some(check)) = (results.get_mut(i), checks.get(i))
                {
                    *slot = Err(bad(&check.signer));
                }
            }
        }
        results
    }
}

fn bad(signer: &AgoraId) -> VerifyError {
    VerifyError::BadSignature { signer: *signer }
}

/// Fewer signatures than this are checked one by one: the fixed-base table that speeds up
/// the single check's `[s]B` makes it cheaper than a tiny multiscalar multiplication.
const MIN_BATCH: usize = 3;

/// Slots of the per-thread table of decoded keys.
const KEY_SLOTS: usize = 512;

thread_local! {
    /// Keys decoded lately on this thread (all of large order), direct-mapped by their first
    /// two bytes: the same nodes, providers and agents sign throughout a page and the next.
    static KEYS: core::cell::RefCell<Vec<Option<(AgoraId, EdwardsPoint)>>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// The signer's key as a point of large order (decoded once per thread while it stays in
/// the table: a pure function's memo).
fn key(signer: &AgoraId) -> Result<EdwardsPoint, VerifyError> {
    let [b0, b1, ..] = *signer.as_bytes();
    let slot = usize::from(u16::from_le_bytes([b0, b1])) % KEY_SLOTS;
    let known = KEYS.with(|k| match k.borrow().get(slot) {
        Some(Some((id, point))) if id == signer => Some(*point),
        _ => None,
    });
    if let Some(point) = known {
        return Ok(point);
    }
    let a = CompressedEdwardsY(*signer.as_bytes())
        .decompress()
        .ok_or(VerifyError::InvalidSigner)?;
    if a.is_small_order() {
        // As verify_strict: a small-order key "signs" everything.
        return Err(bad(signer));
    }
    KEYS.with(|k| {
        let mut k = k.borrow_mut();
        if k.is_empty() {
            k.resize(KEY_SLOTS, None);
        }
        if let Some(s) = k.get_mut(slot) {
            *s = Some((*signer, a));
        }
    });
    Ok(a)
}

/// Whether `bytes` is the canonical encoding of its `y` (below the field prime). The other
/// non-canonical form, `x = 0` with the sign bit set, only encodes points of small order,
/// which are refused anyway.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let [low, middle @ .., top] = bytes;
    !((top & 0x7f) == 0x7f && middle.iter().all(|b| *b == 0xff) && *low >= PRIME_LOW_BYTE)
}

fn prepare(
    signer: &AgoraId,
    a: EdwardsPoint,
    message: &[u8],
    signature: &Signature,
) -> Result<Prepared, VerifyError> {
    let (r_bytes, s_bytes) = signature.0.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().map_err(|_| bad(signer))?;
    let s_bytes: [u8; 32] = s_bytes.try_into().map_err(|_| bad(signer))?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(bad(signer))?;
    if !canonical_y(&r_bytes) {
        return Err(bad(signer));
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(bad(signer))?;
    if r.is_small_order() {
        return Err(bad(signer));
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(signer.as_bytes());
    h.update(message);
    let hram: [u8; 64] = h.finalize().into();
    Ok(Prepared {
        a,
        a_bytes: *signer.as_bytes(),
        r,
        s,
        k: Scalar::from_bytes_mod_order_wide(&hram),
        hram,
    })
}

/// The cofactored equation for one signature: `[8]([s]B - [k]A - R) = 0`.
fn alone(p: &Prepared) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-p.a), &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// The cofactored batch equation over `batch` (two signatures or more).
fn batch<'p>(batch: impl Iterator<Item = &'p Prepared> + Clone) -> bool {
    let z = coefficients(batch.clone());
    let mut b = Scalar::ZERO;
    let mut scalars = Vec::new();
    let mut points = Vec::new();
    // A key that signs several times in the batch is one term.
    let mut by_key: BTreeMap<[u8; 32], (Scalar, EdwardsPoint)> = BTreeMap::new();
    for (p, z) in batch.zip(z) {
        b += z * p.s;
        scalars.push(z);
        points.push(p.r);
        by_key.entry(p.a_bytes).or_insert((Scalar::ZERO, p.a)).0 += z * p.k;
    }
    for (coefficient, point) in by_key.into_values() {
        scalars.push(coefficient);
        points.push(point);
    }
    scalars.push(-b);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// One 128-bit coefficient per signature, from SHA-512 over every signature's `hram` and
/// `s`: fixed by the batch, unpredictable before it is fixed.
fn coefficients<'p>(batch: impl Iterator<Item = &'p Prepared> + Clone) -> Vec<Scalar> {
    let mut seed = Sha512::new();
    seed.update(BATCH_DOMAIN);
    let mut count = 0u64;
    for p in batch {
        seed.update(p.hram);
        seed.update(p.s.as_bytes());
        count += 1;
    }
    seed.update(count.to_le_bytes());
    let seed: [u8; 64] = seed.finalize().into();
    let mut out = Vec::new();
    let mut block = 0u64;
    while (out.len() as u64) < count {
        let mut h = Sha512::new();
        h.update(seed);
        h.update(block.to_le_bytes());
        let bytes: [u8; 64] = h.finalize().into();
        for chunk in bytes.chunks_exact(16) {
            if (out.len() as u64) < count
                && let Ok(z) = <[u8; 16]>::try_from(chunk)
            {
                out.push(Scalar::from(u128::from_le_bytes(z)));
            }
        }
        block += 1;
    }
    out
}

#[cfg(test)]
#[path = "cofactored_tests.rs"]
mod tests;
