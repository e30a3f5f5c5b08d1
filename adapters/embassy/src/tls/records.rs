//! Which TLS record ended a failed handshake, so its R13 detail names the real cause.
//!
//! embedded-tls 0.19 reports a server's alert as `HandshakeAborted` only while it waits for
//! the ServerHello. After it (the server's handshake keys are in force) an alert arrives
//! encrypted, and embedded-tls, after decrypting it, refuses it like any non-handshake record
//! (`InvalidRecord`) and drops the alert. That is how a server whose own key is RSA ends the
//! handshake with the device (rustls: ServerHello, then `handshake_failure` because the
//! ClientHello offers no RSA signature scheme), and "unexpected TLS handshake message" would
//! send an operator looking for a protocol bug.
//!
//! [`RecordTap`] sits between embedded-tls and the socket and notes in a [`RecordLog`] each
//! record header that passes (embedded-tls reads a header, then exactly its body, so the last header is the
//! record it was working on when it failed). It never changes a byte and never decides
//! anything: accepted and refused handshakes stay exactly what they were (R14); only the name
//! of a refusal changes (R13).

use embedded_io_async::{ErrorType, Read, Write};

/// TLS record content types (RFC 8446 5.1).
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const APPLICATION_DATA: u8 = 23;

/// An alert sealed with the only suite the device offers (TLS_AES_128_GCM_SHA256): level and
/// description (2), the inner content type (1), the AEAD tag (16). A handshake message cannot
/// be this short (its own header is 4 bytes), so after the ServerHello a record this size
/// that embedded-tls refused as "not a handshake record" is the server's alert (or, equally a
/// protocol violation, 2 bytes of application data before the handshake finished).
const SEALED_ALERT_LEN: u16 = 2 + 1 + 16;

/// The record headers the server sent on one connection (see the module docs), as noted by
/// a [`RecordTap`].
#[derive(Default)]
pub struct RecordLog {
    /// The header being read, `got` bytes of it so far.
    head: [u8; 5],
    got: u8,
    /// Body bytes of the current record still to pass.
    left: u16,
    /// The last complete header: content type and length.
    last: Option<(u8, u16)>,
    /// A plaintext handshake record (the ServerHello) passed: records after it are sealed.
    handshake_seen: bool,
}

impl RecordLog {
    /// Whether the last record was a server's alert: a plaintext alert record, or a sealed
    /// record of exactly an alert's size after the ServerHello.
    pub fn last_was_alert(&self) -> bool {
        match self.last {
            Some((ALERT, _)) => true,
            Some((APPLICATION_DATA, len)) => self.handshake_seen && len == SEALED_ALERT_LEN,
            _ => false,
        }
    }

    /// Notes the record headers in `bytes`, the next bytes read from the server.
    fn observe(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.left > 0 {
                let n = bytes.len().min(usize::from(self.left));
                // `n <= self.left`, a u16.
                self.left -= n as u16;
                bytes = &bytes[n..];
                continue;
            }
            self.head[usize::from(self.got)] = first;
            self.got += 1;
            bytes = rest;
            if usize::from(self.got) == self.head.len() {
                let kind = self.head[0];
                let len = u16::from_be_bytes([self.head[3], self.head[4]]);
                trace!("TLS record from the server: type {}, {} bytes", kind, len);
                self.handshake_seen |= kind == HANDSHAKE;
                self.last = Some((kind, len));
                self.got = 0;
                self.left = len;
            }
        }
    }
}

/// A connection whose bytes from the server are noted in a [`RecordLog`], unchanged.
pub struct RecordTap<'l, T> {
    inner: T,
    log: &'l mut RecordLog,
}

impl<'l, T> RecordTap<'l, T> {
    /// Taps `inner` into `log`.
    pub fn new(inner: T, log: &'l mut RecordLog) -> Self {
        RecordTap { inner, log }
    }
}

impl<T: ErrorType> ErrorType for RecordTap<'_, T> {
    type Error = T::Error;
}

