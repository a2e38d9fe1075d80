//! The probe effect of the diagnosis mode, side by side in one run (root): the runtime's own
//! quiescence time (its `QBENCH_REPORT`) of one 8-thread process, in blocks without and with
//! `qbench-trace --pid P` attached, interleaved; and what an unrelated process's `getppid()`
//! costs meanwhile. One process throughout, so the blocks differ only by the observer.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::bpf_stats;
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
    /// Per block: the CPU the measured process used, per update (µs), summed over its threads.
    /// Unlike quiescence, it does not depend on how the threads landed on the cores, so the
    /// difference between the arms is what the probes cost the target's threads.
    pub target_cpu_us: Vec<f64>,
    /// Per block, attached arm only: qbench-trace's own CPU per update (µs).
    pub observer_cpu_us: Vec<f64>,
    /// Per block, attached arm only: its BPF programs' runs per update, and their time per
    /// update (µs), by the kernel's count: what the probes themselves cost the threads.
    pub bpf_per_update: Vec<(f64, f64)>,
}

/// How the measured process runs in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observer {
    None,
    /// `qbench-trace --pid P`: the anchors' uprobes, the signal tracepoint, and the syscall
    /// tracepoints attached while an update is pending.
    Diagnosis,
    /// `qbench-trace --watch --pid P`: the anchors' uprobes and the signal tracepoint alone, so
    /// that the difference from the diagnosis mode is what its syscall tracking costs.
    Watch,
}

/// The arms in their rotating order.
pub const ARMS: [Observer; 3] = [Observer::None, Observer::Diagnosis, Observer::Watch];

/// The arms' figures, in the order of [`ARMS`].
pub type Arms = [Arm; ARMS.len()];

/// Measures `rounds` rounds of one block of `updates` updates per arm, and prints the table.
pub fn run(trace: &Path, rounds: usize, updates: usize) -> anyhow::Result<Arms> {
    let situations = crate::bench::runtime::build_target()?;
    let getppid = crate::bench::runtime::build_c_release("watch_cost", "watch_cost")?;
    let _stats = bpf_stats::Enabled::new()?;
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
    let arms = measured?;
    println!("{}", markdown(&arms));
    Ok(arms)
}

fn measure(
    target: &mut Child,
    trace: &Path,
    getppid: &Path,
    report: &Path,
    rounds: usize,
    updates: usize,
) -> anyhow::Result<Arms> {
    target::read_ready(target, "situations")?;
    target::ensure_release_runtime(target.id())?;
    let pid = target.id() as i32;
    let mut requested = 0;
    let mut arms = Arms::default();
    // The arm of each block, in the order they ran: report n belongs to block n / updates.
    let mut blocks = Vec::new();
    for round in 0..rounds {
        // Rotate which arm goes first, so a drift of the machine favours none.
        for k in 0..ARMS.len() {
            let index = (round + k) % ARMS.len();
            blocks.push(index);
            let observer = attach(trace, pid, ARMS[index])?;
            let arm = &mut arms[index];
            arm.getppid_ns.push(getppid_ns(getppid, GETPPID_CALLS)?);
            let cpu = Cpu::read(pid, observer.as_ref())?;
            for _ in 0..updates {
                std::thread::sleep(GAP);
                requested += 1;
                target::request_update(pid)?;
                target::wait_report_lines(report, requested, Duration::from_secs(20))?;
            }
            cpu.per_update(pid, observer.as_ref(), updates, arm)?;
            arm.getppid_ns.push(getppid_ns(getppid, GETPPID_CALLS)?);
            if let Some(observer) = observer {
                detach(observer)?;
            }
        }
    }
    let lines = std::fs::read_to_string(report)?;
    for (n, line) in lines.lines().enumerate() {
        let r: serde_json::Value = serde_json::from_str(line).context("bad report line")?;
        let arm = &mut arms[blocks[n / updates]];
        match r["quiescence_ns"].as_u64() {
            Some(q) => arm.quiescence_us.push(q as f64 / 1e3),
            None => arm.dnq += 1,
        }
    }
    Ok(arms)
}

/// The CPU the measured process and the observer had used when a block started.
struct Cpu {
    target_ns: u64,
    observer_ns: Option<u64>,
    observer_runs: Option<bpf_stats::Runs>,
}

impl Cpu {
    fn read(pid: i32, observer: Option<&Child>) -> anyhow::Result<Self> {
        Ok(Self {
            target_ns: crate::bench::cpu_ns(pid as u32)?,
            observer_ns: observer.map(|o| crate::bench::cpu_ns(o.id())).transpose()?,
            observer_runs: observer
                .map(|o| bpf_stats::of_process(o.id()))
                .transpose()?,
        })
    }

    /// Adds what each used since `self`, per update, to `arm`.
    fn per_update(
        self,
        pid: i32,
        observer: Option<&Child>,
        updates: usize,
        arm: &mut Arm,
    ) -> anyhow::Result<()> {
        let now = Self::read(pid, observer)?;
        let us =
            |before: u64, after: u64| after.saturating_sub(before) as f64 / 1e3 / updates as f64;
        arm.target_cpu_us.push(us(self.target_ns, now.target_ns));
        if let (Some(before), Some(after)) = (self.observer_ns, now.observer_ns) {
            arm.observer_cpu_us.push(us(before, after));
        }
        if let (Some(before), Some(after)) = (self.observer_runs, now.observer_runs) {
            let runs = before.since(after);
            let n = updates as f64;
            arm.bpf_per_update
                .push((runs.count as f64 / n, runs.ns as f64 / 1e3 / n));
        }
        Ok(())
    }
}

