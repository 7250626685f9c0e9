//! Deferred verification of nested signatures: how the evidence log checks all of an entry's
//! signatures (and a whole page's) together instead of one at a time as serde meets them.
//!
//! Nested signed messages decode through serde (`Deserialize for Signed<T>`, credentials,
//! equivocation proofs), which has no place to pass a verifier. They verify with
//! [`Nested`], which is strict [`Ed25519`] everywhere except inside [`record`]: there it
//! writes each check down and lets decoding go on, and `record` hands the checks to its
//! caller, who must verify them all before the decoded value is used. Only the crate uses
//! this, through `Signed::decode_recording_nested`.
//!
//! The recording lives in a thread-local (the decode runs synchronously on one thread, and
//! serde gives no other channel); a scope restores what was there before, also on unwind, so
//! scopes nest and nothing leaks into a later decode.

use core::cell::RefCell;

use crate::id::AgoraId;
use crate::signed::{Ed25519, Signature, SignatureCheck, Verifier, VerifyError};

thread_local! {
    /// The checks recorded by the innermost active [`record`] scope on this thread.
    static RECORDING: RefCell<Option<Vec<SignatureCheck>>> = const { RefCell::new(None) };
}

/// The verifier for signatures nested inside a message being decoded: strict [`Ed25519`],
/// or, inside [`record`], a recorder that accepts and writes the check down.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Nested;

impl Verifier for Nested {
    fn verify(
        &self,
        signer: &AgoraId,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), VerifyError> {
        let recorded = RECORDING.with(|r| match r.borrow_mut().as_mut() {
            Some(checks) => {
                checks.push(SignatureCheck {
                    signer: *signer,
                    message: message.to_vec(),
                    signature: *signature,
                });
                true
            }
            None => false,
        });
        if recorded {
            Ok(())
        } else {
            Ed25519.verify(signer, message, signature)
        }
    }
}

/// Puts the previous recording back when a scope ends, even by unwinding.
struct Scope {
    previous: Option<Option<Vec<SignatureCheck>>>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            RECORDING.with(|r| *r.borrow_mut() = previous);
        }
    }
}

/// Runs `decode` recording, not verifying, every signature [`Nested`] is asked about; returns
/// its result and the checks in the order they were met. The caller must verify every check
/// before using anything `decode` produced.
pub(crate) fn record<R>(decode: impl FnOnce() -> R) -> (R, Vec<SignatureCheck>) {
    let previous = RECORDING.with(|r| r.borrow_mut().replace(Vec::new()));
    let mut scope = Scope {
        previous: Some(previous),
    };
    let out = decode();
    let checks = match scope.previous.take() {
        Some(previous) => RECORDING.with(|r| core::mem::replace(&mut *r.borrow_mut(), previous)),
        None => None,
    };
    (out, checks.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::Signer as _;
    use ed25519_dalek::SigningKey;

    fn check(n: u8, good: bool) -> SignatureCheck {
        let key = SigningKey::from_bytes(&[n; 32]);
        let message = vec![n; 40];
        let mut signature = key.sign(&message);
        if !good {
            signature.0[0] ^= 1;
        }
        SignatureCheck {
            signer: key.id(),
            message,
            signature,
        }
    }

    fn ask(c: &SignatureCheck) -> Result<(), VerifyError> {
        Nested.verify(&c.signer, &c.message, &c.signature)
    }

    #[test]
    fn outside_a_scope_nested_is_strict_ed25519() {
        assert!(ask(&check(1, true)).is_ok());
        assert!(ask(&check(1, false)).is_err());
    }

    #[test]
    fn scopes_record_in_order_and_nest() {
        let (inner, outer) = record(|| {
            assert!(ask(&check(1, false)).is_ok(), "recorded, not verified");
            let (_, inner) = record(|| ask(&check(2, true)));
            assert!(ask(&check(3, true)).is_ok());
            inner
        });
        assert_eq!(inner, vec![check(2, true)]);
        assert_eq!(outer, vec![check(1, false), check(3, true)]);
        assert!(ask(&check(1, false)).is_err(), "the scope is over");
    }

    #[test]
    fn a_panicking_decode_leaves_no_scope_behind() {
        let caught = std::panic::catch_unwind(|| {
            record(|| -> () { panic!("decoder bug") });
        });
        assert!(caught.is_err());
        assert!(ask(&check(4, false)).is_err());
    }
}
