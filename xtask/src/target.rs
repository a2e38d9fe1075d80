//! Driving a target program from outside: update requests by signal, and waiting for the
//! runtime's reports.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};

/// Requests an update of process `pid` with SIGUSR2, the runtime's default request signal.
pub fn request_update(pid: i32) -> anyhow::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, libc::SIGUSR2) };
    ensure!(
        rc == 0,
        "cannot signal process {pid}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Waits until the report file holds at least `n` whole lines.
pub fn wait_report_lines(path: &Path, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read(path).unwrap_or_default();
        if text.iter().filter(|&&b| b == b'\n').count() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no report for update {n} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
