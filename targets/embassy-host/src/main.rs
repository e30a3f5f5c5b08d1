//! # `accessgate-embassy`: the device code path on a PC
//!
//! The same driver a kiosk runs (`accessgate-embassy`: embassy executor and timers, its own
//! HTTP/1.1, embedded-tls with the project's verifier), on the host: `embassy-executor` with `platform-std`, `embassy-time` with
//! its std driver, and `std-embedded-nal-async` for TCP and DNS. Only argument parsing and
//! wiring live here.
//!
//! `check` takes the flags of the desktop CLI's `accessgate check` and exits the same way:
//! 0 granted, 1 denied, 2 failed closed (at the fail-closed deadline at the latest),
//! 3 unauthorized, 64 usage error. With `--json` every event is one line of JSON and the
//! last line is the final status (`"final":true`), byte-compatible with the desktop CLI.
//!
//! Unlike the desktop CLI, HTTPS trusts `--ca` only (a device has no system trust store),
//! and the device's TLS applies (R14; `accessgate_embassy::tls` lists it): TLS 1.3, ECDSA
//! P-256/P-384 certificates (RSA and Ed25519 refused), a chain to that CA with intermediates
//! or the server's own self-signed certificate pinned, the URL's host matched against the
//! subjectAltName (DNS name or IP address; the CN only without SAN), and validity dates
//! checked against the system clock.
//!
//! With `--token-url` (device path only) the driver also has its refresh lane (R11): the
//! token is refreshed there with `--refresh-token`, over the same transport and `--ca` as the
//! check (a device has one trust anchor; R14 holds for both endpoints), and the run ends once
//! `--refreshes` refreshes have ended (see `--help`).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use accessgate::{write_event_json, write_final_json, SessionConfig, Verdict, DEFAULT_TOKEN_CAPACITY};
use accessgate_args::{check_token, check_url, parse_duration, to_core, CheckTiming};
use accessgate_embassy::{
    time, until_refreshes, until_verdict, write_event_text, write_verdict_text, BufferKind, CheckStorage,
    ConfigError, Driver, DriverBuffers, DriverConfig, Endpoint, Link, RefreshEndpoint, RefreshStorage, Seeds,
    TimedEvent, TlsConfig, Transport, UnixClock, UrlProblem,
};
use clap::{Args, Parser, Subcommand};
use embassy_executor::Spawner;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use static_cell::StaticCell;
use std_embedded_nal_async::Stack;

