//! Driver configuration: endpoints, transport, and the checks made before anything runs.

use accessgate::SessionConfig;
use nourl::{Url, UrlScheme};

use crate::buffers::Buffers;

/// How requests reach the backend. There is no default: plain HTTP must be asked for.
///
/// `Tls` exists only with the `tls` feature (on by default); a build without it (e.g. a
/// plain-HTTP firmware, `default-features = false`) links no TLS code and can only speak
/// plain HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// HTTPS: TLS 1.3 through embedded-tls, the server verified by the project's verifier
    /// before the request is written (R14; the full list of checks, and what a device cannot
    /// check, is in [`crate::tls`]). In short: a chain (intermediates allowed) to `ca_der`
    /// with basicConstraints, keyUsage/extendedKeyUsage serverAuth and the host matched
    /// against subjectAltName (DNS names case-insensitively, IP addresses for IP URLs; the
    /// CN only without SAN), ECDSA P-256/P-384 only, the CertificateVerify signature checked
    /// with the leaf's key, and a self-signed server certificate given as `ca_der` trusted as
    /// that exact certificate (pinning).
    ///
    /// - validity dates: checked against `clock` when it answers; **without a clock** (or
    ///   while it answers `None`) the chain is evaluated at the leaf's notBefore, so an
    ///   expired or not-yet-valid server certificate is not detected;
    /// - RSA: refused (`ca_der` with an RSA key is [`ConfigError::UnsupportedCa`]; an RSA
    ///   server chain fails every handshake): RSA verification needs an allocator;
    /// - TLS 1.3 only, cipher suite `TLS_AES_128_GCM_SHA256`, key exchange on P-256.
    ///
    /// Every URL must be `https://`.
    ///
    /// Available with the crate feature **`tls`** only.
    #[cfg(feature = "tls")]
    Tls {
        /// DER of the trust anchor: the CA certificate that issued the server's chain, or the
        /// server's own (self-signed) certificate to pin it.
        ca_der: &'a [u8],
        /// The device's wall clock (Unix seconds) for certificate dates, if it has one.
        clock: Option<crate::tls::UnixClock>,
    },
    /// Plain HTTP: the bearer token crosses the network in clear text and anyone on the path
    /// can forge answers. For tests and closed networks only; every URL must be `http://`.
    PlainHttp,
    /// Never constructed (it cannot be: it holds an uninhabited value); it only carries the
    /// lifetime of `Tls`' CA certificate when the `tls` feature is off.
    #[cfg(not(feature = "tls"))]
    #[doc(hidden)]
    Never(core::marker::PhantomData<&'a ()>, core::convert::Infallible),
}

/// The token endpoint, for refreshes (R11). Without one, a refresh the session asks for
/// (ahead of expiry, or early after a 403, R9) fails transiently at once
/// (`other_status`); the session keeps its token and retries as R11 says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshEndpoint<'a> {
    /// Full URL of the token endpoint, e.g. `https://api.example.com/oauth/token`.
    pub url: &'a str,
    /// The `client_id` form field.
    pub client_id: &'a str,
}

/// What a [`Driver`](crate::Driver) talks to and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig<'a> {
    /// The core's settings (timeouts, budget, backoff, max body, refresh skew...).
    pub session: SessionConfig,
    /// Full URL of the check endpoint, e.g. `https://api.example.com/api/code/invites/check-access/`.
    pub check_url: &'a str,
    /// TLS (with the CA to verify against; feature `tls`) or explicitly plain HTTP.
    pub transport: Transport<'a>,
    /// The token endpoint, if refreshes are wanted.
    pub refresh: Option<RefreshEndpoint<'a>>,
}

/// Which URL a [`ConfigError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Endpoint {
    /// The check URL.
    Check,
    /// The token endpoint URL.
    Token,
}

