//! The diagnosis mode's syscall tracking, attached only while an update is pending: before
//! qbench-trace's own request, or as soon as the kernel says someone else's opened the window
//! (the request then wakes the reader); detached once the update is reported, unless
//! qbench-trace is about to request the next one. Detaching waits for the kernel's RCU grace
//! periods, so it comes after the report, off every measured path.

use std::time::Instant;

use crate::kernel::loader::Probes;

/// Attaches the syscall raw tracepoints unless they are attached (said on stderr with `-v`,
/// with how long it took).
pub fn start(probes: &mut Probes, verbose: u8) -> anyhow::Result<()> {
    let began = Instant::now();
    if probes.start_tracking()? && verbose > 0 {
        eprintln!(
            "qbench-trace: syscall tracking attached in {} us",
            began.elapsed().as_micros()
        );
    }
    Ok(())
}

/// Detaches them, once an update is reported. A request that opened the window meanwhile (its
/// event waits in the ring buffer, not woken while they were attached) has them attached again.
pub fn stop(probes: &mut Probes, verbose: u8) -> anyhow::Result<()> {
    let began = Instant::now();
    if probes.stop_tracking()? && verbose > 0 {
        eprintln!(
            "qbench-trace: syscall tracking detached in {} us",
            began.elapsed().as_micros()
        );
    }
    if probes.window()?.open != 0 {
        start(probes, verbose)?;
    }
    Ok(())
}
