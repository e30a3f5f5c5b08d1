//! Driver configuration: endpoints, transport, seeds, and the checks made before anything
//! runs (once, in [`Driver::new`](crate::Driver::new)).

use crate::buffers::{Buffers, DriverBuffers};
use accessgate::SessionConfig;
use accessgate::UrlProblem;

/// How requests reach the backend. There is no default: plain HTTP must be asked for.
///
/// Both variants exist with and without the `tls` feature, so code that names them compiles
/// either way. A build without the feature (a plain-HTTP firmware, `default-features =
/// false`) links no TLS code: giving it [`Transport::Tls`] is refused when the driver is
/// built, with [`ConfigError::TlsNotEnabled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport<'a> {
    /// HTTPS: TLS 1.3 through embedded-tls, the server verified by the project's verifier
    /// before the request is written (R14; the full list of checks, and what a device cannot
    /// check, is in the `tls` module). In short: a chain (intermediates allowed) to the
    /// trust anchor with basicConstraints, keyUsage/extendedKeyUsage serverAuth and the host
    /// matched against subjectAltName (DNS names case-insensitively, IP addresses for IP
    /// URLs; the CN only without SAN), ECDSA P-256/P-384 only, the CertificateVerify
    /// signature checked with the leaf's key, and a self-signed server certificate given as
    /// the anchor trusted as that exact certificate (pinning).
    ///
    /// - validity dates: checked against [`TlsConfig::clock`] when it answers; **without a
    ///   clock** (or while it answers `None`) the chain is evaluated at the leaf's
    ///   notBefore, so an expired or not-yet-valid server certificate is not detected;
    /// - RSA: refused (an RSA trust anchor is [`ConfigError::UnsupportedCa`]; an RSA server
    ///   chain fails every handshake): RSA verification needs an allocator;
    /// - TLS 1.3 only, cipher suite `TLS_AES_128_GCM_SHA256`, key exchange on P-256.
    ///
    /// Every URL must be `https://`. Needs the crate feature **`tls`** (on by default),
    /// TLS buffers on every lane and [`Seeds::with_tls`].
    Tls(TlsConfig<'a>),
    /// Plain HTTP: the bearer token crosses the network in clear text and anyone on the path
    /// can forge answers. For tests and closed networks only; every URL must be `http://`.
    PlainHttp,
}

impl<'a> Transport<'a> {
    /// [`Transport::Tls`] trusting `ca_der`, without a wall clock (see [`TlsConfig`]).
    pub const fn tls(ca_der: &'a [u8]) -> Self {
        Transport::Tls(TlsConfig::new(ca_der))
    }
}

/// What a TLS transport trusts. Build it with [`TlsConfig::new`] and the `with_*` setters
/// (`const`, so it can be a `const` or `static`).
///
/// ```
/// use accessgate_embassy::{TlsConfig, Transport, UnixClock};
/// # const CA_DER: &[u8] = b"(DER bytes of the CA certificate)";
/// fn rtc_unix_seconds() -> Option<u64> { None /* until the RTC is set */ }
/// const TRANSPORT: Transport<'static> =
///     Transport::Tls(TlsConfig::new(CA_DER).with_clock(UnixClock(rtc_unix_seconds)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig<'a> {
    /// DER of the trust anchor: the CA certificate that issued the server's chain, or the
    /// server's own (self-signed) certificate to pin it. Parsed when the driver is built.
    pub ca_der: &'a [u8],
    /// The device's wall clock (Unix seconds) for certificate dates, if it has one.
    /// Default: none (dates are not checked; see [`Transport::Tls`]).
    pub clock: Option<UnixClock>,
}

impl<'a> TlsConfig<'a> {
    /// Trusts `ca_der`; no wall clock.
    pub const fn new(ca_der: &'a [u8]) -> Self {
        TlsConfig { ca_der, clock: None }
    }

    /// Checks certificate dates against `clock` (R14).
    #[must_use]
    pub const fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = Some(clock);
        self
    }
}

/// The device's wall clock for certificate dates: a function answering seconds since the
/// Unix epoch, or `None` while the time is not known (RTC not set, SNTP not synchronised).
/// Without one, certificate dates are not checked (see [`Transport::Tls`]). Exists with and
/// without the `tls` feature; only a TLS transport reads it.
#[derive(Clone, Copy)]
pub struct UnixClock(pub fn() -> Option<u64>);

