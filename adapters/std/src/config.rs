//! [`GateClientConfig`]: where the endpoints are, how to trust them, and the core's settings.

use accessgate::SessionConfig;

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
pub struct GateClientConfig {
    /// Full URL of the check endpoint (`GET`, `Authorization: Bearer <token>`).
    pub check_url: String,
    /// Full URL of the token endpoint (`POST`, form `grant_type=refresh_token&...`).
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
    /// Honour `HTTP(S)_PROXY` / `NO_PROXY` from the environment (default `true`).
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
