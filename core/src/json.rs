//! One strict pass over a JSON body (RFC 8259): validates the whole text, hands every member
//! of a top-level object to the caller with its key still escaped, and never allocates or
//! recurses (R1, R12).
//!
//! Both classifiers read their bodies with [`scan`]: the check body (`has_access`, R1) and the
//! token endpoint's answer (`access_token`, `expires_in`, ..., R11). A key is compared as JSON
//! defines it, after unescaping ([`JsonStr::eq_ascii`]): `"has\u005faccess"` *is*
//! `has_access`, so a body that spells it both ways has a duplicate key (R1).
//!
//! What the scan accepts is exactly the RFC 8259 grammar, plus two limits of its own: nesting
//! deeper than [`MAX_JSON_DEPTH`] is refused, and so is a `\u` escape that does not encode a
//! Unicode scalar value (a lone or reversed surrogate), as a strict parser producing text must.
//! The work is one step per byte (a `\u` escape or a UTF-8 sequence is a bounded step), so a
//! body of `n` bytes costs O(n) time and O(1) memory whatever it contains.

use crate::classify::{BodyError, MAX_JSON_DEPTH};

// The container stack is a bit set, one bit per open container (a u32: one-instruction
// shifts on a 32-bit core).
const _: () = assert!(MAX_JSON_DEPTH <= 32);

/// A JSON string as it appears in the body, between its quotes: `raw` is valid UTF-8 with
/// well-formed escapes; `escaped` says whether it holds any backslash escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JsonStr<'a> {
    raw: &'a [u8],
    escaped: bool,
}

/// The value of a top-level member, as far as a classifier needs to see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonValue<'a> {
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A number, as written (grammar already checked).
    Number(&'a [u8]),
    /// A string.
    Str(JsonStr<'a>),
    /// An object or an array (its content is validated, not reported).
    Container,
}

/// What the body's top-level value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Top {
    /// An object: its members were reported.
    Object,
    /// Any other JSON value.
    Other,
}

impl<'a> JsonStr<'a> {
    /// The string's bytes when it holds no escape (then they are exactly its value).
    pub(crate) fn unescaped(&self) -> Option<&'a [u8]> {
        (!self.escaped).then_some(self.raw)
    }

    /// Whether the string, unescaped, equals the ASCII text `target`.
    pub(crate) fn eq_ascii(&self, target: &[u8]) -> bool {
        self.eq_folded(target, false)
    }

    /// Like [`JsonStr::eq_ascii`], ignoring ASCII case.
    pub(crate) fn eq_ascii_ignore_case(&self, target: &[u8]) -> bool {
        self.eq_folded(target, true)
    }

    /// One comparison for both: a flag rather than a closure, so there is one copy of it.
    /// Unescaped strings go through [`Units`] too (their units are their bytes).
    #[inline(never)]
    fn eq_folded(&self, target: &[u8], fold: bool) -> bool {
        // Unescaping only shortens a string.
        if self.raw.len() < target.len() {
            return false;
        }
        let mut units = Units { raw: self.raw, i: 0 };
        let mut target = target.iter();
        // Unit by unit, both ending together (one `next` call: inlined).
        loop {
            match (units.next(), target.next()) {
                (None, None) => return true,
                // Non-ASCII units (code points >= 0x80, UTF-8 bytes) never match ASCII.
                (Some(u), Some(&t))
                    if u < 0x80 && (u as u8 == t || (fold && (u as u8).eq_ignore_ascii_case(&t))) => {}
                _ => return false,
            }
        }
    }
}

/// The unescaped content of a validated string: each escape as its value (a `\u` escape as
/// its UTF-16 code unit, so a surrogate pair comes out as two units), every other byte as
/// itself (the bytes of a multi-byte UTF-8 character come out one by one). Everything that is
/// not ASCII comes out as units >= 0x80, which is all the ASCII comparisons need.
struct Units<'a> {
    raw: &'a [u8],
    i: usize,
}