impl UnixClock {
    /// The time now, if known.
    pub fn now(&self) -> Option<u64> {
        (self.0)()
    }
}

impl PartialEq for UnixClock {
    fn eq(&self, other: &Self) -> bool {
        // Same function (as far as addresses tell; configurations are compared in tests only).
        core::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for UnixClock {}

impl core::fmt::Debug for UnixClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UnixClock(..)")
    }
}

/// The token endpoint, for refreshes (R11). Without one, a refresh the session asks for
/// (ahead of expiry, or early after a 403, R9) fails transiently at once (`other_status`);
/// the session keeps its token and retries as R11 says (by default 1 s, 2 s, 4 s, then every
/// 5 s while the token is valid). The first failure of such a run starts a fail-closed run
/// (R5), so the unchanged token is checked once more (a grant ends it); the rest of the run
/// only retries the refresh. Once the token expires no check goes out with it, and the gate
/// fails closed a budget after the first refresh failure past expiry: configure a token
/// endpoint unless the app signs in again before its tokens expire.
///
/// It is reached over the driver's one [`Transport`], on a lane of its own (its buffers, its
/// TLS randomness stream) but through the same exchange code as the check: with
/// [`Transport::Tls`] the same trust anchor and clock verify it, against the token URL's host,
/// and the refresh form is written only after the chain and the CertificateVerify were both
/// verified (R14). There is one anchor per driver, so the token endpoint must chain to the
/// same CA as the check endpoint (with a pinned self-signed anchor: serve that certificate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshEndpoint<'a> {
    /// Full URL of the token endpoint, e.g. `https://api.example.com/oauth/token`. The same
    /// rules as [`DriverConfig::check_url`].
    pub url: &'a str,
    /// The `client_id` form field.
    pub client_id: &'a str,
}

impl<'a> RefreshEndpoint<'a> {
    /// The token endpoint at `url`, refreshing as `client_id`.
    pub const fn new(url: &'a str, client_id: &'a str) -> Self {
        RefreshEndpoint { url, client_id }
    }
}

/// What a [`Driver`](crate::Driver) talks to and how: the check URL, the transport, the
/// core's session settings and (optionally) the token endpoint.
///
/// Built with [`DriverConfig::new`] (the two settings without a default) and chainable
/// `const` setters, so a deployment can keep it in a `const` or `static`; the fields stay
/// readable and assignable. Checked once, when the driver is built ([`Driver::new`]), or on
/// its own with [`DriverConfig::validate`].
///
/// ```
/// use accessgate::SessionConfig;
/// use accessgate_embassy::{DriverConfig, RefreshEndpoint, Transport};
///
/// const SESSION: SessionConfig = SessionConfig::DEFAULT;
/// const GATE: DriverConfig<'static> =
///     DriverConfig::new("http://gate.lan/api/code/invites/check-access/", Transport::PlainHttp)
///         .with_session(SESSION)
///         .with_refresh(RefreshEndpoint::new("http://gate.lan/oauth/token", "kiosk-1"));
/// assert_eq!(GATE.validate(), Ok(()));
/// ```
///
/// [`Driver::new`]: crate::Driver::new
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverConfig<'a> {
    /// Full URL of the check endpoint, e.g. `https://api.example.com/api/code/invites/check-access/`.
    ///
    /// Accepted (this and [`RefreshEndpoint::url`]): `http[s]://host[:port][/path][?query]`,
    /// where `host` is a DNS name (ASCII letters, digits, `-`, `_`, dots; an international
    /// name in punycode), an IPv4 dotted quad or an IPv6 address in brackets (`[::1]`, no
    /// zone ID); `port` is 1 to 65535; path and query hold RFC 3986 characters with `%XX`
    /// escapes, sent exactly as written. Scheme and host are case-insensitive; a host's
    /// trailing dot stays in the `Host` header and is dropped for DNS and the TLS server
    /// name. Refused with [`ConfigError::Url`]: a space, control character (CR, LF, tab) or
    /// non-ASCII byte anywhere, `user:password@`, a `#fragment`, an empty or malformed host
    /// (also `127.1`-style numbers that are not a dotted quad), an empty or zero port, and
    /// path characters that must be escaped (`"` `<` `>` `\` `^` `` ` `` `{` `|` `}` `[` `]`,
    /// a `%` without two hex digits) and `.` / `..` path segments. See [`UrlProblem`]; the
    /// rules are the core's ([`accessgate::check_url`]), which the desktop adapter applies too.
    pub check_url: &'a str,
    /// TLS (with the CA to verify against) or explicitly plain HTTP. No default.
    pub transport: Transport<'a>,
    /// The core's settings (timeouts, budget, backoff, max body, refresh skew...).
    /// Default: [`SessionConfig::DEFAULT`] (the contract's defaults).
    pub session: SessionConfig,
    /// The token endpoint, if refreshes are wanted. Default: none.
    pub refresh: Option<RefreshEndpoint<'a>>,
}

