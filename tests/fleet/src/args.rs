//! Command-line arguments (clap), shared by the `fleet` binary and, later, the
//! `accessgate simulate` subcommand: flatten [`FleetArgs`] into a clap command and call
//! [`FleetArgs::execute`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::plot::{write_svg, PlotOptions};
use crate::scenario::{OutageMode, Scenario, ScenarioKind};
use crate::{fmt_duration, parse_duration, run_with, PolicyKind, Progress, Report, RunOptions};

/// Which scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioArg {
    /// N devices sign in within 1 s against capacity C.
    BootStorm,
    /// N devices in steady state; the backend goes down for each `--outage` length.
    #[value(help = "N devices in steady state; the backend goes down once for each --outage length")]
    Outage,
}

/// Arguments of a fleet simulation.
#[derive(Clone, Debug, clap::Args)]
pub struct FleetArgs {
    /// Which scenario to run.
    #[arg(value_enum)]
    pub scenario: ScenarioArg,
    /// Number of devices.
    #[arg(long, default_value_t = 100_000)]
    pub devices: u32,
    /// Backend capacity, requests per second.
    #[arg(long, default_value_t = 2_000)]
    pub capacity: u32,
    /// Outage length(s), comma separated (e.g. `30s,5m,30m`); each is its own run.
    #[arg(
        long,
        value_parser = parse_duration,
        value_delimiter = ',',
        default_value = "30s,5m,30m",
        help = "Outage length(s), comma separated (e.g. 30s,5m,30m); each is its own run"
    )]
    pub outage: Vec<Duration>,
    /// When the outage starts.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub outage_start: Duration,
    /// How the backend fails during the outage.
    #[arg(long, value_enum, default_value = "refused")]
    pub outage_mode: OutageMode,
    /// Policies to run, comma separated (default: all but `ours16`). Each value's help is
    /// [`PolicyKind::describe`].
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        help = "Policies to run, comma separated (default: all but ours16)"
    )]
    pub policies: Vec<PolicyKind>,
    /// Run seed: same seed, same report.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Over-capacity 503s carry Retry-After (a slot hand-out).
    #[arg(long)]
    pub retry_after: bool,
    /// Latency of a served request.
    #[arg(long, value_parser = parse_duration, default_value = "50ms")]
    pub latency: Duration,
    /// Simulated span (default: 75 min for a boot storm; outage end + 65 min).
    #[arg(long, value_parser = parse_duration)]
    pub horizon: Option<Duration>,
    /// Fraction of devices the backend denies.
    #[arg(long, default_value_t = 0.0)]
    pub denied_fraction: f64,
    /// Write an SVG plot here (with several outages: `NAME-<outage>.svg`).
    #[arg(
        long,
        help = "Write an SVG plot here (with several outages: NAME-<outage>.svg)"
    )]
    pub svg: Option<PathBuf>,
    /// Write the per-second series as CSV here (same naming as `--svg`).
    #[arg(long, help = "Write the per-second series as CSV here (same naming as --svg)")]
    pub csv: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Refresh spread of the policies that spread (R11; default: the session's, 10 min).
    #[arg(long, value_parser = parse_duration)]
    pub refresh_spread: Option<Duration>,
    /// Our gate's probe period (R7; default 300 s).
    #[arg(long, value_parser = parse_duration)]
    pub probe_period: Option<Duration>,
    /// Our gate's probe ramp after failing closed, as `WINDOW:PROBES` (e.g. `120s:2`;
    /// `0s:0` for none).
    #[arg(
        long,
        value_parser = parse_ramp,
        help = "Our gate's probe ramp after failing closed, as WINDOW:PROBES (e.g. 120s:2; 0s:0 for none)"
    )]
    pub probe_ramp: Option<(Duration, u32)>,
    /// Our gate's retry spread window (R6; default 70 s).
    #[arg(long, value_parser = parse_duration)]
    pub retry_spread: Option<Duration>,
    /// Our gate's final retry window (R6; default 10 s).
    #[arg(long, value_parser = parse_duration)]
    pub final_window: Option<Duration>,
}

/// `WINDOW:PROBES`, e.g. `120s:2`.
fn parse_ramp(s: &str) -> Result<(Duration, u32), String> {
    let (w, n) = s.split_once(':').ok_or("expected WINDOW:PROBES, e.g. 120s:2")?;
    let n = n.parse::<u32>().map_err(|e| format!("ramp probes: {e}"))?;
    Ok((parse_duration(w)?, n))
}

impl FleetArgs {
    /// The policies to run: those given, or all.
    pub fn policies(&self) -> Vec<PolicyKind> {
        if self.policies.is_empty() {
            PolicyKind::ALL.to_vec()
        } else {
            self.policies.clone()
        }
    }