impl Iterator for Units<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let c = *self.raw.get(self.i)?;
        if c != b'\\' {
            self.i += 1;
            return Some(u32::from(c));
        }
        // The scan validated every escape, so the bytes are there.
        let e = *self.raw.get(self.i + 1)?;
        self.i += 2;
        Some(match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => 0x0a,
            b'r' => 0x0d,
            b't' => 0x09,
            b'u' => {
                let u = hex4(self.raw, self.i)?;
                self.i += 4;
                u
            }
            other => u32::from(other), // `"`, `\`, `/`
        })
    }
}

/// Bytes that may appear unescaped in a string without a closer look: printable ASCII except
/// `"` and `\`. (A comparison, not a 256-byte table: the table cost more flash than the test.)
fn plain(c: u8) -> bool {
    (0x20..0x80).contains(&c) && c != b'"' && c != b'\\'
}

/// The index of the first non-whitespace byte at or after `i`. Out of line: called from
/// seven places of the scan (flash, issue 11).
#[inline(never)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(i) {
        i += 1;
    }
    i
}

/// The error for an unexpected byte at `i`: the end of the body is truncation, a byte that
/// cannot start UTF-8 (or a broken sequence) is `NotUtf8`, anything else is `Malformed`.
#[cold]
fn unexpected(b: &[u8], i: usize) -> BodyError {
    match b.get(i) {
        Some(&c) if c >= 0x80 && utf8_seq(b, i).is_err() => BodyError::NotUtf8,
        _ => BodyError::Malformed,
    }
}

/// Validates the UTF-8 sequence starting at `i` (its lead byte is >= 0x80) and returns the
/// index after it (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
///
/// The lead byte gives the length and the range of the second byte (RFC 3629's table); every
/// later byte is a plain continuation byte.
fn utf8_seq(b: &[u8], i: usize) -> Result<usize, BodyError> {
    let (n, lo, hi): (usize, u8, u8) = match b.get(i) {
        Some(0xc2..=0xdf) => (2, 0x80, 0xbf),
        Some(0xe0) => (3, 0xa0, 0xbf),
        Some(0xe1..=0xec | 0xee..=0xef) => (3, 0x80, 0xbf),
        Some(0xed) => (3, 0x80, 0x9f), // no surrogates
        Some(0xf0) => (4, 0x90, 0xbf),
        Some(0xf1..=0xf3) => (4, 0x80, 0xbf),
        Some(0xf4) => (4, 0x80, 0x8f), // nothing above U+10FFFF
        _ => return Err(BodyError::NotUtf8),
    };
    let (mut lo, mut hi) = (lo, hi);
    for j in 1..n {
        if !b.get(i + j).is_some_and(|&c| lo <= c && c <= hi) {
            return Err(BodyError::NotUtf8);
        }
        (lo, hi) = (0x80, 0xbf);
    }
    Ok(i + n)
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let h = b.get(i..i + 4)?;
    let mut v = 0u32;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v << 4 | u32::from(d);
    }
    Some(v)
}

/// Scans the string whose opening quote is at `start`; returns the index after its closing
/// quote and whether it holds an escape.
#[inline]
fn string(b: &[u8], start: usize) -> Result<(usize, bool), BodyError> {
    let mut j = start + 1;
    let mut escaped = false;
    loop {
        while b.get(j).is_some_and(|&c| plain(c)) {
            j += 1;
        }
        match b.get(j) {
            Some(b'"') => return Ok((j + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                j = escape(b, j + 1)?;
            }
            Some(&c) if c >= 0x80 => j = utf8_seq(b, j)?,
            // A control character (RFC 8259 wants it escaped), or the body ended.
            _ => return Err(BodyError::Malformed),
        }
    }
}

/// Checks the escape whose letter is at `i` (after the backslash); returns the index after it.
/// A `\u` escape must encode a scalar value: a high surrogate only as the first half of a
/// `\uD8xx\uDCxx` pair, a low surrogate never alone.
fn escape(b: &[u8], i: usize) -> Result<usize, BodyError> {
    match b.get(i) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
        Some(b'u') => {
            let u = hex4(b, i + 1).ok_or(BodyError::Malformed)?;
            match u {
                0xd800..=0xdbff => {
                    if b.get(i + 5..i + 7) != Some(b"\\u") {
                        return Err(BodyError::Malformed); // lone high surrogate
                    }
                    match hex4(b, i + 7) {
                        Some(0xdc00..=0xdfff) => Ok(i + 11),
                        _ => Err(BodyError::Malformed),
                    }
                }
                0xdc00..=0xdfff => Err(BodyError::Malformed), // lone low surrogate
                _ => Ok(i + 5),
            }
        }
        _ => Err(BodyError::Malformed),
    }
}