/// Which buffer a [`ConfigError::BufferTooSmall`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BufferKind {
    /// [`Buffers::rx`].
    Rx,
    /// [`Buffers::tx`].
    Tx,
    /// [`Buffers::body`].
    Body,
    /// [`TlsBuffers::read`](crate::TlsBuffers::read). Only with the `tls` feature.
    #[cfg(feature = "tls")]
    TlsRead,
    /// [`TlsBuffers::write`](crate::TlsBuffers::write). Only with the `tls` feature.
    #[cfg(feature = "tls")]
    TlsWrite,
}

/// Why a driver could not be built. Nothing runs with a bad configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The core refused the session settings.
    Core(accessgate::ConfigError),
    /// A URL does not parse.
    InvalidUrl(Endpoint),
    /// An `http://` URL with `Transport::Tls`, or an `https://` URL with
    /// [`Transport::PlainHttp`]: the transport is never chosen from the URL (without the
    /// `tls` feature, every `https://` URL is refused with this error).
    SchemeMismatch(Endpoint),
    /// [`Transport::Tls`] with an empty CA certificate. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    EmptyCa,
    /// [`Transport::Tls`] with a CA certificate that does not parse as X.509 DER. Only with
    /// the `tls` feature.
    #[cfg(feature = "tls")]
    InvalidCa,
    /// [`Transport::Tls`] with a CA whose key the device cannot verify signatures of (RSA,
    /// Ed25519, curves other than P-256/P-384; R14: refused rather than skipped). Only with
    /// the `tls` feature.
    #[cfg(feature = "tls")]
    UnsupportedCa,
    /// [`Transport::Tls`] but a lane has no TLS buffers. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    MissingTlsBuffers(Endpoint),
    /// A token endpoint without refresh-lane buffers.
    MissingRefreshBuffers,
    /// A buffer is smaller than the configuration needs.
    BufferTooSmall {
        /// The lane.
        lane: Endpoint,
        /// The buffer.
        buffer: BufferKind,
        /// Bytes needed at least.
        need: usize,
    },
}

