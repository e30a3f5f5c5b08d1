//! # accessgate-args: flag checks shared by every command line
//!
//! `accessgate` (targets/cli), `accessgate-embassy` (targets/embassy-host) and the fleet
//! simulator (`accessgate simulate`, the `fleet` binary) read durations, URLs and timings
//! from their flags. This crate is the one place that turns those strings into values, so
//! every command accepts the same syntax and refuses bad input the same way: as a usage
//! error (exit 64) whose message names the flag, never as a panic further down (issue 14).
//!
//! - [`parse_duration`]: humantime syntax (`500ms`, `10s`, `1m30s`, `2h`), bounded to
//!   [`MIN_DURATION`]..=[`MAX_DURATION`] (or zero), a bare number refused. Use it as clap's
//!   `value_parser`; clap adds the flag's name to the message.
//! - [`CheckTiming`]: `--timeout`, `--budget`, `--retry-spread`, `--final-window`, `--retries`
//!   into the core's [`SessionConfig`], each refusal naming the flag(s) at fault.
//! - [`check_url`]: the scheme and host of `--url`, with a hint when the scheme is missing.
//! - [`check_token`]: a bearer token that fits a header and the session's storage.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Duration;

use accessgate::SessionConfig;

/// The longest duration any flag takes: one year. Longer values are typing mistakes, and
/// refusing them here keeps every `now + duration` of the drivers far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest non-zero duration: the core counts time in whole microseconds, so `2ns`
/// would silently become zero.
pub const MIN_DURATION: Duration = Duration::from_micros(1);

/// Parses a duration flag: `500ms`, `10s`, `1m30s`, `1m 30s`, `2h` (humantime syntax).
///
/// Refused, with a message that says why: a bare number (`90`: seconds or milliseconds?),
/// anything humantime cannot read, a non-zero value below [`MIN_DURATION`], a value above
/// [`MAX_DURATION`]. Zero (`0s`) is accepted here; flags that need more say so themselves.
///
/// ```
/// use accessgate_args::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("90").unwrap_err().contains("no unit"));
/// assert!(parse_duration("18446744073709551615s").unwrap_err().contains("too long"));
/// assert!(parse_duration("2ns").unwrap_err().contains("too short"));
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{t:?} has no unit: write {t}s, {t}ms or {t}m (examples: 500ms, 10s, 1m30s)"
        ));
    }
    let d = humantime::parse_duration(t).map_err(|e| format!("{e} (examples: 500ms, 10s, 1m30s)"))?;
    if d > MAX_DURATION {
        return Err(format!("{t} is too long: at most 365 days"));
    }
    if !d.is_zero() && d < MIN_DURATION {
        return Err(format!(
            "{t} is too short: the gate counts whole microseconds (at least 1us)"
        ));
    }
    Ok(d)
}

/// A std duration as the core's duration (whole microseconds, saturating).
pub fn to_core(d: Duration) -> accessgate::Duration {
    d.into() // the core's conversion: whole microseconds, saturating
}

/// A duration for messages (`1m 30s`).
fn show(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// The retry schedule capacity of the sessions both binaries build: the core's default
/// `Session<8>` / `Gate<8>` (the std adapter's session and the embassy host driver's), so the
/// most `--retries` can ask for.
pub const RETRY_CAPACITY: u16 = 8;

/// The timing flags of `check` (both binaries) and `watch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckTiming {
    /// `--timeout`: per-attempt timeout (R4).
    pub timeout: Duration,
    /// `--budget`: fail-closed budget (R5).
    pub budget: Duration,
    /// `--retry-spread`, when given: the window the stratified retries are spread over (R6).
    /// `None` fits the default shape to the budget ([`accessgate::Retries::fitted`]).
    pub retry_spread: Option<Duration>,
    /// `--final-window`, when given: the window of the last retry, ending one attempt timeout
    /// before the deadline (R6). `None` fits it to the budget.
    pub final_window: Option<Duration>,
    /// `--retries`, when given: how many retries a run of failures gets before failing
    /// closed (R6), 1 to [`RETRY_CAPACITY`]. `None` uses every slot of the schedule.
    pub retries: Option<u16>,
}

