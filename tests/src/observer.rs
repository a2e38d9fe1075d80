//! Support for the tests that run qbench-trace: root check and serialization, running it to
//! completion, and reading its JSON reports.

use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::{Linkage, Target, artifact, build_c, poll};

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
    finish(
        spawn_trace(args),
        Duration::from_secs(60),
        "qbench-trace did not finish",
    )
}

/// Starts qbench-trace with `args`, its output piped, and returns at once.
pub fn spawn_trace(args: &[&str]) -> Child {
    Command::new(artifact("qbench-trace"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbench-trace")
}

/// A qbench-trace that has said it is attached; its stderr is read as it comes.
#[derive(Debug)]
pub struct Attached {
    pub child: Child,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts qbench-trace with `args` and returns once it says it is attached to its target (at
/// most 30 s): a test that acts on the target then knows the probes see it.
pub fn spawn_attached(args: &[&str]) -> Attached {
    let mut child = spawn_trace(args);
    let stderr = child.stderr.take().expect("qbench-trace's stderr");
    let (attached, said) = std::sync::mpsc::channel();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.contains("attached to") {
                let _ = attached.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if said.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "qbench-trace never said it was attached: {}",
            stderr.join().unwrap_or_default()
        );
    }
    Attached { child, stderr }
}

impl Attached {
    /// Waits (at most `timeout`, else fails with `late`) until it exits; its whole output.
    pub fn finish(self, timeout: Duration, late: &str) -> Output {
        let mut out = finish(self.child, timeout, late);
        out.stderr = self.stderr.join().expect("stderr reader").into_bytes();
        out
    }
}

/// Waits (at most `timeout`, else fails with `late`) until `child` exits, and returns its output.
/// Its pipes are read meanwhile: a child whose output outgrows a pipe's buffer would otherwise
/// block on it and never exit.
pub fn finish(mut child: Child, timeout: Duration, late: &str) -> Output {
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = poll(
        timeout,
        Duration::from_millis(10),
        || child.try_wait().expect("wait").ok_or(()),
        |()| late.to_string(),
    );
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The JSON reports qbench-trace printed, one per line.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The threads of a JSON report for which `keep` holds.
pub fn threads_where(report: &Value, keep: impl Fn(&Value) -> bool) -> Vec<&Value> {
    report["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter(|t| keep(t))
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

/// `workloads/c/situations.c`, linked to libqbench.so, running `kinds` with `env`.
pub fn situations(kinds: &[&str], env: &[(&str, &str)]) -> Target {
    Target::start(&build_c("situations", Linkage::Dynamic), kinds, env)
}

/// Runs qbench-trace on `target` with `--request` and `args` to completion.
pub fn request(target: &Target, args: &[&str]) -> Output {
    let pid = target.pid.to_string();
    let mut all = vec!["--pid", pid.as_str(), "--request"];
    all.extend_from_slice(args);
    trace(&all)
}

/// The updates qbench-trace reports with `--request`, `args` and `--json` on `target`, once it
/// exited 0 (or the test fails, with its stderr).
pub fn requested_updates(target: &Target, args: &[&str]) -> Vec<Value> {
    let out = request(target, &[args, &["--json"]].concat());
    assert_exit(&out, 0);
    json_lines(&out)
}

/// The `count` JSON reports of a qbench-trace run that exited with `code` (or the test fails, with
/// its stderr or the reports).
pub fn reports(out: &Output, code: i32, count: usize) -> Vec<Value> {
    assert_exit(out, code);
    let reports = json_lines(out);
    assert_eq!(reports.len(), count, "{reports:?}");
    reports
}

/// [`reports`] of `child` once it has finished (at most 60 s).
pub fn finished_reports(child: Child, code: i32, count: usize) -> Vec<Value> {
    let out = finish(
        child,
        Duration::from_secs(60),
        "qbench-trace did not finish",
    );
    reports(&out, code, count)
}

/// Asserts qbench-trace's exit status, with its stderr when it differs.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first JSON report qbench-trace printed; fails, with what it printed, when there is none.
pub fn first_report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
