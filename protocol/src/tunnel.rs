//! The header that opens every tunnel stream, sans-IO: what the dialer sends the provider's
//! QUIC endpoint before any workload byte.
//!
//! ```text
//! length u16 BE (of what follows, ≤ MAX_HEADER_BYTES)
//! | version u8 = 1 | port u16 BE | token                                  the lease's agent
//! | version u8 = 2 | port u16 BE | token len u16 BE | token | grant       a grantee
//! ```
//!
//! `token` is the wire bytes of the provider-signed `Signed<Capability>` of the lease;
//! `grant` the wire bytes of the owner-signed `Signed<ServiceGrant>` that lets another
//! agent's key use it (see [`crate::service`]). Both stay bytes here: the provider verifies
//! them (and answers a stable refusal code for each failure), so a malformed signature is a
//! refusal, not a framing error.
//!
//! The encoding is canonical: a header without a grant is always version 1, a version 2
//! header always carries a non-empty grant, so [`Header::decode`] accepts exactly what
//! [`Header::encode`] produces. Lengths are checked before anything is allocated.

use crate::lease::Capability;
use crate::service::ServiceGrant;
use crate::signed::Signed;

/// Version of a header without a grant.
pub const VERSION: u8 = 1;
/// Version of a header carrying an owner's grant.
pub const VERSION_GRANT: u8 = 2;
/// Largest header body (after the length prefix): version, port, token and grant.
pub const MAX_HEADER_BYTES: usize = 1024;

// A largest capability and a largest grant fit one header.
const _: () = assert!(
    5 + Signed::<Capability>::MAX_WIRE_BYTES + Signed::<ServiceGrant>::MAX_WIRE_BYTES
        <= MAX_HEADER_BYTES
);

/// The dialer's stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The workload port to reach.
    pub port: u16,
    /// The provider-signed capability, as its wire bytes (verified by the provider).
    pub token: Vec<u8>,
    /// The owner-signed grant for a key other than the lease's agent, as its wire bytes
    /// (verified by the provider); `None` for the lease's own agent.
    pub grant: Option<Vec<u8>>,
}

/// A malformed header.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// Longer than [`MAX_HEADER_BYTES`].
    #[error("header of {0} bytes, at most {MAX_HEADER_BYTES}")]
    TooLarge(usize),
    /// Shorter than its fixed fields or its token length says.
    #[error("header of {0} bytes is truncated")]
    Truncated(usize),
    /// An unknown version.
    #[error("header version {0}, expected {VERSION} or {VERSION_GRANT}")]
    Version(u8),
    /// A version 2 header with an empty grant (it would be a version 1 header).
    #[error("a version {VERSION_GRANT} header carries no grant")]
    EmptyGrant,
}

impl Header {
    /// A header for the lease's own agent: `port` with the capability's wire bytes.
    pub fn new(port: u16, token: Vec<u8>) -> Self {
        Self {
            port,
            token,
            grant: None,
        }
    }

    /// The body's length (what the length prefix says).
    fn body_len(&self) -> usize {
        match &self.grant {
            None => 3 + self.token.len(),
            Some(g) => 5 + self.token.len() + g.len(),
        }
    }

