//! `accessgate simulate`: the fleet simulator (crate `accessgate-fleet`), as a subcommand.

use crate::util::out;
use accessgate_fleet::{FleetArgs, ProgressBars};
use clap::Args;

use crate::util::CliError;

/// The largest fleet `simulate` takes.
pub const MAX_DEVICES: u32 = 10_000_000;

/// Options of `accessgate simulate`: the fleet simulator's own arguments, plus `--quiet`.
#[derive(Debug, Args)]
#[command(
    about = "Simulate a fleet of devices (the real gate on every one) through a boot storm or an outage",
    long_about = "Discrete-event fleet simulator: every simulated device runs the real accessgate \
gate (or a peer retry policy, for comparison) against a modelled backend with a capacity limit and \
an outage. Prints one markdown table per scenario (load on the backend, devices granted, wrongly \
denied, time to recover), optionally an SVG plot and a CSV series. Deterministic for a given --seed.",
    after_help = "Examples:\n  \
accessgate simulate outage --devices 100000 --outage 300s --svg out.svg\n  \
accessgate simulate boot-storm --retry-after --devices 20000 --capacity 1000"
)]
pub struct SimulateArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// Runs the simulation (CPU-bound; called outside the async runtime).
pub fn run(args: SimulateArgs) -> Result<u8, CliError> {
    // Every device's state is allocated up front (about 100 bytes each): 2^32 devices aborted
    // the process on allocation failure instead of saying what was wrong (issue 14).
    if args.fleet.devices > MAX_DEVICES {
        return Err(CliError::Usage(format!(
            "--devices {} is too many: at most {MAX_DEVICES} (about 1 GB of device state)",
            args.fleet.devices
        )));
    }
    // Bad scenario parameters are usage errors; failures while running (writing --svg) are not.
    args.fleet
        .scenarios()
        .map_err(|e| CliError::Usage(format!("simulate: {e}")))?;
    let started = std::time::Instant::now();
    let bars = (!args.quiet)
        .then(|| ProgressBars::new(&format!("{:?}", args.fleet.scenario), &args.fleet.policies()));
    let callback = |p| {
        if let Some(b) = &bars {
            b.update(p);
        }
    };
    let result = args.fleet.execute(Some(&callback));
    if let Some(b) = bars {
        b.finish();
    }
    let reports = result.map_err(|e| CliError::Runtime(format!("simulate: {e}")))?;
    for report in &reports {
        out!("{}", report.to_markdown());
        let walls: Vec<String> = report
            .rows
            .iter()
            .zip(&report.wall)
            .map(|(r, w)| format!("{} {:.2} s", r.policy, w.as_secs_f64()))
            .collect();
        out!("wall time per policy: {}\n", walls.join(", "));
    }
    out!("total wall time: {:.2} s", started.elapsed().as_secs_f64());
    Ok(0)
}
