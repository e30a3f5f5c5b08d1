//! The R14 certificate matrix: one [`Case`] per row, each made fresh by rcgen into a
//! [`Scenario`] (the chain a server sends, its key, and the PEM a client is given as `--ca`).

use std::net::{IpAddr, Ipv4Addr};

use accessgate_backend::TlsIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    PKCS_ED25519, PKCS_RSA_SHA256,
};

/// ring (rcgen's backend here) cannot generate RSA keys, so the two RSA keys were made once
/// with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. They sign nothing but
/// the certificates [`Case::ValidRsa`] generates at test time.
const RSA_CA_KEY: &str = include_str!("keys/rsa-ca.pk8.pem");
const RSA_LEAF_KEY: &str = include_str!("keys/rsa-leaf.pk8.pem");

/// The host name every DNS case is issued for and connected to.
pub const DNS_HOST: &str = "localhost";

/// One row of the matrix (issue 9, R14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    /// P-256 CA → P-256 leaf for `localhost`. Accepted.
    ValidP256,
    /// P-384 CA → P-384 leaf. Accepted.
    ValidP384,
    /// RSA-2048 CA → RSA-2048 leaf. Accepted on the desktop; a device without RSA refuses it.
    ValidRsa,
    /// Ed25519 CA → Ed25519 leaf. Accepted on the desktop; the device refuses the Ed25519
    /// anchor at start-up (a configuration error, R14).
    ValidEd25519,
    /// P-256 CA → Ed25519 leaf (the CA signs with ECDSA; the server's CertificateVerify is
    /// Ed25519). Accepted on the desktop; the device accepts the anchor but refuses the leaf's
    /// key at the handshake.
    Ed25519LeafUnderP256Ca,
    /// P-256 CA → RSA-2048 leaf (the CA signs with ECDSA; the server's CertificateVerify would
    /// be RSA). Accepted on the desktop; the device offers no RSA signature scheme, so the
    /// server ends the handshake with an alert before its Certificate.
    RsaLeafUnderP256Ca,
    /// Leaf with only an IP SAN `127.0.0.1` (CN is not an address), reached by
    /// `https://127.0.0.1`. Accepted: IP URLs match IP SANs.
    ByIpAddress,
    /// SAN DNS `localhost`, CN `accessgate backend`: the name is in the SAN only. Accepted.
    SanOnly,
    /// No SAN, CN `LocalHost`: the CN counts without a SAN, case-insensitively. Accepted.
    CnOnlyMixedCase,
    /// Root CA → intermediate CA (path length 0) → leaf; the server sends leaf + intermediate.
    /// Accepted.
    ViaIntermediate,
    /// A self-signed `CA:TRUE` certificate (as `openssl req -x509` makes it) given as the trust
    /// anchor and served as the server certificate. Accepted as a pin.
    SelfSignedPinned,
    /// The leaf's notAfter is 2025-01-01. Refused.
    Expired,
    /// The leaf's notBefore is 2049-01-01. Refused.
    NotYetValid,
    /// SAN and CN both `wrong.example`. Refused.
    WrongName,
    /// SAN `other.example` but CN `localhost`: the SAN decides. Refused.
    SanMismatchCnMatch,
    /// extendedKeyUsage clientAuth only. Refused.
    ClientAuthOnlyEku,
    /// The leaf says `CA:TRUE` (signed by a real CA). Refused.
    LeafIsCa,
    /// Root CA → an end-entity certificate (`CA:FALSE`) → leaf. Refused.
    EndEntityAsIntermediate,
    /// The leaf is signed by a CA with the same name as the trusted one but another key.
    /// Refused.
    UntrustedCa,
    /// The leaf (P-256 key) claims the trusted P-256 CA as issuer but is signed with Ed25519.
    /// Refused (rogue mode (d)).
    Ed25519SignedLeaf,
}