impl From<accessgate::ConfigError> for ConfigError {
    fn from(e: accessgate::ConfigError) -> Self {
        ConfigError::Core(e)
    }
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = |e: &Endpoint| match e {
            Endpoint::Check => "check",
            Endpoint::Token => "token",
        };
        match self {
            ConfigError::Core(e) => write!(f, "{e}"),
            ConfigError::InvalidUrl(e) => write!(f, "{} URL is not a valid http(s) URL", name(e)),
            ConfigError::SchemeMismatch(e) => write!(
                f,
                "{} URL scheme does not match the transport (TLS needs https://, plain HTTP needs http://)",
                name(e)
            ),
            #[cfg(feature = "tls")]
            ConfigError::EmptyCa => f.write_str("TLS transport with an empty CA certificate"),
            #[cfg(feature = "tls")]
            ConfigError::InvalidCa => f.write_str("TLS transport: the CA certificate is not X.509 DER"),
            #[cfg(feature = "tls")]
            ConfigError::UnsupportedCa => f.write_str(
                "TLS transport: the CA certificate's key is not ECDSA P-256/P-384 (RSA and Ed25519 cannot be verified on the device)",
            ),
            #[cfg(feature = "tls")]
            ConfigError::MissingTlsBuffers(e) => write!(f, "{} lane has no TLS buffers", name(e)),
            ConfigError::MissingRefreshBuffers => f.write_str("token endpoint given without refresh buffers"),
            ConfigError::BufferTooSmall { lane, buffer, need } => {
                write!(
                    f,
                    "{} lane: {buffer:?} buffer needs at least {need} bytes",
                    name(lane)
                )
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// Smallest response-head buffer accepted (a status line and a few headers).
pub const MIN_RX: usize = 256;
/// Smallest TLS read buffer accepted: a handshake record with one certificate. Full-size
/// records need 16 640. Only with the `tls` feature.
#[cfg(feature = "tls")]
pub const MIN_TLS_READ: usize = 2048;
/// Smallest TLS write buffer accepted. Only with the `tls` feature.
#[cfg(feature = "tls")]
pub const MIN_TLS_WRITE: usize = 1024;
/// `Authorization` value prefix.
pub(crate) const BEARER: &str = "Bearer ";
/// Form body of a refresh, around the two escaped values.
pub(crate) const FORM_FIXED: usize = "grant_type=refresh_token&refresh_token=&client_id=".len();

impl<'a> DriverConfig<'a> {
    /// Checks the configuration against the buffers it will run with. `T` is the token
    /// capacity of the session.
    pub(crate) fn validate<const T: usize>(
        &self,
        check: &Buffers<'_>,
        refresh: Option<&Buffers<'_>>,
    ) -> Result<(), ConfigError> {
        self.session.validate()?;
        let tls = self.transport_is_tls()?;
        check_url(self.check_url, tls, Endpoint::Check)?;
        let need_body = self.session.gate.max_body.saturating_add(1);
        check_buffers(check, Endpoint::Check, tls, BEARER.len() + T, need_body)?;
        if let Some(r) = &self.refresh {
            check_url(r.url, tls, Endpoint::Token)?;
            let bufs = refresh.ok_or(ConfigError::MissingRefreshBuffers)?;
            // Worst case: every byte percent-escaped.
            let need_tx = FORM_FIXED + 3 * T + 3 * r.client_id.len();
            // A token answer carries two tokens and some JSON around them.
            check_buffers(bufs, Endpoint::Token, tls, need_tx, 64)?;
        }
        Ok(())
    }

    /// Whether the transport is TLS; an empty CA is refused.
    #[cfg(feature = "tls")]
    fn transport_is_tls(&self) -> Result<bool, ConfigError> {
        match self.transport {
            Transport::Tls { ca_der: [], .. } => Err(ConfigError::EmptyCa),
            Transport::Tls { ca_der, .. } => match crate::tls::verify::check_trust_anchor(ca_der) {
                Ok(()) => Ok(true),
                Err(crate::tls::verify::AnchorError::Unsupported) => Err(ConfigError::UnsupportedCa),
                Err(crate::tls::verify::AnchorError::Invalid) => Err(ConfigError::InvalidCa),
            },
            Transport::PlainHttp => Ok(false),
        }
    }

    /// Whether the transport is TLS: never without the `tls` feature.
    #[cfg(not(feature = "tls"))]
    #[allow(clippy::unnecessary_wraps)]
    fn transport_is_tls(&self) -> Result<bool, ConfigError> {
        match self.transport {
            Transport::PlainHttp => Ok(false),
            Transport::Never(_, never) => match never {},
        }
    }
}

fn check_url(url: &str, tls: bool, which: Endpoint) -> Result<(), ConfigError> {
    let parsed = Url::parse(url).map_err(|_| ConfigError::InvalidUrl(which))?;
    if parsed.host().is_empty() {
        return Err(ConfigError::InvalidUrl(which));
    }
    match (parsed.scheme(), tls) {
        (UrlScheme::HTTPS, true) | (UrlScheme::HTTP, false) => Ok(()),
        _ => Err(ConfigError::SchemeMismatch(which)),
    }
}

fn check_buffers(
    b: &Buffers<'_>,
    lane: Endpoint,
    tls: bool,
    need_tx: usize,
    need_body: usize,
) -> Result<(), ConfigError> {
    let small = |buffer, need| ConfigError::BufferTooSmall { lane, buffer, need };
    if b.rx.len() < MIN_RX {
        return Err(small(BufferKind::Rx, MIN_RX));
    }
    if b.tx.len() < need_tx {
        return Err(small(BufferKind::Tx, need_tx));
    }
    if b.body.len() < need_body {
        return Err(small(BufferKind::Body, need_body));
    }
    #[cfg(not(feature = "tls"))]
    debug_assert!(!tls, "TLS without the `tls` feature");
    #[cfg(feature = "tls")]
    if tls {
        let t = b.tls.as_ref().ok_or(ConfigError::MissingTlsBuffers(lane))?;
        if t.read.len() < MIN_TLS_READ {
            return Err(small(BufferKind::TlsRead, MIN_TLS_READ));
        }
        if t.write.len() < MIN_TLS_WRITE {
            return Err(small(BufferKind::TlsWrite, MIN_TLS_WRITE));
        }
    }
    Ok(())
}