    /// The scenarios these arguments describe (one per outage length).
    pub fn scenarios(&self) -> Result<Vec<Scenario>, String> {
        let customise = |mut sc: Scenario| -> Result<Scenario, String> {
            sc.retry_after = self.retry_after;
            sc.latency = self.latency;
            sc.horizon = self.horizon;
            sc.denied_fraction = self.denied_fraction;
            sc.outage_mode = self.outage_mode;
            let core = |d: Duration| accessgate::Duration::from_micros(d.as_micros() as u64);
            if let Some(d) = self.refresh_spread {
                sc.refresh_spread = d;
            }
            if let Some(d) = self.probe_period {
                sc.gate.probe.period = core(d);
            }
            if let Some((w, n)) = self.probe_ramp {
                sc.gate.probe.ramp = core(w);
                sc.gate.probe.ramp_probes = n;
            }
            if let Some(d) = self.retry_spread {
                sc.gate.retry.spread = core(d);
            }
            if let Some(d) = self.final_window {
                sc.gate.retry.final_window = core(d);
            }
            if let ScenarioKind::Outage { duration, .. } = sc.kind {
                sc.kind = ScenarioKind::Outage {
                    start: self.outage_start,
                    duration,
                };
            }
            sc.validate()?;
            Ok(sc)
        };
        match self.scenario {
            ScenarioArg::BootStorm => Ok(vec![customise(Scenario::boot_storm(
                self.devices,
                self.capacity,
            ))?]),
            ScenarioArg::Outage => {
                if self.outage.is_empty() {
                    return Err("give at least one --outage length".into());
                }
                self.outage
                    .iter()
                    .map(|&d| customise(Scenario::outage(self.devices, self.capacity, d)))
                    .collect()
            }
        }
    }

    /// Runs every scenario, writes the SVG / CSV files asked for, and returns the reports.
    /// `progress` receives updates (see [`ProgressBars`]).
    pub fn execute(&self, progress: Option<&(dyn Fn(Progress) + Sync)>) -> Result<Vec<Report>, String> {
        let scenarios = self.scenarios()?;
        let policies = self.policies();
        let several = scenarios.len() > 1;
        let mut reports = Vec::new();
        for sc in &scenarios {
            let report = run_with(
                sc,
                &policies,
                self.seed,
                RunOptions {
                    threads: self.threads,
                    progress,
                },
            );
            let suffix = match (several, sc.kind) {
                (true, ScenarioKind::Outage { duration, .. }) => {
                    Some(fmt_duration(Some(duration)).replace(' ', ""))
                }
                _ => None,
            };
            if let Some(path) = &self.svg {
                let path = suffixed(path, suffix.as_deref());
                write_svg(&report, &path, &PlotOptions::for_report(&report))?;
            }
            if let Some(path) = &self.csv {
                let path = suffixed(path, suffix.as_deref());
                std::fs::write(&path, report.series_csv()).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            reports.push(report);
        }
        Ok(reports)
    }
}

fn suffixed(path: &Path, suffix: Option<&str>) -> PathBuf {
    let Some(suffix) = suffix else {
        return path.to_path_buf();
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
}

/// Terminal progress bars (indicatif), one per policy; hidden when stderr is not a terminal.
pub struct ProgressBars {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
}

impl ProgressBars {
    /// One bar per policy, labelled with `title` (e.g. the scenario).
    pub fn new(title: &str, policies: &[PolicyKind]) -> Self {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] {percent:>3}% {elapsed:>4}")
            .expect("valid template")
            .progress_chars("=> ");
        let bars = policies
            .iter()
            .map(|p| {
                let b = multi.add(ProgressBar::new(1000));
                b.set_style(style.clone());
                b.set_prefix(format!("{title} {}", p.name()));
                b
            })
            .collect();
        ProgressBars { multi, bars }
    }

    /// Feeds one update; pass `&|p| bars.update(p)` as the progress callback.
    pub fn update(&self, p: Progress) {
        if let Some(b) = self.bars.get(p.index) {
            let permille = p.simulated.as_secs_f64() / p.horizon.as_secs_f64().max(1e-9) * 1000.0;
            b.set_position(permille as u64);
        }
    }

    /// Clears the bars.
    pub fn finish(self) {
        for b in &self.bars {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: FleetArgs,
    }

    #[test]
    fn parses_the_documented_command_line() {
        let cli = Cli::parse_from([
            "fleet",
            "outage",
            "--devices",
            "1000",
            "--outage",
            "300s",
            "--svg",
            "out.svg",
        ]);
        let sc = cli.args.scenarios().unwrap();
        assert_eq!(sc.len(), 1);
        assert_eq!(sc[0].devices, 1000);
        assert_eq!(
            sc[0].outage_window(),
            Some((Duration::from_secs(600), Duration::from_secs(900)))
        );
        assert_eq!(cli.args.policies(), PolicyKind::ALL);
        let cli = Cli::parse_from([
            "fleet",
            "boot-storm",
            "--policies",
            "ours,launchdarkly",
            "--retry-after",
        ]);
        assert_eq!(cli.args.policies(), [PolicyKind::Ours, PolicyKind::LaunchDarkly]);
        assert!(cli.args.scenarios().unwrap()[0].retry_after);
    }

    #[test]
    fn several_outages_get_suffixed_files() {
        assert_eq!(
            suffixed(Path::new("a/out.svg"), Some("5min00s")),
            PathBuf::from("a/out-5min00s.svg")
        );
        assert_eq!(suffixed(Path::new("out.svg"), None), PathBuf::from("out.svg"));
    }
}
