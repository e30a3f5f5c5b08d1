//! `accessgate watch`: a live session (checks, refreshes, retries) printed as a timeline until
//! Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use accessgate::{FailureDetail, NetFailure, TlsFailure, DEFAULT_TOKEN_CAPACITY};
use accessgate_args::{check_token, check_url, CheckTiming};
use accessgate_std::{GateClientConfig, GateError, Tokens};
use clap::Args;

use crate::check::{gate_error, read_ca, spawn};
use crate::observe::{Observer, Output};
use crate::util::{parse_duration, to_core, CliError, ColorChoice};

/// The shortest `--recheck-every`: watch lowers the gate's re-check rate limit to the asked-for
/// pace, but never below this (issue 14: `0s` sent about 600 checks a second).
pub const MIN_RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Options of `accessgate watch`.
#[derive(Debug, Args)]
#[command(
    about = "Run a live session (checks, token refreshes, retries) and print its timeline until Ctrl-C",
    long_about = "Signs in and keeps the session alive the way an app would: the access token is \
refreshed ahead of expiry (each refresh re-checks access), transient failures are retried with \
jitter, access fails closed at the deadline and recovers by probing, a 401 signs out. Every event is \
printed as it happens, until Ctrl-C (exit 0) or until the session ends because the server rejected \
the token (exit 3).\n\n\
Tokens come either from --token/--refresh-token (any backend speaking the contract), or, against \
the reference backend (`accessgate serve`), from its control surface with --issue-user: the CLI \
calls BASE_URL/_control/token?user=U&expires_in=<--token-lifetime> and signs in with the pair. \
Then steer the backend from another terminal with curl (see `accessgate serve`) and watch the gate \
react. --recheck-every makes the app ask for a re-check periodically, so faults show up between \
refreshes.",
    after_help = "Examples:\n  \
accessgate serve --write-ca /tmp/ca.pem          # in one terminal\n  \
accessgate watch --url https://localhost:8443 --ca /tmp/ca.pem --issue-user alice --recheck-every 2s\n  \
curl 'http://127.0.0.1:8080/_control/fault?endpoint=all&fault=status&code=503&for_ms=8000'\n  \
accessgate watch --url https://api.example.com --token \"$AT\" --refresh-token \"$RT\" --expires-in 50m"
)]
pub struct WatchArgs {
    /// Base URL of the backend; the check and token paths are appended to it.
    #[arg(long, value_name = "BASE_URL")]
    pub url: String,
    /// Reference backend only: obtain a token pair for USER from its control surface.
    #[arg(long, value_name = "USER", conflicts_with_all = ["token", "refresh_token"], required_unless_present = "token")]
    pub issue_user: Option<String>,
    /// Lifetime of the tokens issued with --issue-user (and of their refreshed successors).
    #[arg(long, default_value = "90s", value_parser = parse_duration, value_name = "DUR", requires = "issue_user")]
    pub token_lifetime: Duration,
    /// Access token to sign in with.
    #[arg(long, value_name = "T", requires = "refresh_token")]
    pub token: Option<String>,
    /// Refresh token that goes with --token.
    #[arg(long, value_name = "R")]
    pub refresh_token: Option<String>,
    /// Remaining lifetime of --token.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DUR")]
    pub expires_in: Duration,
    /// Path of the check endpoint.
    #[arg(long, default_value = accessgate_std::DEFAULT_CHECK_PATH, value_name = "PATH")]
    pub check_path: String,
    /// Path of the token endpoint.
    #[arg(long, default_value = accessgate_std::DEFAULT_TOKEN_PATH, value_name = "PATH")]
    pub token_path: String,
    /// OAuth client_id sent with refreshes.
    #[arg(long, default_value = accessgate_std::DEFAULT_CLIENT_ID, value_name = "ID")]
    pub client_id: String,
    /// Extra trusted CA certificate(s), PEM file (e.g. written by `serve --write-ca`).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Trust only --ca, not the operating system's root store.
    #[arg(long, requires = "ca")]
    pub no_system_roots: bool,
    /// Per-attempt timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// Fail-closed budget, counted from the first transient failure.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DUR")]
    pub budget: Duration,
    /// How many retries a run of transient failures gets before failing closed (R6), 1 to 8.
    /// Default: all 8 (7 stratified over the spread window, the last in the final window).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub retries: Option<u16>,
    /// Refresh the access token this long before it expires.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub refresh_skew: Duration,
    /// Ask for a re-check this often (as an app might on resume), at least every 1s;
    /// default: only on refresh.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub recheck_every: Option<Duration>,
    /// Jitter seed (default: drawn from the OS).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print one JSON object per event instead of the timeline.
    #[arg(long)]
    pub json: bool,
    /// While watching, serve `GET /status` (JSON) and `GET /metrics` (Prometheus text) on
    /// ADDR, e.g. 127.0.0.1:9464; port 0 picks a free port. The address is printed on stderr.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Colour the timeline.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Check the flags (URLs, tokens, --ca, timings) and exit 0 without sending anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// A token pair from the reference backend's control surface.
async fn issue(args: &WatchArgs, user: &str, ca_pem: Option<&str>) -> Result<Tokens, CliError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(!args.no_system_roots);
    if let Some(pem) = ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| CliError::Usage(format!("--ca: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| {
        // The builder's only command-line input is the CA.
        CliError::Usage(format!("--ca: the TLS client refused it: {e}"))
    })?;
    let url = format!("{}/_control/token", args.url.trim_end_matches('/'));
    let secs = args.token_lifetime.as_secs().max(1);
    let answer = client
        .get(&url)
        .query(&[("user", user), ("expires_in", &secs.to_string())])
        .send()
        .await
        .map_err(|e| CliError::Runtime(format!("{url}: {}", issue_hint(&e, ca_pem.is_some()))))?;
    let status = answer.status();
    let body = answer
        .text()
        .await
        .map_err(|e| CliError::Runtime(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(CliError::Runtime(format!("{url}: HTTP {status}: {body}")));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| CliError::Runtime(format!("{url}: not a token answer ({e}): {body}")))?;
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError::Runtime(format!("{url}: no {k} in {body}")))
    };
    Ok(Tokens::new(
        field("access_token")?,
        field("refresh_token")?,
        Duration::from_secs(secs),
    ))
}

