//! The measurements of `cargo xtask bench table1` (run and reported by table1_report):
//! the study's Table I on this machine. Six workloads (workloads/table1/) × {with load, idle} ×
//! {all, update-only}, each update requested by a real signal from outside; the median
//! quiescence time the runtime reports (QBENCH_REPORT) and, as root, the observer's
//! (qbench-trace) for the same updates, in a second pass with it attached.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::bench::guard::{Guard, start_workload};
use crate::bench::table1_report::summary;
use crate::target;
use crate::workspace::{self, Profile};

/// A workload, with the study's figures for its subject (ms; the study's Table I).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub study_load_ms: f64,
    pub study_idle_ms: f64,
    /// What the study saw with update points only ("" when it gives no figure).
    pub study_update_only: &'static str,
}

const fn workload(name: &'static str, load: f64, idle: f64, update_only: &'static str) -> Workload {
    Workload {
        name,
        study_load_ms: load,
        study_idle_ms: idle,
        study_update_only: update_only,
    }
}

pub const WORKLOADS: [Workload; 6] = [
    workload("httpd", 0.185, 0.123, ""),
    workload("icecast", 105.152, 107.558, "≈ 1 s"),
    workload("iperf", 0.193, 0.169, "DNQ"),
    workload("memcached", 0.166, 0.155, "DNQ"),
    workload("spacetyrant", 0.426, 0.078, "≈ 20 ms"),
    workload("suricata", 0.503, 0.378, ""),
];
pub const VARIANTS: [&str; 2] = ["all", "update-only"];

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Setup {
    pub requests: usize,
    /// QBENCH_TIMEOUT_MS, and the observer's --timeout.
    pub timeout_ms: u64,
    /// How long the load runs before the first request.
    pub warmup: Duration,
    /// The observer, when it takes part (root).
    pub observer: Option<PathBuf>,
}

/// One update: quiescence in µs, None for a DNQ.
pub type Sample = Option<f64>;

/// One (workload, variant, load) cell.
#[derive(Debug, Clone)]
pub struct Cell {
    pub workload: Workload,
    pub variant: &'static str,
    pub loaded: bool,
    /// Participating threads, as the runtime reported them.
    pub threads: Vec<usize>,
    /// Pass 1, no observer: the runtime's figures.
    pub runtime: Vec<Sample>,
    /// Whether pass 2, with the observer attached, ran.
    pub observed: bool,
    /// Pass 2: (runtime, observer) per update the observer reported, paired by sequence number.
    pub paired: Vec<(Sample, Sample)>,
    /// The load generator's summary lines.
    pub load: Vec<String>,
}

/// The programs, built with `cc` against the release runtime.
#[derive(Debug)]
pub struct Programs {
    dir: PathBuf,
}

impl Programs {
    pub fn workload(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-like"))
    }
    pub fn load(&self) -> PathBuf {
        self.dir.join("table1-load")
    }
}

