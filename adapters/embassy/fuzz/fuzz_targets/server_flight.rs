//! embedded-tls' client handshake, with the project's provider and verifier, against a
//! "server" whose whole byte stream is the fuzz input (ServerHello, records, alerts, change
//! cipher spec, garbage). The client's randomness is fixed so a crash replays. Nothing may
//! panic, and a handshake that completes must still be refused by the guard unless the
//! verifier saw both proofs (it cannot here: the encrypted flight would need the server's key).
#![no_main]

use accessgate_embassy::tls::handshake::{HandshakeVerifier, Provider, Verified};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

const ANCHOR: &[u8] = include_bytes!("../seeds/anchor.der");

/// Reads hand out the input in pieces whose sizes come from the input's first byte; writes
/// are swallowed.
struct Wire<'a> {
    rx: &'a [u8],
    step: usize,
}

impl embedded_io_async::ErrorType for Wire<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Read for Wire<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.step).min(self.rx.len());
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx = &self.rx[n..];
        Ok(n)
    }
}

impl embedded_io_async::Write for Wire<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rx)) = data.split_first() else {
        return;
    };
    let wire = Wire {
        rx,
        step: usize::from(step).max(1),
    };
    let mut read = [0u8; 16_640];
    let mut write = [0u8; 4096];
    let mut tls =
        embedded_tls::TlsConnection::<_, embedded_tls::Aes128GcmSha256>::new(wire, &mut read, &mut write);
    let config = embedded_tls::TlsConfig::new().with_server_name("localhost");
    let mut provider = Provider {
        rng: rand_chacha::ChaCha20Rng::from_seed([7; 32]),
        verifier: HandshakeVerifier::new(ANCHOR, "localhost", None),
    };
    let opened = embassy_futures::block_on(tls.open(embedded_tls::TlsContext::new(&config, &mut provider)));
    if opened.is_ok() {
        assert!(Verified::new(&mut tls, &provider.verifier).is_err());
    }
});
