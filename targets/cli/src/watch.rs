//! `accessgate watch`: a live session (checks, refreshes, retries) printed as a timeline until
//! Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use accessgate_std::{AccessGate, GateClientConfig, GateError, Tokens};
use clap::Args;

use crate::check::gate_error;
use crate::observe::{Observer, Output};
use crate::util::{parse_duration, to_core, CliError, ColorChoice};

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
    /// Refresh the access token this long before it expires.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub refresh_skew: Duration,
    /// Ask for a re-check this often (as an app might on resume); default: only on refresh.
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
    let client = builder
        .build()
        .map_err(|e| CliError::Runtime(format!("HTTP client: {e}")))?;
    let url = format!("{}/_control/token", args.url.trim_end_matches('/'));
    let secs = args.token_lifetime.as_secs().max(1);
    let answer = client
        .get(&url)
        .query(&[("user", user), ("expires_in", &secs.to_string())])
        .send()
        .await
        .map_err(|e| CliError::Runtime(format!("{url}: {e} (is `accessgate serve` running there?)")))?;
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

/// Runs the session until Ctrl-C (exit 0) or until the server ends it (exit 3).
pub async fn run(args: WatchArgs) -> Result<u8, CliError> {
    let mut cfg = GateClientConfig::new(&args.url);
    let base = args.url.trim_end_matches('/');
    cfg.check_url = format!("{base}{}", args.check_path);
    cfg.token_url = format!("{base}{}", args.token_path);
    cfg.client_id = args.client_id.clone();
    let ca_pem = match &args.ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read --ca {}: {e}", path.display())))?,
        ),
        None => None,
    };
    cfg.extra_ca_pem = ca_pem.clone();
    cfg.system_roots = !args.no_system_roots;
    cfg.seed = args.seed;
    cfg.session.gate.attempt_timeout = to_core(args.timeout);
    cfg.session.gate.budget = to_core(args.budget);
    cfg.session.refresh_skew = to_core(args.refresh_skew);
    if let Some(every) = args.recheck_every {
        // The gate rate-limits app re-checks (default 5 s); allow the asked-for pace.
        let g = &mut cfg.session.gate;
        g.min_recheck_interval = g.min_recheck_interval.min(to_core(every));
    }
    cfg.session
        .validate()
        .map_err(|e| CliError::Usage(format!("invalid timing: {e}")))?;
    let check_url = cfg.check_url.clone();
    let token_url = cfg.token_url.clone();

    let tokens = match (&args.issue_user, &args.token, &args.refresh_token) {
        (Some(user), _, _) => issue(&args, user, ca_pem.as_deref()).await?,
        (None, Some(t), Some(r)) => Tokens::new(t.clone(), r.clone(), args.expires_in),
        _ => {
            return Err(CliError::Usage(
                "give --issue-user, or --token and --refresh-token".into(),
            ))
        }
    };
    let gate = AccessGate::spawn(cfg).map_err(gate_error)?;
    let _exporter = crate::export::listen(&gate, args.listen).await?; // `--listen` (export.rs)
    let output = if args.json { Output::Json } else { Output::Timeline };
    let mut obs = Observer::new(&gate, output, args.color.enabled());
    obs.say(&format!("watching {check_url}"));
    obs.say(&format!("  refreshing at {token_url}; Ctrl-C to stop"));
    obs.say(&obs.timeline.header());
    gate.sign_in(tokens).await.map_err(gate_error)?;

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut next_recheck = args.recheck_every.map(|d| tokio::time::Instant::now() + d);
    let code = loop {
        let slice = match next_recheck {
            Some(at) => at.saturating_duration_since(tokio::time::Instant::now()),
            None => Duration::from_secs(3600),
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
        }
        if let (Some(at), Some(every)) = (next_recheck, args.recheck_every) {
            if tokio::time::Instant::now() >= at {
                match gate.recheck().await {
                    Ok(()) | Err(GateError::RateLimited { .. }) => {}
                    Err(e) => return Err(gate_error(e)),
                }
                next_recheck = Some(tokio::time::Instant::now() + every);
            }
        }
    };
    let c = obs.snapshot().counters;
    obs.say(&format!(
        "{}: attempts {}, grants {}, denials {}, transient failures {}, failed closed {}, recoveries {}, refreshes {} ({} failed)",
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
    gate.shutdown().await;
    Ok(code)
}
