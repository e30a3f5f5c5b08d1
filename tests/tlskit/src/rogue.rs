//! A rogue TLS 1.3 server (RFC 8446) that can leave out or reorder the steps by which a
//! server proves who it is, and records whether any application data reached it.
//!
//! rustls cannot be told to skip a message, so the server side is written out here: one
//! cipher suite (`TLS_AES_128_GCM_SHA256`, which both rustls and embedded-tls offer), ECDHE on
//! X25519 (rustls' first key share) or secp256r1 (embedded-tls' only key share), the section 7
//! key schedule with HKDF-SHA256, AES-128-GCM records, HMAC Finished, and ECDSA P-256
//! CertificateVerify. No HelloRetryRequest, no resumption, no client certificates.
//!
//! Every [`Flow`] sends the same messages as [`Flow::WellBehaved`] except the step it names
//! ([`Flow::AlertAfterServerHello`] stops at its alert), and
//! every flow answers a complete HTTP request with `200 {"has_access":true}`: a client that
//! lets a rogue handshake through is granted, so its exit code shows it. The
//! [`Report::bearer_seen`] flag says whether an `Authorization: Bearer` header arrived (R14).
//!
//! Loopback only, threads with 3 s socket timeouts, at most [`MAX_CONNECTIONS`] connections.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

/// Connections served over the server's life; later ones are closed at once.
pub const MAX_CONNECTIONS: u32 = 64;
/// Read and write timeout of every connection.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest record accepted (RFC 8446 5.2: 2^14 + 256 of ciphertext).
const MAX_RECORD: usize = (1 << 14) + 256;

const TLS_AES_128_GCM_SHA256: u16 = 0x1301;
const TLS13: u16 = 0x0304;
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;
const ECDSA_SECP256R1_SHA256: u16 = 0x0403;

const CT_CHANGE_CIPHER_SPEC: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;

const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_ENCRYPTED_EXTENSIONS: u8 = 8;
const HS_CERTIFICATE: u8 = 11;
const HS_CERTIFICATE_VERIFY: u8 = 15;
const HS_FINISHED: u8 = 20;

/// What the server's encrypted flight contains after EncryptedExtensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Certificate, CertificateVerify, Finished: a correct TLS 1.3 server.
    WellBehaved,
    /// Finished only: no Certificate, hence nothing to sign a CertificateVerify with (the
    /// handshake issue 9 found accepted on the device).
    SkipCertificate,
    /// Certificate, Finished: the server never proves it holds the certificate's key.
    SkipCertificateVerify,
    /// CertificateVerify, Certificate, Finished: the signature before the certificate it
    /// should be checked with (signed over the transcript up to EncryptedExtensions).
    CertificateVerifyFirst,
    /// Nothing after the ServerHello but a sealed fatal `handshake_failure` alert, then the
    /// connection closes: what rustls sends a client it shares no signature scheme with (an
    /// RSA-keyed server and a client that offers only ECDSA, like the device).
    AlertAfterServerHello,
}

/// What reached the server, summed over all connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// TCP connections accepted.
    pub connections: u32,
    /// ClientHellos parsed and answered with a ServerHello.
    pub server_hellos: u32,
    /// Client Finished messages received and verified: the client accepted the handshake.
    pub handshakes_completed: u32,
    /// Bytes of application data received (decrypted).
    pub application_bytes: usize,
    /// An `Authorization: Bearer` header arrived (case-insensitive).
    pub bearer_seen: bool,
    /// HTTP responses sent.
    pub responses: u32,
    /// Alerts the client sent (level, description).
    pub alerts: Vec<(u8, u8)>,
    /// Why connections ended early (protocol errors, I/O), for failure messages.
    pub errors: Vec<String>,
}

/// The server's certificate chain and P-256 key.
struct Identity {
    chain: Vec<Vec<u8>>,
    key: p256::ecdsa::SigningKey,
}