/// Starts qbench-trace on `pid` the way `observer` says (none: nothing), and returns once it
/// says it is attached.
fn attach(trace: &Path, pid: i32, observer: Observer) -> anyhow::Result<Option<Child>> {
    let (args, attached): (&[&str], &str) = match observer {
        Observer::None => return Ok(None),
        Observer::Diagnosis => (&[], "attached to"),
        Observer::Watch => (&["--watch"], "watching pid"),
    };
    let mut child = Command::new(trace)
        .args(args)
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
            Some(Ok(line)) if line.contains(attached) => break,
            Some(Ok(_)) if Instant::now() < deadline => {}
            other => {
                let _ = child.kill();
                bail!("qbench-trace did not attach: {other:?}");
            }
        }
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Some(child))
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

/// How a row of the table shows an arm.
type Cell<'a> = dyn Fn(&Arm) -> String + 'a;

/// The arms and their differences from the arm without qbench-trace, as the Markdown table
/// BENCHMARKS.md shows.
pub fn markdown(arms: &Arms) -> String {
    let [none, diagnosis, watch] = arms;
    let mut out = format!(
        "| 8-thread process (situations {}) | without qbench-trace | diagnosis mode attached | `--watch` attached |\n\
         |---|---:|---:|---:|\n",
        THREADS.join(" ")
    );
    let q0 = median(&none.quiescence_us);
    let quiescence = |a: &Arm| {
        let q = median(&a.quiescence_us);
        let n = a.quiescence_us.len();
        if std::ptr::eq(a, none) {
            format!("{q:.1} ({n} updates, {} DNQ)", a.dnq)
        } else {
            format!("{q:.1} ({n} updates, {} DNQ): {:.2}×", a.dnq, q / q0)
        }
    };
    let c0 = median(&none.target_cpu_us);
    let cpu = |a: &Arm| {
        let c = median(&a.target_cpu_us);
        if std::ptr::eq(a, none) {
            format!("{c:.1}")
        } else {
            format!("{c:.1} ({:+.1})", c - c0)
        }
    };
    let (s0, m0) = (median(&none.getppid_ns), least(&none.getppid_ns));
    let getppid = |a: &Arm| {
        let (s, m) = (median(&a.getppid_ns), least(&a.getppid_ns));
        if std::ptr::eq(a, none) {
            format!("{s:.1} (least {m:.1})")
        } else {
            format!("{s:.1} ({:+.1}; least {m:.1}, {:+.1})", s - s0, m - m0)
        }
    };
    let own = |a: &Arm| {
        if a.observer_cpu_us.is_empty() {
            "—".to_string()
        } else {
            format!("{:.1}", median(&a.observer_cpu_us))
        }
    };
    let bpf = |a: &Arm| {
        if a.bpf_per_update.is_empty() {
            return "—".to_string();
        }
        let runs: Vec<f64> = a.bpf_per_update.iter().map(|b| b.0).collect();
        let us: Vec<f64> = a.bpf_per_update.iter().map(|b| b.1).collect();
        format!("{:.1} runs, {:.1} µs", median(&runs), median(&us))
    };
    let rows: [(&str, &Cell); 5] = [
        (
            "median quiescence (µs), the runtime's own figure",
            &quiescence,
        ),
        (
            "qbench-trace's BPF programs per update (the kernel's count, median of its blocks)",
            &bpf,
        ),
        (
            "the process's CPU per update (µs, median of its blocks), all its threads",
            &cpu,
        ),
        (
            "qbench-trace's own CPU per update (µs, median of its blocks)",
            &own,
        ),
        (
            "an unrelated process's getppid() (ns), median of 2 samples a block",
            &getppid,
        ),
    ];
    for (name, cell) in rows {
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            cell(none),
            cell(diagnosis),
            cell(watch)
        ));
    }
    out
}

/// The least of `values` (a machine shared with other work only ever adds to a sample).
fn least(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The arms as JSON for bench/results/.
pub fn json(arms: &Arms) -> serde_json::Value {
    let arm = |a: &Arm| {
        serde_json::json!({
            "quiescence_us": a.quiescence_us,
            "median_quiescence_us": median(&a.quiescence_us),
            "quiescence_ratio": median(&a.quiescence_us) / median(&arms[0].quiescence_us),
            "dnq": a.dnq,
            "getppid_ns": a.getppid_ns,
            "median_getppid_ns": median(&a.getppid_ns),
            "min_getppid_ns": least(&a.getppid_ns),
            "target_cpu_us_per_update": a.target_cpu_us,
            "observer_cpu_us_per_update": a.observer_cpu_us,
            "bpf_runs_and_us_per_update": a.bpf_per_update,
        })
    };
    serde_json::json!({
        "target": format!("situations {}", THREADS.join(" ")),
        "without": arm(&arms[0]),
        "diagnosis_attached": arm(&arms[1]),
        "watch_attached": arm(&arms[2]),
    })
}
