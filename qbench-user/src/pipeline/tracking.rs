//! The diagnosis mode's syscall tracking, attached only while an update is pending: before
//! qbench-trace's own request, or as soon as the kernel says someone else's opened the window
//! (the request then wakes the reader); detached once the update is reported, unless
//! qbench-trace is about to request the next one. Detaching waits for the kernel's RCU grace
//! periods, so it comes after the report, off every measured path.

use std::time::Instant;

use crate::kernel::loader::{LoaderError, Probes};

/// Attaches the syscall raw tracepoints unless they are attached (said on stderr with `-v`,
/// with how long it took).
pub fn start(probes: &mut Probes, verbose: u8) -> anyhow::Result<()> {
    timed("attached", verbose, || probes.start_tracking())
}

/// Detaches them, once an update is reported. A request that opened the window meanwhile (its
/// event waits in the ring buffer, not woken while they were attached) has them attached again.
pub fn stop(probes: &mut Probes, verbose: u8) -> anyhow::Result<()> {
    timed("detached", verbose, || probes.stop_tracking())?;
    if probes.window()?.open != 0 {
        start(probes, verbose)?;
    }
    Ok(())
}

/// Runs `change`, and says with `-v` that tracking was `done` and in how long, if it changed.
fn timed(
    done: &str,
    verbose: u8,
    change: impl FnOnce() -> Result<bool, LoaderError>,
) -> anyhow::Result<()> {
    let began = Instant::now();
    if change()? && verbose > 0 {
        let us = began.elapsed().as_micros();
        eprintln!("qbench-trace: syscall tracking {done} in {us} us");
    }
    Ok(())
}