/// A running rogue server; dropping it stops the accept loop.
pub struct RogueServer {
    addr: SocketAddr,
    report: Arc<Mutex<Report>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RogueServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RogueServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RogueServer {
    /// Listen on `127.0.0.1:0` and serve `flow` with `chain` (leaf first) and the leaf's
    /// P-256 key (PKCS#8 DER).
    pub fn start(flow: Flow, chain: Vec<Vec<u8>>, key_pkcs8: &[u8]) -> io::Result<RogueServer> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(key_pkcs8).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a P-256 PKCS#8 key: {e}"),
            )
        })?;
        let identity = Arc::new(Identity { chain, key });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let report = Arc::new(Mutex::new(Report::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (report, stop) = (report.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, flow, identity, report, stop))
        };
        Ok(RogueServer {
            addr,
            report,
            stop,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of what reached it so far.
    pub fn report(&self) -> Report {
        lock(&self.report).clone()
    }
}

impl Drop for RogueServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Report>) -> MutexGuard<'_, Report> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(
    listener: TcpListener,
    flow: Flow,
    identity: Arc<Identity>,
    report: Arc<Mutex<Report>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let n = {
                    let mut r = lock(&report);
                    r.connections += 1;
                    r.connections
                };
                if n > MAX_CONNECTIONS {
                    continue; // dropped: closes the socket
                }
                let (identity, report) = (identity.clone(), report.clone());
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, flow, &identity, &report) {
                        lock(&report).errors.push(e.0);
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                lock(&report).errors.push(format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Why a connection ended before its HTTP response.
#[derive(Debug)]
struct Fail(String);

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail(format!("i/o: {e}"))
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(msg.into()))
}