/// Scans the number starting at `start` (RFC 8259: `-? (0 | [1-9][0-9]*) (. [0-9]+)?
/// ([eE] [+-]? [0-9]+)?`); returns the index after it. A leading zero ends the integer part,
/// so `01` leaves `1` for the caller to refuse.
fn number(b: &[u8], start: usize) -> Result<usize, BodyError> {
    let digits = |mut j: usize| {
        let from = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j, j > from)
    };
    let mut j = start;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j).0,
        _ => return Err(BodyError::Malformed),
    }
    if b.get(j) == Some(&b'.') {
        let (k, any) = digits(j + 1);
        if !any {
            return Err(BodyError::Malformed);
        }
        j = k;
    }
    if let Some(b'e' | b'E') = b.get(j) {
        j += 1;
        if let Some(b'+' | b'-') = b.get(j) {
            j += 1;
        }
        let (k, any) = digits(j);
        if !any {
            return Err(BodyError::Malformed);
        }
        j = k;
    }
    Ok(j)
}

/// Reads `"key" :` at `i` (whitespace before `i` already skipped); returns the key and the
/// index of the value (whitespace skipped).
#[inline]
fn key(b: &[u8], i: usize) -> Result<(JsonStr<'_>, usize), BodyError> {
    if b.get(i) != Some(&b'"') {
        return Err(unexpected(b, i));
    }
    let (end, escaped) = string(b, i)?;
    let key = JsonStr {
        raw: b.get(i + 1..end - 1).unwrap_or_default(),
        escaped,
    };
    let j = ws(b, end);
    if b.get(j) != Some(&b':') {
        return Err(unexpected(b, j));
    }
    Ok((key, ws(b, j + 1)))
}

/// Validates `body` as one JSON text and calls `member(key, value)` for each member of the
/// top-level object, in order (duplicates included: deciding about them is the caller's job).
/// Nested members are validated, never reported.
///
/// Errors: `Malformed` (not JSON, truncated, trailing bytes, a lone surrogate escape),
/// `NotUtf8` (a byte sequence that is not UTF-8), `TooDeep` (more than [`MAX_JSON_DEPTH`]
/// nested containers). A body that is valid JSON but not an object gives `Ok(Top::Other)`.
pub(crate) fn scan<'a>(
    b: &'a [u8],
    mut member: impl FnMut(JsonStr<'a>, JsonValue<'a>),
) -> Result<Top, BodyError> {
    scan_with(b, &mut member)
}

