//! Test PKI generated at start-up and the rustls server configuration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{BackendError, TlsIdentity};

/// Common name of the generated CA.
pub(crate) const CA_CN: &str = "accessgate test CA";

/// The generated CA (none for a given [`TlsIdentity`]) and the rustls config serving the leaf.
pub(crate) struct TestPki {
    pub(crate) ca_pem: Option<String>,
    pub(crate) ca_der: Option<Vec<u8>>,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
}

/// Validity of both certificates: 2024-01-01 .. 2049-12-31, so both dates are UTCTime
/// (small X.509 parsers on devices often handle nothing else).
fn set_validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

pub(crate) fn generate() -> Result<TestPki, BackendError> {
    // CA: ECDSA P-256, self-signed.
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, CA_CN);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    // Leaf: ECDSA P-256, CN = localhost, SAN = DNS localhost + loopback IPs, signed directly
    // by the CA (no intermediate: embedded TLS stacks verify a single level).
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    set_validity(&mut leaf);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(TestPki {
        ca_pem: Some(ca_cert.pem()),
        ca_der: Some(ca_cert.der().to_vec()),
        server_config: server_config(vec![leaf_cert.der().to_vec()], leaf_key.serialize_der())?,
    })
}

/// Serves exactly the given chain and key (no CA of ours).
pub(crate) fn serve_identity(identity: &TlsIdentity) -> Result<TestPki, BackendError> {
    Ok(TestPki {
        ca_pem: None,
        ca_der: None,
        server_config: server_config(identity.chain_der.clone(), identity.key_pkcs8_der.clone())?,
    })
}

/// rustls (ring) serving `chain` with `key`, TLS 1.2 + 1.3. rustls does not judge the chain,
/// so broken certificates are served as given.
fn server_config(chain: Vec<Vec<u8>>, key_pkcs8: Vec<u8>) -> Result<Arc<rustls::ServerConfig>, BackendError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(server_config))
}
