//! The device's TLS verifier (R14) on hostile bytes: certificate chains, CertificateVerify
//! messages and the order they arrive in. Nothing may panic, and the guard must never let a
//! connection through unless the chain and the CertificateVerify were both verified.
//!
//! Input: `flags u8 | now u64 | host u8-len | anchor u16-len (bit 0 of flags: use the
//! built-in anchor instead) | n u8 | n × cert u16-len | transcript 32 | scheme u16 |
//! signature u16-len | order u8`. Seeds (`seeds/verifier/`) hold valid chains to the built-in
//! anchor, made by `seeds.py`.
#![no_main]

use accessgate_embassy::tls::handshake::{HandshakeVerifier, Verified};
use accessgate_embassy::UnixClock;
use libfuzzer_sys::fuzz_target;

const ANCHOR: &[u8] = include_bytes!("../seeds/anchor.der");

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> usize {
        let b = self.take(2);
        usize::from(b.first().copied().unwrap_or(0)) << 8 | usize::from(b.get(1).copied().unwrap_or(0))
    }
    fn u16_bytes(&mut self) -> &'a [u8] {
        let n = self.u16();
        self.take(n)
    }
}

static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn clock() -> Option<u64> {
    Some(NOW.load(std::sync::atomic::Ordering::Relaxed))
}

/// A sink that must never receive a byte unless the handshake was proven.
struct Sink(usize);

impl embedded_io_async::ErrorType for Sink {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Write for Sink {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let now = u64::from_be_bytes(input.take(8).try_into().unwrap_or([0; 8]));
    NOW.store(now, std::sync::atomic::Ordering::Relaxed);
    let host_len = usize::from(input.u8());
    let host = core::str::from_utf8(input.take(host_len)).unwrap_or("localhost");
    let anchor = if flags & 1 == 0 { ANCHOR } else { input.u16_bytes() };
    let n = usize::from(input.u8() % 20);
    let mut chain = Vec::new();
    for _ in 0..n {
        chain.push(input.u16_bytes());
    }
    let mut transcript = [0u8; 32];
    let t = input.take(32);
    transcript[..t.len()].copy_from_slice(t);
    let scheme = input.u16() as u16;
    let signature = input.u16_bytes();
    let order = input.u8();

    let clock = (flags & 2 != 0).then_some(UnixClock(clock));
    let mut v = HandshakeVerifier::new(anchor, host, clock);
    // Every order a hostile server could choose: the normal one, CertificateVerify first,
    // either alone, repeats.
    let _ = match order % 6 {
        0 => v
            .on_certificate(&chain, transcript)
            .and_then(|()| v.on_certificate_verify(scheme, signature)),
        1 => v
            .on_certificate_verify(scheme, signature)
            .and_then(|()| v.on_certificate(&chain, transcript)),
        2 => v.on_certificate(&chain, transcript),
        3 => v.on_certificate_verify(scheme, signature),
        4 => v
            .on_certificate(&chain, transcript)
            .and_then(|()| v.on_certificate(&chain, transcript))
            .and_then(|()| v.on_certificate_verify(scheme, signature)),
        _ => Ok(()),
    };
    let proven = v.outcome().is_ok();
    // R14: a connection exists only with both proofs, and only then do bytes go out.
    let mut sink = Sink(0);
    if let Ok(mut conn) = Verified::new(&mut sink, &v) {
        assert!(proven);
        let _ = embassy_futures::block_on(embedded_io_async::Write::write(&mut conn, b"token"));
    }
    assert_eq!(sink.0 > 0, proven);
    if proven {
        // Only the normal order can prove a server.
        assert_eq!(order % 6, 0);
    }
});