fn serve(mut tcp: TcpStream, flow: Flow, id: &Identity, report: &Mutex<Report>) -> Result<(), Fail> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let mut transcript = Sha256::new();

    // ClientHello, in plaintext records (possibly fragmented).
    let mut pending = Vec::new();
    let client_hello = loop {
        if let Some(msg) = take_message(&mut pending)? {
            break msg;
        }
        let (ct, body) = read_record(&mut tcp)?;
        match ct {
            CT_HANDSHAKE => pending.extend_from_slice(&body),
            CT_ALERT => return alert(report, &body),
            other => return fail(format!("content type {other} before ClientHello")),
        }
    };
    if client_hello[0] != HS_CLIENT_HELLO {
        return fail(format!(
            "handshake type {} instead of ClientHello",
            client_hello[0]
        ));
    }
    transcript.update(&client_hello);
    let hello = ClientHello::parse(&client_hello[4..])?;

    // ServerHello with our key share; the shared secret starts the key schedule.
    let (share, shared) = key_exchange(hello.group, &hello.key_share)?;
    let server_hello = server_hello(&hello.session_id, hello.group, &share)?;
    transcript.update(&server_hello);
    write_plain(&mut tcp, CT_HANDSHAKE, &server_hello)?;
    lock(report).server_hellos += 1;

    let early = hkdf_extract(&[0; 32], &[0; 32]);
    let handshake_secret = hkdf_extract(&derive_secret(&early, "derived", &Sha256::digest([])), &shared);
    let hello_hash = transcript.clone().finalize();
    let client_hs = derive_secret(&handshake_secret, "c hs traffic", &hello_hash);
    let server_hs = derive_secret(&handshake_secret, "s hs traffic", &hello_hash);
    let mut write_keys = RecordKeys::new(&server_hs);
    let mut read_keys = RecordKeys::new(&client_hs);

    if flow == Flow::AlertAfterServerHello {
        // Level fatal (2), description handshake_failure (40), under the handshake keys.
        tcp.write_all(&write_keys.seal(CT_ALERT, &[2, 40])?)?;
        return Ok(());
    }

    // The encrypted flight: EncryptedExtensions, then what the flow says, then Finished.
    let mut send = |tcp: &mut TcpStream, transcript: &mut Sha256, msg: Vec<u8>| -> Result<(), Fail> {
        transcript.update(&msg);
        tcp.write_all(&write_keys.seal(CT_HANDSHAKE, &msg)?)?;
        Ok(())
    };
    send(
        &mut tcp,
        &mut transcript,
        handshake(HS_ENCRYPTED_EXTENSIONS, &[0, 0])?,
    )?;
    let steps: &[u8] = match flow {
        Flow::WellBehaved => &[HS_CERTIFICATE, HS_CERTIFICATE_VERIFY],
        Flow::SkipCertificate => &[],
        Flow::SkipCertificateVerify => &[HS_CERTIFICATE],
        Flow::CertificateVerifyFirst => &[HS_CERTIFICATE_VERIFY, HS_CERTIFICATE],
        Flow::AlertAfterServerHello => return fail("the alert flow ended after the ServerHello"),
    };
    for &step in steps {
        let msg = if step == HS_CERTIFICATE {
            certificate(&id.chain)?
        } else {
            certificate_verify(&id.key, &transcript.clone().finalize())?
        };
        send(&mut tcp, &mut transcript, msg)?;
    }
    let server_finished = finished(&server_hs, &transcript.clone().finalize())?;
    send(&mut tcp, &mut transcript, server_finished)?;

    // Application secrets hang off the transcript up to the server's Finished.
    let master = hkdf_extract(
        &derive_secret(&handshake_secret, "derived", &Sha256::digest([])),
        &[0; 32],
    );
    let finished_hash = transcript.clone().finalize();
    let client_ap = derive_secret(&master, "c ap traffic", &finished_hash);
    let server_ap = derive_secret(&master, "s ap traffic", &finished_hash);

    // The client's Finished (after an optional compatibility ChangeCipherSpec).
    let mut pending = Vec::new();
    loop {
        let (ct, body) = read_record(&mut tcp)?;
        match ct {
            CT_CHANGE_CIPHER_SPEC => continue,
            CT_ALERT => return alert(report, &body),
            CT_APPLICATION_DATA => {}
            other => return fail(format!("plaintext content type {other} after ServerHello")),
        }
        let (inner, data) = read_keys.open(&body)?;
        match inner {
            CT_ALERT => return alert(report, &data),
            CT_HANDSHAKE => pending.extend_from_slice(&data),
            CT_APPLICATION_DATA => {
                // Not allowed before Finished, but what matters is that it arrived.
                note_application_data(report, &data);
                return fail("application data before the client's Finished");
            }
            other => return fail(format!("inner content type {other} before client Finished")),
        }
        if let Some(msg) = take_message(&mut pending)? {
            let want = finished(&client_hs, &finished_hash)?;
            if msg != want {
                return fail("client Finished does not verify");
            }
            break;
        }
    }
    lock(report).handshakes_completed += 1;

    // Application data: read one HTTP request head, answer a grant, close.
    let mut read_keys = RecordKeys::new(&client_ap);
    let mut write_keys = RecordKeys::new(&server_ap);
    let mut request = Vec::new();
    loop {
        let (ct, body) = read_record(&mut tcp)?;
        if ct != CT_APPLICATION_DATA {
            return fail(format!("plaintext content type {ct} after the handshake"));
        }
        let (inner, data) = read_keys.open(&body)?;
        match inner {
            CT_APPLICATION_DATA => {
                note_application_data(report, &data);
                request.extend_from_slice(&data);
                if request.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                if request.len() > 64 * 1024 {
                    return fail("request head over 64 KiB");
                }
            }
            CT_ALERT => return alert(report, &data),
            CT_HANDSHAKE => continue, // e.g. a KeyUpdate we do not act on
            other => return fail(format!("inner content type {other} after the handshake")),
        }
    }
    let body = br#"{"has_access":true}"#;
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    tcp.write_all(&write_keys.seal(CT_APPLICATION_DATA, &response)?)?;
    tcp.write_all(&write_keys.seal(CT_ALERT, &[1, 0])?)?; // close_notify
    lock(report).responses += 1;
    Ok(())
}

fn alert(report: &Mutex<Report>, body: &[u8]) -> Result<(), Fail> {
    match body {
        [level, description] => {
            lock(report).alerts.push((*level, *description));
            Ok(())
        }
        _ => fail("malformed alert"),
    }
}