impl CheckTiming {
    /// Writes the flags into `cfg` and checks them, naming the flag(s) at fault:
    /// zero timeout or budget, a timeout not below the budget (R6: the last attempt must be
    /// able to finish before the deadline), a zero spread window, windows that do not fit the
    /// budget. The core's own validation runs last, for anything these checks do not cover.
    ///
    /// ```
    /// use accessgate_args::CheckTiming;
    /// use std::time::Duration;
    /// let mut cfg = accessgate::SessionConfig::DEFAULT;
    /// let t = CheckTiming {
    ///     timeout: Duration::from_secs(10),
    ///     budget: Duration::from_secs(120),
    ///     retry_spread: Some(Duration::from_secs(100)),
    ///     final_window: Some(Duration::from_secs(20)),
    ///     retries: None,
    /// };
    /// let e = t.apply(&mut cfg).unwrap_err();
    /// assert!(e.contains("--retry-spread") && e.contains("--final-window"), "{e}");
    /// let three = CheckTiming { retry_spread: None, final_window: None, retries: Some(3), ..t };
    /// three.apply(&mut cfg).unwrap();
    /// assert_eq!(cfg.gate.retry.count, 3);
    /// let nine = CheckTiming { retries: Some(9), ..three };
    /// assert!(nine.apply(&mut cfg).unwrap_err().contains("--retries 9"));
    /// ```
    pub fn apply(&self, cfg: &mut SessionConfig) -> Result<(), String> {
        let CheckTiming {
            timeout,
            budget,
            retry_spread,
            final_window,
            retries,
        } = *self;
        if timeout.is_zero() {
            return Err("--timeout must be longer than zero".into());
        }
        if budget.is_zero() {
            return Err("--budget must be longer than zero".into());
        }
        if timeout >= budget {
            return Err(format!(
                "--timeout {} must be shorter than --budget {}: the last attempt has to be able to \
                 finish before the fail-closed deadline (R6)",
                show(timeout),
                show(budget)
            ));
        }
        let g = &mut cfg.gate;
        g.attempt_timeout = to_core(timeout);
        g.budget = to_core(budget);
        let fitted = accessgate::Retries::fitted(g.budget, g.attempt_timeout);
        if retry_spread.is_some_and(|d| d.is_zero()) {
            return Err("--retry-spread must be longer than zero".into());
        }
        g.retry.spread = retry_spread.map_or(fitted.spread, to_core);
        g.retry.final_window = final_window.map_or(fitted.final_window, to_core);
        // R6: the count is the schedule's to hold; 0 would mean "every slot" to the core, so
        // the flag refuses it rather than silently meaning 8.
        g.retry.count = match retries {
            None => 0,
            Some(n @ 1..=RETRY_CAPACITY) => n,
            Some(0) => {
                return Err(format!(
                    "--retries 0: at least 1 (leave the flag out for all {RETRY_CAPACITY})"
                ))
            }
            Some(n) => {
                return Err(format!(
                    "--retries {n} is more than the retry schedule holds: at most {RETRY_CAPACITY}"
                ))
            }
        };
        let shown =
            |d: Option<Duration>| d.map_or_else(|| "(fitted default)".to_string(), |d| show(d).to_string());
        match cfg.validate() {
            Err(accessgate::ConfigError::SpreadWindowTooLong) => Err(format!(
                "--retry-spread {} plus --final-window {} must fit in --budget {} minus --timeout {} (R6)",
                shown(retry_spread),
                shown(final_window),
                show(budget),
                show(timeout)
            )),
            Err(accessgate::ConfigError::FinalWindowTooLong) => Err(format!(
                "--final-window {} must fit in --budget {} minus --timeout {} (R6)",
                shown(final_window),
                show(budget),
                show(timeout)
            )),
            Err(e) => Err(format!("invalid timing: {e}")),
            Ok(()) => Ok(()),
        }
    }

