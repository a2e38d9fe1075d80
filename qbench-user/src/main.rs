//! qbench-trace: parse, observe, map the outcome to the documented exit status
//! (0 every update quiesced, 3 at least one DNQ, 1 could not attach or load, 2 usage error;
//! `--check`: 0 when observation would work, 1 otherwise).

use std::process::ExitCode;

use clap::Parser as _;
use qbench_user::{app, cli::Args, host::check};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let args = Args::parse();
    if let Err(err) = args.check() {
        err.exit();
    }
    if args.check {
        return if check::run() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match app::run(&args) {
        Ok(summary) if summary.dnq > 0 => ExitCode::from(3),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` keeps the whole context chain on one line.
            eprintln!("qbench-trace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