/// Randomness a [`Driver`](crate::Driver) needs, drawn once at start-up from a hardware RNG
/// or the OS, never constants.
///
/// ```
/// use accessgate_embassy::Seeds;
/// # fn rng_u64() -> u64 { 0x5eed }
/// # fn rng_bytes() -> [u8; 32] { [0x5e; 32] }
/// let seeds = Seeds::new(rng_u64()).with_tls(rng_bytes());
/// ```
#[derive(Clone, Copy)]
pub struct Seeds {
    /// Seeds where retries fall in their slices and the probes' phase (R6, R7).
    pub(crate) jitter: u64,
    /// Keys the per-connection TLS randomness; `None` until [`Seeds::with_tls`].
    pub(crate) tls: Option<[u8; 32]>,
}

impl Seeds {
    /// `jitter` seeds where retries fall in their slices and the probes' phase (R6, R7). It
    /// must differ per device, or devices that fail together retry together (R6); a fixed
    /// value is only for reproducible test runs.
    pub const fn new(jitter: u64) -> Self {
        Seeds { jitter, tls: None }
    }

    /// `tls` keys the ChaCha20 generators (one stream per lane) that every TLS connection
    /// draws its key share and client random from. It must be secret and unpredictable.
    /// Required with [`Transport::Tls`] (missing or all zero: [`ConfigError::MissingTlsSeed`]);
    /// unused over plain HTTP and without the `tls` feature.
    #[must_use]
    pub const fn with_tls(mut self, tls: [u8; 32]) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl core::fmt::Debug for Seeds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The TLS seed is a secret: only whether it is there.
        f.debug_struct("Seeds")
            .field("jitter", &self.jitter)
            .field("tls", &self.tls.map(|_| ".."))
            .finish()
    }
}

/// Which URL (and lane) a [`ConfigError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Endpoint {
    /// The check URL.
    Check,
    /// The token endpoint URL.
    Token,
}

/// Which buffer a [`ConfigError::BufferTooSmall`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BufferKind {
    /// [`Buffers::rx`].
    Rx,
    /// [`Buffers::tx`].
    Tx,
    /// [`Buffers::body`].
    Body,
    /// [`TlsBuffers::read`](crate::TlsBuffers::read) (checked with a TLS transport only).
    TlsRead,
    /// [`TlsBuffers::write`](crate::TlsBuffers::write) (checked with a TLS transport only).
    TlsWrite,
}

