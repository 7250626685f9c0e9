use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use sha2::{Digest as _, Sha512};

use super::*;
use crate::signed::{Ed25519, Signer as _};

fn honest(n: u8, message: &[u8]) -> SignatureCheck {
    let key = SigningKey::from_bytes(&[n; 32]);
    SignatureCheck {
        signer: key.id(),
        message: message.to_vec(),
        signature: key.sign(message),
    }
}

fn scalar(n: u8) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&[n; 64])
}

fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A signature made by hand: key `[a]B + key_torsion`, nonce point `[r]B + r_torsion`.
fn crafted(
    n: u8,
    key_torsion: EdwardsPoint,
    r_torsion: EdwardsPoint,
    message: &[u8],
) -> SignatureCheck {
    let a = scalar(n);
    let r = scalar(n.wrapping_add(100));
    let key = (ED25519_BASEPOINT_POINT * a + key_torsion)
        .compress()
        .to_bytes();
    let big_r = (ED25519_BASEPOINT_POINT * r + r_torsion)
        .compress()
        .to_bytes();
    let s = r + challenge(&big_r, &key, message) * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&big_r);
    signature[32..].copy_from_slice(s.as_bytes());
    SignatureCheck {
        signer: AgoraId::from_bytes(key).unwrap(),
        message: message.to_vec(),
        signature: Signature(signature),
    }
}

fn alone_with(v: &impl Verifier, c: &SignatureCheck) -> bool {
    v.verify(&c.signer, &c.message, &c.signature).is_ok()
}

fn identity() -> EdwardsPoint {
    EIGHT_TORSION[0]
}

#[test]
fn honest_signatures_pass_alone_and_together() {
    let checks: Vec<_> = (1..=12).map(|n| honest(n, &[n; 100])).collect();
    for c in &checks {
        assert!(alone_with(&Cofactored, c) && alone_with(&Ed25519, c));
    }
    assert!(Cofactored.verify_batch(&checks).iter().all(Result::is_ok));
    // One key signing many times in one batch (its terms are merged).
    let same: Vec<_> = (0..8).map(|i| honest(3, &[i; 10])).collect();
    assert!(Cofactored.verify_batch(&same).iter().all(Result::is_ok));
    assert!(Cofactored.verify_batch(&[]).is_empty());
}

#[test]
fn a_bad_signature_in_a_batch_is_named_alone() {
    let mut checks: Vec<_> = (1..=10).map(|n| honest(n, b"page")).collect();
    checks[4].message.push(0);
    checks[7].signature.0[40] ^= 0x10;
    let verdicts = Cofactored.verify_batch(&checks);
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(v.is_err(), i == 4 || i == 7, "check {i}: {v:?}");
    }
    assert_eq!(
        verdicts[4],
        Err(VerifyError::BadSignature {
            signer: checks[4].signer
        })
    );
}

#[test]
fn torsion_added_by_the_signer_passes_here_in_every_batch_and_fails_strict() {
    let t8 = EIGHT_TORSION[1];
    let nonce = crafted(20, identity(), t8, b"signed with a torsion nonce");
    let key = crafted(21, t8, identity(), b"signed by a mixed-order key");
    let plain = crafted(22, identity(), identity(), b"made by hand, no torsion");
    assert!(alone_with(&Ed25519, &plain) && alone_with(&Cofactored, &plain));
    for c in [&nonce, &key] {
        assert!(!alone_with(&Ed25519, c), "strict refuses it");
        assert!(
            alone_with(&Cofactored, c),
            "the cofactored equation ignores torsion"
        );
    }
    // Whatever else is in the batch, the verdict is the one given alone (a cofactorless
    // batch would accept these only for some compositions).
    for extra in 0..24u8 {
        let mut batch: Vec<_> = (0..extra % 5).map(|i| honest(i + 1, &[extra; 3])).collect();
        batch.insert(usize::from(extra % 3).min(batch.len()), nonce.clone());
        batch.push(key.clone());
        assert!(Cofactored.verify_batch(&batch).iter().all(Result::is_ok));
    }
}

