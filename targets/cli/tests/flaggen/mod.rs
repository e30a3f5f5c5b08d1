//! Seeded generator of hostile flag values for the CLI property tests (issue 14): the
//! desktop `accessgate` and `accessgate-embassy` both include this file.
//!
//! Every case starts from a valid command line, replaces one to three flags with generated
//! values (durations out of range or without a unit, huge or negative numbers, text with
//! spaces, control characters or 3,000 bytes, URLs without a scheme or host, CA paths that
//! are missing, a directory, empty, not PEM, or PEM around garbage), and says which flags it
//! touched, so the test can check that a refusal names one of them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The seed: `ACCESSGATE_FLAGS_SEED` if set (to replay a failure), else a fixed one.
pub fn seed() -> u64 {
    std::env::var("ACCESSGATE_FLAGS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_130)
}

/// What a flag takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Duration,
    Number,
    Text,
    UrlPath,
    CaPath,
    Url,
    Color,
    /// A flag without a value: present or absent.
    Switch,
}

/// Files the CA values point at, in a directory of their own.
pub struct Files {
    pub dir: PathBuf,
    pub valid_ca: PathBuf,
    pub not_pem: PathBuf,
    pub empty: PathBuf,
    pub pem_garbage: PathBuf,
    pub missing: PathBuf,
}

impl Files {
    /// Creates the files under `dir` (which must exist); `valid_ca_pem` is a real CA.
    pub fn create(dir: &Path, valid_ca_pem: &str) -> Files {
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write test file");
            p
        };
        Files {
            dir: dir.to_path_buf(),
            valid_ca: write("ca.pem", valid_ca_pem),
            not_pem: write("not.pem", "hello, I am not a certificate\n"),
            empty: write("empty.pem", ""),
            pem_garbage: write(
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
            ),
            missing: dir.join("missing.pem"),
        }
    }
}

fn number(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => u64::MAX.to_string(),
        1 => "18446744073709551616".into(),
        2 => (rng.next() % 1000).to_string(),
        3 => (rng.next() >> rng.below(64)).to_string(),
        4 => u32::MAX.to_string(),
        5 => "0".into(),
        6 => "1".into(),
        _ => rng
            .pick(&[
                "-1",
                "1.5",
                "1e3",
                "0x10",
                "",
                " 7",
                "٣",
                "99999999999999999999999999",
            ])
            .into(),
    }
}

fn duration(rng: &mut Rng) -> String {
    let units = [
        "ns", "us", "µs", "ms", "s", "sec", "m", "min", "h", "d", "w", "M", "y", "years", "", "x", " s",
    ];
    match rng.below(10) {
        0..=5 => format!("{}{}", number(rng), rng.pick(&units)),
        6 => format!(
            "{}{} {}{}",
            rng.next() % 100,
            rng.pick(&units),
            rng.next() % 100,
            rng.pick(&units)
        ),
        7 => format!("{}{}", "9".repeat(1 + rng.below(40)), rng.pick(&units)),
        _ => rng
            .pick(&[
                "", " ", "-1s", "1.5s", "1e3s", "inf", "∞", "1m30s", "0s", "1us", "10s10s", "s", "1 hour",
                "100ms", "2s", "1s",
            ])
            .into(),
    }
}

fn text(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => {
            let n = rng.below(1500);
            (0..n)
                .map(|_| char::from(b'!' + (rng.next() % 94) as u8))
                .collect()
        }
        1 => "x".repeat(1000 + rng.below(2100)),
        _ => rng
            .pick(&[
                "",
                " ",
                "at_1",
                "a b",
                "tab\there",
                "é",
                "\u{202e}rtl",
                "--json",
                "a\r\nX-Evil: 1",
                "%00",
                "'\"",
                "\u{7f}",
                "at_0123456789abcdef",
                "user@example",
                "日本",
            ])
            .into(),
    }
}

fn url(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("http://127.0.0.1:1{}", url_path(rng)),
        _ => rng
            .pick(&[
                "",
                " ",
                "localhost:8080/x",
                "127.0.0.1:1",
                "ftp://127.0.0.1:1/",
                "http://",
                "http:///x",
                "http://:1/",
                "http://127.0.0.1:1/",
                "https://127.0.0.1:1/",
                "https://localhost:1/",
                "http://[::1]:1/",
                "http://[::1/",
                "http://127.0.0.1:99999/",
                "http://exa mple:1/",
                "http://ü.invalid:1/",
                "HTTP://127.0.0.1:1/x",
                "http://user:pw@127.0.0.1:1/",
                "//127.0.0.1:1",
                "http://127.0.0.1:1/%zz",
                "http://127.0.0.1:1/a b",
                "http://127.0.0.1:1/\u{7f}",
                "javascript:alert(1)",
                "http://999.999.999.999:1/",
            ])
            .into(),
    }
}

