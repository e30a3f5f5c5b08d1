//! # `accessgate`: the command line
//!
//! Placeholder docs, completed below.

mod check;
mod demo;
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
#[command(name = "accessgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Check(check::CheckArgs),
    Watch(watch::WatchArgs),
    Demo(demo::DemoArgs),
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
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