/// Builds the adapter configuration; every refusal names its flag (issue 14).
fn config(args: &WatchArgs) -> Result<GateClientConfig, CliError> {
    check_url("--url", &args.url).map_err(CliError::Usage)?;
    for (flag, path) in [
        ("--check-path", &args.check_path),
        ("--token-path", &args.token_path),
    ] {
        if !path.starts_with('/') {
            return Err(CliError::Usage(format!(
                "{flag} {path:?} must start with / (it is appended to --url)"
            )));
        }
    }
    if let (Some(t), Some(r)) = (&args.token, &args.refresh_token) {
        check_token("--token", t, DEFAULT_TOKEN_CAPACITY).map_err(CliError::Usage)?;
        check_token("--refresh-token", r, DEFAULT_TOKEN_CAPACITY).map_err(CliError::Usage)?;
    }
    let mut cfg = GateClientConfig::new(&args.url);
    let base = args.url.trim_end_matches('/');
    cfg.check_url = format!("{base}{}", args.check_path);
    cfg.token_url = format!("{base}{}", args.token_path);
    // The adapter refuses a URL the device would refuse (accessgate::check_url); when --url
    // alone is fine, the path appended to it is what broke it: name that flag.
    if accessgate::check_url(&args.url).is_ok() {
        for (flag, path, url) in [
            ("--check-path", &args.check_path, &cfg.check_url),
            ("--token-path", &args.token_path, &cfg.token_url),
        ] {
            if let Err(problem) = accessgate::check_url(url) {
                return Err(CliError::Usage(format!(
                    "{flag} {path:?}: the URL {url:?} {problem}"
                )));
            }
        }
    }
    cfg.client_id = args.client_id.clone();
    if let Some(path) = &args.ca {
        cfg.extra_ca_pem = Some(read_ca(path)?);
    }
    cfg.system_roots = !args.no_system_roots;
    cfg.seed = args.seed;
    CheckTiming {
        timeout: args.timeout,
        budget: args.budget,
        retry_spread: None,
        final_window: None,
        retries: args.retries,
    }
    .apply(&mut cfg.session)
    .map_err(CliError::Usage)?;
    cfg.session.refresh_skew = to_core(args.refresh_skew);
    if let Some(every) = args.recheck_every {
        if every < MIN_RECHECK_EVERY {
            return Err(CliError::Usage(format!(
                "--recheck-every {} is too fast: at least {} (the re-check rate limit watch allows)",
                humantime::format_duration(every),
                humantime::format_duration(MIN_RECHECK_EVERY)
            )));
        }
        // The gate rate-limits app re-checks (default 5 s); allow the asked-for pace.
        let g = &mut cfg.session.gate;
        g.min_recheck_interval = g.min_recheck_interval.min(to_core(every));
    }
    cfg.session
        .validate()
        .map_err(|e| CliError::Usage(format!("invalid timing: {e}")))?;
    Ok(cfg)
}

