//! qbench-trace. Exit codes: 0 success, 1 failure (load, attach or read), 2 bad usage.

use std::process::ExitCode;

use clap::Parser as _;
use qbench_user::cli::{self, Args};

fn main() -> ExitCode {
    // clap exits with 2 on bad usage.
    let args = Args::parse();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("qbench-trace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
