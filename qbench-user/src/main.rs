//! qbench-trace: parse, decide the mode, run it, and exit with the documented status
//! (0 every update quiesced, 3 at least one DNQ, 1 could not attach or load, 2 usage error;
//! `--check`: 0 when observation would work, 1 otherwise).

use std::process::ExitCode;

use clap::Parser as _;
use qbench_user::{app, cli::Args, mode::Mode};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let mode = Mode::from_args(Args::parse()).unwrap_or_else(|err| err.exit());
    app::run(mode).unwrap_or_else(|err| {
        // `{:#}` keeps the whole context chain on one line.
        eprintln!("qbench-trace: error: {err:#}");
        ExitCode::FAILURE
    })
}
