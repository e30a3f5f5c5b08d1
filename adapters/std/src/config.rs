//! [`GateClientConfig`]: where the endpoints are, how to trust them, and the core's settings.

use accessgate::SessionConfig;

use crate::GateError;

/// Default path of the check endpoint (backend-contract.md).
pub const DEFAULT_CHECK_PATH: &str = "/api/code/invites/check-access/";
/// Default path of the token endpoint (backend-contract.md).
pub const DEFAULT_TOKEN_PATH: &str = "/oauth/token";
/// Default OAuth `client_id` sent with refreshes.
pub const DEFAULT_CLIENT_ID: &str = "accessgate";
/// Default limit on a token endpoint answer, in bytes (two tokens of up to
/// [`accessgate::DEFAULT_TOKEN_CAPACITY`] bytes each, plus JSON around them).
pub const DEFAULT_MAX_TOKEN_BODY: usize = 8 * 1024;

/// Everything [`AccessGate::spawn`](crate::AccessGate::spawn) needs.
///
/// ```
/// use accessgate_std::GateClientConfig;
/// let mut cfg = GateClientConfig::new("https://api.example.com");
/// assert_eq!(cfg.check_url, "https://api.example.com/api/code/invites/check-access/");
/// assert_eq!(cfg.token_url, "https://api.example.com/oauth/token");
/// cfg.session.gate.attempt_timeout = accessgate::Duration::from_secs(5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateClientConfig {
    /// Full URL of the check endpoint (`GET`, `Authorization: Bearer <token>`). Refused at
    /// [`build`](GateClientConfigBuilder::build) / spawn, as on the device, when
    /// [`accessgate::check_url`] refuses it (CR/LF, spaces, non-ASCII, `user:password@`,
    /// `#fragment`, port 0, ...): never rewritten into some other request. The URL is not
    /// treated as a secret: it appears, query included, in debug-level log lines (failures,
    /// spawn). Keep credentials out of it; they belong in the tokens.
    pub check_url: String,
    /// Full URL of the token endpoint (`POST`, form `grant_type=refresh_token&...`). The same
    /// rules as [`GateClientConfig::check_url`].
    pub token_url: String,
    /// `client_id` sent with every refresh.
    pub client_id: String,
    /// The core's settings (timeouts, budget, backoffs, refresh skew). The check body limit
    /// of R1 is `session.gate.max_body`: the adapter reads at most one byte more than that.
    pub session: SessionConfig,
    /// An extra trusted CA, PEM (one or more certificates), e.g. a test or corporate CA. A
    /// self-signed server certificate given here is also accepted as that exact certificate
    /// (pinning, R14), after its name, dates and stated usage are checked.
    pub extra_ca_pem: Option<String>,
    /// Trust the operating system's root store (default `true`). Tests set it to `false` and
    /// trust only [`GateClientConfig::extra_ca_pem`].
    pub system_roots: bool,
    /// Jitter seed (R6). `None` (the default) draws one from the OS RNG, so devices that fail
    /// together spread out; set it only for reproducible tests.
    pub seed: Option<u64>,
    /// Largest token-endpoint answer read, in bytes ([`DEFAULT_MAX_TOKEN_BODY`]); a larger
    /// one is a transient failure of the refresh.
    pub max_token_body: usize,
    /// `User-Agent` header of every request.
    pub user_agent: String,
    /// Send requests through the proxy the environment names (default `true`, as curl and
    /// most HTTP clients do, so the gate works where only a proxy reaches out): `HTTP_PROXY`
    /// for `http` endpoints, `HTTPS_PROXY` for `https`, `ALL_PROXY` for both, `NO_PROXY`
    /// exempting hosts (upper- or lower-case; `HTTP_PROXY` is ignored when `REQUEST_METHOD` is
    /// set, as under CGI). On macOS and Windows, when reqwest's `system-proxy` feature is on
    /// (reqwest's default features, so any crate of the app depending on reqwest with them
    /// turns it on), the system's proxy settings count too.
    ///
    /// What the proxy sees: for an `https` endpoint, only `CONNECT host:port`; the tokens
    /// travel inside TLS verified end to end against the configured anchors (R14), so a
    /// hostile proxy can refuse or stall (a transient failure) but not read them. For an
    /// `http` endpoint, the whole request: **the bearer token and the refresh form** (as
    /// anyone on the path does without a proxy). Set `false` to talk to the endpoints
    /// directly whatever the environment says (`tests/env_proxy.rs` pins both).
    pub proxy_from_env: bool,
}

impl GateClientConfig {
    /// A configuration for a backend at `base_url` (scheme, host, optional port and path
    /// prefix, e.g. `https://api.example.com`), with the contract's default paths, client id
    /// `accessgate`, the spec's default timings, and the OS root store.
    pub fn new(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        GateClientConfig {
            check_url: format!("{base}{DEFAULT_CHECK_PATH}"),
            token_url: format!("{base}{DEFAULT_TOKEN_PATH}"),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            session: SessionConfig::DEFAULT,
            extra_ca_pem: None,
            system_roots: true,
            seed: None,
            max_token_body: DEFAULT_MAX_TOKEN_BODY,
            user_agent: concat!("accessgate-std/", env!("CARGO_PKG_VERSION")).to_string(),
            proxy_from_env: true,
        }
    }
}

