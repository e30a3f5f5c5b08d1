//! The project's verifier inside embedded-tls, and the guard that keeps the token from a
//! server that did not prove who it is (R14).
//!
//! embedded-tls calls a `TlsVerifier` only for the Certificate and CertificateVerify
//! messages that arrive; a server that skips them completes the handshake with a Finished
//! alone. So [`HandshakeVerifier`] records what it verified, in order, and [`Verified`] (the
//! only way to write on a TLS connection) is built only when both steps succeeded in this
//! handshake. Every out-of-order or repeated message is a failure recorded as a
//! [`TlsFailure`] (the detail R13 wants; embedded-tls' own error loses it).

use embedded_io_async::{ErrorType, Read, Write};
use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider,
    SignatureScheme, TlsError, TlsVerifier,
};
use rand_core::CryptoRngCore;
use sha2::Digest;

use super::verify::{self, LeafKey, MAX_CHAIN};
use super::{TlsFailure, UnixClock};

/// Where a handshake is, as far as the server's proof goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Proof {
    /// Nothing verified yet.
    AwaitCertificate,
    /// The chain is verified; the CertificateVerify must be signed by this key over this
    /// transcript hash (SHA-256: the only suite offered is TLS_AES_128_GCM_SHA256).
    AwaitVerify { key: LeafKey, transcript: [u8; 32] },
    /// Both verified (R14): the only state that lets application data through.
    Verified,
    /// Something failed; nothing can succeed in this handshake any more.
    Failed(TlsFailure),
}

/// Verifies one TLS handshake: the Certificate chain, then the CertificateVerify.
pub struct HandshakeVerifier<'a> {
    anchor: &'a [u8],
    host: &'a str,
    clock: Option<UnixClock>,
    proof: Proof,
}

impl<'a> HandshakeVerifier<'a> {
    /// A verifier for one handshake with `host`, trusting `anchor` (DER), with the device's
    /// wall clock if it has one.
    pub fn new(anchor: &'a [u8], host: &'a str, clock: Option<UnixClock>) -> Self {
        HandshakeVerifier {
            anchor,
            host,
            clock,
            proof: Proof::AwaitCertificate,
        }
    }

    /// `Ok` only if both the chain and the CertificateVerify were verified in this
    /// handshake; otherwise the reason (`MissingCertificate` when neither arrived,
    /// `MissingCertificateVerify` when only the chain did, or the recorded failure).
    pub fn outcome(&self) -> Result<(), TlsFailure> {
        match &self.proof {
            Proof::Verified => Ok(()),
            Proof::AwaitCertificate => Err(TlsFailure::MissingCertificate),
            Proof::AwaitVerify { .. } => Err(TlsFailure::MissingCertificateVerify),
            Proof::Failed(f) => Err(*f),
        }
    }

    /// The failure recorded during the handshake, if any (to report instead of
    /// embedded-tls' coarser error).
    pub fn failure(&self) -> Option<TlsFailure> {
        match self.proof {
            Proof::Failed(f) => Some(f),
            _ => None,
        }
    }

    fn fail(&mut self, f: TlsFailure) -> TlsError {
        // The first failure is the one to report.
        if !matches!(self.proof, Proof::Failed(_)) {
            self.proof = Proof::Failed(f);
        }
        match f {
            TlsFailure::BadSignature => TlsError::InvalidSignature,
            _ => TlsError::InvalidCertificate,
        }
    }

    /// The Certificate message: chain entries as DER. Public for the fuzz target and tests.
    pub fn on_certificate(&mut self, chain: &[&[u8]], transcript_hash: [u8; 32]) -> Result<(), TlsFailure> {
        if self.proof != Proof::AwaitCertificate {
            // A second Certificate, or one after a failure or after the CertificateVerify.
            let f = self.failure().unwrap_or(TlsFailure::UnexpectedMessage);
            self.fail(f);
            return Err(f);
        }
        let now = self.clock.and_then(|c| c.now());
        match verify::verify_server_chain(self.anchor, chain, self.host, now) {
            Ok(key) => {
                self.proof = Proof::AwaitVerify {
                    key,
                    transcript: transcript_hash,
                };
                Ok(())
            }
            Err(f) => {
                self.fail(f);
                Err(f)
            }
        }
    }

