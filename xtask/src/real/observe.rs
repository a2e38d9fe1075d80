//! Runs a built memcached on loopback and has qbench-trace request updates of it; the JSON
//! reports become one summary line.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// Worker threads, as the study's memcached runs had.
const WORKERS: &str = "4";
/// Threads of memcached 1.6 in this configuration: main, 4 workers, mc-log, mc-assocmaint,
/// mc-itemcrawler, mc-lrumaint, mc-slabmaint (and the runtime's helper in the stages).
const THREADS: usize = 10;

/// A memcached process, killed when dropped.
pub struct Memcached {
    child: Child,
    pub port: u16,
}

impl Memcached {
    /// Starts `exe` with 4 workers on a free loopback port, UDP off, and waits until it accepts
    /// connections and has all its threads.
    pub fn start(exe: &Path, runtime_threads: usize) -> anyhow::Result<Memcached> {
        Self::start_with(exe, runtime_threads, &[])
    }

    /// [`Self::start`] with `env` added to its environment.
    pub fn start_with(
        exe: &Path,
        runtime_threads: usize,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Memcached> {
        let port = free_port()?;
        let mut cmd = Command::new(exe);
        cmd.envs(env.iter().copied());
        cmd.args(["-t", WORKERS, "-U", "0", "-l", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // memcached refuses to run as root without -u.
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut memcached = Memcached { child, port };
        memcached.wait_ready(THREADS + runtime_threads)?;
        Ok(memcached)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, threads: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("memcached exited before it was ready ({status})");
            }
            let listening = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok();
            let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
                .map(Iterator::count)
                .unwrap_or(0);
            if listening && tasks == threads {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "memcached was not ready after 10 s (listening: {listening}, {tasks} of {threads} threads)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `qbench-trace --pid PID --json ARGS` to completion and returns its reports; exit 0 (all
/// quiesced) and 3 (a DNQ) are both results.
pub fn trace(qbench_trace: &Path, pid: u32, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(qbench_trace)
        .args(["--pid", &pid.to_string(), "--json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", qbench_trace.display()))?;
    ensure!(
        matches!(out.status.code(), Some(0 | 3)),
        "qbench-trace failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad report line {l:?}")))
        .collect()
}

/// One line for a variant's reports: the outcomes, then each thread that did not arrive in some
/// update, by name and diagnosed cause (`mc-worker io_blocked x4`).
pub fn summary(reports: &[Value]) -> String {
    let quiesced = reports
        .iter()
        .filter(|r| r["outcome"] == "quiesced")
        .count();
    let dnq = reports.iter().filter(|r| r["outcome"] == "dnq").count();
    let mut line = format!("{} updates: {quiesced} quiesced, {dnq} DNQ", reports.len());
    // (comm, cause) -> the distinct threads
    let mut missing: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for report in reports {
        for thread in report["threads"].as_array().into_iter().flatten() {
            if !thread["arrival_ns"].is_null() {
                continue;
            }
            let comm = thread["comm"].as_str().unwrap_or("?").to_owned();
            let cause = thread["diagnosis"]["cause"]
                .as_str()
                .unwrap_or("undiagnosed")
                .to_owned();
            let tids = missing.entry((comm, cause)).or_default();
            let tid = thread["tid"].as_u64().unwrap_or(0);
            if !tids.contains(&tid) {
                tids.push(tid);
            }
        }
    }
    if missing.is_empty() {
        line.push_str("; every thread arrived");
        return line;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|((comm, cause), tids)| match tids.len() {
            1 => format!("{comm} {cause}"),
            n => format!("{comm} {cause} x{n}"),
        })
        .collect();
    line.push_str("; not arrived: ");
    line.push_str(&parts.join(", "));
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_counts_outcomes_and_groups_missing_threads() {
        let worker = |tid: u64| {
            json!({"tid": tid, "comm": "mc-worker", "arrival_ns": null,
                   "diagnosis": {"cause": "io_blocked"}})
        };
        let dnq = json!({"outcome": "dnq", "threads": [
            worker(2), worker(3),
            {"tid": 1, "comm": "memcached", "arrival_ns": 5, "diagnosis": null},
            {"tid": 4, "comm": "mc-log", "arrival_ns": null, "diagnosis": {"cause": "cond_wait_unwrapped"}},
        ]});
        let quiesced = json!({"outcome": "quiesced", "threads": [worker(2)]});
        assert_eq!(
            summary(&[dnq, quiesced]),
            "2 updates: 1 quiesced, 1 DNQ; not arrived: mc-log cond_wait_unwrapped, mc-worker io_blocked x2"
        );
        let clean = json!({"outcome": "quiesced", "threads": [
            {"tid": 1, "comm": "memcached", "arrival_ns": 5}]});
        assert_eq!(
            summary(&[clean]),
            "1 updates: 1 quiesced, 0 DNQ; every thread arrived"
        );
    }
}