/// Exit code of a usage error (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;
/// Shortest lifetime given to the check's token; it is at least twice the decision bound,
/// so no refresh is ever due.
const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The embassy device code path on a PC.
#[derive(Debug, Parser)]
#[command(name = "accessgate-embassy", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One access check with full gate semantics; the verdict is the exit code.
    #[command(
        long_about = "One session start with full gate semantics, on the embassy driver: an \
immediate check, then jittered retries on transient failures until a definitive answer arrives \
or the fail-closed budget runs out.\n\n\
Exit codes:\n  \
0   granted: 200 {\"has_access\": true}\n  \
1   denied by the server: 200 {\"has_access\": false}\n  \
2   failed closed: no definitive answer within the budget\n  \
3   unauthorized: the server answered 401 (or, with --token-url, rejected the refresh token)\n  \
64  usage error (bad flags, unreadable or invalid --ca, https without --ca, invalid URL or token)\n\n\
URLs (--url, --token-url): http[s]://host[:port][/path][?query], host a DNS name, an IPv4 address \
or an IPv6 address in brackets ([::1]); refused: spaces, control characters and non-ASCII \
(percent-encode them), user:password@, #fragments, port 0, unescaped path characters.\n\n\
Token refresh (device path only): with --token-url and --refresh-token the driver also runs its \
refresh lane (R11): POST grant_type=refresh_token to --token-url, over the same transport and --ca \
as --url (R14: the token endpoint proves who it is before it sees the refresh token). --expires-in \
sets what is left of --token's lifetime (required with --token-url): inside the refresh skew (60 s) \
the refresh starts at once, and it must come due within --timeout + --budget. The run then ends \
when the check has a verdict and --refreshes refreshes have ended (refreshed and the new token \
checked, failed, or rejected); each shows as a refresh_started / refreshed / refresh_failed \
(class and detail) / refresh_rejected event. The exit code is still the access verdict."
    )]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Full URL of the check endpoint (http, or https with --ca).
    #[arg(long, value_name = "URL")]
    url: String,
    /// Access token, sent as `Authorization: Bearer <T>`.
    #[arg(long, value_name = "T", env = "ACCESSGATE_TOKEN", hide_env_values = true)]
    token: String,
    /// The CA certificate (PEM) that signed the server's certificate; required for https.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Accepted for compatibility with `accessgate check`: this path only ever trusts --ca.
    #[arg(long, requires = "ca")]
    no_system_roots: bool,
    /// Per-attempt timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    timeout: Duration,
    /// Fail-closed budget, counted from the first transient failure.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DUR")]
    budget: Duration,
    /// Window after the first failure over which retries 1..7 are stratified (R6). Default:
    /// 70 s, or 7/11 of `budget - timeout` when that is shorter.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    retry_spread: Option<Duration>,
    /// Window of the last retry, ending one timeout before the deadline (R6). Default: 10 s,
    /// or 1/11 of `budget - timeout` when that is shorter.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    final_window: Option<Duration>,
    /// How many retries a run of transient failures gets before failing closed (R6), 1 to 8.
    /// Default: all 8 (7 stratified over the spread window, the last in the final window).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    retries: Option<u16>,
    /// Jitter seed (default: drawn from the OS; set it only for reproducible runs).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Print one JSON object per event and a final status line instead of the timeline.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the verdict.
    #[arg(long, short)]
    quiet: bool,
    /// Accepted for compatibility with `accessgate check`; the timeline is never coloured.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"])]
    color: String,
    /// Check the flags (URL, token, --ca, timings) and exit 0 without sending anything.
    #[arg(long)]
    dry_run: bool,
    /// Token endpoint for refreshes (R11), http or https like --url (same --ca).
    #[arg(long, value_name = "URL", requires = "refresh_token")]
    token_url: Option<String>,
    /// Refresh token sent to --token-url.
    #[arg(
        long,
        value_name = "RT",
        env = "ACCESSGATE_REFRESH_TOKEN",
        hide_env_values = true,
        requires = "token_url"
    )]
    refresh_token: Option<String>,
    /// The `client_id` of the refresh form.
    #[arg(long, value_name = "ID", requires = "token_url")]
    client_id: Option<String>,
    /// What is left of --token's lifetime (R11: refreshed 60 s before expiry, at once when
    /// less is left). Required with --token-url; at most --timeout + --budget + 60 s, so the
    /// refresh comes due while the run waits for it.
    #[arg(long, value_parser = parse_duration, value_name = "DUR", requires = "token_url")]
    expires_in: Option<Duration>,
    /// How many token refreshes to see end (refreshed and checked, failed, or rejected) before
    /// exiting, 1 to 8. Default: 1.
    #[arg(long, value_name = "N", allow_negative_numbers = true, requires = "token_url")]
    refreshes: Option<u16>,
}

/// `client_id` of the refresh form when --client-id is not given: the reference backend's.
const DEFAULT_CLIENT_ID: &str = "accessgate";
/// Most refreshes `--refreshes` can wait for.
const MAX_REFRESHES: u16 = 8;

impl CheckArgs {
    fn timing(&self) -> CheckTiming {
        CheckTiming {
            timeout: self.timeout,
            budget: self.budget,
            retry_spread: self.retry_spread,
            final_window: self.final_window,
            retries: self.retries,
        }
    }
}

/// The OS resolver, IPv4 first: the adapter asks for "either" family and takes the first
/// answer, so where `localhost` resolves to `::1` first a server bound to `127.0.0.1` (like
/// the reference backend) would be unreachable. Falls back to any family.
struct HostDns(Stack);

impl embedded_nal_async::Dns for HostDns {
    type Error = std::io::Error;

