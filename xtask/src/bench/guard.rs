//! Children of the benchmarks that must not outlive them, and the start of a Table I workload.

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::target;

/// Kills a child when dropped (the workload, the load, whatever went wrong).
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the workload of `cmd` (its program, and anything else it needs: environment, a CPU)
/// in `variant`, and returns it with its port once it is ready and has loaded the release
/// runtime; `what` names it in errors. It exits when its stdin closes.
pub fn start_workload(
    cmd: &mut Command,
    variant: &str,
    what: &str,
) -> anyhow::Result<(Guard, String)> {
    let mut workload = Guard(
        cmd.args(["--variant", variant])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?,
    );
    let port = target::read_ready(&mut workload.0, what)?;
    target::ensure_release_runtime(workload.0.id())?;
    Ok((workload, port))
}
