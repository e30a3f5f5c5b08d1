//! The few X.509 fields the verifier reads itself, from DER it does not trust.
//!
//! Path validation (signatures, basicConstraints, EKU, SAN, dates) is rustls-webpki's job.
//! This reader only extracts what webpki does not expose without `alloc`: the validity
//! period (to pick the evaluation time when there is no clock), the subject CN (the R14
//! fallback when there is no subjectAltName), whether a subjectAltName is present, the
//! keyUsage bits (webpki ignores keyUsage) and the subjectPublicKeyInfo (the key that must
//! sign the CertificateVerify). Every read is bounds-checked; malformed input gives `None`,
//! never a panic.

/// One DER TLV: tag, contents, and what follows it.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Reads one TLV at the start of `input`; returns it and the rest. Definite lengths only,
/// single-byte tags (all this module needs), lengths up to 4 bytes.
fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = (rest.get(..n)?, rest.get(n..)?);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let value = rest.get(..len)?;
    Some((Tlv { tag, value }, rest.get(len..)?))
}

/// Reads a TLV with the expected tag.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;

/// id-at-commonName (2.5.4.3).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName (2.5.29.17).
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// id-ce-keyUsage (2.5.29.15).
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// secp256r1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34).
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// The public key of a certificate, as far as the verifier cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey<'a> {
    /// A P-256 point (SEC1 encoding, as in the certificate).
    P256(&'a [u8]),
    /// A P-384 point (SEC1 encoding).
    P384(&'a [u8]),
    /// Anything else: RSA, Ed25519, other curves. The device cannot check signatures made
    /// with these keys (R14: refused, not skipped).
    Unsupported,
}

/// The fields of one certificate the verifier reads itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CertFields<'a> {
    /// notBefore, seconds since the Unix epoch.
    pub not_before: u64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: u64,
    /// The last commonName of the subject, if any (raw bytes of its string value).
    pub common_name: Option<&'a [u8]>,
    /// Whether a subjectAltName extension is present (then the CN is never used, R14).
    pub has_san: bool,
    /// The keyUsage bits (bit 0 = digitalSignature is `0x80` of the first byte), if the
    /// extension is present.
    pub key_usage_digital_signature: Option<bool>,
    /// The subject public key.
    pub key: PublicKey<'a>,
}

/// Parses the fields above from a DER certificate; `None` if it is not one.
pub(crate) fn cert_fields(der: &[u8]) -> Option<CertFields<'_>> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional (v1 has none).
    if let Some((tlv, after)) = read_tlv(rest) {
        if tlv.tag == VERSION {
            rest = after;
        }
    }
    let (_serial, rest) = read_tlv(rest)?;
    let (_sig_alg, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (spki, rest) = expect(rest, SEQUENCE)?;

    let (not_before, v) = read_time(validity)?;
    let (not_after, _) = read_time(v)?;
    let common_name = common_name(subject);
    let key = public_key(spki)?;

    let mut has_san = false;
    let mut key_usage_digital_signature = None;
    // Optional issuerUniqueID [1], subjectUniqueID [2], then extensions [3].
    let mut rest = rest;
    while let Some((tlv, after)) = read_tlv(rest) {
        rest = after;
        if tlv.tag != EXTENSIONS {
            continue;
        }
        let (mut exts, _) = expect(tlv.value, SEQUENCE)?;
        while !exts.is_empty() {
            let (ext, after) = expect(exts, SEQUENCE)?;
            exts = after;
            let (oid, mut body) = expect(ext, OID)?;
            if let Some((tlv, after)) = read_tlv(body) {
                if tlv.tag == BOOLEAN {
                    body = after;
                }
            }
            let (value, _) = expect(body, OCTET_STRING)?;
            if oid == OID_SAN {
                has_san = true;
            } else if oid == OID_KEY_USAGE {
                let (bits, _) = expect(value, BIT_STRING)?;
                // First byte: unused bits; then the flags, digitalSignature the top bit.
                key_usage_digital_signature = Some(bits.get(1).is_some_and(|b| b & 0x80 != 0));
            }
        }
    }
    Some(CertFields {
        not_before,
        not_after,
        common_name,
        has_san,
        key_usage_digital_signature,
        key,
    })
}

/// The last CN attribute of a Name (RFC 6125 says the most specific one).
fn common_name(mut name: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    while !name.is_empty() {
        let (set, after) = expect(name, SET)?;
        name = after;
        let mut set = set;
        while !set.is_empty() {
            let (atv, after) = expect(set, SEQUENCE)?;
            set = after;
            let (oid, value) = expect(atv, OID)?;
            if oid == OID_CN {
                let (tlv, _) = read_tlv(value)?;
                found = Some(tlv.value);
            }
        }
    }
    found
}

