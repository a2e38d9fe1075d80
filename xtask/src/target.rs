//! Driving a target program from outside: update requests by signal, and waiting for the
//! runtime's reports.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::workspace::{self, Profile};

/// qbench-trace (`trace`) set to request `updates` updates of process `pid` and print each
/// as a JSON line.
pub fn observe_updates(
    trace: &Path,
    pid: impl std::fmt::Display,
    updates: usize,
) -> std::process::Command {
    let mut command = std::process::Command::new(trace);
    command.args([
        "--pid",
        &pid.to_string(),
        "--request",
        "--count",
        &updates.to_string(),
        "--json",
    ]);
    command
}

/// Requests an update of process `pid` with SIGUSR2, the runtime's default request signal.
/// Reads the first line a target program prints, `ready X` (X its pid or its port), and returns
/// X; `what` names the program in the error. It reads byte by byte, so nothing the program
/// prints after that line is taken from its stdout.
pub fn read_ready(child: &mut std::process::Child, what: &str) -> anyhow::Result<String> {
    use std::io::Read as _;
    let stdout = child
        .stdout
        .as_mut()
        .with_context(|| format!("{what}: no stdout"))?;
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line);
    parse_ready(&line).with_context(|| format!("{what} did not start: {line:?}"))
}

/// The X of a `ready X` line.
pub fn parse_ready(line: &str) -> Option<String> {
    let rest = line.strip_prefix("ready ")?.trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

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

/// How often a benchmark looks for the runtime's report of the update it requested.
const REPORT_POLL: Duration = Duration::from_millis(5);

/// Waits until the report file holds at least `n` whole lines.
pub fn wait_report_lines(path: &Path, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // Asleep while the threads race to park (well under a millisecond): a benchmark that
        // polled meanwhile would take a core from them, and more from the arm it waits in.
        std::thread::sleep(REPORT_POLL);
        let text = std::fs::read(path).unwrap_or_default();
        if text.iter().filter(|&&b| b == b'\n').count() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no report for update {n} within {timeout:?}");
        }
    }
}

/// Fails unless process `pid` has loaded the release libqbench.so that the benchmarks' programs
/// are linked against. A figure taken with another copy of the runtime (a debug build found
/// through LD_LIBRARY_PATH, say) would be wrong without saying so.
pub fn ensure_release_runtime(pid: u32) -> anyhow::Result<()> {
    let expected = workspace::profile_dir(Profile::Release).join("libqbench.so");
    let expected = std::fs::canonicalize(&expected).unwrap_or(expected);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("cannot read the mappings of process {pid}"))?;
    let loaded = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libqbench.so"))
        .with_context(|| format!("process {pid} has not loaded libqbench.so"))?;
    ensure!(
        Path::new(loaded) == expected,
        "process {pid} loaded {loaded}, not {}: unset LD_LIBRARY_PATH and run again",
        expected.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_its_value() {
        assert_eq!(parse_ready("ready 4242\n").as_deref(), Some("4242"));
        assert_eq!(parse_ready("ready \n"), None);
        assert_eq!(parse_ready("error: no\n"), None);
    }
}