impl<T: Read> Read for RecordTap<'_, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.inner.read(buf).await?;
        self.log.observe(buf.get(..n).unwrap_or(buf));
        Ok(n)
    }
}

impl<T: Write> Write for RecordTap<'_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.inner.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tapped(chunks: &[&[u8]]) -> RecordLog {
        let mut tap = RecordLog::default();
        for c in chunks {
            tap.observe(c);
        }
        tap
    }

    fn record(kind: u8, len: u16) -> [u8; 5] {
        let l = len.to_be_bytes();
        [kind, 3, 3, l[0], l[1]]
    }

    fn flight(records: &[(u8, u16)]) -> [u8; 512] {
        let mut out = [0u8; 512];
        let mut at = 0;
        for &(kind, len) in records {
            out[at..at + 5].copy_from_slice(&record(kind, len));
            at += 5 + usize::from(len);
        }
        out
    }

    /// The RSA-keyed server's answer (rustls): ServerHello, ChangeCipherSpec, sealed alert.
    const RSA_SERVER: [(u8, u16); 3] = [(HANDSHAKE, 90), (20, 1), (APPLICATION_DATA, 19)];

    fn len_of(records: &[(u8, u16)]) -> usize {
        records.iter().map(|&(_, l)| 5 + usize::from(l)).sum()
    }

    #[test]
    fn a_sealed_alert_after_the_server_hello_is_an_alert_in_any_chunking() {
        let bytes = flight(&RSA_SERVER);
        let all = &bytes[..len_of(&RSA_SERVER)];
        assert!(tapped(&[all]).last_was_alert());
        let mut tap = RecordLog::default();
        for b in all.chunks(1) {
            tap.observe(b);
        }
        assert!(tap.last_was_alert(), "byte by byte");
        for split in 1..all.len() {
            assert!(
                tapped(&[&all[..split], &all[split..]]).last_was_alert(),
                "{split}"
            );
        }
    }

    #[test]
    fn a_plaintext_alert_is_an_alert() {
        let rs = [(HANDSHAKE, 90), (ALERT, 2)];
        assert!(tapped(&[&flight(&rs)[..len_of(&rs)]]).last_was_alert());
    }

    #[test]
    fn other_last_records_are_not_alerts() {
        let cases: [&[(u8, u16)]; 4] = [
            // A sealed record of an alert's size before any ServerHello.
            &[(APPLICATION_DATA, 19)],
            // A sealed record after the ServerHello that is larger (a handshake message).
            &[(HANDSHAKE, 90), (APPLICATION_DATA, 40)],
            // Only the ServerHello.
            &[(HANDSHAKE, 90)],
            // Nothing complete.
            &[],
        ];
        for rs in cases {
            assert!(!tapped(&[&flight(rs)[..len_of(rs)]]).last_was_alert(), "{rs:?}");
        }
        // A plain-HTTP answer: "HTTP/" is no record type embedded-tls knows.
        assert!(!tapped(&[b"HTTP/1.1 400 Bad Request\r\n\r\n"]).last_was_alert());
    }
    /// A connection that records what reaches it.
    #[derive(Default)]
    struct Sink {
        written: std::vec::Vec<u8>,
        flushes: usize,
    }

    impl ErrorType for Sink {
        type Error = core::convert::Infallible;
    }

    impl Write for Sink {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn writes_and_flushes_pass_through_the_tap_unchanged() {
        // "It never changes a byte": what embedded-tls writes and flushes reaches the socket
        // as it is (a flush that stopped here would leave the ClientHello, and later the
        // request, waiting in a socket buffer on a stack that sends on flush).
        let (mut sink, mut log) = (Sink::default(), RecordLog::default());
        let mut tap = RecordTap::new(&mut sink, &mut log);
        embassy_futures::block_on(async {
            tap.write(&record(HANDSHAKE, 3)).await.unwrap();
            tap.flush().await.unwrap();
        });
        assert_eq!(sink.written, record(HANDSHAKE, 3));
        assert_eq!(sink.flushes, 1);
        assert!(!log.last_was_alert(), "writes are not the server's records");
    }
}
