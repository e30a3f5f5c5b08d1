//! ECDSA signature checks for rustls-webpki, on RustCrypto (`p256`, `p384`, `sha2`).
//!
//! rustls-webpki validates certificate paths but leaves the arithmetic to a provider; its
//! own providers (ring, aws-lc-rs) do not build for a Cortex-M without an allocator, so the
//! device brings these four, the ECDSA combinations a TLS 1.3 server chain uses. RSA is
//! absent on purpose: RustCrypto's `rsa` needs `alloc` (R14: an RSA chain is refused, not
//! skipped).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rustls_pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256, Sha384};

/// Curve of an ECDSA key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// Hash an ECDSA signature is made over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
}

/// One (curve, hash) pair.
#[derive(Debug)]
pub(crate) struct Ecdsa {
    curve: Curve,
    hash: Hash,
}

/// ECDSA P-256 with SHA-256.
pub(crate) static ECDSA_P256_SHA256: Ecdsa = Ecdsa {
    curve: Curve::P256,
    hash: Hash::Sha256,
};
/// ECDSA P-256 with SHA-384.
pub(crate) static ECDSA_P256_SHA384: Ecdsa = Ecdsa {
    curve: Curve::P256,
    hash: Hash::Sha384,
};
/// ECDSA P-384 with SHA-256.
pub(crate) static ECDSA_P384_SHA256: Ecdsa = Ecdsa {
    curve: Curve::P384,
    hash: Hash::Sha256,
};
/// ECDSA P-384 with SHA-384.
pub(crate) static ECDSA_P384_SHA384: Ecdsa = Ecdsa {
    curve: Curve::P384,
    hash: Hash::Sha384,
};

/// What certificate signatures may use.
pub(crate) static ALL: &[&dyn SignatureVerificationAlgorithm] = &[
    &ECDSA_P256_SHA256,
    &ECDSA_P384_SHA384,
    &ECDSA_P256_SHA384,
    &ECDSA_P384_SHA256,
];

/// Checks a DER-encoded ECDSA signature over `message` with a SEC1-encoded public key.
pub(crate) fn verify(curve: Curve, hash: Hash, public_key: &[u8], message: &[u8], der_sig: &[u8]) -> bool {
    let mut digest = [0u8; 48];
    let digest: &[u8] = match hash {
        Hash::Sha256 => {
            digest[..32].copy_from_slice(&Sha256::digest(message));
            &digest[..32]
        }
        Hash::Sha384 => {
            digest.copy_from_slice(&Sha384::digest(message));
            &digest[..]
        }
    };
    match curve {
        Curve::P256 => {
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key),
                p256::ecdsa::Signature::from_der(der_sig),
            ) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
        Curve::P384 => {
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key),
                p384::ecdsa::Signature::from_der(der_sig),
            ) else {
                return false;
            };
            key.verify_prehash(digest, &sig).is_ok()
        }
    }
}

impl SignatureVerificationAlgorithm for Ecdsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        if verify(self.curve, self.hash, public_key, message, signature) {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        match self.curve {
            Curve::P256 => alg_id::ECDSA_P256,
            Curve::P384 => alg_id::ECDSA_P384,
        }
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.hash {
            Hash::Sha256 => alg_id::ECDSA_SHA256,
            Hash::Sha384 => alg_id::ECDSA_SHA384,
        }
    }
}