fn note_application_data(report: &Mutex<Report>, data: &[u8]) {
    let mut r = lock(report);
    r.application_bytes += data.len();
    let lower = data.to_ascii_lowercase();
    if lower.windows(21).any(|w| w == b"authorization: bearer") {
        r.bearer_seen = true;
    }
}

// ---------------------------------------------------------------------------------------
// Records

fn read_record(tcp: &mut TcpStream) -> Result<(u8, Vec<u8>), Fail> {
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > MAX_RECORD {
        return fail(format!("record of {len} bytes"));
    }
    let mut body = vec![0; len];
    tcp.read_exact(&mut body)?;
    Ok((header[0], body))
}

fn write_plain(tcp: &mut TcpStream, content_type: u8, payload: &[u8]) -> Result<(), Fail> {
    let mut rec = vec![content_type, 3, 3];
    rec.extend_from_slice(&u16_len(payload.len())?.to_be_bytes());
    rec.extend_from_slice(payload);
    tcp.write_all(&rec)?;
    Ok(())
}

/// One direction's AEAD key, IV and sequence number (RFC 8446 5.3).
struct RecordKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    seq: u64,
}

impl RecordKeys {
    fn new(traffic_secret: &[u8; 32]) -> Self {
        let key = expand_label(traffic_secret, "key", &[], 16);
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&expand_label(traffic_secret, "iv", &[], 12));
        RecordKeys {
            aead: Aes128Gcm::new_from_slice(&key).expect("16-byte AES-128 key"),
            iv,
            seq: 0,
        }
    }

    fn nonce(&mut self) -> [u8; 12] {
        let mut n = self.iv;
        for (i, b) in self.seq.to_be_bytes().iter().enumerate() {
            n[4 + i] ^= b;
        }
        self.seq += 1;
        n
    }

    /// A whole record: header, then `payload || content_type` encrypted.
    fn seal(&mut self, content_type: u8, payload: &[u8]) -> Result<Vec<u8>, Fail> {
        let mut inner = payload.to_vec();
        inner.push(content_type);
        let len = u16_len(inner.len() + 16)?;
        let mut rec = vec![CT_APPLICATION_DATA, 3, 3];
        rec.extend_from_slice(&len.to_be_bytes());
        let nonce = self.nonce();
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &inner,
                    aad: &rec,
                },
            )
            .map_err(|_| Fail("encryption failed".into()))?;
        rec.extend_from_slice(&sealed);
        Ok(rec)
    }

    /// Decrypts a protected record's body: (inner content type, content).
    fn open(&mut self, body: &[u8]) -> Result<(u8, Vec<u8>), Fail> {
        let mut aad = vec![CT_APPLICATION_DATA, 3, 3];
        aad.extend_from_slice(&u16_len(body.len())?.to_be_bytes());
        let nonce = self.nonce();
        let mut plain = self
            .aead
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: body, aad: &aad })
            .map_err(|_| Fail("record does not decrypt".into()))?;
        while plain.last() == Some(&0) {
            plain.pop();
        }
        match plain.pop() {
            Some(ct) => Ok((ct, plain)),
            None => fail("record with no content type"),
        }
    }
}

fn u16_len(n: usize) -> Result<u16, Fail> {
    u16::try_from(n).map_err(|_| Fail(format!("length {n} over 65535")))
}

// ---------------------------------------------------------------------------------------
// Key schedule (RFC 8446 section 7.1)

fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let (prk, _) = hkdf::Hkdf::<Sha256>::extract(Some(salt), ikm);
    prk.into()
}

fn expand_label(secret: &[u8; 32], label: &str, context: &[u8], len: usize) -> Vec<u8> {
    let hk = hkdf::Hkdf::<Sha256>::from_prk(secret).expect("a 32-byte PRK");
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len() + context.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    let mut out = vec![0; len];
    hk.expand(&info, &mut out).expect("at most 255 * 32 bytes");
    out
}

fn derive_secret(secret: &[u8; 32], label: &str, transcript_hash: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&expand_label(secret, label, transcript_hash, 32));
    out
}

// ---------------------------------------------------------------------------------------
// Handshake messages