impl Case {
    /// Every row, in the order of the matrix.
    pub const ALL: [Case; 20] = [
        Case::ValidP256,
        Case::ValidP384,
        Case::ValidRsa,
        Case::ValidEd25519,
        Case::Ed25519LeafUnderP256Ca,
        Case::RsaLeafUnderP256Ca,
        Case::ByIpAddress,
        Case::SanOnly,
        Case::CnOnlyMixedCase,
        Case::ViaIntermediate,
        Case::SelfSignedPinned,
        Case::Expired,
        Case::NotYetValid,
        Case::WrongName,
        Case::SanMismatchCnMatch,
        Case::ClientAuthOnlyEku,
        Case::LeafIsCa,
        Case::EndEntityAsIntermediate,
        Case::UntrustedCa,
        Case::Ed25519SignedLeaf,
    ];

    /// Generate this case's certificates now.
    pub fn scenario(self) -> Result<Scenario, rcgen::Error> {
        let p256 = &PKCS_ECDSA_P256_SHA256;
        match self {
            Case::ValidP256 => issued(self, p256, p256, |_| {}),
            Case::ValidP384 => issued(self, &PKCS_ECDSA_P384_SHA384, &PKCS_ECDSA_P384_SHA384, |_| {}),
            Case::ValidRsa => issued(self, &PKCS_RSA_SHA256, &PKCS_RSA_SHA256, |_| {}),
            Case::ValidEd25519 => issued(self, &PKCS_ED25519, &PKCS_ED25519, |_| {}),
            Case::Ed25519LeafUnderP256Ca => issued(self, p256, &PKCS_ED25519, |_| {}),
            Case::RsaLeafUnderP256Ca => issued(self, p256, &PKCS_RSA_SHA256, |_| {}),
            Case::ByIpAddress => {
                let mut s = issued(self, p256, p256, |leaf| {
                    leaf.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
                    leaf.distinguished_name = cn("accessgate backend");
                })?;
                s.host = Host::Ipv4Loopback;
                Ok(s)
            }
            Case::SanOnly => issued(self, p256, p256, |leaf| {
                leaf.distinguished_name = cn("accessgate backend");
            }),
            Case::CnOnlyMixedCase => issued(self, p256, p256, |leaf| {
                leaf.subject_alt_names = Vec::new();
                leaf.distinguished_name = cn("LocalHost");
            }),
            Case::Expired => issued(self, p256, p256, |leaf| {
                leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
                leaf.not_after = rcgen::date_time_ymd(2025, 1, 1);
            }),
            Case::NotYetValid => issued(self, p256, p256, |leaf| {
                leaf.not_before = rcgen::date_time_ymd(2049, 1, 1);
                leaf.not_after = rcgen::date_time_ymd(2049, 12, 31);
            }),
            Case::WrongName => issued(self, p256, p256, |leaf| {
                leaf.subject_alt_names = vec![dns("wrong.example")];
                leaf.distinguished_name = cn("wrong.example");
            }),
            Case::SanMismatchCnMatch => issued(self, p256, p256, |leaf| {
                leaf.subject_alt_names = vec![dns("other.example")];
            }),
            Case::ClientAuthOnlyEku => issued(self, p256, p256, |leaf| {
                leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }),
            Case::LeafIsCa => issued(self, p256, p256, |leaf| {
                leaf.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }),
            Case::ViaIntermediate => {
                let root = Ca::new("accessgate test root", p256, BasicConstraints::Unconstrained)?;
                let mid = root.sub_ca("accessgate test intermediate", p256)?;
                let (leaf, key) = leaf(p256, &mid.issuer(), |_| {})?;
                let peer = peer(p256, &root)?;
                Ok(Scenario::new(self, vec![leaf, mid.der.clone()], key, root.pem).with_peer(peer))
            }
            Case::EndEntityAsIntermediate => {
                let root = Ca::new("accessgate test root", p256, BasicConstraints::Unconstrained)?;
                // An ordinary server certificate (CA:FALSE) that is then used to sign the leaf.
                let ee_key = KeyPair::generate_for(p256)?;
                let mut ee = leaf_params();
                ee.subject_alt_names = vec![dns("ee.example")];
                ee.distinguished_name = cn("accessgate end entity");
                let ee_der = ee.signed_by(&ee_key, &root.issuer())?.der().to_vec();
                let (leaf, key) = leaf(p256, &Issuer::from_params(&ee, &ee_key), |_| {})?;
                let peer = peer(p256, &root)?;
                Ok(Scenario::new(self, vec![leaf, ee_der], key, root.pem).with_peer(peer))
            }
            Case::UntrustedCa => {
                let signer = Ca::new(CA_CN, p256, BasicConstraints::Constrained(0))?;
                let trusted = Ca::new(CA_CN, p256, BasicConstraints::Constrained(0))?;
                let (leaf, key) = leaf(p256, &signer.issuer(), |_| {})?;
                // The peer is issued by the CA the client trusts, not by the impostor.
                let peer = peer(p256, &trusted)?;
                Ok(Scenario::new(self, vec![leaf], key, trusted.pem).with_peer(peer))
            }
            Case::SelfSignedPinned => {
                // What `openssl req -x509 -subj /CN=localhost -addext subjectAltName=DNS:localhost`
                // makes: basicConstraints CA:TRUE, no keyUsage, no extendedKeyUsage.
                let key = KeyPair::generate_for(p256)?;
                let mut p = CertificateParams::new(vec![DNS_HOST.to_string()])?;
                p.distinguished_name = cn(DNS_HOST);
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                valid_dates(&mut p);
                let cert = p.self_signed(&key)?;
                Ok(Scenario::new(
                    self,
                    vec![cert.der().to_vec()],
                    key.serialize_der(),
                    cert.pem(),
                ))
            }
            Case::Ed25519SignedLeaf => {
                let ca = Ca::new(CA_CN, p256, BasicConstraints::Constrained(0))?;
                // Same issuer name as the trusted CA, but an Ed25519 key signs.
                let forger = KeyPair::generate_for(&PKCS_ED25519)?;
                let (leaf, key) = leaf(p256, &Issuer::from_params(&ca.params, &forger), |leaf| {
                    leaf.use_authority_key_identifier_extension = false;
                })?;
                let peer = peer(p256, &ca)?;
                Ok(Scenario::new(self, vec![leaf], key, ca.pem).with_peer(peer))
            }
        }
    }
}