/// [`scan`] with the callback behind a reference: one copy of the scanner serves every caller
/// (the check body, the token answer, the token error body) instead of one copy per closure,
/// about 1 KB of flash each on a Cortex-M0+.
#[inline(never)]
fn scan_with<'a>(b: &'a [u8], member: &mut dyn FnMut(JsonStr<'a>, JsonValue<'a>)) -> Result<Top, BodyError> {
    let mut i = ws(b, 0);
    let top = if b.get(i) == Some(&b'{') {
        Top::Object
    } else {
        Top::Other
    };
    let mut stack: u32 = 0; // bit k: container at depth k + 1 is an object
    let mut depth: u32 = 0;
    // The key of the top-level member whose value comes next.
    let mut pending = JsonStr {
        raw: &[],
        escaped: false,
    };
    // Whether a `"key" :` comes before the next value (inside an object).
    let mut want_key = false;
    loop {
        if want_key {
            let (k, j) = key(b, i)?;
            if depth == 1 {
                pending = k;
            }
            i = j;
        }
        // ---- a value starts at `i` ----
        let Some(&c) = b.get(i) else {
            return Err(BodyError::Malformed);
        };
        let (value, end) = match c {
            b'{' | b'[' => {
                if depth >= MAX_JSON_DEPTH {
                    return Err(BodyError::TooDeep);
                }
                (JsonValue::Container, i + 1)
            }
            b'"' => {
                let (end, escaped) = string(b, i)?;
                let raw = b.get(i + 1..end - 1).unwrap_or_default();
                (JsonValue::Str(JsonStr { raw, escaped }), end)
            }
            b't' | b'f' | b'n' => {
                let (lit, value): (&[u8], _) = match c {
                    b't' => (b"true", JsonValue::Bool(true)),
                    b'f' => (b"false", JsonValue::Bool(false)),
                    _ => (b"null", JsonValue::Null),
                };
                if b.get(i..i + lit.len()) != Some(lit) {
                    return Err(BodyError::Malformed);
                }
                (value, i + lit.len())
            }
            b'-' | b'0'..=b'9' => {
                let end = number(b, i)?;
                (JsonValue::Number(b.get(i..end).unwrap_or_default()), end)
            }
            _ => return Err(unexpected(b, i)),
        };
        // A member of the top-level object is reported when its value starts (a container's
        // content is validated after).
        if depth == 1 && top == Top::Object {
            member(pending, value);
        }
        i = ws(b, end);
        if matches!(value, JsonValue::Container) {
            let object = c == b'{';
            depth += 1;
            stack = stack << 1 | u32::from(object);
            if b.get(i) != Some(if object { &b'}' } else { &b']' }) {
                want_key = object;
                continue;
            }
            // An empty container: a value ended.
            depth -= 1;
            stack >>= 1;
            i += 1;
        }
        // ---- a value ended before `i`: close containers until the next value ----
        loop {
            i = ws(b, i);
            if depth == 0 {
                return if i == b.len() {
                    Ok(top)
                } else {
                    Err(unexpected(b, i))
                };
            }
            let object = stack & 1 == 1;
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    want_key = object;
                    break;
                }
                Some(b'}') if object => {}
                Some(b']') if !object => {}
                _ => return Err(unexpected(b, i)),
            }
            depth -= 1;
            stack >>= 1;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(b: &[u8]) -> Result<Top, BodyError> {
        scan(b, |_, _| {})
    }

    fn members(b: &[u8]) -> Vec<(JsonStr<'_>, JsonValue<'_>)> {
        let mut v = Vec::new();
        valid(b).unwrap();
        scan(b, |k, x| v.push((k, x))).unwrap();
        v
    }

    #[test]
    fn reports_top_level_members_only_in_order() {
        let m = members(br#" {"a":1, "b":{"c":true}, "d":[null], "e":"x\ny", "f":false, "g":null} "#);
        let keys: Vec<&[u8]> = m.iter().map(|(k, _)| k.raw).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"d", b"e", b"f", b"g"]);
        assert_eq!(m[0].1, JsonValue::Number(b"1"));
        assert_eq!(m[1].1, JsonValue::Container);
        assert_eq!(m[2].1, JsonValue::Container);
        assert!(matches!(m[3].1, JsonValue::Str(s) if s.escaped && s.raw == br"x\ny"));
        assert_eq!(m[4].1, JsonValue::Bool(false));
        assert_eq!(m[5].1, JsonValue::Null);
    }

    #[test]
    fn non_objects_are_valid_but_not_objects() {
        for b in [
            &b"[1,{\"a\":2}]"[..],
            b"true",
            b"\"s\"",
            b" -0.5e+3 ",
            b"null",
            b"[]",
        ] {
            assert_eq!(valid(b), Ok(Top::Other), "{:?}", core::str::from_utf8(b));
        }
        assert_eq!(valid(b"{}"), Ok(Top::Object));
    }

    #[test]
    fn keys_compare_after_unescaping() {
        let m =
            members(br#"{"has\u005faccess":1,"has\u005Faccess":1,"\u0068as_access":1,"has_acces\u0073":1}"#);
        assert!(m.iter().all(|(k, _)| k.eq_ascii(b"has_access")));
        let m =
            members(br#"{"has_access\u0000":1,"has\\access":1,"has_acces":1,"h\u00e9":1,"\ud83d\ude00":1}"#);
        assert!(m.iter().all(|(k, _)| !k.eq_ascii(b"has_access")));
        // A surrogate pair is two non-ASCII units: never equal to ASCII text of any length.
        let m = members(br#"{"\ud83d\ude00x":1,"\ud83d\ude00":1}"#);
        for t in [&b"x"[..], b"?x", b"??x", b"", b"?", b"??"] {
            assert!(!m[0].0.eq_ascii(t) && !m[1].0.eq_ascii(t), "{t:?}");
        }
        let m = members(br#"{"\"\\\/\b\f\n\r\t":1}"#);
        assert!(m[0].0.eq_ascii(b"\"\\/\x08\x0c\n\r\t"));
        let m = members(br#"{"Be\u0061rer":1}"#);
        assert!(m[0].0.eq_ascii_ignore_case(b"bearer"));
        assert!(!m[0].0.eq_ascii(b"bearer"));
    }

    #[test]
    fn plain_keys_compare_byte_for_byte() {
        let m = members(br#"{"has_access":1,"has_acces":1,"has_accesss":1,"HAS_ACCESS":1,"":1,"h\u00e9":1}"#);
        let hits: Vec<bool> = m.iter().map(|(k, _)| k.eq_ascii(b"has_access")).collect();
        assert_eq!(hits, [true, false, false, false, false, false]);
        let folded: Vec<bool> = m
            .iter()
            .map(|(k, _)| k.eq_ascii_ignore_case(b"has_access"))
            .collect();
        assert_eq!(folded, [true, false, false, true, false, false]);
        assert!(m[4].0.eq_ascii(b""));
        assert!(!m[4].0.eq_ascii(b"h"));
        // U+00E9, escaped or as UTF-8 bytes, never equals an ASCII letter.
        let m = members("{\"h\u{e9}\":1}".as_bytes());
        assert!(!m[0].0.eq_ascii_ignore_case(b"he"));
    }

    #[test]
    fn escapes_must_be_well_formed() {
        for bad in [
            &br#""\q""#[..],
            br#""\u12""#,
            br#""\u12g4""#,
            br#""\"#,
            br#""\u"#,
            br#""\x41""#,
            br#""\U0041""#,
        ] {
            assert_eq!(
                valid(bad),
                Err(BodyError::Malformed),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        assert_eq!(valid(br#""\u00e9\uD83D\uDE00\/""#), Ok(Top::Other));
    }

    #[test]
    fn lone_or_reversed_surrogates_are_refused() {
        for bad in [
            &br#""\ud800""#[..],
            br#""\udbff x""#,
            br#""\udc00""#,
            br#""\ude00\ud83d""#,
            br#""\ud83d\u0041""#,
            br#""\ud83d\n""#,
            br#""\ud83d\ud83d""#,
            br#"{"k\ud800":1}"#,
        ] {
            assert_eq!(
                valid(bad),
                Err(BodyError::Malformed),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn control_characters_in_strings_are_refused() {
        for c in 0u8..0x20 {
            let b = [b'"', b'a', c, b'"'];
            assert_eq!(valid(&b), Err(BodyError::Malformed), "{c:#x}");
        }
        assert_eq!(valid(b"\"\x7f\""), Ok(Top::Other)); // DEL needs no escape
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for ok in [
            "0",
            "-0",
            "1",
            "-12",
            "0.5",
            "1e5",
            "1E+5",
            "1e-5",
            "-0.0e0",
            "123456789012345678901234567890",
        ] {
            assert_eq!(valid(ok.as_bytes()), Ok(Top::Other), "{ok}");
        }
        for bad in [
            "01",
            "-01",
            "00",
            "+1",
            "1.",
            ".5",
            "1e",
            "1e+",
            "-",
            "--1",
            "0x10",
            "1.5.5",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(valid(bad.as_bytes()), Err(BodyError::Malformed), "{bad}");
        }
    }

    #[test]
    fn utf8_is_checked_inside_strings() {
        assert_eq!(valid("\"é€😀\"".as_bytes()), Ok(Top::Other));
        for bad in [
            &b"\"\xff\""[..],
            b"\"\xc0\xaf\"",         // overlong '/'
            b"\"\xe0\x80\xaf\"",     // overlong
            b"\"\xed\xa0\x80\"",     // encoded surrogate
            b"\"\xf4\x90\x80\x80\"", // above U+10FFFF
            b"\"\xe2\x82\"",         // truncated sequence
            b"\"\xe2\x82",
        ] {
            assert_eq!(valid(bad), Err(BodyError::NotUtf8), "{bad:?}");
        }
        // Outside strings only ASCII is JSON: valid UTF-8 there is malformed, invalid is not UTF-8.
        assert_eq!(valid("é".as_bytes()), Err(BodyError::Malformed));
        assert_eq!(valid(b"{}\xff"), Err(BodyError::NotUtf8));
    }

    #[test]
    fn utf8_sequences_agree_with_the_standard_library() {
        // Every lead byte with second bytes over the whole range and later bytes at the
        // edges of the continuation range (and just outside): the same verdict as from_utf8.
        let later = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
        for lead in 0x80..=0xffu8 {
            for second in 0..=0xffu8 {
                for &third in &later {
                    for &fourth in &later {
                        let seq = [b'"', lead, second, third, fourth, b'"'];
                        let n = core::str::from_utf8(&seq[1..5])
                            .map(|_| 4)
                            .unwrap_or_else(|e| e.valid_up_to());
                        // The scanner sees a sequence starting at the lead byte.
                        let expected = if n == 0 {
                            // The lead byte's own sequence is broken.
                            Err(BodyError::NotUtf8)
                        } else {
                            let len = match lead {
                                0xc2..=0xdf => 2,
                                0xe0..=0xef => 3,
                                _ => 4,
                            };
                            Ok(1 + len)
                        };
                        assert_eq!(utf8_seq(&seq, 1), expected, "{seq:x?}");
                    }
                }
            }
        }
    }

    #[test]
    fn structure_errors() {
        for bad in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"{,}",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"{\"a\":1]",
            b"[1}",
            b"{1:2}",
            b"{}{}",
            b"{} x",
            b"tru",
            b"nul",
            b"truex",
            b"\xef\xbb\xbf{}", // a byte order mark is not JSON
            b"{\"a\":1}\x00",
        ] {
            assert!(valid(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            valid(b" \t\r\n{ \"a\" : [ 1 , { } , [ ] ] } \t\r\n"),
            Ok(Top::Object)
        );
    }

    #[test]
    fn depth_is_bounded_iteratively() {
        let open = MAX_JSON_DEPTH as usize;
        let mut ok = Vec::new();
        ok.extend(core::iter::repeat_n(b'[', open));
        ok.extend(core::iter::repeat_n(b']', open));
        assert_eq!(valid(&ok), Ok(Top::Other));
        let mut deep = Vec::new();
        deep.extend(core::iter::repeat_n(b'[', open + 1));
        deep.extend(core::iter::repeat_n(b']', open + 1));
        assert_eq!(valid(&deep), Err(BodyError::TooDeep));
        // A million brackets: refused at depth 17, no stack growth.
        let huge = vec![b'['; 1 << 20];
        assert_eq!(valid(&huge), Err(BodyError::TooDeep));
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let samples: &[&[u8]] = &[
            b"{}",
            b"[]",
            b"[1,2]",
            b"[1,]",
            b"{\"a\":1}",
            b"{\"a\" 1}",
            b"1e5",
            b"1e",
            b"-0.5",
            b"--1",
            b"\"\\u00e9\"",
            b"\"\\u00g9\"",
            b"[[]]",
            b"{\"a\":{\"b\":[true,false,null]}}",
            b"01",
            b"\"\\ud800\"",
            b"\"\\ud83d\\ude00\"",
            b"\"a\tb\"",
            b"{\"a\":1,\"a\":2}",
        ];
        for s in samples {
            let ours = valid(s).is_ok();
            let reference = serde_json::from_slice::<serde_json::Value>(s).is_ok();
            assert_eq!(ours, reference, "{:?}", core::str::from_utf8(s));
        }
    }

    /// Random JSON texts (objects, arrays, every scalar, escaped keys, nesting up to the
    /// limit), half of them with one byte inserted or deleted: the scan accepts exactly what
    /// serde_json accepts, and on an object reports exactly its top-level members.
    #[test]
    fn random_texts_agree_with_serde_json() {
        fn value(rng: &mut fastrand::Rng, depth: u32, out: &mut String) {
            const SCALARS: &[&str] = &[
                "true",
                "false",
                "null",
                "0",
                "-12",
                "3.25",
                "1e9",
                "-0.5E-3",
                "\"\"",
                "\"x\\ny\"",
                "\"\\u00e9\"",
            ];
            const KEYS: &[&str] = &["\"a\"", "\"b\"", "\"\\u0061\"", "\"has_access\"", "\"\""];
            let ws = |rng: &mut fastrand::Rng, out: &mut String| {
                out.push_str([" ", "", "", "\n\t"][rng.usize(0..4)]);
            };
            match (depth < 6).then(|| rng.u8(0..4)) {
                Some(0) => {
                    out.push('{');
                    for k in 0..rng.usize(0..4) {
                        if k > 0 {
                            out.push(',');
                        }
                        ws(rng, out);
                        out.push_str(KEYS[rng.usize(0..KEYS.len())]);
                        ws(rng, out);
                        out.push(':');
                        value(rng, depth + 1, out);
                    }
                    ws(rng, out);
                    out.push('}');
                }
                Some(1) => {
                    out.push('[');
                    for k in 0..rng.usize(0..4) {
                        if k > 0 {
                            out.push(',');
                        }
                        value(rng, depth + 1, out);
                    }
                    out.push(']');
                }
                _ => {
                    ws(rng, out);
                    out.push_str(SCALARS[rng.usize(0..SCALARS.len())]);
                    ws(rng, out);
                }
            }
        }
        let mut rng = fastrand::Rng::with_seed(41);
        let (mut objects, mut invalid) = (0, 0);
        for _ in 0..100_000 {
            // Half of them inside a top-level object, so most are objects with members.
            let wrapped = rng.bool();
            let mut text = String::from(if wrapped { "{\"a\":" } else { "" });
            value(&mut rng, 1, &mut text);
            if wrapped {
                text.push('}');
            }
            let mut b = text.into_bytes();
            if rng.bool() && !b.is_empty() {
                let at = rng.usize(0..b.len());
                if rng.bool() {
                    b.remove(at);
                } else {
                    b.insert(at, b"{}[],:\" \\etn0-."[rng.usize(0..14)]);
                }
            }
            let reference = serde_json::from_slice::<serde_json::Value>(&b);
            let mut seen: Vec<(String, JsonValue<'_>)> = Vec::new();
            let ours = scan(&b, |k, v| {
                let units = Units { raw: k.raw, i: 0 };
                seen.push((units.map(|u| char::from_u32(u).unwrap_or('?')).collect(), v));
            });
            assert_eq!(
                ours.is_ok(),
                reference.is_ok(),
                "{:?}: {ours:?}",
                String::from_utf8_lossy(&b)
            );
            invalid += usize::from(ours.is_err());
            if let (Ok(Top::Object), Ok(serde_json::Value::Object(map))) = (ours, &reference) {
                objects += 1;
                // serde_json keeps the last of duplicate keys: compare the distinct keys, and
                // the kind of each value where the key is not duplicated.
                let mut keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                keys.dedup();
                let mut theirs: Vec<&str> = map.keys().map(String::as_str).collect();
                theirs.sort_unstable();
                assert_eq!(keys, theirs, "{:?}", String::from_utf8_lossy(&b));
                for (k, v) in &seen {
                    if seen.iter().filter(|(j, _)| j == k).count() > 1 {
                        continue;
                    }
                    let same_kind = match (v, &map[k.as_str()]) {
                        (JsonValue::Bool(x), serde_json::Value::Bool(y)) => x == y,
                        (JsonValue::Null, serde_json::Value::Null)
                        | (JsonValue::Number(_), serde_json::Value::Number(_))
                        | (JsonValue::Str(_), serde_json::Value::String(_))
                        | (
                            JsonValue::Container,
                            serde_json::Value::Array(_) | serde_json::Value::Object(_),
                        ) => true,
                        _ => false,
                    };
                    assert!(same_kind, "{:?}: {k} {v:?}", String::from_utf8_lossy(&b));
                }
            }
        }
        assert!(
            objects > 10_000 && invalid > 10_000,
            "{objects} objects, {invalid} invalid"
        );
    }
}