    /// The CertificateVerify message. Public for the fuzz target and tests.
    pub fn on_certificate_verify(&mut self, scheme: u16, signature: &[u8]) -> Result<(), TlsFailure> {
        let result = match &self.proof {
            Proof::AwaitVerify { key, transcript } => {
                verify::verify_certificate_verify(key, scheme, transcript, signature)
            }
            // A CertificateVerify before any Certificate (embedded-tls' own verifier panics
            // here): there is no key to check it with.
            Proof::AwaitCertificate => Err(TlsFailure::MissingCertificate),
            Proof::Verified => Err(TlsFailure::UnexpectedMessage),
            Proof::Failed(f) => Err(*f),
        };
        match result {
            Ok(()) => {
                self.proof = Proof::Verified;
                Ok(())
            }
            Err(f) => {
                self.fail(f);
                Err(f)
            }
        }
    }
}

impl TlsVerifier<Aes128GcmSha256> for HandshakeVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The host is fixed at construction (the same URL host embedded-tls is given as SNI).
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &sha2::Sha256,
        cert: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        let mut chain: heapless::Vec<&[u8], MAX_CHAIN> = heapless::Vec::new();
        for entry in &cert.entries {
            match entry {
                CertificateEntryRef::X509(der) => {
                    if chain.push(der).is_err() {
                        return Err(self.fail(TlsFailure::BadCertificate));
                    }
                }
                // Raw public keys were not offered; a server sending one is not trusted.
                CertificateEntryRef::RawPublicKey(_) => return Err(self.fail(TlsFailure::BadCertificate)),
            }
        }
        // The transcript embedded-tls passes already includes this Certificate message:
        // exactly what the CertificateVerify signs (RFC 8446 4.4.3).
        let hash: [u8; 32] = transcript.clone().finalize().into();
        self.on_certificate(&chain, hash).map_err(|f| self.fail(f))
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        let scheme = match verify.signature_scheme {
            SignatureScheme::EcdsaSecp256r1Sha256 => verify::ECDSA_SECP256R1_SHA256,
            SignatureScheme::EcdsaSecp384r1Sha384 => verify::ECDSA_SECP384R1_SHA384,
            // Ed25519, RSA, anything else: the device cannot check it (R14: refused).
            _ => 0,
        };
        self.on_certificate_verify(scheme, verify.signature)
            .map_err(|f| self.fail(f))
    }
}

/// The crypto provider handed to embedded-tls: randomness for the key exchange, and the
/// project's verifier (never `None`: embedded-tls would skip verification without one).
pub struct Provider<'a, R> {
    /// Randomness for the key share and the client random.
    pub rng: R,
    /// The verifier of this handshake.
    pub verifier: HandshakeVerifier<'a>,
}

impl<R: CryptoRngCore> CryptoProvider for Provider<'_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }
}

/// A connection whose server proved its identity in the handshake (R14). The only way to
/// get one is [`Verified::new`], which checks the verifier's record; every write checks it
/// again, so no byte of application data (the bearer token) reaches an unverified server.
pub struct Verified<'v, 'a, T> {
    inner: T,
    verifier: &'v HandshakeVerifier<'a>,
}

impl<'v, 'a, T> Verified<'v, 'a, T> {
    /// Wraps a connection after its handshake: refused unless `verifier` saw a verified
    /// Certificate chain *and* a verified CertificateVerify in this handshake. A refused
    /// connection is dropped here (closing the socket).
    pub fn new(inner: T, verifier: &'v HandshakeVerifier<'a>) -> Result<Self, TlsFailure> {
        verifier.outcome()?;
        Ok(Verified { inner, verifier })
    }
}

/// Errors of a [`Verified`] connection: the inner error, or a refused write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuardError<E> {
    /// The connection's own error.
    Io(E),
    /// A write while the verifier's record is not "both verified" (cannot happen after
    /// [`Verified::new`] succeeded, as the record is borrowed; checked anyway before every
    /// write).
    NotVerified,
}

impl<E: embedded_io::Error> embedded_io::Error for GuardError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            GuardError::Io(e) => e.kind(),
            GuardError::NotVerified => embedded_io::ErrorKind::PermissionDenied,
        }
    }
}

impl<E: core::fmt::Debug> core::fmt::Display for GuardError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GuardError::Io(e) => write!(f, "{e:?}"),
            GuardError::NotVerified => f.write_str("server identity not verified"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for GuardError<E> {}

impl<T: ErrorType> ErrorType for Verified<'_, '_, T> {
    type Error = GuardError<T::Error>;
}

impl<T: Read> Read for Verified<'_, '_, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.inner.read(buf).await.map_err(GuardError::Io)
    }
}

impl<T: Write> Write for Verified<'_, '_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // R14: never a byte to a server that has not proven who it is.
        if self.verifier.outcome().is_err() {
            return Err(GuardError::NotVerified);
        }
        self.inner.write(buf).await.map_err(GuardError::Io)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await.map_err(GuardError::Io)
    }
}
