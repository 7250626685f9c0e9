//! TLS for tunnels: raw ed25519 keys in self-signed certificates, no web PKI.
//!
//! Each side presents a self-signed X.509 certificate whose key *is* its Agora identity key
//! (made with rcgen from the key's PKCS#8). The verifiers ignore names, dates and the
//! certificate's own signature: what proves the identity is the TLS 1.3 handshake signature
//! (`CertificateVerify`), checked here with ed25519 over the certificate's key. The client
//! pins the server's key to the lease grant's provider; the server accepts any client key
//! and reads it afterwards ([`peer_key`]) to compare with the token's agent.

use std::sync::Arc;

use agora_attest::Identity;
use agora_protocol::AgoraId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::ALPN;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410), followed by the 32-byte key.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be made from the key.
    #[error("cannot make the tunnel certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("cannot configure QUIC crypto: {0}")]
    Quic(String),
}

/// The identity's key as PKCS#8 DER.
fn pkcs8(identity: &Identity) -> PrivatePkcs8KeyDer<'static> {
    let seed = identity.secret_bytes();
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&PKCS8_ED25519_PREFIX);
    der.extend_from_slice(seed.as_slice());
    PrivatePkcs8KeyDer::from(der)
}

/// A self-signed certificate for `identity`'s key, and the key for rustls.
///
/// # Errors
/// [`TlsError::Certificate`] if rcgen refuses the key.
pub fn certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let key = pkcs8(identity);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
    let params = rcgen::CertificateParams::new(vec!["agora".to_owned()])?;
    let cert = params.self_signed(&pair)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key)))
}

/// Reads one DER element: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The ed25519 key of a certificate's SubjectPublicKeyInfo, or `None` if the certificate is
/// malformed or holds another kind of key.
pub fn cert_key(cert: &CertificateDer<'_>) -> Option<AgoraId> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_element(cert.as_ref())?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2;
    }
    for _ in 0..5 {
        tbs = der_element(tbs)?.2;
    }
    // The SubjectPublicKeyInfo element, whole: exactly the Ed25519 prefix and 32 bytes.
    let (tag, _, rest) = der_element(tbs)?;
    let whole = tbs.get(..tbs.len() - rest.len())?;
    if tag != SEQUENCE {
        return None;
    }
    let key = whole.strip_prefix(&SPKI_ED25519_PREFIX)?;
    let key: [u8; 32] = key.try_into().ok()?;
    AgoraId::from_bytes(key).ok()
}

/// Checks an ed25519 handshake signature by the certificate's key.
fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(CertificateError::BadSignature.into());
    }
    let key = cert_key(cert).ok_or(CertificateError::BadEncoding)?;
    let key = key
        .verifying_key()
        .map_err(|_| CertificateError::BadEncoding)?;
    let signature = ed25519_dalek::Signature::from_slice(dss.signature())
        .map_err(|_| CertificateError::BadSignature)?;
    key.verify_strict(message, &signature)
        .map_err(|_| CertificateError::BadSignature)?;
    Ok(HandshakeSignatureValid::assertion())
}

fn tls12_unused() -> rustls::Error {
    rustls::Error::General("tunnels speak TLS 1.3 only".into())
}

/// The key a connection's peer proved in the handshake (the first certificate's key).
pub fn peer_key(connection: &quinn::Connection) -> Option<AgoraId> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    cert_key(certs.first()?)
}

/// The server side: any client key (checked later against the token), mandatory.
#[derive(Debug)]
struct AnyClientKey;

impl ClientCertVerifier for AnyClientKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        cert_key(end_entity).ok_or(CertificateError::BadEncoding)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_unused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The client side: the server's key must be the pinned provider's.
#[derive(Debug)]
struct PinnedServer(AgoraId);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match cert_key(end_entity) {
            Some(key) if key == self.0 => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(CertificateError::ApplicationVerificationFailure.into()),
            None => Err(CertificateError::BadEncoding.into()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_unused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The ALPN protocol a connection negotiated.
pub fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The provider's QUIC crypto: its identity's certificate, client keys required, ALPN
/// [`ALPN`].
///
/// # Errors
/// [`TlsError`] if the certificate or configuration is refused.
pub fn server_crypto(
    identity: &Identity,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyClientKey))
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN.to_vec(), super::ops::OPS_ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The agent's QUIC crypto: its identity's certificate, the server pinned to `provider_key`.
///
/// # Errors
/// [`TlsError`] if the certificate or configuration is refused.
pub fn client_crypto(
    identity: &Identity,
    provider_key: AgoraId,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
    client_crypto_for(identity, provider_key, ALPN)
}

/// [`client_crypto`] offering ALPN `alpn` (e.g. [`super::ops::OPS_ALPN`]).
///
/// # Errors
/// As [`client_crypto`].
pub fn client_crypto_for(
    identity: &Identity,
    provider_key: AgoraId,
    alpn: &[u8],
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer(provider_key)))
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_identity_key() {
        let id = Identity::generate(&mut rand::rng());
        let (cert, _) = certificate(&id).unwrap();
        assert_eq!(cert_key(&cert), Some(id.agora_id()));
        let mut broken = cert.as_ref().to_vec();
        broken.truncate(40);
        assert_eq!(cert_key(&CertificateDer::from(broken)), None);
        assert_eq!(cert_key(&CertificateDer::from(vec![])), None);
    }
}
