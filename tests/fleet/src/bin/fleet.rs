//! `fleet`: run the fleet simulator from the command line.
//!
//! ```text
//! cargo run -p accessgate-fleet --release -- outage --devices 100000 --outage 300s --svg out.svg
//! cargo run -p accessgate-fleet --release -- boot-storm --retry-after
//! ```
//!
//! Prints one markdown table per scenario, then the wall time per policy.

use std::process::ExitCode;

use accessgate_fleet::{FleetArgs, ProgressBars};
use clap::Parser;

/// Fleet simulator: every device runs the real accessgate gate (or a peer policy) against a
/// modelled backend with a capacity and an outage.
#[derive(Parser)]
#[command(name = "fleet", version)]
struct Cli {
    #[command(flatten)]
    args: FleetArgs,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = std::time::Instant::now();
    let bars =
        (!cli.quiet).then(|| ProgressBars::new(&format!("{:?}", cli.args.scenario), &cli.args.policies()));
    let callback = |p| {
        if let Some(b) = &bars {
            b.update(p);
        }
    };
    let result = cli.args.execute(Some(&callback));
    if let Some(b) = bars {
        b.finish();
    }
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleet: {e}");
            return ExitCode::FAILURE;
        }
    };
    for report in &reports {
        println!("{}", report.to_markdown());
        let walls: Vec<String> = report
            .rows
            .iter()
            .zip(&report.wall)
            .map(|(r, w)| format!("{} {:.2} s", r.policy, w.as_secs_f64()))
            .collect();
        println!("wall time per policy: {}\n", walls.join(", "));
    }
    println!("total wall time: {:.2} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
