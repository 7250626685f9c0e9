//! What opens a tunnel stream: the agent's header and the provider's one-frame answer.
//!
//! ```text
//! header (dialer → provider): agora_protocol::tunnel::Header (length-prefixed; capability
//!                             wire bytes, and for a grantee the owner's signed grant)
//! answer (provider → dialer): 0x00                                   the stream is piped
//!                           | 0x01 | code len u8 | code | detail len u16 BE | detail   refused
//! ```
//!
//! The header codec and its bounds live in the protocol crate ([`Header`]); this module reads
//! it off a stream and owns the answer. Both are bounded ([`MAX_HEADER_BYTES`],
//! [`MAX_DETAIL_BYTES`]); lengths are checked before anything is allocated, so a peer cannot
//! make the other side buffer more than that.

pub use agora_protocol::tunnel::{Header, HeaderError, MAX_HEADER_BYTES, VERSION, VERSION_GRANT};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Largest refusal detail.
pub const MAX_DETAIL_BYTES: usize = 512;

/// Why a stream was refused: stable codes for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The header is malformed or too large.
    BadHeader,
    /// The token does not decode, does not verify, or is not this provider's.
    BadToken,
    /// The token names another agent than the connection's client key.
    NotYourLease,
    /// The lease is unknown here, ended or past its expiry.
    LeaseEnded,
    /// The port is not among the token's ports.
    PortNotAllowed,
    /// The workload's port did not answer.
    Unreachable,
    /// The owner's grant does not decode or verify, or is for another lease.
    BadGrant,
    /// The owner's grant is not valid now.
    GrantExpired,
    /// The owner revoked the grant.
    GrantRevoked,
}

impl Code {
    /// Every code.
    pub const ALL: [Self; 9] = [
        Self::BadHeader,
        Self::BadToken,
        Self::NotYourLease,
        Self::LeaseEnded,
        Self::PortNotAllowed,
        Self::Unreachable,
        Self::BadGrant,
        Self::GrantExpired,
        Self::GrantRevoked,
    ];

    /// The stable text form (`bad_token`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadHeader => "bad_header",
            Self::BadToken => "bad_token",
            Self::NotYourLease => "not_your_lease",
            Self::LeaseEnded => "lease_ended",
            Self::PortNotAllowed => "port_not_allowed",
            Self::Unreachable => "unreachable",
            Self::BadGrant => "bad_grant",
            Self::GrantExpired => "grant_expired",
            Self::GrantRevoked => "grant_revoked",
        }
    }

    /// The code named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads one header from `r`, checking the length prefix before allocating.
///
/// # Errors
/// [`ReadError`] on I/O failure or a malformed header.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, ReadError> {
    let mut prefix = [0u8; 2];
    r.read_exact(&mut prefix).await?;
    let len = Header::body_len_of(prefix)?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Header::decode(&body)?)
}

/// A header or answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream failed or ended early.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The header is malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The answer is malformed.
    #[error("malformed answer: {0}")]
    Answer(&'static str),
}

/// The provider's answer to a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The stream is piped to the workload's port from now on.
    Accepted,
    /// Refused; the stream ends.
    Refused {
        /// Why.
        code: Code,
        /// For people.
        detail: String,
    },
}

impl Answer {
    /// The answer's bytes (a detail longer than [`MAX_DETAIL_BYTES`] is cut on a char boundary).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Accepted => vec![0],
            Self::Refused { code, detail } => {
                let mut end = detail.len().min(MAX_DETAIL_BYTES);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                let detail = detail.get(..end).unwrap_or_default();
                let code = code.as_str();
                let mut out = Vec::with_capacity(4 + code.len() + detail.len());
                out.push(1);
                out.push(u8::try_from(code.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(code.as_bytes());
                out.extend_from_slice(&u16::try_from(detail.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(detail.as_bytes());
                out
            }
        }
    }
}

/// Writes `answer` to `w`.
///
/// # Errors
/// The stream's I/O error.
pub async fn write_answer<W: AsyncWrite + Unpin>(
    w: &mut W,
    answer: &Answer,
) -> std::io::Result<()> {
    w.write_all(&answer.encode()).await?;
    w.flush().await
}

/// Reads the provider's answer from `r`.
///
/// # Errors
/// [`ReadError`] on I/O failure or a malformed answer.
pub async fn read_answer<R: AsyncRead + Unpin>(r: &mut R) -> Result<Answer, ReadError> {
    match r.read_u8().await? {
        0 => Ok(Answer::Accepted),
        1 => {
            let code_len = usize::from(r.read_u8().await?);
            let mut code = vec![0; code_len];
            r.read_exact(&mut code).await?;
            let code = std::str::from_utf8(&code)
                .ok()
                .and_then(Code::parse)
                .ok_or(ReadError::Answer("unknown code"))?;
            let detail_len = usize::from(r.read_u16().await?);
            if detail_len > MAX_DETAIL_BYTES {
                return Err(ReadError::Answer("detail too long"));
            }
            let mut detail = vec![0; detail_len];
            r.read_exact(&mut detail).await?;
            Ok(Answer::Refused {
                code,
                detail: String::from_utf8_lossy(&detail).into_owned(),
            })
        }
        _ => Err(ReadError::Answer("unknown kind")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversized_length_prefix_is_refused_before_reading_the_body() {
        let mut input: &[u8] = &[0xff, 0xff];
        let err = read_header(&mut input).await.unwrap_err();
        assert!(matches!(
            err,
            ReadError::Header(HeaderError::TooLarge(65535))
        ));
        let mut short: &[u8] = &[0, 10, 1, 0];
        assert!(matches!(
            read_header(&mut short).await,
            Err(ReadError::Io(_))
        ));
        // Both versions come off a stream whole, and nothing after them is read.
        for header in [
            Header::new(80, vec![1; 40]),
            Header {
                grant: Some(vec![2; 30]),
                ..Header::new(80, vec![1; 40])
            },
        ] {
            let mut bytes = header.encode().unwrap();
            bytes.extend_from_slice(b"payload");
            let mut input = bytes.as_slice();
            assert_eq!(read_header(&mut input).await.unwrap(), header);
            assert_eq!(input, b"payload");
        }
    }

    #[tokio::test]
    async fn answers_round_trip_and_details_are_bounded() {
        for answer in [
            Answer::Accepted,
            Answer::Refused {
                code: Code::PortNotAllowed,
                detail: "port 22 is not in the token".into(),
            },
        ] {
            let bytes = answer.encode();
            assert_eq!(read_answer(&mut bytes.as_slice()).await.unwrap(), answer);
        }
        let long = Answer::Refused {
            code: Code::Unreachable,
            detail: "é".repeat(MAX_DETAIL_BYTES),
        };
        let Answer::Refused { detail, .. } =
            read_answer(&mut long.encode().as_slice()).await.unwrap()
        else {
            unreachable!()
        };
        assert!(detail.len() <= MAX_DETAIL_BYTES);
        let mut unknown: &[u8] = &[1, 3, b'f', b'o', b'o', 0, 0];
        assert!(read_answer(&mut unknown).await.is_err());
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
    }
}
