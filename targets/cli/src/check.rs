//! `accessgate check`: one session start with full gate semantics, as a process exit code.

use crate::util::out;
use std::path::PathBuf;
use std::time::Duration;

use accessgate::{write_final_json, Verdict, DEFAULT_TOKEN_CAPACITY};
use accessgate_args::{check_token, check_url, CheckTiming};
use accessgate_std::{AccessGate, GateClientConfig, GateError, Tokens};
use clap::Args;

use crate::observe::{Observer, Output};
use crate::util::{parse_duration, CliError, ColorChoice};

/// Options of `accessgate check`.
#[derive(Debug, Args)]
#[command(
    about = "One access check with full gate semantics; the verdict is the exit code",
    long_about = "One session start with full gate semantics: an immediate check, then jittered \
retries on transient failures (connect/TLS errors, timeouts, 403, 429, 5xx, a 200 whose body is \
not {\"has_access\": <bool>}) until a definitive answer arrives or the fail-closed budget runs \
out.\n\n\
Exit codes:\n  \
0   granted: 200 {\"has_access\": true}\n  \
1   denied by the server: 200 {\"has_access\": false}\n  \
2   failed closed: no definitive answer within the budget\n  \
3   unauthorized: the server answered 401\n  \
64  usage error (bad flags, unreadable or invalid --ca, invalid URL or token); the message \
names the flag\n  \
70  internal error",
    after_help = "Examples:\n  \
accessgate check --url http://127.0.0.1:8080/api/code/invites/check-access/ --token at_123\n  \
accessgate check --url https://localhost:8443/api/code/invites/check-access/ --ca ca.pem \
--token at_123 --budget 10s --json"
)]
pub struct CheckArgs {
    /// Full URL of the check endpoint (http or https).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Access token, sent as `Authorization: Bearer <T>`.
    #[arg(long, value_name = "T", env = "ACCESSGATE_TOKEN", hide_env_values = true)]
    pub token: String,
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
    /// Window after the first failure over which retries 1..7 are stratified (R6). Default:
    /// 70 s, or 7/11 of `budget - timeout` when that is shorter.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub retry_spread: Option<Duration>,
    /// Window of the last retry, ending one timeout before the deadline (R6). Default: 10 s,
    /// or 1/11 of `budget - timeout` when that is shorter.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub final_window: Option<Duration>,
    /// How many retries a run of transient failures gets before failing closed (R6), 1 to 8.
    /// Default: all 8 (7 stratified over the spread window, the last in the final window).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub retries: Option<u16>,
    /// Jitter seed (default: drawn from the OS; set it only for reproducible runs).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print one JSON object per event and a final status line instead of the timeline.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only the verdict.
    #[arg(long, short)]
    pub quiet: bool,
    /// Colour the timeline.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Check the flags (URL, token, --ca, timings) and exit 0 without sending anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Builds the adapter configuration of a check; every refusal names its flag (issue 14).
fn config(args: &CheckArgs) -> Result<GateClientConfig, CliError> {
    check_url("--url", &args.url).map_err(CliError::Usage)?;
    check_token("--token", &args.token, DEFAULT_TOKEN_CAPACITY).map_err(CliError::Usage)?;
    let mut cfg = GateClientConfig::new("http://unused.invalid");
    cfg.check_url = args.url.clone();
    // Never called: the session is signed in with a token that outlives the check.
    cfg.token_url = args.url.clone();
    if let Some(path) = &args.ca {
        cfg.extra_ca_pem = Some(read_ca(path)?);
        cfg.system_roots = !args.no_system_roots;
    }
    cfg.seed = args.seed;
    timing(args).apply(&mut cfg.session).map_err(CliError::Usage)?;
    Ok(cfg)
}

fn timing(args: &CheckArgs) -> CheckTiming {
    CheckTiming {
        timeout: args.timeout,
        budget: args.budget,
        retry_spread: args.retry_spread,
        final_window: args.final_window,
        retries: args.retries,
    }
}

/// Reads a `--ca` file (a directory, a missing or unreadable file: usage errors).
pub fn read_ca(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("--ca {}: cannot read it: {e}", path.display())))
}