/// What went wrong issuing tokens, and what to do about it (R13 detail, issue 14).
fn issue_hint(e: &reqwest::Error, have_ca: bool) -> String {
    let (_, detail) = accessgate_std::transport_failure(e);
    match detail {
        FailureDetail::Tls(TlsFailure::UnknownIssuer) if !have_ca => format!(
            "{detail}: the server's certificate is not signed by a CA this machine trusts; pass \
             --ca with the CA that signed it (`accessgate serve --write-ca FILE` writes the \
             reference backend's)"
        ),
        FailureDetail::Tls(t) => format!("TLS handshake failed: {t}"),
        FailureDetail::Net(NetFailure::Refused | NetFailure::Unreachable | NetFailure::DnsFailed) => {
            format!("{detail} (is `accessgate serve` running there?)")
        }
        FailureDetail::None => e.to_string(),
        d => format!("{d}: {e}"),
    }
}

/// Runs the session until Ctrl-C (exit 0) or until the server ends it (exit 3).
pub async fn run(args: WatchArgs) -> Result<u8, CliError> {
    let cfg = config(&args)?;
    let ca_pem = cfg.extra_ca_pem.clone();
    let check_url = cfg.check_url.clone();
    let token_url = cfg.token_url.clone();

    // Spawned before any request: the adapter checks the URLs and the CA first.
    let gate = spawn(cfg, args.ca.as_deref())?;
    if args.dry_run {
        gate.shutdown().await;
        return Ok(0);
    }
    let _exporter = crate::export::listen(&gate, args.listen).await?; // `--listen` (export.rs)
    let tokens = match (&args.issue_user, &args.token, &args.refresh_token) {
        (Some(user), _, _) => issue(&args, user, ca_pem.as_deref()).await?,
        (None, Some(t), Some(r)) => Tokens::new(t.clone(), r.clone(), args.expires_in),
        _ => {
            return Err(CliError::Usage(
                "give --issue-user, or --token and --refresh-token".into(),
            ))
        }
    };
    let output = if args.json { Output::Json } else { Output::Timeline };
    let mut obs = Observer::new(&gate, output, args.color.enabled());
    obs.say(&format!("watching {check_url}"));
    obs.say(&format!("  refreshing at {token_url}; Ctrl-C to stop"));
    obs.say(&obs.timeline.header());
    gate.sign_in(tokens).await.map_err(gate_error)?;

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut next_recheck = args.recheck_every.map(|d| tokio::time::Instant::now() + d);
    // `recheck()` returns after its check, which runs in this task: it is polled beside the
    // timeline and Ctrl-C, so events keep printing while it runs.
    let mut rechecking = None;
    let code = loop {
        let slice = match next_recheck {
            Some(at) => at.saturating_duration_since(tokio::time::Instant::now()),
            None => Duration::from_secs(3600),
        };
        let recheck = async {
            match rechecking.as_mut() {
                Some(recheck) => recheck.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut ctrl_c => {
                r.map_err(|e| CliError::Runtime(format!("cannot wait for Ctrl-C: {e}")))?;
                obs.pump();
                break 0;
            }
            ended = obs.wait_until(slice, |o| !o.status().signed_in) => {
                if ended {
                    break 3;
                }
            }
            answer = recheck => {
                rechecking = None;
                match answer {
                    Ok(()) | Err(GateError::RateLimited { .. }) => {}
                    Err(e) => return Err(gate_error(e)),
                }
            }
        }
        if let (Some(at), Some(every)) = (next_recheck, args.recheck_every) {
            if tokio::time::Instant::now() >= at {
                // While one still runs, a new one would be a no-op anyway.
                if rechecking.is_none() {
                    rechecking = Some(Box::pin(gate.recheck()));
                }
                next_recheck = Some(tokio::time::Instant::now() + every);
            }
        }
    };
    let snap = obs.snapshot();
    let c = snap.counters;
    let last = snap.status.last_failure.map_or(String::new(), |l| {
        format!(
            "; last failure at {}: {} ({})",
            crate::timeline::secs(l.at, accessgate::Instant::ZERO),
            l.class.name(),
            l.detail
        )
    });
    obs.say(&format!(
        "{}: attempts {}, grants {}, denials {}, transient failures {}, failed closed {}, recoveries {}, refreshes {} ({} failed){last}",
        if code == 3 { "signed out by the server" } else { "stopped" },
        c.attempts,
        c.grants,
        c.denials,
        c.transient_total(),
        c.failed_closed,
        c.recoveries,
        c.refreshes,
        c.refresh_failures
    ));
    if output == Output::Json {
        crate::util::out!("{}", summary_json(code, &snap));
    }
    gate.shutdown().await;
    Ok(code)
}

/// The last line of `watch --json` (issue 12): how the session ended, its counters and its
/// last failure with the R13 detail. Keys in a fixed order, `"final":true` first, like the
/// final line of `check --json`.
pub fn summary_json(code: u8, snap: &accessgate_std::Snapshot) -> String {
    let st = &snap.status;
    let c = &snap.counters;
    let ms = |t: accessgate::Instant| t.saturating_duration_since(accessgate::Instant::ZERO).as_millis();
    let last = match st.last_failure {
        Some(l) => format!(
            "{{\"class\":\"{}\",\"detail\":{},\"t_ms\":{}}}",
            l.class.name(),
            serde_json::Value::String(l.detail.to_string()),
            ms(l.at)
        ),
        None => "null".to_string(),
    };
    format!(
        "{{\"final\":true,\"command\":\"watch\",\"ended\":\"{}\",\"exit_code\":{code},\"access\":\"{}\",\"cause\":{},\"signed_in\":{},\"attempts\":{},\"grants\":{},\"denials\":{},\"transient_failures\":{},\"failed_closed\":{},\"recoveries\":{},\"refreshes\":{},\"refresh_failures\":{},\"stale_dropped\":{},\"elapsed_ms\":{},\"last_failure\":{last}}}",
        if code == 3 { "signed_out" } else { "interrupted" },
        accessgate::access_name(st.access),
        st.cause.map_or("null".to_string(), |c| format!("\"{}\"", c.name())),
        st.signed_in,
        c.attempts,
        c.grants,
        c.denials,
        c.transient_total(),
        c.failed_closed,
        c.recoveries,
        c.refreshes,
        c.refresh_failures,
        c.stale_dropped,
        ms(snap.now),
    )
}
