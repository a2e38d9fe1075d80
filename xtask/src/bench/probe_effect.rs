//! The probe effect of the diagnosis mode, side by side in one run (root): the runtime's own
//! quiescence time (its `QBENCH_REPORT`) of one 8-thread process, in blocks without and with
//! `qbench-trace --pid P` attached, interleaved; and what an unrelated process's `getppid()`
//! costs meanwhile. One process throughout, so the blocks differ only by the observer.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::runtime::median;
use crate::target;

/// The measured process: the main thread (in read on stdin) and 7 threads blocked in the ways
/// servers block: read on a pipe, epoll_wait, a wrapped condition wait and a sleep.
const THREADS: [&str; 4] = ["read:2", "epoll:2", "condwait:2", "sleep:1"];
/// getppid() calls per syscall-cost sample.
const GETPPID_CALLS: &str = "2000000";
/// Between an update's report and the next request: the runtime releases its threads, and they
/// block again.
const GAP: Duration = Duration::from_millis(20);

/// The figures of one arm (without or with the observer), over every block.
#[derive(Debug, Default, Clone)]
pub struct Arm {
    pub quiescence_us: Vec<f64>,
    pub getppid_ns: Vec<f64>,
    pub dnq: usize,
}

/// Measures `rounds` rounds of one block without and one with the observer, `updates` updates
/// each, and prints the table; returns both arms (without, with).
pub fn run(trace: &Path, rounds: usize, updates: usize) -> anyhow::Result<(Arm, Arm)> {
    let situations = crate::bench::runtime::build_target()?;
    let getppid = crate::bench::runtime::build_c_release("watch_cost", "watch_cost")?;
    let report = std::env::temp_dir().join(format!("qbench-probe-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut target = Command::new(&situations)
        .args(THREADS)
        .env("QBENCH_REPORT", &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", situations.display()))?;
    let measured = measure(&mut target, trace, &getppid, &report, rounds, updates);
    let _ = target.kill();
    let _ = target.wait();
    let _ = std::fs::remove_file(&report);
    let (without, with) = measured?;
    println!("{}", markdown(&without, &with));
    Ok((without, with))
}

fn measure(
    target: &mut Child,
    trace: &Path,
    getppid: &Path,
    report: &Path,
    rounds: usize,
    updates: usize,
) -> anyhow::Result<(Arm, Arm)> {
    target::read_ready(target, "situations")?;
    target::ensure_release_runtime(target.id())?;
    let pid = target.id() as i32;
    let mut requested = 0;
    let (mut without, mut with) = (Arm::default(), Arm::default());
    for round in 0..rounds {
        // Alternate which arm goes first, so a drift of the machine favours neither.
        for attached in [round % 2 == 1, round % 2 == 0] {
            let observer = attached.then(|| attach(trace, pid)).transpose()?;
            let arm = if attached { &mut with } else { &mut without };
            arm.getppid_ns.push(getppid_ns(getppid, GETPPID_CALLS)?);
            for _ in 0..updates {
                std::thread::sleep(GAP);
                requested += 1;
                target::request_update(pid)?;
                target::wait_report_lines(report, requested, Duration::from_secs(20))?;
            }
            arm.getppid_ns.push(getppid_ns(getppid, GETPPID_CALLS)?);
            if let Some(observer) = observer {
                detach(observer)?;
            }
        }
    }
    let lines = std::fs::read_to_string(report)?;
    let reports: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).context("bad report line"))
        .collect::<Result<_, _>>()?;
    // Report n belongs to the block of request n, in the order the blocks ran.
    for (n, r) in reports.iter().enumerate() {
        let (round, in_round) = (n / (2 * updates), n % (2 * updates));
        let first_is_attached = round % 2 == 1;
        let attached = (in_round < updates) == first_is_attached;
        let arm = if attached { &mut with } else { &mut without };
        match r["quiescence_ns"].as_u64() {
            Some(q) => arm.quiescence_us.push(q as f64 / 1e3),
            None => arm.dnq += 1,
        }
    }
    Ok((without, with))
}

/// Starts `qbench-trace --pid PID` (the diagnosis mode, no requests of its own) and returns once
/// it says it is attached.
fn attach(trace: &Path, pid: i32) -> anyhow::Result<Child> {
    let mut child = Command::new(trace)
        .args(["--pid", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", trace.display()))?;
    let stderr = child.stderr.take().context("qbench-trace's stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("attached to") => break,
            Some(Ok(_)) if Instant::now() < deadline => {}
            other => {
                let _ = child.kill();
                bail!("qbench-trace did not attach: {other:?}");
            }
        }
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}

/// Stops the observer with SIGINT, as a user would, and waits for it to detach.
fn detach(mut observer: Child) -> anyhow::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(observer.id() as i32, libc::SIGINT) };
    observer.wait()?;
    Ok(())
}

/// One sample of an unrelated process's `getppid()`, in ns a call: `watch_cost getppid CALLS`.
pub fn getppid_ns(program: &Path, calls: &str) -> anyhow::Result<f64> {
    let out = Command::new(program).args(["getppid", calls]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|ns| ns.parse().ok())
        .with_context(|| format!("no getppid figure in {text:?}"))
}

/// The two arms and their ratios, as the Markdown table BENCHMARKS.md shows.
pub fn markdown(without: &Arm, with: &Arm) -> String {
    let (q0, q1) = (median(&without.quiescence_us), median(&with.quiescence_us));
    let (s0, s1) = (median(&without.getppid_ns), median(&with.getppid_ns));
    let (m0, m1) = (least(&without.getppid_ns), least(&with.getppid_ns));
    format!(
        "| 8-thread process (situations {}) | without qbench-trace | diagnosis mode attached | ratio |\n\
         |---|---:|---:|---:|\n\
         | median quiescence (µs), runtime's own figure | {q0:.1} ({} updates, {} DNQ) | {q1:.1} ({} updates, {} DNQ) | {:.2}× |\n\
         | an unrelated process's getppid() (ns), median (min–max) of {} samples a side | {s0:.1} ({m0:.1}–{:.1}) | {s1:.1} ({m1:.1}–{:.1}) | {:+.1} ns (min: {:+.1} ns) |\n",
        THREADS.join(" "),
        without.quiescence_us.len(),
        without.dnq,
        with.quiescence_us.len(),
        with.dnq,
        q1 / q0,
        with.getppid_ns.len().min(without.getppid_ns.len()),
        most(&without.getppid_ns),
        most(&with.getppid_ns),
        s1 - s0,
        m1 - m0,
    )
}

/// The least of `values` (a machine shared with other work only ever adds to a sample).
fn least(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The greatest of `values`.
fn most(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The arms as JSON for bench/results/.
pub fn json(without: &Arm, with: &Arm) -> serde_json::Value {
    let arm = |a: &Arm| {
        serde_json::json!({
            "quiescence_us": a.quiescence_us,
            "median_quiescence_us": median(&a.quiescence_us),
            "dnq": a.dnq,
            "getppid_ns": a.getppid_ns,
            "median_getppid_ns": median(&a.getppid_ns),
            "min_getppid_ns": least(&a.getppid_ns),
        })
    };
    serde_json::json!({
        "target": format!("situations {}", THREADS.join(" ")),
        "without": arm(without),
        "diagnosis_attached": arm(with),
        "quiescence_ratio": median(&with.quiescence_us) / median(&without.quiescence_us),
        "getppid_delta_ns": median(&with.getppid_ns) - median(&without.getppid_ns),
        "getppid_min_delta_ns": least(&with.getppid_ns) - least(&without.getppid_ns),
    })
}
