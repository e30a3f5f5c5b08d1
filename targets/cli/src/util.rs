//! Small helpers shared by the commands: durations, errors, a raw HTTP GET for the
//! backend's control surface, and terminal colours.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit code of a usage error (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code of a failure that is not a verdict (cannot bind, internal error; `EX_SOFTWARE`).
pub const EXIT_RUNTIME: u8 = 70;

/// Why a command could not do its job.
#[derive(Debug)]
pub enum CliError {
    /// Bad input found after parsing (unreadable CA file, invalid configuration): exit 64.
    Usage(String),
    /// Something failed at run time: exit 70.
    Runtime(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Runtime(_) => EXIT_RUNTIME,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) => f.write_str(m),
        }
    }
}

/// Durations of every subcommand: `500ms`, `10s`, `1m30s` (humantime), bounded; one parser
/// shared with `accessgate-embassy` and the fleet simulator.
pub use accessgate_args::{parse_duration, to_core};

/// GET `path` (with query) from an HTTP listener at `addr` and return the body of a 200
/// answer. Used for the backend's `/_control/` surface.
pub async fn control_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "malformed HTTP answer".to_string())?;
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if status != "200" {
            return Err(format!("HTTP {status}: {}", body.trim()));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within 5 s"))?
}

/// Whether to colour the output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colours when stdout is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Resolves `auto` against stdout and `NO_COLOR`.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Writes one line to stdout, ignoring errors: when the reader has gone away
/// (`accessgate check --json | head -1`), output stops but the command still runs to its
/// verdict and exit code instead of panicking on a broken pipe.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// `println!` that never panics: see [`emit`].
macro_rules! out {
    () => {
        $crate::util::emit("")
    };
    ($($arg:tt)*) => {
        $crate::util::emit(&format!($($arg)*))
    };
}
pub(crate) use out;