    /// The header's bytes, length prefix included.
    ///
    /// # Errors
    /// [`HeaderError::TooLarge`] when token and grant are too long, [`HeaderError::EmptyGrant`]
    /// for `Some` empty grant.
    pub fn encode(&self) -> Result<Vec<u8>, HeaderError> {
        let len = self.body_len();
        if len > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge(len));
        }
        let mut out = Vec::with_capacity(2 + len);
        // Bounded above by MAX_HEADER_BYTES, which fits a u16.
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        match &self.grant {
            None => {
                out.push(VERSION);
                out.extend_from_slice(&self.port.to_be_bytes());
            }
            Some(grant) => {
                if grant.is_empty() {
                    return Err(HeaderError::EmptyGrant);
                }
                out.push(VERSION_GRANT);
                out.extend_from_slice(&self.port.to_be_bytes());
                let token_len = u16::try_from(self.token.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&token_len.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.token);
        if let Some(grant) = &self.grant {
            out.extend_from_slice(grant);
        }
        Ok(out)
    }

    /// Decodes a header body (what follows the length prefix).
    ///
    /// # Errors
    /// [`HeaderError`] naming what is wrong.
    pub fn decode(body: &[u8]) -> Result<Self, HeaderError> {
        if body.len() > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge(body.len()));
        }
        let truncated = || HeaderError::Truncated(body.len());
        let [version, hi, lo, rest @ ..] = body else {
            return Err(truncated());
        };
        let port = u16::from_be_bytes([*hi, *lo]);
        match *version {
            VERSION => Ok(Self::new(port, rest.to_vec())),
            VERSION_GRANT => {
                let [thi, tlo, rest @ ..] = rest else {
                    return Err(truncated());
                };
                let token_len = usize::from(u16::from_be_bytes([*thi, *tlo]));
                let (token, grant) = rest.split_at_checked(token_len).ok_or_else(truncated)?;
                if grant.is_empty() {
                    return Err(HeaderError::EmptyGrant);
                }
                Ok(Self {
                    port,
                    token: token.to_vec(),
                    grant: Some(grant.to_vec()),
                })
            }
            other => Err(HeaderError::Version(other)),
        }
    }

    /// Reads the length prefix of a header: how many body bytes follow.
    ///
    /// # Errors
    /// [`HeaderError::TooLarge`] before anything is read or allocated for a longer body.
    pub fn body_len_of(prefix: [u8; 2]) -> Result<usize, HeaderError> {
        let len = usize::from(u16::from_be_bytes(prefix));
        if len > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLarge(len));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_header_round_trips() {
        let h = Header::new(8080, vec![7; 300]);
        let bytes = h.encode().unwrap();
        assert_eq!(Header::body_len_of([bytes[0], bytes[1]]), Ok(303));
        assert_eq!(bytes[2], VERSION);
        assert_eq!(Header::decode(&bytes[2..]).unwrap(), h);
        let g = Header {
            grant: Some(vec![9; 200]),
            ..h
        };
        let bytes = g.encode().unwrap();
        assert_eq!(Header::body_len_of([bytes[0], bytes[1]]), Ok(505));
        assert_eq!(bytes[2], VERSION_GRANT);
        assert_eq!(Header::decode(&bytes[2..]).unwrap(), g);
    }

    #[test]
    fn headers_are_bounded_and_checked() {
        let big = Header::new(1, vec![0; MAX_HEADER_BYTES]);
        assert!(matches!(big.encode(), Err(HeaderError::TooLarge(_))));
        let big_grant = Header {
            grant: Some(vec![0; MAX_HEADER_BYTES - 10]),
            ..Header::new(1, vec![0; 10])
        };
        assert!(matches!(big_grant.encode(), Err(HeaderError::TooLarge(_))));
        let empty = Header {
            grant: Some(Vec::new()),
            ..Header::new(1, vec![1])
        };
        assert_eq!(empty.encode(), Err(HeaderError::EmptyGrant));
        assert_eq!(Header::decode(&[1, 0]), Err(HeaderError::Truncated(2)));
        assert_eq!(Header::decode(&[]), Err(HeaderError::Truncated(0)));
        assert_eq!(Header::decode(&[3, 0, 80]), Err(HeaderError::Version(3)));
        assert_eq!(
            Header::decode(&[2, 0, 80, 0]),
            Err(HeaderError::Truncated(4))
        );
        // A token length beyond the body.
        assert_eq!(
            Header::decode(&[2, 0, 80, 0, 9, 1, 2]),
            Err(HeaderError::Truncated(7))
        );
        // A version 2 header whose token takes everything has no grant.
        assert_eq!(
            Header::decode(&[2, 0, 80, 0, 2, 1, 2]),
            Err(HeaderError::EmptyGrant)
        );
        assert_eq!(
            Header::decode(&vec![1; MAX_HEADER_BYTES + 1]),
            Err(HeaderError::TooLarge(MAX_HEADER_BYTES + 1))
        );
        assert_eq!(
            Header::body_len_of([0xff, 0xff]),
            Err(HeaderError::TooLarge(65535))
        );
    }

    proptest! {
        /// Decoding never panics, and whatever decodes encodes back to the same bytes.
        #[test]
        fn decoding_is_total_and_canonical(body in proptest::collection::vec(any::<u8>(), 0..1100)) {
            if let Ok(h) = Header::decode(&body) {
                let bytes = h.encode().unwrap();
                prop_assert_eq!(&bytes[2..], &body[..]);
            }
        }

        /// Every encodable header decodes to itself.
        #[test]
        fn encoding_round_trips(
            port in any::<u16>(),
            token in proptest::collection::vec(any::<u8>(), 0..500),
            grant in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..400)),
        ) {
            let h = Header { port, token, grant };
            let bytes = h.encode().unwrap();
            prop_assert_eq!(Header::decode(&bytes[2..]).unwrap(), h);
        }
    }
}