fn url_path(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("/{}", text(rng)),
        _ => rng
            .pick(&[
                "",
                "x",
                "/",
                "/../..",
                "/?q=1#f",
                "/a%zz",
                "//",
                "/x y",
                "/api/code/invites/check-access/",
            ])
            .into(),
    }
}

/// A value for a flag of `kind`; `None` leaves the flag out (switches: absent).
pub fn value(kind: Kind, rng: &mut Rng, files: &Files) -> Option<String> {
    Some(match kind {
        Kind::Duration => duration(rng),
        Kind::Number => number(rng),
        Kind::Text => text(rng),
        Kind::UrlPath => url_path(rng),
        Kind::Url => url(rng),
        Kind::Color => rng
            .pick(&["auto", "always", "never", "bogus", "", "ALWAYS"])
            .into(),
        Kind::CaPath => {
            let p = match rng.below(7) {
                0 => &files.valid_ca,
                1 => &files.not_pem,
                2 => &files.empty,
                3 => &files.pem_garbage,
                4 => &files.missing,
                5 => &files.dir,
                _ => return Some(String::new()),
            };
            p.display().to_string()
        }
        Kind::Switch => {
            if rng.chance(2) {
                return None;
            }
            String::new()
        }
    })
}

/// One generated command line.
pub struct Case {
    pub args: Vec<String>,
    /// The flags whose values were generated.
    pub touched: Vec<&'static str>,
}

/// Builds a case: `base` (flag, value) pairs, with 1 to 3 of `flags` replaced by generated
/// values. Flags are written `--flag=value`, so a value starting with `-` stays a value.
pub fn case(
    sub: &str,
    base: &[(&'static str, Option<&str>)],
    flags: &[(&'static str, Kind)],
    rng: &mut Rng,
    files: &Files,
) -> Case {
    let mut set: Vec<(&'static str, Option<String>)> =
        base.iter().map(|(f, v)| (*f, v.map(str::to_string))).collect();
    let mut touched = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let (flag, kind) = flags[rng.below(flags.len())];
        let v = value(kind, rng, files);
        set.retain(|(f, _)| *f != flag);
        match (kind, v) {
            (Kind::Switch, None) => {}
            (Kind::Switch, Some(_)) => set.push((flag, None)),
            (_, v) => set.push((flag, v)),
        }
        touched.push(flag);
    }
    let mut args = vec![sub.to_string()];
    for (f, v) in set {
        match v {
            Some(v) => args.push(format!("{f}={v}")),
            None => args.push(f.to_string()),
        }
    }
    Case { args, touched }
}

/// How a run ended.
pub enum Ending {
    Exit(i32, String),
    /// Still running at the time limit (then killed): it ran.
    Running,
}

/// Runs `bin` with `args`, killed after `limit` if it is still running.
pub async fn run(bin: &str, args: &[String], limit: std::time::Duration) -> Ending {
    let child = tokio::process::Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("ACCESSGATE_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("wait");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            // Death by signal shows as -1: never expected here.
            Ending::Exit(out.status.code().unwrap_or(-1), err)
        }
        Err(_) => Ending::Running,
    }
}

/// Checks one ending: an allowed exit code, or 64 with a message naming a touched flag;
/// never 101 (panic), never a panic message. Returns a description of the violation.
pub fn verdict(case: &Case, ending: &Ending, allowed: &[i32]) -> Result<(), String> {
    match ending {
        Ending::Running => Ok(()),
        Ending::Exit(code, err) => {
            if err.contains("panicked") || *code == 101 {
                return Err(format!("panicked (exit {code}): {err}"));
            }
            if *code == 64 {
                let named = case.touched.iter().any(|f| err.contains(f));
                return if named {
                    Ok(())
                } else {
                    Err(format!("exit 64 without naming any of {:?}: {err}", case.touched))
                };
            }
            if allowed.contains(code) {
                Ok(())
            } else {
                Err(format!("exit {code}: {err}"))
            }
        }
    }
}
