//! The desktop's server verification (R14): rustls + webpki, plus pinning of self-signed
//! certificates given as the trust anchor.
//!
//! webpki refuses a self-signed server certificate configured as the CA when it says
//! `CA:TRUE` (as `openssl req -x509` makes it: "CA used as end entity"), which is common for
//! on-premises backends. R14 says such a certificate is accepted as that exact certificate.
//! [`PinningVerifier`] does that and nothing more:
//!
//! * if the server's end-entity certificate is **byte-identical** to a configured anchor that
//!   is self-signed (issuer = subject, and its own key verifies its signature), it is
//!   accepted after checking the name (subjectAltName; the common name only when there is no
//!   SAN; IP URLs only against IP SANs), the validity dates, and keyUsage / extendedKeyUsage
//!   when present; intermediates the server sends are ignored;
//! * everything else goes to rustls' standard [`WebPkiServerVerifier`], so what webpki
//!   refuses stays refused, with one addition R14 asks for: a certificate *without*
//!   subjectAltName that webpki refused only for its name is accepted if its chain verifies
//!   (checked again on its own) and its common name equals the DNS name (webpki never reads
//!   the CN);
//! * the handshake signature (CertificateVerify) is always checked with the provider's
//!   algorithms against the certificate that was accepted, pinned or not.
//!
//! A pin adds no trust beyond what the anchor already had: the server must still prove it
//! holds the anchor's private key, and whoever holds a CA's key can mint any certificate under
//! it anyway.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use crate::config::GateClientConfig;
use crate::error::GateError;