#[test]
fn nobody_but_the_signer_can_vary_a_signature() {
    let good = honest(5, b"an entry");
    // R plus a torsion point: the challenge changes, so the equation fails.
    for t in &EIGHT_TORSION[1..] {
        let mut c = good.clone();
        let r = CompressedEdwardsY(c.signature.0[..32].try_into().unwrap())
            .decompress()
            .unwrap();
        c.signature.0[..32].copy_from_slice((r + t).compress().as_bytes());
        assert!(!alone_with(&Cofactored, &c) && !alone_with(&Ed25519, &c));
    }
    // s plus the group order: not canonical.
    let mut c = good.clone();
    let s = Scalar::from_canonical_bytes(c.signature.0[32..].try_into().unwrap()).unwrap();
    let l_bytes: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s.as_bytes()[i]) + u16::from(l_bytes[i]) + carry;
        sum[i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    c.signature.0[32..].copy_from_slice(&sum);
    assert!(!alone_with(&Cofactored, &c) && !alone_with(&Ed25519, &c));
    assert_eq!(
        Cofactored.verify_batch(&[good.clone(), c.clone(), good.clone()])[1],
        Err(VerifyError::BadSignature { signer: c.signer })
    );
}

#[test]
fn small_order_keys_and_nonces_are_refused() {
    let message = b"anything at all";
    // A small-order key: [8][k]A vanishes, so R = [s]B would "verify" any message.
    let weak = AgoraId::from_bytes(EIGHT_TORSION[2].compress().to_bytes()).unwrap();
    let s = scalar(9);
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice((ED25519_BASEPOINT_POINT * s).compress().as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    let forged = SignatureCheck {
        signer: weak,
        message: message.to_vec(),
        signature: Signature(signature),
    };
    // A small-order nonce point with s = k·a: off by exactly the torsion point.
    let small_r = {
        let a = scalar(30);
        let key = (ED25519_BASEPOINT_POINT * a).compress().to_bytes();
        let big_r = EIGHT_TORSION[1].compress().to_bytes();
        let s = challenge(&big_r, &key, message) * a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(s.as_bytes());
        SignatureCheck {
            signer: AgoraId::from_bytes(key).unwrap(),
            message: message.to_vec(),
            signature: Signature(signature),
        }
    };
    for c in [&forged, &small_r] {
        assert!(!alone_with(&Cofactored, c) && !alone_with(&Ed25519, c));
        let batch = [honest(1, b"x"), c.clone(), honest(2, b"y"), honest(3, b"z")];
        let verdicts = Cofactored.verify_batch(&batch);
        assert!(verdicts[1].is_err() && verdicts[0].is_ok() && verdicts[3].is_ok());
    }
}

#[test]
fn only_canonical_nonce_encodings_pass() {
    let p_minus_1 = {
        let mut b = [0xffu8; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    };
    assert!(canonical_y(&p_minus_1));
    let mut p = p_minus_1;
    p[0] = 0xed;
    assert!(!canonical_y(&p), "y = p");
    let mut sign = p_minus_1;
    sign[31] = 0xff;
    assert!(canonical_y(&sign), "the sign bit is not part of y");
    assert!(!canonical_y(&[0xff; 32]));
    assert!(canonical_y(&[0; 32]));
    // y = p encodes y = 0 (a point of order 4) another way: refused.
    let mut c = honest(4, b"m");
    c.signature.0[..32].copy_from_slice(&p);
    assert!(!alone_with(&Cofactored, &c) && !alone_with(&Ed25519, &c));
}

/// A pool of checks of every kind: honest, corrupted, varied by a third party, crafted with
/// torsion by their signer.
fn pool() -> Vec<SignatureCheck> {
    let mut out = Vec::new();
    for n in 1..=6u8 {
        out.push(honest(n, &[n; 20]));
        let mut bad = honest(n, &[n; 21]);
        bad.signature.0[usize::from(n) * 7] ^= 1;
        out.push(bad);
    }
    for (i, t) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let i = u8::try_from(i).unwrap();
        out.push(crafted(40 + i, identity(), *t, &[i; 9]));
        out.push(crafted(50 + i, *t, identity(), &[i; 9]));
        out.push(crafted(60 + i, *t, *t, &[i; 9]));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any selection and order of checks: the batch gives each check's verdict alone.
    #[test]
    fn batch_verdicts_equal_single_verdicts(picks in proptest::collection::vec(0usize..1000, 0..24)) {
        let pool = pool();
        let batch: Vec<SignatureCheck> = picks.iter().map(|i| pool[i % pool.len()].clone()).collect();
        let verdicts = Cofactored.verify_batch(&batch);
        prop_assert_eq!(verdicts.len(), batch.len());
        for (c, v) in batch.iter().zip(&verdicts) {
            prop_assert_eq!(v.is_ok(), alone_with(&Cofactored, c));
            // Everything strict accepts is accepted here.
            prop_assert!(!alone_with(&Ed25519, c) || v.is_ok());
        }
    }
}
