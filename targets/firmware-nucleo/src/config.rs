//! Everything a deployment changes, in one place.

use embassy_time::Duration;

/// The endpoint polled. `https://` uses TLS 1.3 (embedded-tls); `http://` goes in clear.
pub const URL: &str = "https://accessgate.local/api/code/invites/check-access/";

/// Sent as the `Authorization` header of every request.
pub const AUTHORIZATION: &str = "Bearer change-me";

/// CA certificate (DER) that must directly sign the server's certificate. `None` skips
/// verification: only for bring-up on a trusted network; the board logs a warning at boot.
/// embedded-tls limits: ECDSA P-256/P-384 or Ed25519, host name matched against the CN,
/// no date check. Example: `Some(include_bytes!("../ca.der"))`.
pub const TLS_CA_DER: Option<&[u8]> = None;

/// Time between the start of one check and the start of the next.
pub const POLL_PERIOD: Duration = Duration::from_secs(30);

/// Bound on one request: DNS, connect, TLS handshake, request and response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
