//! qbench-trace from its mode to its exit status: the host check, the diagnosis mode or the
//! watch mode.

use std::process::ExitCode;

use crate::host::check;
use crate::mode::Mode;
use crate::{observe, watch};

/// Runs `mode` to its end; the exit status is the documented one (0 every observed update
/// quiesced, 3 at least one DNQ, 1 could not attach or load; `--check`: 0 when observation
/// would work, 1 otherwise). An error is one line for the user, and exit status 1.
pub fn run(mode: Mode) -> anyhow::Result<ExitCode> {
    match mode {
        Mode::Check => Ok(if check::run() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Mode::Observe(settings) => {
            let summary = observe::run(&settings)?;
            Ok(if summary.dnq > 0 {
                ExitCode::from(3)
            } else if summary.incomplete > 0 {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            })
        }
        // Stopped by a signal: every update was logged and counted, none is an exit status.
        Mode::Watch(settings) => watch::run(settings).map(|()| ExitCode::SUCCESS),
    }
}