/// The host part of the URL a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// `localhost`.
    Localhost,
    /// `127.0.0.1`.
    Ipv4Loopback,
}

impl Host {
    /// As written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Host::Localhost => DNS_HOST,
            Host::Ipv4Loopback => "127.0.0.1",
        }
    }
}

/// One generated case.
#[derive(Clone)]
pub struct Scenario {
    /// Which row this is.
    pub case: Case,
    /// DER certificates the server sends, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// The PEM a client trusts (`--ca`).
    pub trust_pem: String,
    /// The host the client connects to.
    pub host: Host,
    /// A well-formed server certificate for `localhost` (and its key) issued under the anchor
    /// the client trusts in this case, whatever the case breaks: a healthy server next to
    /// this case's server for one client, which (like a device) has a single trust anchor for
    /// all its endpoints. Its key has the anchor's type (a P-256 leaf for
    /// [`Case::Ed25519LeafUnderP256Ca`]). `None` for [`Case::SelfSignedPinned`]: a pin trusts
    /// one certificate.
    pub trusted_peer: Option<TlsIdentity>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("case", &self.case)
            .field("chain_len", &self.chain.len())
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    fn new(case: Case, chain: Vec<Vec<u8>>, key_pkcs8: Vec<u8>, trust_pem: String) -> Self {
        Scenario {
            case,
            chain,
            key_pkcs8,
            trust_pem,
            host: Host::Localhost,
            trusted_peer: None,
        }
    }

    fn with_peer(mut self, peer: TlsIdentity) -> Self {
        self.trusted_peer = Some(peer);
        self
    }

    /// What the reference backend serves for this case.
    pub fn identity(&self) -> TlsIdentity {
        TlsIdentity {
            chain_der: self.chain.clone(),
            key_pkcs8_der: self.key_pkcs8.clone(),
        }
    }

    /// `https://HOST:port/path`.
    pub fn url(&self, port: u16, path: &str) -> String {
        format!("https://{}:{port}{path}", self.host.as_str())
    }
}

const CA_CN: &str = "accessgate matrix CA";

fn cn(name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().expect("a valid DNS name literal"))
}

