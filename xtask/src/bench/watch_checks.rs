//! Part of `cargo xtask bench watch`: what qbench-trace spends reading /proc and the target's
//! memory. Two things are timed on real processes of the `situations` program:
//!
//! - a readiness check of `--watch` (threads in plain condition waits, each unwound and named),
//!   for 10 and 1,000 threads: qbench-trace's CPU over 10 s of checks every 100 ms, divided by
//!   the checks it printed (so its idle cost is in the figure too); and its CPU per second over
//!   30 s at the default interval (10 s) on the 10-thread target; each measured in `rounds`
//!   runs of its own qbench-trace, reported as the median and the range;
//! - the report of an update that did not quiesce, none of 10,000 threads arrived: the
//!   `diagnosis-cost` example builds that update from /proc and times qbench-trace's library
//!   (`evidence::diagnose`, then `output::human` and `output::json`).
//!
//! Needs root (eBPF, and /proc/PID/mem of another process).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

/// Readiness checks are counted over this span, at `CHECK_INTERVAL`.
const CHECK_SPAN: Duration = Duration::from_secs(10);
const CHECK_INTERVAL: &str = "100ms";
/// qbench-trace's CPU at the default interval is measured over this span.
const DEFAULT_SPAN: Duration = Duration::from_secs(30);
/// Threads of the DNQ whose report is timed, and the runs of it (the median is kept).
const DNQ_THREADS: usize = 10_000;
const DNQ_RUNS: usize = 3;

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Figures {
    /// (threads, ms of CPU per check in each round, checks counted in all rounds).
    pub per_check: Vec<(usize, Vec<f64>, usize)>,
    /// ms of CPU per second of `--watch` at the default interval, 10 threads, in each round.
    pub default_interval_ms_per_s: Vec<f64>,
    /// The DNQ report: threads, diagnose, human, json (ms of wall time), CPU of the whole run.
    pub dnq: Dnq,
}

#[derive(Debug, Clone, Default)]
pub struct Dnq {
    pub threads: usize,
    pub diagnose_ms: f64,
    pub human_ms: f64,
    pub json_ms: f64,
    /// CPU of the three together (user and system).
    pub cpu_ms: f64,
}

impl Dnq {
    fn total_ms(&self) -> f64 {
        self.diagnose_ms + self.human_ms + self.json_ms
    }
}

pub fn run(rounds: usize) -> anyhow::Result<Figures> {
    let release =
        crate::bench::build_release(&["--bin", "qbench-trace", "--example", "diagnosis-cost"])?;
    let exe = crate::bench::runtime::build_c_release("situations", "situations-bench")?;
    let trace = release.join("qbench-trace");
    let mut per_check = Vec::new();
    for threads in [10, 1_000] {
        let target = Target::start(&exe, &[&format!("plaincond:{}", threads - 2)], threads)?;
        let (mut runs, mut counted) = (Vec::new(), 0);
        for _ in 0..rounds {
            let (ms, checks) = per_check_cpu(&trace, target.pid)?;
            eprintln!(
                "bench: readiness, {threads} threads: {ms:.2} ms of CPU per check ({checks} checks)"
            );
            runs.push(ms);
            counted += checks;
        }
        per_check.push((threads, runs, counted));
    }
    let target = Target::start(&exe, &["plaincond:8"], 10)?;
    let mut default_interval_ms_per_s = Vec::new();
    for _ in 0..rounds {
        let ms_per_s = default_interval_cpu(&trace, target.pid)?;
        eprintln!("bench: --watch at the default interval: {ms_per_s:.3} ms/s");
        default_interval_ms_per_s.push(ms_per_s);
    }
    drop(target);
    let dnq = dnq_report(&exe, &release.join("examples/diagnosis-cost"))?;
    Ok(Figures {
        per_check,
        default_interval_ms_per_s,
        dnq,
    })
}

/// `median (min–max, N runs)` of `runs`, with `decimals`.
fn spread(runs: &[f64], decimals: usize) -> String {
    let (low, high) = runs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    let median = crate::bench::runtime::median(runs);
    match runs.len() {
        1 => format!("{median:.decimals$}"),
        n => format!("{median:.decimals$} ({low:.decimals$}–{high:.decimals$}, {n} runs)"),
    }
}

