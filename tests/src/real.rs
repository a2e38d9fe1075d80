//! Support for the tests of real programs of Debian's (`tests/tests/real_*.rs`): the builds of
//! `cargo xtask real PROGRAM --build-only` in target/real/PROGRAM/, a server process of one on
//! a free loopback port, and what the tests read from qbench-trace's reports of it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::observer::{reports, threads_where, trace};
use crate::profile_dir;

/// The executable `exe` (relative to the tree) of `variant` (`unpatched`, `stage1`, ...) of
/// `program`, or None, with the reason printed, when it is not built.
pub fn built(program: &str, variant: &str, exe: &str) -> Option<PathBuf> {
    let path = profile_dir()
        .parent()
        .expect("target directory")
        .join("real")
        .join(program)
        .join(variant)
        .join(exe);
    if !path.exists() {
        eprintln!(
            "skipped: {} is not built: run `cargo xtask real {program} --build-only` first",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// A server on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts `exe` with the arguments `args` gives for the port, and waits (at most 10 s) until
    /// it listens on 127.0.0.1 at that port and has `threads` threads; then a little longer, for
    /// each thread to reach the wait it stays in.
    pub fn start(exe: &Path, args: impl FnOnce(u16) -> Vec<String>, threads: usize) -> Server {
        Self::start_with(exe, args, threads, &[])
    }

    /// [`Server::start`] with `env` added to its environment.
    pub fn start_with(
        exe: &Path,
        args: impl FnOnce(u16) -> Vec<String>,
        threads: usize,
        env: &[(&str, &str)],
    ) -> Server {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(exe)
            .args(args(port))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = server.listening();
            let tasks = server.threads().len();
            if listening && tasks == threads {
                std::thread::sleep(Duration::from_millis(200));
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 10 s: listening {listening}, {tasks} of {threads} threads",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Its threads' ids, ascending.
    pub fn threads(&self) -> Vec<u64> {
        let mut tids: Vec<u64> = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        tids.sort_unstable();
        tids
    }

    /// The system call number thread `tid` is in now (/proc/PID/task/TID/syscall), if blocked
    /// in one.
    pub fn syscall(&self, tid: u64) -> Option<i64> {
        let text = std::fs::read_to_string(format!("/proc/{}/task/{tid}/syscall", self.child.id()))
            .ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Whether it listens on 127.0.0.1 at its port (read from /proc: to connect is to be a
    /// client).
    fn listening(&self) -> bool {
        let table = std::fs::read_to_string(format!("/proc/{}/net/tcp", self.child.id()))
            .unwrap_or_default();
        let local = format!("0100007F:{:04X}", self.port);
        table.lines().skip(1).any(|l| {
            let mut fields = l.split_whitespace().skip(1);
            fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cause qbench-trace diagnosed for a thread (`none` without a diagnosis or cause).
pub fn cause(thread: &Value) -> &str {
    thread["diagnosis"]["cause"].as_str().unwrap_or("none")
}

/// How many threads named `comm` arrived in an update.
pub fn arrived(report: &Value, comm: &str) -> usize {
    threads_where(report, |t| t["comm"] == comm && !t["arrival_ns"].is_null()).len()
}

/// The thread `tid` of a JSON report.
pub fn by_tid(report: &Value, tid: u64) -> &Value {
    threads_where(report, |t| t["tid"] == tid)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no thread {tid} in {report}"))
}

/// `count` updates requested of `pid` by qbench-trace: each quiesced, the runtime's 1, 2, ...
/// after `before` earlier ones, with no event lost.
pub fn quiesced_updates(pid: &str, count: usize, before: usize) -> Vec<Value> {
    let n = count.to_string();
    let out = trace(&["--pid", pid, "--request", "--count", &n, "--json"]);
    let reports = reports(&out, 0, count);
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report["outcome"], "quiesced", "{report}");
        assert_eq!(report["runtime_seq"], before + i + 1, "{report}");
        assert_eq!(report["lost_events"], 0, "{report}");
    }
    reports
}

/// The one update qbench-trace requests of an unpatched program (no libqbench) observed at
/// `point`, the update signal being `signal`: a DNQ of `threads` participating threads, none
/// arrived, no event lost.
pub fn unpatched_dnq(pid: &str, point: &str, signal: &str, threads: usize) -> Value {
    let out = trace(&[
        "--pid",
        pid,
        "--point",
        point,
        "--signal",
        signal,
        "--request",
        "--json",
    ]);
    let report = reports(&out, 3, 1).remove(0);
    assert_eq!(report["outcome"], "dnq", "{report}");
    assert_eq!(report["request_source"], "signal", "{report}");
    assert_eq!(report["runtime_seq"], Value::Null, "{report}");
    assert_eq!(report["first_arrival_ns"], Value::Null, "{report}");
    assert_eq!(report["lost_events"], 0, "{report}");
    let all = threads_where(&report, |_| true);
    assert_eq!(all.len(), threads, "{report}");
    assert!(
        all.iter()
            .all(|t| t["arrival_ns"].is_null() && t["participating"] == true),
        "{report}"
    );
    report
}

/// A quiesced update of `threads` threads, each participating and arrived, its quiescence the
/// last arrival minus the first.
pub fn assert_every_thread_arrived(report: &Value, threads: usize) {
    let all = threads_where(report, |_| true);
    assert_eq!(all.len(), threads, "{report}");
    assert!(
        all.iter()
            .all(|t| !t["arrival_ns"].is_null() && t["participating"] == true),
        "{report}"
    );
    let first = report["first_arrival_ns"].as_u64().expect("first");
    let last = report["last_arrival_ns"].as_u64().expect("last");
    assert_eq!(
        report["quiescence_ns"].as_u64(),
        Some(last - first),
        "{report}"
    );
}