/// The rustls client configuration the adapter's HTTP client uses: the OS roots (if
/// [`GateClientConfig::system_roots`]) and [`GateClientConfig::extra_ca_pem`] as anchors,
/// verified by [`PinningVerifier`], TLS 1.2 and 1.3, ring, ALPN `http/1.1`.
pub(crate) fn client_config(cfg: &GateClientConfig) -> Result<rustls::ClientConfig, GateError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let mut pins = Vec::new();
    if let Some(pem) = &cfg.extra_ca_pem {
        let certs = parse_pem_certificates(pem)?;
        for cert in certs {
            roots
                .add(cert.clone())
                .map_err(|e| GateError::Certificate(format!("unusable CA certificate: {e}")))?;
            if is_self_signed(&cert) {
                pins.push(cert);
            }
        }
    }
    if cfg.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::debug!("system trust store: {e}");
        }
        // Stores carry old or odd certificates; skip what webpki cannot use (as reqwest does).
        let (added, skipped) = roots.add_parsable_certificates(native.certs);
        log::debug!("system trust store: {added} roots, {skipped} skipped");
    }
    let verifier = PinningVerifier::new(roots, pins, provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| GateError::Certificate(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every `CERTIFICATE` block of `pem`; an error if there is none or one does not decode.
fn parse_pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, GateError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GateError::Certificate(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(GateError::Certificate("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

/// Issuer equals subject and the certificate's own key verifies its signature.
fn is_self_signed(der: &CertificateDer<'_>) -> bool {
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, cert)) => {
            cert.issuer().as_raw() == cert.subject().as_raw() && cert.verify_signature(None).is_ok()
        }
        Err(_) => false,
    }
}

/// webpki for chains, exact-match pinning for self-signed anchors (module docs).
#[derive(Debug)]
pub(crate) struct PinningVerifier {
    /// `None` when there are no anchors at all: every certificate is then refused.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The same anchors, for the common-name fallback's own chain check.
    roots: Arc<RootCertStore>,
    pins: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl PinningVerifier {
    pub(crate) fn new(
        roots: RootCertStore,
        pins: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, GateError> {
        let roots = Arc::new(roots);
        let webpki = if roots.is_empty() {
            None
        } else {
            let v = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| GateError::Certificate(format!("TLS verifier: {e}")))?;
            Some(v)
        };
        Ok(PinningVerifier {
            webpki,
            roots,
            pins,
            provider,
        })
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            // R14: a self-signed anchor served as itself is a pin.
            verify_pinned(end_entity, server_name, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        let Some(webpki) = &self.webpki else {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(e) if is_name_mismatch(&e) && !has_san(end_entity) => {
                // R14: the common name counts when there is no subjectAltName; webpki never
                // reads it. The chain is checked again here on its own (not relying on the
                // order of webpki's checks), then the CN.
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    &self.roots,
                    intermediates,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )?;
                let (_, cert) = X509Certificate::from_der(end_entity.as_ref())
                    .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
                common_name_matches(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The checks R14 keeps for a pinned certificate: dates, usage when stated, and the name.
fn verify_pinned(der: &CertificateDer<'_>, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), Error> {
    let bad = || Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|_| bad())?;

    let now = i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .ok_or_else(bad)?;
    if now < cert.validity().not_before {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > cert.validity().not_after {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }

    let purpose = || Error::InvalidCertificate(CertificateError::InvalidPurpose);
    match cert.extended_key_usage() {
        Ok(Some(eku)) if !eku.value.server_auth => return Err(purpose()),
        Ok(_) => {}
        Err(_) => return Err(bad()),
    }
    match cert.key_usage() {
        // TLS 1.2 ECDHE and TLS 1.3 both sign with the key.
        Ok(Some(ku)) if !ku.value.digital_signature() => return Err(purpose()),
        Ok(_) => {}
        Err(_) => return Err(bad()),
    }

    match cert.subject_alternative_name() {
        Ok(Some(_)) => {
            let parsed = rustls::server::ParsedCertificate::try_from(der)?;
            rustls::client::verify_server_name(&parsed, server_name)
        }
        Ok(None) => common_name_matches(&cert, server_name),
        Err(_) => Err(bad()),
    }
}

/// Without a subjectAltName (R14): a common name equal to the DNS name, ASCII
/// case-insensitive. IP addresses match IP SANs only.
fn common_name_matches(cert: &X509Certificate<'_>, server_name: &ServerName<'_>) -> Result<(), Error> {
    let mismatch = || Error::InvalidCertificate(CertificateError::NotValidForName);
    let ServerName::DnsName(dns) = server_name else {
        return Err(mismatch());
    };
    let host = dns.as_ref().trim_end_matches('.');
    let matches = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .any(|cn| cn.eq_ignore_ascii_case(host));
    if matches {
        Ok(())
    } else {
        Err(mismatch())
    }
}

fn is_name_mismatch(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// Whether the certificate carries a subjectAltName extension (an unparsable one counts as
/// present, so it never falls back to the CN).
fn has_san(der: &CertificateDer<'_>) -> bool {
    match X509Certificate::from_der(der.as_ref()) {
        Ok((_, cert)) => !matches!(cert.subject_alternative_name(), Ok(None)),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    use std::time::Duration;

    /// 2026-06-01, inside every default validity below.
    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(1_780_272_000))
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_string()).expect("server name")
    }

    /// A self-signed CA:TRUE certificate as `openssl req -x509` makes it.
    fn self_signed(
        sans: &[&str],
        cn: &str,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> rcgen::Certificate {
        let key = KeyPair::generate().expect("key");
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2049, 12, 31);
        tweak(&mut p);
        p.self_signed(&key).expect("cert")
    }

    /// The verifier `client_config` builds for `--ca <anchor's PEM>`, without system roots.
    fn verifier_for(anchor: &rcgen::Certificate) -> PinningVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let mut pins = Vec::new();
        for c in parse_pem_certificates(&anchor.pem()).expect("pem") {
            roots.add(c.clone()).expect("anchor");
            if is_self_signed(&c) {
                pins.push(c);
            }
        }
        PinningVerifier::new(roots, pins, provider).expect("verifier")
    }

    fn verify(v: &PinningVerifier, ee: &rcgen::Certificate, host: &str) -> Result<ServerCertVerified, Error> {
        v.verify_server_cert(ee.der(), &[], &name(host), &[], now())
    }

    #[test]
    fn a_self_signed_ca_true_anchor_is_accepted_as_a_pin() {
        let cert = self_signed(&["localhost"], "localhost", |_| {});
        assert!(is_self_signed(cert.der()));
        let v = verifier_for(&cert);
        assert!(verify(&v, &cert, "localhost").is_ok());
        assert!(
            verify(&v, &cert, "LOCALHOST").is_ok(),
            "DNS names are case-insensitive"
        );
    }

    #[test]
    fn a_pin_still_checks_the_name_against_the_san_not_the_cn() {
        let cert = self_signed(&["other.example"], "localhost", |_| {});
        let v = verifier_for(&cert);
        let err = verify(&v, &cert, "localhost").expect_err("SAN decides");
        assert!(
            matches!(
                err,
                Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
        assert!(verify(&v, &cert, "other.example").is_ok());
    }

    #[test]
    fn a_pin_without_san_matches_the_cn_for_dns_names_only() {
        let cert = self_signed(&[], "Backend.Local", |_| {});
        let v = verifier_for(&cert);
        assert!(verify(&v, &cert, "backend.local").is_ok());
        assert!(verify(&v, &cert, "other.local").is_err());
        let ip = ServerName::try_from("127.0.0.1").expect("ip");
        assert!(v.verify_server_cert(cert.der(), &[], &ip, &[], now()).is_err());
    }

    #[test]
    fn a_pin_by_ip_needs_an_ip_san() {
        let cert = self_signed(&["127.0.0.1"], "backend", |_| {});
        let v = verifier_for(&cert);
        let ip = ServerName::try_from("127.0.0.1").expect("ip");
        assert!(v.verify_server_cert(cert.der(), &[], &ip, &[], now()).is_ok());
        let other = ServerName::try_from("127.0.0.2").expect("ip");
        assert!(v.verify_server_cert(cert.der(), &[], &other, &[], now()).is_err());
    }

    #[test]
    fn a_pin_outside_its_dates_is_refused() {
        let expired = self_signed(&["localhost"], "localhost", |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let err = verify(&verifier_for(&expired), &expired, "localhost").expect_err("expired");
        assert!(
            matches!(err, Error::InvalidCertificate(CertificateError::Expired)),
            "{err:?}"
        );
        let future = self_signed(&["localhost"], "localhost", |p| {
            p.not_before = rcgen::date_time_ymd(2048, 1, 1);
        });
        let err = verify(&verifier_for(&future), &future, "localhost").expect_err("not yet valid");
        assert!(
            matches!(err, Error::InvalidCertificate(CertificateError::NotValidYet)),
            "{err:?}"
        );
    }

    #[test]
    fn a_pin_with_a_stated_usage_must_allow_server_auth() {
        let client_only = self_signed(&["localhost"], "localhost", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        });
        assert!(verify(&verifier_for(&client_only), &client_only, "localhost").is_err());
        let sign_certs_only = self_signed(&["localhost"], "localhost", |p| {
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        });
        assert!(verify(&verifier_for(&sign_certs_only), &sign_certs_only, "localhost").is_err());
    }

    #[test]
    fn an_unconfigured_self_signed_certificate_goes_to_webpki_and_is_refused() {
        let anchor = self_signed(&["localhost"], "localhost", |_| {});
        let stranger = self_signed(&["localhost"], "localhost", |_| {});
        // Same name, other key: webpki refuses it (here as "CA used as end entity").
        let err = verify(&verifier_for(&anchor), &stranger, "localhost").expect_err("not pinned");
        assert!(matches!(err, Error::InvalidCertificate(_)), "{err:?}");
    }

    #[test]
    fn without_any_anchor_every_certificate_is_refused() {
        let cert = self_signed(&["localhost"], "localhost", |_| {});
        let v = PinningVerifier::new(
            RootCertStore::empty(),
            Vec::new(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .expect("verifier");
        assert!(verify(&v, &cert, "localhost").is_err());
    }

    /// A CA and a leaf it signs with `sans` and `cn`: (CA, leaf).
    fn ca_and_leaf(sans: &[&str], cn: &str) -> (rcgen::Certificate, rcgen::Certificate) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test ca");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let mut leaf =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        leaf.distinguished_name.push(DnType::CommonName, cn);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        (ca_cert, leaf.signed_by(&leaf_key, &issuer).expect("leaf"))
    }

    #[test]
    fn a_ca_signed_leaf_without_san_matches_its_cn_case_insensitively() {
        let (ca, leaf) = ca_and_leaf(&[], "LocalHost");
        let v = verifier_for(&ca);
        assert!(verify(&v, &leaf, "localhost").is_ok());
        let err = verify(&v, &leaf, "other.example").expect_err("CN differs");
        assert!(is_name_mismatch(&err), "{err:?}");
    }

    #[test]
    fn a_ca_signed_leaf_with_san_never_falls_back_to_its_cn() {
        let (ca, leaf) = ca_and_leaf(&["other.example"], "localhost");
        let err = verify(&verifier_for(&ca), &leaf, "localhost").expect_err("SAN decides");
        assert!(is_name_mismatch(&err), "{err:?}");
    }

    #[test]
    fn the_cn_fallback_still_needs_a_trusted_chain() {
        let (_, leaf) = ca_and_leaf(&[], "localhost");
        let (other_ca, _) = ca_and_leaf(&[], "x");
        let err = verify(&verifier_for(&other_ca), &leaf, "localhost").expect_err("untrusted");
        assert!(!is_name_mismatch(&err), "{err:?}");
    }

    #[test]
    fn a_leaf_signed_by_a_ca_is_not_self_signed_and_pem_errors_are_certificate_errors() {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        assert!(!is_self_signed(leaf.der()));
        assert!(matches!(
            parse_pem_certificates("hello"),
            Err(GateError::Certificate(_))
        ));
    }
}