    async fn get_host_by_name(
        &self,
        host: &str,
        addr_type: embedded_nal_async::AddrType,
    ) -> Result<core::net::IpAddr, Self::Error> {
        use embedded_nal_async::AddrType;
        if addr_type == AddrType::Either {
            if let Ok(v4) = self.0.get_host_by_name(host, AddrType::IPv4).await {
                return Ok(v4);
            }
        }
        self.0.get_host_by_name(host, addr_type).await
    }

    async fn get_host_by_address(
        &self,
        addr: core::net::IpAddr,
        result: &mut [u8],
    ) -> Result<usize, Self::Error> {
        self.0.get_host_by_address(addr, result).await
    }
}

type HostDriver = Driver<'static, CriticalSectionRawMutex, Stack, HostDns>;

static LINK: Link<'static, CriticalSectionRawMutex> = Link::new();
static STACK: StaticCell<Stack> = StaticCell::new();
static DNS: StaticCell<HostDns> = StaticCell::new();
static CHECK_BUFFERS: StaticCell<CheckStorage> = StaticCell::new();
static REFRESH_BUFFERS: StaticCell<RefreshStorage> = StaticCell::new();

#[embassy_executor::task]
async fn drive(driver: HostDriver) -> ! {
    driver.run().await
}

/// Everything `check` needs, validated before anything runs.
struct Plan {
    driver: HostDriver,
    /// What is left of `--token`'s lifetime (the tokens stay in `args` until queued).
    expires_in: accessgate::Duration,
    /// Refreshes to see end before exiting; 0 without --token-url.
    refreshes: u16,
    args: CheckArgs,
}

