//! A server that accepts one connection and never answers: what a client sends to an endpoint
//! that hangs after the TCP handshake (R4: the attempt must end at its timeout).

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

/// Accepts one connection on loopback and records what arrives, for at most `READ_FOR`, never
/// writing a byte.
pub struct SilentServer {
    addr: SocketAddr,
    reader: JoinHandle<Vec<u8>>,
}

/// How long the server reads before it gives up on the connection.
const READ_FOR: Duration = Duration::from_secs(5);

impl SilentServer {
    /// Listens on `127.0.0.1`, an ephemeral port.
    pub fn start() -> io::Result<SilentServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let Ok((mut conn, _)) = listener.accept() else {
                return got;
            };
            if conn.set_read_timeout(Some(READ_FOR)).is_err() {
                return got;
            }
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    // A read with a timeout set is not restarted after a signal (the test
                    // process's SIGCHLD handler when it runs binaries, or a stop and continue of
                    // a loaded machine): keep reading, the connection is still open.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            got
        });
        Ok(SilentServer { addr, reader })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every byte the client sent, once it closed the connection (or after `READ_FOR`).
    /// Blocks until then; call it after the client is done.
    pub fn received(self) -> Vec<u8> {
        self.reader.join().unwrap_or_default()
    }
}