/// 2024-01-01 .. 2049-12-31 (UTCTime both ends, like the backend's own PKI).
fn valid_dates(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

fn key_for(alg: &'static SignatureAlgorithm, rsa_pem: &str) -> Result<KeyPair, rcgen::Error> {
    if alg == &PKCS_RSA_SHA256 {
        KeyPair::from_pkcs8_pem_and_sign_algo(rsa_pem, alg)
    } else {
        KeyPair::generate_for(alg)
    }
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    fn ca_params(name: &str, constraints: BasicConstraints) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = cn(name);
        p.is_ca = IsCa::Ca(constraints);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_dates(&mut p);
        p
    }

    fn new(
        name: &str,
        alg: &'static SignatureAlgorithm,
        constraints: BasicConstraints,
    ) -> Result<Ca, rcgen::Error> {
        let key = key_for(alg, RSA_CA_KEY)?;
        let params = Self::ca_params(name, constraints);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            params,
            key,
        })
    }

    /// An intermediate CA (path length 0) signed by this one.
    fn sub_ca(&self, name: &str, alg: &'static SignatureAlgorithm) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate_for(alg)?;
        let mut params = Self::ca_params(name, BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer())?;
        Ok(Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            params,
            key,
        })
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

/// A well-formed server certificate for `localhost`: SAN DNS `localhost`, CN `localhost`,
/// `CA:FALSE`, keyUsage digitalSignature, extendedKeyUsage serverAuth.
fn leaf_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.subject_alt_names = vec![dns(DNS_HOST)];
    p.distinguished_name = cn(DNS_HOST);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    valid_dates(&mut p);
    p
}

/// A leaf with `tweak` applied, signed by `issuer`: (DER, PKCS#8 key).
fn leaf(
    alg: &'static SignatureAlgorithm,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = key_for(alg, RSA_LEAF_KEY)?;
    let mut p = leaf_params();
    tweak(&mut p);
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// CA (`ca_alg`, path length 0) → leaf (`leaf_alg`) with `tweak` applied to the leaf.
fn issued(
    case: Case,
    ca_alg: &'static SignatureAlgorithm,
    leaf_alg: &'static SignatureAlgorithm,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Result<Scenario, rcgen::Error> {
    // LeafIsCa needs room below the CA for the CA:TRUE leaf to be refused for being a CA, not
    // for the path length.
    let constraints = if case == Case::LeafIsCa {
        BasicConstraints::Unconstrained
    } else {
        BasicConstraints::Constrained(0)
    };
    let ca = Ca::new(CA_CN, ca_alg, constraints)?;
    let (leaf, key) = leaf(leaf_alg, &ca.issuer(), tweak)?;
    // The peer has the CA's key type: for Ed25519LeafUnderP256Ca a P-256 leaf, one the device
    // accepts, so only the case's own server is refused there.
    let peer = peer(ca_alg, &ca)?;
    Ok(Scenario::new(case, vec![leaf], key, ca.pem).with_peer(peer))
}

/// A well-formed `localhost` leaf issued by `ca`, as a server identity ([`Scenario::trusted_peer`]).
fn peer(alg: &'static SignatureAlgorithm, ca: &Ca) -> Result<TlsIdentity, rcgen::Error> {
    let (leaf, key) = leaf(alg, &ca.issuer(), |_| {})?;
    Ok(TlsIdentity {
        chain_der: vec![leaf],
        key_pkcs8_der: key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_generates_a_chain_and_a_trust_anchor() {
        for case in Case::ALL {
            let s = case.scenario().unwrap_or_else(|e| panic!("{case:?}: {e}"));
            assert!(!s.chain.is_empty(), "{case:?}");
            assert!(s.trust_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{case:?}");
            let two_level = matches!(case, Case::ViaIntermediate | Case::EndEntityAsIntermediate);
            assert_eq!(s.chain.len(), if two_level { 2 } else { 1 }, "{case:?}");
            let peer = s.trusted_peer.as_ref().map(|p| p.chain_der.len());
            let want = if case == Case::SelfSignedPinned {
                None
            } else {
                Some(1)
            };
            assert_eq!(
                peer, want,
                "{case:?}: a trusted peer exists unless the anchor is a pin"
            );
        }
    }
}
