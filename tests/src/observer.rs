//! Support for the tests that run qbench-trace: root check and serialization, running it to
//! completion, and reading its JSON reports.

use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::artifact;

/// One qbench-trace test at a time within a test binary: tests that count the kernel's loaded
/// programs must not see another test's, and the 2-core machines run one observer well. None,
/// with the reason printed, when not root.
pub fn privileged() -> Option<MutexGuard<'static, ()>> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: qbench-trace needs root (CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH) to load eBPF programs"
        );
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs qbench-trace with `args` to completion (at most 60 s).
pub fn trace(args: &[&str]) -> Output {
    let mut child = Command::new(artifact("qbench-trace"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbench-trace");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "qbench-trace did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// The JSON reports qbench-trace printed, one per line.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The thread named `comm` in a JSON report.
pub fn thread<'a>(report: &'a Value, comm: &str) -> &'a Value {
    report["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["comm"] == comm)
        .unwrap_or_else(|| panic!("no thread {comm} in {report}"))
}