/// Builds the release runtime, then each workload and the load generator.
pub fn build() -> anyhow::Result<Programs> {
    workspace::cargo(&["build", "--release", "-p", "qbench-runtime"])?;
    let src = workspace::root().join("workloads/table1");
    let lib = workspace::profile_dir(Profile::Release);
    let dir = lib.join("table1");
    std::fs::create_dir_all(&dir)?;
    let cc = |sources: &[&str], out: &Path, runtime: bool| -> anyhow::Result<()> {
        let mut cmd = Command::new("cc");
        cmd.args(["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"]);
        cmd.args(sources.iter().map(|s| src.join(s)))
            .arg("-o")
            .arg(out);
        if runtime {
            cmd.arg("-I")
                .arg(workspace::root().join("qbench-runtime/include"));
            cmd.arg("-L").arg(&lib).arg("-lqbench");
            cmd.arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        let status = cmd.status().context("cannot run cc")?;
        ensure!(status.success(), "cc failed to build {}", out.display());
        Ok(())
    };
    let programs = Programs { dir };
    for w in WORKLOADS {
        let source = format!("{}.c", w.name);
        cc(
            &[&source, "variant.c", "net.c"],
            &programs.workload(w.name),
            true,
        )?;
    }
    cc(&["load.c", "net.c"], &programs.load(), false)?;
    Ok(programs)
}

/// Runs every cell: pass 1 without the observer, then pass 2 with it (when given), for the
/// variants in `observed`.
pub fn run_all(p: &Programs, s: &Setup, observed: &[&str]) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for w in WORKLOADS {
        for variant in VARIANTS {
            for loaded in [true, false] {
                let what = format!(
                    "{} {variant} {}",
                    w.name,
                    if loaded { "load" } else { "idle" }
                );
                let mut cell = Cell {
                    workload: w,
                    variant,
                    loaded,
                    threads: vec![],
                    runtime: vec![],
                    observed: false,
                    paired: vec![],
                    load: vec![],
                };
                let first = run_cell(p, &cell, s, None).with_context(|| what.clone())?;
                cell.threads = first
                    .reports
                    .iter()
                    .filter_map(|r| r["threads"].as_u64())
                    .map(|t| t as usize)
                    .collect();
                cell.runtime = first
                    .reports
                    .iter()
                    .map(|r| sample(&r["quiescence_ns"]))
                    .collect();
                cell.load.extend(first.load);
                if let Some(obs) = &s.observer
                    && observed.contains(&variant)
                {
                    let second = run_cell(p, &cell, s, Some(obs))
                        .with_context(|| format!("{what} observed"))?;
                    cell.observed = true;
                    cell.paired = pair(&second.reports, &second.observed);
                    cell.load.extend(second.load);
                }
                eprintln!(
                    "bench: {what:<24} runtime {}  observer {}",
                    summary(&cell.runtime),
                    summary(&cell.paired.iter().map(|p| p.1).collect::<Vec<_>>())
                );
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

fn sample(v: &serde_json::Value) -> Sample {
    v.as_u64().map(|ns| ns as f64 / 1e3)
}

/// The observer's updates with the runtime's: by the runtime's sequence number, or, when the
/// observer did not learn it (no thread arrived, as in a total DNQ), by the request time (the
/// two stamps of one signal are microseconds apart; requests are at least 20 ms apart).
fn pair(reports: &[serde_json::Value], observed: &[serde_json::Value]) -> Vec<(Sample, Sample)> {
    observed
        .iter()
        .filter_map(|o| {
            let by_seq = || reports.iter().find(|r| r["seq"] == o["runtime_seq"]);
            let by_time = || {
                let t = o["request_ns"].as_u64()?;
                reports.iter().find(|r| {
                    r["request_ns"]
                        .as_u64()
                        .is_some_and(|rt| rt.abs_diff(t) < 5_000_000)
                })
            };
            let r = if o["runtime_seq"].is_null() {
                by_time()
            } else {
                by_seq()
            }?;
            Some((sample(&r["quiescence_ns"]), sample(&o["quiescence_ns"])))
        })
        .collect()
}

struct Run {
    reports: Vec<serde_json::Value>,
    observed: Vec<serde_json::Value>,
    load: Option<String>,
}

fn run_cell(p: &Programs, c: &Cell, s: &Setup, observer: Option<&Path>) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!("qbench-table1-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let report = dir.join(format!(
        "{}-{}-{}.jsonl",
        c.workload.name, c.variant, c.loaded
    ));
    let _ = std::fs::remove_file(&report);
    let (mut workload, port) = start_workload(
        Command::new(p.workload(c.workload.name))
            .env("QBENCH_REPORT", &report)
            .env("QBENCH_TIMEOUT_MS", s.timeout_ms.to_string()),
        c.variant,
        "the workload",
    )?;
    let pid = workload.0.id() as i32;
    let timeout = Duration::from_millis(s.timeout_ms);
    let mut load = None;
    if c.loaded {
        // Bounded by itself, and ended early (SIGTERM) once the requests are done.
        let budget = s.warmup + (timeout + Duration::from_millis(400)) * s.requests as u32;
        let seconds = format!("{:.1}", budget.as_secs_f64() + 10.0);
        load = Some(Guard(
            Command::new(p.load())
                .args([c.workload.name, &port, &seconds])
                .stdout(Stdio::piped())
                .spawn()
                .context("cannot start the load")?,
        ));
        std::thread::sleep(s.warmup);
    } else {
        settle(pid);
    }
    let mut observed = Vec::new();
    if let Some(trace) = observer {
        observed = observe(trace, pid, s)?;
        // Best effort: a request the observer sends while the runtime's last update is still
        // pending joins it, so there may be fewer runtime reports than observed updates.
        let _ = target::wait_report_lines(&report, observed.len(), timeout * 2);
    } else {
        for n in 1..=s.requests {
            target::request_update(pid)?;
            target::wait_report_lines(&report, n, timeout + Duration::from_secs(5))?;
            if c.loaded {
                std::thread::sleep(Duration::from_millis(20));
            } else {
                settle(pid);
            }
        }
    }
    let load_line = match load.as_mut() {
        Some(Guard(child)) => Some(stop_load(child)?),
        None => None,
    };
    drop(workload.0.stdin.take()); // the workload exits when stdin closes
    let text = std::fs::read_to_string(&report)?;
    let _ = std::fs::remove_file(&report);
    let reports = text
        .lines()
        .map(|l| serde_json::from_str(l).context("bad report line"))
        .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
    if observer.is_none() {
        ensure!(
            reports.len() >= s.requests,
            "{} reports of {}",
            reports.len(),
            s.requests
        );
    }
    Ok(Run {
        reports,
        observed,
        load: load_line,
    })
}

/// Runs `qbench-trace --request --count N` on `pid` and returns its JSON reports. It is given
/// a deadline: an observer that stops reporting must not hang the benchmark; what it reported
/// before is kept, and the gap shows in the table as fewer updates observed.
fn observe(trace: &Path, pid: i32, s: &Setup) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut child = Guard(
        Command::new(trace)
            .args(["--pid", &pid.to_string(), "--request", "--json"])
            .args(["--count", &s.requests.to_string()])
            .args(["--timeout", &format!("{}ms", s.timeout_ms)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run qbench-trace")?,
    );
    let mut stdout = child.0.stdout.take().context("stdout")?;
    let mut stderr = child.0.stderr.take().context("stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let per_update = Duration::from_millis(s.timeout_ms) + Duration::from_secs(1);
    let deadline = Instant::now() + per_update * s.requests as u32 + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            // SAFETY: kill has no memory-safety preconditions. SIGINT: it detaches cleanly.
            unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(2));
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(child); // kills it if SIGINT was not enough
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        None => eprintln!("bench: qbench-trace stopped reporting; stopped it at its deadline"),
        Some(st) => ensure!(
            matches!(st.code(), Some(0 | 3)),
            "qbench-trace failed ({st}): {err}"
        ),
    }
    out.lines()
        .map(|l| serde_json::from_str(l).context("bad qbench-trace line"))
        .collect()
}

/// Ends the load early (SIGTERM) and returns its summary line.
fn stop_load(child: &mut Child) -> anyhow::Result<String> {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            bail!("the load generator did not stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("load stdout")?
        .read_to_string(&mut out)?;
    Ok(out.trim().to_string())
}

/// Waits (at most 2 s) until every thread of an idle workload is asleep in its blocking call.
fn settle(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        let all = dir.flatten().all(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            stat.rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('S'))
        });
        if all {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