    /// How long a check can take at most: the first attempt's timeout plus the budget
    /// (R5), plus `slack`; saturating, so it never panics.
    pub fn decision_bound(&self, slack: Duration) -> Duration {
        self.timeout.saturating_add(self.budget).saturating_add(slack)
    }
}

/// Whether a URL flag uses https, after checking what a scheme check can: a scheme is
/// present (a missing one gets a suggestion), it is `http` or `https`, and a host follows.
/// The full parse is the adapter's.
///
/// ```
/// use accessgate_args::check_url;
/// assert_eq!(check_url("--url", "https://localhost:8443/x"), Ok(true));
/// let e = check_url("--url", "localhost:8080/x").unwrap_err();
/// assert!(e.contains("no scheme") && e.contains("http://localhost:8080/x"), "{e}");
/// ```
pub fn check_url(flag: &str, url: &str) -> Result<bool, String> {
    if url.trim().is_empty() {
        return Err(format!("{flag} is empty: give an http:// or https:// URL"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{flag} {url:?} has no scheme: write http://{url} or https://{url}"
        ));
    };
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(format!("{flag} {url:?}: scheme {scheme:?} is not http or https"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{flag} {url:?} has no host"));
    }
    Ok(https)
}

/// Checks a token flag the way the adapters will use it (`Authorization: Bearer <T>`):
/// not empty, printable ASCII without spaces (nothing that could break or inject a header),
/// at most `capacity` bytes (the session's token storage).
///
/// ```
/// use accessgate_args::check_token;
/// assert!(check_token("--token", "at_123", 64).is_ok());
/// assert!(check_token("--token", "a\r\nX-Evil: 1", 64).unwrap_err().contains("--token"));
/// ```
pub fn check_token(flag: &str, token: &str, capacity: usize) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!("{flag} is empty"));
    }
    // The core's rule (the session refuses the same tokens); this only names the culprit.
    if !accessgate::header_safe(token.as_bytes()) {
        let c = token.chars().find(|c| !c.is_ascii_graphic()).unwrap_or(' ');
        return Err(format!(
            "{flag} holds {c:?}: a bearer token is printable ASCII without spaces"
        ));
    }
    if token.len() > capacity {
        return Err(format!(
            "{flag} is {} bytes long: at most {capacity} fit the session's token storage",
            token.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(timeout: u64, budget: u64, spread: Option<u64>, fin: Option<u64>) -> CheckTiming {
        let ms = Duration::from_millis;
        CheckTiming {
            timeout: ms(timeout),
            budget: ms(budget),
            retry_spread: spread.map(ms),
            final_window: fin.map(ms),
            retries: None,
        }
    }

    #[test]
    fn durations_use_humantime_syntax_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1us"), Ok(Duration::from_micros(1)));
        for bare in ["90", "0", "1.5"] {
            let e = parse_duration(bare).unwrap_err();
            assert!(e.contains("no unit") && e.contains(&format!("{bare}s")), "{e}");
        }
        for junk in ["", "soon", "-1s", "1x", "s"] {
            assert!(parse_duration(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn durations_out_of_range_are_refused_not_wrapped() {
        for huge in ["18446744073709551615s", "1000000years", "366d", "999999999999h"] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("too long") || e.contains("overflow"), "{huge}: {e}");
        }
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        assert!(parse_duration("999ns").unwrap_err().contains("too short"));
    }

    #[test]
    fn timing_errors_name_the_flags() {
        let mut cfg = SessionConfig::DEFAULT;
        let cases = [
            (timing(0, 1000, None, None), vec!["--timeout"]),
            (timing(10, 0, None, None), vec!["--budget"]),
            (timing(1000, 1000, None, None), vec!["--timeout", "--budget"]),
            (timing(10, 1000, Some(0), None), vec!["--retry-spread"]),
            (
                timing(10, 1000, Some(900), Some(100)),
                vec!["--retry-spread 900ms", "--final-window 100ms", "--budget 1s"],
            ),
            // The fitted final window beside an explicit spread that leaves no room.
            (
                timing(10, 1000, Some(990), None),
                vec!["--retry-spread", "--final-window (fitted default)"],
            ),
            (timing(10, 1000, None, Some(995)), vec!["--final-window 995ms"]),
        ];
        for (t, needles) in cases {
            let e = t.apply(&mut cfg).unwrap_err();
            for n in needles {
                assert!(e.contains(n), "{t:?}: {e} lacks {n}");
            }
        }
        let ok = timing(300, 1000, Some(500), Some(100));
        ok.apply(&mut cfg).expect("valid");
        assert_eq!(cfg.gate.budget, accessgate::Duration::from_millis(1000));
        assert_eq!(cfg.gate.retry.spread, accessgate::Duration::from_millis(500));
        assert_eq!(
            cfg.gate.retry.final_window,
            accessgate::Duration::from_millis(100)
        );
    }

    #[test]
    fn retries_fit_the_schedule_the_binaries_build() {
        let mut cfg = SessionConfig::DEFAULT;
        let with = |n| CheckTiming {
            retries: n,
            ..timing(10_000, 120_000, None, None)
        };
        for (n, needle) in [(0, "--retries 0"), (9, "--retries 9"), (u16::MAX, "at most 8")] {
            let e = with(Some(n)).apply(&mut cfg).unwrap_err();
            assert!(e.contains(needle), "{n}: {e}");
        }
        for n in 1..=RETRY_CAPACITY {
            with(Some(n)).apply(&mut cfg).expect("within capacity");
            assert_eq!(cfg.gate.retry.count, n);
            // The core accepts it for the capacity the binaries use, and a session's streak
            // gets exactly that many retries.
            let session = accessgate::Session::<{ RETRY_CAPACITY as usize }>::new(cfg, 1);
            assert!(session.is_ok(), "{n}");
            assert_eq!(cfg.gate.retry.slots(RETRY_CAPACITY as usize), u32::from(n));
        }
        with(None).apply(&mut cfg).expect("default");
        assert_eq!(cfg.gate.retry.count, 0, "no flag: every slot");
        assert_eq!(cfg.gate.retry.slots(RETRY_CAPACITY as usize), 8);
    }

    #[test]
    fn decision_bound_saturates() {
        let t = CheckTiming {
            timeout: Duration::MAX,
            budget: Duration::MAX,
            retry_spread: None,
            final_window: None,
            retries: None,
        };
        assert_eq!(t.decision_bound(Duration::from_secs(5)), Duration::MAX);
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert_eq!(check_url("--url", "http://127.0.0.1:8080"), Ok(false));
        assert_eq!(check_url("--url", "HTTPS://localhost/x"), Ok(true));
        let e = check_url("--url", "127.0.0.1:8080").unwrap_err();
        assert!(
            e.contains("no scheme") && e.contains("http://127.0.0.1:8080"),
            "{e}"
        );
        assert!(check_url("--url", "ftp://x/")
            .unwrap_err()
            .contains("not http or https"));
        assert!(check_url("--url", "http:///x").unwrap_err().contains("no host"));
        assert!(check_url("--url", "http://:80/x")
            .unwrap_err()
            .contains("no host"));
        assert!(check_url("--url", "  ").unwrap_err().contains("empty"));
    }

    #[test]
    fn tokens_must_fit_a_header_and_the_session() {
        assert!(check_token("--token", "at_0123", 8).is_ok());
        for bad in ["", "a b", "tok\u{e9}n", "a\tb", "123456789"] {
            let e = check_token("--token", bad, 8).unwrap_err();
            assert!(e.starts_with("--token"), "{bad:?}: {e}");
        }
    }
}
