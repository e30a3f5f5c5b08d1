//! # `accessgate`: the command line
//!
//! One binary around the accessgate library (`docs/behaviour.md` in the repository, rules R1–R14): the
//! reference backend, a one-shot check for scripts, a live session viewer, the fault-injection
//! demo, and the fleet simulator.
//!
//! | command | what it does |
//! |---|---|
//! | `accessgate demo` | starts the reference backend in-process (HTTP + HTTPS with a fresh test CA) and a real gate against it over HTTPS, time-compressed, and plays twelve chapters with a live timeline: sign-in, token refresh, short outage (access held, jittered retries), recovery, long outage (fails closed at the deadline), recovery by probing, server-side revocation (denied at once), captive-portal 200 (held, not denied), 401 (signed out), logout while a token refresh is in flight (waiting callers rejected, the late answer dropped), a 403 that triggers one early refresh, a retry loop superseded by a refresh (its late answer dropped as stale). Every chapter ends with an assertion; exit 0 only if all twelve hold, so the demo is also an end-to-end test. About 30 s. |
//! | `accessgate serve` | the reference backend on its own until Ctrl-C (`--bind`, `--http-port 8080`, `--https-port 8443`, `--no-https`, `--write-ca FILE`, `--user U` to print a token pair, `--token-lifetime`, `--client-id`); prints the URLs and the control-surface help (`/_control/...`, steer it with curl). |
//! | `accessgate simulate SCENARIO` | the fleet simulator of `accessgate-fleet` (its `FleetArgs`, flattened): the real gate on every simulated device, beside peer retry policies. |
//!
//! Durations are written like `500ms`, `10s`, `1m30s` (humantime, the same parser for every
//! subcommand; a bare number is refused, and so is anything above 365 days). Log lines go to
//! stderr, warnings only unless `RUST_LOG` says otherwise (`RUST_LOG=debug`).
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | `check`: granted; other commands: success (`serve`/`watch` after Ctrl-C, `demo` when every chapter held) |
//! | 1 | `check`: denied by the server (`200 {"has_access": false}`); `demo`: a chapter ended in the wrong state |
//! | 2 | `check`: failed closed (no definitive answer within the budget) |
//! | 3 | `check`: unauthorized (401); `watch`: the server ended the session |
//! | 64 | usage error: bad flags (every clap error), an unreadable or invalid `--ca`, an invalid URL, token or timing |
//! | 70 | internal error (cannot bind, cannot start the runtime) |
//!
//! `--help` and `--version` exit 0.
//!
//! ## `check --json`
//!
//! One JSON object per line per event, written by `accessgate::write_event_json` (times in ms
//! since the gate started), then one final line by `accessgate::write_final_json`:
//!
//! ```text
//! {"t_ms":0,"event":"check_started","generation":1,"attempt":0}
//! {"t_ms":3,"event":"access_changed","from":"unknown","to":"granted","cause":"server_granted"}
//! {"final":true,"verdict":"granted","exit_code":0,"access":"granted","cause":"server_granted","signed_in":true,"attempts":1,"transient_failures":0,"stale_dropped":0,"elapsed_ms":3}
//! ```
//!
//! The same functions render the embassy build's output, so both are byte-identical for the
//! same events.
//!
//! ## The timeline
//!
//! `check`, `watch` and `demo` print one line per event: time since the gate started, the state
//! the app would render (`checking`, `granted`, `granted (held)` while a transient failure is
//! retried before the deadline, `denied`, `denied (probing)` after failing closed, `signed
//! out`), the kind of event, and details: generation, attempt, failure class, when the next try
//! starts and when the gate fails closed. A line `answer` is added when a check answered
//! definitively without changing access (the core emits no event for that). Colours only when
//! stdout is a terminal and `NO_COLOR` is unset (`--color always|never` overrides).
//!
//! ## Layout
//!
//! - `serve.rs`, `check.rs`, `watch.rs`, `demo.rs`, `simulate.rs`: one module per command.
//! - `observe.rs`: follows a gate's event broadcast and status watch in order (events of a
//!   driver step before its snapshot), for waiting on conditions while printing.
//! - `export.rs`: the `watch --listen` HTTP server (`/status`, `/metrics`).
//! - `timeline.rs`: renders the timeline lines. `util.rs`: durations, errors, colours.

mod check;
mod demo;
mod export;
mod observe;
mod serve;
mod simulate;
mod timeline;
mod util;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use util::{CliError, EXIT_USAGE};

/// Decide whether a signed-in user/device may use a product, correctly under network faults.
#[derive(Debug, Parser)]
#[command(
    name = "accessgate",
    version,
    propagate_version = true,
    long_about = "accessgate decides whether a signed-in user or device may use a product, and keeps \
deciding correctly when the network does not cooperate: it holds the last answer through transient \
failures, retries with jitter, fails closed at a fixed deadline, recovers by probing, and signs out \
on 401.\n\n\
Start with `accessgate demo`: a real gate against an in-process backend, with faults injected on cue.",
    after_help = "Exit codes: 0 ok/granted, 1 denied (check) or demo failure, 2 failed closed (check), \
3 unauthorized, 64 usage error, 70 internal error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Listed in the order a newcomer needs them.
    Demo(demo::DemoArgs),
    Serve(serve::ServeArgs),
    Check(check::CheckArgs),
    Watch(watch::WatchArgs),
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
    // R13: the core's, the adapter's and the backend's `log` lines; quiet unless RUST_LOG asks.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are answers, not errors.
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("accessgate: cannot start the async runtime: {e}");
            return ExitCode::from(util::EXIT_RUNTIME);
        }
    };
    let result: Result<u8, CliError> = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(a).await,
            Command::Check(a) => check::run(a).await,
            Command::Watch(a) => watch::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            // CPU-bound, with its own worker threads; `block_on` runs it on this thread.
            Command::Simulate(a) => simulate::run(a),
        }
    });
    finish(result)
}

fn finish(result: Result<u8, CliError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("accessgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