impl GateClientConfig {
    /// A builder for a backend at `base_url`, validated once by
    /// [`GateClientConfigBuilder::build`]. Durations are `std::time::Duration`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use accessgate_std::GateClientConfig;
    ///
    /// let cfg = GateClientConfig::builder("https://api.example.com")
    ///     .budget(Duration::from_secs(90))
    ///     .attempt_timeout(Duration::from_secs(5))
    ///     .client_id("kiosk")
    ///     .build()?;
    /// assert_eq!(cfg.session.gate.budget, Duration::from_secs(90).into());
    /// assert_eq!(cfg.client_id, "kiosk");
    ///
    /// // Mistakes are reported once, at build time, naming what is wrong.
    /// let err = GateClientConfig::builder("api.example.com").build().unwrap_err();
    /// assert!(err.to_string().contains("api.example.com"), "{err}");
    /// let err = GateClientConfig::builder("https://api.example.com")
    ///     .attempt_timeout(Duration::from_secs(200))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, accessgate_std::GateError::Config(_)), "{err}");
    /// # Ok::<(), accessgate_std::GateError>(())
    /// ```
    pub fn builder(base_url: &str) -> GateClientConfigBuilder {
        GateClientConfigBuilder {
            config: GateClientConfig::new(base_url),
        }
    }
}

/// Builds a [`GateClientConfig`] with `std::time::Duration` settings and checks it once
/// ([`GateClientConfigBuilder::build`]): URLs, the core's timings (R4-R7, R11) and the CA
/// PEM. Start with [`GateClientConfig::builder`].
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the configuration"]
pub struct GateClientConfigBuilder {
    config: GateClientConfig,
}

impl GateClientConfigBuilder {
    /// Full URL of the check endpoint, replacing the default path under the base URL.
    pub fn check_url(mut self, url: impl Into<String>) -> Self {
        self.config.check_url = url.into();
        self
    }
    /// Full URL of the token endpoint, replacing the default path under the base URL.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.config.token_url = url.into();
        self
    }
    /// `client_id` sent with every refresh.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }
    /// How long one check may take before it counts as a transient failure (R4; 10 s).
    pub fn attempt_timeout(mut self, d: std::time::Duration) -> Self {
        self.config.session.gate.attempt_timeout = d.into();
        self
    }
    /// Fail-closed budget after the first transient failure (R5; 120 s).
    pub fn budget(mut self, d: std::time::Duration) -> Self {
        self.config.session.gate.budget = d.into();
        self
    }
    /// How many retries a run of failures gets before failing closed (R6), up to the
    /// adapter's retry schedule capacity of 8; 0, the default, uses all 8. More is refused by [`build`](Self::build)
    /// ([`ConfigError::RetryCountOverCapacity`](accessgate::ConfigError::RetryCountOverCapacity)).
    ///
    /// ```
    /// use accessgate_std::{GateClientConfig, GateError};
    /// assert!(GateClientConfig::builder("http://127.0.0.1:1").retry_count(3).build().is_ok());
    /// let err = GateClientConfig::builder("http://127.0.0.1:1").retry_count(9).build().unwrap_err();
    /// assert!(matches!(err, GateError::Config(accessgate::ConfigError::RetryCountOverCapacity)));
    /// ```
    pub fn retry_count(mut self, n: u16) -> Self {
        self.config.session.gate.retry.count = n;
        self
    }
    /// Largest check body that can be definitive (R1; 1 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.config.session.gate.max_body = bytes;
        self
    }
    /// Shortest interval between two app-requested re-checks (5 s).
    pub fn min_recheck_interval(mut self, d: std::time::Duration) -> Self {
        self.config.session.gate.min_recheck_interval = d.into();
        self
    }
    /// Refresh this long before the access token expires (R11; 60 s).
    pub fn refresh_skew(mut self, d: std::time::Duration) -> Self {
        self.config.session.refresh_skew = d.into();
        self
    }
    /// How long one token refresh may take (10 s).
    pub fn refresh_timeout(mut self, d: std::time::Duration) -> Self {
        self.config.session.refresh_timeout = d.into();
        self
    }
    /// Every core setting at once, for what has no builder method of its own (R6/R7 schedules).
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.config.session = session;
        self
    }
    /// Trust these CA certificates (PEM, one or more) besides or instead of the OS roots. A
    /// self-signed server certificate given here is trusted as exactly that certificate (R14).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.extra_ca_pem = Some(pem.into());
        self
    }
    /// Whether to trust the operating system's root store (default `true`).
    pub fn system_roots(mut self, on: bool) -> Self {
        self.config.system_roots = on;
        self
    }
    /// A fixed jitter seed, for reproducible tests only (R6: devices must differ).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }
    /// Largest token-endpoint answer read, in bytes.
    pub fn max_token_body(mut self, bytes: usize) -> Self {
        self.config.max_token_body = bytes;
        self
    }
    /// `User-Agent` of every request.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.config.user_agent = ua.into();
        self
    }
    /// Send requests through the proxy the environment names (default `true`): over `http` the
    /// proxy reads the tokens, over `https` it sees only `CONNECT host:port`
    /// ([`GateClientConfig::proxy_from_env`]).
    pub fn proxy_from_env(mut self, on: bool) -> Self {
        self.config.proxy_from_env = on;
        self
    }

    /// Checks everything [`AccessGate::spawn`](crate::AccessGate::spawn) would: the core's
    /// settings, both URLs (http or https, with a host) and the CA PEM.
    pub fn build(self) -> Result<GateClientConfig, GateError> {
        // The session's own checks (timings, and the retry count against the capacity).
        crate::driver::CoreSession::new(self.config.session, 0)?;
        // The same construction spawn does, so a built config never fails there for a
        // configuration reason.
        crate::http::Transport::new(&self.config)?;
        Ok(self.config)
    }
}