/// Splits one complete handshake message (header included) off the front of `buf`.
fn take_message(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, Fail> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]) as usize;
    if len > 64 * 1024 {
        return fail(format!("handshake message of {len} bytes"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let rest = buf.split_off(4 + len);
    Ok(Some(std::mem::replace(buf, rest)))
}

fn handshake(kind: u8, body: &[u8]) -> Result<Vec<u8>, Fail> {
    if body.len() >= 1 << 24 {
        return fail("handshake body over 2^24");
    }
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    Ok(m)
}

struct ClientHello {
    session_id: Vec<u8>,
    group: u16,
    key_share: Vec<u8>,
}

impl ClientHello {
    fn parse(body: &[u8]) -> Result<ClientHello, Fail> {
        let mut r = Reader(body);
        r.take(2)?; // legacy_version
        r.take(32)?; // random
        let session_id = r.vec8()?.to_vec();
        let suites = r.vec16()?;
        r.vec8()?; // legacy_compression_methods
        let mut exts = Reader(r.vec16()?);
        if !suites
            .chunks(2)
            .any(|c| c == TLS_AES_128_GCM_SHA256.to_be_bytes())
        {
            return fail("client does not offer TLS_AES_128_GCM_SHA256");
        }
        let (mut tls13, mut x25519, mut p256) = (false, None, None);
        while !exts.0.is_empty() {
            let kind = exts.u16()?;
            let mut data = Reader(exts.vec16()?);
            match kind {
                0x002b => tls13 = data.vec8()?.chunks(2).any(|c| c == TLS13.to_be_bytes()),
                0x0033 => {
                    let mut shares = Reader(data.vec16()?);
                    while !shares.0.is_empty() {
                        let group = shares.u16()?;
                        let key = shares.vec16()?.to_vec();
                        match group {
                            X25519 => x25519 = Some(key),
                            SECP256R1 => p256 = Some(key),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if !tls13 {
            return fail("client does not offer TLS 1.3");
        }
        let (group, key_share) = match (x25519, p256) {
            (Some(k), _) => (X25519, k),
            (None, Some(k)) => (SECP256R1, k),
            (None, None) => return fail("no X25519 or secp256r1 key share"),
        };
        Ok(ClientHello {
            session_id,
            group,
            key_share,
        })
    }
}

/// Our public key share and the ECDHE shared secret.
fn key_exchange(group: u16, peer: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Fail> {
    let mut secret = [0u8; 32];
    if group == X25519 {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| Fail("X25519 share is not 32 bytes".into()))?;
        random(&mut secret)?;
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes().to_vec();
        let shared = MontgomeryPoint(peer).mul_clamped(secret).to_bytes();
        if shared == [0; 32] {
            return fail("X25519 shared secret is zero");
        }
        return Ok((public, shared.to_vec()));
    }
    let peer = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| Fail("bad secp256r1 share".into()))?;
    let ours = loop {
        random(&mut secret)?;
        if let Ok(k) = p256::SecretKey::from_slice(&secret) {
            break k;
        }
    };
    let public = ours.public_key().to_encoded_point(false).as_bytes().to_vec();
    let shared = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), peer.as_affine());
    Ok((public, shared.raw_secret_bytes().to_vec()))
}

fn random(buf: &mut [u8]) -> Result<(), Fail> {
    getrandom::fill(buf).map_err(|e| Fail(format!("getrandom: {e}")))
}

fn server_hello(session_id: &[u8], group: u16, share: &[u8]) -> Result<Vec<u8>, Fail> {
    let mut b = vec![3, 3];
    let mut rnd = [0u8; 32];
    random(&mut rnd)?;
    b.extend_from_slice(&rnd);
    b.push(session_id.len() as u8); // parsed from a u8-length field
    b.extend_from_slice(session_id);
    b.extend_from_slice(&TLS_AES_128_GCM_SHA256.to_be_bytes());
    b.push(0); // legacy_compression_method
    let mut exts = Vec::new();
    exts.extend_from_slice(&0x002bu16.to_be_bytes());
    exts.extend_from_slice(&2u16.to_be_bytes());
    exts.extend_from_slice(&TLS13.to_be_bytes());
    exts.extend_from_slice(&0x0033u16.to_be_bytes());
    exts.extend_from_slice(&u16_len(4 + share.len())?.to_be_bytes());
    exts.extend_from_slice(&group.to_be_bytes());
    exts.extend_from_slice(&u16_len(share.len())?.to_be_bytes());
    exts.extend_from_slice(share);
    b.extend_from_slice(&u16_len(exts.len())?.to_be_bytes());
    b.extend_from_slice(&exts);
    handshake(HS_SERVER_HELLO, &b)
}

fn certificate(chain: &[Vec<u8>]) -> Result<Vec<u8>, Fail> {
    let mut list = Vec::new();
    for der in chain {
        list.extend_from_slice(&(der.len() as u32).to_be_bytes()[1..]);
        list.extend_from_slice(der);
        list.extend_from_slice(&[0, 0]); // no per-certificate extensions
    }
    let mut b = vec![0]; // empty certificate_request_context
    b.extend_from_slice(&(list.len() as u32).to_be_bytes()[1..]);
    b.extend_from_slice(&list);
    handshake(HS_CERTIFICATE, &b)
}

fn certificate_verify(key: &p256::ecdsa::SigningKey, transcript_hash: &[u8]) -> Result<Vec<u8>, Fail> {
    let mut content = vec![0x20; 64];
    content.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    content.extend_from_slice(transcript_hash);
    let sig: p256::ecdsa::Signature = key.sign(&content);
    let der = sig.to_der();
    let mut b = ECDSA_SECP256R1_SHA256.to_be_bytes().to_vec();
    b.extend_from_slice(&u16_len(der.as_bytes().len())?.to_be_bytes());
    b.extend_from_slice(der.as_bytes());
    handshake(HS_CERTIFICATE_VERIFY, &b)
}

/// A Finished message: HMAC over the transcript with the side's finished key.
fn finished(traffic_secret: &[u8; 32], transcript_hash: &[u8]) -> Result<Vec<u8>, Fail> {
    let key = expand_label(traffic_secret, "finished", &[], 32);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(transcript_hash);
    handshake(HS_FINISHED, &mac.finalize().into_bytes())
}

/// A bounds-checked cursor over client bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if self.0.len() < n {
            return fail("ClientHello truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, Fail> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.take(1)?[0];
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8448 section 3 (simple 1-RTT handshake): the handshake secret and the derived
    /// traffic secrets from the published shared secret and transcript hash.
    #[test]
    fn key_schedule_matches_rfc8448() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let early = hkdf_extract(&[0; 32], &[0; 32]);
        assert_eq!(
            early.to_vec(),
            hex("33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a")
        );
        let shared = hex(
            "8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d",
        );
        let hs = hkdf_extract(&derive_secret(&early, "derived", &Sha256::digest([])), &shared);
        assert_eq!(
            hs.to_vec(),
            hex("1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac")
        );
        let hello_hash = hex(
            "86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8",
        );
        let server_hs = derive_secret(&hs, "s hs traffic", &hello_hash);
        assert_eq!(
            server_hs.to_vec(),
            hex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38")
        );
        assert_eq!(
            expand_label(&server_hs, "key", &[], 16),
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            expand_label(&server_hs, "iv", &[], 12),
            hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
    }

    #[test]
    fn take_message_waits_for_the_whole_message() {
        let mut buf = vec![HS_FINISHED, 0, 0, 3, 1, 2];
        assert!(take_message(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[3, 9]);
        assert_eq!(
            take_message(&mut buf).unwrap(),
            Some(vec![HS_FINISHED, 0, 0, 3, 1, 2, 3])
        );
        assert_eq!(buf, vec![9]);
    }

    #[test]
    fn garbage_client_hellos_are_errors_not_panics() {
        for body in [
            &[][..],
            &[3, 3],
            &[0xff; 40],
            &[
                3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 200,
            ],
        ] {
            assert!(ClientHello::parse(body).is_err());
        }
    }
}