/// Checks every flag (each refusal names its flag, issue 14) and builds the driver.
fn plan(args: CheckArgs) -> Result<Plan, String> {
    let mut session = SessionConfig::DEFAULT;
    args.timing().apply(&mut session)?;
    let https = check_url("--url", &args.url)?;
    check_token("--token", &args.token, DEFAULT_TOKEN_CAPACITY)?;
    // R14: one transport (and one --ca) for both endpoints, so the token endpoint must use
    // the same scheme as the check: a token must never take a weaker path than the check.
    if let Some(token_url) = &args.token_url {
        if check_url("--token-url", token_url)? != https {
            return Err(format!(
                "--token-url {token_url} must use the same scheme as --url {}: both go over one transport",
                args.url
            ));
        }
    }
    if let Some(rt) = refresh_token(&args) {
        check_token("--refresh-token", rt, DEFAULT_TOKEN_CAPACITY)?;
    }
    let refreshes = match (&args.token_url, args.refreshes) {
        (None, _) => 0,
        (Some(_), None) => 1,
        (Some(_), Some(n @ 1..=MAX_REFRESHES)) => n,
        (Some(_), Some(n)) => return Err(format!("--refreshes {n}: give 1 to {MAX_REFRESHES}")),
    };
    // Read and checked whatever the scheme, as the desktop CLI does: a missing, unreadable or
    // non-PEM --ca is a mistake even where plain HTTP does not use it.
    let ca_der = args.ca.as_ref().map(read_ca).transpose()?;
    let transport = match (ca_der, https) {
        // A PC knows the time: certificate dates are checked (R14).
        (Some(der), true) => Transport::Tls(
            TlsConfig::new(Box::leak(der.into_boxed_slice())).with_clock(UnixClock(system_unix_time)),
        ),
        (None, true) => {
            return Err(format!(
                "--url {} is https, which needs --ca: the device path has no system trust store",
                args.url
            ))
        }
        // The user wrote http:// on the command line: that is the explicit choice.
        (_, false) => Transport::PlainHttp,
    };
    // Without --token-url no refresh is ever due: the lifetime outlasts the decision.
    let lifetime = match (&args.token_url, args.expires_in) {
        (None, _) => args
            .timing()
            .decision_bound(Duration::from_secs(5))
            .saturating_mul(2)
            .max(TOKEN_LIFETIME),
        (Some(_), None) => {
            return Err(
                "--token-url needs --expires-in (what is left of --token's lifetime): the run \
                        waits for the refresh it brings due"
                    .into(),
            )
        }
        (Some(_), Some(left)) => {
            // R11: the refresh comes due `refresh_skew` before expiry at the latest; the run
            // waits for it only within its bound.
            let skew = Duration::from_micros(session.refresh_skew.as_micros());
            let wait = args.timeout.saturating_add(args.budget);
            if left.saturating_sub(skew) > wait {
                return Err(format!(
                    "--expires-in {left:?}: the refresh would come due up to {:?} from now, after the run \
                     gives up waiting (--timeout + --budget = {wait:?}); give at most {:?}",
                    left.saturating_sub(skew),
                    wait.saturating_add(skew)
                ));
            }
            left
        }
    };
    // A refresh is one attempt like a check: bounded by --timeout (R4).
    session.refresh_timeout = to_core(args.timeout);

    let mut tls = [0u8; 32];
    let mut jitter = [0u8; 8];
    getrandom::fill(&mut tls)
        .and_then(|()| getrandom::fill(&mut jitter))
        .map_err(|e| format!("no OS randomness: {e}"))?;
    let seeds = Seeds::new(args.seed.unwrap_or(u64::from_le_bytes(jitter))).with_tls(tls);
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let mut config = DriverConfig::new(leak(&args.url), transport).with_session(session);
    let stack: &'static Stack = STACK.init(Stack::default());
    let dns: &'static HostDns = DNS.init(HostDns(Stack::default()));
    let mut buffers = DriverBuffers::new(CHECK_BUFFERS.init_with(CheckStorage::new).buffers());
    if let Some(token_url) = &args.token_url {
        let client_id = args.client_id.as_deref().unwrap_or(DEFAULT_CLIENT_ID);
        config = config.with_refresh(RefreshEndpoint::new(leak(token_url), leak(client_id)));
        buffers = buffers.with_refresh(REFRESH_BUFFERS.init_with(RefreshStorage::new).buffers());
    }
    let driver = Driver::new(&LINK, stack, dns, config, buffers, seeds).map_err(|e| match e {
        // The URL's own problem, named; quoted (`{:?}`) so a CR/LF or control byte shows as an
        // escape instead of acting on the terminal, and without the URL when it holds a password.
        ConfigError::Url(lane, problem) => {
            let (flag, url) = match lane {
                Endpoint::Token => ("--token-url", args.token_url.as_deref().unwrap_or_default()),
                _ => ("--url", args.url.as_str()),
            };
            match problem {
                UrlProblem::Userinfo => format!("{flag}: {e}"),
                _ => format!("{flag} {url:?}: {e}"),
            }
        }
        ConfigError::InvalidUrl(Endpoint::Token) | ConfigError::SchemeMismatch(Endpoint::Token) => {
            format!(
                "--token-url {}: {e}",
                args.token_url.as_deref().unwrap_or_default()
            )
        }
        ConfigError::InvalidUrl(_) | ConfigError::SchemeMismatch(_) => format!("--url {}: {e}", args.url),
        ConfigError::EmptyCa | ConfigError::InvalidCa | ConfigError::UnsupportedCa => format!("--ca: {e}"),
        // The refresh form holds the escaped client_id next to the longest refresh token.
        ConfigError::BufferTooSmall {
            lane: Endpoint::Token,
            buffer: BufferKind::Tx,
            ..
        } => "--client-id is too long for the refresh lane's request buffer".to_string(),
        other => other.to_string(),
    })?;
    Ok(Plan {
        driver,
        expires_in: to_core(lifetime),
        refreshes,
        args,
    })
}

/// The refresh token the sign-in carries: `--refresh-token` with `--token-url`. clap's
/// `requires` rules out the other combinations; without a token URL nothing is ever sent.
fn refresh_token(args: &CheckArgs) -> Option<&str> {
    args.token_url.as_ref().and(args.refresh_token.as_deref())
}

/// The system clock as Unix seconds, for certificate dates; `None` before 1970.
fn system_unix_time() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Reads the first certificate of a PEM file as DER.
fn read_ca(path: &PathBuf) -> Result<Vec<u8>, String> {
    let text = std::fs::read(path).map_err(|e| format!("--ca {}: cannot read it: {e}", path.display()))?;
    let blocks = pem::parse_many(&text).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    blocks
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .ok_or_else(|| format!("--ca {}: no CERTIFICATE block", path.display()))
}