/// Starts the gate; a configuration the adapter refuses is a usage error naming the flag.
pub fn spawn(cfg: GateClientConfig, ca: Option<&std::path::Path>) -> Result<AccessGate, CliError> {
    let ca_name = || ca.map_or_else(String::new, |p| p.display().to_string());
    AccessGate::spawn(cfg).map_err(|e| match e {
        GateError::Certificate(m) => CliError::Usage(format!("--ca {}: {m}", ca_name())),
        // The only input the HTTP client builder takes from the command line is the CA.
        GateError::Http(e) if ca.is_some() => {
            CliError::Usage(format!("--ca {}: the TLS client refused it: {e}", ca_name()))
        }
        GateError::InvalidUrl { url, reason } => {
            CliError::Usage(format!("--url: invalid URL {url:?}: {reason}"))
        }
        other => gate_error(other),
    })
}

/// Maps an adapter error to a CLI error: bad input is a usage error.
pub fn gate_error(e: GateError) -> CliError {
    match e {
        GateError::Config(_)
        | GateError::InvalidUrl { .. }
        | GateError::Certificate(_)
        | GateError::InvalidToken(_) => CliError::Usage(e.to_string()),
        other => CliError::Runtime(other.to_string()),
    }
}

/// A next step when the last failure points at the command line (R13 detail).
fn hint(args: &CheckArgs, status: &accessgate::Status) -> Option<String> {
    use accessgate::{FailureDetail, TlsFailure};
    match status.last_failure?.detail {
        FailureDetail::Tls(TlsFailure::UnknownIssuer) if args.ca.is_none() => Some(
            "hint: the server's certificate is not signed by a CA this machine trusts; pass --ca \
             with the CA that signed it (`accessgate serve --write-ca FILE` writes the reference \
             backend's)"
                .into(),
        ),
        FailureDetail::Tls(TlsFailure::UnknownIssuer) => {
            Some("hint: --ca did not sign the server's certificate".into())
        }
        _ => None,
    }
}

/// Runs the check and returns the verdict's exit code.
pub async fn run(args: CheckArgs) -> Result<u8, CliError> {
    let cfg = config(&args)?;
    let gate = spawn(cfg, args.ca.as_deref())?;
    if args.dry_run {
        gate.shutdown().await;
        return Ok(0);
    }
    let output = if args.json {
        Output::Json
    } else if args.quiet {
        Output::Quiet
    } else {
        Output::Timeline
    };
    let mut obs = Observer::new(&gate, output, args.color.enabled());
    if output == Output::Timeline {
        out!("checking {}", args.url);
        out!("{}", obs.timeline.header());
    }
    // The gate decides within the first attempt's timeout plus the budget (R5).
    let bound = timing(&args).decision_bound(Duration::from_secs(5));
    // The refresh machinery never runs: the token "expires" long after the decision.
    let lifetime = bound.saturating_mul(2).max(Duration::from_secs(30 * 24 * 3600));
    gate.sign_in(Tokens::new(args.token.clone(), "unused", lifetime))
        .await
        .map_err(|e| match e {
            GateError::InvalidToken(m) => CliError::Usage(format!("--token: {m}")),
            other => gate_error(other),
        })?;
    obs.wait_until(bound, |o| Verdict::of(&o.status()).is_some())
        .await;
    let snap = obs.snapshot();
    let verdict = Verdict::of(&snap.status);
    let code = verdict.map_or(Verdict::FailedClosed.exit_code(), Verdict::exit_code);
    match output {
        Output::Json => {
            let mut line = String::new();
            // Writing into a String cannot fail.
            let _ = write_final_json(
                &mut line,
                verdict,
                &snap.status,
                &snap.counters,
                snap.now,
                accessgate::Instant::ZERO,
            );
            out!("{line}");
        }
        Output::Timeline | Output::Quiet => {
            let name = verdict.map_or("undecided (treated as failed closed)", Verdict::name);
            let text = format!(
                "verdict: {name} (exit {code}) after {} attempt(s), {}",
                snap.counters.attempts,
                crate::timeline::secs(snap.now, accessgate::Instant::ZERO)
            );
            out!(
                "{}",
                if code == 0 {
                    obs.timeline.ok(&text)
                } else {
                    obs.timeline.bad(&text)
                }
            );
            if let Some(hint) = hint(&args, &snap.status) {
                out!("{hint}");
            }
        }
    }
    gate.shutdown().await;
    Ok(code)
}