/// Why a driver could not be built. Nothing runs with a bad configuration.
///
/// Every variant exists with and without the `tls` feature; the CA variants can only occur
/// with it (without it, [`Transport::Tls`] stops at [`ConfigError::TlsNotEnabled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// The core refused the session settings.
    Core(accessgate::ConfigError),
    /// A URL without `://`, or with a scheme other than `http` / `https`.
    InvalidUrl(Endpoint),
    /// An http(s) URL that would make a malformed or ambiguous request: a space, control
    /// character or non-ASCII byte, `user:password@`, a `#fragment`, a bad host or port, or an
    /// unescaped path character. The [`UrlProblem`] says which (never
    /// [`UrlProblem::Scheme`], which is [`ConfigError::InvalidUrl`]); the accepted forms are
    /// listed at [`DriverConfig::check_url`].
    Url(Endpoint, UrlProblem),
    /// An `http://` URL with [`Transport::Tls`], or an `https://` URL with
    /// [`Transport::PlainHttp`]: the transport is never chosen from the URL.
    SchemeMismatch(Endpoint),
    /// [`Transport::Tls`] in a build without the crate feature `tls` (no TLS code is linked).
    TlsNotEnabled,
    /// [`Transport::Tls`] with an empty CA certificate.
    EmptyCa,
    /// [`Transport::Tls`] with a CA certificate that does not parse as X.509 DER.
    InvalidCa,
    /// [`Transport::Tls`] with a CA whose key the device cannot verify signatures of (RSA,
    /// Ed25519, curves other than P-256/P-384; R14: refused rather than skipped).
    UnsupportedCa,
    /// [`Transport::Tls`] without a TLS seed ([`Seeds::with_tls`]), or with an all-zero one
    /// (a placeholder, not randomness).
    MissingTlsSeed,
    /// [`Transport::Tls`] but a lane has no TLS buffers.
    MissingTlsBuffers(Endpoint),
    /// A token endpoint without refresh-lane buffers ([`DriverBuffers::with_refresh`]).
    MissingRefreshBuffers,
    /// Refresh-lane buffers without a token endpoint ([`DriverConfig::with_refresh`]): the
    /// memory would sit unused and refreshes would fail, which is rarely what was meant.
    RefreshBuffersWithoutEndpoint,
    /// The [`Link`](crate::Link) is driven already: one driver per link (two would take
    /// turns waking each other on its one receiver). Drop that driver first (a cancelled
    /// task drops it); then the link takes a new one.
    LinkInUse,
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
            ConfigError::InvalidUrl(e) => write!(f, "{} URL is not an http:// or https:// URL", name(e)),
            ConfigError::Url(e, problem) => write!(f, "{} URL {problem}", name(e)),
            ConfigError::SchemeMismatch(e) => write!(
                f,
                "{} URL scheme does not match the transport (TLS needs https://, plain HTTP needs http://)",
                name(e)
            ),
            ConfigError::TlsNotEnabled => {
                f.write_str("TLS transport in a build without the `tls` feature of accessgate-embassy")
            }
            ConfigError::EmptyCa => f.write_str("TLS transport with an empty CA certificate"),
            ConfigError::InvalidCa => f.write_str("TLS transport: the CA certificate is not X.509 DER"),
            ConfigError::UnsupportedCa => f.write_str(
                "TLS transport: the CA certificate's key is not ECDSA P-256/P-384 (RSA and Ed25519 cannot be verified on the device)",
            ),
            ConfigError::MissingTlsSeed => {
                f.write_str("TLS transport without a TLS seed from the RNG (Seeds::with_tls), or an all-zero one")
            }
            ConfigError::MissingTlsBuffers(e) => write!(f, "{} lane has no TLS buffers", name(e)),
            ConfigError::MissingRefreshBuffers => f.write_str("token endpoint given without refresh buffers"),
            ConfigError::RefreshBuffersWithoutEndpoint => {
                f.write_str("refresh buffers given without a token endpoint")
            }
            ConfigError::LinkInUse => f.write_str("the link is driven by another driver already"),
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
/// Smallest TLS read buffer accepted with a TLS transport: a handshake record with one
/// certificate. Full-size records need 16 640.
pub const MIN_TLS_READ: usize = 2048;
/// Smallest TLS write buffer accepted with a TLS transport.
pub const MIN_TLS_WRITE: usize = 1024;
/// `Authorization` value prefix.
pub(crate) const BEARER: &str = "Bearer ";
/// Form body of a refresh, around the two escaped values.
pub(crate) const FORM_FIXED: usize = "grant_type=refresh_token&refresh_token=&client_id=".len();

impl<'a> DriverConfig<'a> {
    /// A configuration checking `check_url` over `transport`, with the contract's session
    /// defaults ([`SessionConfig::DEFAULT`]) and no token endpoint.
    pub const fn new(check_url: &'a str, transport: Transport<'a>) -> Self {
        DriverConfig {
            check_url,
            transport,
            session: SessionConfig::DEFAULT,
            refresh: None,
        }
    }

