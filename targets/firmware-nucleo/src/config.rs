//! Everything a deployment changes, in one place: the backend, the credentials, the trust
//! anchor, the gate's timings and the network.

use accessgate::{Duration, Probing, Retries, SessionConfig};
use accessgate_embassy::RefreshEndpoint;

// ---- backend ----------------------------------------------------------------------------

/// The check endpoint (backend-contract.md). Must be `https://` unless [`ALLOW_PLAIN_HTTP`].
pub const CHECK_URL: &str = "https://accessgate.local/api/code/invites/check-access/";

/// The token endpoint for refreshes (R11), or `None`: then a refresh the session asks for fails
/// transiently at once, and the access token is used until the backend answers 401.
/// Same scheme rule as [`CHECK_URL`]. Example:
/// `Some(RefreshEndpoint::new("https://accessgate.local/oauth/token", "kiosk-1"))`.
pub const REFRESH: Option<RefreshEndpoint<'static>> = None;

// ---- trust ------------------------------------------------------------------------------

/// DER of the trust anchor: the CA the server's chain must lead to (intermediates allowed), or the
/// server's own self-signed certificate (pinned). **Required**
/// for `https://`: with `None` the firmware refuses to start the gate (it logs an error and
/// shows the configuration-error LED pattern); it never falls back to unverified TLS.
/// What the device verifies (R14, the adapter's `Transport::Tls` docs): TLS 1.3, ECDSA
/// P-256/P-384 chains (RSA and Ed25519 refused), issuers must be CAs, serverAuth usage, the host
/// name against subjectAltName (CN only without SAN), CertificateVerify with the leaf's key, and
/// no request before both. This board has no wall clock (no `TlsConfig::with_clock`), so
/// certificate dates are **not** checked.
/// Example: `Some(include_bytes!("../ca.der"))`.
pub const TLS_CA_DER: Option<&[u8]> = None;

/// Plain HTTP: the bearer token crosses the network in clear text and anyone on the path can
/// forge a grant. Only for a closed test network; [`CHECK_URL`] must then be `http://`.
/// The transport is never guessed from the URL.
pub const ALLOW_PLAIN_HTTP: bool = false;

// ---- credentials --------------------------------------------------------------------------

/// The stored session the board restores at boot (visible ASCII, at most 1 KiB each).
pub const ACCESS_TOKEN: &str = "change-me";
pub const REFRESH_TOKEN: &str = "change-me-too";
/// Remaining lifetime of [`ACCESS_TOKEN`] at boot. Within the refresh skew, a refresh starts
/// at once (with [`REFRESH`] set).
pub const ACCESS_TOKEN_EXPIRES_IN: Duration = Duration::from_secs(3600);

// ---- gate timings -------------------------------------------------------------------------

/// The session's settings. behaviour.md's defaults: 10 s per attempt, 120 s fail-closed
/// budget, 8 retries at most (7 stratified over 70 s, the last in the 10 s before
/// `deadline - 10 s`), probes every 300 s at a per-device phase after the default ramp, 1 KiB
/// bodies, refresh 60 s before expiry spread over 10 min.
pub const SESSION: SessionConfig = {
    let mut s = SessionConfig::DEFAULT;
    s.gate.attempt_timeout = Duration::from_secs(10);
    s.gate.budget = Duration::from_secs(120);
    s.gate.retry = Retries {
        spread: Duration::from_secs(70),
        final_window: Duration::from_secs(10),
        count: 0,
    };
    s.gate.probe = Probing {
        period: Duration::from_secs(300),
        ..SessionConfig::DEFAULT.gate.probe
    };
    s
};

/// The app re-checks this often while signed in (`None`: only at boot, on token refreshes and
/// on the USER button). A re-check is a normal attempt: a failure is retried, never a denial.
pub const RECHECK_PERIOD: Option<embassy_time::Duration> = Some(embassy_time::Duration::from_secs(15 * 60));

// ---- network ------------------------------------------------------------------------------

/// Locally administered MAC address (bit 1 of the first byte set).
pub const MAC_ADDR: [u8; 6] = [0x02, 0x00, 0x00, 0xAC, 0xCE, 0x55];

/// Static IPv4 configuration; `None` uses DHCP.
pub const STATIC_IPV4: Option<StaticIpv4> = None;

/// A fixed address instead of DHCP.
pub struct StaticIpv4 {
    /// Address and prefix length, e.g. `([192, 168, 1, 50], 24)`.
    pub address: ([u8; 4], u8),
    /// Default gateway.
    pub gateway: [u8; 4],
    /// DNS server.
    pub dns: [u8; 4],
}