fn public_key(spki: &[u8]) -> Option<PublicKey<'_>> {
    let (alg, rest) = expect(spki, SEQUENCE)?;
    let (bits, _) = expect(rest, BIT_STRING)?;
    let (oid, params) = expect(alg, OID)?;
    if oid != OID_EC_PUBLIC_KEY {
        return Some(PublicKey::Unsupported);
    }
    let Some((curve, _)) = expect(params, OID) else {
        return Some(PublicKey::Unsupported);
    };
    // No unused bits in a key's BIT STRING.
    let point = match bits.split_first() {
        Some((0, point)) => point,
        _ => return None,
    };
    Some(match curve {
        OID_P256 => PublicKey::P256(point),
        OID_P384 => PublicKey::P384(point),
        _ => PublicKey::Unsupported,
    })
}

/// Reads a UTCTime or GeneralizedTime (the DER forms X.509 allows: `YYMMDDHHMMSSZ` and
/// `YYYYMMDDHHMMSSZ`) as seconds since the Unix epoch.
fn read_time(input: &[u8]) -> Option<(u64, &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    let (year, digits) = match (tlv.tag, tlv.value.len()) {
        (UTC_TIME, 13) => {
            let yy = two(tlv.value, 0)?;
            // RFC 5280 4.1.2.5.1: 50..99 is 19xx, 00..49 is 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &tlv.value[2..])
        }
        (GENERALIZED_TIME, 15) => (two(tlv.value, 0)? * 100 + two(tlv.value, 2)?, &tlv.value[4..]),
        _ => return None,
    };
    if digits.get(10) != Some(&b'Z') {
        return None;
    }
    let (month, day) = (two(digits, 0)?, two(digits, 2)?);
    let (hour, minute, second) = (two(digits, 4)?, two(digits, 6)?, two(digits, 8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second, rest))
}

fn two(s: &[u8], at: usize) -> Option<u64> {
    let (a, b) = (*s.get(at)?, *s.get(at + 1)?);
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| u64::from(a - b'0') * 10 + u64::from(b - b'0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); `None`
/// before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_convert_to_unix_days() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 11, 30), Some(20_787));
        assert_eq!(days_from_civil(1969, 12, 31), None);
    }

    #[test]
    fn both_time_forms_are_read() {
        // 2049-12-31 23:59:59 as UTCTime and 2050-01-01 00:00:00 as GeneralizedTime.
        let utc = b"\x17\x0d491231235959Z";
        let gen = b"\x18\x0f20500101000000Z";
        assert_eq!(read_time(utc).map(|t| t.0), Some(2_524_607_999));
        assert_eq!(read_time(gen).map(|t| t.0), Some(2_524_608_000));
        assert!(read_time(b"\x17\x0d491231235959X").is_none());
        assert!(read_time(b"\x17\x0d491331235959Z").is_none());
    }

    #[test]
    fn utc_times_from_1950_are_19xx_and_out_of_range_fields_are_refused() {
        // RFC 5280 4.1.2.5.1: UTCTime 50..99 is 19xx (a CA valid since the last century).
        assert_eq!(
            read_time(b"\x17\x0d991231235959Z").map(|t| t.0),
            Some(946_684_799)
        );
        assert_eq!(read_time(b"\x17\x0d700101000000Z").map(|t| t.0), Some(0));
        // A leap second is a valid time; hour 24, minute 60, second 61, day 32 are not.
        assert_eq!(
            read_time(b"\x17\x0d491231235960Z").map(|t| t.0),
            Some(2_524_608_000)
        );
        for bad in [
            &b"\x17\x0d491231245959Z"[..],
            b"\x17\x0d491231236059Z",
            b"\x17\x0d491231235961Z",
            b"\x17\x0d491232235959Z",
            b"\x17\x0d491200235959Z",
            // Not a digit (':' would read as 10, making second 60).
            b"\x17\x0d49123123595:Z",
        ] {
            assert!(read_time(bad).is_none(), "{:?}", core::str::from_utf8(&bad[2..]));
        }
    }

    #[test]
    fn only_definite_lengths_of_up_to_four_bytes_are_read() {
        // X.690 10.1: DER has no indefinite length (0x80); longer length fields than 4 bytes
        // are refused, whatever follows (here enough bytes for any reading of them).
        let tlv = |len: &[u8]| {
            let mut t = vec![OCTET_STRING];
            t.extend_from_slice(len);
            t.extend_from_slice(&[0u8; 300]);
            t
        };
        assert!(read_tlv(&tlv(&[0x80])).is_none());
        assert!(read_tlv(&tlv(&[0x85, 0, 0, 0, 0, 0x80])).is_none());
        assert!(read_tlv(&tlv(&[0x86, 0, 0, 0, 0, 0, 0x80])).is_none());
        // The short form up to 127, the long form with 1..=4 length bytes.
        assert_eq!(read_tlv(&tlv(&[0x7f])).map(|(t, _)| t.value.len()), Some(127));
        assert_eq!(
            read_tlv(&tlv(&[0x81, 0x80])).map(|(t, _)| t.value.len()),
            Some(128)
        );
        assert_eq!(
            read_tlv(&tlv(&[0x84, 0, 0, 1, 0x2c])).map(|(t, _)| t.value.len()),
            Some(300)
        );
    }

    #[test]
    fn truncated_input_is_none_not_a_panic() {
        for len in 0..8 {
            assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0, 0][..len]).is_none());
        }
        assert!(cert_fields(&[0x30, 0x03, 0x30, 0x01]).is_none());
    }
}
