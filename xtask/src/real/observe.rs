//! Runs a built real program on loopback and has qbench-trace request updates of it; the JSON
//! reports become one summary line.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use super::program::Spec;

/// A server process of a real program, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    name: &'static str,
}

impl Server {
    /// Starts `exe` as `spec` says on a free loopback port and waits until it listens and has
    /// all its threads (`runtime_threads` more when it links libqbench).
    pub fn start(spec: &Spec, exe: &Path, runtime_threads: usize) -> anyhow::Result<Server> {
        Self::start_with(spec, exe, runtime_threads, &[])
    }

    /// [`Self::start`] with `env` added to its environment.
    pub fn start_with(
        spec: &Spec,
        exe: &Path,
        runtime_threads: usize,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let child = Command::new(exe)
            .envs(env.iter().copied())
            .args(spec.command_args(port, root))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut server = Server {
            child,
            port,
            name: spec.name,
        };
        server.wait_ready(spec.threads + runtime_threads)?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, threads: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let name = self.name;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{name} exited before it was ready ({status})");
            }
            // Read from /proc rather than by connecting: a connection is a client to iperf.
            let tcp = std::fs::read_to_string(format!("/proc/{}/net/tcp", self.pid()))
                .unwrap_or_default();
            let listening = listens_on_loopback(&tcp, self.port);
            let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
                .map(Iterator::count)
                .unwrap_or(0);
            if listening && tasks == threads {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{name} was not ready after 10 s (listening: {listening}, {tasks} of {threads} threads)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a /proc/net/tcp table has a socket listening on 127.0.0.1:`port`.
fn listens_on_loopback(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut fields = l.split_whitespace().skip(1);
        // local_address rem_address st
        fields.next() == Some(local.as_str()) && fields.nth(1) == Some("0A")
    })
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
    fn a_listening_socket_is_found_by_address_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:14B5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 0100007F:14B6 0100007F:9A3C 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0
";
        assert!(listens_on_loopback(table, 5301));
        // an established connection, not a listener
        assert!(!listens_on_loopback(table, 5302));
        assert!(!listens_on_loopback(table, 5303));
    }

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