async fn check(spawner: Spawner, args: CheckArgs) -> Result<u8, String> {
    let Plan {
        driver,
        expires_in,
        refreshes,
        args,
    } = plan(args)?;
    if args.dry_run {
        return Ok(0);
    }
    spawner.spawn(drive(driver).map_err(|e| format!("cannot start the driver: {e:?}"))?);

    let origin = time::now();
    let mut out = std::io::stdout().lock();
    if !args.json && !args.quiet {
        let _ = writeln!(out, "checking {}", args.url);
    }
    // Copied from the flags straight into the link's queue, as the firmware does: no token
    // value on the way (see "Token hygiene" in accessgate_embassy). The flags were checked.
    let refresh = refresh_token(&args).unwrap_or("unused");
    LINK.try_sign_in(args.token.as_bytes(), refresh.as_bytes(), expires_in)
        .map_err(|e| format!("sign-in: {e}"))?;
    let print = |out: &mut std::io::StdoutLock<'_>, e: &TimedEvent| {
        let mut line = String::new();
        // Writing into a String cannot fail.
        if args.json {
            let _ = write_event_json(&mut line, &e.event, e.at, origin);
        } else if !args.quiet {
            let _ = write_event_text(&mut line, e, origin);
        } else {
            return;
        }
        let _ = writeln!(out, "{line}");
    };
    // The gate decides within the first attempt's timeout plus the budget (R5); the outer
    // bound only guards against a bug, and then counts as failed closed. Each refresh waited
    // for adds its own bound: R11's retry floor (5 s at most) and a check of the new token.
    let per_refresh = args.timing().decision_bound(Duration::from_secs(5));
    let bound = args
        .timing()
        .decision_bound(Duration::from_secs(5))
        .saturating_add(per_refresh.saturating_mul(u32::from(refreshes)));
    let bound = embassy_time::Duration::from_micros(to_core(bound).as_micros());
    let watched = if refreshes == 0 {
        embassy_time::with_timeout(bound, until_verdict(&LINK, |e| print(&mut out, e))).await
    } else {
        embassy_time::with_timeout(bound, until_refreshes(&LINK, refreshes, |e| print(&mut out, e))).await
    }
    .map(|r| r.map(|(v, s)| (Some(v), s)));
    let (verdict, snapshot) = match watched {
        Ok(Ok((v, s))) => (v, s),
        Ok(Err(e)) => return Err(e.to_string()),
        // A check without a verdict by the bound is a bug and counts as failed closed.
        Err(_) if refreshes == 0 => (None, LINK.snapshot().unwrap_or_default()),
        // Fewer refreshes ended than asked for (the server handed out long-lived tokens, so no
        // further refresh came due): the access verdict still stands.
        Err(_) => {
            let s = LINK.snapshot().unwrap_or_default();
            eprintln!(
                "accessgate-embassy: fewer than {refreshes} token refreshes ended within the run's bound \
                 ({} started)",
                s.counters.refreshes
            );
            (Verdict::of(&s.status), s)
        }
    };
    let code = verdict.map_or(Verdict::FailedClosed.exit_code(), Verdict::exit_code);
    let mut line = String::new();
    if args.json {
        let _ = write_final_json(
            &mut line,
            verdict,
            &snapshot.status,
            &snapshot.counters,
            snapshot.at,
            origin,
        );
    } else {
        let _ = write_verdict_text(
            &mut line,
            verdict.unwrap_or(Verdict::FailedClosed),
            &snapshot,
            origin,
        );
    }
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    Ok(code)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let code = match Cli::try_parse() {
        // --help and --version are answers, not errors; every clap error is a usage error.
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                EXIT_USAGE
            } else {
                0
            }
        }
        Ok(Cli {
            command: Cmd::Check(args),
        }) => match check(spawner, args).await {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("accessgate-embassy: {msg}");
                EXIT_USAGE
            }
        },
    };
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code));
}