    /// The core's settings (attempt timeout, budget, retries, probes, max body, refresh skew).
    #[must_use]
    pub const fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    /// Refreshes tokens at `endpoint` (R11). The driver then needs refresh-lane buffers
    /// ([`DriverBuffers::with_refresh`]).
    #[must_use]
    pub const fn with_refresh(mut self, endpoint: RefreshEndpoint<'a>) -> Self {
        self.refresh = Some(endpoint);
        self
    }

    /// Checks what can be checked without the buffers: the session settings, the transport
    /// (the feature, the CA) and both URLs against it. [`Driver::new`](crate::Driver::new)
    /// does this too, then checks the buffers and seeds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tls().map(drop)
    }

    /// [`DriverConfig::validate`], answering whether the transport is TLS.
    fn tls(&self) -> Result<bool, ConfigError> {
        self.session.validate()?;
        let tls = transport_is_tls(&self.transport)?;
        check_url(self.check_url, tls, Endpoint::Check)?;
        if let Some(r) = &self.refresh {
            check_url(r.url, tls, Endpoint::Token)?;
        }
        Ok(tls)
    }

    /// Checks the configuration, the buffers and the seeds together. `T` is the token
    /// capacity of the session.
    pub(crate) fn validate_with<const T: usize>(
        &self,
        buffers: &DriverBuffers<'_>,
        seeds: &Seeds,
    ) -> Result<(), ConfigError> {
        let tls = self.tls()?;
        // R14: a TLS connection's key share and client random come from this seed.
        if tls && seeds.tls.is_none_or(|s| s == [0; 32]) {
            return Err(ConfigError::MissingTlsSeed);
        }
        // R1: a body one byte over max_body must fit, so an oversized answer is detected.
        let need_body = self.session.gate.max_body.saturating_add(1);
        check_buffers(&buffers.check, Endpoint::Check, tls, BEARER.len() + T, need_body)?;
        match (&self.refresh, &buffers.refresh) {
            (Some(r), Some(bufs)) => {
                // Worst case: every byte percent-escaped.
                let need_tx = FORM_FIXED + 3 * T + 3 * r.client_id.len();
                // A token answer carries two tokens and some JSON around them.
                check_buffers(bufs, Endpoint::Token, tls, need_tx, 64)
            }
            (Some(_), None) => Err(ConfigError::MissingRefreshBuffers),
            (None, Some(_)) => Err(ConfigError::RefreshBuffersWithoutEndpoint),
            (None, None) => Ok(()),
        }
    }
}

/// Whether the transport is TLS; an empty, unparsable or unverifiable CA is refused (R14).
#[cfg(feature = "tls")]
fn transport_is_tls(transport: &Transport<'_>) -> Result<bool, ConfigError> {
    match transport {
        Transport::Tls(TlsConfig { ca_der: [], .. }) => Err(ConfigError::EmptyCa),
        Transport::Tls(TlsConfig { ca_der, .. }) => match crate::tls::verify::check_trust_anchor(ca_der) {
            Ok(()) => Ok(true),
            Err(crate::tls::verify::AnchorError::Unsupported) => Err(ConfigError::UnsupportedCa),
            Err(crate::tls::verify::AnchorError::Invalid) => Err(ConfigError::InvalidCa),
        },
        Transport::PlainHttp => Ok(false),
    }
}

/// Whether the transport is TLS: never without the `tls` feature, where asking for it is
/// refused rather than quietly downgraded (R14).
#[cfg(not(feature = "tls"))]
fn transport_is_tls(transport: &Transport<'_>) -> Result<bool, ConfigError> {
    match transport {
        Transport::Tls(_) => Err(ConfigError::TlsNotEnabled),
        Transport::PlainHttp => Ok(false),
    }
}

/// The URL rules both platforms share ([`accessgate::check_url`]), then its scheme against the transport (R14: the
/// transport is never chosen from the URL).
fn check_url(url: &str, tls: bool, which: Endpoint) -> Result<(), ConfigError> {
    let target = accessgate::check_url(url).map_err(|e| match e {
        UrlProblem::Scheme => ConfigError::InvalidUrl(which),
        p => ConfigError::Url(which, p),
    })?;
    if target.https == tls {
        Ok(())
    } else {
        Err(ConfigError::SchemeMismatch(which))
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