/// A `situations` process, killed when dropped.
struct Target {
    child: Child,
    pid: u32,
}

impl Target {
    /// Starts `situations ARGS` with small thread stacks and waits until its `threads` threads
    /// (the main thread and the runtime's helper included) are there.
    fn start(exe: &Path, args: &[&str], threads: usize) -> anyhow::Result<Self> {
        // glibc sizes thread stacks by RLIMIT_STACK: 256 KiB lets 10,000 threads fit anywhere.
        let script = format!("ulimit -s 256 && exec \"$0\" {}", args.join(" "));
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .arg(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start situations")?;
        let pid: u32 = crate::target::read_ready(&mut child, "situations")?.parse()?;
        let target = Self { child, pid };
        crate::target::ensure_release_runtime(pid)?;
        let counted = std::fs::read_dir(format!("/proc/{pid}/task"))?.count();
        ensure!(
            counted == threads,
            "situations {} has {counted} threads, not {threads}",
            args.join(" ")
        );
        Ok(target)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// qbench-trace `--watch` on `pid`, and the count of readiness lines it printed so far.
struct Watcher {
    child: Child,
    checks: Arc<AtomicUsize>,
}

impl Watcher {
    fn start(trace: &Path, pid: u32, interval: Option<&str>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(trace);
        cmd.args(["--watch", "--pid", &pid.to_string()]);
        if let Some(interval) = interval {
            cmd.args(["--readiness-interval", interval]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start qbench-trace")?;
        let checks = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().context("no stderr")?;
        let counter = Arc::clone(&checks);
        let prefix = format!("qbench-trace: pid {pid} (");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with(&prefix)
                    && (line.contains("an update now would wait")
                        || line.contains("nothing known would hold"))
                {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(());
                }
            }
        });
        let watcher = Self { child, checks };
        // The first check runs at once: it reads the unwind and debug info, once.
        rx.recv_timeout(Duration::from_secs(30))
            .context("qbench-trace printed no readiness line")?;
        Ok(watcher)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Ms of qbench-trace's CPU per readiness check of `pid`, and the checks counted.
fn per_check_cpu(trace: &Path, pid: u32) -> anyhow::Result<(f64, usize)> {
    let watcher = Watcher::start(trace, pid, Some(CHECK_INTERVAL))?;
    let (cpu0, checks0) = (
        cpu_ms(watcher.pid())?,
        watcher.checks.load(Ordering::SeqCst),
    );
    std::thread::sleep(CHECK_SPAN);
    let (cpu1, checks1) = (
        cpu_ms(watcher.pid())?,
        watcher.checks.load(Ordering::SeqCst),
    );
    let checks = checks1 - checks0;
    ensure!(checks > 0, "no readiness check in {CHECK_SPAN:?}");
    Ok(((cpu1 - cpu0) / checks as f64, checks))
}

/// Ms of qbench-trace's CPU per second of `--watch` on `pid` at the default interval, after its
/// first check.
fn default_interval_cpu(trace: &Path, pid: u32) -> anyhow::Result<f64> {
    let watcher = Watcher::start(trace, pid, None)?;
    let started = Instant::now();
    let cpu0 = cpu_ms(watcher.pid())?;
    std::thread::sleep(DEFAULT_SPAN);
    let spent = cpu_ms(watcher.pid())? - cpu0;
    Ok(spent / started.elapsed().as_secs_f64())
}

/// Ms of CPU process `pid` has used (see `crate::bench::cpu_ns`): the clock ticks of
/// /proc/PID/stat (10 ms) are too coarse for a check of a millisecond.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    Ok(crate::bench::cpu_ns(pid)? as f64 / 1e6)
}

/// The median (by total) of `DNQ_RUNS` timings of the report of a DNQ of `DNQ_THREADS` threads.
fn dnq_report(exe: &Path, example: &PathBuf) -> anyhow::Result<Dnq> {
    let quarter = (DNQ_THREADS - 2) / 5;
    let args = [
        format!("plaincond:{}", quarter * 2),
        format!("stucksleep:{}", quarter * 2),
        format!("stuckread:{}", DNQ_THREADS - 2 - quarter * 4),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let target = Target::start(exe, &args, DNQ_THREADS).with_context(|| {
        format!("{DNQ_THREADS} threads need kernel.threads-max, ulimit -u and ulimit -n above it")
    })?;
    let mut runs = Vec::new();
    for _ in 0..DNQ_RUNS {
        let out = Command::new(example).arg(target.pid.to_string()).output()?;
        ensure!(
            out.status.success(),
            "diagnosis-cost failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = parse_dnq(&String::from_utf8_lossy(&out.stdout))?;
        eprintln!(
            "bench: DNQ of {} threads: diagnose {:.0} ms, human {:.0} ms, json {:.0} ms, CPU {:.0} ms",
            run.threads, run.diagnose_ms, run.human_ms, run.json_ms, run.cpu_ms
        );
        runs.push(run);
    }
    runs.sort_by(|a, b| a.total_ms().total_cmp(&b.total_ms()));
    Ok(runs.swap_remove(runs.len() / 2))
}

/// `threads N diagnosed D diagnose_ms X human_ms Y json_ms Z ...`.
fn parse_dnq(line: &str) -> anyhow::Result<Dnq> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| -> anyhow::Result<f64> {
        let at = fields
            .iter()
            .position(|f| *f == name)
            .with_context(|| format!("no {name} in {line:?}"))?;
        Ok(fields.get(at + 1).context("truncated")?.parse()?)
    };
    let dnq = Dnq {
        threads: value("threads")? as usize,
        diagnose_ms: value("diagnose_ms")?,
        human_ms: value("human_ms")?,
        json_ms: value("json_ms")?,
        cpu_ms: value("cpu_ms")?,
    };
    if value("diagnosed")? as usize != dnq.threads {
        bail!("not every thread was diagnosed: {line:?}");
    }
    Ok(dnq)
}

/// The figures as JSON, for bench/results/.
pub fn json(f: &Figures) -> serde_json::Value {
    let median = crate::bench::runtime::median;
    let checks: Vec<serde_json::Value> = f
        .per_check
        .iter()
        .map(|(threads, runs, checks)| {
            serde_json::json!({
                "threads": threads,
                "cpu_ms_per_check": median(runs),
                "cpu_ms_per_check_runs": runs,
                "checks": checks,
            })
        })
        .collect();
    serde_json::json!({
        "readiness_checks": checks,
        "readiness_interval_measured": CHECK_INTERVAL,
        "watch_default_interval_cpu_ms_per_s": median(&f.default_interval_ms_per_s),
        "watch_default_interval_cpu_ms_per_s_runs": f.default_interval_ms_per_s,
        "statistic": "median of the runs (each its own qbench-trace)",
        "dnq_report": {
            "threads": f.dnq.threads,
            "diagnose_ms": f.dnq.diagnose_ms,
            "human_ms": f.dnq.human_ms,
            "json_ms": f.dnq.json_ms,
            "total_ms": f.dnq.total_ms(),
            "cpu_ms": f.dnq.cpu_ms,
            "statistic": format!("median of {DNQ_RUNS} runs (by total), wall time"),
        },
    })
}

/// The figures as the Markdown BENCHMARKS.md shows.
pub fn markdown(f: &Figures) -> String {
    let mut out = String::from(
        "| what qbench-trace reads from /proc and the target | threads | figure: median (range) |\n|---|---|---|\n",
    );
    for (threads, runs, checks) in &f.per_check {
        out += &format!(
            "| a readiness check, CPU ({checks} checks in all) | {threads} | {} ms |\n",
            spread(runs, 2)
        );
    }
    out += &format!(
        "| `--watch` at the default interval (10 s), CPU | 10 | {} ms/s |\n",
        spread(&f.default_interval_ms_per_s, 3)
    );
    out += &format!(
        "| report of a DNQ, every thread missing: diagnose + human + json, wall (CPU) | {} | {:.0} ms ({:.0} + {:.0} + {:.0}; CPU {:.0} ms) |\n",
        f.dnq.threads,
        f.dnq.total_ms(),
        f.dnq.diagnose_ms,
        f.dnq.human_ms,
        f.dnq.json_ms,
        f.dnq.cpu_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_the_median_and_the_range() {
        assert_eq!(spread(&[3.0, 1.0, 2.0], 1), "2.0 (1.0–3.0, 3 runs)");
        assert_eq!(spread(&[0.25], 2), "0.25");
    }
}
